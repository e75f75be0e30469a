use super::*;

fn churn(p: f64, from_model: bool, drivers: &[(&str, f64)]) -> Option<Odds> {
    Some(Odds { probability: p, from_model, drivers: drivers.iter().map(|(n, c)| (n.to_string(), *c)).collect() })
}

fn kinds(s: &Situation) -> Vec<Kind> {
    recommend(s).into_iter().map(|r| r.kind).collect()
}

/// A paying account of a year with ten seats, active yesterday, steady usage.
fn steady() -> Snapshot {
    Snapshot {
        events_7d: 60,
        events_28d: 240,
        events_prev_28d: 250,
        events_90d: 700,
        breadth_28d: 6,
        active_days_28d: 20,
        days_since_active: Some(1),
        active_users_28d: 6,
        seats: Some(10),
        tenure_days: 365,
        mrr: 50_000,
        mrr_90d_ago: 50_000,
        ..Default::default()
    }
}

#[test]
fn given_these_accounts_the_most_urgent_comes_first() {
    let quiet_and_unpaid = Situation {
        signals: Snapshot {
            days_since_active: Some(40),
            events_7d: 0,
            events_28d: 0,
            payment_failures_90d: 2,
            ..steady()
        },
        at_risk: true,
        health: Some(22.0),
        churn_30d: churn(0.41, false, &[("no activity for 30 days", 1.6), ("payment failed (2 in 90 days)", 1.0)]),
        ..Default::default()
    };
    let renewing_with_tickets = Situation {
        signals: Snapshot { events_28d: 100, events_prev_28d: 250, escalated_open_tickets: 2, ..steady() },
        renews_in_days: Some(20),
        ..Default::default()
    };
    let growing = Situation {
        signals: Snapshot { active_users_28d: 10, limit_hits_28d: 3, ..steady() },
        expansion: churn(0.7, false, &[("seats nearly full (10 active of 10 seats, 100%)", 1.2)]),
        ..Default::default()
    };
    let risky_for_the_model = Situation {
        signals: steady(),
        health: Some(48.0),
        churn_30d: churn(0.45, true, &[("Report Created (28 days)", 0.8), ("tenure days", 0.2)]),
        ..Default::default()
    };
    let fine =
        Situation { signals: steady(), health: Some(80.0), churn_30d: churn(0.02, true, &[]), ..Default::default() };
    let table: [(&Situation, &[Kind]); 5] = [
        (&quiet_and_unpaid, &[Kind::PaymentFailed, Kind::GoneQuiet]),
        (&renewing_with_tickets, &[Kind::Renewal, Kind::UrgentTickets, Kind::UsageDown]),
        (&growing, &[Kind::SeatsFull, Kind::LimitsHit]),
        (&risky_for_the_model, &[Kind::ReviewRisk]),
        (&fine, &[]),
    ];
    for (situation, want) in table {
        assert_eq!(kinds(situation), want, "{:?}", recommend(situation));
    }
    // What was seen, then what to do, with numbers from the signals.
    let usage = recommend(&renewing_with_tickets).into_iter().find(|r| r.kind == Kind::UsageDown).unwrap();
    assert_eq!(usage.title, "Usage down 60% in 28 days (250 to 100 events): schedule a check-in");
    assert_eq!((usage.priority, usage.due_days), (Priority::High, 5));
    let review = &recommend(&risky_for_the_model)[0];
    assert_eq!(review.title, "Churn risk 45% in 30 days: review the account with its owner");
    assert!(review.evidence.iter().any(|e| e.source == Source::Churn && e.text.contains("Report Created (28 days)")));
}

#[test]
fn churn_drivers_that_point_at_a_recommendation_move_it_up() {
    // Usage down 65% (urgency 0.66) against one urgent ticket (0.7).
    let signals = Snapshot { events_28d: 70, events_prev_28d: 200, escalated_open_tickets: 1, ..steady() };
    let without = Situation { signals: signals.clone(), churn_30d: churn(0.2, true, &[]), ..Default::default() };
    assert_eq!(kinds(&without), [Kind::UrgentTickets, Kind::UsageDown]);
    let drivers = [("active days (28 days)", 1.2), ("Report Created (per 28 days over 90)", 0.9), ("MRR", 0.4)];
    let with = Situation { signals, churn_30d: churn(0.2, true, &drivers), ..Default::default() };
    let ranked = recommend(&with);
    assert_eq!(ranked.iter().map(|r| r.kind).collect::<Vec<_>>(), [Kind::UsageDown, Kind::UrgentTickets]);
    let churn_evidence: Vec<&str> =
        ranked[0].evidence.iter().filter(|e| e.source == Source::Churn).map(|e| e.text.as_str()).collect();
    assert_eq!(churn_evidence.len(), 2, "the two usage drivers, not MRR: {churn_evidence:?}");
    assert!(churn_evidence[0].starts_with("churn driver (model): active days (28 days), +1.20"));
    assert!((ranked[0].urgency - 0.76).abs() < 1e-9, "0.66 and at most 0.1 more: {}", ranked[0].urgency);
}

#[test]
fn the_prior_s_rules_and_low_components_are_the_evidence() {
    let s = Situation {
        signals: Snapshot { events_28d: 40, events_prev_28d: 100, csat_90d: Some(2.0), ..steady() },
        components: vec![(Component::Usage, 20.0), (Component::Relationship, 30.0), (Component::Support, 90.0)],
        churn_30d: churn(0.2, false, &[("usage down by half (100 to 40 events in 28 days)", 0.9)]),
        ..Default::default()
    };
    let ranked = recommend(&s);
    assert_eq!(ranked.iter().map(|r| r.kind).collect::<Vec<_>>(), [Kind::UsageDown, Kind::NegativeFeedback]);
    let texts = |r: &Recommendation| r.evidence.iter().map(|e| (e.source, e.text.clone())).collect::<Vec<_>>();
    assert_eq!(
        texts(&ranked[0]),
        [
            (Source::Signal, "events: 40 in the last 28 days, 100 in the 28 before".to_owned()),
            (Source::Health, "relationship component 30 of 100".to_owned()),
            (
                Source::Churn,
                "churn driver (rule-based prior): usage down by half (100 to 40 events in 28 days), +0.90 to the log-odds of 20%"
                    .to_owned()
            ),
        ]
    );
    assert_eq!(texts(&ranked[1])[0], (Source::Signal, "CSAT over 90 days: 2.0 of 5".to_owned()));
}

#[test]
fn a_recommendation_names_the_playbook_the_account_is_in_a_run_first() {
    let playbook = |id: &str, needs: &[Need], applies: bool, running: bool| Playbook {
        journey_id: id.into(),
        name: format!("Playbook {id}"),
        needs: needs.to_vec(),
        applies,
        running,
    };
    let playbooks = [
        playbook("medium", &[Need::Retention], false, false),
        playbook("quiet", &[Need::Retention], true, false),
        playbook("high", &[Need::Retention, Need::Expansion], true, true),
        playbook("renewal", &[Need::Renewal], true, false),
    ];
    let s = Situation {
        signals: Snapshot { days_since_active: Some(20), payment_failures_90d: 1, ..steady() },
        playbooks: &playbooks,
        ..Default::default()
    };
    let ranked = recommend(&s);
    assert_eq!(ranked.iter().map(|r| r.kind).collect::<Vec<_>>(), [Kind::PaymentFailed, Kind::GoneQuiet]);
    assert_eq!(ranked[0].playbook, None, "no playbook is about billing");
    assert_eq!(ranked[1].playbook.as_ref().map(|p| p.journey_id.as_str()), Some("high"), "the running one");
    let none_running: Vec<Playbook> = playbooks.iter().cloned().map(|p| Playbook { running: false, ..p }).collect();
    let s = Situation { playbooks: &none_running, ..s };
    assert_eq!(
        recommend(&s)[1].playbook.as_ref().map(|p| p.journey_id.as_str()),
        Some("quiet"),
        "the first that applies"
    );
}

#[test]
fn a_condition_s_names_say_what_it_is_for() {
    let needs = |names: &[&str]| Need::of_condition(names.iter().copied());
    // The shipped playbooks' segments, by the names they use.
    assert_eq!(needs(&["mrr", "band", "churn_risk_30d"]), [Need::Retention]);
    assert_eq!(needs(&["mrr", "band", "expansion", "seats", "active_users"]), [Need::Retention, Need::Expansion]);
    assert_eq!(needs(&["days_until", "renews_at"]), [Need::Renewal]);
    assert_eq!(needs(&["urgent_tickets"]), [Need::Support]);
    assert_eq!(needs(&["days_since", "signup"]), [Need::Onboarding]);
    assert_eq!(needs(&["in", "segment", "count", "event"]), [Need::Adoption]);
    assert_eq!(needs(&["traits", "region"]), []);
    assert_eq!(Need::of_alert("payment_failed"), Some(Need::Billing));
    assert_eq!(Need::of_alert("seats_nearly_full"), Some(Need::Expansion));
    assert_eq!(Need::of_alert("something_new"), None);
    for k in Kind::ALL {
        assert_eq!(Kind::parse(k.as_str()), Some(k));
    }
}
