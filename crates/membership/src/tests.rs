use super::*;
use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde_json::{Value, json};

fn at(month: u32, day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, hour, 0, 0).unwrap()
}

fn track(id: &str, user: &str, account: &str, event: &str, when: DateTime<Utc>) -> Value {
    json!({"type": "track", "messageId": id, "userId": user, "event": event,
           "context": {"groupId": account}, "timestamp": when.to_rfc3339()})
}

struct World {
    _dir: tempfile::TempDir,
    store: Arc<store_sqlite::SqliteStore>,
    ws: WorkspaceId,
    engine: Engine,
}

impl World {
    async fn new(events: Value) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(store_sqlite::SqliteStore::open_in_dir(dir.path()).unwrap());
        let ws = store.create_workspace("Segments").await.unwrap().workspace_id;
        let world = World { _dir: dir, engine: Engine::new(store.clone()), store, ws };
        world.add(events).await;
        world
    }

    /// Appends events and processes them, as ingest would.
    async fn add(&self, events: Value) {
        self.store.append_events(&self.ws, &store::contract::events(events)).await.unwrap();
        let processor = processor::Processor::new(self.store.clone(), Default::default());
        processor.run_until_idle(&self.ws).await.unwrap();
    }

    async fn create(&self, name: &str, condition: &str, now: DateTime<Utc>) -> Result<Saved> {
        let d = Definition {
            name: name.into(),
            kind: SubjectKind::Accounts,
            condition: condition.into(),
            description: None,
        };
        self.engine.create(&self.ws, &d, now).await
    }

    async fn members(&self, segment_id: &str) -> Vec<String> {
        self.engine.members(&self.ws, segment_id).await.unwrap()
    }
}

fn entries(changes: &[SegmentChange]) -> Vec<(String, bool)> {
    changes.iter().map(|c| (c.subject_id.clone(), c.entered)).collect()
}

/// acme created reports on the 1st and the 17th; beta only logs in; gamma's last report was
/// on the 10th.
fn story() -> Value {
    json!([
        track("e1", "u1", "acme", "Report Created", at(11, 1, 9)),
        track("e2", "u1", "acme", "Report Created", at(11, 17, 9)),
        track("e3", "u2", "beta", "login", at(11, 18, 9)),
        track("e4", "u3", "gamma", "Report Created", at(11, 10, 9)),
        track("e5", "u3", "gamma", "login", at(11, 19, 9)),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_based_condition_flips_at_its_moment_and_entries_are_recorded() {
    let w = World::new(story()).await;
    let now = at(11, 20, 12);
    let saved = w.create("Reporting lapsed", "count(event \"report_created\", 7d) == 0", now).await.unwrap();
    assert_eq!(saved.warnings, []);
    assert_eq!(saved.size, 2);
    let id = saved.segment.segment_id.clone();
    assert_eq!(w.members(&id).await, ["beta", "gamma"]);
    let changes = w.store.segment_changes(&w.ws, 0, 100).await.unwrap();
    assert_eq!(entries(&changes), [("beta".into(), true), ("gamma".into(), true)]);
    assert!(changes.iter().all(|c| c.at == now && c.segment_id == id));

    // acme's report of the 17th leaves the 7-day window at midnight of the 24th, not before.
    assert_eq!(entries(&w.engine.run_due(&w.ws, at(11, 23, 23)).await.unwrap()), []);
    let flipped = w.engine.run_due(&w.ws, at(11, 24, 0)).await.unwrap();
    assert_eq!(entries(&flipped), [("acme".into(), true)]);
    assert_eq!(flipped[0].at, at(11, 24, 0));
    assert_eq!(w.members(&id).await, ["acme", "beta", "gamma"]);
    // Nothing is left to wait for.
    assert!(w.store.due_checks(&w.ws, at(12, 31, 0), 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_moves_an_account_through_the_segments_that_test_each_other() {
    let w = World::new(story()).await;
    let now = at(11, 20, 12);
    let lapsed = w.create("Reporting lapsed", "count(event \"Report Created\", 7d) == 0", now).await.unwrap();
    let active =
        w.create("Active lapsed", "in segment \"Reporting lapsed\" and active_days(3d) >= 1", now).await.unwrap();
    assert_eq!(w.members(&active.segment.segment_id).await, ["beta", "gamma"]);

    // gamma creates a report: it leaves both, in one pass, the dependent after the other.
    w.add(json!([track("e6", "u3", "gamma", "Report Created", at(11, 20, 13))])).await;
    let later = at(11, 20, 14);
    let changes = w.engine.evaluate_accounts(&w.ws, &[AccountId::parse("gamma").unwrap()], later).await.unwrap();
    let by_segment: Vec<(String, String, bool)> =
        changes.iter().map(|c| (c.segment_id.clone(), c.subject_id.clone(), c.entered)).collect();
    assert_eq!(
        by_segment,
        [
            (lapsed.segment.segment_id.clone(), "gamma".into(), false),
            (active.segment.segment_id.clone(), "gamma".into(), false)
        ]
    );
    assert_eq!(w.members(&lapsed.segment.segment_id).await, ["beta"]);
    assert_eq!(w.members(&active.segment.segment_id).await, ["beta"]);
    // An account evaluated with nothing new changes nothing.
    let again = w.engine.evaluate_accounts(&w.ws, &[AccountId::parse("beta").unwrap()], later).await.unwrap();
    assert_eq!(again, []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_counts_without_saving_and_bad_definitions_are_refused() {
    let w = World::new(story()).await;
    let now = at(11, 20, 12);
    let p = w
        .engine
        .preview(
            &w.ws,
            SubjectKind::Accounts,
            "first(event \"Report Created\") is set and traits.tier is not set",
            now,
            1,
        )
        .await
        .unwrap();
    assert_eq!((p.size, p.of), (2, 3));
    assert_eq!(p.sample, ["acme"]);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(w.store.list_segments(&w.ws).await.unwrap().is_empty(), "a preview saves nothing");

    let Err(Error::Invalid(e)) = w.create("Broken", "health < 40 and\n  plan in (\"pro\" \"team\")", now).await else {
        panic!("a condition that does not parse is refused")
    };
    assert_eq!((e.line, e.column), (2, 18));
    let Err(Error::Refused(why)) = w.create("", "health < 40", now).await else { panic!("a name is needed") };
    assert!(why.starts_with("name:"), "{why}");

    let a = w.create("A", "health < 40", now).await.unwrap();
    w.create("B", "in segment \"A\"", now).await.unwrap();
    // A preview reads the memberships of the segments its condition names.
    let c = w.create("C", "first(event \"Report Created\") is set and traits.tier is not set", now).await.unwrap();
    let mut in_c = w.members(&c.segment.segment_id).await;
    in_c.sort();
    assert_eq!(in_c.len(), 2, "{in_c:?}");
    let p = w.engine.preview(&w.ws, SubjectKind::Accounts, "in segment \"C\"", now, 10).await.unwrap();
    let mut sample = p.sample.clone();
    sample.sort();
    assert_eq!((p.size, sample), (2, in_c.clone()));
    let p = w.engine.preview(&w.ws, SubjectKind::Accounts, "not in segment \"C\" or in segment \"A\"", now, 10).await;
    assert_eq!(p.unwrap().size, 1);
    let d = Definition {
        name: "A".into(),
        kind: SubjectKind::Accounts,
        condition: "in segment \"B\"".into(),
        description: None,
    };
    let Err(Error::Refused(why)) = w.engine.update(&w.ws, &a.segment.segment_id, &d, now).await else {
        panic!("a cycle is refused")
    };
    assert_eq!(why, "condition: segments would test their own membership through each other: B -> A -> B");
    let Err(Error::Refused(why)) = w.engine.delete(&w.ws, &a.segment.segment_id).await else {
        panic!("a segment another tests stays")
    };
    assert!(why.starts_with("B test membership of \"A\""), "{why}");
    let Err(Error::Refused(why)) = w.create("A", "health < 10", now).await else { panic!("names are unique") };
    assert_eq!(why, "name: a segment named \"A\" exists");
    let people = Definition {
        name: "P".into(),
        kind: SubjectKind::People,
        condition: "count(event \"login\", 7d) > 0".into(),
        description: None,
    };
    let Err(Error::Invalid(e)) = w.engine.create(&w.ws, &people, now).await else {
        panic!("a person's events are not counted")
    };
    assert!(e.message.starts_with("count counts an account's events"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_segments_take_traits_times_and_other_people_segments() {
    let w = World::new(json!([
        {"type": "identify", "messageId": "i1", "userId": "u1", "traits": {"email": "ana@acme.test", "role": "admin"},
         "timestamp": at(11, 1, 9).to_rfc3339()},
        {"type": "identify", "messageId": "i2", "userId": "u2", "traits": {"email": "bo@beta.test", "role": "viewer"},
         "timestamp": at(11, 2, 9).to_rfc3339()},
        track("e1", "u1", "acme", "login", at(11, 18, 9)),
        track("e2", "u2", "beta", "login", at(11, 5, 9)),
        track("e3", "u3", "beta", "login", at(11, 19, 9)),
    ]))
    .await;
    let now = at(11, 20, 12);
    let person = |name: &str, condition: &str| Definition {
        name: name.into(),
        kind: SubjectKind::People,
        condition: condition.into(),
        description: None,
    };
    let admins = w.engine.create(&w.ws, &person("Admins", "role == \"admin\" or email is not set"), now).await.unwrap();
    assert_eq!(admins.size, 2, "ana, and u3 who has no email");
    let quiet = w
        .engine
        .create(&w.ws, &person("Quiet admins", "in segment \"Admins\" and days_since(last_seen) > 5"), now)
        .await
        .unwrap();
    assert_eq!(quiet.size, 0);
    // Ana's last login was on the 18th at 9: she is quiet from the 24th at 9, and no later
    // event moves her.
    let flipped = w.engine.run_due(&w.ws, at(11, 24, 9)).await.unwrap();
    let people = w.store.list_people(&w.ws, &store::PageRequest::first(10)).await.unwrap().items;
    let ana = people.iter().find(|p| p.user_id.as_deref() == Some("u1")).unwrap().person_id.clone();
    assert_eq!(entries(&flipped), [(ana, true)]);
    assert_eq!(flipped[0].segment_id, quiet.segment.segment_id);
    // A people segment is not an account segment: the names are apart.
    let d = Definition {
        name: "Accounts of admins".into(),
        kind: SubjectKind::Accounts,
        condition: "in segment \"Admins\"".into(),
        description: None,
    };
    assert!(matches!(w.engine.create(&w.ws, &d, now).await, Err(Error::Invalid(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_recompute_agrees_with_evaluating_the_changed_account() {
    let (one, all) = (World::new(story()).await, World::new(story()).await);
    let now = at(11, 20, 12);
    let later = at(11, 20, 14);
    let mut ids = Vec::new();
    for w in [&one, &all] {
        let a = w.create("Reporting lapsed", "count(event \"Report Created\", 7d) == 0", now).await.unwrap();
        let b = w
            .create("Quiet and lapsed", "in segment \"Reporting lapsed\" and active_days(2d) == 0", now)
            .await
            .unwrap();
        ids.push((a.segment.segment_id, b.segment.segment_id));
        w.add(json!([
            track("e6", "u3", "gamma", "Report Created", at(11, 20, 13)),
            track("e7", "u4", "delta", "login", at(11, 20, 13)),
        ]))
        .await;
    }
    let by_one = one
        .engine
        .evaluate_accounts(&one.ws, &["gamma", "delta"].map(|a| AccountId::parse(a).unwrap()), later)
        .await
        .unwrap();
    let by_all = all.engine.recompute_all(&all.ws, later).await.unwrap();
    // The same changes either way: gamma reported again, delta is new and has never reported.
    let mut one_changes: Vec<(String, bool)> = entries(&by_one);
    let mut all_changes: Vec<(String, bool)> = entries(&by_all);
    one_changes.sort();
    all_changes.sort();
    assert_eq!(one_changes, all_changes);
    assert_eq!(all_changes, [("delta".into(), true), ("gamma".into(), false)]);
    for (w, (a, b)) in [(&one, &ids[0]), (&all, &ids[1])] {
        assert_eq!(w.members(a).await, ["beta", "delta"]);
        assert_eq!(w.members(b).await, ["beta"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_beside_processing_an_event_moves_its_account_at_once() {
    let now = Utc::now();
    let w = World::new(json!([
        track("e1", "u1", "acme", "Report Created", now - chrono::Duration::days(1)),
        track("e2", "u2", "beta", "login", now - chrono::Duration::days(1)),
    ]))
    .await;
    let saved = w.create("Reporting lapsed", "count(event \"Report Created\", 7d) == 0", now).await.unwrap();
    let id = saved.segment.segment_id.clone();
    assert_eq!(w.members(&id).await, ["beta"]);

    let engine = Arc::new(Engine::new(w.store.clone()));
    let processor = processor::Processor::new(w.store.clone(), Default::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let touched = processor.subscribe();
    let tasks = [
        tokio::spawn(processor.clone().run(shutdown.clone())),
        // No pass at all in the time the test takes (the first comes a tick after the start):
        // only what slices touched is evaluated.
        tokio::spawn(engine.run(Some(touched), Duration::from_secs(3600), Duration::from_secs(3600), shutdown.clone())),
    ];
    w.store
        .append_events(
            &w.ws,
            &store::contract::events(json!([track("e3", "u2", "beta", "Report Created", Utc::now())])),
        )
        .await
        .unwrap();
    processor.wake();
    let deadline = Instant::now() + Duration::from_secs(20);
    while w.members(&id).await.contains(&"beta".to_owned()) {
        assert!(Instant::now() < deadline, "beta never left the segment");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let changes = w.store.segment_changes(&w.ws, 0, 100).await.unwrap();
    assert_eq!(entries(&changes), [("beta".into(), true), ("beta".into(), false)]);
    shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pass_never_writes_over_a_fresher_result() {
    let w = World::new(story()).await;
    let now = at(11, 20, 12);
    let saved = w.create("Reporting lapsed", "count(event \"Report Created\", 7d) == 0", now).await.unwrap();
    let id = saved.segment.segment_id.clone();
    assert_eq!(w.members(&id).await, ["beta", "gamma"]);

    // A pass reads everything (beta lapsed)...
    let compiled = w.engine.workspace(&w.ws).await.unwrap();
    let k = compiled.of(SubjectKind::Accounts);
    let pass = w.engine.begin_pass(&w.ws);
    let subjects = w.engine.load_all(&w.ws, SubjectKind::Accounts, k.reads.clone(), now).await.unwrap();
    let current = w.engine.all_memberships(&w.ws, k).await.unwrap();
    let stale = evaluate_in_order(k, &subjects, &subjects.ids(), current, now);
    // ...then beta creates a report and is evaluated alone, leaving...
    w.add(json!([track("e9", "u2", "beta", "Report Created", at(11, 20, 13))])).await;
    let later = at(11, 20, 14);
    let left = w.engine.evaluate_accounts(&w.ws, &[AccountId::parse("beta").unwrap()], later).await.unwrap();
    assert_eq!(entries(&left), [("beta".into(), false)]);
    // ...and the pass's write, read before the report, leaves beta as it is now.
    let written = w.engine.write_pass(&pass, &id, &stale[0], later).await.unwrap();
    assert_eq!(entries(&written), []);
    drop(pass);
    assert_eq!(w.members(&id).await, ["gamma"]);
    assert!(w.engine.passes.lock().unwrap().is_empty(), "a pass ends when dropped");
}

fn subscription(id: &str, account: &str, status: store::SubscriptionStatus, period_end: DateTime<Utc>) -> Subscription {
    Subscription {
        subscription_id: id.into(),
        account_id: AccountId::parse(account).unwrap(),
        plan: Some("pro".into()),
        status,
        mrr: domain::Money::new(10_000, domain::Currency::parse("USD").unwrap()),
        quantity: 5,
        started_at: at(1, 1, 0),
        ended_at: None,
        current_period_end: Some(period_end),
        cancel_at_period_end: false,
        updated_at: at(1, 1, 0),
        attributes: json!({}),
    }
}

fn ticket(id: &str, account: &str, status: store::TicketStatus, priority: store::TicketPriority) -> Ticket {
    Ticket {
        ticket_id: id.into(),
        account_id: Some(AccountId::parse(account).unwrap()),
        person_id: None,
        subject: "It broke".into(),
        status,
        priority,
        opened_at: at(1, 5, 9),
        first_response_at: None,
        resolved_at: None,
        csat: None,
        updated_at: at(11, 19, 9),
        attributes: json!({}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_enter_at_their_moment_from_the_latest_end_of_the_active_subscriptions() {
    use store::SubscriptionStatus::{Active, Canceled, Trialing};
    let w = World::new(story()).await;
    let subs = [
        // acme renews on February 1st: its later, cancelled subscription does not count.
        subscription("s1", "acme", Active, at(2, 1, 0).with_year(2027).unwrap()),
        subscription("s2", "acme", Canceled, at(6, 1, 0).with_year(2027).unwrap()),
        // beta has two active subscriptions: the contract ends with the later one.
        subscription("s3", "beta", Active, at(12, 10, 0)),
        subscription("s4", "beta", Active, at(12, 24, 0)),
        // gamma only tries the product.
        subscription("s5", "gamma", Trialing, at(12, 5, 0)),
    ];
    for s in &subs {
        w.store.upsert_subscription(&w.ws, s).await.unwrap();
    }
    let now = at(11, 20, 12);
    let saved = w.create("Renewal in 60 days", "days_until(renews_at) < 60", now).await.unwrap();
    let id = saved.segment.segment_id.clone();
    assert_eq!(w.members(&id).await, ["beta"]);
    // A band of days before the renewal: beta, 33 days and a half before its renewal, is not in it yet.
    let band = w.create("Renewal in 30 days", "days_until(renews_at) < 30 and days_until(renews_at) >= 7", now);
    let band = band.await.unwrap().segment.segment_id;
    assert_eq!(w.members(&band).await, Vec::<String>::new());

    // beta enters the band 30 days before December 24th, and leaves it 7 days before.
    assert_eq!(entries(&w.engine.run_due(&w.ws, at(11, 23, 23)).await.unwrap()), []);
    assert_eq!(entries(&w.engine.run_due(&w.ws, at(11, 24, 0)).await.unwrap()), [("beta".into(), true)]);
    // acme enters 60 days before February 1st, at that moment.
    let enters = at(2, 1, 0).with_year(2027).unwrap() - chrono::Duration::days(60);
    assert_eq!(entries(&w.engine.run_due(&w.ws, enters - chrono::Duration::seconds(1)).await.unwrap()), []);
    let flipped = w.engine.run_due(&w.ws, enters).await.unwrap();
    assert_eq!(entries(&flipped), [("acme".into(), true)]);
    assert_eq!(flipped[0].at, enters);
    assert_eq!(w.members(&id).await, ["acme", "beta"]);
    assert_eq!(entries(&w.engine.run_due(&w.ws, at(12, 17, 0)).await.unwrap()), [("beta".into(), false)]);
    // A full pass agrees.
    assert_eq!(entries(&w.engine.recompute_all(&w.ws, at(12, 17, 1)).await.unwrap()), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_counts_follow_the_tickets_status_and_priority() {
    use store::TicketPriority::{High, Low, Normal, Urgent};
    use store::TicketStatus::{Closed, New, Open, Pending, Solved};
    let w = World::new(story()).await;
    let tickets = [
        ticket("t1", "acme", Open, Urgent),
        ticket("t2", "acme", Pending, Low),
        ticket("t3", "acme", Solved, High),
        ticket("t4", "beta", New, High),
        ticket("t5", "gamma", Closed, Urgent),
        ticket("t6", "gamma", Open, Normal),
    ];
    for t in &tickets {
        w.store.upsert_ticket(&w.ws, t).await.unwrap();
    }
    let now = at(11, 20, 12);
    let urgent = w.create("Urgent ticket open", "urgent_tickets > 0", now).await.unwrap().segment.segment_id;
    assert_eq!(w.members(&urgent).await, ["acme", "beta"]);
    let busy = w.create("Busy support", "open_tickets >= 2", now).await.unwrap().segment.segment_id;
    assert_eq!(w.members(&busy).await, ["acme"]);

    // acme's urgent ticket is solved: evaluating acme alone (as after a change) lets it go.
    let mut solved = tickets[0].clone();
    solved.status = Solved;
    solved.updated_at = at(11, 21, 9);
    w.store.upsert_ticket(&w.ws, &solved).await.unwrap();
    let later = at(11, 21, 10);
    let changes = w.engine.evaluate_accounts(&w.ws, &[AccountId::parse("acme").unwrap()], later).await.unwrap();
    assert_eq!(entries(&changes), [("acme".into(), false), ("acme".into(), false)]);
    assert_eq!(w.members(&urgent).await, ["beta"]);
    assert_eq!(entries(&w.engine.recompute_all(&w.ws, later).await.unwrap()), []);
}

/// `active_users` reads the 28 days it counts, though the condition counts no events: in a
/// preview, a full pass and an account's evaluation alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_users_are_counted_over_their_days() {
    let w = World::new(story()).await;
    // 28 days, today included: from November 18th (beta's login and gamma's) on the 15th of
    // December, from the 19th (gamma's alone) on the 16th.
    for (now, members) in [(at(12, 15, 12), vec!["beta", "gamma"]), (at(12, 16, 12), vec!["gamma"])] {
        let condition = "active_users >= 1 and health is not set";
        let p = w.engine.preview(&w.ws, SubjectKind::Accounts, condition, now, 10).await.unwrap();
        assert_eq!(p.sample, members, "a preview on {now}");
        let name = format!("Active on {}", now.day());
        let saved = w.create(&name, condition, now).await.unwrap();
        assert_eq!(w.members(&saved.segment.segment_id).await, members, "saved on {now}");
        w.engine.recompute_all(&w.ws, now).await.unwrap();
        assert_eq!(w.members(&saved.segment.segment_id).await, members, "a full pass on {now}");
        let ids = ["acme", "beta", "gamma"].map(|a| AccountId::parse(a).unwrap());
        w.engine.evaluate_accounts(&w.ws, &ids, now).await.unwrap();
        assert_eq!(w.members(&saved.segment.segment_id).await, members, "each account on {now}");
    }
}

/// Scores and subscriptions are read when a condition names what comes from them, and only
/// then: each such condition agrees in a preview, a full pass and an account's evaluation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_and_subscriptions_are_read_for_the_conditions_that_name_them() {
    use store::SubscriptionStatus::Active;
    let w = World::new(story()).await;
    let score = |account: &str, health: f64, churn: f64| {
        store::contract::score(account, "2026-11-19", health, Some(churn), None)
    };
    let scores = [score("acme", 80.0, 0.2), score("gamma", 30.0, 0.7)];
    w.store.put_scores(&w.ws, &scores).await.unwrap();
    // beta pays for a plan: its plan, MRR and seats are its subscription's.
    w.store.upsert_subscription(&w.ws, &subscription("s1", "beta", Active, at(12, 24, 0))).await.unwrap();
    let now = at(11, 20, 12);
    let cases = [
        ("health < 40", vec!["gamma"]),
        ("band == \"healthy\" or churn_risk_30d > 0.5", vec!["acme", "gamma"]),
        ("plan == \"pro\"", vec!["beta"]),
        ("mrr >= 100 and seats == 5", vec!["beta"]),
        ("health is not set and plan is not set", vec![]),
        ("days_since(last_seen) < 2", vec!["gamma"]),
    ];
    agree_everywhere(&w, "Case", &cases, now).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_traits_a_condition_names_are_read_and_agree_everywhere() {
    let w = World::new(story()).await;
    let group = |id: &str, user: &str, account: &str, traits: Value| {
        json!({"type": "group", "messageId": id, "userId": user, "groupId": account, "traits": traits,
            "timestamp": at(11, 19, 10).to_rfc3339()})
    };
    w.add(json!([
        group(
            "g1",
            "u1",
            "acme",
            json!({"name": "Acme", "plan": "team", "region": "EMEA", "website": "acme.io",
            "notes": {"long": ["x", "y"], "plan": "ignored"}})
        ),
        group("g2", "u3", "gamma", json!({"region": "US", "seats": 7, "domain": "gamma.dev", "plan": null})),
    ]))
    .await;
    let now = at(11, 20, 12);
    let cases = [
        ("traits.region == \"EMEA\"", vec!["acme"]),
        ("region is set and region != \"EMEA\"", vec!["gamma"]),
        ("domain == \"acme.io\" or domain == \"gamma.dev\"", vec!["acme", "gamma"]),
        ("plan == \"team\" or seats == 7", vec!["acme", "gamma"]),
        ("traits.tier is not set and region == \"US\"", vec!["gamma"]),
        ("name == \"Acme\"", vec!["acme"]),
        ("plan is not set and name is not set", vec!["beta", "gamma"]),
    ];
    agree_everywhere(&w, "Traits", &cases, now).await;
}

/// Each condition selects its members alike in a preview, once saved, in a full pass and
/// evaluated account by account (segments named `<prefix> <n>`).
async fn agree_everywhere(w: &World, prefix: &str, cases: &[(&str, Vec<&str>)], now: DateTime<Utc>) {
    for (i, (condition, members)) in cases.iter().enumerate() {
        let p = w.engine.preview(&w.ws, SubjectKind::Accounts, condition, now, 10).await.unwrap();
        assert_eq!(&p.sample, members, "a preview of {condition}");
        let saved = w.create(&format!("{prefix} {i}"), condition, now).await.unwrap();
        let id = saved.segment.segment_id;
        assert_eq!(&w.members(&id).await, members, "{condition} saved");
        w.engine.recompute_all(&w.ws, now).await.unwrap();
        assert_eq!(&w.members(&id).await, members, "{condition} in a full pass");
        let ids = ["acme", "beta", "gamma"].map(|a| AccountId::parse(a).unwrap());
        w.engine.evaluate_accounts(&w.ws, &ids, now).await.unwrap();
        assert_eq!(&w.members(&id).await, members, "{condition} account by account");
    }
}
