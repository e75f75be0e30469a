//! The event log: appends (deduplicated by message id), reads from a cursor, status.
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

use domain::{NewEvent, WorkspaceId};
use std::time::Duration;
use store::{AppendReport, LogPosition, LogStatus, LoggedEvent, Result};
use tokio::time::Instant;

use crate::{PgStore, db_error, parse_col};

/// The longest `read_log` waits for older transactions to end before it returns what is
/// settled; a long transaction elsewhere in the cluster then delays events but blocks nothing.
const SETTLE_WAIT: Duration = Duration::from_secs(1);
/// The longest pause between two looks at the horizon while waiting.
const SETTLE_POLL_MAX: Duration = Duration::from_millis(25);

/// A log row: position, event fields, and whether it lies below the horizon.
type LogRow = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
    String,
    bool,
);

impl PgStore {
    pub(crate) async fn append(&self, ws: &WorkspaceId, events: &[NewEvent]) -> Result<AppendReport> {
        if events.is_empty() {
            return Ok(AppendReport::default());
        }
        let n = events.len();
        let (mut ids, mut kinds, mut names, mut users, mut anons) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut groups, mut previous, mut times, mut received, mut payloads) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for e in events {
            ids.push(e.message_id.as_str());
            kinds.push(e.kind.as_str());
            names.push(e.name.as_deref());
            users.push(e.user_id.as_deref());
            anons.push(e.anonymous_id.as_deref());
            groups.push(e.group_id.as_deref());
            previous.push(e.previous_id.as_deref());
            times.push(e.timestamp);
            received.push(e.received_at);
            payloads.push(e.payload.as_str());
        }
        // One statement for the whole batch: one round trip and one commit. The ordinality
        // keeps seq in batch order; a message already stored (or repeated within the batch) is
        // skipped, and the rows affected are the ones stored now.
        let done = sqlx::query(
            "INSERT INTO events (workspace_id, message_id, type, name, user_id, anonymous_id, group_id, previous_id,
                                 timestamp, received_at, payload)
             SELECT $1, m.message_id, m.type, m.name, m.user_id, m.anonymous_id, m.group_id, m.previous_id,
                    m.timestamp, m.received_at, m.payload
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                         $9::timestamptz[], $10::timestamptz[], $11::text[])
                  WITH ORDINALITY AS m (message_id, type, name, user_id, anonymous_id, group_id, previous_id,
                                        timestamp, received_at, payload, ord)
             ORDER BY m.ord
             ON CONFLICT (workspace_id, message_id) DO NOTHING",
        )
        .bind(ws.as_str())
        .bind(ids)
        .bind(kinds)
        .bind(names)
        .bind(users)
        .bind(anons)
        .bind(groups)
        .bind(previous)
        .bind(times)
        .bind(received)
        .bind(payloads)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        let stored = done.rows_affected() as usize;
        Ok(AppendReport { stored, duplicates: n - stored })
    }

    pub(crate) async fn read_log_after(&self, ws: &WorkspaceId, after: LogPosition, limit: usize) -> Result<Vec<LoggedEvent>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let deadline = Instant::now() + SETTLE_WAIT;
        let mut pause = Duration::from_millis(1);
        loop {
            // The horizon and the rows come from the same statement, hence the same snapshot:
            // a transaction that ends between two statements could otherwise count as ended
            // without its rows being visible. Rows at or above the horizon are fetched too, only
            // to learn that some are held back; they sort after every settled row, so the
            // settled ones are a prefix.
            let rows: Vec<LogRow> = sqlx::query_as(
                "SELECT e.tx, e.seq, e.message_id, e.type, e.name, e.user_id, e.anonymous_id, e.group_id, e.previous_id,
                        e.timestamp, e.received_at, e.payload, e.tx < h.xmin
                 FROM events e, (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin) h
                 WHERE e.workspace_id = $1 AND (e.tx, e.seq) > ($2, $3)
                 ORDER BY e.tx, e.seq
                 LIMIT $4",
            )
            .bind(ws.as_str())
            .bind(after.tx)
            .bind(after.seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
            let settled = rows.iter().take_while(|r| r.12).count();
            if settled == rows.len() || Instant::now() >= deadline {
                return rows.into_iter().take(settled).map(logged).collect();
            }
            eprintln!("TMPWAIT {:?} settled={settled} rows={}", pause, rows.len());
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(SETTLE_POLL_MAX);
        }
    }

    pub(crate) async fn status(&self, ws: &WorkspaceId) -> Result<LogStatus> {
        let (tx, seq, total, pending, oldest): (i64, i64, i64, i64, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
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

fn logged(row: LogRow) -> Result<LoggedEvent> {
    let (tx, seq, message_id, kind, name, user_id, anonymous_id, group_id, previous_id, timestamp, received_at, payload, _) = row;
    Ok(LoggedEvent {
        position: LogPosition { tx, seq },
        event: NewEvent {
            message_id,
            kind: parse_col(&kind)?,
            name,
            user_id,
            anonymous_id,
            group_id,
            previous_id,
            timestamp,
            received_at,
            payload,
        },
    })
}
