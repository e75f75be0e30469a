//! Connectors, their mirror of provider objects and their errors (see
//! `migrations/0007_connectors.sql`).

use domain::{AccountId, Timestamp, WorkspaceId};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use std::cmp::Ordering;
use store::connectors::ERRORS_KEPT;
use store::{ConnectorError, ConnectorProgress, ConnectorRecord, ObjectQuery, ProviderObject, Result, StoreError};

use crate::{SqliteStore, json_col, ms, opt_time, sql_error, time};

const CONNECTOR_COLUMNS: &str = "provider, config, secrets, enabled, created_at, updated_at, sync, last_sync_at, \
                                 records_synced, webhooks_received, errors";

fn connector_row(r: &Row<'_>) -> rusqlite::Result<ConnectorRecord> {
    Ok(ConnectorRecord {
        provider: r.get(0)?,
        config: json_col(&r.get::<_, String>(1)?),
        secrets: r.get(2)?,
        enabled: r.get(3)?,
        created_at: time(r.get(4)?),
        updated_at: time(r.get(5)?),
        sync: json_col(&r.get::<_, String>(6)?),
        last_sync_at: opt_time(r.get(7)?),
        records_synced: r.get(8)?,
        webhooks_received: r.get(9)?,
        errors: r.get(10)?,
    })
}

const OBJECT_COLUMNS: &str = "kind, object_id, parent_id, version, account_id, matched_by, label, payload, updated_at";

fn object_row(r: &Row<'_>) -> rusqlite::Result<Result<ProviderObject>> {
    let account_id = match r.get::<_, Option<String>>(4)? {
        Some(id) => match AccountId::parse(&id) {
            Ok(id) => Some(id),
            Err(e) => return Ok(Err(StoreError::Backend(e.to_string()))),
        },
        None => None,
    };
    Ok(Ok(ProviderObject {
        kind: r.get(0)?,
        object_id: r.get(1)?,
        parent_id: r.get(2)?,
        version: r.get(3)?,
        account_id,
        matched_by: r.get(5)?,
        label: r.get(6)?,
        payload: json_col(&r.get::<_, String>(7)?),
        updated_at: time(r.get(8)?),
    }))
}

fn error_row(r: &Row<'_>) -> rusqlite::Result<ConnectorError> {
    Ok(ConnectorError {
        at: time(r.get(0)?),
        stage: r.get(1)?,
        object_kind: r.get(2)?,
        object_id: r.get(3)?,
        message: r.get(4)?,
        record: r.get::<_, Option<String>>(5)?.map(|s| json_col(&s)),
    })
}

fn connector_exists(conn: &Connection, ws: &str, provider: &str) -> Result<bool> {
    conn.prepare_cached("SELECT 1 FROM connectors WHERE workspace_id = ?1 AND provider = ?2")
        .map_err(sql_error)?
        .exists(params![ws, provider])
        .map_err(sql_error)
}

/// The statement that reads the objects matching `q`, with its parameters. Only the conditions
/// given are written into it, so that each combination is planned on the index that serves it
/// (a `?n IS NULL OR ...` condition would keep the planner off every index but the key's);
/// `None` when nothing can match.
fn object_select(ws: &str, provider: &str, q: &ObjectQuery) -> Option<(String, Vec<SqlValue>)> {
    let mut sql = format!("SELECT {OBJECT_COLUMNS} FROM connector_objects WHERE workspace_id = ?1 AND provider = ?2");
    let mut args = vec![SqlValue::from(ws.to_owned()), SqlValue::from(provider.to_owned())];
    let mut condition = |column: &str, value: &str, args: &mut Vec<SqlValue>| {
        args.push(SqlValue::from(value.to_owned()));
        sql.push_str(&format!(" AND {column} = ?{}", args.len()));
    };
    if let Some(kind) = &q.kind {
        condition("kind", kind, &mut args);
    }
    if let Some(id) = &q.object_id {
        condition("object_id", id, &mut args);
    }
    if let Some(parent) = &q.parent_id {
        condition("parent_id", parent, &mut args);
    }
    if let Some(account) = &q.account_id {
        condition("account_id", account.as_str(), &mut args);
    }
    if q.unmatched {
        sql.push_str(" AND account_id IS NULL");
    }
    match (&q.after, &q.kind) {
        (None, _) => {}
        (Some((kind, id)), None) => {
            args.push(SqlValue::from(kind.clone()));
            args.push(SqlValue::from(id.clone()));
            sql.push_str(&format!(" AND (kind, object_id) > (?{}, ?{})", args.len() - 1, args.len()));
        }
        // With the kind fixed, only ids are compared: a range over (kind, id) would have the
        // planner sort all that follows `after` for each page.
        (Some((after_kind, id)), Some(kind)) => match after_kind.cmp(kind) {
            Ordering::Less => {}
            Ordering::Equal => {
                args.push(SqlValue::from(id.clone()));
                sql.push_str(&format!(" AND object_id > ?{}", args.len()));
            }
            Ordering::Greater => return None,
        },
    }
    sql.push_str(" ORDER BY kind, object_id");
    if q.limit > 0 {
        args.push(SqlValue::from(i64::try_from(q.limit).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" LIMIT ?{}", args.len()));
    }
    Some((sql, args))
}

impl SqliteStore {
    pub(crate) async fn create_connector(&self, ws: &WorkspaceId, c: &ConnectorRecord) -> Result<()> {
        let (ws, c) = (ws.clone(), c.clone());
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO connectors (workspace_id, {CONNECTOR_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))
            .map_err(sql_error)?
            .execute(params![
                ws.as_str(),
                c.provider,
                c.config.to_string(),
                c.secrets,
                c.enabled,
                ms(&c.created_at),
                ms(&c.updated_at),
                c.sync.to_string(),
                c.last_sync_at.as_ref().map(ms),
                c.records_synced,
                c.webhooks_received,
                c.errors,
            ])
            .map_err(|e| match sql_error(e) {
                StoreError::Conflict(_) => StoreError::Conflict("a connector for that provider"),
                other => other,
            })?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn update_connector(&self, ws: &WorkspaceId, c: &ConnectorRecord) -> Result<bool> {
        let (ws, c) = (ws.clone(), c.clone());
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE connectors SET config = ?3, secrets = ?4, enabled = ?5, updated_at = ?6
                     WHERE workspace_id = ?1 AND provider = ?2",
                )
                .map_err(sql_error)?
                .execute(params![
                    ws.as_str(),
                    c.provider,
                    c.config.to_string(),
                    c.secrets,
                    c.enabled,
                    ms(&c.updated_at)
                ])
                .map_err(sql_error)?;
            Ok(n > 0)
        })
        .await
    }

    pub(crate) async fn get_connector(&self, ws: &WorkspaceId, provider: &str) -> Result<Option<ConnectorRecord>> {
        let (ws, provider) = (ws.clone(), provider.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE workspace_id = ?1 AND provider = ?2"
            ))
            .map_err(sql_error)?
            .query_row(params![ws.as_str(), provider], connector_row)
            .optional()
            .map_err(sql_error)
        })
        .await
    }

    pub(crate) async fn list_connectors(&self, ws: &WorkspaceId) -> Result<Vec<ConnectorRecord>> {
        let ws = ws.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE workspace_id = ?1 ORDER BY provider"
                ))
                .map_err(sql_error)?;
            let rows = stmt.query_map([ws.as_str()], connector_row).map_err(sql_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_error)
        })
        .await
    }

    pub(crate) async fn delete_connector(&self, ws: &WorkspaceId, provider: &str) -> Result<bool> {
        let (ws, provider) = (ws.clone(), provider.to_owned());
        self.write(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM connectors WHERE workspace_id = ?1 AND provider = ?2",
                    params![ws.as_str(), provider],
                )
                .map_err(sql_error)?;
            for table in ["connector_objects", "connector_errors"] {
                conn.execute(
                    &format!("DELETE FROM {table} WHERE workspace_id = ?1 AND provider = ?2"),
                    params![ws.as_str(), provider],
                )
                .map_err(sql_error)?;
            }
            Ok(n > 0)
        })
        .await
    }

    pub(crate) async fn record_connector_progress(
        &self,
        ws: &WorkspaceId,
        provider: &str,
        p: &ConnectorProgress,
        at: Timestamp,
    ) -> Result<bool> {
        let (ws, provider, p) = (ws.clone(), provider.to_owned(), p.clone());
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE connectors SET sync = coalesce(?3, sync), last_sync_at = coalesce(?4, last_sync_at),
                       records_synced = records_synced + ?5, webhooks_received = webhooks_received + ?6,
                       updated_at = ?7
                     WHERE workspace_id = ?1 AND provider = ?2",
                )
                .map_err(sql_error)?
                .execute(params![
                    ws.as_str(),
                    provider,
                    p.sync.as_ref().map(|s| s.to_string()),
                    p.synced_at.as_ref().map(ms),
                    p.records,
                    p.webhooks,
                    ms(&at),
                ])
                .map_err(sql_error)?;
            Ok(n > 0)
        })
        .await
    }

    pub(crate) async fn mark_connector_sync_again(
        &self,
        ws: &WorkspaceId,
        provider: &str,
        at: Timestamp,
    ) -> Result<bool> {
        let (ws, provider) = (ws.clone(), provider.to_owned());
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE connectors SET sync = json_set(sync, '$.again', json('true')), updated_at = ?3
                     WHERE workspace_id = ?1 AND provider = ?2 AND json_extract(sync, '$.requested') = 1",
                )
                .map_err(sql_error)?
                .execute(params![ws.as_str(), provider, ms(&at)])
                .map_err(sql_error)?;
            Ok(n > 0)
        })
        .await
    }

    pub(crate) async fn replace_connector_secrets(
        &self,
        ws: &WorkspaceId,
        provider: &str,
        old: &str,
        new: &str,
    ) -> Result<bool> {
        let (ws, provider, old, new) = (ws.clone(), provider.to_owned(), old.to_owned(), new.to_owned());
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE connectors SET secrets = ?4 WHERE workspace_id = ?1 AND provider = ?2 AND secrets = ?3",
                )
                .map_err(sql_error)?
                .execute(params![ws.as_str(), provider, old, new])
                .map_err(sql_error)?;
            Ok(n > 0)
        })
        .await
    }

    /// Objects of a connector that does not exist are not written: a mirror outliving its
    /// connector would come back with the next one made for the provider.
    pub(crate) async fn put_provider_objects(
        &self,
        ws: &WorkspaceId,
        provider: &str,
        objects: &[ProviderObject],
    ) -> Result<Vec<bool>> {
        if objects.is_empty() {
            return Ok(Vec::new());
        }
        let (ws, provider, objects) = (ws.clone(), provider.to_owned(), objects.to_vec());
        self.write(move |conn| {
            let ws = ws.as_str();
            if !connector_exists(conn, ws, &provider)? {
                return Ok(vec![false; objects.len()]);
            }
            // An equal version replaces (a provider may send the same version corrected); an
            // object that comes without an account keeps the one it was matched to.
            let mut upsert = conn
                .prepare_cached(&format!(
                    "INSERT INTO connector_objects (workspace_id, provider, {OBJECT_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (workspace_id, provider, kind, object_id) DO UPDATE SET
                       parent_id = excluded.parent_id, version = excluded.version,
                       account_id = coalesce(excluded.account_id, account_id),
                       matched_by = CASE WHEN excluded.account_id IS NULL THEN matched_by ELSE excluded.matched_by END,
                       label = excluded.label, payload = excluded.payload, updated_at = excluded.updated_at
                     WHERE excluded.version >= version"
                ))
                .map_err(sql_error)?;
            let mut written = Vec::with_capacity(objects.len());
            for o in &objects {
                let n = upsert
                    .execute(params![
                        ws,
                        provider,
                        o.kind,
                        o.object_id,
                        o.parent_id,
                        o.version,
                        o.account_id.as_ref().map(AccountId::as_str),
                        o.matched_by,
                        o.label,
                        o.payload.to_string(),
                        ms(&o.updated_at),
                    ])
                    .map_err(sql_error)?;
                written.push(n > 0);
            }
            Ok(written)
        })
        .await
    }

    pub(crate) async fn provider_objects(
        &self,
        ws: &WorkspaceId,
        provider: &str,
        query: &ObjectQuery,
    ) -> Result<Vec<ProviderObject>> {
        let Some((sql, args)) = object_select(ws.as_str(), provider, query) else { return Ok(Vec::new()) };
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(sql_error)?;
            let rows = stmt.query_map(params_from_iter(args), object_row).map_err(sql_error)?;
            rows.map(|r| r.map_err(sql_error)?).collect()
        })
        .await
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
        let (ws, provider, kind, object_id, account, matched_by) = (
            ws.clone(),
            provider.to_owned(),
            kind.to_owned(),
            object_id.to_owned(),
            account.clone(),
            matched_by.to_owned(),
        );
        self.write(move |conn| {
            let ws = ws.as_str();
            let n = conn
                .prepare_cached(
                    "UPDATE connector_objects SET account_id = ?5, matched_by = ?6
                     WHERE workspace_id = ?1 AND provider = ?2 AND kind = ?3 AND object_id = ?4",
                )
                .map_err(sql_error)?
                .execute(params![ws, provider, kind, object_id, account.as_str(), matched_by])
                .map_err(sql_error)?;
            if n == 0 {
                return Ok(false);
            }
            conn.prepare_cached(
                "UPDATE connector_objects SET account_id = ?4, matched_by = ?5
                 WHERE workspace_id = ?1 AND provider = ?2 AND parent_id = ?3 AND account_id IS NULL",
            )
            .map_err(sql_error)?
            .execute(params![ws, provider, object_id, account.as_str(), matched_by])
            .map_err(sql_error)?;
            Ok(true)
        })
        .await
    }

    /// An error of a connector that does not exist is not recorded: nothing would count it
    /// or delete it.
    pub(crate) async fn add_connector_error(&self, ws: &WorkspaceId, provider: &str, e: &ConnectorError) -> Result<()> {
        let (ws, provider, e) = (ws.clone(), provider.to_owned(), e.clone());
        self.write(move |conn| {
            let ws = ws.as_str();
            let counted = conn
                .prepare_cached("UPDATE connectors SET errors = errors + 1 WHERE workspace_id = ?1 AND provider = ?2")
                .map_err(sql_error)?
                .execute(params![ws, provider])
                .map_err(sql_error)?;
            if counted == 0 {
                return Ok(());
            }
            conn.prepare_cached(
                "INSERT INTO connector_errors (workspace_id, provider, at, stage, object_kind, object_id, message, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(sql_error)?
            .execute(params![
                ws,
                provider,
                ms(&e.at),
                e.stage,
                e.object_kind,
                e.object_id,
                e.message,
                e.record.as_ref().map(|r| r.to_string()),
            ])
            .map_err(sql_error)?;
            conn.prepare_cached(
                "DELETE FROM connector_errors WHERE workspace_id = ?1 AND provider = ?2 AND id <= (
                   SELECT id FROM connector_errors WHERE workspace_id = ?1 AND provider = ?2
                   ORDER BY id DESC LIMIT 1 OFFSET ?3)",
            )
            .map_err(sql_error)?
            .execute(params![ws, provider, ERRORS_KEPT])
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn connector_errors(
        &self,
        ws: &WorkspaceId,
        provider: &str,
        limit: usize,
    ) -> Result<Vec<ConnectorError>> {
        let (ws, provider) = (ws.clone(), provider.to_owned());
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT at, stage, object_kind, object_id, message, record FROM connector_errors
                     WHERE workspace_id = ?1 AND provider = ?2 ORDER BY id DESC LIMIT ?3",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![ws.as_str(), provider, i64::try_from(limit).unwrap_or(i64::MAX)], error_row)
                .map_err(sql_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_error)
        })
        .await
    }
}
