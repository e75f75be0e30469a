use super::*;
use serde_json::json;

/// Conditions checked against a small workspace, as the engine checks them.
fn condition(text: &str, subject: Subject) -> Result<(), String> {
    let schema = segments::Schema {
        kind: match subject {
            Subject::Accounts => segments::Kind::Accounts,
            Subject::People => segments::Kind::People,
        },
        traits: vec!["plan".into()],
        events: vec!["Project Created".into()],
        segments: vec![],
        name: None,
    };
    segments::compile(text, &schema).map(|_| ()).map_err(|e| e.to_string())
}

fn problems(doc: Value) -> Vec<String> {
    parse(&doc, &condition).expect_err("the definition has problems").iter().map(Problem::to_string).collect()
}

fn onboarding() -> Value {
    json!({
        "name": "Onboarding",
        "trigger": {"segment_entered": "New, no project yet"},
        "reentry": {"after": "90d"},
        "goal": "last(event \"Project Created\") is set",
        "frequency_cap": {"max": 3, "per": "7d"},
        "quiet_hours": {"from": "21:00", "to": "08:00"},
        "steps": [
            {"id": "welcome", "email": {"template": "welcome", "to": "account_owner"}},
            {"id": "pause", "wait": "2d"},
            {"id": "check", "branch": {"if": "count(event \"Project Created\", 30d) > 0", "then": "done", "else": "ab"}},
            {"id": "ab", "split": {"arms": [{"weight": 50, "next": "nudge"}, {"weight": 50, "next": "call"}]}},
            {"id": "nudge", "slack": {"text": "Still no project", "channel": "#cs"}, "next": "wait_project"},
            {"id": "call", "task": {"title": "Call them", "assignee": "csm", "priority": "high", "due": "3d"}, "next": "wait_project"},
            {"id": "wait_project", "wait_for": {"event": "Project Created", "timeout": "7d", "on_timeout": "escalate"}, "next": "done"},
            {"id": "escalate", "webhook": {"url": "https://hooks.example.com/escalate", "body": {"why": "no project"}}},
            {"id": "tag", "set_trait": {"key": "onboarding", "value": "escalated"}},
            {"id": "done", "end": {}}
        ]
    })
}

#[test]
fn a_whole_definition_reads_into_its_model() {
    let j = parse(&onboarding(), &condition).unwrap();
    assert_eq!(j.name, "Onboarding");
    assert_eq!(j.subject, Subject::Accounts);
    assert_eq!(j.trigger, Trigger::SegmentEntered { segment: "New, no project yet".into() });
    assert_eq!(j.reentry, Reentry::After(90 * 86_400));
    assert_eq!(j.frequency_cap, Some(FrequencyCap { max: 3, per: 7 * 86_400 }));
    assert_eq!(j.quiet_hours, Some(QuietHours { from: 21 * 60, to: 8 * 60 }));
    assert_eq!(j.steps.len(), 10);
    assert_eq!(j.steps[1].action, Action::Wait { seconds: 2 * 86_400 });
    assert_eq!(j.steps[3].action, Action::Split { arms: vec![(50, "nudge".into()), (50, "call".into())] });
    assert_eq!(
        j.steps[6].action,
        Action::WaitFor {
            event: "Project Created".into(),
            key: None,
            timeout: 7 * 86_400,
            on_timeout: "escalate".into()
        }
    );
    assert_eq!(j.steps[6].next.as_deref(), Some("done"));
    // Manual and scheduled triggers, and people journeys.
    let mut doc = onboarding();
    doc["trigger"] = json!("manual");
    assert_eq!(parse(&doc, &condition).unwrap().trigger, Trigger::Manual);
    doc["trigger"] =
        json!({"schedule": {"cron": "0 9 * * MON-FRI", "segment": "Renewals", "timezone": "Europe/Paris"}});
    assert_eq!(
        parse(&doc, &condition).unwrap().trigger,
        Trigger::Schedule {
            cron: "0 9 * * MON-FRI".into(),
            timezone: Some("Europe/Paris".into()),
            segment: "Renewals".into()
        }
    );
}

#[test]
fn every_problem_is_named_by_its_path() {
    let mut doc = onboarding();
    doc["steps"][2]["branch"]["then"] = json!("donee");
    doc["steps"][1]["wait"] = json!("2 days");
    doc["steps"][5]["task"]["priority"] = json!("asap");
    doc["reentry"] = json!("sometimes");
    doc["trigger"] = json!({"schedule": {"cron": "0 25 * * *", "segment": "Renewals"}});
    doc["goal"] = json!("helth > 50");
    doc["colour"] = json!("blue");
    let found = problems(doc);
    for expected in [
        "journey.colour: is not a known member; expected one of name, subject, trigger, reentry, exit_when, goal, frequency_cap, quiet_hours, steps, description",
        "journey.trigger.schedule.cron: hour: \"25\" is not a value from 0 to 23, a range or `*`",
        "journey.reentry: expected \"never\", \"always\" or {\"after\": \"30d\"}",
        "steps[1].wait: \"2 days\" is not a duration; write 30m, 12h, 2d or 1w",
        "steps[5].task.priority: expected one of low, normal, high, urgent",
    ] {
        assert!(found.iter().any(|p| p == expected), "missing {expected:?} in {found:#?}");
    }
    assert!(
        found.iter().any(|p| p.starts_with("journey.goal: line 1, column 1: `helth` is not a field")),
        "{found:#?}"
    );
    // The graph is checked once each step reads: a reference to no step.
    let mut doc = onboarding();
    doc["steps"][2]["branch"]["then"] = json!("donee");
    assert_eq!(problems(doc), ["steps[2].branch.then: no step has the id \"donee\""]);
}

#[test]
fn steps_are_unique_reachable_and_never_loop_without_waiting() {
    let doc = |steps: Value| json!({"name": "J", "trigger": "manual", "steps": steps});
    assert_eq!(
        problems(doc(json!([{"id": "a", "end": {}}, {"id": "a", "end": {}}]))),
        ["steps[1].id: \"a\" is also the id of steps[0]", "steps[1]: no step leads to \"a\""]
    );
    assert_eq!(
        problems(doc(json!([{"id": "a", "end": {}}, {"id": "b", "wait": "1d"}]))),
        ["steps[1]: no step leads to \"b\""]
    );
    assert_eq!(
        problems(doc(json!([
            {"id": "a", "slack": {"text": "hi"}},
            {"id": "b", "branch": {"if": "health < 40", "then": "a", "else": "c"}},
            {"id": "c", "end": {}}
        ]))),
        ["steps[0]: the steps a -> b -> a loop without a wait; put a wait in the loop"]
    );
    // With a wait in it, a loop is a reminder every day until the condition holds.
    assert!(
        parse(
            &doc(json!([
                {"id": "a", "slack": {"text": "hi"}},
                {"id": "w", "wait": "1d"},
                {"id": "b", "branch": {"if": "health < 40", "then": "a", "else": "c"}},
                {"id": "c", "end": {}}
            ])),
            &condition
        )
        .is_ok()
    );
    // A step does one thing; a branch chooses its own way.
    assert_eq!(
        problems(doc(json!([{"id": "a", "wait": "1d", "end": {}}]))),
        [
            "steps[0]: a step does exactly one of email, slack, webhook, task, wait, wait_for, branch, split, set_trait, end"
        ]
    );
    assert_eq!(
        problems(doc(json!([
            {"id": "a", "branch": {"if": "health < 40", "then": "b", "else": "b"}, "next": "b"},
            {"id": "b", "end": {}}
        ]))),
        ["steps[0].next: a branch step chooses where to go; it takes no next"]
    );
    assert_eq!(problems(doc(json!([]))), ["journey.steps: a journey needs at least one step"]);
}

#[test]
fn a_journey_of_accounts_writes_to_people_it_has() {
    let mut doc = onboarding();
    doc["steps"][0]["email"]["to"] = json!("person");
    assert_eq!(
        problems(doc.clone()),
        [
            "steps[0].email.to: a journey of accounts has no person of its own; write account_owner, csm or account_admins"
        ]
    );
    doc["subject"] = json!("people");
    // A people journey's conditions are checked as people conditions: counts are refused.
    let found = problems(doc);
    let at: Vec<&str> = found.iter().map(|p| p.split(": ").next().unwrap()).collect();
    assert_eq!(at, ["journey.goal", "steps[2].branch.if"], "{found:#?}");
    assert!(found[1].contains("count counts an account's events"), "{found:#?}");
}

#[test]
fn cron_fields_take_values_ranges_lists_steps_and_names() {
    for ok in ["* * * * *", "*/15 9-17 * * 1-5", "0 9 1,15 * *", "30 8 * JAN-MAR sun", "0 0 1 */3 *"] {
        assert!(crate::Cron::parse(ok).is_ok(), "{ok}");
    }
    for (bad, why) in [
        ("* * * *", "a schedule has five fields (minute hour day-of-month month day-of-week), not 4"),
        ("60 * * * *", "minute: \"60\" is not a value from 0 to 59, a range or `*`"),
        ("* * 0 * *", "day of month: \"0\" is not a value from 1 to 31, a range or `*`"),
        ("*/0 * * * *", "minute: the step \"0\" is not a positive number"),
        ("* * * * 5-1", "day of week: \"5-1\" is not a value from 0 to 7, a range or `*`"),
    ] {
        assert_eq!(crate::Cron::parse(bad).err(), Some(why.to_owned()), "{bad}");
    }
}
