//! Operators' sessions and the audit log (see `migrations/0008_operators.sql`).

use chrono::{DateTime, Utc};
use domain::{Timestamp, WorkspaceId};
use serde_json::Value;
use sqlx::AssertSqlSafe;
use store::{AuditEntry, Operator, OperatorSession, Result, SignedIn, StoreError};

use crate::records::{OPERATOR_COLUMNS, OperatorRow, to_operator};
use crate::{PgStore, db_error};

fn workspace(s: &str) -> Result<WorkspaceId> {
    WorkspaceId::parse(s).map_err(|e| StoreError::Backend(e.to_string()))
}

impl PgStore {
    pub(crate) async fn operator_by_id(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Operator>> {
        let row: Option<OperatorRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {OPERATOR_COLUMNS} FROM operators WHERE workspace_id = $1 AND operator_id = $2"
        )))
        .bind(ws.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(to_operator).transpose()
    }

    pub(crate) async fn disable_operator(&self, ws: &WorkspaceId, id: &str, at: Option<Timestamp>) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let done = sqlx::query("UPDATE operators SET disabled_at = $3 WHERE workspace_id = $1 AND operator_id = $2")
            .bind(ws.as_str())
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 1 && at.is_some() {
            end_sessions(&mut tx, ws, id).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn operator_password(&self, ws: &WorkspaceId, id: &str, hash: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let done = sqlx::query("UPDATE operators SET password_hash = $3 WHERE workspace_id = $1 AND operator_id = $2")
            .bind(ws.as_str())
            .bind(id)
            .bind(hash)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 1 {
            end_sessions(&mut tx, ws, id).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn add_session(&self, s: &OperatorSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO operator_sessions
               (token_hash, workspace_id, operator_id, csrf_token, created_at, last_seen_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&s.token_hash)
        .bind(s.workspace_id.as_str())
        .bind(&s.operator_id)
        .bind(&s.csrf_token)
        .bind(s.created_at)
        .bind(s.last_seen_at)
        .bind(s.expires_at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    pub(crate) async fn session(&self, token_hash: &str) -> Result<Option<SignedIn>> {
        let columns = OPERATOR_COLUMNS.split(", ").map(|c| format!("o.{c}")).collect::<Vec<_>>().join(", ");
        type SessionRow = (String, String, DateTime<Utc>, DateTime<Utc>, DateTime<Utc>);
        let row: Option<(OperatorRow, SessionRow)> = sqlx::query_as::<
            _,
            (
                String,
                String,
                String,
                String,
                String,
                Option<String>,
                DateTime<Utc>,
                Option<DateTime<Utc>>,
                String,
                String,
                DateTime<Utc>,
                DateTime<Utc>,
                DateTime<Utc>,
            ),
        >(AssertSqlSafe(format!(
            "SELECT {columns}, s.token_hash, s.csrf_token, s.created_at, s.last_seen_at, s.expires_at
             FROM operator_sessions s
             JOIN operators o ON o.workspace_id = s.workspace_id AND o.operator_id = s.operator_id
             WHERE s.token_hash = $1"
        )))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .map(|r| ((r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7), (r.8, r.9, r.10, r.11, r.12)));
        let Some((op, (token_hash, csrf_token, created_at, last_seen_at, expires_at))) = row else {
            return Ok(None);
        };
        let op = to_operator(op)?;
        Ok(Some(SignedIn {
            session: OperatorSession {
                token_hash,
                workspace_id: op.workspace_id.clone(),
                operator_id: op.operator_id.clone(),
                csrf_token,
                created_at,
                last_seen_at,
                expires_at,
            },
            operator: op,
        }))
    }

    pub(crate) async fn touch(&self, token_hash: &str, at: Timestamp) -> Result<()> {
        sqlx::query("UPDATE operator_sessions SET last_seen_at = $2 WHERE token_hash = $1")
            .bind(token_hash)
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    pub(crate) async fn end_session(&self, token_hash: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM operator_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn add_failure(&self, key: &str, at: Timestamp, forget_before: Timestamp) -> Result<()> {
        sqlx::query("DELETE FROM sign_in_failures WHERE at < $1")
            .bind(forget_before)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        sqlx::query("INSERT INTO sign_in_failures (key, at) VALUES ($1, $2)")
            .bind(key)
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    pub(crate) async fn failures(&self, key: &str, since: Timestamp) -> Result<(u64, Option<Timestamp>)> {
        let (n, oldest): (i64, Option<Timestamp>) =
            sqlx::query_as("SELECT count(*), min(at) FROM sign_in_failures WHERE key = $1 AND at >= $2")
                .bind(key)
                .bind(since)
                .fetch_one(&self.pool)
                .await
                .map_err(db_error)?;
        Ok((n as u64, oldest))
    }

    pub(crate) async fn clear_failures(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM sign_in_failures WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    pub(crate) async fn add_audit(&self, e: &AuditEntry) -> Result<i64> {
        let (seq,): (i64,) = sqlx::query_as(
            "INSERT INTO audit_log (workspace_id, actor, action, target, details, at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
        )
        .bind(e.workspace_id.as_str())
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.details)
        .bind(e.at)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(seq)
    }

    pub(crate) async fn audit(&self, ws: &WorkspaceId, before: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>> {
        type AuditRow = (i64, String, String, String, String, Value, DateTime<Utc>);
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT seq, workspace_id, actor, action, target, details, at FROM audit_log
             WHERE workspace_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(ws.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|(seq, ws, actor, action, target, details, at)| {
                Ok(AuditEntry { seq, workspace_id: workspace(&ws)?, actor, action, target, details, at })
            })
            .collect()
    }
}

async fn end_sessions(tx: &mut sqlx::PgConnection, ws: &WorkspaceId, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM operator_sessions WHERE workspace_id = $1 AND operator_id = $2")
        .bind(ws.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    Ok(())
}
