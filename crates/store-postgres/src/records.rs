//! Workspaces, keys, operators, subscriptions and tickets.

use chrono::{DateTime, Utc};
use domain::{AccountId, ApiKey, Currency, KeyHash, Money, Timestamp, WorkspaceId};
use serde_json::Value;
use sqlx::AssertSqlSafe;
use store::{Operator, Result, StoreError, Subscription, Ticket, Workspace};

use crate::{PgStore, account_id, db_error, now, parse_col};

const KEY_COLUMNS: &str = "key_id, workspace_id, role, prefix, hash, created_at, revoked_at";
pub(crate) const OPERATOR_COLUMNS: &str =
    "operator_id, workspace_id, email, name, role, password_hash, created_at, disabled_at";
pub(crate) const SUBSCRIPTION_COLUMNS: &str =
    "subscription_id, account_id, plan, status, mrr_minor, currency, quantity, started_at,
    ended_at, current_period_end, cancel_at_period_end, updated_at, attributes";
pub(crate) const TICKET_COLUMNS: &str =
    "ticket_id, account_id, person_id, subject, status, priority, opened_at, first_response_at,
    resolved_at, csat, updated_at, attributes";

fn workspace_id(s: &str) -> Result<WorkspaceId> {
    WorkspaceId::parse(s).map_err(|e| StoreError::Backend(e.to_string()))
}

type KeyRow = (String, String, String, String, String, DateTime<Utc>, Option<DateTime<Utc>>);

fn to_key(row: KeyRow) -> Result<ApiKey> {
    let (key_id, ws, role, prefix, hash, created_at, revoked_at) = row;
    Ok(ApiKey {
        key_id,
        workspace_id: workspace_id(&ws)?,
        role: parse_col(&role)?,
        prefix,
        hash: KeyHash(hash),
        created_at,
        revoked_at,
    })
}

pub(crate) type OperatorRow =
    (String, String, String, String, String, Option<String>, DateTime<Utc>, Option<DateTime<Utc>>);

pub(crate) fn to_operator(row: OperatorRow) -> Result<Operator> {
    let (operator_id, ws, email, name, role, password_hash, created_at, disabled_at) = row;
    Ok(Operator {
        operator_id,
        workspace_id: workspace_id(&ws)?,
        email,
        name,
        role: parse_col(&role)?,
        password_hash,
        created_at,
        disabled_at,
    })
}

pub(crate) type SubscriptionRow = (
    String,
    String,
    Option<String>,
    String,
    i64,
    String,
    i64,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    bool,
    DateTime<Utc>,
    Value,
);

pub(crate) fn to_subscription(row: SubscriptionRow) -> Result<Subscription> {
    let (
        subscription_id,
        account,
        plan,
        status,
        mrr_minor,
        currency,
        quantity,
        started_at,
        ended_at,
        current_period_end,
        cancel,
        updated_at,
        attributes,
    ) = row;
    Ok(Subscription {
        subscription_id,
        account_id: account_id(&account)?,
        plan,
        status: parse_col(&status)?,
        mrr: Money::new(mrr_minor, Currency::parse(&currency).map_err(|e| StoreError::Backend(e.to_string()))?),
        quantity,
        started_at,
        ended_at,
        current_period_end,
        cancel_at_period_end: cancel,
        updated_at,
        attributes,
    })
}

pub(crate) type TicketRow = (
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<i16>,
    DateTime<Utc>,
    Value,
);

pub(crate) fn to_ticket(row: TicketRow) -> Result<Ticket> {
    let (
        ticket_id,
        account,
        person_id,
        subject,
        status,
        priority,
        opened_at,
        first_response_at,
        resolved_at,
        csat,
        updated_at,
        attributes,
    ) = row;
    Ok(Ticket {
        ticket_id,
        account_id: account.as_deref().map(account_id).transpose()?,
        person_id,
        subject,
        status: parse_col(&status)?,
        priority: parse_col(&priority)?,
        opened_at,
        first_response_at,
        resolved_at,
        csat,
        updated_at,
        attributes,
    })
}

impl PgStore {
    pub(crate) async fn new_workspace(&self, name: &str) -> Result<Workspace> {
        let ws = Workspace { workspace_id: WorkspaceId::generate(), name: name.to_owned(), created_at: now() };
        sqlx::query("INSERT INTO workspaces (workspace_id, name, created_at) VALUES ($1, $2, $3)")
            .bind(ws.workspace_id.as_str())
            .bind(&ws.name)
            .bind(ws.created_at)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(ws)
    }

    pub(crate) async fn workspaces(&self, id: Option<&WorkspaceId>) -> Result<Vec<Workspace>> {
        let rows: Vec<(String, String, DateTime<Utc>)> = match id {
            Some(id) => {
                sqlx::query_as("SELECT workspace_id, name, created_at FROM workspaces WHERE workspace_id = $1")
                    .bind(id.as_str())
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                sqlx::query_as(
                    "SELECT workspace_id, name, created_at FROM workspaces ORDER BY created_at, workspace_id",
                )
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(db_error)?;
        rows.into_iter()
            .map(|(id, name, created_at)| Ok(Workspace { workspace_id: workspace_id(&id)?, name, created_at }))
            .collect()
    }

    pub(crate) async fn add_key(&self, k: &ApiKey) -> Result<()> {
        sqlx::query(AssertSqlSafe(format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)")))
            .bind(&k.key_id)
            .bind(k.workspace_id.as_str())
            .bind(k.role.as_str())
            .bind(&k.prefix)
            .bind(&k.hash.0)
            .bind(k.created_at)
            .bind(k.revoked_at)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    pub(crate) async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>> {
        let row: Option<KeyRow> =
            sqlx::query_as(AssertSqlSafe(format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = $1")))
                .bind(&hash.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
        row.map(to_key).transpose()
    }

    pub(crate) async fn keys(&self, ws: &WorkspaceId) -> Result<Vec<ApiKey>> {
        let rows: Vec<KeyRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE workspace_id = $1 ORDER BY created_at, key_id"
        )))
        .bind(ws.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(to_key).collect()
    }

    pub(crate) async fn revoke(&self, ws: &WorkspaceId, key_id: &str, at: Timestamp) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $3 WHERE workspace_id = $1 AND key_id = $2 AND revoked_at IS NULL",
        )
        .bind(ws.as_str())
        .bind(key_id)
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn add_operator(&self, op: &Operator) -> Result<()> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO operators ({OPERATOR_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )))
        .bind(&op.operator_id)
        .bind(op.workspace_id.as_str())
        // Lower-cased, so that the unique (workspace, email) constraint ignores case.
        .bind(op.email.to_lowercase())
        .bind(&op.name)
        .bind(op.role.as_str())
        .bind(&op.password_hash)
        .bind(op.created_at)
        .bind(op.disabled_at)
        .execute(&self.pool)
        .await
        .map_err(|e| match db_error(e) {
            StoreError::Conflict(_) => StoreError::Conflict("an operator with that email"),
            other => other,
        })?;
        Ok(())
    }

    pub(crate) async fn operators(&self, ws: &WorkspaceId, email: Option<&str>) -> Result<Vec<Operator>> {
        let rows: Vec<OperatorRow> =
            match email {
                Some(email) => {
                    sqlx::query_as(AssertSqlSafe(format!(
                        "SELECT {OPERATOR_COLUMNS} FROM operators WHERE workspace_id = $1 AND email = $2"
                    )))
                    .bind(ws.as_str())
                    .bind(email.to_lowercase())
                    .fetch_all(&self.pool)
                    .await
                }
                None => sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT {OPERATOR_COLUMNS} FROM operators WHERE workspace_id = $1 ORDER BY created_at, operator_id"
                )))
                .bind(ws.as_str())
                .fetch_all(&self.pool)
                .await,
            }
            .map_err(db_error)?;
        rows.into_iter().map(to_operator).collect()
    }

    pub(crate) async fn put_subscription(&self, ws: &WorkspaceId, s: &Subscription) -> Result<bool> {
        // A stale update matches the conflict but not the WHERE: nothing changes, no row counts.
        let done = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO subscriptions AS t (workspace_id, {SUBSCRIPTION_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (workspace_id, subscription_id) DO UPDATE SET
               account_id = excluded.account_id, plan = excluded.plan, status = excluded.status,
               mrr_minor = excluded.mrr_minor, currency = excluded.currency, quantity = excluded.quantity,
               started_at = excluded.started_at, ended_at = excluded.ended_at,
               current_period_end = excluded.current_period_end,
               cancel_at_period_end = excluded.cancel_at_period_end, updated_at = excluded.updated_at,
               attributes = excluded.attributes
             WHERE excluded.updated_at >= t.updated_at"
        )))
        .bind(ws.as_str())
        .bind(&s.subscription_id)
        .bind(s.account_id.as_str())
        .bind(&s.plan)
        .bind(s.status.as_str())
        .bind(s.mrr.minor)
        .bind(s.mrr.currency.as_str())
        .bind(s.quantity)
        .bind(s.started_at)
        .bind(s.ended_at)
        .bind(s.current_period_end)
        .bind(s.cancel_at_period_end)
        .bind(s.updated_at)
        .bind(&s.attributes)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn subscriptions_of(&self, ws: &WorkspaceId, id: &AccountId) -> Result<Vec<Subscription>> {
        let rows: Vec<SubscriptionRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE workspace_id = $1 AND account_id = $2
             ORDER BY started_at, subscription_id"
        )))
        .bind(ws.as_str())
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(to_subscription).collect()
    }

    pub(crate) async fn put_ticket(&self, ws: &WorkspaceId, t: &Ticket) -> Result<bool> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO tickets AS t (workspace_id, {TICKET_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (workspace_id, ticket_id) DO UPDATE SET
               account_id = excluded.account_id, person_id = excluded.person_id, subject = excluded.subject,
               status = excluded.status, priority = excluded.priority, opened_at = excluded.opened_at,
               first_response_at = excluded.first_response_at, resolved_at = excluded.resolved_at,
               csat = excluded.csat, updated_at = excluded.updated_at, attributes = excluded.attributes
             WHERE excluded.updated_at >= t.updated_at"
        )))
        .bind(ws.as_str())
        .bind(&t.ticket_id)
        .bind(t.account_id.as_ref().map(|a| a.as_str()))
        .bind(&t.person_id)
        .bind(&t.subject)
        .bind(t.status.as_str())
        .bind(t.priority.as_str())
        .bind(t.opened_at)
        .bind(t.first_response_at)
        .bind(t.resolved_at)
        .bind(t.csat)
        .bind(t.updated_at)
        .bind(&t.attributes)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn tickets_of(&self, ws: &WorkspaceId, id: &AccountId) -> Result<Vec<Ticket>> {
        let rows: Vec<TicketRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE workspace_id = $1 AND account_id = $2 ORDER BY opened_at, ticket_id"
        )))
        .bind(ws.as_str())
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(to_ticket).collect()
    }
}
