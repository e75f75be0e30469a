use super::*;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};
use std::sync::Arc;
use store::{JourneyDraft, MessageFilter, PageRequest, RunFilter, TaskFilter};

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

fn group(id: &str, user: &str, account: &str, traits: Value) -> Value {
    json!({"type": "group", "messageId": id, "userId": user, "groupId": account, "traits": traits,
           "timestamp": at(1, 9).to_rfc3339()})
}

fn identify(id: &str, user: &str, traits: Value) -> Value {
    json!({"type": "identify", "messageId": id, "userId": user, "traits": traits,
           "timestamp": at(1, 9).to_rfc3339()})
}

fn track(id: &str, user: &str, account: &str, event: &str, props: Value, when: DateTime<Utc>) -> Value {
    json!({"type": "track", "messageId": id, "userId": user, "event": event, "properties": props,
           "context": {"groupId": account}, "timestamp": when.to_rfc3339()})
}

struct World {
    _dir: tempfile::TempDir,
    store: Arc<store_sqlite::SqliteStore>,
    ws: WorkspaceId,
    membership: Arc<membership::Engine>,
    runner: Runner,
}

impl World {
    /// acme (plan pro, owner ann) and beta (plan free, owner bob), each with one person.
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(store_sqlite::SqliteStore::open_in_dir(dir.path()).unwrap());
        let ws = store.create_workspace("Journeys").await.unwrap().workspace_id;
        let membership = Arc::new(membership::Engine::new(store.clone()));
        let runner = Runner::new(store.clone(), membership.clone());
        let w = World { _dir: dir, store, ws, membership, runner };
        w.add(json!([
            identify("i1", "ann", json!({"email": "ann@acme.example", "role": "owner", "name": "Ann"})),
            identify("i2", "bob", json!({"email": "bob@beta.example", "role": "admin"})),
            group("g1", "ann", "acme", json!({"name": "Acme", "plan": "pro"})),
            group("g2", "bob", "beta", json!({"name": "Beta", "plan": "free"})),
        ]))
        .await;
        w
    }

    async fn add(&self, events: Value) {
        self.store.append_events(&self.ws, &store::contract::events(events)).await.unwrap();
        let processor = processor::Processor::new(self.store.clone(), Default::default());
        processor.run_until_idle(&self.ws).await.unwrap();
    }

    async fn segment(&self, name: &str, condition: &str, now: DateTime<Utc>) -> String {
        let d = membership::Definition {
            name: name.into(),
            kind: SubjectKind::Accounts,
            condition: condition.into(),
            description: None,
        };
        self.membership.create(&self.ws, &d, now).await.unwrap().segment.segment_id
    }

    async fn journey(&self, definition: Value, now: DateTime<Utc>) -> JourneyRecord {
        parse_stored(&definition).unwrap();
        let draft = JourneyDraft {
            journey_id: store::journeys::new_journey_id(),
            name: definition["name"].as_str().unwrap().into(),
            kind: SubjectKind::Accounts,
            enabled: true,
            definition,
        };
        self.store.put_journey(&self.ws, &draft, now).await.unwrap()
    }

    async fn runs(&self, journey: &JourneyRecord) -> Vec<Run> {
        let f = RunFilter { journey_id: Some(journey.journey_id.clone()), ..RunFilter::default() };
        let mut runs = self.store.list_runs(&self.ws, &f, &PageRequest::first(1000)).await.unwrap().items;
        runs.sort_by(|a, b| a.subject_id.cmp(&b.subject_id));
        runs
    }

    async fn steps(&self, run: &Run) -> Vec<(String, String)> {
        let steps = self.store.run_steps(&self.ws, &run.run_id).await.unwrap();
        steps.into_iter().map(|s| (s.step_id, s.outcome)).collect()
    }

    async fn messages(&self) -> Vec<store::OutboxMessage> {
        let mut m = self
            .store
            .list_messages(&self.ws, &MessageFilter::default(), &PageRequest::first(1000))
            .await
            .unwrap()
            .items;
        m.sort_by(|a, b| a.message_id.cmp(&b.message_id));
        m
    }
}

fn onboarding() -> Value {
    json!({
        "name": "Pro onboarding",
        "trigger": {"segment_entered": "Pro"},
        "steps": [
            {"id": "welcome", "email": {"template": "welcome", "to": "account_owner"}},
            {"id": "pause", "wait": "2d"},
            {"id": "check", "branch": {"if": "plan == \"enterprise\"", "then": "done", "else": "call"}},
            {"id": "call", "task": {"title": "Call them", "assignee": "csm", "priority": "high", "due": "3d"}},
            {"id": "done", "end": {}}
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_entry_starts_a_run_that_waits_branches_and_ends_with_each_effect_once() {
    let w = World::new().await;
    let t0 = at(2, 9);
    let j = w.journey(onboarding(), t0).await;
    w.segment("Pro", "plan == \"pro\"", t0).await;
    let tick = w.runner.tick(&w.ws, t0).await.unwrap();
    assert_eq!((tick.started, tick.advanced, tick.transitions), (1, 1, 2), "welcome, then the wait begins");
    let runs = w.runs(&j).await;
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!((run.subject_id.as_str(), run.status, run.step.as_deref()), ("acme", RunStatus::Active, Some("check")));
    assert_eq!(run.wake_at, Some(t0 + Duration::days(2)));
    assert_eq!(run.context["trigger"]["segment"], "Pro");
    let messages = w.messages().await;
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.message_id, format!("{}:welcome:0", run.run_id));
    assert_eq!((m.endpoint.as_str(), m.channel), ("ann@acme.example", store::Channel::Email));
    assert_eq!(m.payload["template"], "welcome");
    assert_eq!(m.payload["context"]["account"]["name"], "Acme");
    assert_eq!(m.payload["context"]["journey"]["name"], "Pro onboarding");
    // Nothing is due a day later; ticking again changes nothing.
    assert_eq!(w.runner.tick(&w.ws, t0 + Duration::days(1)).await.unwrap(), Tick::default());
    assert_eq!(w.runner.tick(&w.ws, t0).await.unwrap(), Tick::default());
    // Two days later it branches (acme is not enterprise) and a task is made.
    let t2 = t0 + Duration::days(2);
    let tick = w.runner.tick(&w.ws, t2).await.unwrap();
    assert_eq!((tick.advanced, tick.transitions), (1, 3));
    let run = w.store.get_run(&w.ws, &run.run_id).await.unwrap().unwrap();
    assert_eq!((run.status, run.step.clone(), run.ended_at), (RunStatus::Completed, None, Some(t2)));
    assert_eq!(
        w.steps(&run).await,
        [
            ("welcome".into(), "sent".into()),
            ("pause".into(), "waited".into()),
            ("check".into(), "else".into()),
            ("call".into(), "created".into()),
            ("done".into(), "ended".into())
        ]
    );
    let tasks = w.store.list_tasks(&w.ws, &TaskFilter::default(), &PageRequest::first(10)).await.unwrap().items;
    assert_eq!(tasks.len(), 1);
    assert_eq!((tasks[0].title.as_str(), tasks[0].assignee.as_str()), ("Call them", "csm"));
    assert_eq!((tasks[0].due_at, tasks[0].account_id.as_deref()), (Some(t2 + Duration::days(3)), Some("acme")));
    assert_eq!(w.messages().await.len(), 1, "the welcome was decided once");
    let stats = w.store.journey_stats(&w.ws, &j.journey_id).await.unwrap();
    assert_eq!((stats.entered, stats.active, stats.completed), (1, 0, 1));
    // Re-entry is never by default: leaving and entering again starts nothing.
    w.add(json!([group("g3", "ann", "acme", json!({"plan": "team"}))])).await;
    w.membership.evaluate_accounts(&w.ws, &[domain::AccountId::parse("acme").unwrap()], t2).await.unwrap();
    w.add(json!([group("g4", "ann", "acme", json!({"plan": "pro"}))])).await;
    w.membership.evaluate_accounts(&w.ws, &[domain::AccountId::parse("acme").unwrap()], t2).await.unwrap();
    assert_eq!(w.runner.tick(&w.ws, t2).await.unwrap().started, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_taken_twice_applies_once() {
    let w = World::new().await;
    let t0 = at(2, 9);
    let j = w.journey(onboarding(), t0).await;
    w.segment("Pro", "plan == \"pro\"", t0).await;
    // Start without stepping: the run as a crashed node would have read it.
    let all = w.store.list_journeys(&w.ws).await.unwrap();
    let journeys = w.runner.enabled(&w.ws, &all).await;
    w.runner.start_from_segments(&w.ws, &journeys, t0).await.unwrap();
    let run = w.runs(&j).await.remove(0);
    let first = w.runner.step_runs(&w.ws, vec![run.clone()], Why::Due, t0).await.unwrap();
    let second = w.runner.step_runs(&w.ws, vec![run.clone()], Why::Due, t0 + Duration::seconds(1)).await.unwrap();
    assert_eq!((first.advanced, second.advanced), (1, 0));
    assert_eq!(w.messages().await.len(), 1);
    assert_eq!(w.steps(&run).await.len(), 2);
    // The segment's changes are not read twice either.
    w.runner.tick(&w.ws, t0).await.unwrap();
    assert_eq!(w.runs(&j).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_an_event_goes_on_when_it_arrives_or_times_out() {
    let w = World::new().await;
    let t0 = at(2, 9);
    let j = w
        .journey(
            json!({
                "name": "Report nudge",
                "trigger": "manual",
                "steps": [
                    {"id": "ask", "wait_for": {"event": "Report Created", "timeout": "3d", "on_timeout": "nudge"}},
                    {"id": "thanks", "slack": {"text": "{{ account.name }} made a report"}, "next": "done"},
                    {"id": "nudge", "email": {"template": "nudge", "to": "bob@beta.example"}},
                    {"id": "done", "end": {}}
                ]
            }),
            t0,
        )
        .await;
    w.store.put_setting(&w.ws, step::SLACK_URL, &json!("http://127.0.0.1:9/hook"), t0).await.unwrap();
    let acme = w.runner.start_manual(&w.ws, &j.journey_id, "acme", json!({}), t0).await.unwrap().unwrap();
    let beta = w.runner.start_manual(&w.ws, &j.journey_id, "beta", json!({}), t0).await.unwrap().unwrap();
    assert_eq!(acme.step.as_deref(), Some("ask"));
    assert_eq!(acme.wake_at, Some(t0 + Duration::days(3)));
    assert!(acme.waiting.is_some());
    assert_eq!(beta.waiting, Some(store::journeys::wait_key("report created", "beta", None)));
    // acme's report arrives; beta's never does.
    let t1 = t0 + Duration::hours(5);
    let moved = w.runner.event(&w.ws, "report_created", "acme", &[], t1).await.unwrap();
    assert_eq!(moved.advanced, 1);
    assert_eq!(w.runner.event(&w.ws, "report_created", "acme", &[], t1).await.unwrap().advanced, 0);
    w.runner.tick(&w.ws, t0 + Duration::days(3)).await.unwrap();
    let runs = w.runs(&j).await;
    let outcomes: Vec<Vec<(String, String)>> = [w.steps(&runs[0]).await, w.steps(&runs[1]).await].into();
    assert_eq!(
        outcomes,
        [
            vec![
                ("ask".into(), "waiting".into()),
                ("ask".into(), "received".into()),
                ("thanks".into(), "sent".into()),
                ("done".into(), "ended".into())
            ],
            vec![
                ("ask".into(), "waiting".into()),
                ("ask".into(), "timeout".into()),
                ("nudge".into(), "sent".into()),
                ("done".into(), "ended".into())
            ]
        ]
    );
    let channels: Vec<(store::Channel, String)> =
        w.messages().await.into_iter().map(|m| (m.channel, m.endpoint)).collect();
    assert!(channels.contains(&(store::Channel::Slack, "http://127.0.0.1:9/hook".into())));
    assert!(channels.contains(&(store::Channel::Email, "bob@beta.example".into())));
    assert_eq!(channels.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goal_ends_a_run_as_a_conversion_and_an_exit_condition_as_an_exit() {
    let w = World::new().await;
    let t0 = at(2, 9);
    let j = w
        .journey(
            json!({
                "name": "Upgrade",
                "trigger": "manual",
                "reentry": "always",
                "goal": "plan == \"enterprise\"",
                "exit_when": "plan == \"churned\"",
                "steps": [
                    {"id": "wait", "wait": "1d"},
                    {"id": "mail", "email": {"template": "upgrade", "to": "account_owner"}}
                ]
            }),
            t0,
        )
        .await;
    w.runner.start_manual(&w.ws, &j.journey_id, "acme", json!({}), t0).await.unwrap().unwrap();
    w.runner.start_manual(&w.ws, &j.journey_id, "beta", json!({}), t0).await.unwrap().unwrap();
    w.add(json!([
        group("g5", "ann", "acme", json!({"plan": "enterprise"})),
        group("g6", "bob", "beta", json!({"plan": "churned"}))
    ]))
    .await;
    let tick = w.runner.tick(&w.ws, t0 + Duration::days(1)).await.unwrap();
    assert_eq!(tick.advanced, 2);
    let runs = w.runs(&j).await;
    assert_eq!(runs.iter().map(|r| r.status).collect::<Vec<_>>(), [RunStatus::Converted, RunStatus::Exited]);
    assert_eq!(w.messages().await, [], "neither reached its email");
    let stats = w.store.journey_stats(&w.ws, &j.journey_id).await.unwrap();
    assert_eq!((stats.entered, stats.converted, stats.exited), (2, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_sends_runs_to_its_arms_by_weight_and_the_same_run_always_to_the_same_arm() {
    let w = World::new().await;
    let t0 = at(2, 9);
    let definition = json!({
        "name": "A/B", "trigger": "manual", "reentry": "always",
        "steps": [
            {"id": "ab", "split": {"arms": [{"weight": 80, "next": "a"}, {"weight": 20, "next": "b"}]}},
            {"id": "a", "end": {}},
            {"id": "b", "end": {}}
        ]
    });
    let j = parse_stored(&definition).unwrap();
    let record = w.journey(definition, t0).await;
    let mut arms = [0usize; 2];
    for i in 0..1_000 {
        let start = w.runner.new_run(&record, &j, "acme", None, json!({}), format!("k{i}"), t0);
        let r = w.runner.take_steps(&w.ws, &j, start.run.clone(), Why::Due, t0, &mut Default::default()).await.unwrap();
        let again = w.runner.take_steps(&w.ws, &j, start.run, Why::Due, t0, &mut Default::default()).await.unwrap();
        assert_eq!(r.steps[0].outcome, again.steps[0].outcome);
        arms[usize::from(r.steps[0].outcome == "arm:2")] += 1;
    }
    assert!((740..860).contains(&arms[0]), "{arms:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frequency_caps_hold_back_messages_to_one_person() {
    let w = World::new().await;
    let t0 = at(2, 9);
    let j = w
        .journey(
            json!({
                "name": "Chatty", "trigger": "manual", "reentry": "always",
                "frequency_cap": {"max": 2, "per": "1d"},
                "steps": [{"id": "hello", "email": {"template": "hi", "to": "account_owner"}}]
            }),
            t0,
        )
        .await;
    for h in 0..3 {
        w.runner.start_manual(&w.ws, &j.journey_id, "acme", json!({}), t0 + Duration::hours(h)).await.unwrap();
    }
    // A day after the first, one of the two sent that day is still within the cap's day.
    w.runner.start_manual(&w.ws, &j.journey_id, "acme", json!({}), t0 + Duration::hours(25)).await.unwrap();
    let runs = w.runs(&j).await;
    let mut outcomes = Vec::new();
    for r in &runs {
        outcomes.push(w.steps(r).await[0].1.clone());
    }
    outcomes.sort();
    assert_eq!(outcomes, ["capped", "sent", "sent", "sent"]);
    assert_eq!(w.messages().await.len(), 3);
}

#[test]
fn quiet_hours_hold_messages_until_they_end() {
    let quiet = Some(journeys::QuietHours { from: 21 * 60, to: 8 * 60 });
    let t = |h: u32, m: u32| Utc.with_ymd_and_hms(2026, 11, 2, h, m, 30).unwrap();
    assert_eq!(zone::quiet_until(t(12, 0), quiet, &jiff::tz::TimeZone::UTC), t(12, 0));
    assert_eq!(
        zone::quiet_until(t(22, 15), quiet, &jiff::tz::TimeZone::UTC),
        Utc.with_ymd_and_hms(2026, 11, 3, 8, 0, 0).unwrap()
    );
    assert_eq!(
        zone::quiet_until(t(7, 59), quiet, &jiff::tz::TimeZone::UTC),
        Utc.with_ymd_and_hms(2026, 11, 2, 8, 0, 0).unwrap()
    );
    assert_eq!(zone::quiet_until(t(8, 0), quiet, &jiff::tz::TimeZone::UTC), t(8, 0));
    let day = Some(journeys::QuietHours { from: 12 * 60, to: 13 * 60 });
    assert_eq!(
        zone::quiet_until(t(12, 30), day, &jiff::tz::TimeZone::UTC),
        Utc.with_ymd_and_hms(2026, 11, 2, 13, 0, 0).unwrap()
    );
    assert_eq!(zone::quiet_until(t(12, 30), None, &jiff::tz::TimeZone::UTC), t(12, 30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_starts_runs_and_a_keyed_wait_goes_on_only_for_its_own_key() {
    let w = World::new().await;
    let t0 = at(2, 9);
    let j = w.journey(
        json!({
            "name": "Trial follow-up",
            "trigger": {"event": "Trial Started"},
            "reentry": "always",
            "steps": [
                {"id": "wait", "wait_for": {"event": "Invoice Paid", "key": "trial_id", "timeout": "14d", "on_timeout": "lost"}},
                {"id": "won", "end": {}},
                {"id": "lost", "task": {"title": "Trial not converted", "assignee": "csm", "priority": "normal"}}
            ]
        }),
        t0,
    )
    .await;
    // The first tick marks where journeys begin reading: events before it start nothing.
    w.add(json!([track("old", "ann", "acme", "Trial Started", json!({"trial_id": "t-0"}), at(1, 10))])).await;
    w.runner.tick(&w.ws, t0).await.unwrap();
    assert_eq!(w.runs(&j).await, []);
    w.add(json!([
        track("e1", "ann", "acme", "trial_started", json!({"trial_id": "t-1"}), at(2, 10)),
        track("e2", "bob", "beta", "Trial Started", json!({"trial_id": "t-2"}), at(2, 10)),
    ]))
    .await;
    let tick = w.runner.tick(&w.ws, at(2, 11)).await.unwrap();
    assert_eq!(tick.started, 2);
    // acme pays for another trial's invoice (no move), then for its own.
    w.add(json!([track("e3", "ann", "acme", "Invoice Paid", json!({"trial_id": "t-9"}), at(3, 10))])).await;
    w.runner.tick(&w.ws, at(3, 11)).await.unwrap();
    assert!(w.runs(&j).await.iter().all(|r| r.status == RunStatus::Active));
    w.add(json!([track("e4", "ann", "acme", "Invoice Paid", json!({"trial_id": "t-1"}), at(4, 10))])).await;
    w.runner.tick(&w.ws, at(4, 11)).await.unwrap();
    // Reading the log again from the start moves nothing twice.
    w.store.put_setting(&w.ws, "journeys.log_cursor", &json!({"tx": 0, "seq": 0}), at(4, 12)).await.unwrap();
    let again = w.runner.tick(&w.ws, at(4, 12)).await.unwrap();
    assert_eq!(again.started, 1, "only the event from before the first tick, now read: {again:?}");
    w.runner.tick(&w.ws, at(2, 11) + Duration::days(14)).await.unwrap();
    let runs = w.runs(&j).await;
    let by_subject: Vec<(String, RunStatus, String)> = runs
        .iter()
        .filter(|r| r.context["trigger"]["data"]["properties"]["trial_id"] != "t-0")
        .map(|r| (r.subject_id.clone(), r.status, r.context["trigger"]["data"]["event"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        by_subject,
        [
            ("acme".into(), RunStatus::Completed, "trial_started".into()),
            ("beta".into(), RunStatus::Completed, "Trial Started".into())
        ]
    );
    let acme = runs
        .iter()
        .find(|r| r.subject_id == "acme" && r.context["trigger"]["data"]["properties"]["trial_id"] == "t-1")
        .unwrap();
    let beta = runs.iter().find(|r| r.subject_id == "beta").unwrap();
    assert_eq!(w.steps(acme).await.last().unwrap(), &("won".to_owned(), "ended".to_owned()));
    assert_eq!(w.steps(beta).await.last().unwrap(), &("lost".to_owned(), "created".to_owned()));
}

fn utc(month: u32, day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, hour, minute, 0).unwrap()
}

fn greeting(name: &str, trigger: Value) -> Value {
    json!({"name": name, "trigger": trigger, "reentry": "always",
           "steps": [{"id": "hello", "email": {"template": "hello", "to": "account_owner"}}]})
}

fn band_score(account: &str, day: &str, band: store::HealthBand, at: DateTime<Utc>) -> store::AccountScore {
    store::AccountScore {
        account_id: domain::AccountId::parse(account).unwrap(),
        day: day.parse().unwrap(),
        health: 50.0,
        band,
        churn_30d: None,
        churn_60d: None,
        churn_90d: None,
        expansion: None,
        mrr: None,
        components: json!({}),
        explanation: store::JsonText::from_value(&json!({})),
        scored_at: at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weekly_schedule_fires_at_its_local_time_across_a_change_of_the_clocks_and_once_after_a_gap() {
    let w = World::new().await;
    let t0 = utc(10, 27, 12, 0);
    w.segment("Pro", "plan == \"pro\"", t0).await;
    let trigger = json!({"schedule": {"cron": "0 9 * * mon", "timezone": "America/New_York", "segment": "Pro"}});
    let j = w.journey(greeting("Monday", trigger), t0).await;
    assert_eq!(w.runner.tick(&w.ws, t0).await.unwrap().started, 0, "a schedule fires from when it is first seen");
    // New York left summer time on 2026-11-01: Monday 09:00 is 14:00 UTC, no longer 13:00.
    assert_eq!(w.runner.tick(&w.ws, utc(11, 2, 13, 0)).await.unwrap().started, 0);
    assert_eq!(w.runner.tick(&w.ws, utc(11, 2, 13, 59)).await.unwrap().started, 0);
    assert_eq!(w.runner.tick(&w.ws, utc(11, 2, 14, 0)).await.unwrap().started, 1);
    assert_eq!(w.runner.tick(&w.ws, utc(11, 2, 14, 1)).await.unwrap().started, 0, "not twice");
    assert_eq!(w.runner.tick(&w.ws, utc(11, 2, 14, 0)).await.unwrap().started, 0, "nor for a clock read again");
    let runs = w.runs(&j).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].subject_id, "acme", "the segment's members only");
    assert_eq!(runs[0].context["trigger"]["at"], "2026-11-02T14:00:00Z");
    // Down for three Mondays: the next tick fires once, for the latest.
    assert_eq!(w.runner.tick(&w.ws, utc(11, 24, 10, 0)).await.unwrap().started, 1);
    assert_eq!(w.runner.tick(&w.ws, utc(11, 24, 10, 1)).await.unwrap().started, 0);
    let mut ats: Vec<String> =
        w.runs(&j).await.iter().map(|r| r.context["trigger"]["at"].as_str().unwrap().to_owned()).collect();
    ats.sort();
    assert_eq!(ats, ["2026-11-02T14:00:00Z", "2026-11-23T14:00:00Z"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_without_a_zone_follows_the_workspaces() {
    let w = World::new().await;
    let t0 = utc(11, 1, 0, 0);
    w.store.put_setting(&w.ws, zone::WORKSPACE_TIMEZONE, &json!("Asia/Tokyo"), t0).await.unwrap();
    w.segment("Pro", "plan == \"pro\"", t0).await;
    let j = w.journey(greeting("Daily", json!({"schedule": {"cron": "30 8 * * *", "segment": "Pro"}})), t0).await;
    w.runner.tick(&w.ws, t0).await.unwrap();
    // 08:30 in Tokyo is 23:30 UTC the day before.
    assert_eq!(w.runner.tick(&w.ws, utc(11, 1, 23, 29)).await.unwrap().started, 0);
    assert_eq!(w.runner.tick(&w.ws, utc(11, 1, 23, 30)).await.unwrap().started, 1);
    assert_eq!(w.runs(&j).await[0].context["trigger"]["at"], "2026-11-01T23:30:00Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_health_band_starts_a_run_once_and_the_same_band_again_none() {
    use store::HealthBand::{AtRisk, Healthy, Neutral};
    let w = World::new().await;
    let t0 = at(2, 9);
    let j = w.journey(greeting("At risk", json!({"health_band": {"to": "at_risk", "from": "neutral"}})), t0).await;
    let any = w.journey(greeting("Healthy", json!({"health_band": {"to": "healthy"}})), t0).await;
    w.store.put_scores(&w.ws, &[band_score("acme", "2026-11-02", Neutral, t0)]).await.unwrap();
    w.store.put_scores(&w.ws, &[band_score("beta", "2026-11-02", Healthy, t0)]).await.unwrap();
    let tick = w.runner.tick(&w.ws, t0).await.unwrap();
    assert_eq!(tick.started, 1, "beta's first score is healthy; acme's neutral starts nothing");
    assert_eq!(w.runs(&any).await[0].subject_id, "beta");
    w.store.put_scores(&w.ws, &[band_score("acme", "2026-11-03", AtRisk, at(3, 9))]).await.unwrap();
    assert_eq!(w.runner.tick(&w.ws, at(3, 9)).await.unwrap().started, 1);
    let runs = w.runs(&j).await;
    assert_eq!((runs.len(), runs[0].subject_id.as_str()), (1, "acme"));
    assert_eq!(runs[0].context["trigger"]["from"], "neutral");
    assert_eq!(runs[0].context["trigger"]["day"], "2026-11-03");
    // Scored again with the same band: no change, no run.
    w.store.put_scores(&w.ws, &[band_score("acme", "2026-11-04", AtRisk, at(4, 9))]).await.unwrap();
    assert_eq!(w.runner.tick(&w.ws, at(4, 9)).await.unwrap().started, 0);
    // Healthy without `from` fires from any band; at risk from healthy is not this journey's.
    w.store.put_scores(&w.ws, &[band_score("acme", "2026-11-05", Healthy, at(5, 9))]).await.unwrap();
    w.store.put_scores(&w.ws, &[band_score("acme", "2026-11-06", AtRisk, at(6, 9))]).await.unwrap();
    assert_eq!(w.runner.tick(&w.ws, at(6, 9)).await.unwrap().started, 1);
    assert_eq!(w.runs(&j).await.len(), 1);
    assert_eq!(w.runs(&any).await.len(), 2);
    // The changes read are kept 30 days, then forgotten; the runs they started stay.
    let kept = || async { w.store.account_changes(&w.ws, store::LogPosition::ZERO, 100).await.unwrap().len() };
    assert_eq!(kept().await, 5);
    w.store
        .put_scores(&w.ws, &[band_score("acme", "2026-12-06", Healthy, at(6, 9) + chrono::Duration::days(30))])
        .await
        .unwrap();
    assert_eq!(w.runner.tick(&w.ws, at(6, 9) + chrono::Duration::days(30)).await.unwrap().started, 1);
    let left = w.store.account_changes(&w.ws, store::LogPosition::ZERO, 100).await.unwrap();
    let days: Vec<String> = left.iter().map(|c| c.at.date_naive().to_string()).collect();
    assert_eq!(days, ["2026-11-06", "2026-12-06"], "those of the last 30 days");
    assert_eq!(w.runs(&any).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_opened_starts_a_run_once() {
    let w = World::new().await;
    let t0 = at(2, 9);
    let j =
        w.journey(greeting("Gone quiet", json!({"alert_opened": {"kind": "risk", "reason": "inactive"}})), t0).await;
    let signal = |account: &str, reason: &str| store::AlertSignal {
        account_id: domain::AccountId::parse(account).unwrap(),
        kind: store::AlertKind::Risk,
        reason: reason.into(),
        severity: store::Severity::Medium,
        title: format!("{account}: {reason}"),
        evidence: json!({}),
    };
    let signals = [signal("acme", "inactive"), signal("beta", "churn_risk")];
    w.store.sync_alerts(&w.ws, store::AlertScope::Workspace, &signals, t0).await.unwrap();
    assert_eq!(w.runner.tick(&w.ws, t0).await.unwrap().started, 1);
    // The same alert still open: nothing opened, nothing started.
    w.store.sync_alerts(&w.ws, store::AlertScope::Workspace, &signals, at(3, 9)).await.unwrap();
    assert_eq!(w.runner.tick(&w.ws, at(3, 9)).await.unwrap().started, 0);
    let runs = w.runs(&j).await;
    assert_eq!((runs.len(), runs[0].subject_id.as_str()), (1, "acme"));
    let alert_id = runs[0].context["trigger"]["alert_id"].as_str().unwrap();
    assert_eq!(w.store.get_alert(&w.ws, alert_id).await.unwrap().unwrap().reason, "inactive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_hold_a_message_until_eight_in_the_recipients_zone() {
    let w = World::new().await;
    w.add(json!([identify("i3", "ann", json!({"timezone": "Asia/Tokyo"}))])).await;
    let t0 = utc(11, 2, 13, 0);
    w.store.put_setting(&w.ws, zone::WORKSPACE_TIMEZONE, &json!("America/New_York"), t0).await.unwrap();
    let mut definition = greeting("Quiet", json!({"manual": {}}));
    definition["quiet_hours"] = json!({"from": "20:00", "to": "08:00"});
    w.journey(definition, t0).await;
    let j = w.store.list_journeys(&w.ws).await.unwrap().remove(0);
    // 13:00 UTC is 22:00 in Tokyo (ann's zone): held until 08:00 there, 23:00 UTC.
    w.runner.start_manual(&w.ws, &j.journey_id, "acme", json!({}), t0).await.unwrap().unwrap();
    // It is 08:00 in New York, the workspace's zone, for bob (no zone of his own): sent now.
    w.runner.start_manual(&w.ws, &j.journey_id, "beta", json!({}), t0).await.unwrap().unwrap();
    let due: Vec<(String, DateTime<Utc>)> =
        w.messages().await.into_iter().map(|m| (m.endpoint, m.next_attempt_at.unwrap())).collect();
    let mut due = due;
    due.sort();
    assert_eq!(due, [("ann@acme.example".to_owned(), utc(11, 2, 23, 0)), ("bob@beta.example".to_owned(), t0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_not_read_again_while_no_journey_needs_events() {
    let w = World::new().await;
    let t0 = at(2, 9);
    w.journey(json!({"name": "Quiet", "trigger": "manual", "steps": [{"id": "wait", "wait": "1d"}]}), t0).await;
    w.runner.tick(&w.ws, t0).await.unwrap();
    w.add(json!([track("q1", "ann", "acme", "Trial Started", json!({}), at(2, 10))])).await;
    w.runner.tick(&w.ws, at(2, 11)).await.unwrap();
    // The cursor moved past the event without a journey to read it for.
    let processed = w.store.log_status(&w.ws).await.unwrap().cursor;
    let cursor = w.store.get_setting(&w.ws, "journeys.log_cursor").await.unwrap().unwrap();
    assert_eq!((cursor["tx"].as_i64(), cursor["seq"].as_i64()), (Some(processed.tx), Some(processed.seq)));
    // A journey that starts from events sees the events after it, not the one before.
    let j = w
        .journey(
            json!({"name": "Trials", "trigger": {"event": "Trial Started"}, "steps": [{"id": "hi", "end": {}}]}),
            at(2, 12),
        )
        .await;
    w.add(json!([track("q2", "ann", "acme", "Trial Started", json!({}), at(2, 13))])).await;
    let tick = w.runner.tick(&w.ws, at(2, 14)).await.unwrap();
    assert_eq!(tick.started, 1);
    let runs = w.runs(&j).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].context["trigger"]["data"]["timestamp"], json!(at(2, 13)));
}
