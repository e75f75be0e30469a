//! Exactly-once by message id without a B-tree page write per event.
//!
//! A unique index on random message ids costs one dirty page per insert once the index is
//! larger than a commit's worth of inserts, so each commit of a few thousand events would
//! rewrite megabytes of index. Instead the writer keeps the ids of the newest events in memory
//! ([`RecentIds`]) and adds them to the `event_ids` table in sorted batches, which touch each
//! page once per batch. A lookup checks both. The memory is rebuilt at start from the events
//! after `event_ids_through`, so nothing depends on it surviving a crash.
//!
//! Architecture Invariant: only the writer thread touches [`RecentIds`], and every change to
//! it is undone when the transaction that made it does not commit.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use store::{Result, StoreError};

use crate::log::Blocks;
use crate::sql_error;

/// The 8 bytes of a message id's SHA-256 that `event_ids` keys on. Stable across versions:
/// it is stored.
pub(crate) fn id_hash(message_id: &str) -> i64 {
    let digest = Sha256::digest(message_id.as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest has 8 bytes"))
}

/// Ids added by one flush transaction at most, so a flush never holds the writer for long.
const FLUSH_CHUNK: usize = 8_192;
/// Recent ids beyond which a flush starts even while ingest is busy.
pub(crate) const FLUSH_AT: usize = 65_536;

#[derive(Default)]
pub(crate) struct RecentIds {
    /// Held while this process appends events: the memory is only right if no other process
    /// appends to the same database. `None` until the first append.
    owner: Option<std::fs::File>,
    lock_path: std::path::PathBuf,
    /// (workspace, hash) → seq of the first event with that hash.
    first: HashMap<(i64, i64), i64>,
    /// Further events whose id shares a hash with another (different ids; vanishingly rare).
    more: Vec<(i64, i64, i64)>,
    /// What the open transaction added, to undo if it does not commit.
    journal: Vec<(i64, i64, i64)>,
    /// A flush under way: the sorted ids up to `through`, and how many are already written.
    flush: Option<Flush>,
    /// Every id in `event_ids`, approximately: a new id (nearly always) costs no probe.
    pub(crate) stored: Filter,
}

struct Flush {
    ids: Vec<(i64, i64, i64)>,
    written: usize,
    through: i64,
}

impl RecentIds {
    /// Ids for the database whose append lock file is `lock_path`; nothing is loaded until
    /// the first append.
    pub(crate) fn new(lock_path: std::path::PathBuf) -> RecentIds {
        RecentIds { lock_path, ..Default::default() }
    }

    /// Before an append: takes the database's append lock for this process and loads the ids
    /// not yet in `event_ids`, or says that another process holds it.
    pub(crate) fn ensure_owner(&mut self, conn: &Connection) -> Result<()> {
        if self.owner.is_some() {
            return Ok(());
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(|e| StoreError::Backend(format!("open {}: {e}", self.lock_path.display())))?;
        if let Err(e) = file.try_lock() {
            return Err(StoreError::Backend(format!(
                "another process is appending events to this database ({}): {e}",
                self.lock_path.display()
            )));
        }
        let loaded = RecentIds::load(conn)?;
        (self.first, self.more) = (loaded.first, loaded.more);
        self.stored = Filter::default();
        let mut stmt = conn.prepare("SELECT ws, hash FROM event_ids").map_err(sql_error)?;
        let mut rows = stmt.query([]).map_err(sql_error)?;
        while let Some(row) = rows.next().map_err(sql_error)? {
            self.stored.add(row.get(0).map_err(sql_error)?, row.get(1).map_err(sql_error)?);
        }
        self.owner = Some(file);
        Ok(())
    }

    /// Rebuilds the memory from the events whose ids are not yet in `event_ids`.
    fn load(conn: &Connection) -> Result<RecentIds> {
        let through = flushed_through(conn)?;
        let mut ids = RecentIds::default();
        crate::log::each_block(
            conn,
            "SELECT first_seq, data, ws FROM event_blocks WHERE last_seq > ?1 ORDER BY last_seq",
            [through],
            |row, first_seq, block| {
                let ws: i64 = row.get(2).map_err(sql_error)?;
                for (i, e) in block.iter().enumerate() {
                    let seq = first_seq + i as i64;
                    if seq > through {
                        ids.add(ws, id_hash(e.message_id), seq);
                    }
                }
                Ok(true)
            },
        )?;
        Ok(ids)
    }

    pub(crate) fn len(&self) -> usize {
        self.first.len() + self.more.len()
    }

    /// The seq of the stored event with this message id, if there is one. `Lookup::probe`
    /// must have been given its hash.
    pub(crate) fn find(&self, lookup: &mut Lookup<'_>, ws: i64, hash: i64, message_id: &str) -> Result<Option<i64>> {
        lookup.candidates.clear();
        if let Some(&seq) = self.first.get(&(ws, hash)) {
            lookup.candidates.push(seq);
            lookup.candidates.extend(self.more.iter().filter(|m| m.0 == ws && m.1 == hash).map(|m| m.2));
        }
        if let Some(seqs) = lookup.stored.get(&hash) {
            lookup.candidates.extend_from_slice(seqs);
        }
        for &seq in &lookup.candidates {
            if lookup.blocks.get(ws, seq)?.is_some_and(|e| e.message_id == message_id) {
                return Ok(Some(seq));
            }
        }
        Ok(None)
    }

    /// Records a newly appended event's id (undone if its transaction does not commit).
    pub(crate) fn add(&mut self, ws: i64, hash: i64, seq: i64) {
        use std::collections::hash_map::Entry;
        match self.first.entry((ws, hash)) {
            Entry::Vacant(v) => {
                v.insert(seq);
            }
            Entry::Occupied(_) => self.more.push((ws, hash, seq)),
        }
        self.journal.push((ws, hash, seq));
    }

    /// A point to undo to.
    pub(crate) fn mark(&self) -> usize {
        self.journal.len()
    }

    /// Forgets what was added since `mark`: its savepoint or transaction was rolled back.
    pub(crate) fn undo_to(&mut self, mark: usize) {
        for (ws, hash, seq) in self.journal.drain(mark..).rev() {
            if self.first.get(&(ws, hash)) == Some(&seq) {
                self.first.remove(&(ws, hash));
                // A colliding id added later takes the first place.
                if let Some(i) = self.more.iter().position(|m| m.0 == ws && m.1 == hash) {
                    let (_, _, next) = self.more.remove(i);
                    self.first.insert((ws, hash), next);
                }
            } else if let Some(i) = self.more.iter().position(|m| *m == (ws, hash, seq)) {
                self.more.remove(i);
            }
        }
    }

    /// The open transaction committed: its additions stay.
    pub(crate) fn committed(&mut self) {
        self.journal.clear();
    }

    /// Whether there is flushing to do: always when `idle`, otherwise once there are many ids.
    pub(crate) fn wants_flush(&self, idle: bool) -> bool {
        self.flush.is_some() || self.len() >= FLUSH_AT || (idle && self.len() > 0)
    }

    /// Writes the next chunk of the flush under way (starting one if needed), in its own
    /// transaction. Returns whether a flush is still under way.
    pub(crate) fn flush_step(&mut self, conn: &Connection) -> Result<bool> {
        let flush = self.flush.get_or_insert_with(|| {
            let mut ids: Vec<(i64, i64, i64)> =
                self.first.iter().map(|(&(ws, hash), &seq)| (ws, hash, seq)).chain(self.more.iter().copied()).collect();
            ids.sort_unstable();
            let through = ids.iter().map(|i| i.2).max().unwrap_or(0);
            Flush { ids, written: 0, through }
        });
        let end = (flush.written + FLUSH_CHUNK).min(flush.ids.len());
        let last = end == flush.ids.len();
        let outcome = (|| -> Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE").map_err(sql_error)?;
            let mut insert = conn
                .prepare_cached("INSERT OR IGNORE INTO event_ids (ws, hash, seq) VALUES (?1, ?2, ?3)")
                .map_err(sql_error)?;
            for (ws, hash, seq) in &flush.ids[flush.written..end] {
                insert.execute(params![ws, hash, seq]).map_err(sql_error)?;
            }
            if last {
                conn.prepare_cached(
                    "INSERT INTO store_meta (key, value) VALUES ('event_ids_through', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                )
                .map_err(sql_error)?
                .execute([flush.through])
                .map_err(sql_error)?;
            }
            conn.execute_batch("COMMIT").map_err(sql_error)
        })();
        if let Err(e) = outcome {
            let _ = conn.execute_batch("ROLLBACK");
            // The ids stay in memory; the next flush starts over.
            self.flush = None;
            return Err(e);
        }
        for &(ws, hash, _) in &flush.ids[flush.written..end] {
            self.stored.add(ws, hash);
        }
        flush.written = end;
        if !last {
            return Ok(true);
        }
        let done = self.flush.take().expect("a flush is under way");
        for (ws, hash, seq) in done.ids {
            if self.first.get(&(ws, hash)) == Some(&seq) {
                self.first.remove(&(ws, hash));
            }
        }
        self.more.retain(|m| m.2 > done.through);
        // A colliding id that stays (newer than the flush) must remain findable.
        for &(ws, hash, seq) in &self.more {
            self.first.entry((ws, hash)).or_insert(seq);
        }
        self.more.retain(|m| self.first.get(&(m.0, m.1)) != Some(&m.2));
        Ok(false)
    }
}

/// What [`RecentIds::find`] reads with, made once per append.
pub(crate) struct Lookup<'c> {
    conn: &'c Connection,
    /// The seqs in `event_ids` of the hashes probed.
    stored: HashMap<i64, Vec<i64>>,
    /// A retried batch's ids are confirmed against one block, decoded once.
    blocks: Blocks<'c>,
    candidates: Vec<i64>,
}

/// Hashes looked up in `event_ids` per statement.
const PROBE: usize = 64;

impl<'c> Lookup<'c> {
    pub(crate) fn new(conn: &'c Connection) -> Lookup<'c> {
        Lookup { conn, stored: HashMap::new(), blocks: Blocks::new(conn), candidates: Vec::new() }
    }

    /// Looks up `hashes` in `event_ids` (those `stored` may hold), a few dozen per
    /// statement, in key order.
    pub(crate) fn probe(&mut self, ws: i64, hashes: &mut Vec<i64>, stored: &Filter) -> Result<()> {
        hashes.retain(|&h| stored.may_hold(ws, h));
        if hashes.is_empty() {
            return Ok(());
        }
        hashes.sort_unstable();
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let params: Vec<String> = (2..PROBE + 2).map(|i| format!("?{i}")).collect();
            format!("SELECT hash, seq FROM event_ids WHERE ws = ?1 AND hash IN ({})", params.join(", "))
        });
        let mut stmt = self.conn.prepare_cached(&SQL).map_err(sql_error)?;
        for chunk in hashes.chunks(PROBE) {
            stmt.raw_bind_parameter(1, ws).map_err(sql_error)?;
            for i in 0..PROBE {
                // A short last chunk repeats its last hash.
                let hash = chunk[i.min(chunk.len() - 1)];
                stmt.raw_bind_parameter(i + 2, hash).map_err(sql_error)?;
            }
            let mut rows = stmt.raw_query();
            while let Some(row) = rows.next().map_err(sql_error)? {
                let (hash, seq): (i64, i64) = (row.get(0).map_err(sql_error)?, row.get(1).map_err(sql_error)?);
                let seqs = self.stored.entry(hash).or_default();
                if !seqs.contains(&seq) {
                    seqs.push(seq);
                }
            }
        }
        Ok(())
    }
}

/// A set of (workspace, hash) that may say yes to one it does not hold (rarely) but never no to
/// one it does: Bloom filters, each twice the size of the one before, added as they fill.
pub(crate) struct Filter {
    parts: Vec<Bloom>,
    first_capacity: usize,
}

struct Bloom {
    bits: Vec<u64>,
    holds: usize,
    capacity: usize,
}

/// Bits per id and probes per lookup: about 1% of new ids are probed needlessly.
const BITS_PER_ID: usize = 10;
const PROBES: u64 = 7;
const FIRST_CAPACITY: usize = 1 << 20;

impl Default for Filter {
    fn default() -> Filter {
        Filter { parts: Vec::new(), first_capacity: FIRST_CAPACITY }
    }
}

impl Filter {
    fn positions(ws: i64, hash: i64, bits: usize) -> impl Iterator<Item = usize> {
        // The hash is already uniform; the workspace only needs to move it.
        let h = (hash as u64) ^ (ws as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let (h1, h2) = (h, h.rotate_left(32) | 1);
        (0..PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % bits as u64) as usize)
    }

    pub(crate) fn add(&mut self, ws: i64, hash: i64) {
        if self.parts.last().is_none_or(|b| b.holds >= b.capacity) {
            let capacity = self.parts.last().map_or(self.first_capacity, |b| b.capacity * 2);
            self.parts.push(Bloom { bits: vec![0; capacity * BITS_PER_ID / 64], holds: 0, capacity });
        }
        let bloom = self.parts.last_mut().expect("a part was just added");
        let n = bloom.bits.len() * 64;
        for p in Filter::positions(ws, hash, n) {
            bloom.bits[p / 64] |= 1 << (p % 64);
        }
        bloom.holds += 1;
    }

    pub(crate) fn may_hold(&self, ws: i64, hash: i64) -> bool {
        self.parts.iter().any(|b| {
            let n = b.bits.len() * 64;
            Filter::positions(ws, hash, n).all(|p| b.bits[p / 64] & (1 << (p % 64)) != 0)
        })
    }
}

/// The last `seq` whose message id is in `event_ids`.
pub(crate) fn flushed_through(conn: &Connection) -> Result<i64> {
    conn.prepare_cached("SELECT value FROM store_meta WHERE key = 'event_ids_through'")
        .map_err(sql_error)?
        .query_row([], |r| r.get(0))
        .optional()
        .map_err(sql_error)
        .map(|v| v.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_holds_what_was_added_and_little_else() {
        let mut f = Filter { parts: Vec::new(), first_capacity: 20_000 };
        let hash = |i: i64| id_hash(&format!("m-{i}"));
        for i in 0..30_000 {
            f.add(1, hash(i));
        }
        assert_eq!(f.parts.len(), 2, "a second, larger part once the first is full");
        assert!((0..30_000).all(|i| f.may_hold(1, hash(i))));
        let wrong = (0..100_000).filter(|i| f.may_hold(1, hash(-1 - i))).count();
        assert!(wrong < 3_000, "{wrong} of 100,000 absent ids may be held");
        let other_workspace = (0..10_000).filter(|i| f.may_hold(2, hash(*i))).count();
        assert!(other_workspace < 300, "{other_workspace}");
    }

    #[test]
    fn undo_forgets_only_what_the_failed_work_added() {
        let mut ids = RecentIds::default();
        ids.add(1, 10, 1);
        ids.committed();
        let mark = ids.mark();
        ids.add(1, 11, 2);
        ids.add(1, 10, 3); // a different id with the same hash
        ids.undo_to(mark);
        assert_eq!(ids.len(), 1);
        assert_eq!(ids.first.get(&(1, 10)), Some(&1));
        assert!(ids.more.is_empty());
    }
}
