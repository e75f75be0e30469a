//! The event log: appends (deduplicated by message id), reads from a cursor, status.

use domain::{NewEvent, WorkspaceId};
use rusqlite::{OptionalExtension, params};
use store::{AppendReport, LogPosition, LogStatus, LoggedEvent, Result};

use crate::{SqliteStore, ms, opt_time, parse_col, sql_error, time};

impl SqliteStore {
    pub(crate) async fn append(&self, ws: &WorkspaceId, events: &[NewEvent]) -> Result<AppendReport> {
        if events.is_empty() {
            return Ok(AppendReport::default());
        }
        let ws = ws.clone();
        // The writer thread needs owned data; events are moved in once, not cloned per field.
        let events = events.to_vec();
        self.write(move |conn| {
            let mut insert = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO events (workspace_id, message_id, type, name, user_id, anonymous_id,
                     group_id, previous_id, timestamp, received_at, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(sql_error)?;
            let mut stored = 0;
            for e in &events {
                stored += insert
                    .execute(params![
                        ws.as_str(),
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
        let ws = ws.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, message_id, type, name, user_id, anonymous_id, group_id, previous_id,
                            timestamp, received_at, payload
                     FROM events WHERE workspace_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![ws.as_str(), after.seq, limit as i64], |r| {
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
        let ws = ws.clone();
        self.read(move |conn| {
            let cursor = cursor(conn, &ws)?;
            let (total, pending, oldest): (i64, i64, Option<i64>) = conn
                .query_row(
                    "SELECT count(*), count(*) FILTER (WHERE seq > ?2),
                            (SELECT received_at FROM events WHERE workspace_id = ?1 AND seq > ?2 ORDER BY seq LIMIT 1)
                     FROM events WHERE workspace_id = ?1",
                    params![ws.as_str(), cursor.seq],
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
