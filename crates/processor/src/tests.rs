use std::sync::Arc;

use chrono::{TimeZone, Utc};
use domain::{AccountId, WorkspaceId};
use serde_json::{Value, json};
use store::{EventFilter, PageRequest, Store};
use store_sqlite::SqliteStore;

use crate::{Appended, Processor, ProcessorConfig};

struct App {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    ws: WorkspaceId,
}

impl App {
    async fn new() -> App {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open_in_dir(dir.path()).unwrap());
        let ws = store.create_workspace("test").await.unwrap().workspace_id;
        App { _dir: dir, store, ws }
    }

    async fn send(&self, messages: Value) {
        let body = json!({ "batch": messages }).to_string();
        let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        let parsed = capture::parse_batch(body.as_bytes(), now, &capture::Limits::default()).unwrap();
        assert!(parsed.rejected.is_empty());
        self.store.append_events(&self.ws, &parsed.events).await.unwrap();
    }

    async fn process(&self, batch: usize) {
        let p = Processor::new(self.store.clone(), ProcessorConfig { batch, max_batch: batch, ..Default::default() });
        p.run_until_idle(&self.ws).await.unwrap();
    }

    async fn person(&self, id: &str) -> store::Person {
        self.store.get_person(&self.ws, id).await.unwrap().unwrap_or_else(|| panic!("no person {id}"))
    }

    /// Everything processing derived, as one comparable value.
    async fn snapshot(&self) -> Value {
        let accounts = self.store.list_accounts(&self.ws, &PageRequest::first(1000)).await.unwrap().items;
        let events =
            self.store.list_events(&self.ws, &EventFilter::default(), &PageRequest::first(1000)).await.unwrap().items;
        let mut people = Vec::new();
        for e in &events {
            if let Some(p) = &e.person_id {
                people.push(serde_json::to_value(self.person(p).await).unwrap());
            }
        }
        people.sort_by_key(|p| p["user_ids"].to_string());
        people.dedup();
        let (from, to) = ("2026-01-01".parse().unwrap(), "2027-01-01".parse().unwrap());
        let usage: Vec<String> = self
            .store
            .accounts_usage(&self.ws, None, from, to)
            .await
            .unwrap()
            .into_iter()
            .map(|mut d| {
                // People's ids differ from run to run: their days do not.
                let mut days: Vec<(u64, u32)> = d.people.iter().map(|&(_, bits)| (0, bits)).collect();
                days.sort_unstable();
                d.people = days;
                format!("{d:?}")
            })
            .collect();
        json!({"accounts": accounts, "people": people, "usage": usage,
               "events": events.iter().map(|e| json!([e.message_id, e.person_id, e.account_ids])).collect::<Vec<_>>()})
    }
}

fn msg(kind: &str, id: &str, extra: Value) -> Value {
    let mut m = json!({"type": kind, "messageId": id, "timestamp": "2026-10-01T10:00:00Z"});
    m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    m
}

fn story() -> Value {
    json!([
        msg("page", "1", json!({"anonymousId": "anon-1", "name": "Pricing"})),
        msg("track", "2", json!({"anonymousId": "anon-1", "event": "Signed Up"})),
        msg("identify", "3", json!({"userId": "ana", "anonymousId": "anon-1", "traits": {"email": "ana@acme.test"}})),
        msg("group", "4", json!({"userId": "ana", "groupId": "acme", "traits": {"name": "Acme", "plan": "team"}})),
        msg("track", "5", json!({"userId": "ana", "event": "Report Created"})),
        msg("track", "6", json!({"userId": "bob", "event": "Signed In", "context": {"groupId": "acme"}})),
        msg("track", "7", json!({"anonymousId": "anon-9", "event": "Visited"})),
        msg("alias", "8", json!({"userId": "bob", "previousId": "anon-9"})),
        msg("identify", "9", json!({"userId": "cy", "anonymousId": "anon-1"})),
        msg("group", "10", json!({"userId": "cy", "groupId": "globex", "traits": {"name": "Globex"}})),
        // After the alias, Bob's old anonymous id names Bob, whichever slice learned it.
        msg("track", "11", json!({"anonymousId": "anon-9", "event": "Came Back"})),
        // Dan turns out to be Eve: Dan's device, not named by the alias, follows too.
        msg("track", "12", json!({"userId": "eve", "event": "Signed In"})),
        msg("identify", "13", json!({"userId": "dan", "anonymousId": "anon-5"})),
        msg("alias", "14", json!({"userId": "eve", "previousId": "dan"})),
        msg("track", "15", json!({"anonymousId": "anon-5", "event": "Came Back", "timestamp": "2026-10-02T10:00:00Z"})),
    ])
}

#[tokio::test]
async fn an_anonymous_visitor_who_signs_up_is_one_person_in_their_account() {
    let app = App::new().await;
    app.send(story()).await;
    app.process(1000).await;

    let ana = app.person("ana").await;
    assert_eq!(ana.user_ids, ["ana"]);
    assert_eq!(ana.traits, json!({"email": "ana@acme.test"}));
    assert_eq!(ana.account_ids, [AccountId::parse("acme").unwrap()]);
    let acme_events = app
        .store
        .list_events(
            &app.ws,
            &EventFilter { account_id: Some(AccountId::parse("acme").unwrap()), ..Default::default() },
            &PageRequest::first(100),
        )
        .await
        .unwrap();
    let mut ids: Vec<_> = acme_events.items.iter().map(|e| e.message_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["1", "11", "2", "3", "4", "5", "6", "7", "8"], "pre-signup events count for the account too");

    // The daily rollups count each event for the accounts its person was in then: Ana's
    // report (after she joined Acme) and Bob's two, not what either did before joining.
    let day: chrono::NaiveDate = "2026-10-01".parse().unwrap();
    let acme = AccountId::parse("acme").unwrap();
    let usage = app.store.account_usage(&app.ws, &acme, day, day.succ_opt().unwrap()).await.unwrap();
    let of = |metric: &str| usage.iter().find(|d| d.metric == metric).map(|d| (d.events, d.users));
    assert_eq!(of("$any"), Some((3, 2)), "{usage:?}");
    assert_eq!(of("Report Created"), Some((1, 1)));
    assert_eq!(of("Signed Up"), None, "Ana signed up before she was in Acme");

    let bob = app.person("anon-9").await;
    assert_eq!(
        (bob.user_ids.as_slice(), bob.anonymous_ids.as_slice()),
        (&["bob".to_string()][..], &["anon-9".to_string()][..])
    );

    // anon-1 was Ana's device; Cy signing in on it takes the device, not Ana's history.
    let cy = app.person("cy").await;
    assert_ne!(cy.person_id, ana.person_id);
    assert_eq!(cy.anonymous_ids, ["anon-1"]);
    assert_eq!(app.person("ana").await.anonymous_ids, Vec::<String>::new());
    assert_eq!(cy.account_ids, [AccountId::parse("globex").unwrap()]);

    let eve = app.person("eve").await;
    assert_eq!(
        (eve.user_ids.as_slice(), eve.anonymous_ids.as_slice()),
        (&["dan".to_string(), "eve".to_string()][..], &["anon-5".to_string()][..])
    );
    let last = app.store.list_events(&app.ws, &EventFilter::default(), &PageRequest::first(1)).await.unwrap();
    assert_eq!(last.items[0].person_id.as_deref(), Some(eve.person_id.as_str()));
    assert_eq!(eve.last_seen_at, Some(Utc.with_ymd_and_hms(2026, 10, 2, 10, 0, 0).unwrap()));

    let acme = app.store.get_account(&app.ws, &AccountId::parse("acme").unwrap()).await.unwrap().unwrap();
    assert_eq!((acme.name.as_deref(), acme.people_count), (Some("Acme"), 2));
}

#[tokio::test]
async fn slicing_the_log_differently_gives_the_same_result() {
    let mut snapshots = Vec::new();
    for batch in [1, 2, 3, 1000] {
        let app = App::new().await;
        app.send(story()).await;
        app.process(batch).await;
        let mut snap = app.snapshot().await;
        // Workspaces differ per app, and so do person ids derived from them.
        let text = snap.to_string();
        // Named by first appearance (events come first, in log order), which is the same in each run.
        let mut ids: Vec<String> = Vec::new();
        for (i, _) in text.match_indices("\"p_") {
            let id = text[i + 1..i + 27].to_owned();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let mut normalized = text.clone();
        for (n, id) in ids.iter().enumerate() {
            normalized = normalized.replace(id, &format!("person{n}"));
        }
        snap = serde_json::from_str(&normalized).unwrap();
        snapshots.push((batch, snap));
    }
    for (batch, snap) in &snapshots[1..] {
        assert_eq!(snap, &snapshots[0].1, "batch size {batch} differs from batch size 1");
    }
}

/// Appends `messages` in groups of `size` events, two batches a group and one event repeated
/// from the group before (a duplicate), each with where the log was before it and its events
/// at the positions the store gave them.
async fn appended_groups(app: &App, messages: Value, size: usize) -> Vec<(store::LogPosition, Appended)> {
    let body = json!({ "batch": messages }).to_string();
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let events = capture::parse_batch(body.as_bytes(), now, &capture::Limits::default()).unwrap().events;
    let mut groups = Vec::new();
    for (round, group) in events.chunks(size).enumerate() {
        let mut batches = vec![group[..group.len() / 2].to_vec(), group[group.len() / 2..].to_vec()];
        if round > 0 {
            batches[0].insert(0, events[0].clone());
        }
        let appended = app.store.append_event_batches(&app.ws, &batches).await.unwrap();
        let placement = appended.placement.expect("SQLite places what it appends");
        let logged: Vec<store::LoggedEvent> = batches
            .into_iter()
            .flatten()
            .zip(placement.positions)
            .filter_map(|(event, position)| Some(store::LoggedEvent { position: position?, event }))
            .collect();
        assert_eq!(logged.len(), group.len(), "the duplicate is left out");
        groups.push((placement.after, Appended::Events(logged)));
    }
    groups
}

/// Sends `groups` through a processing stream, calling `between` after each is sent.
async fn stream(app: &App, groups: Vec<(store::LogPosition, Appended)>, mut between: impl AsyncFnMut(usize)) {
    let p = Arc::new(Processor::new(app.store.clone(), ProcessorConfig::default()));
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let task = tokio::spawn({
        let (p, ws) = (p.clone(), app.ws.clone());
        async move { p.process_appended_stream(&ws, rx).await }
    });
    for (i, group) in groups.into_iter().enumerate() {
        tx.send(group).await.unwrap();
        between(i).await;
    }
    drop(tx);
    task.await.unwrap().unwrap();
}

/// Events an import appended are processed from memory, at the positions the store gave
/// them, each group resolved while the one before is applied, as the log would give them:
/// the state is what a replay of the log builds. The story merges people (aliases), after
/// which the next group waits for the store.
#[tokio::test]
async fn appended_events_processed_from_memory_give_what_the_log_gives() {
    for size in [1, 2, 6, 15] {
        let app = App::new().await;
        let groups = appended_groups(&app, story(), size).await;
        stream(&app, groups, async |_| {}).await;
        assert_eq!(app.store.log_status(&app.ws).await.unwrap().pending_events, 0, "groups of {size}");
        let from_memory = app.snapshot().await;
        assert_eq!(Processor::new(app.store.clone(), ProcessorConfig::default()).replay(&app.ws).await.unwrap(), 15);
        assert_eq!(app.snapshot().await, from_memory, "groups of {size}");
    }
}

/// Track calls an import appended in columns are processed from memory as the log would give
/// them: rows the store left out as duplicates (repeated within a group, or stored by an
/// earlier group) are not counted again, and the state is what a replay builds.
#[tokio::test]
async fn appended_track_rows_processed_from_memory_give_what_the_log_gives() {
    let app = App::new().await;
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let mut groups = Vec::new();
    for round in 0..3u32 {
        let mut batches = Vec::new();
        for half in 0..2u32 {
            let mut rows = domain::TrackRows::with_capacity(now, 8, 256);
            for i in 0..6u32 {
                let n = round * 12 + half * 6 + i;
                // Each batch's last row repeats an id: its own first row's, or in later rounds
                // the very first one (stored by the first round).
                let id = match i {
                    5 if round > 0 && half == 0 => "t0".to_owned(),
                    5 => format!("t{}", round * 12 + half * 6),
                    _ => format!("t{n}"),
                };
                let (account, user) = (["acme", "globex"][(n % 2) as usize], ["ana", "bo", "cy"][(n % 3) as usize]);
                let day = Utc.with_ymd_and_hms(2026, 10, 1 + n % 20, 9, 0, 0).unwrap();
                rows.push(&domain::NewTrack {
                    message_id: (&id).into(),
                    event: ["Report Created", "Seen"][(n % 2) as usize],
                    user_id: Some([account, "/", user]),
                    anonymous_id: None,
                    group_id: Some(account),
                    properties: (n % 4 == 0).then_some(r#"{"value":2}"#),
                    timestamp: day,
                });
            }
            batches.push(Arc::new(rows));
        }
        let appended = app.store.append_track_batches(&app.ws, &batches).await.unwrap();
        let placement = appended.placement.expect("SQLite places what it appends");
        assert!(placement.positions.iter().any(Option::is_none), "round {round} has duplicates");
        groups.push((placement.after, Appended::Tracks { batches, positions: placement.positions }));
    }
    let stored: usize = groups.iter().map(|(_, g)| g.len()).sum();
    stream(&app, groups, async |_| {}).await;
    assert_eq!(app.store.log_status(&app.ws).await.unwrap().pending_events, 0);
    let from_memory = app.snapshot().await;
    let replayed = Processor::new(app.store.clone(), ProcessorConfig::default()).replay(&app.ws).await.unwrap();
    assert_eq!(replayed, stored);
    assert_eq!(app.snapshot().await, from_memory);
}

/// A group that is not where processing is (processing is behind it), and groups resolved
/// ahead while another process moves the cursor, are processed from the log instead: each
/// event once, the same state as a replay.
#[tokio::test]
async fn appended_events_not_where_processing_is_are_processed_from_the_log() {
    // Processing told the wrong place for every other group.
    let app = App::new().await;
    let mut groups = appended_groups(&app, story(), 3).await;
    for (i, (after, _)) in groups.iter_mut().enumerate() {
        if i % 2 == 1 {
            after.seq += 1;
        }
    }
    stream(&app, groups, async |_| {}).await;
    assert_eq!(app.store.log_status(&app.ws).await.unwrap().pending_events, 0);
    let told_wrong = app.snapshot().await;
    Processor::new(app.store.clone(), ProcessorConfig::default()).replay(&app.ws).await.unwrap();
    assert_eq!(app.snapshot().await, told_wrong);

    // Another process moves the cursor one event into a group the stream has resolved or is
    // about to: after the first group is applied (the stream then has the second group
    // applied from a cursor that is not the store's, and the third resolved counting on it),
    // or after all but the last are (the last then cannot be applied, and the rest of it is
    // read from the log).
    // Usage alone, so that no group merges people (after which the stream would wait).
    let usage: Vec<Value> = (0..12)
        .map(|i| {
            let user = ["ana", "bob", "cy"][i % 3];
            msg(
                "track",
                &format!("u{i}"),
                json!({"userId": user, "event": "Report Created", "context": {"groupId": "acme"}}),
            )
        })
        .collect();
    for moved_after in [0, 1] {
        let app = App::new().await;
        let groups = appended_groups(&app, Value::from(usage.clone()), 4).await;
        let pending: i64 = groups[moved_after + 1..].iter().map(|g| g.1.len() as i64).sum();
        stream(&app, groups, async |i| {
            if i == moved_after {
                while app.store.log_status(&app.ws).await.unwrap().pending_events > pending {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                // A processor that knows nothing yet, as another process's would.
                let other =
                    Processor::new(app.store.clone(), ProcessorConfig { batch: 1, max_batch: 1, ..Default::default() });
                assert_eq!(other.run_once(&app.ws).await.unwrap(), 1);
            }
        })
        .await;
        assert_eq!(app.store.log_status(&app.ws).await.unwrap().pending_events, 0, "moved after group {moved_after}");
        let raced = app.snapshot().await;
        Processor::new(app.store.clone(), ProcessorConfig::default()).replay(&app.ws).await.unwrap();
        assert_eq!(app.snapshot().await, raced, "moved after group {moved_after}: each event counted once");
    }
}

#[tokio::test]
async fn replaying_the_log_rebuilds_the_same_state() {
    let app = App::new().await;
    app.send(story()).await;
    app.process(4).await;
    let before = app.snapshot().await;
    let p = Processor::new(app.store.clone(), ProcessorConfig::default());
    assert_eq!(p.replay(&app.ws).await.unwrap(), 15);
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn the_worker_processes_what_arrives_while_it_runs() {
    let app = App::new().await;
    let p = Processor::new(
        app.store.clone(),
        ProcessorConfig {
            batch: 3,
            max_batch: 3,
            idle_poll: std::time::Duration::from_millis(5),
            ..Default::default()
        },
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(p.clone().run(shutdown.clone()));
    app.send(story()).await;
    p.wake();
    // Wait for the outcome, not for a time: the worker is done when nothing is pending.
    loop {
        if app.store.log_status(&app.ws).await.unwrap().pending_events == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(app.person("ana").await.account_ids, [AccountId::parse("acme").unwrap()]);
}

#[tokio::test]
async fn first_and_last_seen_are_kept_to_the_minute() {
    let app = App::new().await;
    let used = |id: &str, at: &str| {
        msg("track", id, json!({"userId": "ana", "event": "Used", "context": {"groupId": "acme"}, "timestamp": at}))
    };
    let at = |m: u32, s: u32| Utc.with_ymd_and_hms(2026, 10, 1, 10, m, s).unwrap();
    app.send(json!([used("1", "2026-10-01T10:00:00Z"), used("2", "2026-10-01T10:00:30Z")])).await;
    app.process(1).await;
    let acme = AccountId::parse("acme").unwrap();
    let seen = |p: &store::Person| (p.first_seen_at, p.last_seen_at);
    assert_eq!(seen(&app.person("ana").await), (Some(at(0, 0)), Some(at(0, 0))), "30 s later is the same minute");

    app.send(json!([used("3", "2026-10-01T10:05:00Z"), used("4", "2026-10-01T09:59:59Z")])).await;
    app.process(1).await;
    assert_eq!(seen(&app.person("ana").await), (Some(at(0, 0) - chrono::Duration::seconds(1)), Some(at(5, 0))));
    let account = app.store.get_account(&app.ws, &acme).await.unwrap().unwrap();
    assert_eq!(
        (account.first_seen_at, account.last_seen_at),
        (Some(at(0, 0) - chrono::Duration::seconds(1)), Some(at(5, 0)))
    );
}

#[tokio::test]
async fn each_slice_says_which_accounts_and_people_it_touched() {
    let app = App::new().await;
    let p = Processor::new(app.store.clone(), ProcessorConfig { batch: 1000, max_batch: 1000, ..Default::default() });
    let mut touched = p.subscribe();
    let at = |d: u32| Utc.with_ymd_and_hms(2026, 10, d, 10, 0, 0).unwrap().to_rfc3339();
    app.send(json!([
        {"type": "group", "messageId": "g1", "userId": "ana", "groupId": "acme", "timestamp": at(1)},
        {"type": "track", "messageId": "t1", "userId": "ana", "event": "Report Created", "timestamp": at(2)},
        {"type": "identify", "messageId": "i1", "userId": "bob", "traits": {"plan": "x"}, "timestamp": at(2)},
    ]))
    .await;
    p.run_until_idle(&app.ws).await.unwrap();
    let first = touched.try_recv().unwrap();
    let ana = app.person("ana").await.person_id;
    let bob = app.person("bob").await.person_id;
    let mut people = vec![ana.clone(), bob];
    people.sort();
    assert_eq!(first.workspace, app.ws);
    assert_eq!(first.accounts, [AccountId::parse("acme").unwrap()]);
    assert_eq!(first.people, people);
    // A later slice with ana's usage alone names her, whose account it counts for.
    app.send(json!([{"type": "track", "messageId": "t2", "userId": "ana", "event": "Export", "timestamp": at(3)}]))
        .await;
    p.run_until_idle(&app.ws).await.unwrap();
    let second = touched.try_recv().unwrap();
    assert_eq!((second.accounts.as_slice(), second.people.as_slice()), (&[][..], &[ana][..]));
    assert!(touched.try_recv().is_err(), "one message per slice");
}

/// What a connector tells of an account (a billing system's failed payment) has no person:
/// it creates the account if need be and counts in its usage, marking no one active, however
/// the log is sliced.
#[tokio::test]
async fn an_accounts_own_events_count_in_its_usage_with_no_one_active() {
    let at = Utc.with_ymd_and_hms(2026, 10, 1, 12, 0, 0).unwrap();
    let account_event = |id: &str, name: &str| domain::NewEvent {
        message_id: id.into(),
        kind: domain::EventType::Track,
        name: Some(name.into()),
        user_id: None,
        anonymous_id: None,
        group_id: Some("initech".into()),
        previous_id: None,
        timestamp: at,
        received_at: at,
        payload: json!({"type": "track", "event": name, "messageId": id, "context": {"groupId": "initech"}})
            .to_string(),
    };
    let mut results = Vec::new();
    for batch in [1, 1000] {
        let app = App::new().await;
        app.store
            .append_events(&app.ws, &[account_event("stripe:in_1:payment_failed:1", "Payment Failed")])
            .await
            .unwrap();
        app.send(json!([msg(
            "track",
            "u1",
            json!({"userId": "ana", "event": "Report Created",
            "context": {"groupId": "initech"}, "timestamp": "2026-10-01T09:00:00Z"})
        )]))
        .await;
        app.store
            .append_events(&app.ws, &[account_event("stripe:in_1:payment_failed:2", "Payment Failed")])
            .await
            .unwrap();
        app.process(batch).await;
        let initech = AccountId::parse("initech").unwrap();
        let day = at.date_naive();
        let usage = app.store.account_usage(&app.ws, &initech, day, day.succ_opt().unwrap()).await.unwrap();
        let of = |metric: &str| usage.iter().find(|d| d.metric == metric).map(|d| (d.events, d.users));
        assert_eq!(of("Payment Failed"), Some((2, 0)), "{usage:?}");
        assert_eq!(of("$any"), Some((3, 1)), "Ana is the one person active");
        let account = app.store.get_account(&app.ws, &initech).await.unwrap().unwrap();
        assert_eq!(account.people_count, 1);
        // On the account's timeline (newest first) with Ana's event, as no one's: processed,
        // then indexed.
        for indexed in [false, true] {
            if indexed {
                while app.store.maintain(&app.ws, true).await.unwrap() {}
            }
            let page = app.store.account_timeline(&app.ws, &initech, &store::PageRequest::first(10)).await.unwrap();
            let got: Vec<_> = page.items.iter().map(|e| (e.message_id.as_str(), e.person_id.is_some())).collect();
            assert_eq!(
                got,
                [("stripe:in_1:payment_failed:2", false), ("stripe:in_1:payment_failed:1", false), ("u1", true)],
                "indexed: {indexed}"
            );
            assert!(page.items.iter().all(|e| e.account_ids == [initech.clone()]));
        }
        results.push(format!("{usage:?}"));
    }
    assert_eq!(results[0], results[1]);
}
