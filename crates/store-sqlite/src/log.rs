//! The event log: appends (deduplicated by message id), reads from a cursor, status.

use domain::{NewEvent, WorkspaceId};
use rusqlite::{OptionalExtension, params};
use store::{AppendReport, LogPosition, LogStatus, LoggedEvent, Result, StoreError};

use crate::ids::{Lookup, id_hash};
use crate::{SqliteStore, ms, opt_time, parse_col, sql_error, time};

impl SqliteStore {
    pub(crate) async fn append(&self, ws: &WorkspaceId, events: &[NewEvent]) -> Result<AppendReport> {
        if events.is_empty() {
            return Ok(AppendReport::default());
        }
        let Some(n) = self.ws_number(ws).await? else {
            return Err(StoreError::Backend(format!("no workspace {ws}")));
        };
        // Hashing happens here, off the writer thread; the events are moved in once.
        let events: Vec<(i64, NewEvent)> = events.iter().map(|e| (id_hash(&e.message_id), e.clone())).collect();
        self.writer
            .write(move |conn, ids| {
                ids.ensure_owner(conn)?;
                let mut insert = conn
                    .prepare_cached(
                        "INSERT INTO events (ws, message_id, type, name, user_id, anonymous_id,
                         group_id, previous_id, timestamp, received_at, payload)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    )
                    .map_err(sql_error)?;
                let mut lookup = Lookup::new(conn)?;
                let mut stored = 0;
                for (hash, e) in &events {
                    if ids.find(&mut lookup, n, *hash, &e.message_id)?.is_some() {
                        continue;
                    }
                    insert
                        .execute(params![
                            n,
                            e.message_id,
                            e.kind.as_str(),
                            e.name,
                            e.user_id,
                            e.anonymous_id,
                            e.group_id,
                            e.previous_id,
                            ms(&e.timestamp),
                            ms(&e.received_at),
                            e.payload,
                        ])
                        .map_err(sql_error)?;
                    ids.add(n, *hash, conn.last_insert_rowid());
                    stored += 1;
                }
                Ok(AppendReport { stored, duplicates: events.len() - stored })
            })
            .await
    }

    pub(crate) async fn read_log_after(
        &self,
        ws: &WorkspaceId,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<LoggedEvent>> {
        let n = self.ws_number(ws).await?.unwrap_or(-1);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, message_id, type, name, user_id, anonymous_id, group_id, previous_id,
                            timestamp, received_at, payload
                     FROM events WHERE ws = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![n, after.seq, limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get::<_, i64>(8)?,
                        r.get::<_, i64>(9)?,
                        r.get(10)?,
                    ))
                })
                .map_err(sql_error)?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, message_id, kind, name, user_id, anonymous_id, group_id, previous_id, ts, received, payload) =
                    row.map_err(sql_error)?;
                out.push(LoggedEvent {
                    position: LogPosition { tx: 0, seq },
                    event: NewEvent {
                        message_id,
                        kind: parse_col(kind)?,
                        name,
                        user_id,
                        anonymous_id,
                        group_id,
                        previous_id,
                        timestamp: time(ts),
                        received_at: time(received),
                        payload,
                    },
                });
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn status(&self, ws: &WorkspaceId) -> Result<LogStatus> {
        let n = self.ws_number(ws).await?.unwrap_or(-1);
        let ws = ws.clone();
        self.read(move |conn| {
            let cursor = cursor(conn, &ws)?;
            let (total, pending, oldest): (i64, i64, Option<i64>) = conn
                .query_row(
                    "SELECT count(*), count(*) FILTER (WHERE seq > ?2),
                            (SELECT received_at FROM events WHERE ws = ?1 AND seq > ?2 ORDER BY seq LIMIT 1)
                     FROM events WHERE ws = ?1",
                    params![n, cursor.seq],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .map_err(sql_error)?;
            Ok(LogStatus {
                cursor,
                total_events: total,
                pending_events: pending,
                oldest_pending_received_at: opt_time(oldest),
            })
        })
        .await
    }
}

pub(crate) fn cursor(conn: &rusqlite::Connection, ws: &WorkspaceId) -> Result<LogPosition> {
    let pos = conn
        .prepare_cached("SELECT tx, seq FROM processing_cursors WHERE workspace_id = ?1")
        .map_err(sql_error)?
        .query_row([ws.as_str()], |r| Ok(LogPosition { tx: r.get(0)?, seq: r.get(1)? }))
        .optional()
        .map_err(sql_error)?;
    Ok(pos.unwrap_or(LogPosition::ZERO))
}
