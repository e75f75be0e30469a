use super::*;

fn account() -> AccountId {
    AccountId::parse("acme").unwrap()
}

/// An event subscription's delivery, as Zendesk sends it.
fn event(kind: &str, time: &str, detail: Value, change: Value) -> Vec<u8> {
    json!({"account_id": 12514403, "detail": detail, "event": change, "id": format!("evt-{kind}-{time}"),
        "subject": "zen:ticket:5158", "time": time, "type": format!("zen:event-type:{kind}"),
        "zendesk_event_version": "2022-11-06"})
    .to_string()
    .into_bytes()
}

fn detail(status: &str, priority: &str, updated: &str) -> Value {
    json!({"actor_id": "8447388090494", "assignee_id": null, "brand_id": "8447346621310",
        "created_at": "2024-05-01T10:00:00Z", "custom_status": "8447388052610", "description": "Exports fail",
        "external_id": null, "form_id": "8646151517822", "group_id": "8447346622974", "id": "5158",
        "is_public": true, "organization_id": "8447346624126", "priority": priority, "requester_id": "8447388090494",
        "status": status, "subject": "Exports fail", "submitter_id": "8447388090494", "tags": ["export"],
        "type": "INCIDENT", "updated_at": updated, "via": {"channel": "web_service"}})
}

fn ticket_of(body: &[u8]) -> ProviderObject {
    delivery(body).unwrap().objects.pop().unwrap()
}

fn names(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event { name, message_id, .. } => Some(format!("{name} {message_id}")),
            _ => None,
        })
        .collect()
}

#[test]
fn events_carry_the_ticket_at_its_update() {
    let d = delivery(&event(
        "ticket.created",
        "2024-05-01T10:00:01Z",
        detail("NEW", "HIGH", "2024-05-01T10:00:00Z"),
        json!({}),
    ))
    .unwrap();
    assert_eq!(d.event_type, "zen:event-type:ticket.created");
    let o = &d.objects[0];
    assert_eq!(
        (o.kind.as_str(), o.object_id.as_str(), o.parent_id.as_deref(), o.version),
        ("ticket", "5158", Some("8447346624126"), 1_714_557_600_000)
    );
    assert_eq!(parent_kind(o), "organization");
    let t = ticket(o, &account());
    assert_eq!((t.status, t.priority, t.subject.as_str()), (TicketStatus::New, TicketPriority::High, "Exports fail"));
    assert_eq!((t.first_response_at, t.resolved_at, t.csat), (None, None, None));
    assert_eq!(names(&outputs(o, None, &account())), ["Ticket Opened zendesk:5158:opened"]);
    // Without an organization, the requester is the parent.
    let mut alone = detail("OPEN", "LOW", "2024-05-01T10:00:00Z");
    alone["organization_id"] = Value::Null;
    let o = ticket_of(&event("ticket.created", "2024-05-01T10:00:01Z", alone, json!({})));
    assert_eq!((o.parent_id.as_deref(), parent_kind(&o)), (Some("8447388090494"), "user"));
    // Agents are not requesters; other domains are acknowledged with nothing to store; what
    // is not Zendesk's is refused.
    let user = |role: &str| {
        json!({"id": "8447388090495", "email": "sam@vendor.io", "role": role,
        "updated_at": "2024-05-01T10:00:00Z"})
    };
    let agent = event("user.created", "2024-05-01T10:00:01Z", user("AGENT"), json!({}));
    assert!(delivery(&agent).unwrap().objects.is_empty());
    let requester = event("user.created", "2024-05-01T10:00:01Z", user("END_USER"), json!({}));
    assert_eq!(delivery(&requester).unwrap().objects[0].kind, "user");
    let other = event("agent.state_changed", "2024-05-01T10:00:01Z", json!({"id": "1"}), json!({}));
    assert!(delivery(&other).unwrap().objects.is_empty());
    for bad in
        [json!({"type": "customer.created"}), json!({"type": "zen:event-type:ticket.created", "id": "x"}), json!([1])]
    {
        assert!(matches!(delivery(bad.to_string().as_bytes()), Err(WebhookError::BadPayload(_))), "{bad}");
    }
}

#[test]
fn webhooks_keep_what_the_backfill_knew_and_mark_replies_and_resolutions() {
    // As a backfill read it: a metric set and a rating.
    let mut backfilled = ticket_of(&event(
        "ticket.created",
        "2024-05-01T10:00:01Z",
        detail("open", "normal", "2024-05-01T11:00:00Z"),
        json!({}),
    ));
    backfilled.payload["metric_set"] = json!({"ticket_id": 5158, "reply_time_in_minutes": {"calendar": 30, "business": 30},
        "solved_at": null, "reopens": 0, "replies": 1});
    backfilled.payload["satisfaction_rating"] = json!({"score": "offered"});
    let t = ticket(&backfilled, &account());
    assert_eq!(t.first_response_at.unwrap().to_rfc3339(), "2024-05-01T10:30:00+00:00");
    // Solved by a webhook an hour later: the metrics stay, the resolution is the change's time.
    let mut solved = ticket_of(&event(
        "ticket.status_changed",
        "2024-05-01T12:00:00Z",
        detail("SOLVED", "NORMAL", "2024-05-01T12:00:00Z"),
        json!({"current": "SOLVED", "previous": "OPEN"}),
    ));
    complete(&mut solved, &backfilled);
    let t = ticket(&solved, &account());
    assert_eq!((t.status, t.first_response_at.is_some()), (TicketStatus::Solved, true));
    assert_eq!(t.resolved_at.unwrap().to_rfc3339(), "2024-05-01T12:00:00+00:00");
    let before = ticket(&backfilled, &account());
    assert_eq!(
        names(&outputs(&solved, Some(&backfilled), &account())),
        ["Ticket Solved zendesk:5158:solved:1714564800"]
    );
    assert_eq!(t.attributes["reopens"], 0);
    assert!(before.resolved_at.is_none());
    // Closed later: still resolved when it was solved, and told once.
    let mut closed = ticket_of(&event(
        "ticket.status_changed",
        "2024-05-05T12:00:00Z",
        detail("CLOSED", "NORMAL", "2024-05-05T12:00:00Z"),
        json!({}),
    ));
    complete(&mut closed, &solved);
    assert_eq!(ticket(&closed, &account()).resolved_at, t.resolved_at);
    assert!(names(&outputs(&closed, Some(&solved), &account())).is_empty());
    // Rated good by the backfill after: 5, told once.
    let mut rated = closed.clone();
    rated.payload["satisfaction_rating"] = json!({"id": 1001, "score": "good", "comment": "Quick!"});
    rated.version += 1;
    let r = ticket(&rated, &account());
    assert_eq!((r.csat, r.attributes["csat_comment"].as_str()), (Some(5), Some("Quick!")));
    assert_eq!(names(&outputs(&rated, Some(&closed), &account())), ["CSAT Rated zendesk:5158:csat:1001:5"]);
    assert!(names(&outputs(&rated, Some(&rated), &account())).is_empty());
    rated.payload["satisfaction_rating"]["score"] = json!("bad");
    assert_eq!(ticket(&rated, &account()).csat, Some(1));
}

#[test]
fn a_public_agent_comment_is_the_first_reply() {
    let created = ticket_of(&event(
        "ticket.created",
        "2024-05-01T10:00:01Z",
        detail("NEW", "LOW", "2024-05-01T10:00:00Z"),
        json!({}),
    ));
    let comment = |public: bool, staff: bool, at: &str| {
        event(
            "ticket.comment_added",
            at,
            detail("OPEN", "LOW", at),
            json!({"comment": {"id": "1", "body": "On it", "is_public": public,
                "author": {"id": "8447388090495", "is_staff": staff, "name": "Agent"}}}),
        )
    };
    let mut private = ticket_of(&comment(false, true, "2024-05-01T10:05:00Z"));
    complete(&mut private, &created);
    assert_eq!(ticket(&private, &account()).first_response_at, None);
    let mut requester = ticket_of(&comment(true, false, "2024-05-01T10:06:00Z"));
    complete(&mut requester, &private);
    assert_eq!(ticket(&requester, &account()).first_response_at, None);
    let mut reply = ticket_of(&comment(true, true, "2024-05-01T10:10:00Z"));
    complete(&mut reply, &requester);
    let first = ticket(&reply, &account()).first_response_at;
    assert_eq!(first.unwrap().to_rfc3339(), "2024-05-01T10:10:00+00:00");
    let mut later = ticket_of(&comment(true, true, "2024-05-01T11:00:00Z"));
    complete(&mut later, &reply);
    assert_eq!(ticket(&later, &account()).first_response_at, first, "the first reply stays the first");
}

#[test]
fn organizations_and_users_match_by_their_fields() {
    let org = object(
        "organization",
        json!({"id": 361898904439u64, "name": "Acme", "external_id": "acme", "domain_names": ["www.Acme.io", "acme.com"],
            "organization_fields": {"steward_account_id": null}, "updated_at": "2024-03-01T09:00:00Z"}),
        0,
    )
    .unwrap();
    let keys = match_keys(&org, "steward_account_id");
    assert_eq!(
        (keys.external_account.as_deref(), keys.domain.as_deref(), keys.provider_id.as_str()),
        (Some("acme"), Some("acme.io"), "361898904439")
    );
    let mut fielded = org.clone();
    fielded.payload["organization_fields"]["steward_account_id"] = json!("acme-eu");
    assert_eq!(match_keys(&fielded, "steward_account_id").external_account.as_deref(), Some("acme-eu"));
    let user =
        object("user", json!({"id": 35436, "name": "Ana", "email": "Ana@Acme.io", "role": "end-user"}), 7).unwrap();
    assert_eq!((user.version, user.label.as_str()), (7, "Ana · Ana@Acme.io · 35436"));
    let keys = match_keys(&user, "steward_account_id");
    assert_eq!((keys.email.as_deref(), keys.domain.as_deref()), (Some("ana@acme.io"), Some("acme.io")));
    assert_eq!(names(&outputs(&org, None, &account())), Vec::<String>::new());
    assert!(matches!(&outputs(&org, None, &account())[..], [Output::AccountTraits { .. }]));
    assert!(outputs(&org, Some(&org), &account()).is_empty(), "told again only when changed");
}

#[test]
fn list_pages_their_metric_sets_and_cursors() {
    let body = json!({"tickets": [{"id": 1, "subject": "A", "status": "solved", "priority": "urgent",
            "created_at": "2024-05-01T10:00:00Z", "updated_at": "2024-05-02T10:00:00Z", "requester_id": 9,
            "organization_id": null}],
        "metric_sets": [{"ticket_id": 1, "solved_at": "2024-05-02T09:00:00Z",
            "reply_time_in_minutes": {"calendar": 90, "business": 60}}],
        "meta": {"has_more": true, "after_cursor": "xNjo=", "before_cursor": "yNz"},
        "links": {"next": "https://acme.zendesk.com/api/v2/tickets.json?page%5Bafter%5D=xNjo%3D&page%5Bsize%5D=100"}});
    let (objects, next) = page(body.to_string().as_bytes()).unwrap();
    assert_eq!((objects.len(), next.as_deref()), (1, Some("xNjo=")));
    let t = ticket(&objects[0], &account());
    assert_eq!((t.status, t.priority), (TicketStatus::Solved, TicketPriority::Urgent));
    assert_eq!(t.first_response_at.unwrap().to_rfc3339(), "2024-05-01T11:30:00+00:00");
    assert_eq!(t.resolved_at.unwrap().to_rfc3339(), "2024-05-02T09:00:00+00:00");
    let last = json!({"users": [], "meta": {"has_more": false, "after_cursor": null}});
    assert_eq!(page(last.to_string().as_bytes()).unwrap().1, None);
    assert!(page(b"{}").is_err());
    let r = &resources()[2];
    assert_eq!(
        page_url("https://acme.zendesk.com/", r, Some("xNjo=")),
        "https://acme.zendesk.com/api/v2/tickets.json?page[size]=100&include=metric_sets&page[after]=xNjo%3D"
    );
    assert_eq!(auth_headers("ana@acme.io/token:abc")[0].1, "Basic YW5hQGFjbWUuaW8vdG9rZW46YWJj");
    assert_eq!(auth_headers("oauth-token")[0].1, "Bearer oauth-token");
}

#[test]
fn a_triggers_rating_body_is_read_as_zendesk_renders_it() {
    let body = |rating: &str, updated: &str| {
        json!({"type": "satisfaction_rating", "ticket_id": "5158", "rating": rating, "comment": "Thanks!",
            "requester_id": "", "requester_email": "Ana@Acme.io", "updated_at": updated})
        .to_string()
        .into_bytes()
    };
    let d = delivery(&body("Good, I'm satisfied", "2024-05-01T10:30Z")).unwrap();
    assert_eq!(
        (d.event_id.as_str(), d.event_type.as_str()),
        ("satisfaction_rating:5158:good, i'm satisfied:1714559400", RATING_TYPE)
    );
    let o = &d.objects[0];
    assert_eq!(
        (o.kind.as_str(), o.object_id.as_str(), o.parent_id.as_deref(), o.version),
        ("ticket", "5158", None, 1_714_559_400_000)
    );
    assert_eq!(o.payload["satisfaction_rating"]["score"], "good");
    assert_eq!(o.payload["requester"]["email"], "ana@acme.io");
    // Alone, it tells nothing; over the stored ticket, it is its CSAT and one event.
    assert!(outputs(o, None, &account()).is_empty());
    let stored = ticket_of(&event(
        "ticket.created",
        "2024-05-01T10:00:01Z",
        detail("SOLVED", "NORMAL", "2024-05-01T10:00:00Z"),
        json!({}),
    ));
    let mut rated = o.clone();
    complete(&mut rated, &stored);
    assert_eq!(rated.parent_id.as_deref(), Some("8447346624126"), "where the ticket is");
    let t = ticket(&rated, &account());
    assert_eq!(
        (t.csat, t.status, t.attributes["csat_comment"].as_str()),
        (Some(5), TicketStatus::Solved, Some("Thanks!"))
    );
    assert_eq!(
        names(&outputs(&rated, Some(&stored), &account())),
        ["CSAT Rated zendesk:5158:csat:2024-05-01T10:30:00Z:5"]
    );
    for (rating, score) in [
        ("Bad, I'm unsatisfied", json!("bad")),
        ("Offered", json!("offered")),
        ("", json!("unoffered")),
        ("4", json!(4)),
    ] {
        let d = delivery(&body(rating, "2024-05-01T10:30:00Z")).unwrap();
        assert_eq!(d.objects[0].payload["satisfaction_rating"]["score"], score, "{rating}");
    }
    for bad in [body("so-so", "2024-05-01T10:30Z"), body("Good", "yesterday"), body("9", "2024-05-01T10:30Z")] {
        assert!(matches!(delivery(&bad), Err(WebhookError::BadPayload(_))));
    }
}

#[test]
fn a_rating_delivered_after_a_later_event_of_its_ticket_is_taken_when_newer_than_what_it_knows() {
    let rating = |rating: &str, updated: &str| {
        let body = json!({"type": "satisfaction_rating", "ticket_id": "5158", "rating": rating,
            "updated_at": updated});
        delivery(body.to_string().as_bytes()).unwrap().objects.pop().unwrap()
    };
    // Read by a backfill at 11:00 with no rating yet; an agent's note at 12:00.
    let backfilled = ticket_of(&event(
        "ticket.created",
        "2024-05-01T11:00:00Z",
        detail("SOLVED", "NORMAL", "2024-05-01T11:00:00Z"),
        json!({}),
    ));
    let mut noted = ticket_of(&event(
        "ticket.tags_changed",
        "2024-05-01T12:00:00Z",
        detail("SOLVED", "HIGH", "2024-05-01T12:00:00Z"),
        json!({}),
    ));
    complete(&mut noted, &backfilled);
    assert!(noted.payload.get(RATING).is_none());
    // Rated bad at 11:30, delivered after the note: the noted ticket with the rating.
    let mut late_bad = rating("Bad, I'm unsatisfied", "2024-05-01T11:30Z");
    assert!(late(&mut late_bad, &noted));
    assert_eq!((late_bad.version, late_bad.parent_id.as_deref()), (noted.version, Some("8447346624126")));
    let t = ticket(&late_bad, &account());
    assert_eq!((t.csat, t.priority, t.status), (Some(1), TicketPriority::High, TicketStatus::Solved));
    let told = outputs(&late_bad, Some(&noted), &account());
    assert_eq!(names(&told), ["CSAT Rated zendesk:5158:csat:2024-05-01T11:30:00Z:1"]);
    let Some(Output::Event { at, .. }) = told.first() else { unreachable!("an event first") };
    assert_eq!(at.to_rfc3339(), "2024-05-01T11:30:00+00:00", "told when it was given");
    // What is older than the rating the ticket holds is stale; so is what is not older than
    // the ticket, and what is not a trigger's rating.
    let mut older = rating("Good, I'm satisfied", "2024-05-01T11:20Z");
    assert!(!late(&mut older, &late_bad));
    assert_eq!(older.version, 1_714_562_400_000, "left as it was");
    assert!(!late(&mut rating("Good, I'm satisfied", "2024-05-01T12:10Z"), &noted), "newer: not late");
    assert!(!late(&mut backfilled.clone(), &noted), "a ticket's whole state");

    // A rating read with the ticket by a backfill is known as of that read, also once a later
    // event keeps it: a trigger's rating from before that read is stale, one from after it is
    // taken.
    let mut read = backfilled.clone();
    read.payload[RATING] = json!({"id": 1001, "score": "good"});
    let mut kept = noted.clone();
    kept.payload.as_object_mut().unwrap().remove(RATING);
    complete(&mut kept, &read);
    assert_eq!(kept.payload[RATING][RATED_AT], "2024-05-01T11:00:00Z", "known as of the backfill's read");
    assert!(!late(&mut rating("Bad, I'm unsatisfied", "2024-05-01T10:50Z"), &kept));
    let mut after_read = rating("Bad, I'm unsatisfied", "2024-05-01T11:10Z");
    assert!(late(&mut after_read, &kept));
    assert_eq!(ticket(&after_read, &account()).csat, Some(1));
    assert!(!late(&mut rating("Bad, I'm unsatisfied", "2024-05-01T10:50Z"), &read), "the read itself");
}
