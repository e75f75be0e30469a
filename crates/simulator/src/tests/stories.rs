//! The stories the data tells: working rhythms, fates, adoption, identity, vocabulary, volume.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use serde_json::Value;

use super::{Run, end, fate_runs, small, time};
use crate::{Fate, SimConfig, Simulation};

#[test]
fn people_work_on_weekdays_in_working_hours() {
    let run = Run::new(small(8));
    let offsets: HashMap<&str, i32> =
        run.sim.accounts().iter().map(|a| (a.account_id.as_str(), a.utc_offset_minutes)).collect();
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
    assert_eq!(
        (count(Fate::Churned), count(Fate::Growing), count(Fate::Declining), count(Fate::Healthy)),
        (4, 6, 6, 24)
    );
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
        assert!(
            identified.iter().all(|u| events
                .iter()
                .any(|(_, i)| run.messages[*i]["userId"] == *u && run.messages[*i]["type"] == "group")),
            "everyone is linked to the account"
        );
    }
}

#[test]
fn churned_accounts_fade_then_fall_silent() {
    for run in fate_runs() {
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
            assert_eq!(
                (farewell["type"].as_str(), &farewell["traits"]["status"]),
                (Some("group"), &Value::from("churned"))
            );

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
    for run in fate_runs() {
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
    for run in fate_runs() {
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
    assert!(
        declined_people * 3 > declining * 2,
        "{declined_people} of {declining} declining accounts lost active people"
    );
}

#[test]
fn new_accounts_ramp_up_and_adopt_more_features() {
    let run = Run::new(SimConfig { seed: 6, accounts: 80, days: 120, end: end() });
    let (mut first_weeks, mut later_weeks) = (0, 0);
    let (mut early_features, mut later_features) = (0, 0);
    // Milestones rather than features in use.
    let once =
        ["Signed Up", "Account Created", "Invite Sent", "Subscription Upgraded", "Integration Connected", "Signed In"];
    for a in
        run.sim.accounts().iter().filter(|a| a.signup >= run.window_start() && a.signup < end() - Duration::days(63))
    {
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
        if m["type"] == "identify"
            && let Some(visitor) = m["anonymousId"].as_str()
        {
            linked += 1;
            let browsed = run.messages[..i].iter().any(|p| p["anonymousId"] == visitor && p.get("userId").is_none());
            let later_anonymous = run.messages[i + 1..].iter().any(|p| p["anonymousId"] == visitor);
            assert!(browsed, "{visitor} was a visitor before being identified");
            assert!(!later_anonymous, "{visitor} is known by user id afterwards");
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
    for name in [
        "Signed In",
        "Dashboard Viewed",
        "Project Created",
        "Report Created",
        "Invite Sent",
        "Task Completed",
        "Comment Added",
    ] {
        assert!(events.contains_key(name), "no {name} in {events:?}");
    }
    assert!(events["Dashboard Viewed"] > 5 * events["Report Created"]);
    assert!(events["Task Completed"] > 5 * events["Project Created"]);
    let pages: HashSet<&str> =
        run.messages.iter().filter(|m| m["type"] == "page").filter_map(|m| m["name"].as_str()).collect();
    for name in ["Dashboard", "Reports", "Settings"] {
        assert!(pages.contains(name), "no {name} page");
    }
}

#[test]
fn billing_tells_the_same_story_as_the_ground_truth() {
    let sim = Simulation::new(SimConfig { seed: 7, accounts: 120, days: 180, end: end() });
    let billing = sim.billing();
    let mut upgrades = 0;
    for account in sim.accounts() {
        let periods: Vec<_> = billing.iter().filter(|p| p.account_id == account.account_id).collect();
        assert!(!periods.is_empty(), "{} has a subscription", account.account_id);
        for pair in periods.windows(2) {
            assert_eq!(pair[0].end, Some(pair[1].start), "periods follow each other without a gap");
            assert!(!pair[0].canceled);
            upgrades += usize::from(pair[1].mrr_cents > pair[0].mrr_cents);
        }
        let last = periods.last().unwrap();
        assert_eq!(
            (last.plan.as_str(), last.seats, last.mrr_cents),
            (account.plan.as_str(), account.seats, account.mrr_cents)
        );
        match account.churn_date {
            Some(churned) if churned <= end() => assert_eq!((last.end, last.canceled), (Some(churned), true)),
            _ => assert_eq!((last.end, last.canceled), (None, false), "{account:?}"),
        }
        assert!(periods[0].start <= account.signup + Duration::days(1));
    }
    assert!(upgrades > 0, "growing accounts upgrade");
    assert!(sim.accounts().iter().any(|a| a.fate == Fate::Churned));
}

#[test]
fn fading_accounts_write_in_more_rate_lower_and_fail_to_pay() {
    // Per account-month over the fate runs: tickets, urgent ones, CSAT, failed payments and
    // limits hit, for accounts whose usage is fading and for the others.
    #[derive(Default, Debug)]
    struct Tally {
        months: f64,
        tickets: usize,
        urgent: usize,
        ratings: Vec<u8>,
        failed_payments: usize,
        limits: usize,
        nps: Vec<i64>,
    }
    let (mut fading, mut growing, mut settled) = (Tally::default(), Tally::default(), Tally::default());
    for run in fate_runs() {
        let tickets = run.sim.tickets();
        for a in run.sim.accounts() {
            let t = match a.fate {
                Fate::Declining | Fate::Churned => &mut fading,
                Fate::Growing => &mut growing,
                Fate::Healthy => &mut settled,
            };
            let from = a.fate_start.unwrap_or(a.signup).max(run.window_start());
            let to = a.churn_date.unwrap_or(end());
            t.months += (to - from).num_days().max(0) as f64 / 30.0;
            for k in tickets.iter().filter(|k| k.account_id == a.account_id && k.opened_at >= from && k.opened_at < to)
            {
                assert!(
                    k.first_response_at.is_none_or(|r| r > k.opened_at),
                    "{} answered before it was opened",
                    k.ticket_id
                );
                assert!(
                    k.resolved_at.is_none_or(|r| Some(r) > k.first_response_at),
                    "{} resolved unanswered",
                    k.ticket_id
                );
                assert!(k.csat.is_none() || k.resolved_at.is_some(), "{} rated before it was resolved", k.ticket_id);
                t.tickets += 1;
                t.urgent += usize::from(matches!(k.priority, "high" | "urgent"));
                t.ratings.extend(k.csat);
            }
            for (at, i) in &run.by_account[&a.account_id] {
                let m = &run.messages[*i];
                if *at < from || *at >= to {
                    continue;
                }
                t.failed_payments += usize::from(m["event"] == "Payment Failed");
                t.limits += usize::from(m["event"] == "Plan Limit Reached");
                t.nps.extend(m["traits"]["nps"].as_i64());
            }
        }
    }
    let per_month = |n: usize, t: &Tally| n as f64 / t.months;
    let mean = |v: &[u8]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    let mean_nps = |v: &[i64]| v.iter().sum::<i64>() as f64 / v.len() as f64;
    assert!(per_month(fading.tickets, &fading) > 1.5 * per_month(settled.tickets, &settled), "{fading:?} {settled:?}");
    assert!(fading.urgent as f64 / fading.tickets as f64 > 2.0 * settled.urgent as f64 / settled.tickets as f64);
    assert!(mean(&fading.ratings) + 0.8 < mean(&settled.ratings), "{fading:?} {settled:?}");
    assert!(per_month(fading.failed_payments, &fading) > 3.0 * per_month(settled.failed_payments, &settled));
    assert!(per_month(growing.limits, &growing) > 5.0 * per_month(settled.limits, &settled), "{growing:?} {settled:?}");
    assert!(mean_nps(&fading.nps) + 2.0 < mean_nps(&settled.nps), "{fading:?} {settled:?}");
    for run in fate_runs() {
        let tickets = run.sim.tickets();
        let ids: HashSet<&str> = tickets.iter().map(|t| t.ticket_id.as_str()).collect();
        assert_eq!(ids.len(), tickets.len(), "ticket ids are unique");
    }
}
