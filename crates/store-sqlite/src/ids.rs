//! Exactly-once by message id without a B-tree page write per event.
//!
//! A unique index on random message ids costs one dirty page per insert once the index is
//! larger than a commit's worth of inserts, so each commit of a few thousand events would
//! rewrite megabytes of index. Instead the writer keeps the ids of the newest events in memory
//! ([`RecentIds`]) and now and then writes them out as one sorted run ([`crate::runs`]). A
//! lookup checks both. The memory is rebuilt at start from the events after
//! `event_ids_through`, so nothing depends on it surviving a crash.
//!
//! Architecture Invariant: only the writer thread touches [`RecentIds`], and every change to
//! it is undone when the transaction that made it does not commit.

use domain::{DerivedId, MessageId};
use rusqlite::{Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use store::{Result, StoreError};

use crate::log::Blocks;
use crate::runs::{Flushed, Id, PageCache, Runs};
use crate::sql_error;

mod table;
use table::IdTable;

/// The 8 bytes of a message id's SHA-256 that stored ids key on. Stable across versions:
/// it is stored.
pub(crate) fn id_hash<'a>(message_id: impl Into<MessageId<'a>>) -> i64 {
    let mut text = [0; DerivedId::MAX_LEN];
    let digest = Sha256::digest(message_id.into().bytes(&mut text));
    i64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest has 8 bytes"))
}

/// How a database's message ids are hashed: every id by [`id_hash`], or, in a database with
/// a key for them (its log was empty when the key was made, migration 14), a derived id
/// (`import_<key>_<n>`, given in parts or as its text) by a keyed mix of its parts: a few
/// nanoseconds where SHA-256 of its text took about sixty, for each of an import's rows. An
/// id's text that reads as a derived id hashes as its parts, so the two forms of one id
/// meet. The key is the database's own and random, so ids cannot be picked to share a hash
/// (which would only cost time: a shared hash is confirmed against the stored id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct IdHashing {
    derived: Option<[u64; 2]>,
}

impl IdHashing {
    /// The database's hashing, from `store_meta`.
    pub(crate) fn of(conn: &Connection) -> Result<IdHashing> {
        let part = |key: &str| -> Result<Option<i64>> {
            conn.prepare_cached("SELECT value FROM store_meta WHERE key = ?1")
                .map_err(sql_error)?
                .query_row([key], |r| r.get(0))
                .optional()
                .map_err(sql_error)
        };
        Ok(match (part("derived_id_key_0")?, part("derived_id_key_1")?) {
            (Some(a), Some(b)) => IdHashing { derived: Some([a as u64, b as u64]) },
            _ => IdHashing { derived: None },
        })
    }

    /// The hash `message_id` is stored under. Stable across versions: it is stored.
    pub(crate) fn hash<'a>(&self, message_id: impl Into<MessageId<'a>>) -> i64 {
        let id = message_id.into();
        if let Some(secret) = self.derived {
            let derived = match id {
                MessageId::Derived(d) => Some(d).filter(|d| d.n > 0),
                MessageId::Text(t) => DerivedId::parse(t),
            };
            if let Some(d) = derived {
                return derived_hash(secret, d);
            }
        }
        id_hash(id)
    }
}

/// A derived id's hash under `secret`: folded multiplies of its parts with the key (as in
/// wyhash), whose high bits are as even as a digest's (the memory of recent ids places an id
/// by them). Stable across versions: it is stored.
fn derived_hash(secret: [u64; 2], id: DerivedId) -> i64 {
    const M: [u64; 3] = [0xa076_1d64_78bd_642f, 0xe703_7ed1_a0b4_28db, 0x8ebc_6af0_9c88_c6e3];
    fn fold(a: u64, b: u64) -> u64 {
        let m = u128::from(a) * u128::from(b);
        (m as u64) ^ ((m >> 64) as u64)
    }
    let (high, low) = ((id.key >> 64) as u64, id.key as u64);
    let a = fold(low ^ secret[0], high ^ secret[1]);
    let b = fold(id.n ^ M[0], secret[0].rotate_left(32) ^ M[1]);
    fold(a ^ M[2], b ^ secret[1]) as i64
}

/// Recent ids beyond which they are written out as a run even while ingest is busy; also the
/// size of the smallest class of runs.
pub(crate) const FLUSH_AT: usize = 65_536;

/// While some workspace's ids are all in memory ([`RecentIds::find`] need not look in the
/// runs for them), recent ids are held up to this many before they are written out while
/// ingest is busy. A workspace's first import (a log that starts empty) then checks its ids
/// in memory alone and writes them as one run once the writer is idle, instead of as a run
/// per 65,536 ids merged four at a time, each id's lookup probing every run's filter (a
/// quarter of such an import's CPU). About 40 bytes of memory per id.
const HOLD_FRESH: usize = 4 * 1024 * 1024;
/// An import that says how many events it brings ([`RecentIds::reserve`]) has room made for
/// their ids, and they are held up to that many, up to this: the room is memory taken
/// already. Past [`HOLD_FRESH`] ids, a first import's later ids were looked up in the run
/// just written, the table that held them was cut down to the ids appended meanwhile and
/// grown again by doubling, and each 65,536 ids more made a run to merge: its appends took
/// 4.6 times as long for three times ChurnSim's events. At most about 0.5 GiB of table; the
/// ids held are those read again from the log should the process die before writing them
/// out.
pub(crate) const HOLD_MOST: usize = 16 * 1024 * 1024;
/// While holding such ids, how long the writer must have had no append before it writes them
/// out as idle: a pause of an import (its file read behind) is not the end of it.
const HOLD_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Hashes `(workspace, id hash)` keys, whose hash part is already uniform, with a multiply
/// instead of SipHash: an attacker who picks message ids does not pick their SHA-256.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(26) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Memory for ids made ready before the writer takes it ([`RecentIds::reserve`]).
pub(crate) struct Room(IdTable);

impl Room {
    /// Room for `ids` ids, up to [`HOLD_MOST`], cleared and faulted in by the calling thread.
    pub(crate) fn for_ids(ids: usize) -> Room {
        Room(IdTable::touched(ids.min(HOLD_MOST)))
    }
}

#[derive(Default)]
pub(crate) struct RecentIds {
    /// Held while this process appends events: the memory is only right if no other process
    /// appends to the same database. `None` until the first append.
    owner: Option<std::fs::File>,
    lock_path: std::path::PathBuf,
    /// Per workspace: hash → seq of the first event with that hash.
    first: std::collections::BTreeMap<i64, IdTable>,
    /// Further events whose id shares a hash with another (different ids; vanishingly rare).
    more: Vec<(i64, i64, i64)>,
    /// What the open transaction added, to undo if it does not commit.
    journal: Vec<(i64, i64, i64)>,
    /// Per workspace appended to since the last flush: whether some of its ids may be in a
    /// run. A workspace with none has every stored id in memory.
    in_runs: HashMap<i64, bool, std::hash::BuildHasherDefault<IdHasher>>,
    /// Whether memory holds ids of a workspace with none in a run (flushing then waits, up
    /// to [`RecentIds::hold_limit`] ids, or [`HOLD_IDLE`] without an append).
    holds_fresh: bool,
    /// The ids an import made room for ([`RecentIds::reserve`]), as many as are held with
    /// them; until the next flush.
    reserved: usize,
    /// When the last append began.
    last_append: Option<std::time::Instant>,
    /// The runs on disk, known from the first append on.
    pub(crate) runs: Option<Runs>,
    /// The last seq whose id is in a live run (`event_ids_through`).
    through: i64,
    /// The writer is closing: nothing more is appended or looked up.
    closing: bool,
    /// How the database's ids are hashed (to rebuild the memory from the log).
    hashing: IdHashing,
    /// The last id page of each run the open transaction's lookups read, decoded.
    pub(crate) pages: PageCache,
}

impl RecentIds {
    /// Ids for the database whose append lock file is `lock_path`; nothing is loaded until
    /// the first append.
    pub(crate) fn new(lock_path: std::path::PathBuf, hashing: IdHashing) -> RecentIds {
        RecentIds { lock_path, hashing, ..Default::default() }
    }

    /// Before an append: takes the database's append lock for this process and loads the ids
    /// not yet in a run, or says that another process holds it.
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
        let loaded = RecentIds::load(conn, self.hashing)?;
        (self.first, self.more, self.through) = (loaded.first, loaded.more, loaded.through);
        self.runs = Some(Runs::load(conn, FLUSH_AT as i64)?);
        self.owner = Some(file);
        Ok(())
    }

    /// Rebuilds the memory from the events whose ids are not yet in a run.
    fn load(conn: &Connection, hashing: IdHashing) -> Result<RecentIds> {
        let through = flushed_through(conn)?;
        let mut ids = RecentIds { through, ..RecentIds::default() };
        crate::log::each_block(
            conn,
            "SELECT first_seq, data, ws FROM event_blocks WHERE last_seq > ?1 ORDER BY last_seq",
            [through],
            |row, first_seq, block| {
                let ws: i64 = row.get(2).map_err(sql_error)?;
                for (i, e) in block.iter().enumerate() {
                    let seq = first_seq + i as i64;
                    if seq > through {
                        ids.add(ws, hashing.hash(e.message_id), seq);
                    }
                }
                Ok(true)
            },
        )?;
        Ok(ids)
    }

    pub(crate) fn len(&self) -> usize {
        self.first.values().map(IdTable::len).sum::<usize>() + self.more.len()
    }

    /// The seq held first for `hash` in workspace `ws`.
    fn held(&self, ws: i64, hash: i64) -> Option<i64> {
        self.first.get(&ws)?.get(hash)
    }

    /// Before [`RecentIds::add_if_new`] of each of `hashes`: reads where each would be held,
    /// so that the memory's cache misses overlap rather than come one at a time.
    pub(crate) fn touch(&self, ws: i64, hashes: &[i64]) {
        if let Some(table) = self.first.get(&ws) {
            std::hint::black_box(table.touch(hashes));
        }
    }

    /// Before an append to workspace `ws`: whether some of its ids may be in a run, so that
    /// a lookup must probe the runs. A workspace none of whose events the runs cover (its
    /// log was empty when the ids were last written out) has all its ids in memory.
    pub(crate) fn may_be_in_runs(&mut self, conn: &Connection, ws: i64) -> Result<bool> {
        self.last_append = Some(std::time::Instant::now());
        if let Some(&in_runs) = self.in_runs.get(&ws) {
            return Ok(in_runs);
        }
        // Blocks hold consecutive seqs and the runs cover every seq up to `through`: the
        // workspace's first block says whether any of its events are that old.
        let first: Option<i64> = conn
            .prepare_cached("SELECT first_seq FROM event_blocks WHERE ws = ?1 ORDER BY last_seq LIMIT 1")
            .map_err(sql_error)?
            .query_row([ws], |r| r.get(0))
            .optional()
            .map_err(sql_error)?;
        let in_runs = first.is_some_and(|first| first <= self.through);
        self.in_runs.insert(ws, in_runs);
        self.holds_fresh |= !in_runs;
        Ok(in_runs)
    }

    /// Records an appended event's id if no stored event can have it: no held id and, if
    /// the workspace may have ids in runs, no probed one shares its hash (an import's ids
    /// nearly all). Says whether it did; if not, [`RecentIds::add_if_new`] decides with the id.
    /// `Lookup::probe` must have been given its hash if the workspace may have ids in runs.
    pub(crate) fn add_if_fresh(&mut self, lookup: &Lookup<'_>, ws: i64, hash: i64, seq: i64) -> bool {
        if !lookup.stored.contains_key(&hash) && self.first.entry(ws).or_default().insert_new(hash, seq) {
            self.journal.push((ws, hash, seq));
            return true;
        }
        false
    }

    /// Records an appended event's id unless an event with that id is stored; says whether
    /// it was new. `Lookup::probe` must have been given its hash if the workspace may have ids
    /// in runs. A new id costs one probe of the memory (an import's are all new).
    pub(crate) fn add_if_new(
        &mut self,
        lookup: &mut Lookup<'_>,
        ws: i64,
        hash: i64,
        message_id: MessageId<'_>,
        seq: i64,
    ) -> Result<bool> {
        if self.add_if_fresh(lookup, ws, hash, seq) {
            return Ok(true);
        }
        // Some stored event has the same hash: the same id, or (rarely) another.
        if self.find(lookup, ws, hash, message_id)?.is_some() {
            return Ok(false);
        }
        self.add(ws, hash, seq);
        Ok(true)
    }

    /// The seq of the stored event with this message id, if there is one. `Lookup::probe`
    /// must have been given its hash.
    fn find(&self, lookup: &mut Lookup<'_>, ws: i64, hash: i64, message_id: MessageId<'_>) -> Result<Option<i64>> {
        lookup.candidates.clear();
        if let Some(seq) = self.held(ws, hash) {
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

    /// Makes room for `ids` more of workspace `ws` without growing as they come, in `room`
    /// (made for them off the writer) if it is large enough.
    pub(crate) fn reserve(&mut self, ws: i64, ids: usize, room: Room) {
        let ids = ids.min(HOLD_MOST);
        self.reserved = self.reserved.max((self.len() + ids).min(HOLD_MOST));
        self.first.entry(ws).or_default().reserve_in(ids, room.0);
    }

    /// How many ids are held, while some workspace has none in a run, before they are
    /// written out with ingest busy: [`HOLD_FRESH`], or one more than an import made room
    /// for (its last append is not followed by writing every id out while it is processed:
    /// that is left to the close or the idle writer).
    fn hold_limit(&self) -> usize {
        (self.reserved + 1).max(HOLD_FRESH)
    }

    /// Records a newly appended event's id (undone if its transaction does not commit).
    pub(crate) fn add(&mut self, ws: i64, hash: i64, seq: i64) {
        if !self.first.entry(ws).or_default().insert_new(hash, seq) {
            self.more.push((ws, hash, seq));
        }
        self.journal.push((ws, hash, seq));
    }

    /// A point to undo to.
    pub(crate) fn mark(&self) -> usize {
        self.journal.len()
    }

    /// Forgets what was added since `mark`: its savepoint or transaction was rolled back.
    pub(crate) fn undo_to(&mut self, mark: usize) {
        self.pages.clear();
        for (ws, hash, seq) in self.journal.drain(mark..).rev() {
            let table = self.first.entry(ws).or_default();
            if table.remove(hash, seq) {
                // A colliding id added later takes the first place.
                if let Some(i) = self.more.iter().position(|m| m.0 == ws && m.1 == hash) {
                    let (_, _, next) = self.more.remove(i);
                    table.insert_new(hash, next);
                }
            } else if let Some(i) = self.more.iter().position(|m| *m == (ws, hash, seq)) {
                self.more.remove(i);
            }
        }
    }

    /// The open transaction committed: its additions stay.
    pub(crate) fn committed(&mut self) {
        self.journal.clear();
        self.pages.clear();
    }

    /// Whether recent ids are waiting to be written out (or being written).
    pub(crate) fn unflushed(&self) -> bool {
        self.runs.as_ref().is_some_and(|r| r.flushing() || self.len() > 0)
    }

    /// Whether the recent ids are due to be written out: always when `idle`, otherwise once
    /// there are many.
    fn flush_due(&self, idle: bool) -> bool {
        self.flush_due_holding(self.len(), idle)
    }

    /// [`RecentIds::flush_due`] with `held` ids in memory.
    fn flush_due_holding(&self, held: usize, idle: bool) -> bool {
        if !self.holds_fresh {
            return held >= FLUSH_AT || (idle && held > 0);
        }
        let quiet = self.last_append.is_none_or(|at| at.elapsed() >= HOLD_IDLE);
        held >= self.hold_limit() || (idle && quiet && held > 0)
    }

    /// Nothing more will be appended (the writer is closing): held ids are written out now,
    /// in large steps.
    pub(crate) fn closing(&mut self) {
        self.holds_fresh = false;
        self.closing = true;
        if let Some(runs) = &mut self.runs {
            runs.closing();
        }
    }

    /// Whether background work is due now whatever else waits: so many runs that each append
    /// pays for them.
    pub(crate) fn flush_urgent(&self) -> bool {
        self.runs.as_ref().is_some_and(|runs| runs.has_work() && runs.live() > crate::runs::MANY_RUNS)
    }

    /// Whether there is background work: recent ids due to be written out, or work on the
    /// runs.
    pub(crate) fn wants_flush(&self, idle: bool) -> bool {
        self.runs.as_ref().is_some_and(|runs| runs.has_work() || self.flush_due(idle))
    }

    /// One step of background work, in its own transaction, between groups of appends:
    /// starts writing the recent ids out as a run when due, then steps the runs. Returns
    /// whether work is left.
    pub(crate) fn flush_step(&mut self, conn: &Connection, idle: bool) -> Result<bool> {
        let due = self.flush_due(idle);
        if due && self.runs.as_ref().is_some_and(|runs| !runs.flushing()) {
            let count = self.len();
            let parts: Vec<Box<dyn Iterator<Item = Id> + Send>> = if self.closing {
                // Nothing will look the ids up again: the run is written from the tables
                // themselves, not from a sorted copy (a large import's is tens of megabytes,
                // made on the one thread the close waits for), and packed by a thread per
                // core when there are many.
                let mut more = std::mem::take(&mut self.more);
                more.sort_unstable();
                let threads = if count >= PACK_APART {
                    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4)
                } else {
                    1
                };
                Taken::parts(std::mem::take(&mut self.first), more, threads)
                    .into_iter()
                    .map(|part| Box::new(part) as Box<dyn Iterator<Item = Id> + Send>)
                    .collect()
            } else {
                vec![Box::new(self.sorted().into_iter())]
            };
            self.runs.as_mut().expect("checked above").start_flush(parts, count);
        }
        let Some(runs) = &mut self.runs else { return Ok(false) };
        if let Some(Flushed { through }) = runs.step(conn)? {
            // Seqs grow across workspaces: the flush took every id up to `through`, and ids
            // added while it was written are newer.
            for table in self.first.values_mut() {
                table.retain_after(through);
            }
            // A workspace with none left gives its memory back.
            self.first.retain(|_, table| !table.is_empty());
            self.more.retain(|m| m.2 > through);
            self.through = through;
            // Workspaces it covered now have ids in a run; the others are asked again.
            self.in_runs.clear();
            self.holds_fresh = false;
            self.reserved = 0;
            // A colliding id that stays (newer than the flush) must remain findable.
            let mut more = std::mem::take(&mut self.more);
            more.sort_unstable();
            for (ws, hash, seq) in more {
                if !self.first.entry(ws).or_default().insert_new(hash, seq) {
                    self.more.push((ws, hash, seq));
                }
            }
        }
        Ok(self.wants_flush(idle))
    }

    /// Every id held, sorted as runs are: the tables are read in order, and the rare ids
    /// that share a hash with another are merged in.
    fn sorted(&self) -> Vec<Id> {
        let mut ids = Vec::with_capacity(self.len());
        for (&ws, table) in &self.first {
            ids.extend(table.iter().map(|(hash, seq)| (ws, hash, seq)));
        }
        if self.more.is_empty() {
            return ids;
        }
        let mut more = self.more.clone();
        more.sort_unstable();
        merge_sorted(&ids, &more)
    }
}

/// Ids from which a closing writer's run is packed by several threads.
const PACK_APART: usize = 1 << 16;

/// Every id of the tables and of `more` (sorted), owned, in the order runs are sorted by: or
/// a stretch of them (see [`Taken::parts`]).
struct Taken {
    /// The tables to read, each from one slot up to another.
    tables: std::collections::VecDeque<(i64, std::sync::Arc<IdTable>, std::ops::Range<usize>)>,
    /// The table being read, its workspace, the next slot to look at and where to stop.
    table: Option<(i64, std::sync::Arc<IdTable>, std::ops::Range<usize>)>,
    more: std::iter::Peekable<std::vec::IntoIter<Id>>,
}

impl Taken {
    /// The ids cut into at most `parts` stretches of about as many ids each, in order (every
    /// id of a stretch sorts before every id of the next): a closing writer's run is packed
    /// by several threads. Hashes are uniform, so a table is cut where the share of its
    /// slots is the share of its ids wanted.
    fn parts(tables: std::collections::BTreeMap<i64, IdTable>, more: Vec<Id>, parts: usize) -> Vec<Taken> {
        let total = tables.values().map(IdTable::len).sum::<usize>() + more.len();
        let per_part = total.div_ceil(parts.max(1)).max(1);
        let mut out: Vec<(std::collections::VecDeque<_>, usize)> = vec![(Default::default(), 0)];
        // Where each part after the first begins: the first id of its first stretch of table.
        let mut cuts: Vec<Id> = Vec::new();
        for (ws, table) in tables {
            let table = std::sync::Arc::new(table);
            let (len, slots) = (table.len(), table.slots());
            let mut from = 0;
            while from < slots {
                let last = out.len() == parts.max(1);
                let (part, held) = out.last_mut().expect("a part");
                let room = per_part.saturating_sub(*held);
                let left = ((len as u128 * (slots - from) as u128) / slots as u128) as usize;
                if left <= room || last {
                    part.push_back((ws, table.clone(), from..slots));
                    *held += left;
                    break;
                }
                // This table fills the part: cut it where about `room` of its ids are read.
                let cut = from + ((room as u128 * slots as u128) / len.max(1) as u128) as usize;
                let Some((at, hash, seq)) = table.occupied_from(cut.clamp(from + 1, slots)) else {
                    part.push_back((ws, table.clone(), from..slots));
                    *held += left;
                    break;
                };
                part.push_back((ws, table.clone(), from..at));
                *held += room;
                cuts.push((ws, hash, seq));
                out.push((Default::default(), 0));
                from = at;
            }
        }
        // Each colliding id goes with the part whose stretch it sorts into.
        let mut mores: Vec<Vec<Id>> = vec![Vec::new(); out.len()];
        for m in more {
            mores[cuts.partition_point(|c| *c <= m)].push(m);
        }
        out.into_iter()
            .zip(mores)
            .map(|((tables, _), more)| Taken { tables, table: None, more: more.into_iter().peekable() })
            .collect()
    }

    /// The next id of the tables, not taken yet.
    fn peek_table(&mut self) -> Option<Id> {
        loop {
            if let Some((ws, table, range)) = &mut self.table
                && let Some((slot, hash, seq)) = table.occupied_from(range.start)
                && slot < range.end
            {
                range.start = slot;
                return Some((*ws, hash, seq));
            }
            self.table = Some(self.tables.pop_front()?);
        }
    }
}

impl Iterator for Taken {
    type Item = Id;

    fn next(&mut self) -> Option<Id> {
        let Some(t) = self.peek_table() else { return self.more.next() };
        if self.more.peek().is_some_and(|&m| m < t) {
            return self.more.next();
        }
        if let Some((_, _, range)) = &mut self.table {
            range.start += 1;
        }
        Some(t)
    }
}

fn merge_sorted(a: &[Id], b: &[Id]) -> Vec<Id> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// What [`RecentIds::find`] reads with, made once per append.
pub(crate) struct Lookup<'c> {
    conn: &'c Connection,
    /// The seqs in runs of the hashes probed.
    stored: HashMap<i64, Vec<i64>, std::hash::BuildHasherDefault<IdHasher>>,
    /// A retried batch's ids are confirmed against one block, decoded once.
    blocks: Blocks<'c>,
    candidates: Vec<i64>,
}

impl<'c> Lookup<'c> {
    pub(crate) fn new(conn: &'c Connection) -> Lookup<'c> {
        Lookup { conn, stored: HashMap::default(), blocks: Blocks::new(conn), candidates: Vec::new() }
    }

    /// Looks up `hashes` in the runs whose filters may hold them, each run's last page kept
    /// decoded in `pages` (given in hash order, each page is read once).
    pub(crate) fn probe(&mut self, ws: i64, hashes: &[i64], runs: &Runs, pages: &mut PageCache) -> Result<()> {
        for &hash in hashes {
            let mut held = runs.may_hold(ws, hash).peekable();
            if held.peek().is_none() || self.stored.contains_key(&hash) {
                continue;
            }
            let mut seqs = Vec::new();
            for run in held {
                pages.find_in_run(self.conn, run, ws, hash, &mut seqs)?;
            }
            self.stored.insert(hash, seqs);
        }
        Ok(())
    }
}

/// The last `seq` whose message id is in a live run.
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

    /// Ids spread over three workspaces and hashes, one in a thousand sharing the hash of an
    /// earlier one; held, and all of them sorted.
    fn spread(n: i64) -> (RecentIds, Vec<Id>) {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut ids = RecentIds::default();
        let mut all: Vec<Id> = Vec::new();
        for seq in 1..=n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (ws, hash) = if seq % 1_000 == 0 {
                let (ws, hash, _) = all[(seq / 2) as usize];
                (ws, hash)
            } else {
                ((x % 3) as i64, x as i64)
            };
            ids.add(ws, hash, seq);
            all.push((ws, hash, seq));
        }
        ids.committed();
        all.sort_unstable();
        (ids, all)
    }

    #[test]
    fn held_ids_come_out_sorted_as_runs_are() {
        let (mut ids, all) = spread(50_000);
        assert!(!ids.more.is_empty(), "some ids share a hash");
        assert_eq!(ids.sorted(), all);
        assert_eq!(ids.len(), all.len());
        // Taken out of memory (a closing writer's last flush), in the same order.
        let mut more = std::mem::take(&mut ids.more);
        more.sort_unstable();
        let taken: Vec<Id> = Taken::parts(std::mem::take(&mut ids.first), more, 1).into_iter().flatten().collect();
        assert_eq!(taken, all);
        assert_eq!(ids.len(), 0);
        let empty = Taken::parts(Default::default(), vec![(2, 5, 7)], 3).into_iter().flatten().collect::<Vec<_>>();
        assert_eq!(empty, [(2, 5, 7)]);
        assert_eq!(
            merge_sorted(&[(1, 1, 1), (1, 2, 3)], &[(0, 5, 5), (1, 2, 2)]),
            [(0, 5, 5), (1, 1, 1), (1, 2, 2), (1, 2, 3)]
        );
    }

    #[test]
    fn held_ids_cut_into_parts_keep_their_order_and_share_them_out() {
        for parts in 1..=5 {
            let (mut ids, all) = spread(60_000);
            let mut more = std::mem::take(&mut ids.more);
            more.sort_unstable();
            let taken: Vec<Vec<Id>> =
                Taken::parts(std::mem::take(&mut ids.first), more, parts).into_iter().map(Iterator::collect).collect();
            assert_eq!(taken.len(), parts, "{parts} parts");
            // Read in turn, the parts are every id in order: each part's ids sort before the next's.
            assert_eq!(taken.concat(), all, "{parts} parts");
            // About as many in each: the cuts follow the share of each table's slots.
            let fair = all.len() / parts;
            for part in &taken {
                assert!(part.len().abs_diff(fair) < fair / 5 + 100, "{} ids in a part, {fair} fair", part.len());
            }
        }
        // One workspace's few ids stay in one part rather than being cut to nothing.
        let mut ids = RecentIds::default();
        ids.add(1, 5, 1);
        ids.add(1, 9, 2);
        ids.committed();
        let taken: Vec<Vec<Id>> =
            Taken::parts(std::mem::take(&mut ids.first), Vec::new(), 4).into_iter().map(Iterator::collect).collect();
        assert_eq!(taken.concat(), [(1, 5, 1), (1, 9, 2)]);
        assert!(taken.len() <= 4);
    }

    #[test]
    fn a_derived_id_hashes_alike_in_parts_and_as_text_and_its_high_bits_spread() {
        let keyed = IdHashing { derived: Some([0x1234_5678_9abc_def0, 0x0fed_cba9_8765_4321]) };
        let other = IdHashing { derived: Some([7, 11]) };
        let plain = IdHashing::default();
        let id = DerivedId { key: 0x0123_4567_89ab_cdef_0011_2233_4455_6677, n: 3 };
        let text = id.to_string();
        assert_eq!(keyed.hash(MessageId::Derived(id)), keyed.hash(text.as_str()));
        assert_ne!(keyed.hash(MessageId::Derived(id)), id_hash(text.as_str()), "keyed, not SHA-256");
        assert_ne!(keyed.hash(MessageId::Derived(id)), other.hash(MessageId::Derived(id)), "each key its own");
        assert_ne!(keyed.hash(MessageId::Derived(id)), keyed.hash(MessageId::Derived(DerivedId { n: 4, ..id })));
        // Without a key, and for any other id, SHA-256 of the text.
        assert_eq!(plain.hash(MessageId::Derived(id)), id_hash(text.as_str()));
        assert_eq!(plain.hash(text.as_str()), id_hash(text.as_str()));
        for not_derived in ["m-1", "import_0123", &text.to_uppercase(), &format!("{text}x"), &text.replace("_3", "_03")]
        {
            assert_eq!(keyed.hash(not_derived), id_hash(not_derived), "{not_derived}");
        }
        // An `n` of 0 has no text that reads back as parts: both forms hash as the text.
        let zero = DerivedId { n: 0, ..id };
        assert_eq!(keyed.hash(MessageId::Derived(zero)), keyed.hash(zero.to_string().as_str()));
        // The memory of recent ids places a hash by its top bits: an import's ids (keys that
        // differ, and runs of one key numbered 1, 2, ...) fall evenly into 16 places.
        let mut places = [0u32; 16];
        let mut x: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
        for i in 0..64_000u64 {
            x = x.wrapping_mul(0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645).wrapping_add(1);
            let id = DerivedId { key: x, n: 1 + i % 4 };
            places[(keyed.hash(MessageId::Derived(id)) as u64 >> 60) as usize] += 1;
        }
        for (place, n) in places.iter().enumerate() {
            assert!((3_600..4_400).contains(n), "place {place} holds {n} of 64,000");
        }
    }

    #[test]
    fn ids_an_import_made_room_for_are_held_until_written_out() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::connect(&dir.path().join("t.db"), false).unwrap();
        crate::migrate(&conn).unwrap();
        let mut ids = RecentIds::new(dir.path().join("t.lock"), IdHashing::default());
        ids.ensure_owner(&conn).unwrap();
        assert!(!ids.may_be_in_runs(&conn, 1).unwrap(), "an empty log has no ids in runs");
        // Whether so many ids held are written out while ingest is busy.
        let due = |ids: &RecentIds, held: usize| ids.flush_due_holding(held, false);
        assert!(!due(&ids, HOLD_FRESH - 1) && due(&ids, HOLD_FRESH));
        // An import of ten million events: their ids are held, not those past the fourth
        // million written out and looked up in runs.
        ids.reserve(1, 10_000_000, Room(IdTable::default()));
        assert!(ids.first[&1].slots() > 10_000_000, "room for them all");
        assert!(!due(&ids, HOLD_FRESH) && !due(&ids, 10_000_000) && due(&ids, 10_000_001));
        // Room and holding have a bound.
        ids.reserve(1, usize::MAX / 2, Room(IdTable::default()));
        assert!(!due(&ids, HOLD_MOST) && due(&ids, HOLD_MOST + 1));
        // Once the ids are written out (the writer idle), the next import starts over.
        for seq in 1..=1_000 {
            ids.add(1, seq * 0x9e37_79b9, seq);
        }
        ids.committed();
        ids.last_append = None;
        while ids.flush_step(&conn, true).unwrap() {}
        assert_eq!(ids.len(), 0);
        assert_eq!(ids.hold_limit(), HOLD_FRESH);
        let held: i64 = conn.query_row("SELECT sum(ids) FROM id_runs WHERE state = 'live'", [], |r| r.get(0)).unwrap();
        assert_eq!(held, 1_000);
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
        assert_eq!(ids.held(1, 10), Some(1));
        assert!(ids.more.is_empty());
    }
}
