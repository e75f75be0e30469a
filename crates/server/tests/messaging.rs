//! The messaging API on a real workspace: email templates checked when saved and previewed,
//! the sender and the Slack webhook, the webhook signing secret, the suppression list, and
//! the one-click unsubscribe link of an email that went through a real SMTP server, with who
//! may see and change each.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use chrono::{Duration, Utc};
use common::{App, Keys};
use domain::{KeyRole, NewApiKey};
use runner::deliver::{Deliverer, DeliveryConfig, SENDER, TEMPLATES, UNSUBSCRIBE_SECRET, WEBHOOK_SECRET};
use serde_json::{Value, json};
use store::{MessageStatus, Store};
use tower::ServiceExt;

/// A member key of `ws`: it may change templates and suppressions, not settings.
async fn member(app: &App, ws: &Keys) -> String {
    let k = NewApiKey::generate(&ws.id, KeyRole::Member, Utc::now());
    app.store.insert_key(&k.key).await.unwrap();
    k.secret
}

/// The code and field of an error body.
fn error(e: &Value) -> (Option<&str>, Option<&str>) {
    (e["error"]["code"].as_str(), e["error"]["field"].as_str())
}

/// A request without a key, as a mail client or a browser makes it; the body as text.
async fn public(app: &App, method: &str, path: &str, form: Option<&str>) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(path);
    if form.is_some() {
        req = req.header("content-type", "application/x-www-form-urlencoded");
    }
    let req = req.body(form.map_or(Body::empty(), |f| Body::from(f.to_owned()))).unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

/// The endpoint and reason of a suppression as answered.
fn entry(v: &Value) -> (&str, &str) {
    (v["endpoint"].as_str().unwrap(), v["reason"].as_str().unwrap())
}

async fn stored_templates(app: &App, ws: &Keys) -> Option<Value> {
    app.store.get_setting(&ws.id, TEMPLATES).await.unwrap()
}

async fn suppressed(app: &App, ws: &Keys) -> Vec<(String, String)> {
    let rows = app.store.blocked_endpoints(&ws.id).await.unwrap();
    rows.into_iter().map(|(endpoint, reason, _)| (endpoint, reason)).collect()
}

fn welcome() -> Value {
    json!({"subject": "Welcome to {{ account.name }}",
           "html": "<p>Hi {{ person.first_name }},</p>\n<p>{{ account.name }} is ready.</p>",
           "text": "Hi {{ person.first_name }},\n{{ account.name }} is ready."})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_are_checked_when_saved_and_previewed_with_a_context() {
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    let member = member(&app, &ws).await;

    // New: 201 with the template as stored (no HTML part given: null).
    let plain = json!({"subject": "Hello", "text": "Hello {{ person.first_name }}"});
    let (status, created) = app.call("PUT", "/api/v1/templates/welcome", &member, Some(plain.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let stored_plain = json!({"subject": "Hello", "html": null, "text": "Hello {{ person.first_name }}"});
    assert_eq!(created, json!({"name": "welcome", "template": stored_plain}));
    assert_eq!(stored_templates(&app, &ws).await, Some(json!({"welcome": stored_plain})));

    // Replaced: 200, and only the new one is kept.
    let (status, replaced) = app.call("PUT", "/api/v1/templates/welcome", &ws.admin, Some(welcome())).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced, json!({"name": "welcome", "template": welcome()}));
    let (status, second) = app.call("PUT", "/api/v1/templates/renewal-2", &ws.admin, Some(plain.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    let saved = json!({"welcome": welcome(), "renewal-2": stored_plain});
    assert_eq!(stored_templates(&app, &ws).await, Some(saved.clone()));

    // Read one, and all by name.
    let (status, one) = app.get("/api/v1/templates/welcome", &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one, replaced);
    let (status, list) = app.get("/api/v1/templates", &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list,
        json!({"data": [{"name": "renewal-2", "template": stored_plain}, {"name": "welcome", "template": welcome()}]})
    );

    // A syntax error in the HTML part: refused with the part and its line.
    let broken = json!({"subject": "Hi", "html": "<p>\n\n{% if x %}</p>", "text": "Hi"});
    let (status, e) = app.call("PUT", "/api/v1/templates/welcome", &ws.admin, Some(broken.clone())).await;
    assert_eq!((status, error(&e)), (StatusCode::BAD_REQUEST, (Some("invalid_template"), Some("html"))), "{e}");
    assert_eq!(e["position"], json!({"line": 3}), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().starts_with("html line 3: "), "{e}");
    let (status, e) = app.call("PUT", "/api/v1/templates/fresh", &ws.admin, Some(broken)).await;
    assert_eq!((status, error(&e)), (StatusCode::BAD_REQUEST, (Some("invalid_template"), Some("html"))));
    // In the subject, and parts missing or of the wrong type.
    for (body, field) in [
        (json!({"subject": "Hi {{ person.name", "text": "x"}), "subject"),
        (json!({"subject": "Hi"}), "text"),
        (json!({"text": "Hi"}), "subject"),
        (json!({"subject": "Hi", "text": "x", "html": 3}), "html"),
        (json!(["Hi"]), "subject"),
    ] {
        let (status, e) = app.call("PUT", "/api/v1/templates/fresh", &ws.admin, Some(body.clone())).await;
        assert_eq!(
            (status, error(&e)),
            (StatusCode::BAD_REQUEST, (Some("invalid_template"), Some(field))),
            "{body}: {e}"
        );
    }
    // Names: letters, digits, `_` and `-`, at most 100.
    let long = "a".repeat(101);
    for name in ["bad%20name", "caf%C3%A9", long.as_str()] {
        let (status, e) = app.call("PUT", &format!("/api/v1/templates/{name}"), &ws.admin, Some(welcome())).await;
        assert_eq!((status, error(&e)), (StatusCode::BAD_REQUEST, (Some("invalid_template"), Some("name"))), "{name}");
    }
    let (status, e) = app.call("PUT", "/api/v1/templates/x", &ws.admin, None).await;
    assert_eq!((status, error(&e).0), (StatusCode::BAD_REQUEST, Some("invalid_json")));
    let (status, _) = app.call("PUT", &format!("/api/v1/templates/{}", "a".repeat(100)), &member, Some(plain)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app.call("DELETE", &format!("/api/v1/templates/{}", "a".repeat(100)), &member, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Nothing a refused request carried was stored.
    assert_eq!(stored_templates(&app, &ws).await, Some(saved.clone()));
    let (status, _) = app.call("DELETE", "/api/v1/templates/never-saved", &ws.admin, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(stored_templates(&app, &ws).await, Some(saved));

    // Saved at the same moment by several, each stays.
    let paths: Vec<String> = (1..=4).map(|n| format!("/api/v1/templates/at-once-{n}")).collect();
    let done = tokio::join!(
        app.call("PUT", &paths[0], &ws.admin, Some(welcome())),
        app.call("PUT", &paths[1], &ws.admin, Some(welcome())),
        app.call("PUT", &paths[2], &ws.admin, Some(welcome())),
        app.call("PUT", &paths[3], &ws.admin, Some(welcome())),
    );
    assert!([done.0.0, done.1.0, done.2.0, done.3.0].iter().all(|s| *s == StatusCode::CREATED));
    let stored = stored_templates(&app, &ws).await.unwrap();
    assert!((1..=4).all(|n| stored.get(format!("at-once-{n}")).is_some()), "{stored}");
    for n in 1..=4 {
        let (status, _) = app.call("DELETE", &format!("/api/v1/templates/at-once-{n}"), &ws.admin, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }

    // Previewed with a context: values escaped in the HTML part only.
    let context = json!({"person": {"first_name": "Zoë <3"}, "account": {"name": "Acme & Co"}});
    let (status, preview) = app
        .call("POST", "/api/v1/templates/welcome/preview", &ws.viewer, Some(json!({"context": context.clone()})))
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(
        preview,
        json!({"subject": "Welcome to Acme & Co",
               "html": "<p>Hi Zoë &lt;3,</p>\n<p>Acme &amp; Co is ready.</p>",
               "text": "Hi Zoë <3,\nAcme & Co is ready."})
    );
    // A name the context lacks is an error, with its line, as when sending.
    let (status, e) = app
        .call(
            "POST",
            "/api/v1/templates/welcome/preview",
            &ws.viewer,
            Some(json!({"context": {"account": {"name": "Acme"}}})),
        )
        .await;
    assert_eq!((status, error(&e).0), (StatusCode::BAD_REQUEST, Some("invalid_context")), "{e}");
    assert_eq!(e["position"], json!({"line": 1}), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("undefined"), "{e}");
    let (status, e) =
        app.call("POST", "/api/v1/templates/welcome/preview", &ws.viewer, Some(json!({"context": "Acme"}))).await;
    assert_eq!((status, error(&e)), (StatusCode::BAD_REQUEST, (Some("invalid_context"), Some("context"))), "{e}");
    // The unsubscribe link every email is given stands in for the real one.
    let linked = json!({"subject": "News", "text": "Stop: {{ unsubscribe_url }}"});
    let (status, _) = app.call("PUT", "/api/v1/templates/news", &ws.admin, Some(linked)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, preview) =
        app.call("POST", "/api/v1/templates/news/preview", &ws.viewer, Some(json!({"context": {}}))).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert!(preview["text"].as_str().unwrap().starts_with("Stop: https://"), "{preview}");
    let (status, e) = app.call("POST", "/api/v1/templates/nope/preview", &ws.viewer, Some(json!({}))).await;
    assert_eq!((status, error(&e).0), (StatusCode::NOT_FOUND, Some("template_not_found")));

    // Deleted: 204, then 404 for it and for a second delete; the others stay.
    let (status, _) = app.call("DELETE", "/api/v1/templates/welcome", &member, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, e) = app.get("/api/v1/templates/welcome", &ws.viewer).await;
    assert_eq!((status, error(&e).0), (StatusCode::NOT_FOUND, Some("template_not_found")));
    let (status, e) = app.call("DELETE", "/api/v1/templates/welcome", &member, None).await;
    assert_eq!((status, error(&e).0), (StatusCode::NOT_FOUND, Some("template_not_found")));
    let (status, e) = app.call("POST", "/api/v1/templates/welcome/preview", &ws.viewer, Some(json!({}))).await;
    assert_eq!((status, error(&e).0), (StatusCode::NOT_FOUND, Some("template_not_found")));
    let left = stored_templates(&app, &ws).await.unwrap();
    let mut names: Vec<&String> = left.as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(names, ["news", "renewal-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_and_the_slack_webhook_are_set_by_an_admin() {
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    let member = member(&app, &ws).await;
    let (status, none) = app.get("/api/v1/settings/messaging", &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(none, json!({"email_from": null, "slack_webhook_url": null}));

    let slack = "https://hooks.slack.com/services/T000/B000/XXXX";
    let body = json!({"email_from": {"name": "Acme Success", "address": " cs@acme.test "}, "slack_webhook_url": slack});
    let (status, set) = app.call("PUT", "/api/v1/settings/messaging", &ws.admin, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{set}");
    let expected =
        json!({"email_from": {"name": "Acme Success", "address": "cs@acme.test"}, "slack_webhook_url": slack});
    assert_eq!(set, expected);
    assert_eq!(
        app.store.get_setting(&ws.id, SENDER).await.unwrap(),
        Some(json!({"name": "Acme Success", "address": "cs@acme.test"}))
    );
    assert_eq!(app.store.get_setting(&ws.id, runner::SLACK_URL).await.unwrap(), Some(json!(slack)));
    let (_, read) = app.get("/api/v1/settings/messaging", &ws.viewer).await;
    assert_eq!(read, expected);

    // Bad values: 400 naming the member, and nothing changes, not even the good member.
    for (body, field) in [
        (json!({"email_from": {"name": "Acme", "address": "not an address"}}), "email_from.address"),
        (json!({"email_from": {"name": "Acme"}}), "email_from.address"),
        (json!({"email_from": "cs@acme.test"}), "email_from.address"),
        (
            json!({"email_from": {"name": "New", "address": "new@acme.test"}, "slack_webhook_url": "ftp://x"}),
            "slack_webhook_url",
        ),
        (json!({"slack_webhook_url": 3}), "slack_webhook_url"),
    ] {
        let (status, e) = app.call("PUT", "/api/v1/settings/messaging", &ws.admin, Some(body.clone())).await;
        assert_eq!(
            (status, error(&e)),
            (StatusCode::BAD_REQUEST, (Some("invalid_settings"), Some(field))),
            "{body}: {e}"
        );
    }
    let (_, read) = app.get("/api/v1/settings/messaging", &ws.viewer).await;
    assert_eq!(read, expected);

    // Only an admin changes them.
    let change = json!({"email_from": {"name": "Mallory", "address": "m@evil.test"}, "slack_webhook_url": null});
    for key in [&member, &ws.viewer] {
        let (status, e) = app.call("PUT", "/api/v1/settings/messaging", key, Some(change.clone())).await;
        assert_eq!((status, error(&e).0), (StatusCode::FORBIDDEN, Some("forbidden")), "{e}");
    }
    let (status, e) = app.call("PUT", "/api/v1/settings/messaging", &ws.write, Some(change.clone())).await;
    assert_eq!((status, error(&e).0), (StatusCode::FORBIDDEN, Some("wrong_key_type")));
    let (_, read) = app.get("/api/v1/settings/messaging", &member).await;
    assert_eq!(read, expected);

    // One member alone changes only itself; null clears it.
    let (status, cleared) =
        app.call("PUT", "/api/v1/settings/messaging", &ws.admin, Some(json!({"slack_webhook_url": null}))).await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert_eq!(cleared, json!({"email_from": expected["email_from"], "slack_webhook_url": null}));
    let (_, cleared) =
        app.call("PUT", "/api/v1/settings/messaging", &ws.admin, Some(json!({"email_from": null}))).await;
    assert_eq!(cleared, json!({"email_from": null, "slack_webhook_url": null}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_signing_secret_is_made_once_and_shown_to_admins_only() {
    use base64::Engine;
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    let member = member(&app, &ws).await;
    for key in [&member, &ws.viewer] {
        let (status, e) = app.get("/api/v1/settings/webhooks", key).await;
        assert_eq!((status, error(&e).0), (StatusCode::FORBIDDEN, Some("forbidden")), "{e}");
    }
    let (status, e) = app.get("/api/v1/settings/webhooks", &ws.write).await;
    assert_eq!((status, error(&e).0), (StatusCode::FORBIDDEN, Some("wrong_key_type")));
    assert_eq!(app.store.get_setting(&ws.id, WEBHOOK_SECRET).await.unwrap(), None, "made by no refused request");

    let (status, first) = app.get("/api/v1/settings/webhooks", &ws.admin).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let secret = first["signing_secret"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    assert_eq!(bytes.len(), 32);
    assert_eq!(first["scheme"], "https://www.standardwebhooks.com/");
    // The one the delivery loop signs with, kept in the workspace's settings.
    let stored = app.store.get_setting(&ws.id, WEBHOOK_SECRET).await.unwrap().unwrap();
    assert_eq!(format!("whsec_{}", stored.as_str().unwrap()), secret);
    let (_, second) = app.get("/api/v1/settings/webhooks", &ws.admin).await;
    assert_eq!(second, first);

    // Another workspace has a secret of its own.
    let other = app.workspace("globex").await;
    let (_, theirs) = app.get("/api/v1/settings/webhooks", &other.admin).await;
    assert!(theirs["signing_secret"].as_str().unwrap().starts_with("whsec_"));
    assert_ne!(theirs["signing_secret"], first["signing_secret"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suppressions_are_added_lower_cased_listed_and_removed() {
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    let member = member(&app, &ws).await;
    let (status, list) = app.get("/api/v1/suppressions", &ws.viewer).await;
    assert_eq!((status, list), (StatusCode::OK, json!({"data": []})));

    let (status, added) = app
        .call(
            "POST",
            "/api/v1/suppressions",
            &member,
            Some(json!({"endpoint": " Ann@Acme.TEST ", "reason": "asked by phone"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(entry(&added), ("ann@acme.test", "asked by phone"));
    assert!(added["at"].as_str().is_some_and(|a| a.contains('T')), "{added}");
    let (status, added) =
        app.call("POST", "/api/v1/suppressions", &ws.admin, Some(json!({"endpoint": "bob@acme.test"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(entry(&added), ("bob@acme.test", "suppressed by an operator"));
    let (_, list) = app.get("/api/v1/suppressions", &ws.viewer).await;
    // Again: the entry as it stands, its first reason kept.
    let (status, again) = app
        .call("POST", "/api/v1/suppressions", &ws.admin, Some(json!({"endpoint": "ANN@acme.test", "reason": "other"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, list["data"][0]);
    assert_eq!(
        suppressed(&app, &ws).await,
        [
            ("ann@acme.test".to_owned(), "asked by phone".to_owned()),
            ("bob@acme.test".to_owned(), "suppressed by an operator".to_owned())
        ]
    );
    let (status, list) = app.get("/api/v1/suppressions", &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<(&str, &str)> = list["data"].as_array().unwrap().iter().map(entry).collect();
    assert_eq!(listed, [("ann@acme.test", "asked by phone"), ("bob@acme.test", "suppressed by an operator")]);
    assert!(list["data"][0]["at"].as_str().is_some_and(|a| a.contains('T')), "{list}");

    // Refused: no endpoint.
    for body in [json!({}), json!({"endpoint": "  "}), json!({"endpoint": 7})] {
        let (status, e) = app.call("POST", "/api/v1/suppressions", &ws.admin, Some(body)).await;
        assert_eq!((status, error(&e)), (StatusCode::BAD_REQUEST, (Some("invalid_suppression"), Some("endpoint"))));
    }

    // Removed, whatever the case it is named in; then 404.
    let (status, _) = app.call("DELETE", "/api/v1/suppressions?endpoint=Ann%40ACME.test", &member, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, e) = app.call("DELETE", "/api/v1/suppressions?endpoint=ann%40acme.test", &member, None).await;
    assert_eq!((status, error(&e)), (StatusCode::NOT_FOUND, (Some("suppression_not_found"), Some("endpoint"))));
    let (status, e) = app.call("DELETE", "/api/v1/suppressions", &member, None).await;
    assert_eq!((status, error(&e)), (StatusCode::BAD_REQUEST, (Some("invalid_parameter"), Some("endpoint"))));
    assert_eq!(suppressed(&app, &ws).await, [("bob@acme.test".to_owned(), "suppressed by an operator".to_owned())]);
}

/// Two customers: acme-co, whose owner is Owner@Acme.test, and globex-co.
async fn customers(app: &App, ws: &Keys) {
    let at = (Utc::now() - Duration::days(30)).to_rfc3339();
    let group = |n: u32, user: &str, account: &str, traits: Value| {
        json!({"type": "group", "messageId": format!("g{n}"), "userId": user, "groupId": account,
               "traits": traits, "timestamp": at})
    };
    app.send(
        ws,
        vec![
            group(1, "ann", "acme-co", json!({"name": "Acme", "owner_email": "Owner@Acme.test"})),
            group(2, "gil", "globex-co", json!({"name": "Globex", "owner_email": "owner@globex.test"})),
        ],
    )
    .await;
}

/// Starts a run of `journey` for acme-co; its deliveries.
async fn run(app: &App, ws: &Keys, journey: &str) -> Vec<Value> {
    let (status, run) = app
        .call("POST", &format!("/api/v1/journeys/{journey}/runs"), &ws.admin, Some(json!({"subject_id": "acme-co"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let run_id = run["run_id"].as_str().unwrap();
    let (_, deliveries) = app.get(&format!("/api/v1/deliveries?run_id={run_id}"), &ws.viewer).await;
    deliveries["data"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsubscribe_link_from_a_real_email_suppresses_the_address_once_confirmed() {
    let Some(python) = testkit::python(&["aiosmtpd", "trustme"], "an_unsubscribe_link_from_a_real_email") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("received.jsonl");
    let args = vec!["--record".to_string(), record.display().to_string(), "--security".into(), "none".into()];
    let smtp = testkit::start(&python, &testkit::script("smtp_server.py"), &args).await;

    let app = App::new().await;
    let ws = app.workspace("acme").await;
    let other = app.workspace("globex").await;
    customers(&app, &ws).await;
    let template = json!({"subject": "Hello {{ account.name }}",
        "html": "<p>Hi {{ account.name }}</p><a href=\"{{ unsubscribe_url }}\">stop</a>",
        "text": "Hi {{ account.name }}\nStop: {{ unsubscribe_url }}"});
    let (status, t) = app.call("PUT", "/api/v1/templates/welcome", &ws.admin, Some(template)).await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    // Spaces around the address are not kept (a Message-ID cannot be made from them).
    let sender = json!({"email_from": {"name": "Acme Success", "address": " cs@steward.test "}});
    let (status, s) = app.call("PUT", "/api/v1/settings/messaging", &ws.admin, Some(sender)).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    let definition = json!({"name": "Welcome", "trigger": "manual", "reentry": "always",
        "steps": [{"id": "welcome", "email": {"template": "welcome", "to": "account_owner"}}]});
    let (status, created) = app.call("POST", "/api/v1/journeys", &ws.admin, Some(definition)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let journey = created["journey"]["journey_id"].as_str().unwrap().to_owned();
    let (status, _) = app.call("POST", &format!("/api/v1/journeys/{journey}/enable"), &ws.admin, None).await;
    assert_eq!(status, StatusCode::OK);
    let first = run(&app, &ws, &journey).await;
    assert_eq!((first.len(), &first[0]["endpoint"]), (1, &json!("Owner@Acme.test")), "{first:?}");

    let config = DeliveryConfig {
        smtp: Some(outbox::email::SmtpConfig {
            host: "127.0.0.1".into(),
            port: smtp.port,
            security: outbox::email::Security::None,
            username: None,
            password: None,
            helo: "steward.test".into(),
            timeout: std::time::Duration::from_secs(10),
            extra_root_pem: None,
        }),
        public_url: Some("https://cs.example.com/".into()),
        ..DeliveryConfig::default()
    };
    let store: Arc<dyn Store> = app.store.clone();
    let deliverer = Deliverer::new(store.clone(), config).unwrap();
    let round = deliverer.deliver_due(&ws.id, Utc::now()).await.unwrap();
    assert_eq!((round.taken, round.delivered), (1, 1), "{round:?}");
    let received = testkit::records(&record);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["rcpt_tos"], json!(["Owner@Acme.test"]));
    assert_eq!(received[0]["mail_from"], "cs@steward.test");
    assert_eq!(received[0]["headers"]["from"], "Acme Success <cs@steward.test>");

    // The link in the text is the one of the List-Unsubscribe header.
    let text = received[0]["text"].as_str().unwrap().replace("\r\n", "\n");
    let link = text.lines().find_map(|l| l.strip_prefix("Stop: ")).unwrap().trim().to_owned();
    assert_eq!(received[0]["headers"]["list-unsubscribe"], format!("<{link}>"));
    assert_eq!(received[0]["headers"]["list-unsubscribe-post"], "List-Unsubscribe=One-Click");
    let prefix = format!("https://cs.example.com/unsubscribe/{}?email=Owner%40Acme.test&token=", ws.id.as_str());
    assert!(link.starts_with(&prefix), "{link}");
    let path = link.strip_prefix("https://cs.example.com").unwrap().to_owned();
    let token = link.rsplit_once("token=").unwrap().1.to_owned();

    // Opened: a page asking to confirm; nobody is unsubscribed by a link scanner.
    let (status, headers, page) = public(&app, "GET", &path, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.contains("Stop emails to owner@acme.test?"), "{page}");
    assert!(page.contains("<form method=\"post\">"), "{page}");
    assert_eq!(suppressed(&app, &ws).await, []);
    let (_, list) = app.get("/api/v1/suppressions", &ws.viewer).await;
    assert_eq!(list["data"], json!([]));

    // A wrong token, another address, another workspace (with a secret of its own), a
    // workspace that does not exist: 404 and nothing suppressed; no token at all: 400.
    runner::deliver::workspace_secret(&store, &other.id, UNSUBSCRIBE_SECRET, Utc::now()).await.unwrap();
    let wrong = format!("{}{}", if token.starts_with('A') { 'B' } else { 'A' }, &token[1..]);
    let ws_id = ws.id.as_str();
    for bad in [
        format!("/unsubscribe/{ws_id}?email=Owner%40Acme.test&token={wrong}"),
        format!("/unsubscribe/{ws_id}?email=owner%40globex.test&token={token}"),
        format!("/unsubscribe/{}?email=Owner%40Acme.test&token={token}", other.id.as_str()),
        format!("/unsubscribe/ws_00000000000000000000000000?email=Owner%40Acme.test&token={token}"),
        format!("/unsubscribe/not%20a%20workspace?email=Owner%40Acme.test&token={token}"),
    ] {
        for method in ["GET", "POST"] {
            let (status, _, page) = public(&app, method, &bad, Some("List-Unsubscribe=One-Click")).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {bad}: {page}");
            assert!(page.contains("This unsubscribe link is not valid."), "{page}");
        }
    }
    let (status, _, _) = public(&app, "POST", &format!("/unsubscribe/{ws_id}?email=Owner%40Acme.test"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(suppressed(&app, &ws).await, []);
    assert_eq!(suppressed(&app, &other).await, []);

    // Confirmed (the one-click POST a mail client makes): the address is suppressed.
    let (status, headers, page) = public(&app, "POST", &path, Some("List-Unsubscribe=One-Click")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(page.contains("You are unsubscribed"), "{page}");
    let (status, list) = app.get("/api/v1/suppressions", &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    let entries = list["data"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{list}");
    assert_eq!((&entries[0]["endpoint"], &entries[0]["reason"]), (&json!("owner@acme.test"), &json!("unsubscribed")));
    // Twice is the same as once.
    let (status, _, _) = public(&app, "POST", &path, Some("List-Unsubscribe=One-Click")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(suppressed(&app, &ws).await, [("owner@acme.test".to_owned(), "unsubscribed".to_owned())]);
    assert_eq!(suppressed(&app, &other).await, []);

    // The next email to that address is kept, suppressed, and never reaches the server.
    let second = run(&app, &ws, &journey).await;
    assert_eq!(second.len(), 1);
    let round = deliverer.deliver_due(&ws.id, Utc::now()).await.unwrap();
    assert_eq!((round.taken, round.delivered, round.suppressed), (1, 0, 1), "{round:?}");
    let id = second[0]["message_id"].as_str().unwrap();
    let (_, shown) = app.get(&format!("/api/v1/deliveries/{id}"), &ws.viewer).await;
    assert_eq!(shown["delivery"]["status"], "suppressed", "{shown}");
    assert!(shown["delivery"]["last_error"].as_str().unwrap().contains("unsubscribed"), "{shown}");
    assert_eq!(app.store.get_message(&ws.id, id).await.unwrap().unwrap().status, MessageStatus::Suppressed);
    assert_eq!(testkit::records(&record).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_only_read_and_other_workspaces_see_none_of_it() {
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    let other = app.workspace("globex").await;
    let (status, _) = app.call("PUT", "/api/v1/templates/welcome", &ws.admin, Some(welcome())).await;
    assert_eq!(status, StatusCode::CREATED);
    let sender = json!({"email_from": {"name": "Acme", "address": "cs@acme.test"}});
    let (status, _) = app.call("PUT", "/api/v1/settings/messaging", &ws.admin, Some(sender)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        app.call("POST", "/api/v1/suppressions", &ws.admin, Some(json!({"endpoint": "ann@acme.test"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let settings = |ws: domain::WorkspaceId| {
        let store = app.store.clone();
        async move {
            let mut out = Vec::new();
            for key in [TEMPLATES, SENDER, runner::SLACK_URL, WEBHOOK_SECRET, UNSUBSCRIBE_SECRET] {
                out.push(store.get_setting(&ws, key).await.unwrap());
            }
            (out, store.blocked_endpoints(&ws).await.unwrap().len())
        }
    };
    let before = settings(ws.id.clone()).await;
    let theirs = settings(other.id.clone()).await;

    // A viewer reads...
    let preview = json!({"context": {"person": {"first_name": "Ann"}, "account": {"name": "Acme"}}});
    for (method, path, body) in [
        ("GET", "/api/v1/templates", None),
        ("GET", "/api/v1/templates/welcome", None),
        ("POST", "/api/v1/templates/welcome/preview", Some(preview.clone())),
        ("GET", "/api/v1/settings/messaging", None),
        ("GET", "/api/v1/suppressions", None),
    ] {
        let (status, body) = app.call(method, path, &ws.viewer, body).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {body}");
    }
    // ...and changes nothing.
    let writes: Vec<(&str, &str, Option<Value>)> = vec![
        ("PUT", "/api/v1/templates/welcome", Some(json!({"subject": "x", "text": "y"}))),
        ("PUT", "/api/v1/templates/other", Some(json!({"subject": "x", "text": "y"}))),
        ("DELETE", "/api/v1/templates/welcome", None),
        ("PUT", "/api/v1/settings/messaging", Some(json!({"email_from": null}))),
        ("GET", "/api/v1/settings/webhooks", None),
        ("POST", "/api/v1/suppressions", Some(json!({"endpoint": "bob@acme.test"}))),
        ("DELETE", "/api/v1/suppressions?endpoint=ann%40acme.test", None),
    ];
    for (method, path, body) in &writes {
        let (status, e) = app.call(method, path, &ws.viewer, body.clone()).await;
        assert_eq!((status, error(&e).0), (StatusCode::FORBIDDEN, Some("forbidden")), "{method} {path}");
    }
    // A write key is not for this API at all; no key is 401.
    let (status, e) = app.get("/api/v1/templates", &ws.write).await;
    assert_eq!((status, error(&e).0), (StatusCode::FORBIDDEN, Some("wrong_key_type")));
    let (status, _, _) = public(&app, "GET", "/api/v1/suppressions", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(settings(ws.id.clone()).await, before);

    // Another workspace sees none of it, and what it does stays its own.
    let (_, list) = app.get("/api/v1/templates", &other.viewer).await;
    assert_eq!(list, json!({"data": []}));
    for (method, path, body) in [
        ("GET", "/api/v1/templates/welcome", None),
        ("POST", "/api/v1/templates/welcome/preview", Some(preview)),
        ("DELETE", "/api/v1/templates/welcome", None),
    ] {
        let (status, e) = app.call(method, path, &other.admin, body).await;
        assert_eq!((status, error(&e).0), (StatusCode::NOT_FOUND, Some("template_not_found")), "{method} {path}");
    }
    let (_, read) = app.get("/api/v1/settings/messaging", &other.viewer).await;
    assert_eq!(read, json!({"email_from": null, "slack_webhook_url": null}));
    let (_, list) = app.get("/api/v1/suppressions", &other.viewer).await;
    assert_eq!(list, json!({"data": []}));
    let (status, _) = app.call("DELETE", "/api/v1/suppressions?endpoint=ann%40acme.test", &other.admin, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(settings(other.id.clone()).await, theirs);
    let (status, _) = app
        .call("PUT", "/api/v1/templates/welcome", &other.admin, Some(json!({"subject": "Theirs", "text": "t"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "a name of another workspace's is free");
    let (_, ours) = app.get("/api/v1/templates/welcome", &ws.viewer).await;
    assert_eq!(ours["template"], welcome());
    assert_eq!(settings(ws.id.clone()).await, before);
}

#[tokio::test]
async fn the_openapi_document_describes_the_messaging_api() {
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    let (status, doc) = app.get("/api/v1/openapi.json", &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    // Each route of the module (some span lines), with each of its methods.
    let src = include_str!("../src/lib.rs");
    let mut routes = 0;
    for route in src.split(".route(").skip(1).filter(|r| r.contains("messaging::")) {
        let path = route.split('"').nth(1).unwrap();
        let ops = &doc["paths"][path];
        for method in ["get", "post", "put", "patch", "delete"] {
            let routed = route.contains(&format!("{method}(messaging::"));
            assert_eq!(ops[method].is_object(), routed, "{method} {path}");
            if !routed {
                continue;
            }
            let op = &ops[method];
            assert_eq!(op["tags"], json!(["messaging"]), "{method} {path}");
            assert!(op["summary"].is_string(), "{method} {path}");
            if path.starts_with("/unsubscribe/") {
                // Public: the link is the key; answered in HTML.
                assert!(op.get("security").is_none(), "{method} {path}");
                for status in ["200", "404"] {
                    assert!(op["responses"][status]["content"]["text/html"].is_object(), "{method} {path} {status}");
                }
            } else {
                assert_eq!(op["security"], json!([{"secretKey": []}]), "{method} {path}");
                assert!(op["responses"]["401"].is_object(), "{method} {path}");
                assert!(op["responses"]["403"].is_object(), "{method} {path}");
            }
            routes += 1;
        }
    }
    assert_eq!(routes, 13);
    // Each error code the messaging API answers with.
    let description = doc["info"]["description"].as_str().unwrap();
    let codes = &doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"];
    for code in [
        "invalid_template",
        "template_not_found",
        "invalid_context",
        "invalid_settings",
        "invalid_suppression",
        "suppression_not_found",
        "invalid_parameter",
        "invalid_json",
        "forbidden",
    ] {
        assert!(description.contains(&format!("| `{code}` |")), "{code} is not in the table of codes");
        assert!(codes.as_array().unwrap().contains(&json!(code)), "{code} is not in Error's codes");
    }
}
