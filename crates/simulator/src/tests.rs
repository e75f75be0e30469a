//! Tests of the simulation as a whole: determinism, the Segment spec, and the stories it tells.

use std::collections::{HashMap, HashSet};

use chrono::{Datelike, Duration, Timelike};
use serde_json::Value;

use super::*;

fn end() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z").unwrap().with_timezone(&Utc)
}

/// Small enough to generate in a blink in a debug build, big enough to hold every fate.
fn small(seed: u64) -> SimConfig {
    SimConfig { seed, accounts: 40, days: 60, end: end() }
}

fn time(m: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(m["timestamp"].as_str().expect("a timestamp")).expect("RFC 3339").with_timezone(&Utc)
}

/// A finished run, with each message attributed to its account.
struct Run {
    sim: Simulation,
    messages: Vec<Value>,
    /// Account id to (time, index into `messages`).
    by_account: HashMap<String, Vec<(DateTime<Utc>, usize)>>,
}

impl Run {
    fn new(config: SimConfig) -> Run {
        let sim = Simulation::new(config);
        let messages: Vec<Value> = sim.messages().collect();
        let mut account_of_user = HashMap::new();
        for m in &messages {
            if m["type"] == "group" {
                account_of_user.insert(m["userId"].as_str().unwrap().to_owned(), m["groupId"].as_str().unwrap().to_owned());
            }
        }
        let mut by_account: HashMap<String, Vec<(DateTime<Utc>, usize)>> = HashMap::new();
        for (i, m) in messages.iter().enumerate() {
            let account = m["groupId"]
                .as_str()
                .or(m["context"]["groupId"].as_str())
                .or_else(|| m["userId"].as_str().and_then(|u| account_of_user.get(u)).map(String::as_str));
            if let Some(account) = account {
                by_account.entry(account.to_owned()).or_default().push((time(m), i));
            }
        }
        Run { sim, messages, by_account }
    }

    fn window_start(&self) -> DateTime<Utc> {
        self.sim.config.end - Duration::days(i64::from(self.sim.config.days))
    }

    /// How much the account's people used the product in [from, to): tracks and pages.
    fn usage(&self, account: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> usize {
        self.by_account.get(account).map_or(0, |events| {
            events
                .iter()
                .filter(|(t, i)| *t >= from && *t < to && matches!(self.messages[*i]["type"].as_str(), Some("track" | "page")))
                .count()
        })
    }

    /// Distinct people using the product in [from, to).
    fn active_people(&self, account: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> usize {
        self.by_account.get(account).map_or(0, |events| {
            events
                .iter()
                .filter(|(t, _)| *t >= from && *t < to)
                .filter_map(|(_, i)| self.messages[*i]["userId"].as_str())
                .collect::<HashSet<_>>()
                .len()
        })
    }

    fn of_fate(&self, fate: Fate) -> impl Iterator<Item = &SimAccount> {
        self.sim.accounts().iter().filter(move |a| a.fate == fate)
    }
}

#[test]
fn the_same_seed_tells_the_same_story() {
    let a = Simulation::new(small(11));
    let b = Simulation::new(small(11));
    assert_eq!(a.accounts(), b.accounts());
    let (ba, bb): (Vec<Value>, Vec<Value>) = (a.batches(1_000).collect(), b.batches(1_000).collect());
    assert!(ba.len() > 5);
    assert_eq!(ba, bb);
}

#[test]
fn another_seed_tells_another() {
    let a = Simulation::new(small(11));
    let b = Simulation::new(small(12));
    assert_ne!(a.accounts(), b.accounts());
    let first = |s: &Simulation| s.messages().skip(100).take(50).map(|mut m| {
        // Ids embed the seed; compare what happened, not what it is called.
        m.as_object_mut().unwrap().remove("messageId");
        m
    }).collect::<Vec<_>>();
    assert_ne!(first(&a), first(&b));
}

#[test]
fn every_message_follows_the_segment_spec() {
    let config = small(3);
    let sim = Simulation::new(config.clone());
    let start = config.end - Duration::days(i64::from(config.days));
    let allowed: HashSet<&str> = [
        "type", "messageId", "timestamp", "userId", "anonymousId", "traits", "groupId", "event", "properties", "context", "name",
    ]
    .into();
    let mut ids = HashSet::new();
    let mut previous = start;
    let mut count = 0;
    for body in sim.batches(500) {
        let batch = body["batch"].as_array().expect("a batch array");
        assert!(!batch.is_empty() && batch.len() <= 500);
        assert!(serde_json::to_vec(&body).unwrap().len() < 450_000);
        assert_eq!(body["sentAt"], "2026-03-01T12:00:00.000Z");
        for m in batch {
            count += 1;
            let obj = m.as_object().expect("an object");
            for key in obj.keys() {
                assert!(allowed.contains(key.as_str()), "unexpected key {key} in {m}");
            }
            let id = m["messageId"].as_str().expect("a messageId");
            assert!(ids.insert(id.to_owned()), "duplicate messageId {id}");
            let stamp = m["timestamp"].as_str().unwrap();
            assert_eq!(stamp.len(), 24, "milliseconds and Z: {stamp}");
            assert!(stamp.ends_with('Z') && &stamp[19..20] == ".");
            let t = time(m);
            assert!(t >= start && t <= config.end, "{stamp} outside the window");
            assert!(t >= previous, "{stamp} comes after {previous}");
            previous = t;

            let user = m["userId"].as_str();
            let visitor = m["anonymousId"].as_str();
            assert!(user.is_some_and(|u| !u.is_empty()) || visitor.is_some_and(|a| !a.is_empty()), "{m}");
            match m["type"].as_str().unwrap() {
                "identify" => {
                    assert!(user.is_some());
                    let traits = &m["traits"];
                    let (email, name) = (traits["email"].as_str().unwrap(), traits["name"].as_str().unwrap());
                    let (first, last) = name.split_once(' ').unwrap();
                    let local = format!("{}.{}", first.to_lowercase(), last.to_lowercase());
                    assert!(email.starts_with(&local) && email.contains('@'), "{email} for {name}");
                    assert!(traits["role"].is_string());
                    assert!(DateTime::parse_from_rfc3339(traits["created_at"].as_str().unwrap()).is_ok());
                }
                "group" => {
                    assert!(user.is_some());
                    assert!(m["groupId"].as_str().unwrap().starts_with("acct_"));
                    let traits = m["traits"].as_object().expect("traits");
                    if traits.contains_key("plan") {
                        for key in ["name", "plan", "industry", "employees", "seats", "created_at"] {
                            assert!(traits.contains_key(key), "{key} missing from {m}");
                        }
                        assert!(traits["mrr"].is_i64(), "MRR in integer cents: {m}");
                    }
                }
                "track" => {
                    assert!(user.is_some());
                    assert!(!m["event"].as_str().unwrap().is_empty());
                    assert!(m["properties"].is_object());
                    assert!(m["context"]["groupId"].as_str().unwrap().starts_with("acct_"));
                }
                "page" => {
                    assert!(!m["name"].as_str().unwrap().is_empty());
                    assert!(m["properties"]["url"].as_str().unwrap().starts_with("https://"));
                    if user.is_some() {
                        assert!(m["context"]["groupId"].is_string());
                    } else {
                        assert!(m.get("context").is_none(), "a visitor's account is unknown");
                    }
                }
                other => panic!("unexpected type {other}"),
            }
        }
    }
    assert_eq!(count, sim.messages().count());
    assert!(count > 5_000, "{count} messages");
}

#[test]
fn batches_respect_both_limits_and_lose_nothing() {
    let sim = Simulation::new(small(5));
    let all: Vec<Value> = sim.messages().collect();
    let batches: Vec<Value> = sim.batches(2_500).collect();
    let sizes: Vec<usize> = batches.iter().map(|b| b["batch"].as_array().unwrap().len()).collect();
    for b in &batches {
        assert!(serde_json::to_vec(b).unwrap().len() < MAX_BATCH_BYTES);
    }
    // Messages are a few hundred bytes: the byte limit, not the count, cuts these batches.
    assert!(sizes[..sizes.len() - 1].iter().all(|&n| n < 2_500 && n > 500), "{sizes:?}");
    let rejoined: Vec<Value> = batches.iter().flat_map(|b| b["batch"].as_array().unwrap().clone()).collect();
    assert_eq!(rejoined, all);

    assert!(sim.batches(0).take(3).all(|b| b["batch"].as_array().unwrap().len() == 1), "at least one message per batch");
    assert!(sim.batches(7).all(|b| b["batch"].as_array().unwrap().len() <= 7));
    let big = Simulation::new(SimConfig { seed: 5, accounts: 400, days: 3, end: end() });
    let counts: Vec<usize> = big.batches(100_000).map(|b| b["batch"].as_array().unwrap().len()).collect();
    assert!(counts.iter().all(|&n| n <= MAX_BATCH_MESSAGES));
    assert_eq!(counts.iter().sum::<usize>(), big.messages().count());
}

#[test]
fn degenerate_configs_are_handled() {
    assert_eq!(Simulation::new(SimConfig { seed: 1, accounts: 0, days: 30, end: end() }).batches(100).count(), 0);
    let odd_end = end() + Duration::nanoseconds(123_456_789);
    for (accounts, days) in [(5, 0), (5, 1), (3, 7)] {
        let config = SimConfig { seed: 2, accounts, days, end: odd_end };
        let sim = Simulation::new(config);
        assert_eq!(sim.accounts().len(), accounts);
        for m in sim.messages() {
            let t = time(&m);
            assert!(t <= odd_end && t >= odd_end - Duration::days(i64::from(days)), "{t}");
        }
    }
}

#[test]
fn people_work_on_weekdays_in_working_hours() {
    let run = Run::new(small(8));
    let offsets: HashMap<&str, i32> = run.sim.accounts().iter().map(|a| (a.account_id.as_str(), a.utc_offset_minutes)).collect();
    let (mut weekday, mut weekend, mut office) = (0usize, 0usize, 0usize);
    let mut days = HashSet::new();
    for (account, events) in &run.by_account {
        for (t, i) in events {
            if !matches!(run.messages[*i]["type"].as_str(), Some("track" | "page")) {
                continue;
            }
            let local = *t + Duration::minutes(i64::from(offsets[account.as_str()]));
            days.insert(local.date_naive());
            if local.weekday().num_days_from_monday() >= 5 {
                weekend += 1;
            } else {
                weekday += 1;
                office += usize::from((7..19).contains(&local.hour()));
            }
        }
    }
    let weekend_days = days.iter().filter(|d| d.weekday().num_days_from_monday() >= 5).count();
    let per_weekday = weekday as f64 / (days.len() - weekend_days) as f64;
    let per_weekend_day = weekend as f64 / weekend_days as f64;
    let ratio = per_weekend_day / per_weekday;
    assert!((0.1..0.3).contains(&ratio), "a weekend day has {ratio:.2} of a weekday's activity");
    assert!(office as f64 > 0.85 * weekday as f64, "{office} of {weekday} in office hours");
}

#[test]
fn fates_are_dealt_in_the_expected_proportions() {
    let sim = Simulation::new(small(9));
    let count = |f| sim.accounts().iter().filter(|a| a.fate == f).count();
    assert_eq!((count(Fate::Churned), count(Fate::Growing), count(Fate::Declining), count(Fate::Healthy)), (4, 6, 6, 24));
    let demo = Simulation::new(SimConfig::demo(end()));
    let start = end() - Duration::days(180);
    let older = demo.accounts().iter().filter(|a| a.signup < start).count();
    assert!((60..200).contains(&older), "{older} of 300 accounts predate the window");
    let plans: HashSet<&str> = demo.accounts().iter().map(|a| a.plan.as_str()).collect();
    assert_eq!(plans.len(), 4);
    let names: HashSet<&str> = demo.accounts().iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names.len(), 300, "company names are unique");
}

#[test]
fn ground_truth_matches_the_messages() {
    let run = Run::new(small(4));
    for a in run.sim.accounts() {
        let events = &run.by_account[&a.account_id];
        let identified: HashSet<&str> = events
            .iter()
            .map(|(_, i)| &run.messages[*i])
            .filter(|m| m["type"] == "identify")
            .map(|m| m["userId"].as_str().unwrap())
            .collect();
        assert_eq!(identified.len() as u32, a.users, "{}", a.account_id);
        let described: Vec<&Value> = events
            .iter()
            .map(|(_, i)| &run.messages[*i])
            .filter(|m| m["type"] == "group" && m["traits"].get("plan").is_some())
            .collect();
        let last = &described.last().expect("the account is described")["traits"];
        assert_eq!(last["plan"], a.plan.as_str());
        assert_eq!(last["seats"], a.seats);
        assert_eq!(last["mrr"], a.mrr_cents);
        assert_eq!(last["name"], a.name.as_str());
        assert!(a.users <= a.seats, "{} has {} people for {} seats", a.account_id, a.users, a.seats);
        assert!(identified.iter().all(|u| events.iter().any(|(_, i)| run.messages[*i]["userId"] == *u
            && run.messages[*i]["type"] == "group")), "everyone is linked to the account");
    }
}

#[test]
fn churned_accounts_fade_then_fall_silent() {
    for seed in [1, 2, 3] {
        let run = Run::new(small(seed));
        for a in run.of_fate(Fate::Churned) {
            let churn = a.churn_date.expect("a churn date");
            let events = &run.by_account[&a.account_id];
            let (last_t, last_i) = *events.last().unwrap();
            assert!(last_t <= churn, "{} active after its churn date", a.account_id);
            let cancel: Vec<&Value> = events
                .iter()
                .map(|(_, i)| &run.messages[*i])
                .filter(|m| m["event"] == "Subscription Cancelled")
                .collect();
            assert_eq!(cancel.len(), 1);
            assert_eq!(time(cancel[0]), churn);
            assert_eq!(cancel[0]["properties"]["mrr"], a.mrr_cents);
            assert_eq!(cancel[0]["properties"]["reason"], a.churn_reason.as_deref().unwrap());
            assert_eq!(cancel[0]["context"]["groupId"], a.account_id.as_str());
            let farewell = &run.messages[last_i];
            assert_eq!((farewell["type"].as_str(), &farewell["traits"]["status"]), (Some("group"), &Value::from("churned")));

            // The weeks before leaving are quieter than the account's prime.
            let from = a.signup.max(run.window_start()) + Duration::days(14);
            let before = run.usage(&a.account_id, churn - Duration::days(14), churn);
            let prime = (0..)
                .map(|k| from + Duration::days(7 * k))
                .take_while(|w| *w + Duration::days(14) <= churn - Duration::days(14))
                .map(|w| run.usage(&a.account_id, w, w + Duration::days(14)))
                .max();
            if let Some(prime) = prime {
                assert!(before < prime, "{}: {before} in its last fortnight, {prime} at best", a.account_id);
            }
        }
    }
}

#[test]
fn growing_accounts_grow() {
    for config in [small(1), small(2), small(3), SimConfig { seed: 4, accounts: 60, days: 150, end: end() }] {
        let run = Run::new(config);
        for a in run.of_fate(Fate::Growing) {
            let first = a.signup.max(run.window_start());
            let early = run.usage(&a.account_id, first, first + Duration::days(30));
            let late = run.usage(&a.account_id, end() - Duration::days(30), end());
            assert!(late > early, "{}: {late} in the last month, {early} in its first", a.account_id);
            let upgrades = run.by_account[&a.account_id]
                .iter()
                .filter(|(_, i)| run.messages[*i]["event"] == "Subscription Upgraded")
                .count();
            assert!(upgrades >= 1, "{} never upgraded", a.account_id);
        }
    }
}

#[test]
fn declining_accounts_decline() {
    let (mut declining, mut declined_people) = (0, 0);
    for config in [small(1), small(2), small(3), SimConfig { seed: 4, accounts: 60, days: 150, end: end() }] {
        let run = Run::new(config);
        for a in run.of_fate(Fate::Declining) {
            let months = |k: i64| (end() - Duration::days(30 * (k + 1)), end() - Duration::days(30 * k));
            let first = a.signup.max(run.window_start());
            let peak = (1..)
                .map(months)
                .take_while(|(from, _)| *from >= first)
                .map(|(from, to)| run.usage(&a.account_id, from, to))
                .max()
                .expect("a full month before the last");
            let (from, to) = months(0);
            let last = run.usage(&a.account_id, from, to);
            assert!(last < peak, "{}: {last} in the last month, {peak} at its peak", a.account_id);
            let most_people = (1..)
                .map(months)
                .take_while(|(from, _)| *from >= first)
                .map(|(from, to)| run.active_people(&a.account_id, from, to))
                .max()
                .unwrap();
            let remaining = run.active_people(&a.account_id, from, to);
            assert!(remaining <= most_people, "{}: {remaining} people remain of {most_people}", a.account_id);
            declined_people += usize::from(remaining < most_people);
            declining += 1;
        }
    }
    assert!(declined_people * 3 > declining * 2, "{declined_people} of {declining} declining accounts lost active people");
}

#[test]
fn new_accounts_ramp_up_and_adopt_more_features() {
    let run = Run::new(SimConfig { seed: 6, accounts: 80, days: 120, end: end() });
    let (mut first_weeks, mut later_weeks) = (0, 0);
    let (mut early_features, mut later_features) = (0, 0);
    // Milestones rather than features in use.
    let once = ["Signed Up", "Account Created", "Invite Sent", "Subscription Upgraded", "Integration Connected", "Signed In"];
    for a in run.sim.accounts().iter().filter(|a| a.signup >= run.window_start() && a.signup < end() - Duration::days(63)) {
        if a.fate != Fate::Healthy && a.fate != Fate::Growing {
            continue;
        }
        first_weeks += run.usage(&a.account_id, a.signup, a.signup + Duration::days(14));
        later_weeks += run.usage(&a.account_id, a.signup + Duration::days(49), a.signup + Duration::days(63));
        let features = |from: DateTime<Utc>, to: DateTime<Utc>| {
            run.by_account[&a.account_id]
                .iter()
                .filter(|(t, _)| *t >= from && *t < to)
                .filter_map(|(_, i)| run.messages[*i]["event"].as_str())
                .filter(|e| !once.contains(e))
                .collect::<HashSet<_>>()
                .len()
        };
        early_features += features(a.signup, a.signup + Duration::days(14));
        later_features += features(a.signup + Duration::days(49), a.signup + Duration::days(63));
    }
    assert!(first_weeks > 0);
    assert!(later_weeks as f64 > 1.5 * first_weeks as f64, "{first_weeks} in the first fortnight, {later_weeks} later");
    assert!(later_features > early_features, "{early_features} features early, {later_features} later");
}

#[test]
fn some_people_start_anonymous_and_are_then_identified() {
    let run = Run::new(small(2));
    let mut linked = 0;
    for (i, m) in run.messages.iter().enumerate() {
        if m["type"] == "identify" {
            if let Some(visitor) = m["anonymousId"].as_str() {
                linked += 1;
                let browsed = run.messages[..i].iter().any(|p| p["anonymousId"] == visitor && p.get("userId").is_none());
                let later_anonymous = run.messages[i + 1..].iter().any(|p| p["anonymousId"] == visitor);
                assert!(browsed, "{visitor} was a visitor before being identified");
                assert!(!later_anonymous, "{visitor} is known by user id afterwards");
            }
        }
    }
    let identified = run.messages.iter().filter(|m| m["type"] == "identify").count();
    assert!(linked > 0 && linked < identified, "{linked} of {identified} came in anonymously");
}

#[test]
fn usage_speaks_a_b2b_vocabulary_with_heavy_actions_rarer() {
    let run = Run::new(small(7));
    let mut events: HashMap<&str, usize> = HashMap::new();
    for m in &run.messages {
        if let Some(e) = m["event"].as_str() {
            *events.entry(e).or_default() += 1;
        }
    }
    for name in ["Signed In", "Dashboard Viewed", "Project Created", "Report Created", "Invite Sent", "Task Completed", "Comment Added"] {
        assert!(events.contains_key(name), "no {name} in {events:?}");
    }
    assert!(events["Dashboard Viewed"] > 5 * events["Report Created"]);
    assert!(events["Task Completed"] > 5 * events["Project Created"]);
    let pages: HashSet<&str> = run.messages.iter().filter(|m| m["type"] == "page").filter_map(|m| m["name"].as_str()).collect();
    for name in ["Dashboard", "Reports", "Settings"] {
        assert!(pages.contains(name), "no {name} page");
    }
}

/// The demo's volume and speed; slow in a debug build, so run it in release:
/// `cargo test -p simulator --release -- --ignored`.
#[test]
#[ignore]
fn the_demo_fills_a_workspace_quickly() {
    let started = std::time::Instant::now();
    let sim = Simulation::new(SimConfig::demo(end()));
    let messages: usize = sim.batches(2_500).map(|b| b["batch"].as_array().unwrap().len()).sum();
    let elapsed = started.elapsed();
    eprintln!("{messages} messages in {elapsed:?}");
    assert!((200_000..500_000).contains(&messages), "{messages} messages");
    assert!(elapsed < std::time::Duration::from_secs(2), "{elapsed:?}");
}

#[test]
#[ignore]
fn debug_fates() {
    for config in [small(103), small(118), small(115)] {
        let run = Run::new(config.clone());
        for a in run.sim.accounts().iter().filter(|a| a.fate != Fate::Healthy) {
            let weeks: Vec<usize> = (0..(config.days as i64 / 7)).map(|k| { let f = run.window_start() + Duration::days(7 * k); run.usage(&a.account_id, f, f + Duration::days(7)) }).collect();
            eprintln!("seed {} {} {:?} {} users={} signup={} fs={:?} churn={:?} {:?}", config.seed, a.account_id, a.fate, a.plan, a.users, a.signup.date_naive(), a.fate_start.map(|t| t.date_naive()), a.churn_date.map(|t| t.date_naive()), weeks);
        }
    }
}

#[test]
#[ignore]
fn robustness_scan() {
    let (mut g_bad, mut g_n, mut d_bad, mut d_n, mut c_bad, mut c_n) = (0, 0, 0, 0, 0, 0);
    for seed in 100..130 {
        let run = Run::new(small(seed));
        for a in run.of_fate(Fate::Growing) {
            let first = a.signup.max(run.window_start());
            let early = run.usage(&a.account_id, first, first + Duration::days(30));
            let late = run.usage(&a.account_id, end() - Duration::days(30), end());
            g_n += 1; if late <= early { g_bad += 1; eprintln!("G seed {seed} {} {early} {late} users={}", a.account_id, a.users); }
        }
        for a in run.of_fate(Fate::Declining) {
            let months = |k: i64| (end() - Duration::days(30 * (k + 1)), end() - Duration::days(30 * k));
            let first = a.signup.max(run.window_start());
            let peak = (1..).map(months).take_while(|(from, _)| *from >= first).map(|(from, to)| run.usage(&a.account_id, from, to)).max().unwrap();
            let (from, to) = months(0);
            let last = run.usage(&a.account_id, from, to);
            d_n += 1; if last >= peak { d_bad += 1; eprintln!("D seed {seed} {} {peak} {last}", a.account_id); }
        }
        for a in run.of_fate(Fate::Churned) {
            let churn = a.churn_date.unwrap();
            let from = a.signup.max(run.window_start()) + Duration::days(14);
            let before = run.usage(&a.account_id, churn - Duration::days(14), churn);
            let prime = (0..).map(|k| from + Duration::days(7 * k)).take_while(|w| *w + Duration::days(14) <= churn - Duration::days(14)).map(|w| run.usage(&a.account_id, w, w + Duration::days(14))).max();
            if let Some(prime) = prime { c_n += 1; if before >= prime { c_bad += 1; eprintln!("C seed {seed} {} {prime} {before}", a.account_id); } }
        }
    }
    eprintln!("growing {g_bad}/{g_n} declining {d_bad}/{d_n} churned {c_bad}/{c_n}");
}

#[test]
#[ignore]
fn debug_one() {
    let run = Run::new(small(103));
    let c = &run.sim.customers[18];
    eprintln!("{} offset {} engagement season {:?}", c.account_id, c.utc_offset / 3_600_000, c.members.iter().map(|m| (m.propensity, m.diligence, m.dormant_from)).collect::<Vec<_>>());
    for d in 0..60 {
        let t = run.window_start() + Duration::days(d);
        let ms = t.timestamp_millis();
        eprintln!("{} {} vit {:.2} usage {}", t.date_naive(), t.weekday(), c.vitality(ms), run.usage(&c.account_id, t, t + Duration::days(1)));
    }
}
