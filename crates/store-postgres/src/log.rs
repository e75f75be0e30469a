//! The event log: reads from a cursor, and status (appends are `appends.rs`'s).
//!
//! Several processes append at once, so the log cannot be read in `seq` order. A `bigserial`
//! is drawn when the row is inserted, not when its transaction commits: transaction A can take
//! seq 10, transaction B seq 11, and B commit first. A reader that saw 11 and moved its cursor
//! there would never see 10.
//!
//! So each row also records the id of the transaction that inserted it (`tx`, from
//! `pg_current_xact_id()`), and the log is ordered by `(tx, seq)` and read only below the
//! snapshot's `xmin`: the oldest transaction id still running. Every transaction below `xmin`
//! has ended, and transaction ids are handed out in increasing order, so no row can later
//! appear below `xmin`: once a reader has passed a position, nothing new shows up behind it.
//! [`LogPosition`] carries both parts; log_status counts pending events in the same order.
//!
//! The price is that a row waits for every older transaction in the cluster, related or not,
//! to end. Those are short (an append is one statement), so when the horizon holds back rows the
//! reader can already see, [`PgStore::read_log_after`] waits briefly for it to move rather than
//! returning an incomplete batch: a processor that just appended expects to read it back.

use domain::{EventType, NewEvent, WorkspaceId};
use std::time::Duration;
use store::{LogPosition, LogStatus, LoggedEvent, Result};
use tokio::time::Instant;

use crate::{PgStore, db_error, parse_col};

/// The longest `read_log` waits for older transactions to end before it returns what is
/// settled. Appends and change sets take milliseconds, a migration a fraction of a second; a
/// transaction running longer than this (a bulk job of another application in the cluster)
/// delays processing until it ends, and is logged, but blocks no caller for longer.
pub(crate) const SETTLE_WAIT: Duration = Duration::from_secs(5);
/// The longest pause between two looks at the horizon while waiting.
pub(crate) const SETTLE_POLL_MAX: Duration = Duration::from_millis(25);

/// Whether visible rows are held back by the horizon, then a log row: position and event
/// fields, all NULL when no row is below the horizon.
type LogRow = (
    bool,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<String>,
);

impl PgStore {
    pub(crate) async fn read_log_after(
        &self,
        ws: &WorkspaceId,
        after: LogPosition,
        limit: usize,
        payloads: store::Payloads,
    ) -> Result<Vec<LoggedEvent>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let wanted: Vec<&str> = EventType::ALL.iter().filter(|k| payloads.wants(**k)).map(|k| k.as_str()).collect();
        let deadline = Instant::now() + SETTLE_WAIT;
        let mut pause = Duration::from_millis(1);
        loop {
            // The horizon and the rows come from the same statement, hence the same snapshot:
            // a transaction that ends between two statements could otherwise count as ended
            // without its rows being visible. The horizon row is always there (the events are
            // joined to it), and says whether visible rows are held back, so that one round trip
            // tells whether to wait without fetching those rows.
            let rows: Vec<LogRow> = sqlx::query_as(
                "SELECT h.held_back, e.tx, e.seq, e.message_id, e.type, e.name, e.user_id, e.anonymous_id, e.group_id,
                        e.previous_id, e.timestamp, e.received_at,
                        CASE WHEN e.type = ANY($5) THEN e.payload ELSE '' END
                 FROM (SELECT s.xmin, EXISTS (SELECT 1 FROM events x
                                              WHERE x.workspace_id = $1 AND (x.tx, x.seq) > ($2, $3) AND x.tx >= s.xmin)
                                      AS held_back
                       FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin) s) h
                 LEFT JOIN LATERAL (
                     SELECT * FROM events e
                     WHERE e.workspace_id = $1 AND (e.tx, e.seq) > ($2, $3) AND e.tx < h.xmin
                     ORDER BY e.tx, e.seq
                     LIMIT $4) e ON true
                 ORDER BY e.tx, e.seq",
            )
            .bind(ws.as_str())
            .bind(after.tx)
            .bind(after.seq)
            .bind(limit)
            .bind(&wanted)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
            let held_back = rows.first().is_some_and(|r| r.0);
            let events = rows.into_iter().filter_map(logged).collect::<Result<Vec<_>>>()?;
            if !held_back || events.len() as i64 >= limit {
                return Ok(events);
            }
            if Instant::now() >= deadline {
                tracing::warn!(workspace = %ws, "events are held back by a long-running transaction in the database");
                return Ok(events);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(SETTLE_POLL_MAX);
        }
    }

    pub(crate) async fn status(&self, ws: &WorkspaceId) -> Result<LogStatus> {
        let (tx, seq, total, pending, oldest): (i64, i64, i64, i64, Option<chrono::DateTime<chrono::Utc>>) =
            sqlx::query_as(
                "SELECT c.tx, c.seq,
                    (SELECT count(*) FROM events e WHERE e.workspace_id = $1),
                    (SELECT count(*) FROM events e WHERE e.workspace_id = $1 AND (e.tx, e.seq) > (c.tx, c.seq)),
                    (SELECT e.received_at FROM events e WHERE e.workspace_id = $1 AND (e.tx, e.seq) > (c.tx, c.seq)
                     ORDER BY e.tx, e.seq LIMIT 1)
             FROM (SELECT coalesce(max(p.tx), 0) AS tx, coalesce(max(p.seq), 0) AS seq
                   FROM processing_cursors p WHERE p.workspace_id = $1) c",
            )
            .bind(ws.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(LogStatus {
            cursor: LogPosition { tx, seq },
            total_events: total,
            pending_events: pending,
            oldest_pending_received_at: oldest,
        })
    }
}

/// The event of a row, or None for the horizon row alone.
fn logged(row: LogRow) -> Option<Result<LoggedEvent>> {
    let (
        _,
        tx,
        seq,
        message_id,
        kind,
        name,
        user_id,
        anonymous_id,
        group_id,
        previous_id,
        timestamp,
        received_at,
        payload,
    ) = row;
    let (Some(tx), Some(seq), Some(message_id), Some(kind), Some(timestamp), Some(received_at), Some(payload)) =
        (tx, seq, message_id, kind, timestamp, received_at, payload)
    else {
        return None;
    };
    Some(parse_col(&kind).map(|kind| LoggedEvent {
        position: LogPosition { tx, seq },
        event: NewEvent {
            message_id,
            kind,
            name,
            user_id,
            anonymous_id,
            group_id,
            previous_id,
            timestamp,
            received_at,
            payload,
        },
    }))
}
