//! Operators' sessions and the audit log (see `migrations/0008_operators.sql`).

use domain::{Timestamp, WorkspaceId};
use rusqlite::{OptionalExtension, params};
use store::{AuditEntry, Operator, OperatorSession, Result, SignedIn, StoreError};

use crate::records::{OPERATOR_COLUMNS, operator, to_operator};
use crate::writer::Priority;
use crate::{SqliteStore, json_col, ms, sql_error, time};

fn workspace(s: &str) -> Result<WorkspaceId> {
    WorkspaceId::parse(s).map_err(|e| StoreError::Backend(e.to_string()))
}

impl SqliteStore {
    pub(crate) async fn operator_by_id(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Operator>> {
        let (ws, id) = (ws.clone(), id.to_owned());
        self.read(move |conn| {
            let row = conn
                .prepare_cached(&format!(
                    "SELECT {OPERATOR_COLUMNS} FROM operators WHERE workspace_id = ?1 AND operator_id = ?2"
                ))
                .map_err(sql_error)?
                .query_row(params![ws.as_str(), id], to_operator)
                .optional()
                .map_err(sql_error)?;
            row.map(operator).transpose()
        })
        .await
    }

    pub(crate) async fn disable_operator(&self, ws: &WorkspaceId, id: &str, at: Option<Timestamp>) -> Result<bool> {
        let (ws, id) = (ws.clone(), id.to_owned());
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE operators SET disabled_at = ?3 WHERE workspace_id = ?1 AND operator_id = ?2",
                    params![ws.as_str(), id, at.as_ref().map(ms)],
                )
                .map_err(sql_error)?;
            if n == 1 && at.is_some() {
                end_sessions(conn, &ws, &id)?;
            }
            Ok(n == 1)
        })
        .await
    }

    pub(crate) async fn operator_password(&self, ws: &WorkspaceId, id: &str, hash: &str) -> Result<bool> {
        let (ws, id, hash) = (ws.clone(), id.to_owned(), hash.to_owned());
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE operators SET password_hash = ?3 WHERE workspace_id = ?1 AND operator_id = ?2",
                    params![ws.as_str(), id, hash],
                )
                .map_err(sql_error)?;
            if n == 1 {
                end_sessions(conn, &ws, &id)?;
            }
            Ok(n == 1)
        })
        .await
    }

    pub(crate) async fn add_session(&self, s: &OperatorSession) -> Result<()> {
        let s = s.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO operator_sessions
                   (token_hash, workspace_id, operator_id, csrf_token, created_at, last_seen_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    s.token_hash,
                    s.workspace_id.as_str(),
                    s.operator_id,
                    s.csrf_token,
                    ms(&s.created_at),
                    ms(&s.last_seen_at),
                    ms(&s.expires_at)
                ],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn session(&self, token_hash: &str) -> Result<Option<SignedIn>> {
        let hash = token_hash.to_owned();
        self.read(move |conn| {
            let columns = OPERATOR_COLUMNS.split(", ").map(|c| format!("o.{c}")).collect::<Vec<_>>().join(", ");
            let row = conn
                .prepare_cached(&format!(
                    "SELECT {columns}, s.token_hash, s.csrf_token, s.created_at, s.last_seen_at, s.expires_at
                     FROM operator_sessions s
                     JOIN operators o ON o.workspace_id = s.workspace_id AND o.operator_id = s.operator_id
                     WHERE s.token_hash = ?1"
                ))
                .map_err(sql_error)?
                .query_row([hash], |r| {
                    Ok((
                        to_operator(r)?,
                        r.get::<_, String>(8)?,
                        r.get::<_, String>(9)?,
                        r.get::<_, i64>(10)?,
                        r.get::<_, i64>(11)?,
                        r.get::<_, i64>(12)?,
                    ))
                })
                .optional()
                .map_err(sql_error)?;
            let Some((op, token_hash, csrf_token, created, seen, expires)) = row else { return Ok(None) };
            let op = operator(op)?;
            Ok(Some(SignedIn {
                session: OperatorSession {
                    token_hash,
                    workspace_id: op.workspace_id.clone(),
                    operator_id: op.operator_id.clone(),
                    csrf_token,
                    created_at: time(created),
                    last_seen_at: time(seen),
                    expires_at: time(expires),
                },
                operator: op,
            }))
        })
        .await
    }

    pub(crate) async fn touch(&self, token_hash: &str, at: Timestamp) -> Result<()> {
        let hash = token_hash.to_owned();
        // Losing a touch only shortens a session's idle time: no need to wait for the disk.
        self.write_derived(Priority::Now, move |conn| {
            conn.execute(
                "UPDATE operator_sessions SET last_seen_at = ?2 WHERE token_hash = ?1",
                params![hash, ms(&at)],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn end_session(&self, token_hash: &str) -> Result<bool> {
        let hash = token_hash.to_owned();
        self.write(move |conn| {
            let n = conn.execute("DELETE FROM operator_sessions WHERE token_hash = ?1", [hash]).map_err(sql_error)?;
            Ok(n == 1)
        })
        .await
    }

    pub(crate) async fn add_failure(&self, key: &str, at: Timestamp, forget_before: Timestamp) -> Result<()> {
        let key = key.to_owned();
        self.write(move |conn| {
            conn.execute("DELETE FROM sign_in_failures WHERE at < ?1", [ms(&forget_before)]).map_err(sql_error)?;
            conn.execute("INSERT INTO sign_in_failures (key, at) VALUES (?1, ?2)", params![key, ms(&at)])
                .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn failures(&self, key: &str, since: Timestamp) -> Result<(u64, Option<Timestamp>)> {
        let key = key.to_owned();
        self.read(move |conn| {
            let (n, oldest): (i64, Option<i64>) = conn
                .prepare_cached("SELECT count(*), min(at) FROM sign_in_failures WHERE key = ?1 AND at >= ?2")
                .map_err(sql_error)?
                .query_row(params![key, ms(&since)], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sql_error)?;
            Ok((n as u64, oldest.map(time)))
        })
        .await
    }

    pub(crate) async fn clear_failures(&self, key: &str) -> Result<()> {
        let key = key.to_owned();
        self.write(move |conn| {
            conn.execute("DELETE FROM sign_in_failures WHERE key = ?1", [key]).map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn add_audit(&self, e: &AuditEntry) -> Result<i64> {
        let e = e.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO audit_log (workspace_id, actor, action, target, details, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![e.workspace_id.as_str(), e.actor, e.action, e.target, e.details.to_string(), ms(&e.at)],
            )
            .map_err(sql_error)?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    pub(crate) async fn audit(&self, ws: &WorkspaceId, before: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>> {
        let ws = ws.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, workspace_id, actor, action, target, details, at FROM audit_log
                     WHERE workspace_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![ws.as_str(), before.unwrap_or(i64::MAX), limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                })
                .map_err(sql_error)?;
            rows.map(|r| {
                let (seq, ws, actor, action, target, details, at) = r.map_err(sql_error)?;
                Ok(AuditEntry {
                    seq,
                    workspace_id: workspace(&ws)?,
                    actor,
                    action,
                    target,
                    details: json_col(&details),
                    at: time(at),
                })
            })
            .collect()
        })
        .await
    }
}

fn end_sessions(conn: &rusqlite::Connection, ws: &WorkspaceId, id: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM operator_sessions WHERE workspace_id = ?1 AND operator_id = ?2",
        params![ws.as_str(), id],
    )
    .map_err(sql_error)?;
    Ok(())
}
