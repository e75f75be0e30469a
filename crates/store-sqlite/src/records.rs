//! Workspaces, keys, operators, subscriptions and tickets.

use domain::{AccountId, ApiKey, Currency, KeyHash, Money, Timestamp, WorkspaceId};
use rusqlite::{Connection, OptionalExtension, Row, params};
use store::{Operator, Result, StoreError, Subscription, Ticket, Workspace};

use crate::{SqliteStore, json_col, ms, opt_time, parse_col, sql_error, time};

type KeyRow = (String, String, String, String, String, i64, Option<i64>);

fn key_row(r: &Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
}

fn to_key(row: (String, String, String, String, String, i64, Option<i64>)) -> Result<ApiKey> {
    let (key_id, ws, role, prefix, hash, created, revoked) = row;
    Ok(ApiKey {
        key_id,
        workspace_id: WorkspaceId::parse(&ws).map_err(|e| StoreError::Backend(e.to_string()))?,
        role: parse_col(role)?,
        prefix,
        hash: KeyHash(hash),
        created_at: time(created),
        revoked_at: opt_time(revoked),
    })
}

const KEY_COLUMNS: &str = "key_id, workspace_id, role, prefix, hash, created_at, revoked_at";
pub(crate) const OPERATOR_COLUMNS: &str =
    "operator_id, workspace_id, email, name, role, password_hash, created_at, disabled_at";
pub(crate) const SUBSCRIPTION_COLUMNS: &str =
    "subscription_id, account_id, plan, status, mrr_minor, currency, quantity, started_at,
    ended_at, current_period_end, cancel_at_period_end, updated_at, attributes";
pub(crate) const TICKET_COLUMNS: &str =
    "ticket_id, account_id, person_id, subject, status, priority, opened_at, first_response_at,
    resolved_at, csat, updated_at, attributes";

pub(crate) type OperatorRow = (String, String, String, String, String, Option<String>, i64, Option<i64>);

pub(crate) fn to_operator(r: &Row<'_>) -> rusqlite::Result<OperatorRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
}

pub(crate) fn operator(row: OperatorRow) -> Result<Operator> {
    let (operator_id, ws, email, name, role, password_hash, created, disabled) = row;
    Ok(Operator {
        operator_id,
        workspace_id: WorkspaceId::parse(&ws).map_err(|e| StoreError::Backend(e.to_string()))?,
        email,
        name,
        role: parse_col(role)?,
        password_hash,
        created_at: time(created),
        disabled_at: opt_time(disabled),
    })
}

fn account_id(s: String) -> Result<AccountId> {
    AccountId::parse(&s).map_err(|e| StoreError::Backend(e.to_string()))
}

pub(crate) fn subscription(r: &Row<'_>) -> rusqlite::Result<Result<Subscription>> {
    let status: String = r.get(3)?;
    let currency: String = r.get(5)?;
    let attributes: String = r.get(12)?;
    let build = || -> Result<Subscription> {
        Ok(Subscription {
            subscription_id: r.get(0).map_err(sql_error)?,
            account_id: account_id(r.get(1).map_err(sql_error)?)?,
            plan: r.get(2).map_err(sql_error)?,
            status: parse_col(status)?,
            mrr: Money::new(
                r.get(4).map_err(sql_error)?,
                Currency::parse(&currency).map_err(|e| StoreError::Backend(e.to_string()))?,
            ),
            quantity: r.get(6).map_err(sql_error)?,
            started_at: time(r.get(7).map_err(sql_error)?),
            ended_at: opt_time(r.get(8).map_err(sql_error)?),
            current_period_end: opt_time(r.get(9).map_err(sql_error)?),
            cancel_at_period_end: r.get(10).map_err(sql_error)?,
            updated_at: time(r.get(11).map_err(sql_error)?),
            attributes: json_col(&attributes),
        })
    };
    Ok(build())
}

pub(crate) fn ticket(r: &Row<'_>) -> rusqlite::Result<Result<Ticket>> {
    let status: String = r.get(4)?;
    let priority: String = r.get(5)?;
    let attributes: String = r.get(11)?;
    let build = || -> Result<Ticket> {
        Ok(Ticket {
            ticket_id: r.get(0).map_err(sql_error)?,
            account_id: r.get::<_, Option<String>>(1).map_err(sql_error)?.map(account_id).transpose()?,
            person_id: r.get(2).map_err(sql_error)?,
            subject: r.get(3).map_err(sql_error)?,
            status: parse_col(status)?,
            priority: parse_col(priority)?,
            opened_at: time(r.get(6).map_err(sql_error)?),
            first_response_at: opt_time(r.get(7).map_err(sql_error)?),
            resolved_at: opt_time(r.get(8).map_err(sql_error)?),
            csat: r.get(9).map_err(sql_error)?,
            updated_at: time(r.get(10).map_err(sql_error)?),
            attributes: json_col(&attributes),
        })
    };
    Ok(build())
}

impl SqliteStore {
    pub(crate) async fn new_workspace(&self, name: &str) -> Result<Workspace> {
        let ws = Workspace { workspace_id: WorkspaceId::generate(), name: name.to_owned(), created_at: now() };
        let row = ws.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO workspaces (workspace_id, name, created_at) VALUES (?1, ?2, ?3)",
                params![row.workspace_id.as_str(), row.name, ms(&row.created_at)],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await?;
        Ok(ws)
    }

    pub(crate) async fn workspaces(&self, id: Option<WorkspaceId>) -> Result<Vec<Workspace>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT workspace_id, name, created_at FROM workspaces WHERE ?1 IS NULL OR workspace_id = ?1 ORDER BY created_at, workspace_id")
                .map_err(sql_error)?;
            let rows = stmt
                .query_map([id.as_ref().map(|w| w.as_str())], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)))
                .map_err(sql_error)?;
            rows.map(|r| {
                let (id, name, created): (String, String, i64) = r.map_err(sql_error)?;
                Ok(Workspace {
                    workspace_id: WorkspaceId::parse(&id).map_err(|e| StoreError::Backend(e.to_string()))?,
                    name,
                    created_at: time(created),
                })
            })
            .collect()
        })
        .await
    }

    pub(crate) async fn add_key(&self, key: &ApiKey) -> Result<()> {
        let k = key.clone();
        self.write(move |conn| {
            conn.execute(
                &format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    k.key_id,
                    k.workspace_id.as_str(),
                    k.role.as_str(),
                    k.prefix,
                    k.hash.0,
                    ms(&k.created_at),
                    k.revoked_at.as_ref().map(ms)
                ],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>> {
        let hash = hash.0.clone();
        self.read(move |conn| {
            let row = conn
                .prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = ?1"))
                .map_err(sql_error)?
                .query_row([hash], key_row)
                .optional()
                .map_err(sql_error)?;
            row.map(to_key).transpose()
        })
        .await
    }

    pub(crate) async fn keys(&self, ws: &WorkspaceId) -> Result<Vec<ApiKey>> {
        let ws = ws.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE workspace_id = ?1 ORDER BY created_at, key_id"
                ))
                .map_err(sql_error)?;
            let rows = stmt.query_map([ws.as_str()], key_row).map_err(sql_error)?;
            rows.map(|r| to_key(r.map_err(sql_error)?)).collect()
        })
        .await
    }

    pub(crate) async fn revoke(&self, ws: &WorkspaceId, key_id: &str, at: Timestamp) -> Result<bool> {
        let (ws, key_id) = (ws.clone(), key_id.to_owned());
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE api_keys SET revoked_at = ?3 WHERE workspace_id = ?1 AND key_id = ?2 AND revoked_at IS NULL",
                    params![ws.as_str(), key_id, ms(&at)],
                )
                .map_err(sql_error)?;
            Ok(n == 1)
        })
        .await
    }

    pub(crate) async fn add_operator(&self, op: &Operator) -> Result<()> {
        let op = op.clone();
        self.write(move |conn| {
            conn.execute(
                &format!("INSERT INTO operators ({OPERATOR_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![
                    op.operator_id,
                    op.workspace_id.as_str(),
                    op.email.to_lowercase(),
                    op.name,
                    op.role.as_str(),
                    op.password_hash,
                    ms(&op.created_at),
                    op.disabled_at.as_ref().map(ms)
                ],
            )
            .map_err(|e| match sql_error(e) {
                StoreError::Conflict(_) => StoreError::Conflict("an operator with that email"),
                other => other,
            })?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn operators(&self, ws: &WorkspaceId, email: Option<String>) -> Result<Vec<Operator>> {
        let ws = ws.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {OPERATOR_COLUMNS} FROM operators WHERE workspace_id = ?1 AND (?2 IS NULL OR email = ?2) ORDER BY created_at, operator_id"
                ))
                .map_err(sql_error)?;
            let rows = stmt.query_map(params![ws.as_str(), email.map(|e| e.to_lowercase())], to_operator).map_err(sql_error)?;
            rows.map(|r| operator(r.map_err(sql_error)?)).collect()
        })
        .await
    }

    pub(crate) async fn put_subscription(&self, ws: &WorkspaceId, s: &Subscription) -> Result<bool> {
        let (ws, s) = (ws.clone(), s.clone());
        self.write(move |conn| {
            let n = conn
                .execute(
                    &format!(
                        "INSERT INTO subscriptions (workspace_id, {SUBSCRIPTION_COLUMNS})
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                         ON CONFLICT (workspace_id, subscription_id) DO UPDATE SET
                           account_id = excluded.account_id, plan = excluded.plan, status = excluded.status,
                           mrr_minor = excluded.mrr_minor, currency = excluded.currency, quantity = excluded.quantity,
                           started_at = excluded.started_at, ended_at = excluded.ended_at,
                           current_period_end = excluded.current_period_end,
                           cancel_at_period_end = excluded.cancel_at_period_end, updated_at = excluded.updated_at,
                           attributes = excluded.attributes
                         WHERE excluded.updated_at >= subscriptions.updated_at"
                    ),
                    params![
                        ws.as_str(),
                        s.subscription_id,
                        s.account_id.as_str(),
                        s.plan,
                        s.status.as_str(),
                        s.mrr.minor,
                        s.mrr.currency.as_str(),
                        s.quantity,
                        ms(&s.started_at),
                        s.ended_at.as_ref().map(ms),
                        s.current_period_end.as_ref().map(ms),
                        s.cancel_at_period_end,
                        ms(&s.updated_at),
                        s.attributes.to_string(),
                    ],
                )
                .map_err(sql_error)?;
            Ok(n == 1)
        })
        .await
    }

    pub(crate) async fn subscriptions_of(&self, ws: &WorkspaceId, id: &AccountId) -> Result<Vec<Subscription>> {
        let (ws, id) = (ws.clone(), id.clone());
        self.read(move |conn| subscriptions_on(conn, &ws, &id)).await
    }

    pub(crate) async fn put_ticket(&self, ws: &WorkspaceId, t: &Ticket) -> Result<bool> {
        let (ws, t) = (ws.clone(), t.clone());
        self.write(move |conn| {
            let n = conn
                .execute(
                    &format!(
                        "INSERT INTO tickets (workspace_id, {TICKET_COLUMNS})
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                         ON CONFLICT (workspace_id, ticket_id) DO UPDATE SET
                           account_id = excluded.account_id, person_id = excluded.person_id, subject = excluded.subject,
                           status = excluded.status, priority = excluded.priority, opened_at = excluded.opened_at,
                           first_response_at = excluded.first_response_at, resolved_at = excluded.resolved_at,
                           csat = excluded.csat, updated_at = excluded.updated_at, attributes = excluded.attributes
                         WHERE excluded.updated_at >= tickets.updated_at"
                    ),
                    params![
                        ws.as_str(),
                        t.ticket_id,
                        t.account_id.as_ref().map(|a| a.as_str()),
                        t.person_id,
                        t.subject,
                        t.status.as_str(),
                        t.priority.as_str(),
                        ms(&t.opened_at),
                        t.first_response_at.as_ref().map(ms),
                        t.resolved_at.as_ref().map(ms),
                        t.csat,
                        ms(&t.updated_at),
                        t.attributes.to_string(),
                    ],
                )
                .map_err(sql_error)?;
            Ok(n == 1)
        })
        .await
    }

    pub(crate) async fn tickets_of(&self, ws: &WorkspaceId, id: &AccountId) -> Result<Vec<Ticket>> {
        let (ws, id) = (ws.clone(), id.clone());
        self.read(move |conn| tickets_on(conn, &ws, &id)).await
    }
}

pub(crate) fn subscriptions_on(conn: &Connection, ws: &WorkspaceId, id: &AccountId) -> Result<Vec<Subscription>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE workspace_id = ?1 AND account_id = ?2 ORDER BY started_at, subscription_id"
        ))
        .map_err(sql_error)?;
    let rows = stmt.query_map(params![ws.as_str(), id.as_str()], subscription).map_err(sql_error)?;
    rows.map(|r| r.map_err(sql_error)?).collect()
}

pub(crate) fn tickets_on(conn: &Connection, ws: &WorkspaceId, id: &AccountId) -> Result<Vec<Ticket>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE workspace_id = ?1 AND account_id = ?2 ORDER BY opened_at, ticket_id"
        ))
        .map_err(sql_error)?;
    let rows = stmt.query_map(params![ws.as_str(), id.as_str()], ticket).map_err(sql_error)?;
    rows.map(|r| r.map_err(sql_error)?).collect()
}

/// Now, to the millisecond: what the database can hold, so a value reads back equal.
pub(crate) fn now() -> Timestamp {
    time(ms(&chrono::Utc::now()))
}
