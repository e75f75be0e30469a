//! Journeys, runs, the outbox and tasks (see `migrations/0005_journeys.sql`).

use domain::{Timestamp, WorkspaceId};
use rusqlite::{Connection, OptionalExtension, Row, params};
use store::{
    Attempt, Channel, Cursor, JourneyDraft, JourneyRecord, JourneyStats, MessageFilter, MessageStatus, MessageUpdate,
    OutboxMessage, Page, PageRequest, Reentry, Result, Run, RunFilter, RunStart, RunStatus, RunUpdate, StepCount,
    StepRecord, StoreError, SubjectKind, Task, TaskFilter, TaskStatus,
};

use crate::{SqliteStore, json_col, ms, opt_time, sql_error, time};

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Backend(format!("unexpected stored {what} {value:?}"))
}

const RUN_COLUMNS: &str = "run_id, journey_id, version, subject_id, account_id, status, step, seq, wake_at, waiting, \
                           context, started_at, updated_at, ended_at";

fn run_row(r: &Row<'_>) -> rusqlite::Result<Result<Run>> {
    let status: String = r.get(5)?;
    let Some(status) = RunStatus::parse(&status) else { return Ok(Err(corrupt("run status", &status))) };
    Ok(Ok(Run {
        run_id: r.get(0)?,
        journey_id: r.get(1)?,
        version: r.get(2)?,
        subject_id: r.get(3)?,
        account_id: r.get(4)?,
        status,
        step: r.get(6)?,
        seq: r.get(7)?,
        wake_at: opt_time(r.get(8)?),
        waiting: r.get(9)?,
        context: json_col(&r.get::<_, String>(10)?),
        started_at: time(r.get(11)?),
        updated_at: time(r.get(12)?),
        ended_at: opt_time(r.get(13)?),
    }))
}

macro_rules! message_columns {
    () => {
        "message_id, channel, endpoint, payload, journey_id, run_id, step_id, account_id, \
                               person_id, status, attempts, next_attempt_at, lease_until, last_error, created_at, \
                               updated_at, delivered_at"
    };
}
const MESSAGE_COLUMNS: &str = message_columns!();
/// What is read of a message: the columns written, and the attempts made before its last replay.
const MESSAGE_SELECT: &str = concat!(message_columns!(), ", retry_base");

fn message_row(r: &Row<'_>) -> rusqlite::Result<Result<OutboxMessage>> {
    let channel: String = r.get(1)?;
    let status: String = r.get(9)?;
    let (Some(channel), Some(status)) = (Channel::parse(&channel), MessageStatus::parse(&status)) else {
        return Ok(Err(corrupt("message channel or status", &format!("{channel}/{status}"))));
    };
    Ok(Ok(OutboxMessage {
        message_id: r.get(0)?,
        channel,
        endpoint: r.get(2)?,
        payload: json_col(&r.get::<_, String>(3)?),
        journey_id: r.get(4)?,
        run_id: r.get(5)?,
        step_id: r.get(6)?,
        account_id: r.get(7)?,
        person_id: r.get(8)?,
        status,
        attempts: r.get(10)?,
        next_attempt_at: opt_time(r.get(11)?),
        lease_until: opt_time(r.get(12)?),
        last_error: r.get(13)?,
        created_at: time(r.get(14)?),
        updated_at: time(r.get(15)?),
        delivered_at: opt_time(r.get(16)?),
        retry_base: r.get(17)?,
    }))
}

const TASK_COLUMNS: &str = "task_id, title, body, assignee, priority, due_at, status, account_id, person_id, \
                            journey_id, run_id, created_at, updated_at, closed_by";

fn task_row(r: &Row<'_>) -> rusqlite::Result<Result<Task>> {
    let status: String = r.get(6)?;
    let Some(status) = TaskStatus::parse(&status) else { return Ok(Err(corrupt("task status", &status))) };
    Ok(Ok(Task {
        task_id: r.get(0)?,
        title: r.get(1)?,
        body: r.get(2)?,
        assignee: r.get(3)?,
        priority: r.get(4)?,
        due_at: opt_time(r.get(5)?),
        status,
        account_id: r.get(7)?,
        person_id: r.get(8)?,
        journey_id: r.get(9)?,
        run_id: r.get(10)?,
        created_at: time(r.get(11)?),
        updated_at: time(r.get(12)?),
        closed_by: r.get(13)?,
    }))
}

/// Rows of a query whose row function may find a corrupt value.
fn collect<T>(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: fn(&Row<'_>) -> rusqlite::Result<Result<T>>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(sql_error)?;
    let rows = stmt.query_map(p, f).map_err(sql_error)?;
    rows.map(|r| r.map_err(sql_error)?).collect()
}

fn journey_record(conn: &Connection, ws: &str, id: &str) -> Result<Option<JourneyRecord>> {
    let row = conn
        .prepare_cached(
            "SELECT j.journey_id, j.name, j.kind, j.enabled, j.version, v.definition, j.created_at, j.updated_at
             FROM journeys j JOIN journey_versions v
               ON v.workspace_id = j.workspace_id AND v.journey_id = j.journey_id AND v.version = j.version
             WHERE j.workspace_id = ?1 AND j.journey_id = ?2",
        )
        .map_err(sql_error)?
        .query_row(params![ws, id], journey_row)
        .optional()
        .map_err(sql_error)?;
    row.transpose()
}

fn journey_row(r: &Row<'_>) -> rusqlite::Result<Result<JourneyRecord>> {
    let kind: String = r.get(2)?;
    let Some(kind) = SubjectKind::parse(&kind) else { return Ok(Err(corrupt("journey kind", &kind))) };
    Ok(Ok(JourneyRecord {
        journey_id: r.get(0)?,
        name: r.get(1)?,
        kind,
        enabled: r.get(3)?,
        version: r.get(4)?,
        definition: json_col(&r.get::<_, String>(5)?),
        created_at: time(r.get(6)?),
        updated_at: time(r.get(7)?),
    }))
}

fn insert_message(conn: &Connection, ws: &str, m: &OutboxMessage) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO outbox (workspace_id, {MESSAGE_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
         ON CONFLICT (workspace_id, message_id) DO NOTHING"
    ))
    .map_err(sql_error)?
    .execute(params![
        ws,
        m.message_id,
        m.channel.as_str(),
        m.endpoint,
        m.payload.to_string(),
        m.journey_id,
        m.run_id,
        m.step_id,
        m.account_id,
        m.person_id,
        m.status.as_str(),
        m.attempts,
        m.next_attempt_at.as_ref().map(ms),
        m.lease_until.as_ref().map(ms),
        m.last_error,
        ms(&m.created_at),
        ms(&m.updated_at),
        m.delivered_at.as_ref().map(ms),
    ])
    .map_err(sql_error)?;
    Ok(())
}

fn insert_task(conn: &Connection, ws: &str, t: &Task) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO tasks (workspace_id, {TASK_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (workspace_id, task_id) DO NOTHING"
    ))
    .map_err(sql_error)?
    .execute(params![
        ws,
        t.task_id,
        t.title,
        t.body,
        t.assignee,
        t.priority,
        t.due_at.as_ref().map(ms),
        t.status.as_str(),
        t.account_id,
        t.person_id,
        t.journey_id,
        t.run_id,
        ms(&t.created_at),
        ms(&t.updated_at),
        t.closed_by,
    ])
    .map_err(sql_error)?;
    Ok(())
}

fn message_by_id(conn: &Connection, ws: &str, id: &str) -> Result<Option<OutboxMessage>> {
    let sql = format!("SELECT {MESSAGE_SELECT} FROM outbox WHERE workspace_id = ?1 AND message_id = ?2");
    Ok(collect(conn, &sql, params![ws, id], message_row)?.pop())
}

fn task_by_id(conn: &Connection, ws: &str, id: &str) -> Result<Option<Task>> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE workspace_id = ?1 AND task_id = ?2");
    Ok(collect(conn, &sql, params![ws, id], task_row)?.pop())
}

/// A page's `after` as (time in ms, id), newest first; the first page starts after everything.
fn newest_after(page: &PageRequest) -> Result<(i64, String)> {
    match &page.after {
        Some(c) => {
            let parts = c.parts(2)?;
            Ok((parts[0].parse().map_err(|_| StoreError::InvalidCursor)?, parts[1].clone()))
        }
        // Before every row: no id sorts after the last character.
        None => Ok((i64::MAX, "\u{10ffff}".to_owned())),
    }
}

impl SqliteStore {
    pub(crate) async fn put_journey(&self, ws: &WorkspaceId, d: &JourneyDraft, at: Timestamp) -> Result<JourneyRecord> {
        let (ws, d) = (ws.clone(), d.clone());
        self.write(move |conn| {
            let ws = ws.as_str();
            let now = ms(&at);
            let definition = d.definition.to_string();
            let current: Option<(i64, String)> = conn
                .prepare_cached(
                    "SELECT j.version, v.definition FROM journeys j JOIN journey_versions v
                       ON v.workspace_id = j.workspace_id AND v.journey_id = j.journey_id AND v.version = j.version
                     WHERE j.workspace_id = ?1 AND j.journey_id = ?2",
                )
                .map_err(sql_error)?
                .query_row(params![ws, d.journey_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(sql_error)?;
            let taken = |e| match sql_error(e) {
                StoreError::Conflict(_) => StoreError::Conflict("a journey with that name"),
                other => other,
            };
            let version = match current {
                None => {
                    conn.execute(
                        "INSERT INTO journeys (workspace_id, journey_id, name, kind, enabled, version, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6)",
                        params![ws, d.journey_id, d.name, d.kind.as_str(), d.enabled, now],
                    )
                    .map_err(taken)?;
                    1
                }
                Some((version, stored)) => {
                    let same = serde_json::from_str::<serde_json::Value>(&stored).ok().as_ref() == Some(&d.definition);
                    let version = if same { version } else { version + 1 };
                    conn.execute(
                        "UPDATE journeys SET name = ?3, kind = ?4, enabled = ?5, version = ?6, updated_at = ?7
                         WHERE workspace_id = ?1 AND journey_id = ?2",
                        params![ws, d.journey_id, d.name, d.kind.as_str(), d.enabled, version, now],
                    )
                    .map_err(taken)?;
                    version
                }
            };
            conn.execute(
                "INSERT INTO journey_versions (workspace_id, journey_id, version, definition, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![ws, d.journey_id, version, definition, now],
            )
            .map_err(sql_error)?;
            journey_record(conn, ws, &d.journey_id)?
                .ok_or_else(|| StoreError::Backend("the journey just stored is missing".into()))
        })
        .await
    }

    pub(crate) async fn get_journey(&self, ws: &WorkspaceId, id: &str) -> Result<Option<JourneyRecord>> {
        let (ws, id) = (ws.clone(), id.to_owned());
        self.read(move |conn| journey_record(conn, ws.as_str(), &id)).await
    }

    pub(crate) async fn list_journeys(&self, ws: &WorkspaceId) -> Result<Vec<JourneyRecord>> {
        let ws = ws.clone();
        self.read(move |conn| {
            collect(
                conn,
                "SELECT j.journey_id, j.name, j.kind, j.enabled, j.version, v.definition, j.created_at, j.updated_at
                 FROM journeys j JOIN journey_versions v
                   ON v.workspace_id = j.workspace_id AND v.journey_id = j.journey_id AND v.version = j.version
                 WHERE j.workspace_id = ?1 ORDER BY j.name",
                [ws.as_str()],
                journey_row,
            )
        })
        .await
    }

    pub(crate) async fn journey_version(
        &self,
        ws: &WorkspaceId,
        id: &str,
        version: i64,
    ) -> Result<Option<serde_json::Value>> {
        let (ws, id) = (ws.clone(), id.to_owned());
        self.read(move |conn| {
            let text: Option<String> = conn
                .prepare_cached(
                    "SELECT definition FROM journey_versions WHERE workspace_id = ?1 AND journey_id = ?2 AND version = ?3",
                )
                .map_err(sql_error)?
                .query_row(params![ws.as_str(), id, version], |r| r.get(0))
                .optional()
                .map_err(sql_error)?;
            Ok(text.map(|t| json_col(&t)))
        })
        .await
    }

    pub(crate) async fn set_journey_enabled(
        &self,
        ws: &WorkspaceId,
        id: &str,
        enabled: bool,
        at: Timestamp,
    ) -> Result<bool> {
        let (ws, id) = (ws.clone(), id.to_owned());
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE journeys SET enabled = ?3, updated_at = ?4 WHERE workspace_id = ?1 AND journey_id = ?2",
                    params![ws.as_str(), id, enabled, ms(&at)],
                )
                .map_err(sql_error)?;
            Ok(n > 0)
        })
        .await
    }

    pub(crate) async fn start_runs(&self, ws: &WorkspaceId, starts: &[RunStart]) -> Result<Vec<bool>> {
        let (ws, starts) = (ws.clone(), starts.to_vec());
        self.write(move |conn| {
            let ws = ws.as_str();
            let mut used = conn
                .prepare_cached(
                    "SELECT 1 FROM journey_runs WHERE workspace_id = ?1 AND journey_id = ?2 AND trigger_key = ?3",
                )
                .map_err(sql_error)?;
            // The subject's latest run of the journey: whether it is active and when it ended.
            let mut last = conn
                .prepare_cached(
                    "SELECT status, ended_at FROM journey_runs INDEXED BY journey_runs_subject
                     WHERE workspace_id = ?1 AND subject_id = ?2 AND journey_id = ?3
                     ORDER BY started_at DESC LIMIT 1",
                )
                .map_err(sql_error)?;
            let mut insert = conn
                .prepare_cached(&format!(
                    "INSERT INTO journey_runs (workspace_id, {RUN_COLUMNS}, trigger_key)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
                ))
                .map_err(sql_error)?;
            let mut out = Vec::with_capacity(starts.len());
            for s in &starts {
                let r = &s.run;
                if used.exists(params![ws, r.journey_id, s.trigger_key]).map_err(sql_error)? {
                    out.push(false);
                    continue;
                }
                let previous: Option<(String, Option<i64>)> = last
                    .query_row(params![ws, r.subject_id, r.journey_id], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
                    .map_err(sql_error)?;
                let allowed = match (previous, s.reentry) {
                    (None, _) => true,
                    (Some((status, _)), _) if status == RunStatus::Active.as_str() => false,
                    (Some(_), Reentry::Never) => false,
                    (Some(_), Reentry::Always) => true,
                    (Some((_, ended)), Reentry::After(secs)) => {
                        ended.is_some_and(|e| e + secs.saturating_mul(1_000) <= ms(&r.started_at))
                    }
                };
                if allowed {
                    insert
                        .execute(params![
                            ws,
                            r.run_id,
                            r.journey_id,
                            r.version,
                            r.subject_id,
                            r.account_id,
                            r.status.as_str(),
                            r.step,
                            r.seq,
                            r.wake_at.as_ref().map(ms),
                            r.waiting,
                            r.context.to_string(),
                            ms(&r.started_at),
                            ms(&r.updated_at),
                            r.ended_at.as_ref().map(ms),
                            s.trigger_key,
                        ])
                        .map_err(sql_error)?;
                }
                out.push(allowed);
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn due_runs(&self, ws: &WorkspaceId, now: Timestamp, limit: usize) -> Result<Vec<Run>> {
        let ws = ws.clone();
        self.read(move |conn| {
            collect(
                conn,
                &format!(
                    "SELECT {RUN_COLUMNS} FROM journey_runs INDEXED BY journey_runs_due
                     WHERE workspace_id = ?1 AND status = 'active' AND wake_at IS NOT NULL AND wake_at <= ?2
                     ORDER BY wake_at LIMIT ?3"
                ),
                params![ws.as_str(), ms(&now), limit as i64],
                run_row,
            )
        })
        .await
    }

    pub(crate) async fn waiting_runs(&self, ws: &WorkspaceId, keys: &[String]) -> Result<Vec<Run>> {
        let (ws, keys) = (ws.clone(), keys.to_vec());
        self.read(move |conn| {
            let mut out = Vec::new();
            for key in &keys {
                out.extend(collect(
                    conn,
                    &format!(
                        "SELECT {RUN_COLUMNS} FROM journey_runs INDEXED BY journey_runs_waiting
                         WHERE workspace_id = ?1 AND status = 'active' AND waiting = ?2"
                    ),
                    params![ws.as_str(), key],
                    run_row,
                )?);
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn advance_runs(&self, ws: &WorkspaceId, updates: &[RunUpdate]) -> Result<Vec<bool>> {
        let (ws, updates) = (ws.clone(), updates.to_vec());
        self.write(move |conn| {
            let ws = ws.as_str();
            let mut update = conn
                .prepare_cached(
                    "UPDATE journey_runs SET status = ?4, step = ?5, seq = ?6, wake_at = ?7, waiting = ?8,
                       context = ?9, updated_at = ?10, ended_at = ?11, account_id = ?12
                     WHERE workspace_id = ?1 AND run_id = ?2 AND seq = ?3 AND status = 'active'",
                )
                .map_err(sql_error)?;
            let mut step = conn
                .prepare_cached(
                    "INSERT INTO journey_steps (workspace_id, run_id, seq, journey_id, step_id, at, outcome)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                )
                .map_err(sql_error)?;
            let mut out = Vec::with_capacity(updates.len());
            for u in &updates {
                let r = &u.run;
                let n = update
                    .execute(params![
                        ws,
                        r.run_id,
                        u.expected_seq,
                        r.status.as_str(),
                        r.step,
                        r.seq,
                        r.wake_at.as_ref().map(ms),
                        r.waiting,
                        r.context.to_string(),
                        ms(&r.updated_at),
                        r.ended_at.as_ref().map(ms),
                        r.account_id,
                    ])
                    .map_err(sql_error)?;
                if n == 0 {
                    out.push(false);
                    continue;
                }
                for s in &u.steps {
                    step.execute(params![ws, s.run_id, s.seq, s.journey_id, s.step_id, ms(&s.at), s.outcome])
                        .map_err(sql_error)?;
                }
                for m in &u.messages {
                    insert_message(conn, ws, m)?;
                }
                for t in &u.tasks {
                    insert_task(conn, ws, t)?;
                }
                out.push(true);
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn get_run(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Run>> {
        let (ws, id) = (ws.clone(), id.to_owned());
        self.read(move |conn| {
            Ok(collect(
                conn,
                &format!("SELECT {RUN_COLUMNS} FROM journey_runs WHERE workspace_id = ?1 AND run_id = ?2"),
                params![ws.as_str(), id],
                run_row,
            )?
            .pop())
        })
        .await
    }

    pub(crate) async fn list_runs(
        &self,
        ws: &WorkspaceId,
        filter: &RunFilter,
        page: &PageRequest,
    ) -> Result<Page<Run>> {
        let (ws, filter, page) = (ws.clone(), filter.clone(), page.clone());
        self.read(move |conn| {
            let (before_at, before_id) = newest_after(&page)?;
            let rows = collect(
                conn,
                &format!(
                    "SELECT {RUN_COLUMNS} FROM journey_runs
                     WHERE workspace_id = ?1
                       AND (?2 IS NULL OR journey_id = ?2) AND (?3 IS NULL OR subject_id = ?3)
                       AND (?4 IS NULL OR account_id = ?4) AND (?5 IS NULL OR status = ?5)
                       AND (started_at < ?6 OR (started_at = ?6 AND run_id < ?7))
                     ORDER BY started_at DESC, run_id DESC LIMIT ?8"
                ),
                params![
                    ws.as_str(),
                    filter.journey_id,
                    filter.subject_id,
                    filter.account_id,
                    filter.status.map(RunStatus::as_str),
                    before_at,
                    before_id,
                    page.fetch_limit() as i64
                ],
                run_row,
            )?;
            Ok(page.finish(rows, |r| Cursor(vec![ms(&r.started_at).to_string(), r.run_id.clone()])))
        })
        .await
    }

    pub(crate) async fn run_steps(&self, ws: &WorkspaceId, run_id: &str) -> Result<Vec<StepRecord>> {
        let (ws, run_id) = (ws.clone(), run_id.to_owned());
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT run_id, journey_id, seq, step_id, at, outcome FROM journey_steps
                     WHERE workspace_id = ?1 AND run_id = ?2 ORDER BY seq",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![ws.as_str(), run_id], |r| {
                    Ok(StepRecord {
                        run_id: r.get(0)?,
                        journey_id: r.get(1)?,
                        seq: r.get(2)?,
                        step_id: r.get(3)?,
                        at: time(r.get(4)?),
                        outcome: r.get(5)?,
                    })
                })
                .map_err(sql_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_error)
        })
        .await
    }

    pub(crate) async fn journey_stats(&self, ws: &WorkspaceId, id: &str) -> Result<JourneyStats> {
        let (ws, id) = (ws.clone(), id.to_owned());
        self.read(move |conn| {
            let mut stats = JourneyStats::default();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT status, count(*) FROM journey_runs INDEXED BY journey_runs_journey
                     WHERE workspace_id = ?1 AND journey_id = ?2 GROUP BY status",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![ws.as_str(), id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
                .map_err(sql_error)?;
            for row in rows {
                let (status, n) = row.map_err(sql_error)?;
                stats.entered += n;
                match RunStatus::parse(&status) {
                    Some(RunStatus::Active) => stats.active = n,
                    Some(RunStatus::Completed) => stats.completed = n,
                    Some(RunStatus::Converted) => stats.converted = n,
                    Some(RunStatus::Exited) => stats.exited = n,
                    Some(RunStatus::Failed) => stats.failed = n,
                    None => return Err(corrupt("run status", &status)),
                }
            }
            let mut stmt = conn
                .prepare_cached(
                    "SELECT step_id, outcome, count(*) FROM journey_steps INDEXED BY journey_steps_journey
                     WHERE workspace_id = ?1 AND journey_id = ?2 GROUP BY step_id, outcome ORDER BY step_id, outcome",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![ws.as_str(), id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)? as u64))
                })
                .map_err(sql_error)?;
            for row in rows {
                let (step, outcome, n) = row.map_err(sql_error)?;
                if stats.steps.last().is_none_or(|s| s.step_id != step) {
                    stats.steps.push(StepCount { step_id: step, ..StepCount::default() });
                }
                let last = stats.steps.last_mut().expect("pushed above");
                last.taken += n;
                last.outcomes.push((outcome, n));
            }
            Ok(stats)
        })
        .await
    }

    pub(crate) async fn claim_messages(
        &self,
        ws: &WorkspaceId,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>> {
        let ws = ws.clone();
        self.write(move |conn| {
            let ws = ws.as_str();
            let (now, lease) = (ms(&now), ms(&lease_until));
            // Held messages whose deliverer stopped: their attempt was interrupted.
            let expired = collect(
                conn,
                &format!(
                    "SELECT {MESSAGE_SELECT} FROM outbox INDEXED BY outbox_leased
                     WHERE workspace_id = ?1 AND status = 'sending' AND lease_until <= ?2 ORDER BY lease_until LIMIT ?3"
                ),
                params![ws, now, limit as i64],
                message_row,
            )?;
            let mut out = expired;
            for m in &out {
                conn.prepare_cached(
                    "INSERT INTO outbox_attempts (workspace_id, message_id, attempt, at, outcome, status, detail, duration_ms)
                     VALUES (?1, ?2, ?3, ?4, 'interrupted', NULL, 'the deliverer stopped during the attempt', 0)
                     ON CONFLICT DO NOTHING",
                )
                .map_err(sql_error)?
                .execute(params![ws, m.message_id, m.attempts, now])
                .map_err(sql_error)?;
            }
            if out.len() < limit {
                out.extend(collect(
                    conn,
                    &format!(
                        "SELECT {MESSAGE_SELECT} FROM outbox INDEXED BY outbox_due
                         WHERE workspace_id = ?1 AND status = 'pending' AND next_attempt_at <= ?2
                         ORDER BY next_attempt_at LIMIT ?3"
                    ),
                    params![ws, now, (limit - out.len()) as i64],
                    message_row,
                )?);
            }
            let mut take = conn
                .prepare_cached(
                    "UPDATE outbox SET status = 'sending', lease_until = ?3, attempts = attempts + 1, updated_at = ?4
                     WHERE workspace_id = ?1 AND message_id = ?2",
                )
                .map_err(sql_error)?;
            for m in &mut out {
                take.execute(params![ws, m.message_id, lease, now]).map_err(sql_error)?;
                m.status = MessageStatus::Sending;
                m.lease_until = Some(lease_until);
                m.attempts += 1;
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn update_messages(
        &self,
        ws: &WorkspaceId,
        updates: &[MessageUpdate],
        at: Timestamp,
    ) -> Result<()> {
        let (ws, updates) = (ws.clone(), updates.to_vec());
        self.write(move |conn| {
            let ws = ws.as_str();
            let mut update = conn
                .prepare_cached(
                    "UPDATE outbox SET status = ?3, attempts = ?4, next_attempt_at = ?5, last_error = ?6,
                       delivered_at = ?7, lease_until = CASE WHEN ?3 = 'sending' THEN lease_until END, updated_at = ?8
                     WHERE workspace_id = ?1 AND message_id = ?2",
                )
                .map_err(sql_error)?;
            let mut attempt = conn
                .prepare_cached(
                    "INSERT INTO outbox_attempts (workspace_id, message_id, attempt, at, outcome, status, detail, duration_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (workspace_id, message_id, attempt) DO UPDATE SET
                       at = excluded.at, outcome = excluded.outcome, status = excluded.status,
                       detail = excluded.detail, duration_ms = excluded.duration_ms",
                )
                .map_err(sql_error)?;
            for u in &updates {
                update
                    .execute(params![
                        ws,
                        u.message_id,
                        u.status.as_str(),
                        u.attempts,
                        u.next_attempt_at.as_ref().map(ms),
                        u.last_error,
                        u.delivered_at.as_ref().map(ms),
                        ms(&at),
                    ])
                    .map_err(sql_error)?;
                if let Some(a) = &u.attempt {
                    attempt
                        .execute(params![ws, a.message_id, a.attempt, ms(&a.at), a.outcome, a.status, a.detail, a.duration_ms])
                        .map_err(sql_error)?;
                }
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn get_message(&self, ws: &WorkspaceId, id: &str) -> Result<Option<OutboxMessage>> {
        let (ws, id) = (ws.clone(), id.to_owned());
        self.read(move |conn| message_by_id(conn, ws.as_str(), &id)).await
    }

    pub(crate) async fn list_messages(
        &self,
        ws: &WorkspaceId,
        filter: &MessageFilter,
        page: &PageRequest,
    ) -> Result<Page<OutboxMessage>> {
        let (ws, filter, page) = (ws.clone(), filter.clone(), page.clone());
        self.read(move |conn| {
            let (before_at, before_id) = newest_after(&page)?;
            let rows = collect(
                conn,
                &format!(
                    "SELECT {MESSAGE_SELECT} FROM outbox
                     WHERE workspace_id = ?1
                       AND (?2 IS NULL OR account_id = ?2) AND (?3 IS NULL OR journey_id = ?3)
                       AND (?4 IS NULL OR run_id = ?4) AND (?5 IS NULL OR status = ?5)
                       AND (created_at < ?6 OR (created_at = ?6 AND message_id < ?7))
                     ORDER BY created_at DESC, message_id DESC LIMIT ?8"
                ),
                params![
                    ws.as_str(),
                    filter.account_id,
                    filter.journey_id,
                    filter.run_id,
                    filter.status.map(MessageStatus::as_str),
                    before_at,
                    before_id,
                    page.fetch_limit() as i64
                ],
                message_row,
            )?;
            Ok(page.finish(rows, |m| Cursor(vec![ms(&m.created_at).to_string(), m.message_id.clone()])))
        })
        .await
    }

    pub(crate) async fn message_attempts(&self, ws: &WorkspaceId, id: &str) -> Result<Vec<Attempt>> {
        let (ws, id) = (ws.clone(), id.to_owned());
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT message_id, attempt, at, outcome, status, detail, duration_ms FROM outbox_attempts
                     WHERE workspace_id = ?1 AND message_id = ?2 ORDER BY attempt",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![ws.as_str(), id], |r| {
                    Ok(Attempt {
                        message_id: r.get(0)?,
                        attempt: r.get(1)?,
                        at: time(r.get(2)?),
                        outcome: r.get(3)?,
                        status: r.get(4)?,
                        detail: r.get(5)?,
                        duration_ms: r.get(6)?,
                    })
                })
                .map_err(sql_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_error)
        })
        .await
    }

    pub(crate) async fn replay_message(
        &self,
        ws: &WorkspaceId,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<OutboxMessage>> {
        let (ws, id) = (ws.clone(), id.to_owned());
        self.write(move |conn| {
            let ws = ws.as_str();
            conn.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_at = ?3, last_error = NULL, updated_at = ?3,
                   retry_base = attempts
                 WHERE workspace_id = ?1 AND message_id = ?2 AND status IN ('dead', 'suppressed')",
                params![ws, id, ms(&now)],
            )
            .map_err(sql_error)?;
            message_by_id(conn, ws, &id)
        })
        .await
    }

    pub(crate) async fn messages_to(
        &self,
        ws: &WorkspaceId,
        person_id: &str,
        channel: Channel,
        since: Timestamp,
    ) -> Result<u64> {
        let (ws, person_id) = (ws.clone(), person_id.to_owned());
        self.read(move |conn| {
            let n: i64 = conn
                .prepare_cached(
                    "SELECT count(*) FROM outbox INDEXED BY outbox_person
                     WHERE workspace_id = ?1 AND person_id = ?2 AND channel = ?3 AND created_at >= ?4",
                )
                .map_err(sql_error)?
                .query_row(params![ws.as_str(), person_id, channel.as_str(), ms(&since)], |r| r.get(0))
                .map_err(sql_error)?;
            Ok(n as u64)
        })
        .await
    }

    pub(crate) async fn block_endpoint(
        &self,
        ws: &WorkspaceId,
        endpoint: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<()> {
        let (ws, endpoint, reason) = (ws.clone(), endpoint.to_owned(), reason.to_owned());
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO blocked_endpoints (workspace_id, endpoint, reason, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (workspace_id, endpoint) DO NOTHING",
                params![ws.as_str(), endpoint, reason, ms(&at)],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn unblock_endpoint(&self, ws: &WorkspaceId, endpoint: &str) -> Result<bool> {
        let (ws, endpoint) = (ws.clone(), endpoint.to_owned());
        self.write(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM blocked_endpoints WHERE workspace_id = ?1 AND endpoint = ?2",
                    params![ws.as_str(), endpoint],
                )
                .map_err(sql_error)?;
            Ok(n > 0)
        })
        .await
    }

    pub(crate) async fn blocked_endpoints(&self, ws: &WorkspaceId) -> Result<Vec<(String, String, Timestamp)>> {
        let ws = ws.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT endpoint, reason, at FROM blocked_endpoints WHERE workspace_id = ?1 ORDER BY endpoint",
                )
                .map_err(sql_error)?;
            let rows =
                stmt.query_map([ws.as_str()], |r| Ok((r.get(0)?, r.get(1)?, time(r.get(2)?)))).map_err(sql_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_error)
        })
        .await
    }

    pub(crate) async fn list_tasks(
        &self,
        ws: &WorkspaceId,
        filter: &TaskFilter,
        page: &PageRequest,
    ) -> Result<Page<Task>> {
        let (ws, filter, page) = (ws.clone(), filter.clone(), page.clone());
        self.read(move |conn| {
            // Open tasks first, by due date (none last), then by newest; the cursor is the
            // sort key.
            let after = match &page.after {
                Some(c) => {
                    let p = c.parts(4)?;
                    let n = |s: &str| s.parse::<i64>().map_err(|_| StoreError::InvalidCursor);
                    Some((n(&p[0])?, n(&p[1])?, n(&p[2])?, p[3].clone()))
                }
                None => None,
            };
            let (a0, a1, a2, a3) = after.unwrap_or((i64::MIN, i64::MIN, i64::MIN, String::new()));
            let rows = collect(
                conn,
                &format!(
                    "SELECT {TASK_COLUMNS} FROM tasks
                     WHERE workspace_id = ?1
                       AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR assignee = ?3) AND (?4 IS NULL OR account_id = ?4)
                       AND (status != 'open', coalesce(due_at, 9223372036854775807), -created_at, task_id) > (?5, ?6, ?7, ?8)
                     ORDER BY status != 'open', coalesce(due_at, 9223372036854775807), -created_at, task_id LIMIT ?9"
                ),
                params![
                    ws.as_str(),
                    filter.status.map(TaskStatus::as_str),
                    filter.assignee,
                    filter.account_id,
                    a0,
                    a1,
                    a2,
                    a3,
                    page.fetch_limit() as i64
                ],
                task_row,
            )?;
            Ok(page.finish(rows, |t| {
                Cursor(vec![
                    i64::from(t.status != TaskStatus::Open).to_string(),
                    t.due_at.as_ref().map_or(i64::MAX, ms).to_string(),
                    (-ms(&t.created_at)).to_string(),
                    t.task_id.clone(),
                ])
            }))
        })
        .await
    }

    pub(crate) async fn get_task(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Task>> {
        let (ws, id) = (ws.clone(), id.to_owned());
        self.read(move |conn| task_by_id(conn, ws.as_str(), &id)).await
    }

    pub(crate) async fn insert_task(&self, ws: &WorkspaceId, task: &Task) -> Result<()> {
        let (ws, task) = (ws.clone(), task.clone());
        self.write(move |conn| insert_task(conn, ws.as_str(), &task)).await
    }

    pub(crate) async fn update_task(
        &self,
        ws: &WorkspaceId,
        id: &str,
        status: TaskStatus,
        by: &str,
        at: Timestamp,
    ) -> Result<Option<Task>> {
        let (ws, id, by) = (ws.clone(), id.to_owned(), by.to_owned());
        self.write(move |conn| {
            let ws = ws.as_str();
            let closed_by = (status != TaskStatus::Open).then_some(by);
            conn.execute(
                "UPDATE tasks SET status = ?3, closed_by = ?4, updated_at = ?5 WHERE workspace_id = ?1 AND task_id = ?2",
                params![ws, id, status.as_str(), closed_by, ms(&at)],
            )
            .map_err(sql_error)?;
            task_by_id(conn, ws, &id)
        })
        .await
    }
}
