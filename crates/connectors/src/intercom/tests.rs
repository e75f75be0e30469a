use super::*;

fn account() -> AccountId {
    AccountId::parse("acme").unwrap()
}

/// A conversation as the REST API (2.x) gives it.
fn conversation(state: &str, updated: i64, stats: Value, rating: Value) -> Value {
    json!({"type": "conversation", "id": "1295", "title": null, "created_at": 1_714_557_600, "updated_at": updated,
        "waiting_since": null, "snoozed_until": null, "open": state == "open", "state": state, "read": true,
        "priority": "priority", "admin_assignee_id": 814_860, "team_assignee_id": null,
        "source": {"type": "conversation", "id": "403918330", "delivered_as": "customer_initiated",
            "subject": "Exports fail", "body": "<p>Exports fail</p>",
            "author": {"type": "user", "id": "6643703ffa8f1ef4f2ca0a2f", "name": "Ana", "email": "ana@acme.io"}},
        "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": "6643703ffa8f1ef4f2ca0a2f",
            "external_id": "u-ana"}]},
        "statistics": stats, "conversation_rating": rating})
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
fn notifications_carry_the_item_at_its_update() {
    let body = json!({"type": "notification_event", "app_id": "abc123", "id": "notif_1", "topic": "conversation.user.created",
        "delivery_status": "pending", "delivery_attempts": 1, "delivered_at": 0, "first_sent_at": 1_714_557_601,
        "created_at": 1_714_557_601, "self": null, "links": {},
        "data": {"type": "notification_event_data", "item": conversation("open", 1_714_557_600, json!({}), Value::Null)}});
    let d = delivery(body.to_string().as_bytes()).unwrap();
    assert_eq!((d.event_id.as_str(), d.event_type.as_str()), ("notif_1", "conversation.user.created"));
    let o = &d.objects[0];
    assert_eq!(
        (o.kind.as_str(), o.object_id.as_str(), o.parent_id.as_deref(), o.version),
        ("conversation", "1295", Some("6643703ffa8f1ef4f2ca0a2f"), 1_714_557_600_000)
    );
    assert_eq!(o.label, "#1295 Exports fail");
    let t = ticket(o, &account());
    assert_eq!((t.status, t.priority, t.subject.as_str()), (TicketStatus::New, TicketPriority::High, "Exports fail"));
    assert_eq!(names(&outputs(o, None, &account())), ["Ticket Opened intercom:1295:opened"]);
    let ping = json!({"type": "notification_event", "id": "notif_2", "topic": "ping", "created_at": 1,
        "data": {"item": {"type": "ping", "message": "hi"}}});
    assert!(delivery(ping.to_string().as_bytes()).unwrap().objects.is_empty());
    for bad in [json!({"type": "event"}), json!({"type": "notification_event", "id": "n", "topic": "t"}), json!([1])] {
        assert!(matches!(delivery(bad.to_string().as_bytes()), Err(WebhookError::BadPayload(_))), "{bad}");
    }
}

#[test]
fn conversations_map_with_replies_closes_and_ratings() {
    let stats = json!({"type": "conversation_statistics", "first_contact_reply_at": 1_714_557_600,
        "first_admin_reply_at": 1_714_559_400, "first_close_at": 1_714_564_800, "last_close_at": 1_714_564_800,
        "time_to_admin_reply": 1_800, "count_reopens": 0});
    let replied = object(conversation("open", 1_714_559_400, stats.clone(), Value::Null), 0).unwrap();
    let t = ticket(&replied, &account());
    assert_eq!((t.status, t.first_response_at.unwrap().timestamp()), (TicketStatus::Open, 1_714_559_400));
    let rating = json!({"rating": 4, "remark": "Good", "created_at": 1_714_565_000,
        "contact": {"type": "contact", "id": "6643703ffa8f1ef4f2ca0a2f"}, "teammate": {"type": "admin", "id": "814860"}});
    let closed = object(conversation("closed", 1_714_565_000, stats, rating), 0).unwrap();
    let c = ticket(&closed, &account());
    assert_eq!(
        (c.status, c.resolved_at.unwrap().timestamp(), c.csat, c.attributes["csat_comment"].as_str()),
        (TicketStatus::Solved, 1_714_564_800, Some(4), Some("Good"))
    );
    assert_eq!(
        names(&outputs(&closed, Some(&replied), &account())),
        ["Ticket Solved intercom:1295:solved:1714564800", "CSAT Rated intercom:1295:csat:1714565000:4"]
    );
    assert!(names(&outputs(&closed, Some(&closed), &account())).is_empty(), "the same state again says nothing");
    let mut snoozed = replied.clone();
    snoozed.payload["state"] = json!("snoozed");
    assert_eq!(ticket(&snoozed, &account()).status, TicketStatus::Pending);
    for (p, expected) in
        [("not_priority", TicketPriority::Normal), ("urgent", TicketPriority::Urgent), ("low", TicketPriority::Low)]
    {
        assert_eq!(priority(Some(p)), expected);
    }
}

#[test]
fn companies_and_contacts_match_by_their_fields() {
    let company = object(
        json!({"type": "company", "id": "531ee472cce572a6ec000006", "company_id": "acme", "name": "Acme",
            "website": "https://www.acme.io", "updated_at": 1_714_000_000, "custom_attributes": {}}),
        0,
    )
    .unwrap();
    let keys = match_keys(&company, "steward_account_id");
    assert_eq!((keys.external_account.as_deref(), keys.domain.as_deref()), (Some("acme"), Some("acme.io")));
    assert_eq!(
        (company.version, company.label.as_str()),
        (1_714_000_000_000, "Acme · acme · 531ee472cce572a6ec000006")
    );
    let contact = object(
        json!({"type": "contact", "id": "c1", "role": "user", "email": "Ops@Gmail.com",
        "custom_attributes": {"steward_account_id": "globex"}}),
        5,
    )
    .unwrap();
    let keys = match_keys(&contact, "steward_account_id");
    assert_eq!(
        (keys.external_account.as_deref(), keys.email.as_deref(), keys.domain.as_deref()),
        (Some("globex"), Some("ops@gmail.com"), None)
    );
    assert!(matches!(&outputs(&company, None, &account())[..], [Output::AccountTraits { .. }]));
    assert!(outputs(&contact, None, &account()).is_empty());
}

#[test]
fn list_pages_and_their_cursors() {
    let contacts = json!({"type": "list", "data": [{"type": "contact", "id": "c1", "updated_at": 5}], "total_count": 2,
        "pages": {"type": "pages", "next": {"page": 2, "starting_after": "WzE3MTQ1NTc2MDAwMDAsImMxIiwyXQ=="},
            "page": 1, "per_page": 1, "total_pages": 2}});
    let (objects, next) = page(contacts.to_string().as_bytes()).unwrap();
    assert_eq!((objects.len(), next.as_deref()), (1, Some("WzE3MTQ1NTc2MDAwMDAsImMxIiwyXQ==")));
    let companies = json!({"type": "list", "data": [], "total_count": 120,
        "pages": {"type": "pages", "next": "https://api.intercom.io/companies?per_page=50&page=2", "page": 1,
            "per_page": 50, "total_pages": 3}});
    assert_eq!(page(companies.to_string().as_bytes()).unwrap().1.as_deref(), Some("2"));
    let last = json!({"type": "conversation.list", "conversations": [], "pages": {"type": "pages", "page": 3,
        "per_page": 50, "total_pages": 3}});
    assert_eq!(page(last.to_string().as_bytes()).unwrap().1, None);
    assert!(page(b"{}").is_err());
    let [companies, contacts, _] = &resources()[..] else { panic!() };
    assert_eq!(page_url("http://h/", companies, Some("2")), "http://h/companies?per_page=50&page=2");
    assert_eq!(page_url("http://h", contacts, Some("Wz=")), "http://h/contacts?per_page=150&starting_after=Wz%3D");
    assert_eq!(auth_headers("tok")[1], ("intercom-version", API_VERSION.to_owned()));
}

#[test]
fn companies_past_ten_thousand_are_scrolled() {
    let companies = &resources()[0];
    let listed = |total: i64, page: i64| {
        json!({"type": "list", "data": [{"type": "company", "id": "c1", "updated_at": 1_700_000_000}],
            "total_count": total, "pages": {"type": "pages", "page": page, "per_page": 50, "total_pages": total / 50 + 1}})
        .to_string()
    };
    assert_eq!(page(listed(9_000, 1).as_bytes()).unwrap().1.as_deref(), Some("2"));
    assert_eq!(page(listed(10_050, 1).as_bytes()).unwrap().1.as_deref(), Some(SCROLL));
    assert_eq!(page_url("http://h/", companies, Some(SCROLL)), "http://h/companies/scroll");
    let scrolled = json!({"type": "list", "data": [{"type": "company", "id": "c2", "updated_at": 1_700_000_000}],
        "pages": null, "total_count": null, "scroll_param": "25b649f7-4d33-4ef6-88f5-60e5b8244309"});
    let (objects, next) = page(scrolled.to_string().as_bytes()).unwrap();
    assert_eq!(
        (objects[0].object_id.as_str(), next.as_deref()),
        ("c2", Some("scroll:25b649f7-4d33-4ef6-88f5-60e5b8244309"))
    );
    assert_eq!(
        page_url("http://h", companies, next.as_deref()),
        "http://h/companies/scroll?scroll_param=25b649f7-4d33-4ef6-88f5-60e5b8244309"
    );
    let done = json!({"type": "list", "data": [], "pages": null, "total_count": null, "scroll_param": "25b649f7"});
    assert_eq!(page(done.to_string().as_bytes()).unwrap().1, None, "an empty page ends the scroll");
    // A scroll does not outlive a minute unused: resumed or expired, it starts again.
    assert_eq!(resume_cursor(companies, next.clone()).as_deref(), Some(SCROLL));
    assert_eq!(resume_cursor(companies, Some("3".into())).as_deref(), Some("3"));
    assert_eq!(expired_cursor(companies, next.as_deref(), 404), Some(Some(SCROLL.to_owned())));
    assert_eq!(expired_cursor(companies, next.as_deref(), 400), None, "scroll_exists waits for the next run");
    assert_eq!(expired_cursor(companies, Some("3"), 404), None);
    assert_eq!(expired_cursor(&resources()[1], Some("scroll:x"), 404), None);
}
