//! The Segment contract: determinism, required fields by type, ids, timestamps, batch limits.

use std::collections::HashSet;

use chrono::{DateTime, Duration};
use serde_json::Value;

use super::{end, small, time};
use crate::{MAX_BATCH_BYTES, MAX_BATCH_MESSAGES, SimConfig, Simulation};

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
    let first = |s: &Simulation| {
        s.messages()
            .skip(100)
            .take(50)
            .map(|mut m| {
                // Ids embed the seed; compare what happened, not what it is called.
                m.as_object_mut().unwrap().remove("messageId");
                m
            })
            .collect::<Vec<_>>()
    };
    assert_ne!(first(&a), first(&b));
}

#[test]
fn every_message_follows_the_segment_spec() {
    let config = small(3);
    let sim = Simulation::new(config.clone());
    let start = config.end - Duration::days(i64::from(config.days));
    let allowed: HashSet<&str> = [
        "type",
        "messageId",
        "timestamp",
        "userId",
        "anonymousId",
        "traits",
        "groupId",
        "event",
        "properties",
        "context",
        "name",
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

    assert!(
        sim.batches(0).take(3).all(|b| b["batch"].as_array().unwrap().len() == 1),
        "at least one message per batch"
    );
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
