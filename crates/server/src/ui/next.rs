//! An account's recommended next actions ([`scoring::actions`]): what its latest score calls
//! for, with the evidence and the workspace's playbook for each, on its page; and the task a
//! member makes of one.

use std::collections::HashSet;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Days, Utc};
use domain::{AccountId, Timestamp, WorkspaceId};
use intelligence::actions::{Kind, Need, Playbook, Recommendation};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use store::{
    AccountScore, Alert, AlertFilter, AlertKind, HealthBand, JourneyRecord, PageRequest, Run, RunFilter, RunStatus,
    SegmentRecord, Store, StoreError, SubjectKind, Subscription, Task, TaskFilter, TaskStatus,
};

use super::session::Signed;
use super::{UiError, audit, done};
use crate::AppState;

/// What an account's recommendations are made of, besides its score's explanation.
pub(crate) struct Records<'a> {
    pub band: Option<HealthBand>,
    pub subscriptions: &'a [Subscription],
    /// The segments it is a member of, by id.
    pub member_of: &'a HashSet<String>,
    pub segments: &'a [SegmentRecord],
    pub journeys: &'a [JourneyRecord],
    /// Its runs (those in progress tell which playbooks run for it).
    pub runs: &'a [Run],
    /// Its alerts (the unresolved ones start playbooks).
    pub alerts: &'a [Alert],
}

/// What an account's recommendations are read from, loaded for it alone: its latest score
/// and the records beside it (its active runs and unresolved alerts, the only ones that
/// tell which playbooks run or apply), and its open tasks, which say what was made of them.
pub(crate) struct Loaded {
    pub score: AccountScore,
    subscriptions: Vec<Subscription>,
    member_of: HashSet<String>,
    segments: Vec<SegmentRecord>,
    journeys: Vec<JourneyRecord>,
    runs: Vec<Run>,
    alerts: Vec<Alert>,
    pub open_tasks: Vec<Task>,
}

impl Loaded {
    /// The account's, if it has been scored. The account is taken to exist in `ws`.
    pub(crate) async fn of(
        store: &dyn Store,
        ws: &WorkspaceId,
        account: &AccountId,
    ) -> Result<Option<Loaded>, StoreError> {
        let Some(score) = store.account_score(ws, account).await? else { return Ok(None) };
        let id = account.as_str().to_owned();
        let all = PageRequest::first(store::MAX_LIMIT);
        let runs = RunFilter { account_id: Some(id.clone()), status: Some(RunStatus::Active), ..Default::default() };
        let alerts = AlertFilter { account_id: Some(account.clone()), unresolved: true, ..Default::default() };
        let tasks = TaskFilter { status: Some(TaskStatus::Open), account_id: Some(id), ..Default::default() };
        Ok(Some(Loaded {
            subscriptions: store.account_subscriptions(ws, account).await?,
            member_of: store.memberships_of(ws, account.as_str()).await?.into_iter().map(|m| m.segment_id).collect(),
            segments: store.list_segments(ws).await?,
            journeys: store.list_journeys(ws).await?,
            runs: store.list_runs(ws, &runs, &all).await?.items,
            alerts: store.list_alerts(ws, &alerts, &all).await?.items,
            open_tasks: store.list_tasks(ws, &tasks, &all).await?.items,
            score,
        }))
    }

    /// The account's recommendations as of `now`, most urgent first.
    pub(crate) fn recommendations(&self, now: Timestamp) -> Vec<Recommendation> {
        let records = Records {
            band: Some(self.score.band),
            subscriptions: &self.subscriptions,
            member_of: &self.member_of,
            segments: &self.segments,
            journeys: &self.journeys,
            runs: &self.runs,
            alerts: &self.alerts,
        };
        recommendations(&self.score.explanation.to_value(), &records, now)
    }
}

/// The workspace's enabled account playbooks, each with what it is for and whether the
/// account is in the situation that starts it: a member of its trigger (or schedule)
/// segment, in the band it starts on, with the alert it starts on open.
fn playbooks(r: &Records) -> Vec<Playbook> {
    let mut out = Vec::new();
    for j in r.journeys.iter().filter(|j| j.enabled && j.kind == SubjectKind::Accounts) {
        // Stored journeys were checked when saved; their conditions need no checking here.
        let Ok(definition) = journeys::parse(&j.definition, &|_, _| Ok(())) else { continue };
        let segment = |name: &str| r.segments.iter().find(|s| s.name == name);
        let (needs, applies) = match &definition.trigger {
            journeys::Trigger::SegmentEntered { segment: name } | journeys::Trigger::Schedule { segment: name, .. } => {
                let Some(seg) = segment(name) else { continue };
                let names = segments::names(&seg.condition);
                (Need::of_condition(names.iter().map(String::as_str)), r.member_of.contains(&seg.segment_id))
            }
            journeys::Trigger::HealthBand { to, .. } => {
                let need = if to == "healthy" { Need::Expansion } else { Need::Retention };
                (vec![need], r.band.is_some_and(|b| b.as_str() == to))
            }
            journeys::Trigger::AlertOpened { kind, reason } => {
                let need = match (reason.as_deref().and_then(Need::of_alert), kind.as_deref()) {
                    (Some(n), _) => n,
                    (None, Some("opportunity")) => Need::Expansion,
                    (None, _) => Need::Retention,
                };
                let open = r.alerts.iter().any(|a| {
                    a.status != store::AlertStatus::Resolved
                        && reason.as_ref().is_none_or(|x| *x == a.reason)
                        && kind.as_ref().is_none_or(|k| *k == alert_kind(a.kind))
                });
                (vec![need], open)
            }
            _ => continue,
        };
        let running = r.runs.iter().any(|run| run.journey_id == j.journey_id && run.status == RunStatus::Active);
        out.push(Playbook { journey_id: j.journey_id.clone(), name: j.name.clone(), needs, applies, running });
    }
    out
}

fn alert_kind(k: AlertKind) -> &'static str {
    match k {
        AlertKind::Risk => "risk",
        AlertKind::Opportunity => "opportunity",
    }
}

/// The account's recommendations as of `now`, most urgent first.
pub(crate) fn recommendations(explanation: &Value, r: &Records, now: Timestamp) -> Vec<Recommendation> {
    let renews_in_days = membership::renews_at(r.subscriptions, now).map(|t| (t - now).num_days());
    scoring::actions::recommendations(explanation, renews_in_days, &playbooks(r))
}

/// The start of the ids of the tasks made from a recommendation of `kind`.
fn task_prefix(kind: Kind) -> String {
    format!("rec_{}_", kind.as_str())
}

/// A task's id from a recommendation: one per account, kind and day, so that a form sent
/// twice makes one task.
fn task_id(ws: &WorkspaceId, account: &AccountId, kind: Kind, now: Timestamp) -> String {
    let mut h = Sha256::new();
    for part in [ws.as_str(), account.as_str(), &now.date_naive().to_string()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("{}{}", task_prefix(kind), hex::encode(&h.finalize()[..10]))
}

/// The recommendations as the account's page shows them and the API lists them: each with
/// the open task made from it, if any.
pub(crate) fn shown(recommendations: &[Recommendation], tasks: &[Task]) -> Vec<Value> {
    recommendations
        .iter()
        .map(|r| {
            let open = tasks
                .iter()
                .find(|t| t.status == TaskStatus::Open && t.task_id.starts_with(&task_prefix(r.kind)))
                .map(|t| t.task_id.clone());
            json!({
                "kind": r.kind.as_str(), "need": r.need.as_str(), "title": r.title, "priority": r.priority.as_str(),
                "evidence": r.evidence, "playbook": r.playbook, "task": open,
            })
        })
        .collect()
}

/// `POST /accounts/{id}/next/{kind}/task`: a task from the account's recommendation of
/// that kind, as it stands now (for the operator who asks, due as the recommendation says),
/// and an audit entry. Refused when the account no longer calls for it; a second request
/// while its task is open makes no other.
pub(crate) async fn create_task(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Path((id, kind)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let ws = &signed.operator.workspace_id;
    let kind = Kind::parse(&kind).ok_or_else(|| UiError::not_found("recommendation"))?;
    let account_id = AccountId::parse(&id).map_err(|_| UiError::not_found("account"))?;
    let store = s.store();
    store.get_account(ws, &account_id).await?.ok_or_else(|| UiError::not_found("account"))?;
    let page = format!("/accounts/{}", super::url_encode(&id));
    let no_longer = || {
        UiError::status(
            StatusCode::CONFLICT,
            "This account no longer calls for that action (its latest score says otherwise); no task was made.",
        )
    };
    let loaded = Loaded::of(store.as_ref(), ws, &account_id).await?.ok_or_else(no_longer)?;
    let now = Utc::now();
    let rec = loaded.recommendations(now).into_iter().find(|r| r.kind == kind).ok_or_else(no_longer)?;
    let open = &loaded.open_tasks;
    if let Some(t) = open.iter().find(|t| t.task_id.starts_with(&task_prefix(kind))) {
        return Ok(done(&page, &format!("A task for this is open already: “{}”.", t.title)));
    }
    let mut body: Vec<String> = rec.evidence.iter().map(|e| format!("- {}", e.text)).collect();
    if let Some(p) = &rec.playbook {
        body.push(format!("Playbook: {}{}", p.name, if p.running { " (running)" } else { "" }));
    }
    let task = Task {
        task_id: task_id(ws, &account_id, kind, now),
        title: rec.task.clone(),
        body: Some(format!("{}\n\n{}", rec.title, body.join("\n"))),
        assignee: signed.operator.email.clone(),
        priority: rec.priority.as_str().to_owned(),
        due_at: now.checked_add_days(Days::new(u64::from(rec.due_days))),
        status: TaskStatus::Open,
        account_id: Some(id.clone()),
        person_id: None,
        journey_id: None,
        run_id: None,
        created_at: now,
        updated_at: now,
        closed_by: None,
    };
    store.insert_task(ws, &task).await?;
    audit(
        &s,
        signed.audit_entry(
            "task.create",
            &task.task_id,
            json!({"account_id": id, "recommendation": kind.as_str(), "title": task.title,
                   "evidence": rec.evidence.iter().map(|e| &e.text).collect::<Vec<_>>()}),
        ),
    )
    .await?;
    Ok(done(&page, &format!("Task “{}” created, due in {} days.", task.title, rec.due_days)))
}
