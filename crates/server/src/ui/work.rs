//! The working pages: alerts, tasks, segments, journeys and models, and what members do on
//! them (each change written to the audit log).

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use minijinja::{Value, context};
use serde_json::json;
use store::{AlertAction, AlertFilter, AlertStatus, PageRequest, SubjectKind, TaskFilter, TaskStatus};

use super::pages::layout;
use super::session::Signed;
use super::{UiError, audit, chart::escape, done, form_of, render, ser};
use crate::AppState;

/// `GET /alerts?status=open|acknowledged|resolved|unresolved` (default unresolved).
pub(crate) async fn alerts(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let ws = &signed.operator.workspace_id;
    let shown = q.get("status").map(String::as_str).unwrap_or("unresolved");
    let filter = match shown {
        "unresolved" => AlertFilter { unresolved: true, ..Default::default() },
        other => AlertFilter {
            status: Some(
                other
                    .parse::<AlertStatus>()
                    .map_err(|_| UiError::bad("Show open, acknowledged, resolved or unresolved alerts."))?,
            ),
            ..Default::default()
        },
    };
    let list = s.store().list_alerts(ws, &filter, &PageRequest::first(200)).await?.items;
    let html =
        render("alerts.html", context! { layout => layout(&signed, "alerts", &q), alerts => ser(&list), shown })?;
    Ok(html.into_response())
}

/// `POST /alerts/{id}/acknowledge|resolve|useful|not_useful`.
pub(crate) async fn act_on_alert(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let act = match action.as_str() {
        "acknowledge" => AlertAction::Acknowledge,
        "resolve" => AlertAction::Resolve,
        "useful" => AlertAction::Feedback { useful: true, note: None },
        "not_useful" => AlertAction::Feedback { useful: false, note: None },
        _ => return Err(UiError::not_found("action")),
    };
    let ws = &signed.operator.workspace_id;
    let alert = s.store().update_alert(ws, &id, &act, &signed.actor(), Utc::now()).await?;
    let alert = alert.ok_or_else(|| UiError::not_found("alert"))?;
    audit(
        &s,
        signed.audit_entry(
            &format!("alert.{action}"),
            &id,
            json!({"account_id": alert.account_id, "title": alert.title}),
        ),
    )
    .await?;
    Ok(done("/alerts", &format!("Alert “{}”: {}.", alert.title, action.replace('_', " "))))
}

/// `GET /tasks?who=me|all&status=open|done|dismissed`: the operator's inbox by default
/// (tasks assigned to their email or to the CSM role).
pub(crate) async fn tasks(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let ws = &signed.operator.workspace_id;
    let status = TaskStatus::parse(q.get("status").map(String::as_str).unwrap_or("open"))
        .ok_or_else(|| UiError::bad("Show open, done or dismissed tasks."))?;
    let who = q.get("who").map(String::as_str).unwrap_or("me");
    let mut list = Vec::new();
    let assignees: Vec<Option<String>> = match who {
        "me" => vec![Some(signed.operator.email.clone()), Some("csm".into())],
        "all" => vec![None],
        _ => return Err(UiError::bad("Show your tasks (me) or everyone's (all).")),
    };
    for assignee in assignees {
        let filter = TaskFilter { status: Some(status), assignee, account_id: None };
        list.extend(s.store().list_tasks(ws, &filter, &PageRequest::first(200)).await?.items);
    }
    let html = render(
        "tasks.html",
        context! { layout => layout(&signed, "tasks", &q), tasks => ser(&list), who, status => status.as_str() },
    )?;
    Ok(html.into_response())
}

/// `POST /tasks/{id}/done|dismissed|open`.
pub(crate) async fn set_task(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Path((id, status)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let to = TaskStatus::parse(&status).ok_or_else(|| UiError::not_found("action"))?;
    let ws = &signed.operator.workspace_id;
    let task = s.store().update_task(ws, &id, to, &signed.operator.email, Utc::now()).await?;
    let task = task.ok_or_else(|| UiError::not_found("task"))?;
    audit(
        &s,
        signed.audit_entry(&format!("task.{status}"), &id, json!({"title": task.title, "account_id": task.account_id})),
    )
    .await?;
    Ok(done("/tasks", &format!("Task “{}” is {}.", task.title, to.as_str())))
}

/// `GET /segments`: every segment with its size, and the editor.
pub(crate) async fn segments(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    segments_page(&s, &signed, &q, None, StatusCode::OK).await
}

async fn segments_page(
    s: &AppState,
    signed: &Signed,
    q: &HashMap<String, String>,
    error: Option<(String, HashMap<String, String>)>,
    status: StatusCode,
) -> Result<Response, UiError> {
    let ws = &signed.operator.workspace_id;
    let mut list = Vec::new();
    for seg in s.store().list_segments(ws).await? {
        let size = s.store().segment_size(ws, &seg.segment_id).await?;
        list.push(json!({"segment": seg, "size": size}));
    }
    let (error, mut form) = error.map_or((None, HashMap::new()), |(e, f)| (Some(e), f));
    // The segment being edited: asked for by `?edit=`, or the one a refused edit was of.
    let editing = form.get("id").or(q.get("edit")).cloned();
    let editing = match editing {
        Some(id) => list.iter().find(|x| x["segment"]["segment_id"] == id.as_str()).map(|x| x["segment"].clone()),
        None => None,
    };
    if let Some(seg) = &editing
        && error.is_none()
    {
        for k in ["name", "condition", "description", "kind"] {
            form.insert(k.to_owned(), seg[k].as_str().unwrap_or_default().to_owned());
        }
    }
    let html = render(
        "segments.html",
        context! {
            layout => layout(signed, "segments", q),
            segments => ser(&list),
            error,
            form => ser(&form),
            editing => ser(&editing),
        },
    )?;
    Ok((status, html).into_response())
}

/// `POST /segments/preview` (JSON `{"condition", "kind"}`, with `X-CSRF-Token`): what the
/// editor shows as the condition is typed: its size, a sample, or the error with its place.
pub(crate) async fn preview_segment(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    body: axum::body::Bytes,
) -> Response {
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return crate::ApiError::bad_request("invalid_json", format!("the body is not JSON: {e}")).into_response();
        }
    };
    let kind = match v.get("kind").and_then(|k| k.as_str()) {
        None | Some("accounts") => SubjectKind::Accounts,
        Some("people") => SubjectKind::People,
        Some(_) => {
            return crate::ApiError::bad_request("invalid_segment", "`kind` must be accounts or people")
                .field("kind")
                .into_response();
        }
    };
    let Some(condition) = v.get("condition").and_then(|c| c.as_str()) else {
        return crate::ApiError::bad_request("invalid_segment", "`condition` is required")
            .field("condition")
            .into_response();
    };
    match s.membership().preview(&signed.operator.workspace_id, kind, condition, Utc::now(), 5).await {
        Ok(p) => Json(p).into_response(),
        Err(e) => crate::segments::engine_error(e).into_response(),
    }
}

/// `POST /segments/{id}/edit`: a new name, condition or description (the kind stays).
pub(crate) async fn update_segment(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Response, UiError> {
    let ws = &signed.operator.workspace_id;
    let existing = s.store().get_segment(ws, &id).await?.ok_or_else(|| UiError::not_found("segment"))?;
    let mut form = form_of(req).await?;
    form.insert("id".into(), id.clone());
    let d = definition(&form, existing.kind);
    if d.name.is_empty() {
        return unnamed(&s, &signed, &q, form).await;
    }
    let saved = s.membership().update(ws, &id, &d, Utc::now()).await;
    let details = json!({"name": d.name, "condition": d.condition,
        "was": {"name": existing.name, "condition": existing.condition}});
    saved_segment(&s, &signed, &q, form, &d, saved.map(|saved| (id, "segment.update", details, saved.size))).await
}

/// A segment defined by the editor's form, of `kind`.
fn definition(form: &HashMap<String, String>, kind: SubjectKind) -> membership::Definition {
    let field = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    membership::Definition {
        name: field("name"),
        kind,
        condition: form.get("condition").cloned().unwrap_or_default(),
        description: Some(field("description")).filter(|d| !d.is_empty()),
    }
}

/// The editor again, its form kept, when the segment has no name.
async fn unnamed(
    s: &AppState,
    signed: &Signed,
    q: &HashMap<String, String>,
    form: HashMap<String, String>,
) -> Result<Response, UiError> {
    segments_page(s, signed, q, Some(("Give the segment a name.".into(), form)), StatusCode::BAD_REQUEST).await
}

/// After a segment was created or changed: audited with its id, action and details and back
/// to the list, or the editor again with the form and why it was refused.
async fn saved_segment(
    s: &AppState,
    signed: &Signed,
    q: &HashMap<String, String>,
    form: HashMap<String, String>,
    d: &membership::Definition,
    saved: Result<(String, &str, serde_json::Value, u64), membership::Error>,
) -> Result<Response, UiError> {
    match saved {
        Ok((id, action, details, size)) => {
            audit(s, signed.audit_entry(action, &id, details)).await?;
            Ok(done("/segments", &format!("Segment “{}” saved with {size} members.", d.name)))
        }
        Err(e) => {
            let (message, status) = refusal(e);
            segments_page(s, signed, q, Some((message, form)), status).await
        }
    }
}

/// `POST /segments/{id}/delete`.
pub(crate) async fn delete_segment(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let ws = &signed.operator.workspace_id;
    let existing = s.store().get_segment(ws, &id).await?.ok_or_else(|| UiError::not_found("segment"))?;
    if let Err(e) = s.membership().delete(ws, &id).await {
        let (message, status) = refusal(e);
        return segments_page(&s, &signed, &q, Some((message, HashMap::new())), status).await;
    }
    let details = json!({"name": existing.name, "condition": existing.condition});
    audit(&s, signed.audit_entry("segment.delete", &id, details)).await?;
    Ok(done("/segments", &format!("Segment “{}” deleted.", existing.name)))
}

/// What the segment engine refused, as the editor shows it.
fn refusal(e: membership::Error) -> (String, StatusCode) {
    let api = crate::segments::engine_error(e);
    let message = match &api.field {
        Some(f) => format!("{f}: {}", api.message),
        None => api.message,
    };
    (message, api.status)
}

/// `POST /journeys/{id}/enable` and `/disable`: runs start from its trigger, or no new ones.
pub(crate) async fn set_journey(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let enabled = match action.as_str() {
        "enable" => true,
        "disable" => false,
        _ => return Err(UiError::not_found("action")),
    };
    let ws = &signed.operator.workspace_id;
    if !s.store().set_journey_enabled(ws, &id, enabled, Utc::now()).await? {
        return Err(UiError::not_found("journey"));
    }
    let name = s.store().get_journey(ws, &id).await?.map(|j| j.name).unwrap_or_default();
    audit(&s, signed.audit_entry(&format!("journey.{action}"), &id, json!({"name": name}))).await?;
    let what = if enabled { "enabled: runs start from its trigger" } else { "disabled: no new runs start" };
    Ok(done(&format!("/journeys/{id}"), &format!("Journey “{name}” {what}.")))
}

/// `POST /segments/new`: name, condition, description, kind.
pub(crate) async fn create_segment(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Response, UiError> {
    let form = form_of(req).await?;
    let field = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let kind = match field("kind").as_str() {
        "" | "accounts" => SubjectKind::Accounts,
        "people" => SubjectKind::People,
        _ => return Err(UiError::bad("A segment is of accounts or of people.")),
    };
    let d = definition(&form, kind);
    if d.name.is_empty() {
        return unnamed(&s, &signed, &q, form).await;
    }
    let saved = s.membership().create(&signed.operator.workspace_id, &d, Utc::now()).await;
    let details = json!({"name": d.name, "condition": d.condition});
    let saved = saved.map(|saved| (saved.segment.segment_id, "segment.create", details, saved.size));
    saved_segment(&s, &signed, &q, form, &d, saved).await
}

/// `GET /journeys`.
pub(crate) async fn journeys(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let ws = &signed.operator.workspace_id;
    let mut list = Vec::new();
    for j in s.store().list_journeys(ws).await? {
        let stats = s.store().journey_stats(ws, &j.journey_id).await?;
        list.push(json!({"id": j.journey_id, "name": j.name, "enabled": j.enabled, "version": j.version,
            "entered": stats.entered, "active": stats.active, "converted": stats.converted, "completed": stats.completed}));
    }
    let html = render("journeys.html", context! { layout => layout(&signed, "journeys", &q), journeys => ser(&list) })?;
    Ok(html.into_response())
}

/// The steps a step can go to: the next in the list, or those its definition names.
fn step_targets(steps: &[serde_json::Value], i: usize) -> Vec<(String, &'static str)> {
    let step = &steps[i];
    let next = steps.get(i + 1).and_then(|n| n.get("id")).and_then(|v| v.as_str()).map(str::to_owned);
    let named = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    if step.get("end").is_some() {
        return Vec::new();
    }
    if let Some(b) = step.get("branch") {
        return [("then", "then"), ("else", "else")]
            .iter()
            .filter_map(|(k, label)| b.get(*k).and_then(named).map(|t| (t, *label)))
            .collect();
    }
    if let Some(split) = step.get("split").and_then(|s| s.get("arms").or(Some(s))).and_then(|a| a.as_array()) {
        return split
            .iter()
            .filter_map(|arm| arm.get("to").or(arm.get("goto")).and_then(named).map(|t| (t, "arm")))
            .collect();
    }
    let mut out: Vec<(String, &'static str)> = next.into_iter().map(|n| (n, "")).collect();
    if let Some(t) = step.get("wait_for").and_then(|w| w.get("timeout_to").or(w.get("on_timeout"))).and_then(named) {
        out.push((t, "timeout"));
    }
    out
}

fn step_kind(step: &serde_json::Value) -> String {
    step.as_object()
        .and_then(|o| o.keys().find(|k| !matches!(k.as_str(), "id" | "name" | "description")).cloned())
        .unwrap_or_else(|| "step".into())
}

/// The journey's steps drawn top to bottom, each with how many runs took it, and an arrow
/// to each step it can go to.
fn journey_graph(definition: &serde_json::Value, counts: &HashMap<String, u64>) -> String {
    use std::fmt::Write;
    let steps: Vec<serde_json::Value> = definition.get("steps").and_then(|s| s.as_array()).cloned().unwrap_or_default();
    let (w, box_w, box_h, gap) = (560.0, 300.0, 44.0, 30.0);
    let h = steps.len() as f64 * (box_h + gap) + 10.0;
    let index: HashMap<String, usize> = steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.get("id").and_then(|v| v.as_str()).map(|id| (id.to_owned(), i)))
        .collect();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart journey" viewBox="0 0 {w} {h}" role="img" xmlns="http://www.w3.org/2000/svg"><title>Steps of the journey</title><desc>{} steps, each with how many runs took it.</desc><defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"/></marker></defs>"#,
        steps.len()
    );
    let x0 = 20.0;
    let y_of = |i: usize| 5.0 + i as f64 * (box_h + gap);
    for i in 0..steps.len() {
        for (k, (target, label)) in step_targets(&steps, i).into_iter().enumerate() {
            let Some(&j) = index.get(&target) else { continue };
            let (y1, y2) = (y_of(i) + box_h, y_of(j));
            if j == i + 1 && label.is_empty() {
                let _ = write!(
                    out,
                    r#"<line class="edge" x1="{:.1}" y1="{y1:.1}" x2="{:.1}" y2="{y2:.1}" marker-end="url(#arrow)"/>"#,
                    x0 + box_w / 2.0,
                    x0 + box_w / 2.0
                );
            } else {
                // Around the right side, one lane per target.
                let lane = x0 + box_w + 20.0 + 26.0 * k as f64 + if j < i { 100.0 } else { 0.0 };
                let (ya, yb) = (y_of(i) + box_h / 2.0, y_of(j) + box_h / 2.0);
                let _ = write!(
                    out,
                    r#"<path class="edge" fill="none" d="M {:.1} {ya:.1} H {lane:.1} V {yb:.1} H {:.1}" marker-end="url(#arrow)"/><text class="axis" x="{:.1}" y="{:.1}">{}</text>"#,
                    x0 + box_w,
                    x0 + box_w,
                    lane + 3.0,
                    (ya + yb) / 2.0,
                    escape(label)
                );
            }
        }
    }
    for (i, step) in steps.iter().enumerate() {
        let id = step.get("id").and_then(|v| v.as_str()).unwrap_or("?");
        let n = counts.get(id).copied().unwrap_or(0);
        let y = y_of(i);
        let _ = write!(
            out,
            r#"<g class="step"><rect x="{x0}" y="{y:.1}" width="{box_w}" height="{box_h}" rx="6"/><text x="{:.1}" y="{:.1}" class="step-id">{}</text><text x="{:.1}" y="{:.1}" class="axis">{}</text><text x="{:.1}" y="{:.1}" class="value" text-anchor="end">{n} runs</text></g>"#,
            x0 + 10.0,
            y + 19.0,
            escape(id),
            x0 + 10.0,
            y + 35.0,
            escape(&step_kind(step)),
            x0 + box_w - 10.0,
            y + 27.0
        );
    }
    out.push_str("</svg>");
    out
}

/// `GET /journeys/{id}`: the definition, its graph with per-step counts, the runs' totals.
pub(crate) async fn journey(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let ws = &signed.operator.workspace_id;
    let j = s.store().get_journey(ws, &id).await?.ok_or_else(|| UiError::not_found("journey"))?;
    let stats = s.store().journey_stats(ws, &id).await?;
    let counts: HashMap<String, u64> = stats.steps.iter().map(|c| (c.step_id.clone(), c.taken)).collect();
    let graph = journey_graph(&j.definition, &counts);
    let definition = serde_json::to_string_pretty(&j.definition).unwrap_or_default();
    let html = render(
        "journey.html",
        context! {
            layout => layout(&signed, "journeys", &q),
            journey => ser(json!({"id": j.journey_id, "name": j.name, "enabled": j.enabled, "version": j.version})),
            stats => ser(json!({"entered": stats.entered, "active": stats.active, "completed": stats.completed,
                "converted": stats.converted, "exited": stats.exited, "failed": stats.failed})),
            steps => ser(&stats.steps),
            graph => Value::from_safe_string(graph),
            definition,
        },
    )?;
    Ok(html.into_response())
}

/// `GET /models`: each model's card.
pub(crate) async fn models(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let list = s.store().list_models(&signed.operator.workspace_id).await?;
    let html = render("models.html", context! { layout => layout(&signed, "models", &q), models => ser(&list) })?;
    Ok(html.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graph_draws_every_step_with_its_count_and_each_edge() {
        let def = json!({"steps": [
            {"id": "welcome", "email": {"template": "w"}},
            {"id": "check", "branch": {"if": "x", "then": "done", "else": "call"}},
            {"id": "call", "task": {"title": "Call"}},
            {"id": "done", "end": {}},
        ]});
        let svg = journey_graph(&def, &HashMap::from([("welcome".to_owned(), 12), ("call".to_owned(), 3)]));
        assert_eq!(svg.matches(r#"<g class="step">"#).count(), 4);
        assert!(svg.contains(">12 runs<") && svg.contains(">3 runs<") && svg.contains(">0 runs<"));
        // welcome→check, check→done (then), check→call (else), call→done.
        assert_eq!(svg.matches("marker-end").count(), 4, "{svg}");
        assert!(svg.contains(">then<") && svg.contains(">else<"));
    }
}
