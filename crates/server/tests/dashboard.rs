//! The dashboard's sign-in and authorization, against the real router and SQLite: who may
//! see and change what, CSRF, sessions, rate limiting and the audit log.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::Utc;
use common::App;
use domain::{AccountId, KeyRole, WorkspaceId};
use serde_json::json;
use store::{AlertKind, AlertScope, AlertSignal, Severity, Store, Task, TaskStatus};
use tower::ServiceExt;

const PASSWORD: &str = "a long enough password";

struct Page {
    status: StatusCode,
    location: Option<String>,
    cookie: Option<String>,
    body: String,
    retry_after: Option<String>,
    headers: axum::http::HeaderMap,
}

async fn request(app: &App, method: &str, path: &str, cookie: Option<&str>, form: Option<&str>) -> Page {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    if form.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let req = req.body(form.map_or(Body::empty(), |f| Body::from(f.to_owned()))).unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let header =
        |name| resp.headers().get(name).and_then(|v: &axum::http::HeaderValue| v.to_str().ok()).map(str::to_owned);
    let (location, cookie, retry_after) =
        (header(header::LOCATION), header(header::SET_COOKIE), header(header::RETRY_AFTER));
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = String::from_utf8(axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap();
    Page { status, location, cookie, body, retry_after, headers }
}

async fn operator(app: &App, ws: &WorkspaceId, email: &str, role: KeyRole) {
    let op = store::Operator {
        operator_id: format!("op_{}", email.split('@').next().unwrap()),
        workspace_id: ws.clone(),
        email: email.into(),
        name: email.into(),
        role,
        password_hash: Some(server::ui::password::hash(PASSWORD)),
        created_at: Utc::now(),
        disabled_at: None,
    };
    app.store.insert_operator(&op).await.unwrap();
}

/// A signed-in operator: the session cookie and the page's CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

fn form(fields: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(fields).unwrap()
}

/// The sign-in form's cookie and token, as a browser gets them.
async fn login_form(app: &App) -> (String, String) {
    let page = request(app, "GET", "/login", None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    let set = page.cookie.expect("the form's cookie");
    assert!(set.starts_with("steward_login=") && set.contains("HttpOnly") && set.contains("Path=/login"), "{set}");
    let token = page.body.split(r#"name="csrf" value=""#).nth(1).unwrap().split('"').next().unwrap().to_owned();
    (set.split(';').next().unwrap().to_owned(), token)
}

/// A sign-in through the form as a browser sends it.
async fn log_in(app: &App, email: &str, password: &str) -> Page {
    let (cookie, token) = login_form(app).await;
    let fields = form(&[("csrf", &token), ("email", email), ("password", password)]);
    request(app, "POST", "/login", Some(&cookie), Some(&fields)).await
}

async fn sign_in(app: &App, email: &str) -> Session {
    let page = log_in(app, email, PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let set = page.cookie.expect("a session cookie");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let overview = request(app, "GET", "/overview", Some(&cookie), None).await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    let csrf =
        overview.body.split(r#"name="csrf-token" content=""#).nth(1).unwrap().split('"').next().unwrap().to_owned();
    Session { cookie, csrf }
}

async fn post(app: &App, s: &Session, path: &str, fields: &[(&str, &str)]) -> Page {
    let mut all = vec![("csrf", s.csrf.as_str())];
    all.extend_from_slice(fields);
    request(app, "POST", path, Some(&s.cookie), Some(&form(&all))).await
}

fn open_task(id: &str, account: &str) -> Task {
    let now = Utc::now();
    Task {
        task_id: id.into(),
        title: format!("Call {account}"),
        body: None,
        assignee: "csm".into(),
        priority: "high".into(),
        due_at: None,
        status: TaskStatus::Open,
        account_id: Some(account.into()),
        person_id: None,
        journey_id: None,
        run_id: None,
        created_at: now,
        updated_at: now,
        closed_by: None,
    }
}

/// Two workspaces, each with an account, an alert and a task; the first with an operator
/// of every role.
async fn setup() -> (App, WorkspaceId, WorkspaceId, String) {
    let app = App::new().await;
    let a = app.workspace("Alpha").await.id;
    let b = app.workspace("Beta").await.id;
    for (email, role) in
        [("admin@a.test", KeyRole::Admin), ("member@a.test", KeyRole::Member), ("viewer@a.test", KeyRole::Viewer)]
    {
        operator(&app, &a, email, role).await;
    }
    operator(&app, &b, "member@b.test", KeyRole::Member).await;
    let mut b_alert = String::new();
    for (ws, account) in [(&a, "acme"), (&b, "globex")] {
        let ops = vec![store::Op::UpsertAccount { account_id: AccountId::parse(account).unwrap(), at: Utc::now() }];
        let changes = store::Changes { ops, ..Default::default() };
        let status = app.store.log_status(ws).await.unwrap();
        assert!(app.store.apply_changes(ws, status.cursor, status.cursor, &changes).await.unwrap());
        let signal = AlertSignal {
            account_id: AccountId::parse(account).unwrap(),
            kind: AlertKind::Risk,
            reason: "churn_risk".into(),
            severity: Severity::High,
            title: format!("{account} may churn"),
            evidence: json!({}),
        };
        app.store.sync_alerts(ws, AlertScope::Workspace, &[signal], Utc::now()).await.unwrap();
        if ws == &b {
            let open = app.store.list_alerts(ws, &Default::default(), &store::PageRequest::first(5)).await.unwrap();
            b_alert = open.items[0].alert_id.clone();
        }
        app.store.insert_task(ws, &open_task(&format!("task_{account}"), account)).await.unwrap();
    }
    (app, a, b, b_alert)
}

async fn task_status(app: &App, ws: &WorkspaceId, id: &str) -> TaskStatus {
    app.store.get_task(ws, id).await.unwrap().unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_pages_send_to_sign_in_and_changes_are_refused() {
    let (app, a, _, _) = setup().await;
    let page = request(&app, "GET", "/accounts?band=at_risk", None, None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/login?next=%2Faccounts%3Fband%3Dat_risk"));
    let refused = request(&app, "POST", "/tasks/task_acme/done", None, Some("csrf=x")).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let forged = request(&app, "GET", "/overview", Some("steward_session=made-up"), None).await;
    assert_eq!(forged.status, StatusCode::SEE_OTHER);
    assert_eq!(task_status(&app, &a, "task_acme").await, TaskStatus::Open);
    // The sign-in form and the assets need no session.
    assert_eq!(request(&app, "GET", "/login", None, None).await.status, StatusCode::OK);
    assert_eq!(request(&app, "GET", "/assets/app.css", None, None).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_needs_the_token_of_its_own_form() {
    let (app, _, _, _) = setup().await;
    let (cookie, token) = login_form(&app).await;
    let right = [("email", "member@a.test"), ("password", PASSWORD)];
    let with = |t: &str| {
        let mut f = vec![("csrf", t)];
        f.extend_from_slice(&right);
        form(&f)
    };
    // No cookie (a form posted from another site), no token, or another browser's token.
    let (_, other) = login_form(&app).await;
    for (cookie, body) in
        [(None, with(&token)), (Some(cookie.as_str()), form(&right)), (Some(cookie.as_str()), with(&other))]
    {
        let page = request(&app, "POST", "/login", cookie, Some(&body)).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
        assert!(page.body.contains("sign-in form has expired"), "{}", page.body);
        assert!(!page.cookie.unwrap_or_default().starts_with("steward_session"), "no session");
    }
    // Its own token: signed in.
    let page = request(&app, "POST", "/login", Some(&cookie), Some(&with(&token))).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let resp_cookies = page.cookie.unwrap();
    assert!(resp_cookies.starts_with("steward_session="), "{resp_cookies}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_email_gets_one_message_and_repeated_failures_are_limited() {
    let (app, _, _, _) = setup().await;
    let wrong = |email: &'static str, pw: &'static str| {
        let app = &app;
        async move { log_in(app, email, pw).await }
    };
    let bad_password = wrong("member@a.test", "not the password").await;
    let bad_email = wrong("nobody@a.test", PASSWORD).await;
    for p in [&bad_password, &bad_email] {
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
        assert!(p.body.contains("Wrong email or password."), "{}", p.body);
        assert!(p.cookie.is_none());
    }
    for _ in 0..3 {
        assert_eq!(wrong("member@a.test", "still wrong").await.status, StatusCode::UNAUTHORIZED);
    }
    // Five failures from this address: refused, even with the right password, for a while.
    let limited = wrong("member@a.test", PASSWORD).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = limited.retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=900).contains(&secs), "{secs}");
    assert!(limited.cookie.is_none());
    // Another process on the same database counts the same failures.
    let state = server::AppState::new(app.store.clone(), None, server::ServerConfig::default());
    let mut second = app;
    second.router = server::router(state);
    let elsewhere = log_in(&second, "member@a.test", PASSWORD).await;
    assert_eq!(elsewhere.status, StatusCode::TOO_MANY_REQUESTS, "{}", elsewhere.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reads_but_changes_nothing() {
    let (app, a, _, _) = setup().await;
    let viewer = sign_in(&app, "viewer@a.test").await;
    let accounts = request(&app, "GET", "/accounts", Some(&viewer.cookie), None).await;
    assert_eq!(accounts.status, StatusCode::OK);
    assert!(accounts.body.contains("/accounts/acme") && !accounts.body.contains("globex"), "its own workspace only");
    let tasks = request(&app, "GET", "/tasks", Some(&viewer.cookie), None).await;
    assert!(tasks.body.contains("Call acme") && !tasks.body.contains("Complete"), "no buttons for a viewer");
    for (path, fields) in [
        ("/tasks/task_acme/done", vec![]),
        ("/segments/new", vec![("name", "Mine"), ("condition", "health < 40")]),
        ("/settings/keys", vec![("role", "admin")]),
    ] {
        assert_eq!(post(&app, &viewer, path, &fields).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    let alert =
        app.store.list_alerts(&a, &Default::default(), &store::PageRequest::first(5)).await.unwrap().items[0].clone();
    let acted = post(&app, &viewer, &format!("/alerts/{}/acknowledge", alert.alert_id), &[]).await;
    assert_eq!(acted.status, StatusCode::FORBIDDEN);
    assert_eq!(request(&app, "GET", "/settings", Some(&viewer.cookie), None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(task_status(&app, &a, "task_acme").await, TaskStatus::Open);
    assert!(app.store.list_segments(&a).await.unwrap().is_empty());
    assert_eq!(app.store.get_alert(&a, &alert.alert_id).await.unwrap().unwrap().status, store::AlertStatus::Open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_acts_with_a_csrf_token_and_every_change_is_audited() {
    let (app, a, _, _) = setup().await;
    let member = sign_in(&app, "member@a.test").await;
    // Without the token, or with another, nothing happens.
    let missing = request(&app, "POST", "/tasks/task_acme/done", Some(&member.cookie), Some("")).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let wrong = request(&app, "POST", "/tasks/task_acme/done", Some(&member.cookie), Some("csrf=not-the-token")).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(task_status(&app, &a, "task_acme").await, TaskStatus::Open);
    let done = post(&app, &member, "/tasks/task_acme/done", &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(task_status(&app, &a, "task_acme").await, TaskStatus::Done);
    // The header carries the token for scripts.
    let req = Request::builder()
        .method("POST")
        .uri("/segments/preview")
        .header(header::COOKIE, &member.cookie)
        .header("x-csrf-token", &member.csrf)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"condition": "health <"}).to_string()))
        .unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "an unfinished condition is an error, with where");
    let body: serde_json::Value =
        serde_json::from_slice(&axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert_eq!(body["error"]["field"], "condition");
    assert!(body["position"]["column"].as_u64().is_some(), "{body}");
    let saved = post(&app, &member, "/segments/new", &[("name", "Everyone"), ("condition", "account_id is set")]).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(app.store.list_segments(&a).await.unwrap()[0].name, "Everyone");
    let bad = post(&app, &member, "/segments/new", &[("name", "Broken"), ("condition", "health = 4")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("is not an operator"), "{}", bad.body);
    // Keys and operators are for admins.
    assert_eq!(post(&app, &member, "/settings/keys", &[("role", "admin")]).await.status, StatusCode::FORBIDDEN);
    let op = post(
        &app,
        &member,
        "/settings/operators",
        &[("email", "x@a.test"), ("name", "X"), ("role", "admin"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(op.status, StatusCode::FORBIDDEN);
    assert!(app.store.find_operator_by_email(&a, "x@a.test").await.unwrap().is_none());
    let audit = app.store.list_audit(&a, None, 10).await.unwrap();
    let actions: Vec<(&str, &str)> = audit.iter().map(|e| (e.action.as_str(), e.actor.as_str())).collect();
    assert_eq!(
        actions,
        [("segment.create", "op_member"), ("task.done", "op_member"), ("session.sign_in", "op_member")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_reaches_another_workspace() {
    let (app, a, b, b_alert) = setup().await;
    let member = sign_in(&app, "member@a.test").await;
    assert_eq!(
        request(&app, "GET", "/accounts/globex", Some(&member.cookie), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(post(&app, &member, &format!("/alerts/{b_alert}/acknowledge"), &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(post(&app, &member, "/tasks/task_globex/done", &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.store.get_alert(&b, &b_alert).await.unwrap().unwrap().status, store::AlertStatus::Open);
    assert_eq!(task_status(&app, &b, "task_globex").await, TaskStatus::Open);
    let alerts = request(&app, "GET", "/alerts", Some(&member.cookie), None).await;
    assert!(alerts.body.contains("acme may churn") && !alerts.body.contains("globex may churn"));
    // A session opens its own workspace whatever workspace id a form names.
    let theirs = sign_in(&app, "member@b.test").await;
    let overview = request(&app, "GET", "/overview", Some(&theirs.cookie), None).await;
    assert!(overview.body.contains("Beta") && !overview.body.contains("Alpha"));
    assert!(app.store.list_audit(&b, None, 10).await.unwrap().iter().all(|e| e.actor == "op_member"));
    let _ = a;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_manages_keys_and_operators_and_reads_the_audit_log() {
    let (app, a, _, _) = setup().await;
    let admin = sign_in(&app, "admin@a.test").await;
    let created = post(&app, &admin, "/settings/keys", &[("role", "viewer")]).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let secret = created.body.split(r#"<code id="new-secret">"#).nth(1).unwrap().split('<').next().unwrap();
    assert_eq!(app.store.find_key(&domain::KeyHash::of(secret)).await.unwrap().unwrap().role, KeyRole::Viewer);
    let short = post(
        &app,
        &admin,
        "/settings/operators",
        &[("email", "new@a.test"), ("name", "New"), ("role", "member"), ("password", "short")],
    )
    .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert!(short.body.contains("at least 10 characters"));
    let added = post(
        &app,
        &admin,
        "/settings/operators",
        &[("email", "new@a.test"), ("name", "New"), ("role", "member"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let newcomer = sign_in(&app, "new@a.test").await;
    let id = app.store.find_operator_by_email(&a, "new@a.test").await.unwrap().unwrap().operator_id;
    assert_eq!(
        post(&app, &admin, &format!("/settings/operators/{id}/disable"), &[]).await.status,
        StatusCode::SEE_OTHER
    );
    // Disabled: the session ends and signing in fails.
    assert_eq!(request(&app, "GET", "/overview", Some(&newcomer.cookie), None).await.status, StatusCode::SEE_OTHER);
    let again = log_in(&app, "new@a.test", PASSWORD).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    let settings = request(&app, "GET", "/settings", Some(&admin.cookie), None).await;
    for action in ["key.create", "operator.add", "operator.disable", "session.sign_in"] {
        assert!(settings.body.contains(action), "the audit log shows {action}");
    }
    // Signing out ends the session.
    assert_eq!(post(&app, &admin, "/logout", &[]).await.status, StatusCode::SEE_OTHER);
    assert_eq!(request(&app, "GET", "/settings", Some(&admin.cookie), None).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_with_api_keys_are_in_the_audit_log() {
    let app = App::new().await;
    let ws = app.workspace("Alpha").await;
    let other = app.workspace("Beta").await;
    let segment = json!({"name": "Quiet", "kind": "accounts", "condition": "health < 40"});
    let (status, _) = app.call("POST", "/api/v1/segments/preview", &ws.member, Some(segment.clone())).await;
    assert_eq!(status, StatusCode::OK);
    let (status, made) = app.call("POST", "/api/v1/segments", &ws.member, Some(segment)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["segment"]["segment_id"].as_str().unwrap().to_owned();
    // Refused or reading: nothing to record.
    let bad = json!({"name": "Bad", "kind": "accounts", "condition": "health <"});
    assert_eq!(app.call("POST", "/api/v1/segments", &ws.member, Some(bad)).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(app.call("DELETE", &format!("/api/v1/segments/{id}"), &ws.viewer, None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/api/v1/segments", &ws.admin).await.0, StatusCode::OK);
    let (status, _) = app.call("DELETE", &format!("/api/v1/segments/{id}"), &ws.admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let keys = app.store.list_keys(&ws.id).await.unwrap();
    let key_of = |role: KeyRole| keys.iter().find(|k| k.role == role).unwrap().key_id.clone();
    let log = app.store.list_audit(&ws.id, None, 10).await.unwrap();
    let entries: Vec<(String, String, String)> =
        log.iter().map(|e| (e.actor.clone(), e.action.clone(), e.target.clone())).collect();
    assert_eq!(
        entries,
        [
            (format!("key:{}", key_of(KeyRole::Admin)), "api.delete".to_owned(), format!("/api/v1/segments/{id}")),
            (format!("key:{}", key_of(KeyRole::Member)), "api.post".to_owned(), "/api/v1/segments".to_owned()),
        ]
    );
    assert_eq!(log[1].details["status"], 201);
    assert!(app.store.list_audit(&other.id, None, 10).await.unwrap().is_empty(), "in its own workspace's log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_edit_and_delete_segments_and_switch_journeys_and_viewers_cannot() {
    let (app, a, b, _) = setup().await;
    let (member, viewer, theirs) = (
        sign_in(&app, "member@a.test").await,
        sign_in(&app, "viewer@a.test").await,
        sign_in(&app, "member@b.test").await,
    );
    let now = Utc::now();
    let seg = store::SegmentRecord {
        segment_id: "seg_quiet".into(),
        name: "Quiet".into(),
        kind: store::SubjectKind::Accounts,
        condition: "health < 40".into(),
        description: None,
        created_at: now,
        updated_at: now,
    };
    app.store.insert_segment(&a, &seg).await.unwrap();
    let draft = store::JourneyDraft {
        journey_id: "jrn_call".into(),
        name: "Call".into(),
        kind: store::SubjectKind::Accounts,
        enabled: false,
        definition: json!({"name": "Call", "trigger": "manual", "reentry": "never", "steps": [{"id": "done", "end": {}}]}),
    };
    app.store.put_journey(&a, &draft, now).await.unwrap();
    let store = app.store.clone();
    let condition = || {
        let (store, a) = (store.clone(), a.clone());
        async move { store.get_segment(&a, "seg_quiet").await.unwrap().map(|s| s.condition) }
    };
    // The editor opens with the segment's definition.
    let editor = request(&app, "GET", "/segments?edit=seg_quiet", Some(&member.cookie), None).await;
    assert!(
        editor.body.contains(r#"action="/segments/seg_quiet/edit""#) && editor.body.contains("health &lt; 40"),
        "{}",
        editor.body
    );
    // A viewer cannot; another workspace's operator finds no such segment or journey.
    let edit = [("name", "Quiet"), ("condition", "health < 30")];
    assert_eq!(post(&app, &viewer, "/segments/seg_quiet/edit", &edit).await.status, StatusCode::FORBIDDEN);
    assert_eq!(post(&app, &viewer, "/segments/seg_quiet/delete", &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(post(&app, &viewer, "/journeys/jrn_call/enable", &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(post(&app, &theirs, "/segments/seg_quiet/edit", &edit).await.status, StatusCode::NOT_FOUND);
    assert_eq!(post(&app, &theirs, "/segments/seg_quiet/delete", &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(post(&app, &theirs, "/journeys/jrn_call/enable", &[]).await.status, StatusCode::NOT_FOUND);
    assert!(app.store.get_segment(&b, "seg_quiet").await.unwrap().is_none());
    assert_eq!(condition().await.as_deref(), Some("health < 40"));
    // A bad condition is shown with where it is wrong, and changes nothing.
    let bad = post(&app, &member, "/segments/seg_quiet/edit", &[("name", "Quiet"), ("condition", "health <")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("segment-error") && bad.body.contains("seg_quiet/edit"), "{}", bad.body);
    assert_eq!(condition().await.as_deref(), Some("health < 40"));
    // A member edits, switches the journey on and off, and deletes.
    let saved = post(&app, &member, "/segments/seg_quiet/edit", &edit).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(condition().await.as_deref(), Some("health < 30"));
    assert_eq!(post(&app, &member, "/journeys/jrn_call/enable", &[]).await.status, StatusCode::SEE_OTHER);
    assert!(app.store.get_journey(&a, "jrn_call").await.unwrap().unwrap().enabled);
    let page = request(&app, "GET", "/journeys/jrn_call", Some(&member.cookie), None).await;
    assert!(page.body.contains(r#"action="/journeys/jrn_call/disable""#), "{}", page.body);
    assert_eq!(post(&app, &member, "/journeys/jrn_call/disable", &[]).await.status, StatusCode::SEE_OTHER);
    assert!(!app.store.get_journey(&a, "jrn_call").await.unwrap().unwrap().enabled);
    assert_eq!(post(&app, &member, "/journeys/jrn_call/stop", &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(post(&app, &member, "/segments/seg_quiet/delete", &[]).await.status, StatusCode::SEE_OTHER);
    assert_eq!(condition().await, None);
    let log = app.store.list_audit(&a, None, 20).await.unwrap();
    let actions: Vec<&str> = log.iter().filter(|e| e.actor == "op_member").map(|e| e.action.as_str()).collect();
    assert_eq!(actions[..4], ["segment.delete", "journey.disable", "journey.enable", "segment.update"]);
    assert_eq!(log.iter().find(|e| e.action == "segment.update").unwrap().details["was"]["condition"], "health < 40");
}

/// Every answer of the dashboard, signed in or not, keeps the page to this server's own code,
/// out of other sites' frames and, but for the embedded CSS and JS, out of caches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_keep_to_their_own_code_out_of_frames_and_caches() {
    let (app, _, _, _) = setup().await;
    let session = sign_in(&app, "member@a.test").await;
    let header = |page: &Page, name: &str| page.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    for (path, cookie) in [("/login", None), ("/overview", Some(session.cookie.as_str())), ("/assets/app.js", None)] {
        let page = request(&app, "GET", path, cookie, None).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        let policy = header(&page, "content-security-policy").unwrap_or_else(|| panic!("{path}: no policy"));
        for rule in ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"] {
            assert!(policy.contains(rule), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe-inline"), "{path}: {policy}");
        assert_eq!(header(&page, "x-frame-options").as_deref(), Some("DENY"), "{path}");
        assert_eq!(header(&page, "x-content-type-options").as_deref(), Some("nosniff"), "{path}");
        let cache = header(&page, "cache-control").unwrap_or_default();
        if path.starts_with("/assets/") {
            assert!(cache.starts_with("public"), "{path}: {cache}");
        } else {
            assert_eq!(cache, "no-store", "{path}");
        }
    }
    // A page with customers' data carries no inline script or style the policy would block.
    let overview = request(&app, "GET", "/overview", Some(&session.cookie), None).await;
    assert!(!overview.body.contains(" style=\"") && !overview.body.contains("<script>"), "inline code in the page");
}

/// A score of `account` whose explanation says it failed two payments and is otherwise fine.
fn scored_with_failed_payments(account: &str) -> store::AccountScore {
    let explanation = json!({
        "health": {"score": 55.0, "band": "neutral", "profile": "mature", "components": [
            {"component": "financial", "score": 20.0, "weight": 1.0, "points": 20.0, "measures": []}]},
        "churn": [{"horizon_days": 30, "probability": 0.2, "source": "prior",
                   "drivers": [{"name": "payment failed (2 in 90 days)", "contribution": 1.0}]},
                  {"horizon_days": 60, "probability": 0.3, "source": "prior",
                   "drivers": [{"name": "payment failed (2 in 90 days)", "contribution": 1.0}]}],
        "expansion": null,
        "signals": {"payment_failures_90d": 2, "mrr": 9900, "tenure_days": 200, "days_since_active": 1,
                    "events_28d": 100, "events_prev_28d": 100},
        "models": {"churn": null, "expansion": null}
    });
    store::AccountScore {
        account_id: AccountId::parse(account).unwrap(),
        day: Utc::now().date_naive(),
        health: 55.0,
        band: store::HealthBand::Neutral,
        churn_30d: Some(0.2),
        churn_60d: None,
        churn_90d: None,
        expansion: None,
        mrr: None,
        components: json!({"financial": 20.0}),
        explanation: store::JsonText::from_value(&explanation),
        scored_at: Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_makes_a_task_of_a_recommendation_once_and_viewers_and_strangers_cannot() {
    let (app, a, b, _) = setup().await;
    app.store.put_scores(&a, &[scored_with_failed_payments("acme")]).await.unwrap();
    app.store.put_scores(&b, &[scored_with_failed_payments("globex")]).await.unwrap();
    let (member, viewer, theirs) = (
        sign_in(&app, "member@a.test").await,
        sign_in(&app, "viewer@a.test").await,
        sign_in(&app, "member@b.test").await,
    );
    let path = "/accounts/acme/next/payment_failed/task";
    // The page shows the recommendation with its evidence; a viewer gets no button.
    let page = request(&app, "GET", "/accounts/acme", Some(&member.cookie), None).await;
    assert!(page.body.contains(r#"data-recommendation="payment_failed""#), "{}", page.body);
    assert!(page.body.contains("2 failed payments in 90 days: confirm the billing details"));
    assert!(page.body.contains("financial component 20 of 100") && page.body.contains("payment failed (2 in 90 days)"));
    assert!(page.body.contains(&format!(r#"action="{path}""#)));
    // The churn forecast of the rule-based prior says why: its base rate, the rule that held
    // and those it checked, and why there is no model.
    assert!(page.body.contains("No churn model: no model has been trained yet"), "{}", page.body);
    assert!(page.body.contains("Base rate 3% within 30 days, raised by each sign that holds"));
    assert!(page.body.contains("payment failed (2 in 90 days) <span class=\"muted\">odds ×2.7 (+1.00)"));
    assert!(page.body.contains("Checked, not seen: no activity for 30 days"));
    assert!(page.body.contains("Base rate 6% within 60 days, raised by the same signs."));
    let seen = request(&app, "GET", "/accounts/acme", Some(&viewer.cookie), None).await;
    assert!(seen.body.contains(r#"data-recommendation="payment_failed""#) && !seen.body.contains(path));
    let tasks_of = |ws: WorkspaceId| {
        let store = app.store.clone();
        async move {
            let filter = store::TaskFilter { account_id: None, ..Default::default() };
            let all = store.list_tasks(&ws, &filter, &store::PageRequest::first(50)).await.unwrap().items;
            all.into_iter().filter(|t| t.task_id.starts_with("rec_")).collect::<Vec<_>>()
        }
    };
    // Refused: a viewer, no CSRF token, another workspace's account, a kind that does not
    // exist or that the account does not call for. Nothing is made.
    assert_eq!(post(&app, &viewer, path, &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(request(&app, "POST", path, Some(&member.cookie), Some("")).await.status, StatusCode::FORBIDDEN);
    assert_eq!(request(&app, "POST", path, None, Some("csrf=x")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(post(&app, &theirs, path, &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(post(&app, &member, "/accounts/acme/next/bribe/task", &[]).await.status, StatusCode::NOT_FOUND);
    let not_called = post(&app, &member, "/accounts/acme/next/gone_quiet/task", &[]).await;
    assert_eq!(not_called.status, StatusCode::CONFLICT);
    assert!(not_called.body.contains("no longer calls for that action"), "{}", not_called.body);
    assert!(tasks_of(a.clone()).await.is_empty() && tasks_of(b.clone()).await.is_empty());
    // A member makes it: one task, for them, audited; again, none more.
    let made = post(&app, &member, path, &[]).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    assert!(made.location.as_deref().unwrap().starts_with("/accounts/acme?done="), "{:?}", made.location);
    let again = post(&app, &member, path, &[]).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    let tasks = tasks_of(a.clone()).await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let task = &tasks[0];
    assert_eq!(task.title, "Confirm the billing details: 2 failed payments in 90 days");
    assert_eq!((task.assignee.as_str(), task.priority.as_str()), ("member@a.test", "high"));
    assert_eq!(task.account_id.as_deref(), Some("acme"));
    assert!(task.body.as_deref().unwrap().contains("payment failures in 90 days: 2"), "{:?}", task.body);
    assert!(tasks_of(b.clone()).await.is_empty(), "the other workspace's account is untouched");
    let log = app.store.list_audit(&a, None, 10).await.unwrap();
    let created: Vec<_> = log.iter().filter(|e| e.action == "task.create").collect();
    assert_eq!(created.len(), 1);
    assert_eq!((created[0].actor.as_str(), created[0].target.as_str()), ("op_member", task.task_id.as_str()));
    assert_eq!(created[0].details["recommendation"], "payment_failed");
    // The page now points at the open task instead of offering another.
    let page = request(&app, "GET", "/accounts/acme", Some(&member.cookie), None).await;
    assert!(page.body.contains(&task.task_id) && !page.body.contains(&format!(r#"action="{path}""#)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sets_up_an_integration_whose_secrets_are_never_shown_and_others_cannot() {
    let (app, a, b, _) = setup().await;
    let (admin, member, viewer) = (
        sign_in(&app, "admin@a.test").await,
        sign_in(&app, "member@a.test").await,
        sign_in(&app, "viewer@a.test").await,
    );
    let api_key = "rk_test_never_shown_4242";
    let setup_form = [
        ("api_key", api_key),
        ("webhook_secrets", "whsec_first\nwhsec_second\n"),
        ("config", r#"{"account_id_field": "acct"}"#),
        ("enabled", "on"),
    ];
    // Members and viewers cannot set up, switch or sync; nothing is made.
    for who in [&member, &viewer] {
        for path in
            ["/settings/connectors/stripe", "/settings/connectors/stripe/sync", "/settings/connectors/stripe/disable"]
        {
            assert_eq!(post(&app, who, path, &setup_form).await.status, StatusCode::FORBIDDEN, "{path}");
        }
    }
    assert!(app.store.get_connector(&a, "stripe").await.unwrap().is_none());
    // Bad input says what is wrong and changes nothing.
    let bad_json = post(&app, &admin, "/settings/connectors/stripe", &[("config", "{not json")]).await;
    assert_eq!(bad_json.status, StatusCode::BAD_REQUEST);
    assert!(bad_json.body.contains("config: not JSON"), "{}", bad_json.body);
    let bad_config = post(&app, &admin, "/settings/connectors/stripe", &[("config", r#"{"colour": "red"}"#)]).await;
    assert_eq!(bad_config.status, StatusCode::BAD_REQUEST);
    assert!(bad_config.body.contains("config:"), "{}", bad_config.body);
    let not_salesforce = post(&app, &admin, "/settings/connectors/stripe", &[("refresh_token", "x")]).await;
    assert_eq!(not_salesforce.status, StatusCode::BAD_REQUEST);
    assert!(not_salesforce.body.contains("refresh_token:"), "{}", not_salesforce.body);
    assert_eq!(post(&app, &admin, "/settings/connectors/nope", &setup_form).await.status, StatusCode::NOT_FOUND);
    assert!(app.store.get_connector(&a, "stripe").await.unwrap().is_none());
    // Set up: sealed, enabled, a first backfill asked for; the page says what is set, not what.
    let made = post(&app, &admin, "/settings/connectors/stripe", &setup_form).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let record = app.store.get_connector(&a, "stripe").await.unwrap().unwrap();
    assert!(record.enabled && !record.secrets.contains(api_key) && !record.secrets.contains("whsec_first"));
    assert_eq!(record.config["account_id_field"], "acct");
    assert!(connectors::backfill::SyncState::of(&record).requested, "a key: its first backfill");
    let page = request(&app, "GET", "/settings", Some(&admin.cookie), None).await;
    assert!(!page.body.contains(api_key) && !page.body.contains("whsec_first"), "secrets are never shown back");
    assert!(page.body.contains("API key set; 2 webhook secrets."), "{}", page.body);
    // Edited: new webhook secrets only; the key is kept.
    let edited =
        post(&app, &admin, "/settings/connectors/stripe", &[("webhook_secrets", "whsec_third"), ("enabled", "on")])
            .await;
    assert_eq!(edited.status, StatusCode::SEE_OTHER, "{}", edited.body);
    let page = request(&app, "GET", "/settings", Some(&admin.cookie), None).await;
    assert!(page.body.contains("API key set; 1 webhook secret."), "{}", page.body);
    // Disabled, then a full backfill asked for.
    assert_eq!(post(&app, &admin, "/settings/connectors/stripe/disable", &[]).await.status, StatusCode::SEE_OTHER);
    assert!(!app.store.get_connector(&a, "stripe").await.unwrap().unwrap().enabled);
    let synced = post(&app, &admin, "/settings/connectors/stripe/sync", &[("full", "on")]).await;
    assert_eq!(synced.status, StatusCode::SEE_OTHER, "{}", synced.body);
    assert_eq!(post(&app, &admin, "/settings/connectors/hubspot/enable", &[]).await.status, StatusCode::NOT_FOUND);
    // Every change audited, no secret in the log; the other workspace has no connector.
    let log = app.store.list_audit(&a, None, 20).await.unwrap();
    let actions: Vec<&str> =
        log.iter().filter(|e| e.action.starts_with("connector.")).map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["connector.sync", "connector.disable", "connector.save", "connector.save"]);
    assert!(log.iter().all(|e| e.actor == "op_admin" || !e.action.starts_with("connector.")));
    let logged = serde_json::to_string(&log.iter().map(|e| &e.details).collect::<Vec<_>>()).unwrap();
    assert!(!logged.contains(api_key) && !logged.contains("whsec_"), "{logged}");
    assert!(logged.contains(r#""secrets_replaced":["api_key","webhook_secrets"]"#), "{logged}");
    assert!(app.store.get_connector(&b, "stripe").await.unwrap().is_none());
}

/// The recommendation kinds an account's page shows, in their order.
fn recommended_on(page: &str) -> Vec<String> {
    page.split(r#"data-recommendation=""#).skip(1).map(|s| s.split('"').next().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_lists_an_accounts_next_actions_as_its_page_shows_them_to_its_workspace_alone() {
    let app = App::new().await;
    let (a, b) = (app.workspace("Alpha").await, app.workspace("Beta").await);
    operator(&app, &a.id, "member@a.test", KeyRole::Member).await;
    for (ws, account) in [(&a.id, "acme"), (&a.id, "unscored"), (&b.id, "globex")] {
        let ops = vec![store::Op::UpsertAccount { account_id: AccountId::parse(account).unwrap(), at: Utc::now() }];
        let status = app.store.log_status(ws).await.unwrap();
        let changes = store::Changes { ops, ..Default::default() };
        assert!(app.store.apply_changes(ws, status.cursor, status.cursor, &changes).await.unwrap());
    }
    app.store.put_scores(&a.id, &[scored_with_failed_payments("acme")]).await.unwrap();
    app.store.put_scores(&b.id, &[scored_with_failed_payments("globex")]).await.unwrap();
    let path = "/api/v1/accounts/acme/actions";

    // Every secret key of the workspace reads them: the page's, in the page's order.
    let member = sign_in(&app, "member@a.test").await;
    let page = request(&app, "GET", "/accounts/acme", Some(&member.cookie), None).await;
    let shown = recommended_on(&page.body);
    assert_eq!(shown.first().map(String::as_str), Some("payment_failed"), "{}", page.body);
    for key in [&a.viewer, &a.member, &a.admin] {
        let (status, body) = app.get(path, key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let kinds: Vec<&str> = body["data"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, shown, "{body}");
    }
    let (_, body) = app.get(path, &a.viewer).await;
    assert_eq!(
        (body["account_id"].as_str(), body["day"].as_str()),
        (Some("acme"), Some(&*Utc::now().date_naive().to_string()))
    );
    let first = &body["data"][0];
    assert_eq!(first["title"], "2 failed payments in 90 days: confirm the billing details");
    assert_eq!((first["priority"].as_str(), first["need"].as_str()), (Some("high"), Some("billing")));
    let evidence: Vec<(&str, &str)> = first["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["source"].as_str().unwrap(), e["text"].as_str().unwrap()))
        .collect();
    assert!(evidence.contains(&("signal", "payment failures in 90 days: 2")), "{evidence:?}");
    assert!(evidence.iter().any(|(s, t)| *s == "churn" && t.contains("payment failed (2 in 90 days)")), "{evidence:?}");
    assert!(first["playbook"].is_null() && first["task"].is_null(), "{first}");

    // Another workspace's account is not found, whichever key asks; its own is.
    let code = |body: &serde_json::Value| body["error"]["code"].as_str().unwrap_or_default().to_owned();
    let (status, body) = app.get("/api/v1/accounts/globex/actions", &a.admin).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "account_not_found".into()));
    let (status, body) = app.get(path, &b.admin).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "account_not_found".into()));
    assert_eq!(app.get("/api/v1/accounts/globex/actions", &b.viewer).await.0, StatusCode::OK);
    // Not scored yet, no key, a bad key, a write key.
    let (status, body) = app.get("/api/v1/accounts/unscored/actions", &a.viewer).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_scored".into()));
    let bare = Request::get(path).body(Body::empty()).unwrap();
    assert_eq!(app.router.clone().oneshot(bare).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let (status, body) = app.get(path, "stw_sk_nothing").await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_api_key".into()));
    let (status, body) = app.get(path, &a.write).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "wrong_key_type".into()));

    // A task made of one on the page is named by the API's.
    let made = post(&app, &member, "/accounts/acme/next/payment_failed/task", &[]).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let (_, body) = app.get(path, &a.viewer).await;
    let task = body["data"][0]["task"].as_str().expect("the open task's id");
    assert_eq!(app.store.get_task(&a.id, task).await.unwrap().map(|t| t.status), Some(TaskStatus::Open));
}
