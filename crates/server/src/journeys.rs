//! The journeys API: definitions (JSON or YAML, checked with every problem's path), versions,
//! enabling, stats, runs and manual starts; and what journeys produce: deliveries with their
//! attempts (dead letters replayable) and tasks for the team.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use journeys::{Journey, Subject, Trigger};
use serde_json::{Value, json};
use store::{
    JourneyDraft, JourneyRecord, MessageFilter, MessageStatus, RunFilter, RunStatus, SubjectKind, Task, TaskFilter,
    TaskStatus,
};

use crate::api::{body_json, existing_account, page_json, page_request};
use crate::intel::{operator, workspace};
use crate::{ApiError, AppState};

fn not_found(what: &'static str) -> ApiError {
    let code = match what {
        "journey" => "journey_not_found",
        "run" => "run_not_found",
        "delivery" => "delivery_not_found",
        _ => "task_not_found",
    };
    ApiError::new(StatusCode::NOT_FOUND, code, format!("no such {what} in this workspace"))
}

/// A definition from a body: JSON, or YAML when the request says so (`application/yaml`,
/// `text/yaml`) or the body is not JSON but reads as YAML.
pub(crate) fn document(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let yaml = content_type.contains("yaml");
    if !yaml {
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => return Ok(v),
            // Said to be JSON: a JSON error, with where, not a YAML one.
            Err(e) if content_type.contains("json") => {
                return Err(ApiError {
                    details: Some(json!({"position": {"line": e.line(), "column": e.column()}})),
                    ..ApiError::bad_request("invalid_json", format!("the body is not JSON: {e}"))
                });
            }
            Err(_) => {}
        }
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("invalid_body", "the definition is not UTF-8 text"))?;
    serde_saphyr::from_str::<Value>(text).map_err(|e| {
        let position = e.location().map(|l| json!({"line": l.line(), "column": l.column()}));
        let message = e.to_string();
        let first = message.lines().next().unwrap_or("the definition is neither JSON nor YAML").to_owned();
        ApiError { details: position.map(|p| json!({"position": p})), ..ApiError::bad_request("invalid_yaml", first) }
    })
}

/// Checks a definition against the workspace: its structure, its conditions (the segment
/// language, with the workspace's names), and that the segments its trigger names exist.
pub(crate) async fn check(
    s: &AppState,
    ws: &domain::WorkspaceId,
    doc: &Value,
) -> Result<Journey, Vec<journeys::Problem>> {
    let m = s.membership();
    let schemas =
        match tokio::try_join!(m.schema(ws, SubjectKind::Accounts, None), m.schema(ws, SubjectKind::People, None)) {
            Ok(s) => s,
            Err(e) => return Err(vec![journeys::Problem { path: "journey".into(), message: e.to_string() }]),
        };
    let condition = |c: &str, subject: Subject| -> Result<(), String> {
        let schema = if subject == Subject::Accounts { &schemas.0 } else { &schemas.1 };
        segments::compile(c, schema).map(|_| ()).map_err(|e| e.to_string())
    };
    let parsed = journeys::parse(doc, &condition);
    // The trigger's segment is checked even when the rest has problems, so that every
    // problem is told at once.
    let segment = match &parsed {
        Ok(j) => match &j.trigger {
            Trigger::SegmentEntered { segment } | Trigger::SegmentExited { segment } => {
                Some((segment.clone(), Some(j.subject)))
            }
            Trigger::Schedule { segment, .. } => Some((segment.clone(), Some(j.subject))),
            _ => None,
        },
        Err(_) => trigger_segment(doc),
    };
    let problem = match segment {
        Some((name, subject)) => segment_problem(s, ws, &name, subject).await,
        None => None,
    };
    match (parsed, problem) {
        (Ok(j), None) => Ok(j),
        (Ok(_), Some(p)) => Err(vec![p]),
        (Err(mut problems), p) => {
            problems.extend(p);
            Err(problems)
        }
    }
}

/// The segment a definition's trigger names and the journey's subject (when it reads), from
/// a definition that has other problems.
fn trigger_segment(doc: &Value) -> Option<(String, Option<Subject>)> {
    let subject = match doc.get("subject").map(Value::as_str) {
        None => Some(Subject::Accounts),
        Some(Some("accounts")) => Some(Subject::Accounts),
        Some(Some("people")) => Some(Subject::People),
        Some(_) => None,
    };
    let trigger = doc.get("trigger")?.as_object().filter(|t| t.len() == 1)?;
    let (kind, inner) = trigger.iter().next()?;
    let name = match kind.as_str() {
        "segment_entered" | "segment_exited" => inner.as_str(),
        "schedule" => inner.get("segment").and_then(Value::as_str),
        _ => None,
    }?;
    (!name.trim().is_empty()).then(|| (name.to_owned(), subject))
}

/// What is wrong with a trigger naming the segment `name`: none of that name in the workspace,
/// or one of another kind than the journey's.
async fn segment_problem(
    s: &AppState,
    ws: &domain::WorkspaceId,
    name: &str,
    subject: Option<Subject>,
) -> Option<journeys::Problem> {
    let problem = |message: String| Some(journeys::Problem { path: "journey.trigger".into(), message });
    let segments = match s.store().list_segments(ws).await {
        Ok(segments) => segments,
        Err(e) => return problem(e.to_string()),
    };
    match segments.iter().find(|seg| seg.name == name) {
        None => {
            let mut names: Vec<&str> = segments.iter().map(|s| s.name.as_str()).collect();
            names.sort();
            problem(format!("the workspace has no segment {name:?} (it has: {})", names.join(", ")))
        }
        Some(seg) => match subject.map(runner::kind_of) {
            Some(kind) if kind != seg.kind => {
                problem(format!("{name:?} is a segment of {}, the journey is of {}", seg.kind.as_str(), kind.as_str()))
            }
            _ => None,
        },
    }
}

fn invalid(problems: Vec<journeys::Problem>) -> ApiError {
    let first = problems.first().map(|p| p.to_string()).unwrap_or_default();
    let field = problems.first().map(|p| p.path.clone());
    let e = ApiError {
        details: Some(json!({"problems": problems})),
        ..ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_journey",
            format!("the journey has {} problem(s); the first: {first}", problems.len()),
        )
    };
    match field {
        Some(f) => e.field(f),
        None => e,
    }
}

/// `enabled` as the definition gives it; `otherwise` when it does not say.
fn enabled_of(doc: &Value, otherwise: bool) -> Result<bool, ApiError> {
    match doc.get("enabled") {
        None | Some(Value::Null) => Ok(otherwise),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad_request("invalid_journey", "`enabled` must be true or false").field("enabled")),
    }
}

/// The definition as stored: without `enabled`, which is the journey's state, not its version.
fn stored(mut doc: Value) -> Value {
    if let Some(m) = doc.as_object_mut() {
        m.remove("enabled");
    }
    doc
}

async fn with_stats(s: &AppState, ws: &domain::WorkspaceId, j: JourneyRecord) -> Result<Value, ApiError> {
    let stats = s.store().journey_stats(ws, &j.journey_id).await?;
    Ok(json!({"journey": j, "stats": stats}))
}

/// Checks and stores a definition; `enabled` is the journey's state when the body does not
/// say (off for a new journey, as it was for an update).
async fn save(
    s: &AppState,
    ws: &domain::WorkspaceId,
    id: String,
    enabled: bool,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<JourneyRecord, ApiError> {
    let doc = document(headers, body)?;
    let enabled = enabled_of(&doc, enabled)?;
    let doc = stored(doc);
    let j = check(s, ws, &doc).await.map_err(invalid)?;
    let draft = JourneyDraft {
        journey_id: id,
        name: j.name.clone(),
        kind: runner::kind_of(j.subject),
        enabled,
        definition: doc,
    };
    s.store().put_journey(ws, &draft, Utc::now()).await.map_err(|e| match e {
        store::StoreError::Conflict(_) => {
            ApiError::new(StatusCode::CONFLICT, "conflict", format!("a journey named {:?} exists", j.name))
                .field("name")
        }
        other => other.into(),
    })
}

/// `GET /api/v1/journeys`: every journey with its current version and stats.
pub(crate) async fn list_journeys(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let mut out = Vec::new();
    for j in s.store().list_journeys(&ws).await? {
        out.push(with_stats(&s, &ws, j).await?);
    }
    Ok(Json(json!({"data": out})).into_response())
}

/// `POST /api/v1/journeys`: checks and saves a journey (disabled unless `enabled: true`).
pub(crate) async fn create_journey(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let ws = operator(&s, &headers).await?.workspace_id;
    let j = save(&s, &ws, store::journeys::new_journey_id(), false, &headers, &body).await?;
    Ok((StatusCode::CREATED, Json(with_stats(&s, &ws, j).await?)).into_response())
}

/// `POST /api/v1/journeys/validate`: every problem of a definition, saving nothing.
pub(crate) async fn validate_journey(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let doc = stored(document(&headers, &body)?);
    Ok(match check(&s, &ws, &doc).await {
        Ok(j) => Json(json!({"valid": true, "problems": [], "journey": j})),
        Err(problems) => Json(json!({"valid": false, "problems": problems})),
    }
    .into_response())
}

/// `GET /api/v1/journeys/{id}`.
pub(crate) async fn get_journey(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let j = s.store().get_journey(&ws, &id).await?.ok_or_else(|| not_found("journey"))?;
    Ok(Json(with_stats(&s, &ws, j).await?).into_response())
}

/// `PUT /api/v1/journeys/{id}`: a new version when the definition changed; runs keep theirs.
/// Enabled or not as before unless the body says `enabled`.
pub(crate) async fn update_journey(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let ws = operator(&s, &headers).await?.workspace_id;
    let Some(current) = s.store().get_journey(&ws, &id).await? else {
        return Err(not_found("journey"));
    };
    let j = save(&s, &ws, id, current.enabled, &headers, &body).await?;
    Ok(Json(with_stats(&s, &ws, j).await?).into_response())
}

/// `GET /api/v1/journeys/{id}/versions/{version}`: the definition runs of that version follow.
pub(crate) async fn journey_version(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((id, version)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let d = s.store().journey_version(&ws, &id, version).await?.ok_or_else(|| not_found("journey"))?;
    Ok(Json(json!({"journey_id": id, "version": version, "definition": d})).into_response())
}

async fn set_enabled(s: AppState, headers: HeaderMap, id: String, enabled: bool) -> Result<Response, ApiError> {
    let ws = operator(&s, &headers).await?.workspace_id;
    if !s.store().set_journey_enabled(&ws, &id, enabled, Utc::now()).await? {
        return Err(not_found("journey"));
    }
    let j = s.store().get_journey(&ws, &id).await?.ok_or_else(|| not_found("journey"))?;
    Ok(Json(with_stats(&s, &ws, j).await?).into_response())
}

/// `POST /api/v1/journeys/{id}/enable`: runs start from its trigger from now on.
pub(crate) async fn enable_journey(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_enabled(s, headers, id, true).await
}

/// `POST /api/v1/journeys/{id}/disable`: no new runs; runs in progress go on.
pub(crate) async fn disable_journey(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_enabled(s, headers, id, false).await
}

fn status_param<T>(
    q: &HashMap<String, String>,
    parse: fn(&str) -> Option<T>,
    values: &str,
) -> Result<Option<T>, ApiError> {
    match q.get("status") {
        None => Ok(None),
        Some(v) => parse(v).map(Some).ok_or_else(|| {
            ApiError::bad_request("invalid_parameter", format!("`status` must be one of {values}")).field("status")
        }),
    }
}

/// `GET /api/v1/journeys/{id}/runs?status=`: its runs, newest first.
pub(crate) async fn journey_runs(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    if s.store().get_journey(&ws, &id).await?.is_none() {
        return Err(not_found("journey"));
    }
    let status = status_param(&q, RunStatus::parse, "active, completed, converted, exited, failed")?;
    let filter =
        RunFilter { journey_id: Some(id), account_id: q.get("account_id").cloned(), status, ..RunFilter::default() };
    Ok(page_json(s.store().list_runs(&ws, &filter, &page_request(&q)?).await?))
}

/// `POST /api/v1/journeys/{id}/runs` `{"subject_id": ..., "data": {...}}`: starts a run by hand.
pub(crate) async fn start_run(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let ws = operator(&s, &headers).await?.workspace_id;
    let v = body_json(&body)?;
    let Some(subject) = v.get("subject_id").and_then(Value::as_str) else {
        return Err(ApiError::bad_request("invalid_run", "`subject_id` is required, as a string").field("subject_id"));
    };
    let data = v.get("data").cloned().unwrap_or(json!({}));
    let runner = s.runner();
    match runner.start_manual(&ws, &id, subject, data, Utc::now()).await {
        Ok(Some(run)) => Ok((StatusCode::CREATED, Json(run)).into_response()),
        Ok(None) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "the journey's re-entry rule does not let this subject start again now",
        )),
        Err(runner::Error::NotFound) => Err(not_found("journey")),
        Err(runner::Error::Refused(m)) => {
            let e = ApiError::bad_request("invalid_run", m.trim_start_matches("subject_id: ").to_owned());
            Err(if m.starts_with("subject_id") { e.field("subject_id") } else { e })
        }
        Err(runner::Error::Store(e)) => Err(e.into()),
        Err(runner::Error::Membership(e)) => {
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "journey_failed", e.to_string()))
        }
    }
}

/// `GET /api/v1/runs/{id}`: a run with the steps it took.
pub(crate) async fn get_run(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let run = s.store().get_run(&ws, &id).await?.ok_or_else(|| not_found("run"))?;
    let steps = s.store().run_steps(&ws, &id).await?;
    Ok(Json(json!({"run": run, "steps": steps})).into_response())
}

/// `GET /api/v1/accounts/{id}/journeys`: the account's runs, newest first.
pub(crate) async fn account_runs(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let account = existing_account(&s, &ws, &id).await?;
    let status = status_param(&q, RunStatus::parse, "active, completed, converted, exited, failed")?;
    let filter = RunFilter { account_id: Some(account.as_str().to_owned()), status, ..RunFilter::default() };
    Ok(page_json(s.store().list_runs(&ws, &filter, &page_request(&q)?).await?))
}

/// `GET /api/v1/deliveries?status=&account_id=&journey_id=&run_id=`: messages, newest first
/// (`status=dead` lists the dead letters).
pub(crate) async fn list_deliveries(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let status = status_param(&q, MessageStatus::parse, "pending, sending, handed, delivered, dead, suppressed")?;
    let filter = MessageFilter {
        account_id: q.get("account_id").cloned(),
        journey_id: q.get("journey_id").cloned(),
        run_id: q.get("run_id").cloned(),
        status,
    };
    Ok(page_json(s.store().list_messages(&ws, &filter, &page_request(&q)?).await?))
}

/// `GET /api/v1/deliveries/{id}`: a message with its attempts.
pub(crate) async fn get_delivery(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let m = s.store().get_message(&ws, &id).await?.ok_or_else(|| not_found("delivery"))?;
    let attempts = s.store().message_attempts(&ws, &id).await?;
    Ok(Json(json!({"delivery": m, "attempts": attempts})).into_response())
}

/// `POST /api/v1/deliveries/{id}/replay`: sends a dead letter (or a suppressed message) again.
pub(crate) async fn replay_delivery(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ws = operator(&s, &headers).await?.workspace_id;
    let refused = |m: &store::OutboxMessage| {
        ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("only dead or suppressed deliveries are replayed; this one is {}", m.status.as_str()),
        )
    };
    // The store answers a message in another state as it is: a pending one would look replayed.
    let m = s.store().get_message(&ws, &id).await?.ok_or_else(|| not_found("delivery"))?;
    if !matches!(m.status, MessageStatus::Dead | MessageStatus::Suppressed) {
        return Err(refused(&m));
    }
    let m = s.store().replay_message(&ws, &id, Utc::now()).await?.ok_or_else(|| not_found("delivery"))?;
    if m.status != MessageStatus::Pending {
        return Err(refused(&m));
    }
    Ok(Json(json!({"delivery": m})).into_response())
}

/// `GET /api/v1/tasks?status=&assignee=&account_id=`: open tasks by due date, then the rest.
pub(crate) async fn list_tasks(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let status = status_param(&q, TaskStatus::parse, "open, done, dismissed")?;
    let filter = TaskFilter { status, assignee: q.get("assignee").cloned(), account_id: q.get("account_id").cloned() };
    Ok(page_json(s.store().list_tasks(&ws, &filter, &page_request(&q)?).await?))
}

/// `POST /api/v1/tasks`: a task made by hand.
pub(crate) async fn create_task(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let ws = operator(&s, &headers).await?.workspace_id;
    let v = body_json(&body)?;
    let text = |field: &'static str, required: bool| -> Result<Option<String>, ApiError> {
        match v.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
            None | Some(Value::Null) if !required => Ok(None),
            _ => {
                Err(ApiError::bad_request("invalid_task", format!("`{field}` must be a non-empty string")).field(field))
            }
        }
    };
    let priority = text("priority", false)?.unwrap_or_else(|| "normal".into());
    if !["low", "normal", "high", "urgent"].contains(&priority.as_str()) {
        return Err(
            ApiError::bad_request("invalid_task", "`priority` must be low, normal, high or urgent").field("priority")
        );
    }
    let due_at = match text("due_at", false)? {
        Some(d) => Some(
            chrono::DateTime::parse_from_rfc3339(&d)
                .map_err(|_| {
                    ApiError::bad_request("invalid_task", "`due_at` must be an RFC 3339 time").field("due_at")
                })?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    let account_id = text("account_id", false)?;
    if let Some(a) = &account_id {
        let id = domain::AccountId::parse(a)
            .map_err(|e| ApiError::bad_request("invalid_task", e.to_string()).field("account_id"))?;
        if s.store().get_account(&ws, &id).await?.is_none() {
            return Err(ApiError::bad_request("invalid_task", format!("the workspace has no account {a:?}"))
                .field("account_id"));
        }
    }
    let now = Utc::now();
    let task = Task {
        task_id: store::journeys::new_task_id(),
        title: text("title", true)?.unwrap_or_default(),
        body: text("body", false)?,
        assignee: text("assignee", true)?.unwrap_or_default(),
        priority,
        due_at,
        status: TaskStatus::Open,
        account_id,
        person_id: None,
        journey_id: None,
        run_id: None,
        created_at: now,
        updated_at: now,
        closed_by: None,
    };
    s.store().insert_task(&ws, &task).await?;
    // As stored (its times to the millisecond), so it reads the same as from `GET`.
    let task = s.store().get_task(&ws, &task.task_id).await?.unwrap_or(task);
    Ok((StatusCode::CREATED, Json(task)).into_response())
}

/// `GET /api/v1/tasks/{id}`.
pub(crate) async fn get_task(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    Ok(Json(s.store().get_task(&ws, &id).await?.ok_or_else(|| not_found("task"))?).into_response())
}

/// `PATCH /api/v1/tasks/{id}` `{"status": "done" | "dismissed" | "open"}`.
pub(crate) async fn update_task(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let key = operator(&s, &headers).await?;
    let v = body_json(&body)?;
    let status = v.get("status").and_then(Value::as_str).and_then(TaskStatus::parse).ok_or_else(|| {
        ApiError::bad_request("invalid_task", "`status` must be open, done or dismissed").field("status")
    })?;
    let by = format!("key:{}", key.key_id);
    let task = s.store().update_task(&key.workspace_id, &id, status, &by, Utc::now()).await?;
    Ok(Json(task.ok_or_else(|| not_found("task"))?).into_response())
}

/// `GET /api/v1/accounts/{id}/activity?limit=`: what Steward did for an account, newest
/// first: each delivery (channel, endpoint, status, attempts, the last error), each task, and
/// each journey run with its steps.
pub(crate) async fn account_activity(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    existing_account(&s, &ws, &id).await?;
    let limit = page_request(&q)?.limit;
    let first = store::PageRequest::first(limit);
    let deliveries = s
        .store()
        .list_messages(&ws, &MessageFilter { account_id: Some(id.clone()), ..MessageFilter::default() }, &first)
        .await?
        .items;
    let runs = s
        .store()
        .list_runs(&ws, &RunFilter { account_id: Some(id.clone()), ..RunFilter::default() }, &first)
        .await?
        .items;
    let tasks = s
        .store()
        .list_tasks(
            &ws,
            &TaskFilter { account_id: Some(id.clone()), ..TaskFilter::default() },
            &store::PageRequest::first(store::MAX_LIMIT),
        )
        .await?
        .items;
    let mut items: Vec<(chrono::DateTime<Utc>, Value)> = Vec::new();
    for m in deliveries {
        items.push((m.created_at, json!({"kind": "delivery", "at": m.created_at, "delivery": m})));
    }
    for t in tasks {
        items.push((t.created_at, json!({"kind": "task", "at": t.created_at, "task": t})));
    }
    for r in runs {
        let steps = s.store().run_steps(&ws, &r.run_id).await?;
        items.push((r.started_at, json!({"kind": "run", "at": r.started_at, "run": r, "steps": steps})));
    }
    items.sort_by_key(|item| std::cmp::Reverse(item.0));
    items.truncate(limit);
    Ok(Json(json!({"data": items.into_iter().map(|(_, v)| v).collect::<Vec<_>>()})).into_response())
}
