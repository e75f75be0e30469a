//! Journeys, runs, the outbox and tasks (see `migrations/0005_journeys.sql`).
//!
//! Several processes step runs and deliver messages at once, so what must not race is settled
//! by the database: starts lock each journey and subject they decide on (the re-entry rule reads
//! the subject's last run), a run moves only from the transition its update expects
//! (compare-and-set on `seq`, re-checked by PostgreSQL after a concurrent update commits),
//! deliverers take messages with `FOR UPDATE SKIP LOCKED`, and effects keyed by run, step and
//! transition are inserted with `ON CONFLICT DO NOTHING`. Batches are one transaction, their
//! rows written by one statement per table from arrays.

use chrono::{DateTime, TimeDelta, Utc};
use domain::{Timestamp, WorkspaceId};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection};
use std::collections::{HashMap, HashSet};
use store::{
    Attempt, Channel, Cursor, JourneyDraft, JourneyRecord, JourneyStats, MessageFilter, MessageStatus, MessageUpdate,
    OutboxMessage, Page, PageRequest, Reentry, Result, Run, RunFilter, RunStart, RunStatus, RunUpdate, StepCount,
    StepRecord, StoreError, SubjectKind, Task, TaskFilter, TaskStatus,
};

use crate::scores::{Args, get};
use crate::{PgStore, db_error, lock_key};

/// A stored name of one of Steward's values; a failure means a corrupt row.
fn stored<T>(s: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    parse(s).ok_or_else(|| StoreError::Backend(format!("unexpected stored value {s:?}")))
}

/// A cursor part that holds a time, as microseconds.
fn cursor_time(c: &Cursor, i: usize) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(c.int(i)?).ok_or(StoreError::InvalidCursor)
}

fn name_taken(e: sqlx::Error) -> StoreError {
    match &e {
        // unique_violation: the only unique key a journey's write can break besides its id.
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            StoreError::Conflict("a journey with that name")
        }
        _ => db_error(e),
    }
}

const JOURNEY_SELECT: &str = "SELECT j.journey_id, j.name, j.kind, j.enabled, j.version, v.definition, j.created_at,
       j.updated_at
     FROM journeys j JOIN journey_versions v
       ON v.workspace_id = j.workspace_id AND v.journey_id = j.journey_id AND v.version = j.version
     WHERE j.workspace_id = $1";

fn journey(r: &PgRow) -> Result<JourneyRecord> {
    Ok(JourneyRecord {
        journey_id: get(r, 0)?,
        name: get(r, 1)?,
        kind: stored(&get::<String>(r, 2)?, SubjectKind::parse)?,
        enabled: get(r, 3)?,
        version: get(r, 4)?,
        definition: get(r, 5)?,
        created_at: get(r, 6)?,
        updated_at: get(r, 7)?,
    })
}

const RUN_COLUMNS: &str = "run_id, journey_id, version, subject_id, account_id, status, step, seq, wake_at, waiting, \
                           context, started_at, updated_at, ended_at";

fn run(r: &PgRow) -> Result<Run> {
    Ok(Run {
        run_id: get(r, 0)?,
        journey_id: get(r, 1)?,
        version: get(r, 2)?,
        subject_id: get(r, 3)?,
        account_id: get(r, 4)?,
        status: stored(&get::<String>(r, 5)?, RunStatus::parse)?,
        step: get(r, 6)?,
        seq: get(r, 7)?,
        wake_at: get(r, 8)?,
        waiting: get(r, 9)?,
        context: get(r, 10)?,
        started_at: get(r, 11)?,
        updated_at: get(r, 12)?,
        ended_at: get(r, 13)?,
    })
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

fn message(r: &PgRow) -> Result<OutboxMessage> {
    Ok(OutboxMessage {
        message_id: get(r, 0)?,
        channel: stored(&get::<String>(r, 1)?, Channel::parse)?,
        endpoint: get(r, 2)?,
        payload: get(r, 3)?,
        journey_id: get(r, 4)?,
        run_id: get(r, 5)?,
        step_id: get(r, 6)?,
        account_id: get(r, 7)?,
        person_id: get(r, 8)?,
        status: stored(&get::<String>(r, 9)?, MessageStatus::parse)?,
        attempts: get(r, 10)?,
        next_attempt_at: get(r, 11)?,
        lease_until: get(r, 12)?,
        last_error: get(r, 13)?,
        created_at: get(r, 14)?,
        updated_at: get(r, 15)?,
        delivered_at: get(r, 16)?,
        retry_base: get(r, 17)?,
    })
}

const TASK_COLUMNS: &str = "task_id, title, body, assignee, priority, due_at, status, account_id, person_id, \
                            journey_id, run_id, created_at, updated_at, closed_by";

fn task(r: &PgRow) -> Result<Task> {
    Ok(Task {
        task_id: get(r, 0)?,
        title: get(r, 1)?,
        body: get(r, 2)?,
        assignee: get(r, 3)?,
        priority: get(r, 4)?,
        due_at: get(r, 5)?,
        status: stored(&get::<String>(r, 6)?, TaskStatus::parse)?,
        account_id: get(r, 7)?,
        person_id: get(r, 8)?,
        journey_id: get(r, 9)?,
        run_id: get(r, 10)?,
        created_at: get(r, 11)?,
        updated_at: get(r, 12)?,
        closed_by: get(r, 13)?,
    })
}

type AttemptRow = (String, i64, Timestamp, String, Option<i64>, String, i64);

/// Whether a subject whose last run of the journey is `last` (active?, ended at) may start
/// another at `at`.
fn may_start(last: Option<&(bool, Option<Timestamp>)>, reentry: Reentry, at: Timestamp) -> bool {
    match (last, reentry) {
        (None, _) => true,
        (Some((true, _)), _) => false,
        (Some(_), Reentry::Never) => false,
        (Some(_), Reentry::Always) => true,
        (Some((_, ended)), Reentry::After(secs)) => ended
            .and_then(|e| TimeDelta::try_seconds(secs).and_then(|d| e.checked_add_signed(d)))
            .is_some_and(|allowed| allowed <= at),
    }
}

/// Inserts messages in order; one whose id is stored already (or came earlier) is left as it is.
async fn insert_messages(conn: &mut PgConnection, ws: &WorkspaceId, messages: &[&OutboxMessage]) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&OutboxMessage) -> Option<String>| messages.iter().map(|m| f(m)).collect::<Vec<_>>();
    let time = |f: fn(&OutboxMessage) -> Option<Timestamp>| messages.iter().map(|m| f(m)).collect::<Vec<_>>();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO outbox (workspace_id, {MESSAGE_COLUMNS})
         SELECT $1, u.* FROM UNNEST($2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[], $7::text[],
           $8::text[], $9::text[], $10::text[], $11::text[], $12::int8[], $13::timestamptz[], $14::timestamptz[],
           $15::text[], $16::timestamptz[], $17::timestamptz[], $18::timestamptz[]) AS u
         ON CONFLICT (workspace_id, message_id) DO NOTHING"
    )))
    .bind(ws.as_str())
    .bind(messages.iter().map(|m| m.message_id.as_str()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.channel.as_str()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.endpoint.as_str()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.payload.clone()).collect::<Vec<Value>>())
    .bind(col(|m| m.journey_id.clone()))
    .bind(col(|m| m.run_id.clone()))
    .bind(col(|m| m.step_id.clone()))
    .bind(col(|m| m.account_id.clone()))
    .bind(col(|m| m.person_id.clone()))
    .bind(messages.iter().map(|m| m.status.as_str()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.attempts).collect::<Vec<_>>())
    .bind(time(|m| m.next_attempt_at))
    .bind(time(|m| m.lease_until))
    .bind(col(|m| m.last_error.clone()))
    .bind(messages.iter().map(|m| m.created_at).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.updated_at).collect::<Vec<_>>())
    .bind(time(|m| m.delivered_at))
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Inserts tasks in order; one whose id is stored already (or came earlier) is left as it is.
async fn insert_tasks(conn: &mut PgConnection, ws: &WorkspaceId, tasks: &[&Task]) -> Result<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&Task) -> Option<String>| tasks.iter().map(|t| f(t)).collect::<Vec<_>>();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO tasks (workspace_id, {TASK_COLUMNS})
         SELECT $1, u.* FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[],
           $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::timestamptz[], $14::timestamptz[],
           $15::text[]) AS u
         ON CONFLICT (workspace_id, task_id) DO NOTHING"
    )))
    .bind(ws.as_str())
    .bind(tasks.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.title.as_str()).collect::<Vec<_>>())
    .bind(col(|t| t.body.clone()))
    .bind(tasks.iter().map(|t| t.assignee.as_str()).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.priority.as_str()).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.due_at).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.status.as_str()).collect::<Vec<_>>())
    .bind(col(|t| t.account_id.clone()))
    .bind(col(|t| t.person_id.clone()))
    .bind(col(|t| t.journey_id.clone()))
    .bind(col(|t| t.run_id.clone()))
    .bind(tasks.iter().map(|t| t.created_at).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.updated_at).collect::<Vec<_>>())
    .bind(col(|t| t.closed_by.clone()))
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Moves each run that is still active at its update's `expected_seq`, in one statement (so no
/// run may appear twice); returns the ids of those that moved. Rows are locked in run id order,
/// so that two processes advancing the same runs never wait on each other in a cycle; one that
/// waited finds the run moved on (PostgreSQL checks the condition again on the new row) and
/// leaves it.
async fn move_runs(conn: &mut PgConnection, ws: &WorkspaceId, mut updates: Vec<&RunUpdate>) -> Result<HashSet<String>> {
    updates.sort_unstable_by(|a, b| a.run.run_id.cmp(&b.run.run_id));
    let runs: Vec<&Run> = updates.iter().map(|u| &u.run).collect();
    let moved: Vec<String> = sqlx::query_scalar(
        "UPDATE journey_runs r SET status = u.status, step = u.step, seq = u.seq, wake_at = u.wake_at,
           waiting = u.waiting, context = u.context, updated_at = u.updated_at, ended_at = u.ended_at,
           account_id = u.account_id
         FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::text[], $6::int8[], $7::timestamptz[], $8::text[],
           $9::jsonb[], $10::timestamptz[], $11::timestamptz[], $12::text[])
           AS u (run_id, expected, status, step, seq, wake_at, waiting, context, updated_at, ended_at, account_id)
         WHERE r.workspace_id = $1 AND r.run_id = u.run_id AND r.seq = u.expected AND r.status = 'active'
         RETURNING r.run_id",
    )
    .bind(ws.as_str())
    .bind(runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>())
    .bind(updates.iter().map(|u| u.expected_seq).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.step.as_deref()).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.seq).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.wake_at).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.waiting.as_deref()).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.context.clone()).collect::<Vec<Value>>())
    .bind(runs.iter().map(|r| r.updated_at).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.ended_at).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.account_id.as_deref()).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(moved.into_iter().collect())
}

impl PgStore {
    /// A new journey is inserted as version 1; a stored one is locked, then given a new version
    /// if its definition changed, so that two processes storing it at once take turns.
    pub(crate) async fn put_journey(&self, ws: &WorkspaceId, d: &JourneyDraft, at: Timestamp) -> Result<JourneyRecord> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let created = sqlx::query(
            "INSERT INTO journeys (workspace_id, journey_id, name, kind, enabled, version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 1, $6, $6) ON CONFLICT (workspace_id, journey_id) DO NOTHING",
        )
        .bind(ws.as_str())
        .bind(&d.journey_id)
        .bind(&d.name)
        .bind(d.kind.as_str())
        .bind(d.enabled)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(name_taken)?
        .rows_affected()
            > 0;
        let version = if created {
            1
        } else {
            let (version, definition): (i64, Value) = sqlx::query_as(
                "SELECT j.version, v.definition FROM journeys j JOIN journey_versions v
                   ON v.workspace_id = j.workspace_id AND v.journey_id = j.journey_id AND v.version = j.version
                 WHERE j.workspace_id = $1 AND j.journey_id = $2 FOR UPDATE OF j",
            )
            .bind(ws.as_str())
            .bind(&d.journey_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
            let version = if definition == d.definition { version } else { version + 1 };
            sqlx::query(
                "UPDATE journeys SET name = $3, kind = $4, enabled = $5, version = $6, updated_at = $7
                 WHERE workspace_id = $1 AND journey_id = $2",
            )
            .bind(ws.as_str())
            .bind(&d.journey_id)
            .bind(&d.name)
            .bind(d.kind.as_str())
            .bind(d.enabled)
            .bind(version)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(name_taken)?;
            version
        };
        sqlx::query(
            "INSERT INTO journey_versions (workspace_id, journey_id, version, definition, created_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(ws.as_str())
        .bind(&d.journey_id)
        .bind(version)
        .bind(&d.definition)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let row = sqlx::query(AssertSqlSafe(format!("{JOURNEY_SELECT} AND j.journey_id = $2")))
            .bind(ws.as_str())
            .bind(&d.journey_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        let record = journey(&row)?;
        tx.commit().await.map_err(db_error)?;
        Ok(record)
    }

    pub(crate) async fn get_journey(&self, ws: &WorkspaceId, id: &str) -> Result<Option<JourneyRecord>> {
        let row = sqlx::query(AssertSqlSafe(format!("{JOURNEY_SELECT} AND j.journey_id = $2")))
            .bind(ws.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(journey).transpose()
    }

    pub(crate) async fn list_journeys(&self, ws: &WorkspaceId) -> Result<Vec<JourneyRecord>> {
        let rows = sqlx::query(AssertSqlSafe(format!("{JOURNEY_SELECT} ORDER BY j.name COLLATE \"C\"")))
            .bind(ws.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(journey).collect()
    }

    pub(crate) async fn journey_version(&self, ws: &WorkspaceId, id: &str, version: i64) -> Result<Option<Value>> {
        sqlx::query_scalar(
            "SELECT definition FROM journey_versions WHERE workspace_id = $1 AND journey_id = $2 AND version = $3",
        )
        .bind(ws.as_str())
        .bind(id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)
    }

    pub(crate) async fn set_journey_enabled(
        &self,
        ws: &WorkspaceId,
        id: &str,
        enabled: bool,
        at: Timestamp,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE journeys SET enabled = $3, updated_at = $4 WHERE workspace_id = $1 AND journey_id = $2",
        )
        .bind(ws.as_str())
        .bind(id)
        .bind(enabled)
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    /// One transaction: locks each journey and subject of the batch (a transaction-level
    /// advisory lock, taken in key order so that no two batches wait on each other in a cycle),
    /// reads which triggers were used and each subject's last run, decides in the batch's order
    /// as if the starts were made one after the other, and inserts the allowed runs in one
    /// statement. The unique indexes (one run per trigger, one active run per journey and
    /// subject) have the last word: a run they turn away did not start.
    pub(crate) async fn start_runs(&self, ws: &WorkspaceId, starts: &[RunStart]) -> Result<Vec<bool>> {
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let mut locks: Vec<i64> = starts
            .iter()
            .map(|s| {
                lock_key(&format!(
                    "steward.journey_runs\u{1f}{}\u{1f}{}\u{1f}{}",
                    ws.as_str(),
                    s.run.journey_id,
                    s.run.subject_id
                ))
            })
            .collect();
        locks.sort_unstable();
        locks.dedup();
        sqlx::query("SELECT pg_advisory_xact_lock(k) FROM UNNEST($1::int8[]) AS u (k)")
            .bind(&locks)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let journeys: Vec<&str> = starts.iter().map(|s| s.run.journey_id.as_str()).collect();
        let subjects: Vec<&str> = starts.iter().map(|s| s.run.subject_id.as_str()).collect();
        let triggers: Vec<&str> = starts.iter().map(|s| s.trigger_key.as_str()).collect();
        let used_rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT journey_id, trigger_key FROM journey_runs
             WHERE workspace_id = $1 AND (journey_id, trigger_key) IN (SELECT * FROM UNNEST($2::text[], $3::text[]))",
        )
        .bind(ws.as_str())
        .bind(&journeys)
        .bind(&triggers)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        let last_rows: Vec<(String, String, String, Option<Timestamp>)> = sqlx::query_as(
            "SELECT k.journey_id, k.subject_id, l.status, l.ended_at
             FROM (SELECT DISTINCT * FROM UNNEST($2::text[], $3::text[]) AS u (journey_id, subject_id)) k
             CROSS JOIN LATERAL (
               SELECT r.status, r.ended_at FROM journey_runs r
               WHERE r.workspace_id = $1 AND r.subject_id = k.subject_id AND r.journey_id = k.journey_id
               ORDER BY r.started_at DESC LIMIT 1) l",
        )
        .bind(ws.as_str())
        .bind(&journeys)
        .bind(&subjects)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        let mut used: HashSet<(String, String)> = used_rows.into_iter().collect();
        let mut last: HashMap<(String, String), (bool, Option<Timestamp>)> = last_rows
            .into_iter()
            .map(|(j, s, status, ended)| ((j, s), (status == RunStatus::Active.as_str(), ended)))
            .collect();
        let mut allowed = Vec::with_capacity(starts.len());
        for s in starts {
            let r = &s.run;
            let trigger = (r.journey_id.clone(), s.trigger_key.clone());
            let subject = (r.journey_id.clone(), r.subject_id.clone());
            let ok = !used.contains(&trigger) && may_start(last.get(&subject), s.reentry, r.started_at);
            if ok {
                used.insert(trigger);
                last.insert(subject, (r.status == RunStatus::Active, r.ended_at));
            }
            allowed.push(ok);
        }
        let runs: Vec<&RunStart> = starts.iter().zip(&allowed).filter(|(_, ok)| **ok).map(|(s, _)| s).collect();
        if runs.is_empty() {
            return Ok(allowed);
        }
        let mut inserted: HashSet<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "INSERT INTO journey_runs (workspace_id, {RUN_COLUMNS}, trigger_key)
             SELECT $1, u.* FROM UNNEST($2::text[], $3::text[], $4::int8[], $5::text[], $6::text[], $7::text[],
               $8::text[], $9::int8[], $10::timestamptz[], $11::text[], $12::jsonb[], $13::timestamptz[],
               $14::timestamptz[], $15::timestamptz[], $16::text[]) AS u
             ON CONFLICT DO NOTHING RETURNING run_id"
        )))
        .bind(ws.as_str())
        .bind(runs.iter().map(|s| s.run.run_id.as_str()).collect::<Vec<_>>())
        .bind(runs.iter().map(|s| s.run.journey_id.as_str()).collect::<Vec<_>>())
        .bind(runs.iter().map(|s| s.run.version).collect::<Vec<_>>())
        .bind(runs.iter().map(|s| s.run.subject_id.as_str()).collect::<Vec<_>>())
        .bind(runs.iter().map(|s| s.run.account_id.as_deref()).collect::<Vec<_>>())
        .bind(runs.iter().map(|s| s.run.status.as_str()).collect::<Vec<_>>())
        .bind(runs.iter().map(|s| s.run.step.as_deref()).collect::<Vec<_>>())
        .bind(runs.iter().map(|s| s.run.seq).collect::<Vec<_>>())
        .bind(runs.iter().map(|s| s.run.wake_at).collect::<Vec<_>>())
        .bind(runs.iter().map(|s| s.run.waiting.as_deref()).collect::<Vec<_>>())
        .bind(runs.iter().map(|s| s.run.context.clone()).collect::<Vec<Value>>())
        .bind(runs.iter().map(|s| s.run.started_at).collect::<Vec<_>>())
        .bind(runs.iter().map(|s| s.run.updated_at).collect::<Vec<_>>())
        .bind(runs.iter().map(|s| s.run.ended_at).collect::<Vec<_>>())
        .bind(runs.iter().map(|s| s.trigger_key.as_str()).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?
        .into_iter()
        .collect();
        tx.commit().await.map_err(db_error)?;
        Ok(starts.iter().zip(allowed).map(|(s, ok)| ok && inserted.remove(&s.run.run_id)).collect())
    }

    pub(crate) async fn due_runs(&self, ws: &WorkspaceId, now: Timestamp, limit: usize) -> Result<Vec<Run>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM journey_runs
             WHERE workspace_id = $1 AND status = 'active' AND wake_at IS NOT NULL AND wake_at <= $2
             ORDER BY wake_at LIMIT $3"
        )))
        .bind(ws.as_str())
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(run).collect()
    }

    /// By key, in the order given, then by run id.
    pub(crate) async fn waiting_runs(&self, ws: &WorkspaceId, keys: &[String]) -> Result<Vec<Run>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM UNNEST($2::text[]) WITH ORDINALITY AS k (key, n)
             JOIN journey_runs r ON r.workspace_id = $1 AND r.status = 'active' AND r.waiting = k.key
             ORDER BY k.n, r.run_id",
            RUN_COLUMNS.split(", ").map(|c| format!("r.{c}")).collect::<Vec<_>>().join(", ")
        )))
        .bind(ws.as_str())
        .bind(keys)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(run).collect()
    }

    /// One transaction: the runs move by one statement per round (a run updated twice in the
    /// batch moves again in the next round, from the state the first left), then the steps,
    /// messages and tasks of the updates that applied are inserted, one statement each.
    pub(crate) async fn advance_runs(&self, ws: &WorkspaceId, updates: &[RunUpdate]) -> Result<Vec<bool>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let mut round_of = Vec::with_capacity(updates.len());
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(updates.len());
        for u in updates {
            let n = seen.entry(u.run.run_id.as_str()).or_insert(0);
            round_of.push(*n);
            *n += 1;
        }
        let rounds = seen.values().copied().max().unwrap_or(0);
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let mut applied = vec![false; updates.len()];
        for round in 0..rounds {
            let of_round: Vec<usize> = (0..updates.len()).filter(|&i| round_of[i] == round).collect();
            let moved = move_runs(&mut tx, ws, of_round.iter().map(|&i| &updates[i]).collect()).await?;
            for i in of_round {
                applied[i] = moved.contains(&updates[i].run.run_id);
            }
        }
        let done: Vec<&RunUpdate> = updates.iter().zip(&applied).filter(|(_, a)| **a).map(|(u, _)| u).collect();
        let steps: Vec<&StepRecord> = done.iter().flat_map(|u| &u.steps).collect();
        if !steps.is_empty() {
            sqlx::query(
                "INSERT INTO journey_steps (workspace_id, run_id, seq, journey_id, step_id, at, outcome)
                 SELECT $1, u.* FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::text[], $6::timestamptz[],
                   $7::text[]) AS u
                 ON CONFLICT DO NOTHING",
            )
            .bind(ws.as_str())
            .bind(steps.iter().map(|s| s.run_id.as_str()).collect::<Vec<_>>())
            .bind(steps.iter().map(|s| s.seq).collect::<Vec<_>>())
            .bind(steps.iter().map(|s| s.journey_id.as_str()).collect::<Vec<_>>())
            .bind(steps.iter().map(|s| s.step_id.as_str()).collect::<Vec<_>>())
            .bind(steps.iter().map(|s| s.at).collect::<Vec<_>>())
            .bind(steps.iter().map(|s| s.outcome.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        let messages: Vec<&OutboxMessage> = done.iter().flat_map(|u| &u.messages).collect();
        insert_messages(&mut tx, ws, &messages).await?;
        let tasks: Vec<&Task> = done.iter().flat_map(|u| &u.tasks).collect();
        insert_tasks(&mut tx, ws, &tasks).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(applied)
    }

    pub(crate) async fn get_run(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Run>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM journey_runs WHERE workspace_id = $1 AND run_id = $2"
        )))
        .bind(ws.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(run).transpose()
    }

    pub(crate) async fn list_runs(&self, ws: &WorkspaceId, f: &RunFilter, page: &PageRequest) -> Result<Page<Run>> {
        let mut a = Args::new();
        let mut sql =
            format!("SELECT {RUN_COLUMNS} FROM journey_runs WHERE workspace_id = {}", a.arg(ws.as_str().to_owned())?);
        if let Some(id) = &f.journey_id {
            sql += &format!(" AND journey_id = {}", a.arg(id.clone())?);
        }
        if let Some(id) = &f.subject_id {
            sql += &format!(" AND subject_id = {}", a.arg(id.clone())?);
        }
        if let Some(id) = &f.account_id {
            sql += &format!(" AND account_id = {}", a.arg(id.clone())?);
        }
        if let Some(s) = f.status {
            sql += &format!(" AND status = {}", a.arg(s.as_str().to_owned())?);
        }
        if let Some(c) = &page.after {
            let at = cursor_time(c, 0)?;
            let id = c.parts(2)?[1].clone();
            sql += &format!(" AND (started_at, run_id) < ({}, {})", a.arg(at)?, a.arg(id)?);
        }
        sql += &format!(" ORDER BY started_at DESC, run_id DESC LIMIT {}", page.fetch_limit());
        let rows = sqlx::query_with(AssertSqlSafe(sql), a.args).fetch_all(&self.pool).await.map_err(db_error)?;
        let items = rows.iter().map(run).collect::<Result<Vec<_>>>()?;
        Ok(page.finish(items, |r| Cursor(vec![r.started_at.timestamp_micros().to_string(), r.run_id.clone()])))
    }

    pub(crate) async fn run_steps(&self, ws: &WorkspaceId, run_id: &str) -> Result<Vec<StepRecord>> {
        let rows: Vec<(String, String, i64, String, Timestamp, String)> = sqlx::query_as(
            "SELECT run_id, journey_id, seq, step_id, at, outcome FROM journey_steps
             WHERE workspace_id = $1 AND run_id = $2 ORDER BY seq",
        )
        .bind(ws.as_str())
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(run_id, journey_id, seq, step_id, at, outcome)| StepRecord {
                run_id,
                journey_id,
                seq,
                step_id,
                at,
                outcome,
            })
            .collect())
    }

    pub(crate) async fn journey_stats(&self, ws: &WorkspaceId, id: &str) -> Result<JourneyStats> {
        let (runs, steps) = tokio::try_join!(
            sqlx::query_as::<_, (String, i64)>(
                "SELECT status, count(*) FROM journey_runs WHERE workspace_id = $1 AND journey_id = $2 GROUP BY status",
            )
            .bind(ws.as_str())
            .bind(id)
            .fetch_all(&self.pool),
            sqlx::query_as::<_, (String, String, i64)>(
                "SELECT step_id, outcome, count(*) FROM journey_steps WHERE workspace_id = $1 AND journey_id = $2
                 GROUP BY step_id, outcome ORDER BY step_id, outcome",
            )
            .bind(ws.as_str())
            .bind(id)
            .fetch_all(&self.pool),
        )
        .map_err(db_error)?;
        let mut stats = JourneyStats::default();
        for (status, n) in runs {
            let n = n as u64;
            stats.entered += n;
            match stored(&status, RunStatus::parse)? {
                RunStatus::Active => stats.active = n,
                RunStatus::Completed => stats.completed = n,
                RunStatus::Converted => stats.converted = n,
                RunStatus::Exited => stats.exited = n,
                RunStatus::Failed => stats.failed = n,
            }
        }
        for (step, outcome, n) in steps {
            let n = n as u64;
            match stats.steps.last_mut() {
                Some(last) if last.step_id == step => {
                    last.taken += n;
                    last.outcomes.push((outcome, n));
                }
                _ => stats.steps.push(StepCount { step_id: step, taken: n, outcomes: vec![(outcome, n)] }),
            }
        }
        Ok(stats)
    }

    /// One transaction: held messages whose lease ran out first, then due ones, each taken
    /// with `FOR UPDATE SKIP LOCKED` so that deliverers on other nodes take others; the taken
    /// rows are leased, and the attempts that were interrupted recorded, by one statement.
    pub(crate) async fn claim_messages(
        &self,
        ws: &WorkspaceId,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let expired: Vec<String> = sqlx::query_scalar(
            "SELECT message_id FROM outbox WHERE workspace_id = $1 AND status = 'sending' AND lease_until <= $2
             ORDER BY lease_until LIMIT $3 FOR UPDATE SKIP LOCKED",
        )
        .bind(ws.as_str())
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        let mut ids = expired.clone();
        if ids.len() < limit {
            let due: Vec<String> = sqlx::query_scalar(
                "SELECT message_id FROM outbox WHERE workspace_id = $1 AND status = 'pending' AND next_attempt_at <= $2
                 ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED",
            )
            .bind(ws.as_str())
            .bind(now)
            .bind((limit - ids.len()) as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            ids.extend(due);
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(AssertSqlSafe(format!(
            "WITH taken AS (
                 UPDATE outbox SET status = 'sending', lease_until = $3, attempts = attempts + 1, updated_at = $4
                 WHERE workspace_id = $1 AND message_id = ANY($2)
                 RETURNING {MESSAGE_SELECT}),
             interrupted AS (
                 INSERT INTO outbox_attempts (workspace_id, message_id, attempt, at, outcome, status, detail, duration_ms)
                 SELECT $1, message_id, attempts - 1, $4, 'interrupted', NULL, 'the deliverer stopped during the attempt', 0
                 FROM taken WHERE message_id = ANY($5)
                 ON CONFLICT DO NOTHING)
             SELECT * FROM taken"
        )))
        .bind(ws.as_str())
        .bind(&ids)
        .bind(lease_until)
        .bind(now)
        .bind(&expired)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        let mut taken = rows.iter().map(message).collect::<Result<Vec<_>>>()?;
        tx.commit().await.map_err(db_error)?;
        let order: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        taken.sort_by_key(|m| order.get(m.message_id.as_str()).copied());
        Ok(taken)
    }

    /// One transaction; a message updated twice in the batch ends as the last update says, as
    /// does an attempt recorded twice.
    pub(crate) async fn update_messages(
        &self,
        ws: &WorkspaceId,
        updates: &[MessageUpdate],
        at: Timestamp,
    ) -> Result<()> {
        let mut last: HashMap<&str, &MessageUpdate> = HashMap::with_capacity(updates.len());
        let mut attempts: HashMap<(&str, i64), &Attempt> = HashMap::new();
        for u in updates {
            last.insert(&u.message_id, u);
            if let Some(a) = &u.attempt {
                attempts.insert((&a.message_id, a.attempt), a);
            }
        }
        if last.is_empty() {
            return Ok(());
        }
        // In id order, so that concurrent batches lock rows in one order.
        let mut rows: Vec<&MessageUpdate> = last.into_values().collect();
        rows.sort_unstable_by(|a, b| a.message_id.cmp(&b.message_id));
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query(
            "UPDATE outbox o SET status = u.status, attempts = u.attempts, next_attempt_at = u.next_attempt_at,
               last_error = u.last_error, delivered_at = u.delivered_at,
               lease_until = CASE WHEN u.status = 'sending' THEN o.lease_until END, updated_at = $8
             FROM UNNEST($2::text[], $3::text[], $4::int8[], $5::timestamptz[], $6::text[], $7::timestamptz[])
               AS u (message_id, status, attempts, next_attempt_at, last_error, delivered_at)
             WHERE o.workspace_id = $1 AND o.message_id = u.message_id",
        )
        .bind(ws.as_str())
        .bind(rows.iter().map(|u| u.message_id.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|u| u.status.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|u| u.attempts).collect::<Vec<_>>())
        .bind(rows.iter().map(|u| u.next_attempt_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|u| u.last_error.as_deref()).collect::<Vec<_>>())
        .bind(rows.iter().map(|u| u.delivered_at).collect::<Vec<_>>())
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if !attempts.is_empty() {
            let attempts: Vec<&Attempt> = attempts.into_values().collect();
            sqlx::query(
                "INSERT INTO outbox_attempts (workspace_id, message_id, attempt, at, outcome, status, detail, duration_ms)
                 SELECT $1, u.* FROM UNNEST($2::text[], $3::int8[], $4::timestamptz[], $5::text[], $6::int8[],
                   $7::text[], $8::int8[]) AS u
                 ON CONFLICT (workspace_id, message_id, attempt) DO UPDATE SET
                   at = excluded.at, outcome = excluded.outcome, status = excluded.status,
                   detail = excluded.detail, duration_ms = excluded.duration_ms",
            )
            .bind(ws.as_str())
            .bind(attempts.iter().map(|a| a.message_id.as_str()).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.attempt).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.at).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.outcome.as_str()).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.status).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.detail.as_str()).collect::<Vec<_>>())
            .bind(attempts.iter().map(|a| a.duration_ms).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    pub(crate) async fn get_message(&self, ws: &WorkspaceId, id: &str) -> Result<Option<OutboxMessage>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {MESSAGE_SELECT} FROM outbox WHERE workspace_id = $1 AND message_id = $2"
        )))
        .bind(ws.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(message).transpose()
    }

    pub(crate) async fn list_messages(
        &self,
        ws: &WorkspaceId,
        f: &MessageFilter,
        page: &PageRequest,
    ) -> Result<Page<OutboxMessage>> {
        let mut a = Args::new();
        let mut sql =
            format!("SELECT {MESSAGE_SELECT} FROM outbox WHERE workspace_id = {}", a.arg(ws.as_str().to_owned())?);
        if let Some(id) = &f.account_id {
            sql += &format!(" AND account_id = {}", a.arg(id.clone())?);
        }
        if let Some(id) = &f.journey_id {
            sql += &format!(" AND journey_id = {}", a.arg(id.clone())?);
        }
        if let Some(id) = &f.run_id {
            sql += &format!(" AND run_id = {}", a.arg(id.clone())?);
        }
        if let Some(s) = f.status {
            sql += &format!(" AND status = {}", a.arg(s.as_str().to_owned())?);
        }
        if let Some(c) = &page.after {
            let at = cursor_time(c, 0)?;
            let id = c.parts(2)?[1].clone();
            sql += &format!(" AND (created_at, message_id) < ({}, {})", a.arg(at)?, a.arg(id)?);
        }
        sql += &format!(" ORDER BY created_at DESC, message_id DESC LIMIT {}", page.fetch_limit());
        let rows = sqlx::query_with(AssertSqlSafe(sql), a.args).fetch_all(&self.pool).await.map_err(db_error)?;
        let items = rows.iter().map(message).collect::<Result<Vec<_>>>()?;
        Ok(page.finish(items, |m| Cursor(vec![m.created_at.timestamp_micros().to_string(), m.message_id.clone()])))
    }

    pub(crate) async fn message_attempts(&self, ws: &WorkspaceId, id: &str) -> Result<Vec<Attempt>> {
        let rows: Vec<AttemptRow> = sqlx::query_as(
            "SELECT message_id, attempt, at, outcome, status, detail, duration_ms FROM outbox_attempts
             WHERE workspace_id = $1 AND message_id = $2 ORDER BY attempt",
        )
        .bind(ws.as_str())
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(message_id, attempt, at, outcome, status, detail, duration_ms)| Attempt {
                message_id,
                attempt,
                at,
                outcome,
                status,
                detail,
                duration_ms,
            })
            .collect())
    }

    /// One statement: the message as replayed, or as it is when it was not dead or suppressed.
    pub(crate) async fn replay_message(
        &self,
        ws: &WorkspaceId,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<OutboxMessage>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "WITH replayed AS (
                 UPDATE outbox SET status = 'pending', next_attempt_at = $3, last_error = NULL, updated_at = $3,
                   retry_base = attempts
                 WHERE workspace_id = $1 AND message_id = $2 AND status IN ('dead', 'suppressed')
                 RETURNING {MESSAGE_SELECT})
             SELECT * FROM replayed
             UNION ALL
             SELECT {MESSAGE_SELECT} FROM outbox
             WHERE workspace_id = $1 AND message_id = $2 AND NOT EXISTS (SELECT 1 FROM replayed)"
        )))
        .bind(ws.as_str())
        .bind(id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(message).transpose()
    }

    pub(crate) async fn messages_to(
        &self,
        ws: &WorkspaceId,
        person_id: &str,
        channel: Channel,
        since: Timestamp,
    ) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox
             WHERE workspace_id = $1 AND person_id = $2 AND channel = $3 AND created_at >= $4",
        )
        .bind(ws.as_str())
        .bind(person_id)
        .bind(channel.as_str())
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(n as u64)
    }

    /// An endpoint blocked already keeps its first reason.
    pub(crate) async fn block_endpoint(
        &self,
        ws: &WorkspaceId,
        endpoint: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO blocked_endpoints (workspace_id, endpoint, reason, at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (workspace_id, endpoint) DO NOTHING",
        )
        .bind(ws.as_str())
        .bind(endpoint)
        .bind(reason)
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    pub(crate) async fn unblock_endpoint(&self, ws: &WorkspaceId, endpoint: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM blocked_endpoints WHERE workspace_id = $1 AND endpoint = $2")
            .bind(ws.as_str())
            .bind(endpoint)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn blocked_endpoints(&self, ws: &WorkspaceId) -> Result<Vec<(String, String, Timestamp)>> {
        sqlx::query_as("SELECT endpoint, reason, at FROM blocked_endpoints WHERE workspace_id = $1 ORDER BY endpoint")
            .bind(ws.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)
    }

    /// Open tasks first, by due date (none last), then newest; the cursor is that sort key
    /// (closed, due, created, id).
    pub(crate) async fn list_tasks(&self, ws: &WorkspaceId, f: &TaskFilter, page: &PageRequest) -> Result<Page<Task>> {
        let mut a = Args::new();
        let mut sql =
            format!("SELECT {TASK_COLUMNS} FROM tasks WHERE workspace_id = {}", a.arg(ws.as_str().to_owned())?);
        if let Some(s) = f.status {
            sql += &format!(" AND status = {}", a.arg(s.as_str().to_owned())?);
        }
        if let Some(who) = &f.assignee {
            sql += &format!(" AND assignee = {}", a.arg(who.clone())?);
        }
        if let Some(id) = &f.account_id {
            sql += &format!(" AND account_id = {}", a.arg(id.clone())?);
        }
        if let Some(c) = &page.after {
            let parts = c.parts(4)?;
            let closed = c.int(0)? != 0;
            let due = if parts[1].is_empty() { None } else { Some(cursor_time(c, 1)?) };
            let created = cursor_time(c, 2)?;
            let id = parts[3].clone();
            let (closed, due, created, id) = (a.arg(closed)?, a.arg(due)?, a.arg(created)?, a.arg(id)?);
            sql += &format!(
                " AND ((status <> 'open', coalesce(due_at, 'infinity')) > ({closed}, coalesce({due}, 'infinity'))
                   OR ((status <> 'open', coalesce(due_at, 'infinity')) = ({closed}, coalesce({due}, 'infinity'))
                       AND (created_at < {created} OR (created_at = {created} AND task_id > {id}))))"
            );
        }
        sql += &format!(
            " ORDER BY status <> 'open', coalesce(due_at, 'infinity'), created_at DESC, task_id LIMIT {}",
            page.fetch_limit()
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), a.args).fetch_all(&self.pool).await.map_err(db_error)?;
        let items = rows.iter().map(task).collect::<Result<Vec<_>>>()?;
        Ok(page.finish(items, |t| {
            Cursor(vec![
                i64::from(t.status != TaskStatus::Open).to_string(),
                t.due_at.map(|d| d.timestamp_micros().to_string()).unwrap_or_default(),
                t.created_at.timestamp_micros().to_string(),
                t.task_id.clone(),
            ])
        }))
    }

    pub(crate) async fn get_task(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Task>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE workspace_id = $1 AND task_id = $2"
        )))
        .bind(ws.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(task).transpose()
    }

    pub(crate) async fn insert_task(&self, ws: &WorkspaceId, task: &Task) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        insert_tasks(&mut conn, ws, &[task]).await
    }

    pub(crate) async fn update_task(
        &self,
        ws: &WorkspaceId,
        id: &str,
        status: TaskStatus,
        by: &str,
        at: Timestamp,
    ) -> Result<Option<Task>> {
        let closed_by = (status != TaskStatus::Open).then_some(by);
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE tasks SET status = $3, closed_by = $4, updated_at = $5 WHERE workspace_id = $1 AND task_id = $2
             RETURNING {TASK_COLUMNS}"
        )))
        .bind(ws.as_str())
        .bind(id)
        .bind(status.as_str())
        .bind(closed_by)
        .bind(at)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(task).transpose()
    }
}
