//! Connectors, their mirror of provider objects and their errors (see
//! `migrations/0007_connectors.sql`).
//!
//! Several processes may receive a provider's webhooks at once: writes of objects keep the
//! newest version by a conditional upsert, each row settled by PostgreSQL's own locking, and
//! writes that need the connector lock its row (a key share for objects, an update for errors,
//! whose trimming then takes turns per connector).

use domain::{AccountId, Timestamp, WorkspaceId};
use serde_json::Value;
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgRow;
use std::cmp::Ordering;
use std::collections::HashSet;
use store::connectors::ERRORS_KEPT;
use store::{ConnectorError, ConnectorProgress, ConnectorRecord, ObjectQuery, ProviderObject, Result, StoreError};

use crate::scores::{Args, get};
use crate::{PgStore, account_id, db_error};

const CONNECTOR_COLUMNS: &str = "provider, config, secrets, enabled, created_at, updated_at, sync, last_sync_at, \
                                 records_synced, webhooks_received, errors";

fn connector(r: &PgRow) -> Result<ConnectorRecord> {
    Ok(ConnectorRecord {
        provider: get(r, 0)?,
        config: get(r, 1)?,
        secrets: get(r, 2)?,
        enabled: get(r, 3)?,
        created_at: get(r, 4)?,
        updated_at: get(r, 5)?,
        sync: get(r, 6)?,
        last_sync_at: get(r, 7)?,
        records_synced: get(r, 8)?,
        webhooks_received: get(r, 9)?,
        errors: get(r, 10)?,
    })
}

const OBJECT_COLUMNS: &str = "kind, object_id, parent_id, version, account_id, matched_by, label, payload, updated_at";

fn object(r: &PgRow) -> Result<ProviderObject> {
    Ok(ProviderObject {
        kind: get(r, 0)?,
        object_id: get(r, 1)?,
        parent_id: get(r, 2)?,
        version: get(r, 3)?,
        account_id: get::<Option<String>>(r, 4)?.as_deref().map(account_id).transpose()?,
        matched_by: get(r, 5)?,
        label: get(r, 6)?,
        payload: get(r, 7)?,
        updated_at: get(r, 8)?,
    })
}

fn error(r: &PgRow) -> Result<ConnectorError> {
    Ok(ConnectorError {
        at: get(r, 0)?,
        stage: get(r, 1)?,
        object_kind: get(r, 2)?,
        object_id: get(r, 3)?,
        message: get(r, 4)?,
        record: get(r, 5)?,
    })
}

/// The statement that reads the objects matching `q`, with its arguments. Only the conditions
/// given are written into it, so that each combination is planned on the index that serves it;
/// `None` when nothing can match.
fn object_select(ws: &WorkspaceId, provider: &str, q: &ObjectQuery) -> Result<Option<(String, Args)>> {
    let mut a = Args::new();
    let mut sql = format!(
        "SELECT {OBJECT_COLUMNS} FROM connector_objects WHERE workspace_id = {} AND provider = {}",
        a.arg(ws.as_str().to_owned())?,
        a.arg(provider.to_owned())?
    );
    for (column, value) in [
        ("kind", &q.kind),
        ("object_id", &q.object_id),
        ("parent_id", &q.parent_id),
        ("account_id", &q.account_id.as_ref().map(|a| a.as_str().to_owned())),
    ] {
        if let Some(v) = value {
            sql += &format!(" AND {column} = {}", a.arg(v.clone())?);
        }
    }
    if q.unmatched {
        sql += " AND account_id IS NULL";
    }
    match (&q.after, &q.kind) {
        (None, _) => {}
        (Some((kind, id)), None) => {
            sql += &format!(" AND (kind, object_id) > ({}, {})", a.arg(kind.clone())?, a.arg(id.clone())?);
        }
        // With the kind fixed, only ids are compared, as in SQLite (where it matters to the plan).
        (Some((after_kind, id)), Some(kind)) => match after_kind.cmp(kind) {
            Ordering::Less => {}
            Ordering::Equal => sql += &format!(" AND object_id > {}", a.arg(id.clone())?),
            Ordering::Greater => return Ok(None),
        },
    }
    sql += " ORDER BY kind, object_id";
    if q.limit > 0 {
        sql += &format!(" LIMIT {}", q.limit);
    }
    Ok(Some((sql, a)))
}

/// What identifies an object within its connector.
fn object_key(o: &ProviderObject) -> (&str, &str) {
    (&o.kind, &o.object_id)
}

/// What an upsert of objects changes of a stored one, and when: an equal version replaces (a
/// provider may send the same version corrected), and an object that comes without an account
/// keeps the one it was matched to.
macro_rules! object_upsert {
    () => {
        "ON CONFLICT (workspace_id, provider, kind, object_id) DO UPDATE SET
           parent_id = excluded.parent_id, version = excluded.version,
           account_id = coalesce(excluded.account_id, o.account_id),
           matched_by = CASE WHEN excluded.account_id IS NULL THEN o.matched_by ELSE excluded.matched_by END,
           label = excluded.label, payload = excluded.payload, updated_at = excluded.updated_at
         WHERE excluded.version >= o.version"
    };
}

const UPSERT_ONE: &str = concat!(
    "INSERT INTO connector_objects AS o (workspace_id, provider, kind, object_id, parent_id, version, account_id,
       matched_by, label, payload, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ",
    object_upsert!()
);

/// Says which objects it wrote.
const UPSERT_ARRAYS: &str = concat!(
    "INSERT INTO connector_objects AS o (workspace_id, provider, kind, object_id, parent_id, version, account_id,
       matched_by, label, payload, updated_at)
     SELECT $1, $2, u.* FROM UNNEST($3::text[], $4::text[], $5::text[], $6::int8[], $7::text[], $8::text[],
       $9::text[], $10::jsonb[], $11::timestamptz[]) AS u ",
    object_upsert!(),
    " RETURNING o.kind, o.object_id"
);

impl PgStore {
    pub(crate) async fn create_connector(&self, ws: &WorkspaceId, c: &ConnectorRecord) -> Result<()> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO connectors (workspace_id, {CONNECTOR_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        )))
        .bind(ws.as_str())
        .bind(&c.provider)
        .bind(&c.config)
        .bind(&c.secrets)
        .bind(c.enabled)
        .bind(c.created_at)
        .bind(c.updated_at)
        .bind(&c.sync)
        .bind(c.last_sync_at)
        .bind(c.records_synced)
        .bind(c.webhooks_received)
        .bind(c.errors)
        .execute(&self.pool)
        .await
        .map_err(|e| match db_error(e) {
            StoreError::Conflict(_) => StoreError::Conflict("a connector for that provider"),
            other => other,
        })?;
        Ok(())
    }

    pub(crate) async fn update_connector(&self, ws: &WorkspaceId, c: &ConnectorRecord) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE connectors SET config = $3, secrets = $4, enabled = $5, updated_at = $6
             WHERE workspace_id = $1 AND provider = $2",
        )
        .bind(ws.as_str())
        .bind(&c.provider)
        .bind(&c.config)
        .bind(&c.secrets)
        .bind(c.enabled)
        .bind(c.updated_at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn get_connector(&self, ws: &WorkspaceId, provider: &str) -> Result<Option<ConnectorRecord>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE workspace_id = $1 AND provider = $2"
        )))
        .bind(ws.as_str())
        .bind(provider)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(connector).transpose()
    }

    pub(crate) async fn list_connectors(&self, ws: &WorkspaceId) -> Result<Vec<ConnectorRecord>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE workspace_id = $1 ORDER BY provider"
        )))
        .bind(ws.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(connector).collect()
    }

    /// Its objects and errors go with it (`ON DELETE CASCADE`).
    pub(crate) async fn delete_connector(&self, ws: &WorkspaceId, provider: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM connectors WHERE workspace_id = $1 AND provider = $2")
            .bind(ws.as_str())
            .bind(provider)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn record_connector_progress(
        &self,
        ws: &WorkspaceId,
        provider: &str,
        p: &ConnectorProgress,
        at: Timestamp,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE connectors SET sync = coalesce($3, sync), last_sync_at = coalesce($4, last_sync_at),
               records_synced = records_synced + $5, webhooks_received = webhooks_received + $6, updated_at = $7
             WHERE workspace_id = $1 AND provider = $2",
        )
        .bind(ws.as_str())
        .bind(provider)
        .bind(&p.sync)
        .bind(p.synced_at)
        .bind(p.records)
        .bind(p.webhooks)
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn mark_connector_sync_again(
        &self,
        ws: &WorkspaceId,
        provider: &str,
        at: Timestamp,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE connectors SET sync = jsonb_set(sync, '{again}', 'true'::jsonb), updated_at = $3
             WHERE workspace_id = $1 AND provider = $2 AND sync -> 'requested' = 'true'::jsonb",
        )
        .bind(ws.as_str())
        .bind(provider)
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn replace_connector_secrets(
        &self,
        ws: &WorkspaceId,
        provider: &str,
        old: &str,
        new: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE connectors SET secrets = $4 WHERE workspace_id = $1 AND provider = $2 AND secrets = $3",
        )
        .bind(ws.as_str())
        .bind(provider)
        .bind(old)
        .bind(new)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    /// One transaction, which first locks the connector's row against deletion: objects of a
    /// connector that does not exist are not written. Objects are written in key order, so
    /// that processes writing overlapping slices never wait on each other in a cycle: all in
    /// one statement over arrays, or, when the slice holds an object more than once (one
    /// statement may not write a row twice), one prepared statement per object.
    pub(crate) async fn put_provider_objects(
        &self,
        ws: &WorkspaceId,
        provider: &str,
        objects: &[ProviderObject],
    ) -> Result<Vec<bool>> {
        if objects.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let exists = sqlx::query("SELECT 1 FROM connectors WHERE workspace_id = $1 AND provider = $2 FOR KEY SHARE")
            .bind(ws.as_str())
            .bind(provider)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        if exists.is_none() {
            return Ok(vec![false; objects.len()]);
        }
        // Stable: repeats of an object keep their order, in which they are weighed.
        let mut order: Vec<usize> = (0..objects.len()).collect();
        order.sort_by_key(|&i| object_key(&objects[i]));
        let written = if order.windows(2).any(|w| object_key(&objects[w[0]]) == object_key(&objects[w[1]])) {
            let mut written = vec![false; objects.len()];
            for i in order {
                let o = &objects[i];
                let done = sqlx::query(UPSERT_ONE)
                    .bind(ws.as_str())
                    .bind(provider)
                    .bind(&o.kind)
                    .bind(&o.object_id)
                    .bind(&o.parent_id)
                    .bind(o.version)
                    .bind(o.account_id.as_ref().map(AccountId::as_str))
                    .bind(&o.matched_by)
                    .bind(&o.label)
                    .bind(&o.payload)
                    .bind(o.updated_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                written[i] = done.rows_affected() > 0;
            }
            written
        } else {
            let sorted: Vec<&ProviderObject> = order.iter().map(|&i| &objects[i]).collect();
            let text = |f: fn(&ProviderObject) -> Option<&str>| sorted.iter().map(|o| f(o)).collect::<Vec<_>>();
            let rows: Vec<(String, String)> = sqlx::query_as(UPSERT_ARRAYS)
                .bind(ws.as_str())
                .bind(provider)
                .bind(sorted.iter().map(|o| o.kind.as_str()).collect::<Vec<_>>())
                .bind(sorted.iter().map(|o| o.object_id.as_str()).collect::<Vec<_>>())
                .bind(text(|o| o.parent_id.as_deref()))
                .bind(sorted.iter().map(|o| o.version).collect::<Vec<_>>())
                .bind(text(|o| o.account_id.as_ref().map(AccountId::as_str)))
                .bind(text(|o| o.matched_by.as_deref()))
                .bind(sorted.iter().map(|o| o.label.as_str()).collect::<Vec<_>>())
                .bind(sorted.iter().map(|o| o.payload.clone()).collect::<Vec<Value>>())
                .bind(sorted.iter().map(|o| o.updated_at).collect::<Vec<_>>())
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?;
            let written: HashSet<(&str, &str)> = rows.iter().map(|(k, id)| (k.as_str(), id.as_str())).collect();
            objects.iter().map(|o| written.contains(&object_key(o))).collect()
        };
        tx.commit().await.map_err(db_error)?;
        Ok(written)
    }

    pub(crate) async fn provider_objects(
        &self,
        ws: &WorkspaceId,
        provider: &str,
        query: &ObjectQuery,
    ) -> Result<Vec<ProviderObject>> {
        let Some((sql, a)) = object_select(ws, provider, query)? else { return Ok(Vec::new()) };
        let rows = sqlx::query_with(AssertSqlSafe(sql), a.args).fetch_all(&self.pool).await.map_err(db_error)?;
        rows.iter().map(object).collect()
    }

    pub(crate) async fn link_provider_object(
        &self,
        ws: &WorkspaceId,
        provider: &str,
        kind: &str,
        object_id: &str,
        account: &AccountId,
        matched_by: &str,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let linked = sqlx::query(
            "UPDATE connector_objects SET account_id = $5, matched_by = $6
             WHERE workspace_id = $1 AND provider = $2 AND kind = $3 AND object_id = $4",
        )
        .bind(ws.as_str())
        .bind(provider)
        .bind(kind)
        .bind(object_id)
        .bind(account.as_str())
        .bind(matched_by)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected()
            > 0;
        if !linked {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE connector_objects SET account_id = $4, matched_by = $5
             WHERE workspace_id = $1 AND provider = $2 AND parent_id = $3 AND account_id IS NULL",
        )
        .bind(ws.as_str())
        .bind(provider)
        .bind(object_id)
        .bind(account.as_str())
        .bind(matched_by)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    /// Counting the error locks the connector's row, so errors of one connector are trimmed
    /// one transaction at a time. An error of a connector that does not exist is not recorded.
    pub(crate) async fn add_connector_error(&self, ws: &WorkspaceId, provider: &str, e: &ConnectorError) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let counted =
            sqlx::query("UPDATE connectors SET errors = errors + 1 WHERE workspace_id = $1 AND provider = $2")
                .bind(ws.as_str())
                .bind(provider)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected()
                > 0;
        if !counted {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO connector_errors (workspace_id, provider, at, stage, object_kind, object_id, message, record)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(ws.as_str())
        .bind(provider)
        .bind(e.at)
        .bind(&e.stage)
        .bind(&e.object_kind)
        .bind(&e.object_id)
        .bind(&e.message)
        .bind(&e.record)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "DELETE FROM connector_errors WHERE workspace_id = $1 AND provider = $2 AND id <= (
               SELECT id FROM connector_errors WHERE workspace_id = $1 AND provider = $2
               ORDER BY id DESC OFFSET $3 LIMIT 1)",
        )
        .bind(ws.as_str())
        .bind(provider)
        .bind(ERRORS_KEPT)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    pub(crate) async fn connector_errors(
        &self,
        ws: &WorkspaceId,
        provider: &str,
        limit: usize,
    ) -> Result<Vec<ConnectorError>> {
        let rows = sqlx::query(
            "SELECT at, stage, object_kind, object_id, message, record FROM connector_errors
             WHERE workspace_id = $1 AND provider = $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(ws.as_str())
        .bind(provider)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(error).collect()
    }
}
