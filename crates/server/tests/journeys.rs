//! The journeys API on a real workspace: definitions in JSON and YAML with their versions,
//! every problem of a bad one with its path, manual runs and the steps they take, the
//! deliveries and tasks those steps make, and who may see and change each.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{Duration, Utc};
use common::{App, Keys};
use serde_json::{Value, json};
use store::{Attempt, MessageStatus, MessageUpdate, Store};
use tower::ServiceExt;

/// A request with a body as given, of the given content type.
async fn raw(app: &App, method: &str, path: &str, key: &str, content_type: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", content_type)
        .body(Body::from(body.to_owned()))
        .unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Two customers: acme-co, whose owner is owner@acme.test, and globex-co.
async fn customers(app: &App, ws: &Keys) {
    let at = (Utc::now() - Duration::days(30)).to_rfc3339();
    let group = |n: u32, user: &str, account: &str, traits: Value| {
        json!({"type": "group", "messageId": format!("g{n}"), "userId": user, "groupId": account,
               "traits": traits, "timestamp": at})
    };
    app.send(
        ws,
        vec![
            group(1, "ann", "acme-co", json!({"name": "Acme", "owner_email": "owner@acme.test"})),
            group(2, "gil", "globex-co", json!({"name": "Globex", "owner_email": "owner@globex.test"})),
        ],
    )
    .await;
}

/// Welcomes the account's owner, asks the CSM to call within 3 days, then waits 2 days.
fn onboarding(template: &str) -> Value {
    json!({
        "name": "Onboarding",
        "trigger": "manual",
        "reentry": "never",
        "steps": [
            {"id": "welcome", "email": {"template": template, "to": "account_owner"}},
            {"id": "call", "task": {"title": "Call them", "assignee": "csm@team.test", "priority": "high", "due": "3d"}},
            {"id": "pause", "wait": "2d"},
            {"id": "done", "end": {}}
        ]
    })
}

fn id_of(v: &Value, member: &str) -> String {
    v[member].as_str().unwrap_or_else(|| panic!("no {member} in {v}")).to_owned()
}

fn ids(v: &Value, member: &str) -> Vec<String> {
    v["data"].as_array().unwrap_or_else(|| panic!("no data in {v}")).iter().map(|x| id_of(x, member)).collect()
}

/// Creates `definition` (enabled) and returns its id.
async fn enabled_journey(app: &App, ws: &Keys, definition: Value) -> String {
    let (status, created) = app.call("POST", "/api/v1/journeys", &ws.admin, Some(definition)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = id_of(&created["journey"], "journey_id");
    let (status, enabled) = app.call("POST", &format!("/api/v1/journeys/{id}/enable"), &ws.admin, None).await;
    assert_eq!((status, &enabled["journey"]["enabled"]), (StatusCode::OK, &json!(true)), "{enabled}");
    id
}

async fn start(app: &App, ws: &Keys, journey: &str, subject: &str) -> (StatusCode, Value) {
    let path = format!("/api/v1/journeys/{journey}/runs");
    app.call("POST", &path, &ws.admin, Some(json!({"subject_id": subject, "data": {"source": "test"}}))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journeys_are_written_in_json_or_yaml_and_runs_keep_their_version() {
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    customers(&app, &ws).await;

    // From JSON: stored as given, disabled, at version 1, with no runs yet.
    let (status, created) = app.call("POST", "/api/v1/journeys", &ws.admin, Some(onboarding("welcome"))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = id_of(&created["journey"], "journey_id");
    assert!(id.starts_with("jny_"), "{id}");
    let j = &created["journey"];
    assert_eq!(
        (&j["name"], &j["kind"], &j["enabled"], &j["version"]),
        (&json!("Onboarding"), &json!("accounts"), &json!(false), &json!(1))
    );
    assert_eq!(j["definition"], onboarding("welcome"));
    assert_eq!((&created["stats"]["entered"], &created["stats"]["steps"]), (&json!(0), &json!([])));

    // From YAML: read into the same value; `enabled` is the journey's state, not its definition.
    let yaml = "name: Renewal call\n\
                enabled: true\n\
                trigger:\n  event: Renewal Due\n\
                reentry:\n  after: 30d\n\
                steps:\n\
                \x20 - id: call\n\
                \x20   task:\n\
                \x20     title: Talk renewal\n\
                \x20     assignee: csm\n\
                \x20 - id: pause\n\
                \x20   wait: 1w\n";
    let (status, renewal) = raw(&app, "POST", "/api/v1/journeys", &ws.admin, "application/yaml", yaml).await;
    assert_eq!(status, StatusCode::CREATED, "{renewal}");
    let renewal_id = id_of(&renewal["journey"], "journey_id");
    assert_eq!(renewal["journey"]["enabled"], true);
    let expected = json!({"name": "Renewal call", "trigger": {"event": "Renewal Due"}, "reentry": {"after": "30d"},
                          "steps": [{"id": "call", "task": {"title": "Talk renewal", "assignee": "csm"}},
                                    {"id": "pause", "wait": "1w"}]});
    assert_eq!(renewal["journey"]["definition"], expected);
    let stored = app.store.get_journey(&ws.id, &renewal_id).await.unwrap().unwrap();
    assert_eq!((stored.definition, stored.enabled, stored.version), (expected, true, 1));

    // Listed by name, each with its stats; one by id.
    let (status, list) = app.get("/api/v1/journeys", &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> =
        list["data"].as_array().unwrap().iter().map(|j| j["journey"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Onboarding", "Renewal call"]);
    assert!(list["data"].as_array().unwrap().iter().all(|j| j["stats"]["entered"] == 0), "{list}");
    let (status, one) = app.get(&format!("/api/v1/journeys/{id}"), &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one, created);
    let (status, e) = app.get("/api/v1/journeys/jny_nope", &ws.viewer).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("journey_not_found")));

    // A run started on version 1.
    let (status, enabled) = app.call("POST", &format!("/api/v1/journeys/{id}/enable"), &ws.admin, None).await;
    assert_eq!((status, &enabled["journey"]["enabled"]), (StatusCode::OK, &json!(true)));
    let (status, first) = start(&app, &ws, &id, "acme-co").await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["version"], 1);
    let first_run = id_of(&first, "run_id");

    // A changed definition is version 2; the journey stays enabled; version 1 is kept.
    let (status, updated) =
        app.call("PUT", &format!("/api/v1/journeys/{id}"), &ws.admin, Some(onboarding("welcome_v2"))).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!((&updated["journey"]["version"], &updated["journey"]["enabled"]), (&json!(2), &json!(true)));
    assert_eq!(updated["journey"]["definition"], onboarding("welcome_v2"));
    assert_eq!(updated["stats"]["entered"], 1);
    let (status, v1) = app.get(&format!("/api/v1/journeys/{id}/versions/1"), &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v1, json!({"journey_id": id, "version": 1, "definition": onboarding("welcome")}));
    let (_, v2) = app.get(&format!("/api/v1/journeys/{id}/versions/2"), &ws.viewer).await;
    assert_eq!(v2["definition"], onboarding("welcome_v2"));
    let (status, e) = app.get(&format!("/api/v1/journeys/{id}/versions/3"), &ws.viewer).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("journey_not_found")));
    assert_eq!(app.store.journey_version(&ws.id, &id, 1).await.unwrap(), Some(onboarding("welcome")));

    // The same definition again makes no new version.
    let (_, same) = app.call("PUT", &format!("/api/v1/journeys/{id}"), &ws.admin, Some(onboarding("welcome_v2"))).await;
    assert_eq!(same["journey"]["version"], 2);

    // The first run keeps version 1 and what it decided; a new run follows version 2.
    let (status, run) = app.get(&format!("/api/v1/runs/{first_run}"), &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["run"]["version"], 1);
    let (status, second) = start(&app, &ws, &id, "globex-co").await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(second["version"], 2);
    let templates = |v: &Value| -> Vec<String> {
        v["data"].as_array().unwrap().iter().map(|m| m["payload"]["template"].as_str().unwrap().to_owned()).collect()
    };
    let (_, d1) = app.get(&format!("/api/v1/deliveries?run_id={first_run}"), &ws.viewer).await;
    assert_eq!(templates(&d1), ["welcome"]);
    let (_, d2) = app.get(&format!("/api/v1/deliveries?run_id={}", id_of(&second, "run_id")), &ws.viewer).await;
    assert_eq!(templates(&d2), ["welcome_v2"]);
    assert_eq!(d2["data"][0]["endpoint"], "owner@globex.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_definition_gives_every_problem_with_its_path_and_nothing_is_stored() {
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    customers(&app, &ws).await;
    let (status, seg) = app
        .call("POST", "/api/v1/segments", &ws.admin, Some(json!({"name": "Trial accounts", "condition": "seats >= 0"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{seg}");

    // A good one validates, with the journey as read.
    let good = json!({"name": "Trial welcome", "trigger": {"segment_entered": "Trial accounts"},
                      "goal": "health >= 70",
                      "steps": [{"id": "hello", "email": {"template": "trial", "to": "csm"}}]});
    let (status, v) = app.call("POST", "/api/v1/journeys/validate", &ws.admin, Some(good.clone())).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!((&v["valid"], &v["problems"]), (&json!(true), &json!([])));
    assert_eq!(v["journey"]["trigger"], json!({"segment_entered": {"segment": "Trial accounts"}}));
    assert_eq!(v["journey"]["reentry"], "never");

    // Every problem at once: a bad duration, a misspelt field in a condition (told as the
    // segment language tells it), a `next` to no step (so the step after it is never reached),
    // a segment the workspace lacks.
    let bad = json!({"name": "Broken", "trigger": {"segment_entered": "Trail accounts"},
                     "reentry": {"after": "3 days"}, "goal": "helth >= 70",
                     "steps": [{"id": "hello", "email": {"template": "t", "to": "csm"}, "next": "nowhere"},
                               {"id": "bye", "end": {}}]});
    let (status, v) = app.call("POST", "/api/v1/journeys/validate", &ws.viewer, Some(bad.clone())).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["valid"], false);
    let problems: Vec<(String, String)> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["path"].as_str().unwrap().to_owned(), p["message"].as_str().unwrap().to_owned()))
        .collect();
    let expected = [
        ("journey.reentry.after", "\"3 days\" is not a duration; write 30m, 12h, 2d or 1w"),
        (
            "journey.goal",
            "line 1, column 1: `helth` is not a field of an account nor one of its traits; did you mean `health`? \
             (a trait no one has yet is written traits.helth)",
        ),
        ("steps[0].next", "no step has the id \"nowhere\""),
        ("steps[1]", "no step leads to \"bye\""),
        ("journey.trigger", "the workspace has no segment \"Trail accounts\" (it has: Trial accounts)"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(p, m)| (p.to_string(), m.to_string())).collect();
    assert_eq!(problems, expected);

    // Creating it is refused with the same problems, the first named as the field.
    let (status, e) = app.call("POST", "/api/v1/journeys", &ws.admin, Some(bad.clone())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["code"], "invalid_journey");
    assert_eq!(e["problems"], v["problems"]);
    assert_eq!(e["error"]["field"], v["problems"][0]["path"]);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("the journey has 5 problem(s); the first: journey.reentry.after: "),
        "{e}"
    );

    // A segment of the other kind is named as such.
    let people = json!({"name": "People", "subject": "people", "trigger": {"segment_exited": "Trial accounts"},
                        "steps": [{"id": "bye", "end": {}}]});
    let (_, v) = app.call("POST", "/api/v1/journeys/validate", &ws.admin, Some(people)).await;
    assert_eq!(
        v["problems"],
        json!([{"path": "journey.trigger",
                "message": "\"Trial accounts\" is a segment of accounts, the journey is of people"}])
    );

    // YAML that does not read says where.
    let yaml = "name: Broken\nsteps:\n  - id: a\n    wait: [2d\n";
    for path in ["/api/v1/journeys", "/api/v1/journeys/validate"] {
        let (status, e) = raw(&app, "POST", path, &ws.admin, "application/yaml", yaml).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
        assert_eq!(e["error"]["code"], "invalid_yaml");
        // Where the bracket opens: line 4, column 11.
        assert_eq!(e["position"], json!({"line": 4, "column": 11}), "{e}");
        assert!(e["error"]["message"].as_str().unwrap().contains("unclosed bracket"), "{e}");
    }

    // JSON said to be JSON that does not read is a JSON error, with where.
    let (status, e) =
        raw(&app, "POST", "/api/v1/journeys", &ws.admin, "application/json", "{\"name\": \"x\",\n  }").await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_json")), "{e}");
    assert_eq!(e["position"]["line"], 2, "{e}");

    // A taken name, on create and on rename.
    let (status, first) = app.call("POST", "/api/v1/journeys", &ws.admin, Some(good.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, e) = app.call("POST", "/api/v1/journeys", &ws.admin, Some(good.clone())).await;
    assert_eq!(
        (status, e["error"]["code"].as_str(), e["error"]["field"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"), Some("name"))
    );
    let mut other = good.clone();
    other["name"] = json!("Other");
    let (_, second) = app.call("POST", "/api/v1/journeys", &ws.admin, Some(other.clone())).await;
    let second_id = id_of(&second["journey"], "journey_id");
    let (status, _) = app.call("PUT", &format!("/api/v1/journeys/{second_id}"), &ws.admin, Some(good.clone())).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // A bad update changes nothing either.
    let (status, _) = app.call("PUT", &format!("/api/v1/journeys/{second_id}"), &ws.admin, Some(bad.clone())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, e) = app.call("PUT", "/api/v1/journeys/jny_nope", &ws.admin, Some(other.clone())).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("journey_not_found")));

    // Only the two good ones are stored, each at version 1 as first given.
    let stored = app.store.list_journeys(&ws.id).await.unwrap();
    let kept: Vec<(&str, i64, &Value)> = stored.iter().map(|j| (j.name.as_str(), j.version, &j.definition)).collect();
    assert_eq!(kept, [("Other", 1, &other), ("Trial welcome", 1, &good)]);
    let (_, list) = app.get("/api/v1/journeys", &ws.admin).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_by_hand_takes_its_first_steps() {
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    customers(&app, &ws).await;
    let (status, created) = app.call("POST", "/api/v1/journeys", &ws.admin, Some(onboarding("welcome"))).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = id_of(&created["journey"], "journey_id");

    // Disabled: refused, and no run is made.
    let (status, e) = start(&app, &ws, &id, "acme-co").await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_run")), "{e}");
    assert_eq!(e["error"]["message"], "the journey is not enabled");
    let (_, runs) = app.get(&format!("/api/v1/journeys/{id}/runs"), &ws.admin).await;
    assert_eq!(runs["data"], json!([]));

    // Enabled: 201 with the run, which sent the welcome, made the task and now waits.
    let (status, on) = app.call("POST", &format!("/api/v1/journeys/{id}/enable"), &ws.admin, None).await;
    assert_eq!((status, &on["journey"]["enabled"]), (StatusCode::OK, &json!(true)));
    assert!(app.store.get_journey(&ws.id, &id).await.unwrap().unwrap().enabled);
    let before = Utc::now() - Duration::milliseconds(1);
    let (status, run) = start(&app, &ws, &id, "acme-co").await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let run_id = id_of(&run, "run_id");
    assert_eq!(
        (&run["journey_id"], &run["subject_id"], &run["account_id"], &run["status"], &run["step"], &run["seq"]),
        (&json!(id), &json!("acme-co"), &json!("acme-co"), &json!("active"), &json!("done"), &json!(3))
    );
    assert_eq!(run["context"]["trigger"], json!({"kind": "manual", "data": {"source": "test"}}));
    let wake = chrono::DateTime::parse_from_rfc3339(run["wake_at"].as_str().unwrap()).unwrap();
    assert!(wake >= before + Duration::days(2) && wake <= Utc::now() + Duration::days(2), "{run}");

    // Its steps, in order.
    let (status, shown) = app.get(&format!("/api/v1/runs/{run_id}"), &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["run"], run);
    let steps: Vec<(&str, &str, i64)> = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step_id"].as_str().unwrap(), s["outcome"].as_str().unwrap(), s["seq"].as_i64().unwrap()))
        .collect();
    assert_eq!(steps, [("welcome", "sent", 0), ("call", "created", 1), ("pause", "waited", 2)]);
    let (status, e) = app.get("/api/v1/runs/run_nope", &ws.viewer).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("run_not_found")));

    // The email is a pending delivery to the account's owner.
    let (status, deliveries) = app.get(&format!("/api/v1/deliveries?run_id={run_id}"), &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    let d = &deliveries["data"].as_array().unwrap()[..];
    assert_eq!(d.len(), 1, "{deliveries}");
    assert_eq!(
        (&d[0]["channel"], &d[0]["endpoint"], &d[0]["status"], &d[0]["step_id"], &d[0]["journey_id"]),
        (&json!("email"), &json!("owner@acme.test"), &json!("pending"), &json!("welcome"), &json!(id))
    );
    assert_eq!(d[0]["payload"]["template"], "welcome");
    assert_eq!(d[0]["payload"]["context"]["account"]["name"], "Acme");
    assert_eq!(d[0]["payload"]["context"]["trigger"]["data"]["source"], "test");

    // No such account: 400 naming subject_id, and no run.
    let (status, e) = start(&app, &ws, &id, "nobody-co").await;
    assert_eq!(
        (status, e["error"]["code"].as_str(), e["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_run"), Some("subject_id")),
        "{e}"
    );
    assert_eq!(e["error"]["message"], "the workspace has no account \"nobody-co\"");
    let (status, e) =
        app.call("POST", &format!("/api/v1/journeys/{id}/runs"), &ws.admin, Some(json!({"data": {}}))).await;
    assert_eq!((status, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("subject_id")));
    let (status, e) = start(&app, &ws, "jny_nope", "acme-co").await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("journey_not_found")));

    // Re-entry `never`: the same account cannot start again.
    let (status, e) = start(&app, &ws, &id, "acme-co").await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{e}");

    // Still one run: for the journey, for the account, and in the journey's stats.
    let (_, runs) = app.get(&format!("/api/v1/journeys/{id}/runs"), &ws.viewer).await;
    assert_eq!(ids(&runs, "run_id"), [run_id.as_str()]);
    let (_, active) = app.get(&format!("/api/v1/journeys/{id}/runs?status=active"), &ws.viewer).await;
    assert_eq!(ids(&active, "run_id"), [run_id.as_str()]);
    let (_, completed) = app.get(&format!("/api/v1/journeys/{id}/runs?status=completed"), &ws.viewer).await;
    assert_eq!(completed["data"], json!([]));
    let (status, e) = app.get(&format!("/api/v1/journeys/{id}/runs?status=sleeping"), &ws.viewer).await;
    assert_eq!((status, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("status")));
    let (status, of_account) = app.get("/api/v1/accounts/acme-co/journeys", &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&of_account, "run_id"), [run_id.as_str()]);
    let (_, of_globex) = app.get("/api/v1/accounts/globex-co/journeys", &ws.viewer).await;
    assert_eq!(of_globex["data"], json!([]));
    let (status, e) = app.get("/api/v1/accounts/nobody-co/journeys", &ws.viewer).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("account_not_found")));
    // The account's activity: the run with its steps, the email and the task, newest first.
    let (status, activity) = app.get("/api/v1/accounts/acme-co/activity", &ws.viewer).await;
    assert_eq!(status, StatusCode::OK, "{activity}");
    let items = activity["data"].as_array().unwrap();
    let mut kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["delivery", "run", "task"], "{activity}");
    let at: Vec<&str> = items.iter().map(|i| i["at"].as_str().unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] >= w[1]), "newest first: {at:?}");
    let delivery = items.iter().find(|i| i["kind"] == "delivery").unwrap();
    assert_eq!((&delivery["delivery"]["run_id"], &delivery["delivery"]["status"]), (&json!(run_id), &json!("pending")));
    let run_item = items.iter().find(|i| i["kind"] == "run").unwrap();
    assert_eq!(run_item["steps"].as_array().unwrap().len(), 3);
    let (_, limited) = app.get("/api/v1/accounts/acme-co/activity?limit=1", &ws.viewer).await;
    assert_eq!(limited["data"].as_array().unwrap().len(), 1);
    let (_, of_globex) = app.get("/api/v1/accounts/globex-co/activity", &ws.viewer).await;
    assert_eq!(of_globex["data"], json!([]));
    let (status, e) = app.get("/api/v1/accounts/nobody-co/activity", &ws.viewer).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("account_not_found")));
    let (_, j) = app.get(&format!("/api/v1/journeys/{id}"), &ws.viewer).await;
    let stats = &j["stats"];
    assert_eq!((&stats["entered"], &stats["active"], &stats["completed"]), (&json!(1), &json!(1), &json!(0)));
    assert_eq!(
        stats["steps"],
        json!([{"step_id": "call", "taken": 1, "outcomes": [["created", 1]]},
               {"step_id": "pause", "taken": 1, "outcomes": [["waited", 1]]},
               {"step_id": "welcome", "taken": 1, "outcomes": [["sent", 1]]}])
    );

    // Disabled again: no new runs, the one in progress goes on.
    let (status, off) = app.call("POST", &format!("/api/v1/journeys/{id}/disable"), &ws.admin, None).await;
    assert_eq!((status, &off["journey"]["enabled"]), (StatusCode::OK, &json!(false)));
    let (status, _) = start(&app, &ws, &id, "globex-co").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(app.store.get_run(&ws.id, &run_id).await.unwrap().unwrap().status, store::RunStatus::Active);
    let (status, e) = app.call("POST", "/api/v1/journeys/jny_nope/enable", &ws.admin, None).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("journey_not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_come_from_steps_or_by_hand_and_record_who_closed_them() {
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    customers(&app, &ws).await;
    let id = enabled_journey(&app, &ws, onboarding("welcome")).await;
    let before = Utc::now() - Duration::milliseconds(1);
    let (_, run) = start(&app, &ws, &id, "acme-co").await;
    let run_id = id_of(&run, "run_id");

    // The step's task: open, for the CSM, due in three days, tied to its run.
    let (status, tasks) = app.get("/api/v1/tasks", &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    let list = tasks["data"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{tasks}");
    let t = &list[0];
    assert_eq!(
        (&t["title"], &t["assignee"], &t["priority"], &t["status"], &t["account_id"], &t["run_id"], &t["journey_id"]),
        (
            &json!("Call them"),
            &json!("csm@team.test"),
            &json!("high"),
            &json!("open"),
            &json!("acme-co"),
            &json!(run_id),
            &json!(id)
        )
    );
    assert_eq!(t["closed_by"], Value::Null);
    let due = chrono::DateTime::parse_from_rfc3339(t["due_at"].as_str().unwrap()).unwrap();
    assert!(due >= before + Duration::days(3) && due <= Utc::now() + Duration::days(3), "{t}");
    let step_task = id_of(t, "task_id");

    // One by hand, for another assignee, due sooner.
    let due_at = (Utc::now() + Duration::days(1)).to_rfc3339();
    let manual = json!({"title": "Send the QBR deck", "assignee": "ops@team.test", "priority": "urgent",
                        "due_at": due_at, "account_id": "globex-co", "body": "Before Friday"});
    let (status, made) = app.call("POST", "/api/v1/tasks", &ws.admin, Some(manual)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let manual_task = id_of(&made, "task_id");
    assert_eq!(
        (&made["status"], &made["account_id"], &made["run_id"]),
        (&json!("open"), &json!("globex-co"), &Value::Null)
    );
    let (status, got) = app.get(&format!("/api/v1/tasks/{manual_task}"), &ws.viewer).await;
    assert_eq!((status, &got), (StatusCode::OK, &made));

    // Bad fields: 400 naming the field, and nothing stored.
    for (body, field) in [
        (json!({"assignee": "ops@team.test"}), "title"),
        (json!({"title": "  ", "assignee": "ops@team.test"}), "title"),
        (json!({"title": "Call"}), "assignee"),
        (json!({"title": "Call", "assignee": "ops@team.test", "priority": "asap"}), "priority"),
        (json!({"title": "Call", "assignee": "ops@team.test", "due_at": "tomorrow"}), "due_at"),
        (json!({"title": "Call", "assignee": "ops@team.test", "account_id": "nobody-co"}), "account_id"),
    ] {
        let (status, e) = app.call("POST", "/api/v1/tasks", &ws.admin, Some(body.clone())).await;
        assert_eq!(
            (status, e["error"]["code"].as_str(), e["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_task"), Some(field)),
            "{body}: {e}"
        );
    }
    let stored = app.store.list_tasks(&ws.id, &Default::default(), &store::PageRequest::first(100)).await.unwrap();
    assert_eq!(stored.items.len(), 2);

    // Open ones by due date; by assignee.
    let (_, open) = app.get("/api/v1/tasks?status=open", &ws.viewer).await;
    assert_eq!(ids(&open, "task_id"), [manual_task.as_str(), step_task.as_str()]);
    let (_, csm) = app.get("/api/v1/tasks?assignee=csm@team.test", &ws.viewer).await;
    assert_eq!(ids(&csm, "task_id"), [step_task.as_str()]);

    // Done, by the admin's key; then listed after the open ones and under `done`.
    let admin_key = app.store.find_key(&domain::KeyHash::of(&ws.admin)).await.unwrap().unwrap();
    let (status, done) =
        app.call("PATCH", &format!("/api/v1/tasks/{step_task}"), &ws.admin, Some(json!({"status": "done"}))).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!((&done["status"], &done["closed_by"]), (&json!("done"), &json!(format!("key:{}", admin_key.key_id))));
    let stored = app.store.get_task(&ws.id, &step_task).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.closed_by), (store::TaskStatus::Done, Some(format!("key:{}", admin_key.key_id))));
    let (_, done_list) = app.get("/api/v1/tasks?status=done", &ws.viewer).await;
    assert_eq!(ids(&done_list, "task_id"), [step_task.as_str()]);
    let (_, open) = app.get("/api/v1/tasks?status=open", &ws.viewer).await;
    assert_eq!(ids(&open, "task_id"), [manual_task.as_str()]);
    let (_, all) = app.get("/api/v1/tasks", &ws.viewer).await;
    assert_eq!(ids(&all, "task_id"), [manual_task.as_str(), step_task.as_str()]);
    let (_, by_account) = app.get("/api/v1/tasks?account_id=globex-co", &ws.viewer).await;
    assert_eq!(ids(&by_account, "task_id"), [manual_task.as_str()]);

    // Reopened: no one closed it.
    let (_, reopened) =
        app.call("PATCH", &format!("/api/v1/tasks/{step_task}"), &ws.admin, Some(json!({"status": "open"}))).await;
    assert_eq!((&reopened["status"], &reopened["closed_by"]), (&json!("open"), &Value::Null));

    // Bad updates.
    let (status, e) =
        app.call("PATCH", &format!("/api/v1/tasks/{step_task}"), &ws.admin, Some(json!({"status": "finished"}))).await;
    assert_eq!(
        (status, e["error"]["code"].as_str(), e["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_task"), Some("status"))
    );
    let (status, e) = app.call("PATCH", "/api/v1/tasks/task_nope", &ws.admin, Some(json!({"status": "done"}))).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("task_not_found")));
    let (status, e) = app.get("/api/v1/tasks?status=late", &ws.viewer).await;
    assert_eq!((status, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("status")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_show_their_attempts_and_only_dead_letters_are_replayed() {
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    customers(&app, &ws).await;
    let id = enabled_journey(&app, &ws, onboarding("welcome")).await;
    let (_, first) = start(&app, &ws, &id, "acme-co").await;
    let (_, second) = start(&app, &ws, &id, "globex-co").await;
    let (status, all) = app.get("/api/v1/deliveries", &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["data"].as_array().unwrap().len(), 2, "{all}");
    let (_, of_first) = app.get(&format!("/api/v1/deliveries?run_id={}", id_of(&first, "run_id")), &ws.viewer).await;
    let dead_id = ids(&of_first, "message_id").remove(0);
    let (_, of_second) = app.get("/api/v1/deliveries?account_id=globex-co", &ws.viewer).await;
    let pending_id = ids(&of_second, "message_id").remove(0);
    assert_eq!(of_second["data"][0]["run_id"], second["run_id"]);
    let (_, by_journey) = app.get(&format!("/api/v1/deliveries?journey_id={id}"), &ws.viewer).await;
    assert_eq!(by_journey["data"].as_array().unwrap().len(), 2);

    // A pending delivery is not replayed, and stays as it was.
    let (status, e) = app.call("POST", &format!("/api/v1/deliveries/{pending_id}/replay"), &ws.admin, None).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{e}");
    let (status, e) = app.call("POST", "/api/v1/deliveries/nope/replay", &ws.admin, None).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("delivery_not_found")));

    // Three failed attempts make a dead letter (as the delivery loop would record them).
    let now = Utc::now();
    let attempt = |n: i64, outcome: &str, status: i64| Attempt {
        message_id: dead_id.clone(),
        attempt: n,
        at: now - Duration::minutes(10 - n),
        outcome: outcome.into(),
        status: Some(status),
        detail: format!("{status} mailbox unavailable"),
        duration_ms: 40,
    };
    let mut updates = Vec::new();
    for (n, outcome, code) in [(1, "retry", 451), (2, "retry", 451), (3, "rejected", 550)] {
        updates.push(MessageUpdate {
            message_id: dead_id.clone(),
            status: if n < 3 { MessageStatus::Pending } else { MessageStatus::Dead },
            attempts: n,
            next_attempt_at: (n < 3).then(|| now + Duration::minutes(n)),
            last_error: Some(format!("{code} mailbox unavailable")),
            delivered_at: None,
            attempt: Some(attempt(n, outcome, code)),
        });
    }
    app.store.update_messages(&ws.id, &updates, now).await.unwrap();

    let (_, dead) = app.get("/api/v1/deliveries?status=dead", &ws.viewer).await;
    assert_eq!(ids(&dead, "message_id"), [dead_id.as_str()]);
    let (_, pending) = app.get("/api/v1/deliveries?status=pending", &ws.viewer).await;
    assert_eq!(ids(&pending, "message_id"), [pending_id.as_str()]);
    let (status, e) = app.get("/api/v1/deliveries?status=lost", &ws.viewer).await;
    assert_eq!((status, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("status")));

    let (status, shown) = app.get(&format!("/api/v1/deliveries/{dead_id}"), &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&shown["delivery"]["status"], &shown["delivery"]["attempts"], &shown["delivery"]["last_error"]),
        (&json!("dead"), &json!(3), &json!("550 mailbox unavailable"))
    );
    let attempts: Vec<(i64, &str, i64)> = shown["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["attempt"].as_i64().unwrap(), a["outcome"].as_str().unwrap(), a["status"].as_i64().unwrap()))
        .collect();
    assert_eq!(attempts, [(1, "retry", 451), (2, "retry", 451), (3, "rejected", 550)]);
    let (status, e) = app.get("/api/v1/deliveries/nope", &ws.viewer).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("delivery_not_found")));

    // Replayed: pending again, due now, its error cleared and its attempts kept.
    let (status, replayed) = app.call("POST", &format!("/api/v1/deliveries/{dead_id}/replay"), &ws.admin, None).await;
    assert_eq!(status, StatusCode::OK, "{replayed}");
    assert_eq!(
        (&replayed["delivery"]["status"], &replayed["delivery"]["last_error"]),
        (&json!("pending"), &Value::Null)
    );
    let stored = app.store.get_message(&ws.id, &dead_id).await.unwrap().unwrap();
    assert_eq!(stored.status, MessageStatus::Pending);
    assert!(stored.next_attempt_at.is_some_and(|t| t >= now), "{stored:?}");
    assert_eq!(app.store.message_attempts(&ws.id, &dead_id).await.unwrap().len(), 3);
    let (_, dead) = app.get("/api/v1/deliveries?status=dead", &ws.viewer).await;
    assert_eq!(dead["data"], json!([]));
    // Pending now, so a second replay is refused.
    let (status, _) = app.call("POST", &format!("/api/v1/deliveries/{dead_id}/replay"), &ws.admin, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_only_read_and_other_workspaces_see_nothing() {
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    let other = app.workspace("globex").await;
    customers(&app, &ws).await;
    let id = enabled_journey(&app, &ws, onboarding("welcome")).await;
    let (_, run) = start(&app, &ws, &id, "acme-co").await;
    let run_id = id_of(&run, "run_id");
    let (_, d) = app.get(&format!("/api/v1/deliveries?run_id={run_id}"), &ws.admin).await;
    let delivery = ids(&d, "message_id").remove(0);
    let (_, t) = app.get("/api/v1/tasks", &ws.admin).await;
    let task = ids(&t, "task_id").remove(0);
    let snapshot = |app: &App| {
        let ws = ws.id.clone();
        let (id, task, run_id) = (id.clone(), task.clone(), run_id.clone());
        let store = app.store.clone();
        async move {
            let j = store.get_journey(&ws, &id).await.unwrap().unwrap();
            let t = store.get_task(&ws, &task).await.unwrap().unwrap();
            let runs = store
                .list_runs(&ws, &store::RunFilter::default(), &store::PageRequest::first(100))
                .await
                .unwrap()
                .items
                .len();
            let tasks =
                store.list_tasks(&ws, &Default::default(), &store::PageRequest::first(100)).await.unwrap().items.len();
            let r = store.get_run(&ws, &run_id).await.unwrap().unwrap();
            (j.version, j.enabled, t.status, runs, tasks, r.seq, store.list_journeys(&ws).await.unwrap().len())
        }
    };
    let before = snapshot(&app).await;

    // A viewer reads everything...
    for path in [
        "/api/v1/journeys".to_owned(),
        format!("/api/v1/journeys/{id}"),
        format!("/api/v1/journeys/{id}/versions/1"),
        format!("/api/v1/journeys/{id}/runs"),
        format!("/api/v1/runs/{run_id}"),
        "/api/v1/accounts/acme-co/journeys".to_owned(),
        "/api/v1/accounts/acme-co/activity".to_owned(),
        "/api/v1/deliveries".to_owned(),
        format!("/api/v1/deliveries/{delivery}"),
        "/api/v1/tasks".to_owned(),
        format!("/api/v1/tasks/{task}"),
    ] {
        let (status, body) = app.get(&path, &ws.viewer).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    // ...and may check a definition, which saves nothing...
    let (status, v) = app.call("POST", "/api/v1/journeys/validate", &ws.viewer, Some(onboarding("x"))).await;
    assert_eq!((status, &v["valid"]), (StatusCode::OK, &json!(true)));
    // ...but changes nothing.
    let mut renamed = onboarding("welcome");
    renamed["name"] = json!("By a viewer");
    let writes: Vec<(&str, String, Option<Value>)> = vec![
        ("POST", "/api/v1/journeys".into(), Some(renamed.clone())),
        ("PUT", format!("/api/v1/journeys/{id}"), Some(renamed.clone())),
        ("POST", format!("/api/v1/journeys/{id}/enable"), None),
        ("POST", format!("/api/v1/journeys/{id}/disable"), None),
        ("POST", format!("/api/v1/journeys/{id}/runs"), Some(json!({"subject_id": "globex-co"}))),
        ("POST", format!("/api/v1/deliveries/{delivery}/replay"), None),
        ("POST", "/api/v1/tasks".into(), Some(json!({"title": "Call", "assignee": "ops@team.test"}))),
        ("PATCH", format!("/api/v1/tasks/{task}"), Some(json!({"status": "done"}))),
    ];
    for (method, path, body) in &writes {
        let (status, e) = app.call(method, path, &ws.viewer, body.clone()).await;
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "{method} {path}"
        );
    }
    // A write key is not for the API at all.
    let (status, e) = app.get("/api/v1/journeys", &ws.write).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("wrong_key_type")));
    assert_eq!(snapshot(&app).await, before);

    // Another workspace: 404 for each id, empty lists, and its writes reach nothing.
    for (path, code) in [
        (format!("/api/v1/journeys/{id}"), "journey_not_found"),
        (format!("/api/v1/journeys/{id}/versions/1"), "journey_not_found"),
        (format!("/api/v1/journeys/{id}/runs"), "journey_not_found"),
        (format!("/api/v1/runs/{run_id}"), "run_not_found"),
        (format!("/api/v1/deliveries/{delivery}"), "delivery_not_found"),
        (format!("/api/v1/tasks/{task}"), "task_not_found"),
        ("/api/v1/accounts/acme-co/journeys".to_owned(), "account_not_found"),
    ] {
        let (status, e) = app.get(&path, &other.admin).await;
        assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some(code)), "{path}");
    }
    for path in ["/api/v1/journeys", "/api/v1/deliveries", "/api/v1/tasks", "/api/v1/deliveries?status=pending"] {
        let (status, list) = app.get(path, &other.admin).await;
        assert_eq!((status, &list["data"]), (StatusCode::OK, &json!([])), "{path}");
    }
    for (method, path, body) in writes.iter().skip(1) {
        if path == "/api/v1/tasks" {
            continue;
        }
        let (status, _) = app.call(method, path, &other.admin, body.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    // A task of theirs cannot name our account.
    let (status, e) = app
        .call(
            "POST",
            "/api/v1/tasks",
            &other.admin,
            Some(json!({"title": "Call", "assignee": "ops@team.test", "account_id": "acme-co"})),
        )
        .await;
    assert_eq!((status, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("account_id")));
    // A journey of the same name is theirs alone.
    let (status, theirs) = app.call("POST", "/api/v1/journeys", &other.admin, Some(onboarding("welcome"))).await;
    assert_eq!(status, StatusCode::CREATED, "{theirs}");
    let (_, ours) = app.get("/api/v1/journeys", &ws.viewer).await;
    assert_eq!(ours["data"].as_array().unwrap().len(), 1);
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn the_openapi_document_describes_the_journeys_api() {
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    let (status, doc) = app.get("/api/v1/openapi.json", &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    // Each route of the module, with each of its methods.
    let src = include_str!("../src/lib.rs");
    for line in src.lines().filter(|l| l.contains("journeys::")) {
        let route = line.split('"').nth(1).unwrap();
        let ops = &doc["paths"][route];
        for (method, name) in [("get(", "get"), ("post(", "post"), ("put(", "put"), ("patch(", "patch")] {
            let routed = line.contains(&format!(" {method}")) || line.contains(&format!(".{method}"));
            assert_eq!(ops[name].is_object(), routed, "{name} {route}");
            if routed {
                assert_eq!(ops[name]["tags"], json!(["journeys"]), "{name} {route}");
                assert!(ops[name]["responses"]["401"].is_object(), "{name} {route}");
            }
        }
    }
    // Each error code the journeys API answers with.
    let description = doc["info"]["description"].as_str().unwrap();
    let codes = &doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"];
    for code in [
        "invalid_journey",
        "invalid_yaml",
        "invalid_body",
        "journey_not_found",
        "run_not_found",
        "delivery_not_found",
        "task_not_found",
        "conflict",
        "invalid_task",
        "invalid_run",
        "journey_failed",
        "invalid_parameter",
        "forbidden",
    ] {
        assert!(description.contains(&format!("| `{code}` |")), "{code} is not in the table of codes");
        assert!(codes.as_array().unwrap().contains(&json!(code)), "{code} is not in Error's codes");
    }
    let error = &doc["components"]["schemas"]["Error"]["properties"];
    assert_eq!(error["problems"]["items"]["$ref"], "#/components/schemas/Problem");
    assert!(error["position"]["properties"]["column"].is_object());
    assert_eq!(
        doc["paths"]["/api/v1/journeys"]["post"]["responses"]["422"]["description"]
            .as_str()
            .map(|d| d.contains("problems")),
        Some(true)
    );
}
