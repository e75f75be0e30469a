//! The event log: appends (deduplicated by message id), reads from a cursor, status.

use domain::{NewEvent, WorkspaceId};
use rusqlite::{Connection, OptionalExtension, params};
use store::{AppendReport, BatchesReport, LogPosition, LogStatus, LoggedEvent, Placement, Result, StoreError};

use crate::block::{self, Decoded, EventRef};
use crate::ids::{IdHashing, Lookup, RecentIds};
use crate::writer::{Durability, Priority};
use crate::{SqliteStore, sql_error, time};

impl SqliteStore {
    pub(crate) async fn append(&self, ws: &WorkspaceId, events: &[NewEvent]) -> Result<AppendReport> {
        if events.is_empty() {
            return Ok(AppendReport::default());
        }
        let n = self.existing_ws(ws).await?;
        // Encoding and hashing happen here, on the caller's thread; the writer only checks the
        // ids and inserts one row.
        let block = Prepared::new(events, self.hashing);
        self.writer
            .write(Priority::Now, Durability::Synced, move |conn, recent| {
                let mut lookup = lookup_for(conn, recent, n, [&block.hashes[..]])?;
                Ok(block.insert(conn, recent, n, &mut lookup)?.report)
            })
            .await
    }

    /// Makes room in the memory of recent ids for `events` more, so that an import's ids
    /// are not rehashed each time the table doubles (a third of the writer's work on them).
    /// The memory is made ready off the writer, which only moves into it.
    pub(crate) async fn expect_appends(&self, ws: &WorkspaceId, events: usize) -> Result<()> {
        let n = self.existing_ws(ws).await?;
        let room = tokio::task::spawn_blocking(move || crate::ids::Room::for_ids(events))
            .await
            .map_err(|e| StoreError::Backend(format!("making room for ids: {e}")))?;
        self.writer
            .write(Priority::Now, Durability::Derived, move |conn, recent| {
                recent.ensure_owner(conn)?;
                recent.reserve(n, events, room);
                Ok(())
            })
            .await
    }

    /// Appends each batch as its own block, in order, in one transaction; says where each
    /// event went.
    pub(crate) async fn append_batches(&self, ws: &WorkspaceId, batches: &[Vec<NewEvent>]) -> Result<BatchesReport> {
        let hashing = self.hashing;
        self.append_prepared(ws, prepare_all(batches, |b| b.len(), |b| Prepared::new(b, hashing))).await
    }

    /// Like [`SqliteStore::append_batches`], for track calls in columns: each row is encoded
    /// from its fields, with no event built for it.
    pub(crate) async fn append_track_batches(
        &self,
        ws: &WorkspaceId,
        batches: &[std::sync::Arc<domain::TrackRows>],
    ) -> Result<BatchesReport> {
        let hashing = self.hashing;
        self.append_prepared(ws, prepare_all(batches, |b| b.len(), |b| Prepared::of_tracks(b, hashing))).await
    }

    async fn append_prepared(&self, ws: &WorkspaceId, blocks: Vec<Prepared>) -> Result<BatchesReport> {
        let n = if blocks.is_empty() { self.ws_number(ws).await?.unwrap_or(-1) } else { self.existing_ws(ws).await? };
        self.writer
            .write(Priority::Now, Durability::Synced, move |conn, recent| {
                // The one writer orders the log: what this transaction appends follows the
                // workspace's last event directly.
                let last: i64 = conn
                    .prepare_cached("SELECT coalesce(max(last_seq), 0) FROM event_blocks WHERE ws = ?1")
                    .map_err(sql_error)?
                    .query_row([n], |r| r.get(0))
                    .map_err(sql_error)?;
                let mut report = AppendReport::default();
                let mut positions = Vec::with_capacity(blocks.iter().map(|b| b.hashes.len()).sum());
                let mut lookup = lookup_for(conn, recent, n, blocks.iter().map(|b| &b.hashes[..]))?;
                for block in blocks {
                    let placed = block.insert(conn, recent, n, &mut lookup)?;
                    report.stored += placed.report.stored;
                    report.duplicates += placed.report.duplicates;
                    let mut seq = placed.first_seq;
                    positions.extend(placed.kept.into_iter().map(|kept| {
                        kept.then(|| {
                            seq += 1;
                            LogPosition { tx: 0, seq: seq - 1 }
                        })
                    }));
                }
                let after = LogPosition { tx: 0, seq: last };
                Ok(BatchesReport { report, placement: Some(Placement { after, positions }) })
            })
            .await
    }

    async fn existing_ws(&self, ws: &WorkspaceId) -> Result<i64> {
        self.ws_number(ws).await?.ok_or_else(|| StoreError::Backend(format!("no workspace {ws}")))
    }

    pub(crate) async fn read_log_after(
        &self,
        ws: &WorkspaceId,
        after: LogPosition,
        limit: usize,
        payloads: store::Payloads,
    ) -> Result<Vec<LoggedEvent>> {
        let n = self.ws_number(ws).await?.unwrap_or(-1);
        self.read(move |conn| {
            let mut out = Vec::new();
            scan_blocks(conn, n, after.seq, |first_seq, block| {
                for (i, mut e) in block.iter().enumerate() {
                    let seq = first_seq + i as i64;
                    if seq > after.seq && out.len() < limit {
                        if !payloads.wants(e.kind) {
                            e.payload = block::Payload::Whole("");
                        }
                        out.push(LoggedEvent { position: LogPosition { tx: 0, seq }, event: e.to_owned() });
                    }
                }
                Ok(out.len() < limit)
            })?;
            Ok(out)
        })
        .await
    }

    pub(crate) async fn status(&self, ws: &WorkspaceId) -> Result<LogStatus> {
        let n = self.ws_number(ws).await?.unwrap_or(-1);
        let ws = ws.clone();
        self.read(move |conn| {
            let cursor = cursor(conn, &ws)?;
            let (total, pending): (i64, i64) = conn
                .prepare_cached(
                    "SELECT coalesce(sum(last_seq - first_seq + 1), 0),
                            coalesce(sum(last_seq - max(first_seq, ?2 + 1) + 1) FILTER (WHERE last_seq > ?2), 0)
                     FROM event_blocks WHERE ws = ?1",
                )
                .map_err(sql_error)?
                .query_row(params![n, cursor.seq], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sql_error)?;
            let mut oldest = None;
            scan_blocks(conn, n, cursor.seq, |first_seq, block| {
                let i = (cursor.seq + 1 - first_seq).max(0) as usize;
                oldest = block.get(i).map(|e| time(e.received_at_ms));
                Ok(false)
            })?;
            Ok(LogStatus { cursor, total_events: total, pending_events: pending, oldest_pending_received_at: oldest })
        })
        .await
    }
}

/// Calls `f` with each block of workspace `ws` holding events after `after`, in log order,
/// while it returns true.
pub(crate) fn scan_blocks(
    conn: &Connection,
    ws: i64,
    after: i64,
    mut f: impl FnMut(i64, &Decoded) -> Result<bool>,
) -> Result<()> {
    each_block(
        conn,
        "SELECT first_seq, data FROM event_blocks WHERE ws = ?1 AND last_seq > ?2 ORDER BY last_seq",
        params![ws, after],
        |_, first_seq, block| f(first_seq, block),
    )
}

/// Runs `sql`, whose first two columns are a block's `first_seq` and `data`, and calls `f`
/// with each row and its decoded block while it returns true.
pub(crate) fn each_block(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    mut f: impl FnMut(&rusqlite::Row<'_>, i64, &Decoded) -> Result<bool>,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(sql).map_err(sql_error)?;
    let mut rows = stmt.query(params).map_err(sql_error)?;
    while let Some(row) = rows.next().map_err(sql_error)? {
        let first_seq: i64 = row.get(0).map_err(sql_error)?;
        let data = row.get_ref(1).map_err(sql_error)?.as_blob().map_err(|e| StoreError::Backend(e.to_string()))?;
        if !f(row, first_seq, &block::decode(data)?)? {
            break;
        }
    }
    Ok(())
}

/// Reads events by seq, keeping the last block it decoded, so that nearby seqs cost one decode.
pub(crate) struct Blocks<'c> {
    conn: &'c Connection,
    /// (workspace, first seq, last seq, events) of the block read last.
    current: Option<(i64, i64, i64, Decoded)>,
}

impl<'c> Blocks<'c> {
    pub(crate) fn new(conn: &'c Connection) -> Blocks<'c> {
        Blocks { conn, current: None }
    }

    /// The event at `seq` in workspace `ws`, if there is one.
    pub(crate) fn get(&mut self, ws: i64, seq: i64) -> Result<Option<EventRef<'_>>> {
        if !self.current.as_ref().is_some_and(|(_, first, last, _)| (*first..=*last).contains(&seq)) {
            let row: Option<(i64, i64, i64, Vec<u8>)> = self
                .conn
                .prepare_cached(
                    "SELECT ws, first_seq, last_seq, data FROM event_blocks WHERE last_seq >= ?1 ORDER BY last_seq LIMIT 1",
                )
                .map_err(sql_error)?
                .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()
                .map_err(sql_error)?;
            self.current = match row {
                Some((ws, first, last, data)) => Some((ws, first, last, block::decode(&data)?)),
                None => None,
            };
        }
        Ok(match &self.current {
            Some((block_ws, first, _, block)) if *block_ws == ws && seq >= *first => block.get((seq - first) as usize),
            _ => None,
        })
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

/// One append's events, encoded and hashed off the writer.
/// Blocks this large are worth a thread of their own when there are several.
const PARALLEL_EVENTS: usize = 4_096;

/// Prepares each non-empty batch as a block, in order: on several threads when there are
/// several large batches (an import's group), since encoding and compressing them is most of
/// an append's work and the writer waits for it.
fn prepare_all<B: Sync>(
    batches: &[B],
    len: impl Fn(&B) -> usize + Sync,
    prepare: impl Fn(&B) -> Prepared + Sync,
) -> Vec<Prepared> {
    let batches: Vec<&B> = batches.iter().filter(|b| len(b) > 0).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(batches.len()).min(8);
    if threads < 2 || batches.iter().map(|b| len(b)).sum::<usize>() < 2 * PARALLEL_EVENTS {
        return batches.into_iter().map(prepare).collect();
    }
    // Batch i goes to thread i % threads; each thread's blocks come back in its order.
    let prepare = &prepare;
    let mut prepared: Vec<Vec<Prepared>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<&B> = batches.iter().skip(t).step_by(threads).copied().collect();
                scope.spawn(move || mine.into_iter().map(prepare).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("preparing a block panicked")).collect()
    });
    let mut lanes: Vec<std::vec::IntoIter<Prepared>> = prepared.drain(..).map(Vec::into_iter).collect();
    (0..batches.len()).map(|i| lanes[i % threads].next().expect("one block per batch")).collect()
}

/// What the writer reads to check the ids of blocks it is about to insert: the seqs of those
/// that the workspace's runs may hold, looked up all at once in hash order, so that each id
/// page is read once however the ids are spread over the blocks (an import run again has
/// every id of every page in each group).
fn lookup_for<'c, 'h>(
    conn: &'c Connection,
    recent: &mut RecentIds,
    n: i64,
    blocks: impl IntoIterator<Item = &'h [i64]>,
) -> Result<Lookup<'c>> {
    recent.ensure_owner(conn)?;
    let mut lookup = Lookup::new(conn);
    if recent.may_be_in_runs(conn, n)? {
        let mut hashes: Vec<i64> = blocks.into_iter().flatten().copied().collect();
        hashes.sort_unstable();
        hashes.dedup();
        let mut pages = std::mem::take(&mut recent.pages);
        let probed = lookup.probe(n, &hashes, recent.runs.as_ref().expect("loaded by ensure_owner"), &mut pages);
        recent.pages = pages;
        probed?;
    }
    Ok(lookup)
}

/// The events of a block whose id an earlier event of it has (by index, in order), given
/// their ids' hashes: each event's index is put in a table of twice the block's size by its
/// hash's top bits (the hashes are even, as a digest's are), probing on past the slots of
/// other ids; an event that finds its own id is a repeat. A map keyed by hash took a tenth of
/// the time an import spent preparing blocks.
fn repeats_of(events: &[EventRef<'_>], hashes: &[i64]) -> Vec<usize> {
    const EMPTY: u32 = u32::MAX;
    let mut repeats = Vec::new();
    if hashes.len() < 2 {
        return repeats;
    }
    let slots = (2 * hashes.len()).next_power_of_two();
    let shift = 64 - slots.trailing_zeros();
    let mut table = vec![EMPTY; slots];
    for (i, &hash) in hashes.iter().enumerate() {
        let mut at = ((hash as u64) >> shift) as usize;
        loop {
            if table[at] == EMPTY {
                table[at] = u32::try_from(i).expect("a block holds fewer than 2^32 events");
                break;
            }
            let j = table[at] as usize;
            if hashes[j] == hash && events[j].message_id == events[i].message_id {
                repeats.push(i);
                break;
            }
            at = (at + 1) & (slots - 1);
        }
    }
    repeats
}

struct Prepared {
    data: Vec<u8>,
    /// Of every event sent: a duplicate left out makes it wider than needed, never narrower.
    summary: block::Summary,
    /// Each event's id hash. The ids themselves are read back from `data` in the rare case
    /// that the writer needs them (a hash it holds already): an import's millions of ids
    /// are not copied again.
    hashes: Vec<i64>,
    /// The events whose id an earlier event of the block has, in order (most blocks have none).
    repeats: Vec<usize>,
}

impl Prepared {
    fn new(events: &[NewEvent], hashing: IdHashing) -> Prepared {
        Prepared::of(&events.iter().map(EventRef::of).collect::<Vec<_>>(), hashing)
    }

    fn of_tracks(rows: &domain::TrackRows, hashing: IdHashing) -> Prepared {
        let received_at = crate::ms(&rows.received_at());
        // Each row read once: it is read five times below.
        Prepared::of(&rows.iter().map(|t| EventRef::of_track(&t, received_at)).collect::<Vec<_>>(), hashing)
    }

    fn of(events: &[EventRef<'_>], hashing: IdHashing) -> Prepared {
        let hashes: Vec<i64> = events.iter().map(|e| hashing.hash(e.message_id)).collect();
        // Repeats within the block, found here rather than by the writer that every append
        // waits for: by hash, then confirmed by id.
        let repeats = repeats_of(events, &hashes);
        Prepared {
            data: block::encode_refs(events.iter()),
            summary: block::summarize(events.iter().copied()),
            hashes,
            repeats,
        }
    }

    /// Stores the events whose ids are new as the next block of the log, under the writer,
    /// with `lookup` made by [`lookup_for`] for its ids.
    fn insert(self, conn: &Connection, recent: &mut RecentIds, n: i64, lookup: &mut Lookup<'_>) -> Result<Inserted> {
        let Prepared { data, summary, hashes, repeats } = self;
        let first_seq: i64 = conn
            .prepare_cached("SELECT coalesce(max(last_seq), 0) + 1 FROM event_blocks")
            .map_err(sql_error)?
            .query_row([], |r| r.get(0))
            .map_err(sql_error)?;
        let mut keep = Vec::with_capacity(hashes.len());
        let mut stored = 0i64;
        let mut repeats = repeats.into_iter().peekable();
        // The block read back, once, if some id's hash is held already.
        let mut decoded: Option<block::Decoded> = None;
        for (i, &hash) in hashes.iter().enumerate() {
            if i % TOUCH == 0 {
                recent.touch(n, &hashes[i..hashes.len().min(i + TOUCH)]);
            }
            let seq = first_seq + stored;
            let new = if repeats.next_if_eq(&i).is_some() {
                false
            } else if recent.add_if_fresh(lookup, n, hash, seq) {
                true
            } else {
                if decoded.is_none() {
                    decoded = Some(block::decode(&data)?);
                }
                let event = decoded.as_ref().and_then(|d| d.get(i));
                let event = event.ok_or_else(|| StoreError::Backend(format!("a prepared block without event {i}")))?;
                recent.add_if_new(lookup, n, hash, event.message_id, seq)?
            };
            stored += i64::from(new);
            keep.push(new);
        }
        let report = AppendReport { stored: stored as usize, duplicates: hashes.len() - stored as usize };
        if stored == 0 {
            return Ok(Inserted { report, first_seq, kept: keep });
        }
        let data = if report.duplicates == 0 {
            data
        } else {
            let all = match decoded {
                Some(all) => all,
                None => block::decode(&data)?,
            };
            let kept: Vec<EventRef<'_>> = all.iter().zip(&keep).filter(|(_, k)| **k).map(|(e, _)| e).collect();
            block::encode_refs(kept.into_iter())
        };
        conn.prepare_cached(
            "INSERT INTO event_blocks (last_seq, ws, first_seq, types, min_ts, max_ts, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(sql_error)?
        .execute(params![first_seq + stored - 1, n, first_seq, summary.types, summary.min_ts, summary.max_ts, data])
        .map_err(sql_error)?;
        Ok(Inserted { report, first_seq, kept: keep })
    }
}

/// Ids whose places in the memory of recent ids are read ahead together: enough that their
/// cache misses overlap, few enough that what is read stays cached until it is used.
const TOUCH: usize = 256;

/// What [`Prepared::insert`] stored: the events kept have consecutive seqs from `first_seq`.
struct Inserted {
    report: AppendReport,
    first_seq: i64,
    /// Whether each event given was stored (not a duplicate).
    kept: Vec<bool>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use domain::{EventType, NewEvent};

    /// A track call of `u` with message id `id`, for tests of the log.
    pub(crate) fn with_id(id: &str) -> NewEvent {
        NewEvent {
            message_id: id.to_owned(),
            kind: EventType::Track,
            name: Some("A".into()),
            user_id: Some("u".into()),
            anonymous_id: None,
            group_id: None,
            previous_id: None,
            timestamp: chrono::DateTime::UNIX_EPOCH,
            received_at: chrono::DateTime::UNIX_EPOCH,
            payload: "{}".into(),
        }
    }

    #[test]
    fn repeats_are_found_by_id_among_hashes_that_collide() {
        let repeats = |ids: &[&str], hashes: &[i64]| {
            let events: Vec<NewEvent> = ids.iter().map(|id| with_id(id)).collect();
            let refs: Vec<EventRef<'_>> = events.iter().map(EventRef::of).collect();
            repeats_of(&refs, hashes)
        };
        // Ids of one hash told apart by their text; a repeat of each found.
        let ids = ["a", "b", "a", "c", "b", "d", "c", "a"];
        assert_eq!(repeats(&ids, &[5, 5, 5, 7, 5, -3, 7, 5]), [2, 4, 6, 7]);
        // Hashes in the last slots: probing wraps around to the first.
        let last = [-1, -1, -1, -2, -1, i64::MAX];
        assert_eq!(repeats(&["x", "y", "z", "w", "y", "v"], &last), [4]);
        // Every id of one hash, none repeated, more than the table's half.
        let many: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(repeats(&many, &[42; 100]).is_empty());
        assert_eq!(repeats(&["only"], &[1]), Vec::<usize>::new());
        assert_eq!(repeats(&[], &[]), Vec::<usize>::new());
    }
}
