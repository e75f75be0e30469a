//! The shipped playbooks read, check against a workspace with the demo's data and their own
//! segments, and their templates fill in with what a run gives them.

use std::collections::BTreeSet;

use super::*;
use segments::{Kind, Schema};

/// What a workspace holding the demo's data has: its events and account traits.
fn demo_vocabulary() -> (Vec<String>, Vec<String>) {
    let sim =
        simulator::Simulation::new(simulator::SimConfig { seed: 7, accounts: 30, days: 60, end: chrono::Utc::now() });
    let (mut events, mut traits) = (BTreeSet::new(), BTreeSet::new());
    for batch in sim.batches(5_000) {
        for m in batch["batch"].as_array().into_iter().flatten() {
            match m["type"].as_str() {
                Some("track") => {
                    events.insert(m["event"].as_str().unwrap().to_owned());
                }
                Some("group") => traits.extend(m["traits"].as_object().into_iter().flatten().map(|(k, _)| k.clone())),
                _ => {}
            }
        }
    }
    (events.into_iter().collect(), traits.into_iter().collect())
}

fn schema(events: &[String], traits: &[String], segments: &[String], name: Option<&str>) -> Schema {
    Schema {
        kind: Kind::Accounts,
        traits: traits.to_vec(),
        events: events.to_vec(),
        segments: segments.to_vec(),
        name: name.map(str::to_owned),
    }
}

#[test]
fn every_playbook_checks_against_the_demo_data_and_its_segments() {
    let p = shipped().unwrap();
    let (events, traits) = demo_vocabulary();
    assert!(events.iter().any(|e| e == "Project Created"), "{events:?}");

    // Each segment compiles against those saved before it, and names only events the demo has.
    let mut names: Vec<String> = Vec::new();
    for s in &p.segments {
        let compiled = segments::compile(&s.condition, &schema(&events, &traits, &names, Some(&s.name)))
            .unwrap_or_else(|e| panic!("segment {:?}: {e}", s.name));
        assert_eq!(compiled.warnings, [], "segment {:?}", s.name);
        names.push(s.name.clone());
    }
    assert_eq!(names.len(), 11);

    let all = schema(&events, &traits, &names, None);
    let check = |c: &str, subject: journeys::Subject| -> Result<(), String> {
        assert_eq!(subject, journeys::Subject::Accounts);
        let compiled = segments::compile(c, &all).map_err(|e| e.to_string())?;
        assert_eq!(compiled.warnings, [], "{c}");
        Ok(())
    };
    let mut used = BTreeSet::new();
    let mut triggers = BTreeSet::new();
    for (file, doc) in &p.journeys {
        let j = journeys::parse(doc, &check).unwrap_or_else(|problems| panic!("{file}: {problems:?}"));
        let journeys::Trigger::SegmentEntered { segment } = &j.trigger else { panic!("{file}: {:?}", j.trigger) };
        assert!(names.contains(segment), "{file}: no segment {segment:?}");
        triggers.insert(segment.clone());
        for step in &j.steps {
            if let journeys::Action::Email { template, to } = &step.action {
                assert!(p.templates.contains_key(template), "{file}: no template {template}");
                assert_eq!(to, "account_owner", "{file}");
                used.insert(template.clone());
            }
        }
    }
    let shipped: BTreeSet<String> = p.templates.keys().cloned().collect();
    assert_eq!(used, shipped, "every template is used, and every one used ships");
    // Every segment starts a journey.
    assert_eq!(triggers.len(), names.len(), "{triggers:?}");
}

#[test]
fn every_template_checks_and_fills_in_with_or_without_a_score() {
    let p = shipped().unwrap();
    let unscored = json!({
        "account": {"id": "acct_0001", "name": "Globex", "plan": "team"},
        "journey": {"id": "jrn_1", "name": "Onboarding", "run_id": "run_1"},
        "trigger": {"kind": "segment_entered", "segment": "New accounts"},
        "unsubscribe_url": "https://cs.example.com/unsubscribe/ws_1?token=t",
    });
    let mut scored = unscored.clone();
    scored["score"] = json!({"health": 31.0, "band": "at_risk", "churn_30d": 0.4, "churn_90d": 0.6, "expansion": 0.1});
    for (name, t) in &p.templates {
        let t: outbox::template::Template = serde_json::from_value(t.clone()).unwrap();
        outbox::template::check(&t).unwrap_or_else(|e| panic!("{name}: {e}"));
        for cx in [&unscored, &scored] {
            let r = outbox::template::render(&t, cx).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(r.subject.contains("Globex"), "{name}: {}", r.subject);
            assert!(r.text.contains("unsubscribe/ws_1"), "{name}: every email says how to stop them");
        }
    }
    let intervention: outbox::template::Template =
        serde_json::from_value(p.templates["retention_intervention"].clone()).unwrap();
    assert!(outbox::template::render(&intervention, &scored).unwrap().text.contains("health is 31"));

    // The Slack alert of the support journey fills in both ways too.
    let (_, support) = p.journeys.iter().find(|(f, _)| *f == "support-follow-up.yaml").unwrap();
    let text = support["steps"][0]["slack"]["text"].as_str().unwrap();
    let t = outbox::template::Template { subject: String::new(), html: None, text: text.to_owned() };
    assert_eq!(outbox::template::render(&t, &unscored).unwrap().text, "Urgent support ticket open for Globex.");
    assert!(outbox::template::render(&t, &scored).unwrap().text.ends_with("(health 31)."));
}
