//! Stored message ids as sorted runs: a log-structured merge of `(workspace, hash, seq)`.
//!
//! A B-tree over random message ids costs a page write per insert once it outgrows a batch of
//! inserts, so the price of exactly-once would grow with the log. Instead each flush of the
//! writer's recent ids writes one new *run*: its ids sorted and packed into pages of about one
//! database page (`id_pages`, keyed by the run and the page's first id; [`pages`] says how a
//! page holds them), with a Bloom filter of the run kept in `id_runs` and in memory. Runs of
//! one size class are merged [`FANOUT`] at a time, so an id is rewritten about once each time
//! the log grows fourfold, always sequentially; a lookup reads one page of each run whose
//! filter may hold the id.
//!
//! A run is `building` while its pages are written (in steps that give way to appends), `live`
//! once complete and `dead` once merged into another; dead runs' pages are deleted in steps.
//! A merge's switch is one transaction: the new run goes live as its sources die. A build cut
//! short by a crash leaves a `building` run, which the next start declares dead.
//!
//! Architecture Invariant: only the writer thread changes runs; readers see a consistent set
//! because the switch is one transaction and they read inside one.

use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;
use store::Result;

use crate::sql_error;

mod pages;
use pages::PageBuilder;

/// `(workspace, hash, seq)`, in the order runs are sorted by.
pub(crate) type Id = (i64, i64, i64);

/// Id pages written per background transaction.
const STEP_PAGES: usize = 48;
/// Id pages written per transaction once nothing else waits for the writer (it is closing):
/// a run of millions of ids is thousands of pages. One transaction for them all would leave
/// every page's write to the WAL until the packers are done; in steps of a couple of
/// megabytes (committed without a sync each, see `writer.rs`) the writes go on while they
/// pack, and are checkpointed while the next are written.
const CLOSING_STEP_PAGES: usize = 512;
/// Dead id pages deleted per background transaction.
const DELETE_STEP: usize = 512;
/// Live runs beyond which merging is not paced: every new id is checked against each run's
/// filter, so runs left unmerged cost every append.
pub(crate) const MANY_RUNS: usize = 3 * FANOUT;
/// Runs of one size class merged together.
pub(crate) const FANOUT: usize = 4;
/// Bloom filter bits per id: about 0.1% of new ids read a page needlessly per run (with 10
/// bits, 1%: those reads were a tenth of the CPU of a bulk import, whose every id is new).
/// Filters of runs written with another size read the same way.
const BITS_PER_ID: usize = 16;

/// The size class of a run of `ids` ids: 0 up to `base`, then one more per factor of
/// [`FANOUT`].
fn class(ids: i64, base: i64) -> u32 {
    let (mut class, mut cap) = (0, base.max(1));
    while ids > cap {
        cap = cap.saturating_mul(FANOUT as i64);
        class += 1;
    }
    class
}

pub(crate) struct Run {
    id: i64,
    ids: i64,
    filter: Bloom,
}

/// The runs of one database, as the writer knows them.
pub(crate) struct Runs {
    /// Oldest first.
    live: Vec<Run>,
    flush: Option<Build>,
    merge: Option<Build>,
    dead: Vec<i64>,
    next_run: i64,
    /// Runs up to this many ids are of class 0.
    base: i64,
    /// Whether some class has [`FANOUT`] live runs (kept as `live` changes).
    merge_due: bool,
    /// Id pages a build writes per transaction.
    step_pages: usize,
}

/// What a finished flush wrote: the last seq its ids cover (every id up to it).
pub(crate) struct Flushed {
    pub(crate) through: i64,
}

impl Runs {
    /// The runs of the database; a build that a crash cut short is declared dead.
    pub(crate) fn load(conn: &Connection, base: i64) -> Result<Runs> {
        let mut runs = Runs {
            live: Vec::new(),
            flush: None,
            merge: None,
            dead: Vec::new(),
            next_run: 1,
            base,
            merge_due: false,
            step_pages: STEP_PAGES,
        };
        let mut stmt = conn.prepare("SELECT run, state, ids, filter FROM id_runs ORDER BY run").map_err(sql_error)?;
        let mut rows = stmt.query([]).map_err(sql_error)?;
        while let Some(row) = rows.next().map_err(sql_error)? {
            let id: i64 = row.get(0).map_err(sql_error)?;
            let state: String = row.get(1).map_err(sql_error)?;
            runs.next_run = runs.next_run.max(id + 1);
            if state == "live" {
                let filter = Bloom::from_bytes(&row.get::<_, Vec<u8>>(3).map_err(sql_error)?)?;
                runs.live.push(Run { id, ids: row.get(2).map_err(sql_error)?, filter });
            } else {
                runs.dead.push(id);
            }
        }
        runs.merge_due = runs.due_merge().is_some();
        Ok(runs)
    }

    /// The live runs that may hold this id.
    pub(crate) fn may_hold(&self, ws: i64, hash: i64) -> impl Iterator<Item = i64> + '_ {
        self.live.iter().filter(move |r| r.filter.may_hold(ws, hash)).map(|r| r.id)
    }

    pub(crate) fn live(&self) -> usize {
        self.live.len()
    }

    /// Nothing else will wait for the writer: builds write larger steps.
    pub(crate) fn closing(&mut self) {
        self.step_pages = CLOSING_STEP_PAGES;
    }

    pub(crate) fn flushing(&self) -> bool {
        self.flush.is_some()
    }

    /// Whether there is background work: a build under way or due, or dead pages.
    pub(crate) fn has_work(&self) -> bool {
        self.flush.is_some() || self.merge.is_some() || !self.dead.is_empty() || self.merge_due
    }

    /// Starts writing `count` ids as a new run, given in parts in order (each part's ids in
    /// order, and before the next part's), each part packed on a thread of its own; they
    /// cover the log up to the largest of their seqs.
    pub(crate) fn start_flush(&mut self, parts: Vec<Box<dyn Iterator<Item = Id> + Send>>, count: usize) {
        self.flush = Some(Build::new(self.next_run, Source::recent(parts, count)));
        self.next_run += 1;
    }

    /// The oldest [`FANOUT`] live runs of the lowest size class that has that many.
    fn due_merge(&self) -> Option<Vec<usize>> {
        let mut by_class: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
        for (i, run) in self.live.iter().enumerate() {
            by_class.entry(class(run.ids, self.base)).or_default().push(i);
        }
        by_class.into_values().find(|runs| runs.len() >= FANOUT).map(|mut runs| {
            runs.truncate(FANOUT);
            runs
        })
    }

    /// One step of background work in its own transaction: the flush first, then a merge,
    /// then deleting dead pages. Returns the flush when this step finished it.
    pub(crate) fn step(&mut self, conn: &Connection) -> Result<Option<Flushed>> {
        if self.merge.is_none()
            && self.flush.is_none()
            && let Some(picked) = self.due_merge()
        {
            let inputs: Vec<RunReader> = picked.iter().map(|&i| RunReader::new(self.live[i].id)).collect();
            let ids: i64 = picked.iter().map(|&i| self.live[i].ids).sum();
            let packer = Packer::new(Bloom::with_capacity(ids as usize));
            self.merge = Some(Build::new(self.next_run, Source::Merge { inputs, packer }));
            self.next_run += 1;
        }
        let slot = if self.flush.is_some() { &mut self.flush } else { &mut self.merge };
        if let Some(build) = slot {
            let pages = self.step_pages;
            let outcome = in_transaction(conn, |conn| build.step(conn, pages));
            return match outcome {
                Ok(false) => Ok(None),
                Ok(true) => {
                    let done = slot.take().expect("a build is under way");
                    let (ids, filter) = done.packed.expect("a finished build is packed");
                    self.live.push(Run { id: done.run, ids, filter });
                    let flushed = match done.source {
                        Source::Recent { .. } => Some(Flushed { through: done.through }),
                        Source::Merge { inputs, .. } => {
                            let sources: Vec<i64> = inputs.iter().map(|r| r.run).collect();
                            self.live.retain(|r| !sources.contains(&r.id));
                            self.dead.extend(sources);
                            None
                        }
                    };
                    self.merge_due = self.due_merge().is_some();
                    Ok(flushed)
                }
                Err(e) => {
                    // What it wrote is deleted; what it read is still where it was.
                    let failed = slot.take().expect("a build is under way");
                    self.dead.push(failed.run);
                    Err(e)
                }
            };
        }
        if let Some(&run) = self.dead.first() {
            let gone = in_transaction(conn, |conn| {
                let deleted = conn
                    .prepare_cached(
                        "DELETE FROM id_pages WHERE id IN (SELECT id FROM id_pages WHERE run = ?1 LIMIT ?2)",
                    )
                    .map_err(sql_error)?
                    .execute(params![run, DELETE_STEP as i64])
                    .map_err(sql_error)?;
                if deleted < DELETE_STEP {
                    conn.prepare_cached("DELETE FROM id_runs WHERE run = ?1")
                        .map_err(sql_error)?
                        .execute([run])
                        .map_err(sql_error)?;
                }
                Ok(deleted < DELETE_STEP)
            })?;
            if gone {
                self.dead.remove(0);
            }
        }
        Ok(None)
    }
}

fn in_transaction<R>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(sql_error)?;
    match f(conn).and_then(|r| conn.execute_batch("COMMIT").map_err(sql_error).map(|()| r)) {
        Ok(r) => Ok(r),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// A run being written.
struct Build {
    run: i64,
    source: Source,
    /// Whether its `id_runs` row is written.
    begun: bool,
    /// Once its source is exhausted: how many ids it holds and their filter.
    packed: Option<(i64, Bloom)>,
    /// The last seq the ids of a flush cover (every id up to it), once packed.
    through: i64,
}

/// Id pages ahead of the writer that each of a flush's packers may hold (under 4 KB each):
/// a packer whose part comes later packs its whole part while the ones before are written.
const PACKED_AHEAD: usize = 4_096;

enum Source {
    /// The writer's recent ids, packed into pages by threads of their own while the writer
    /// inserts them: a close writes millions, and the writer is the thread it waits for.
    /// Each thread packs a stretch of the ids; their pages are written in turn.
    Recent { pages: std::collections::VecDeque<Receiver<Page>>, packers: Vec<JoinHandle<(Packer, i64)>> },
    /// Live runs being merged, packed on the writer as they are read.
    Merge { inputs: Vec<RunReader>, packer: Packer },
}

/// One id page: the key of its first id, and its bytes.
struct Page {
    first: (i64, i64),
    data: Vec<u8>,
}

/// Packs ids, given in order, into pages, and adds each to a filter.
struct Packer {
    filter: Bloom,
    ids: i64,
    /// Read from the source, not yet packed.
    pending: Option<Id>,
}

impl Packer {
    fn new(filter: Bloom) -> Packer {
        Packer { filter, ids: 0, pending: None }
    }

    /// The next page of ids from `next`, or `None` once it has none left.
    fn page(&mut self, mut next: impl FnMut() -> Result<Option<Id>>) -> Result<Option<Page>> {
        let mut page = PageBuilder::default();
        loop {
            let id = match self.pending.take() {
                Some(id) => Some(id),
                None => next()?,
            };
            let Some(id) = id else { break };
            if !page.take(id) {
                self.pending = Some(id);
                break;
            }
            self.filter.add(id.0, id.1);
            self.ids += 1;
        }
        Ok(page.first().map(|first| Page { first, data: page.encode() }))
    }
}

impl Source {
    /// Packs `count` ids, given in parts in order, each part on a thread of its own.
    fn recent(parts: Vec<Box<dyn Iterator<Item = Id> + Send>>, count: usize) -> Source {
        let (mut pages, mut packers) = (std::collections::VecDeque::new(), Vec::new());
        for ids in parts {
            let (tx, rx) = sync_channel(PACKED_AHEAD);
            let packer = std::thread::Builder::new()
                .name("sqlite-id-pages".into())
                .spawn(move || {
                    // Every part's filter has the whole run's size: they are joined by OR.
                    let mut packer = Packer::new(Bloom::with_capacity(count));
                    let (mut ids, mut last, mut through) = (ids, None, 0);
                    let mut next = || {
                        let id = ids.next();
                        if let Some(id) = id {
                            debug_assert!(last.is_none_or(|l| l <= id), "ids come in order");
                            last = Some(id);
                            through = through.max(id.2);
                        }
                        Ok(id)
                    };
                    // Stops early when the build is given up (the receiver is gone).
                    while let Ok(Some(page)) = packer.page(&mut next) {
                        if tx.send(page).is_err() {
                            break;
                        }
                    }
                    (packer, through)
                })
                .expect("spawn the id page packer");
            pages.push_back(rx);
            packers.push(packer);
        }
        Source::Recent { pages, packers }
    }

    /// The next page to write, or `None` once the source is exhausted.
    fn page(&mut self, conn: &Connection) -> Result<Option<Page>> {
        match self {
            // A packer hangs up once it has sent every page of its part.
            Source::Recent { pages, .. } => {
                while let Some(part) = pages.front() {
                    if let Ok(page) = part.recv() {
                        return Ok(Some(page));
                    }
                    pages.pop_front();
                }
                Ok(None)
            }
            Source::Merge { inputs, packer } => packer.page(|| {
                let mut best: Option<(usize, Id)> = None;
                for (i, input) in inputs.iter_mut().enumerate() {
                    if let Some(head) = input.head(conn)?
                        && best.is_none_or(|(_, b)| head < b)
                    {
                        best = Some((i, head));
                    }
                }
                Ok(best.map(|(i, id)| {
                    inputs[i].at += 1;
                    id
                }))
            }),
        }
    }

    /// Once exhausted: the ids packed, their filter, and the last seq they cover (for a
    /// flush).
    fn packed(&mut self) -> Result<(i64, Bloom, i64)> {
        match self {
            Source::Recent { packers, .. } => {
                let mut packed: Option<(i64, Bloom, i64)> = None;
                for packer in std::mem::take(packers) {
                    let (part, through) =
                        packer.join().map_err(|_| store::StoreError::Backend("the id page packer panicked".into()))?;
                    packed = Some(match packed {
                        None => (part.ids, part.filter, through),
                        Some((ids, mut filter, before)) => {
                            filter.join(&part.filter);
                            (ids + part.ids, filter, before.max(through))
                        }
                    });
                }
                packed.ok_or_else(|| store::StoreError::Backend("a flush is packed once".into()))
            }
            Source::Merge { packer, .. } => {
                let packer = std::mem::replace(packer, Packer::new(Bloom::with_capacity(0)));
                Ok((packer.ids, packer.filter, 0))
            }
        }
    }
}

impl Build {
    fn new(run: i64, source: Source) -> Build {
        Build { run, source, begun: false, packed: None, through: 0 }
    }

    /// Writes up to `pages` pages; when the source is exhausted, makes the run live (and its
    /// sources dead) and returns true. The caller holds the transaction.
    fn step(&mut self, conn: &Connection, pages: usize) -> Result<bool> {
        if !self.begun {
            conn.prepare_cached("INSERT INTO id_runs (run, state, ids, filter) VALUES (?1, 'building', 0, x'')")
                .map_err(sql_error)?
                .execute([self.run])
                .map_err(sql_error)?;
            self.begun = true;
        }
        let mut insert = conn
            .prepare_cached("INSERT INTO id_pages (run, ws, hash, data) VALUES (?1, ?2, ?3, ?4)")
            .map_err(sql_error)?;
        for _ in 0..pages {
            let Some(Page { first: (ws, hash), data }) = self.source.page(conn)? else {
                return self.finish(conn).map(|()| true);
            };
            insert.execute(params![self.run, ws, hash, data]).map_err(sql_error)?;
        }
        Ok(false)
    }

    fn finish(&mut self, conn: &Connection) -> Result<()> {
        let (ids, filter, through) = self.source.packed()?;
        conn.prepare_cached("UPDATE id_runs SET state = 'live', ids = ?2, filter = ?3 WHERE run = ?1")
            .map_err(sql_error)?
            .execute(params![self.run, ids, filter.to_bytes()])
            .map_err(sql_error)?;
        match &self.source {
            Source::Recent { .. } => {
                conn.prepare_cached(
                    "INSERT INTO store_meta (key, value) VALUES ('event_ids_through', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                )
                .map_err(sql_error)?
                .execute([through])
                .map_err(sql_error)?;
            }
            Source::Merge { inputs, .. } => {
                let mut kill =
                    conn.prepare_cached("UPDATE id_runs SET state = 'dead' WHERE run = ?1").map_err(sql_error)?;
                for input in inputs {
                    kill.execute([input.run]).map_err(sql_error)?;
                }
            }
        }
        self.packed = Some((ids, filter));
        self.through = through;
        Ok(())
    }
}

/// Reads one run's ids in order, a page at a time.
struct RunReader {
    run: i64,
    page: Vec<Id>,
    at: usize,
    /// The first id of the page read last.
    after: (i64, i64),
    done: bool,
}

impl RunReader {
    fn new(run: i64) -> RunReader {
        RunReader { run, page: Vec::new(), at: 0, after: (i64::MIN, i64::MIN), done: false }
    }

    fn head(&mut self, conn: &Connection) -> Result<Option<Id>> {
        while self.at == self.page.len() {
            if self.done {
                return Ok(None);
            }
            let next: Option<(i64, i64, Vec<u8>)> = conn
                .prepare_cached(
                    "SELECT ws, hash, data FROM id_pages WHERE run = ?1 AND (ws, hash) > (?2, ?3)
                     ORDER BY ws, hash LIMIT 1",
                )
                .map_err(sql_error)?
                .query_row(params![self.run, self.after.0, self.after.1], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
                .map_err(sql_error)?;
            match next {
                None => self.done = true,
                Some((ws, hash, data)) => {
                    self.after = (ws, hash);
                    self.page.clear();
                    self.at = 0;
                    pages::decode(&data, |id| self.page.push(id))?;
                }
            }
        }
        Ok(Some(self.page[self.at]))
    }
}

/// Adds to `out` the seqs that `run` holds under `(ws, hash)`.
pub(crate) fn find_in_run(conn: &Connection, run: i64, ws: i64, hash: i64, out: &mut Vec<i64>) -> Result<()> {
    if let Some(page) = page_for(conn, run, ws, hash)? {
        pages::decode(&page, |(w, h, seq)| {
            if (w, h) == (ws, hash) {
                out.push(seq);
            }
        })?;
    }
    Ok(())
}

/// The bytes of the page of `run` where `(ws, hash)` would be: the last whose first id is not
/// after it.
fn page_for(conn: &Connection, run: i64, ws: i64, hash: i64) -> Result<Option<Vec<u8>>> {
    conn.prepare_cached(
        "SELECT data FROM id_pages WHERE run = ?1 AND (ws, hash) <= (?2, ?3)
         ORDER BY ws DESC, hash DESC LIMIT 1",
    )
    .map_err(sql_error)?
    .query_row(params![run, ws, hash], |r| r.get(0))
    .optional()
    .map_err(sql_error)
}

/// The last id page each live run gave to lookups, decoded: lookups made in hash order (an
/// append looks up all its ids at once, sorted) ask about each page's ids together, so that
/// each page is read once. Pages of a live run never change.
#[derive(Default)]
pub(crate) struct PageCache {
    /// By run: its last page's ids, in order, and whether the page is known to hold every id
    /// of its last key (format 2 keeps equal keys on one page).
    pages: HashMap<i64, (Vec<Id>, bool)>,
    /// Pages read and decoded.
    read: usize,
}

impl PageCache {
    /// Like [`find_in_run`], from the page read last from `run` when it is the one.
    pub(crate) fn find_in_run(
        &mut self,
        conn: &Connection,
        run: i64,
        ws: i64,
        hash: i64,
        out: &mut Vec<i64>,
    ) -> Result<()> {
        let key = (ws, hash);
        // The page holds the id if the id is from its first on and not after its last (at
        // its last, unless the page keeps equal keys together, the next page may start with
        // the same key and be the one `page_for` picks).
        let held = self.pages.get(&run).is_some_and(|(ids, whole)| match (ids.first(), ids.last()) {
            (Some(&(w, h, _)), Some(&(lw, lh, _))) => (w, h) <= key && (key < (lw, lh) || (*whole && key == (lw, lh))),
            _ => false,
        });
        if !held {
            let Some(data) = page_for(conn, run, ws, hash)? else { return Ok(()) };
            let (mut ids, _) = self.pages.remove(&run).unwrap_or_default();
            ids.clear();
            pages::decode(&data, |id| ids.push(id))?;
            self.read += 1;
            self.pages.insert(run, (ids, pages::keeps_equal_keys(&data)));
        }
        let page = &self.pages[&run].0;
        let at = page.partition_point(|&(w, h, _)| (w, h) < key);
        out.extend(page[at..].iter().take_while(|&&(w, h, _)| (w, h) == key).map(|&(_, _, seq)| seq));
        Ok(())
    }

    pub(crate) fn clear(&mut self) {
        self.pages.clear();
    }
}

/// For readers: the seqs of stored events whose id has this hash, and the last seq that the
/// runs cover (newer events are found in the log), read as one snapshot.
pub(crate) fn stored_seqs(conn: &Connection, ws: i64, hash: i64) -> Result<(Vec<i64>, i64)> {
    let read = |conn: &Connection| -> Result<(Vec<i64>, i64)> {
        let through = crate::ids::flushed_through(conn)?;
        let runs: Vec<i64> = conn
            .prepare_cached("SELECT run FROM id_runs WHERE state = 'live'")
            .map_err(sql_error)?
            .query_map([], |r| r.get(0))
            .map_err(sql_error)?
            .collect::<rusqlite::Result<_>>()
            .map_err(sql_error)?;
        let mut seqs = Vec::new();
        for run in runs {
            find_in_run(conn, run, ws, hash, &mut seqs)?;
        }
        Ok((seqs, through))
    };
    if !conn.is_autocommit() {
        return read(conn);
    }
    conn.execute_batch("BEGIN").map_err(sql_error)?;
    let out = read(conn);
    let _ = conn.execute_batch("COMMIT");
    out
}

/// A blocked Bloom filter over `(workspace, hash)`: every probe of an id falls in one 64-byte
/// block, so a lookup costs one cache miss. It may say yes to an id it does not hold (rarely),
/// never no to one it does.
pub(crate) struct Bloom {
    blocks: Vec<[u64; 8]>,
}

const PROBES: u32 = 7;

impl Bloom {
    pub(crate) fn with_capacity(ids: usize) -> Bloom {
        Bloom { blocks: vec![[0; 8]; (ids * BITS_PER_ID).div_ceil(512).max(1)] }
    }

    /// The block and, packed 9 bits each, the bits within it.
    fn place(&self, ws: i64, hash: i64) -> (usize, u64) {
        // The hash is already uniform (part of a SHA-256); the workspace only needs to move it.
        let h = (hash as u64) ^ (ws as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let block = ((h as u128 * self.blocks.len() as u128) >> 64) as usize;
        let bits = (h ^ (h >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (block, bits)
    }

    pub(crate) fn add(&mut self, ws: i64, hash: i64) {
        let (block, bits) = self.place(ws, hash);
        let block = &mut self.blocks[block];
        for i in 0..PROBES {
            let bit = (bits >> (9 * i)) & 511;
            block[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// Adds every id `other` holds; both have one size.
    fn join(&mut self, other: &Bloom) {
        debug_assert_eq!(self.blocks.len(), other.blocks.len(), "filters of one size");
        for (block, theirs) in self.blocks.iter_mut().zip(&other.blocks) {
            for (word, t) in block.iter_mut().zip(theirs) {
                *word |= t;
            }
        }
    }

    pub(crate) fn may_hold(&self, ws: i64, hash: i64) -> bool {
        let (block, bits) = self.place(ws, hash);
        let block = &self.blocks[block];
        (0..PROBES).all(|i| {
            let bit = (bits >> (9 * i)) & 511;
            block[(bit / 64) as usize] & (1 << (bit % 64)) != 0
        })
    }

    fn to_bytes(&self) -> Vec<u8> {
        self.blocks.iter().flatten().flat_map(|w| w.to_le_bytes()).collect()
    }

    fn from_bytes(bytes: &[u8]) -> Result<Bloom> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(64) {
            return Err(store::StoreError::Backend(format!("corrupt id filter of {} bytes", bytes.len())));
        }
        let words: Vec<u64> =
            bytes.chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes"))).collect();
        Ok(Bloom { blocks: words.chunks_exact(8).map(|b| b.try_into().expect("8 words")).collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::id_hash;

    #[test]
    fn the_filter_holds_what_was_added_and_little_else() {
        let mut f = Bloom::with_capacity(30_000);
        let hash = |i: i64| id_hash(&format!("m-{i}"));
        for i in 0..30_000 {
            f.add(1, hash(i));
        }
        assert!((0..30_000).all(|i| f.may_hold(1, hash(i))));
        let wrong = (0..100_000).filter(|i| f.may_hold(1, hash(-1 - i))).count();
        assert!(wrong < 2_500, "{wrong} of 100,000 absent ids may be held");
        let other_workspace = (0..10_000).filter(|i| f.may_hold(2, hash(*i))).count();
        assert!(other_workspace < 250, "{other_workspace}");
        let copy = Bloom::from_bytes(&f.to_bytes()).unwrap();
        assert!((0..30_000).all(|i| copy.may_hold(1, hash(i))));
        assert!(Bloom::from_bytes(&[0; 63]).is_err());
    }

    #[test]
    fn size_classes_grow_by_the_fanout() {
        assert_eq!(class(1, 100), 0);
        assert_eq!(class(100, 100), 0);
        assert_eq!(class(101, 100), 1);
        assert_eq!(class(400, 100), 1);
        assert_eq!(class(401, 100), 2);
    }

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../migrations/0001_init.sql")).unwrap();
        conn
    }

    fn ids(from: i64, to: i64, ws: i64) -> Vec<Id> {
        let mut ids: Vec<Id> = (from..to).map(|i| (ws, id_hash(&format!("m-{i}")), i)).collect();
        ids.sort_unstable();
        ids
    }

    fn flush(conn: &Connection, runs: &mut Runs, ids: Vec<Id>) {
        let count = ids.len();
        runs.start_flush(vec![Box::new(ids.into_iter())], count);
        while runs.flushing() {
            runs.step(conn).unwrap();
        }
    }

    fn find(conn: &Connection, runs: &Runs, ws: i64, i: i64) -> Vec<i64> {
        let hash = id_hash(&format!("m-{i}"));
        let mut seqs = Vec::new();
        for run in runs.may_hold(ws, hash).collect::<Vec<_>>() {
            find_in_run(conn, run, ws, hash, &mut seqs).unwrap();
        }
        seqs
    }

    #[test]
    fn merged_runs_keep_every_id_and_their_pages_are_freed() {
        let conn = db();
        let mut runs = Runs::load(&conn, 1_000).unwrap();
        for k in 0..FANOUT as i64 {
            flush(&conn, &mut runs, ids(k * 1_000 + 1, (k + 1) * 1_000 + 1, 1));
        }
        // A colliding hash: two seqs under one key, in different runs.
        let extra = (1, id_hash("m-7"), 99_999);
        flush(&conn, &mut runs, vec![extra]);
        assert_eq!(runs.live(), FANOUT + 1);
        assert!(runs.has_work(), "{FANOUT} runs of one class are due a merge");
        while runs.has_work() {
            runs.step(&conn).unwrap();
        }
        assert_eq!(runs.live(), 2, "the four merged into one; the small one waits");
        for i in (1..=4_000).step_by(37).filter(|&i| i != 7) {
            assert_eq!(find(&conn, &runs, 1, i), vec![i], "m-{i}");
        }
        let mut seven = find(&conn, &runs, 1, 7);
        seven.sort();
        assert_eq!(seven, vec![7, 99_999]);
        assert!(find(&conn, &runs, 2, 5).is_empty(), "another workspace's id");
        assert!(find(&conn, &runs, 1, 4_001).is_empty());
        let (pages, states): (i64, String) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM id_pages WHERE run NOT IN (SELECT run FROM id_runs WHERE state = 'live')),
                        (SELECT group_concat(state) FROM id_runs)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((pages, states.as_str()), (0, "live,live"), "dead runs are gone");
        assert_eq!(stored_seqs(&conn, 1, id_hash("m-4000")).unwrap(), (vec![4_000], 99_999));
        // What is in the database is what a restart sees.
        let again = Runs::load(&conn, 1_000).unwrap();
        assert_eq!(find(&conn, &again, 1, 3_999), vec![3_999]);
    }

    #[test]
    fn a_run_packed_in_parts_holds_every_id_once_in_order() {
        let conn = db();
        let mut runs = Runs::load(&conn, 1_000).unwrap();
        // Two workspaces' ids, cut into three parts in order (one cut inside a workspace).
        let mut all = ids(1, 20_001, 1);
        all.extend(ids(20_001, 30_001, 2));
        let count = all.len();
        let mut first = all;
        let mut second = first.split_off(12_345);
        let third = second.split_off(second.len() - 9_000);
        let parts: Vec<Box<dyn Iterator<Item = Id> + Send>> =
            vec![Box::new(first.into_iter()), Box::new(second.into_iter()), Box::new(third.into_iter())];
        runs.start_flush(parts, count);
        let mut flushed = None;
        while runs.flushing() {
            flushed = runs.step(&conn).unwrap().or(flushed);
        }
        assert_eq!(flushed.map(|f| f.through), Some(30_000), "the largest seq of any part");
        assert_eq!(runs.live(), 1);
        // Each part's filter was joined: every id of every part is found, once.
        for i in (1..=30_000).step_by(7) {
            let ws = if i <= 20_000 { 1 } else { 2 };
            assert_eq!(find(&conn, &runs, ws, i), vec![i], "m-{i}");
        }
        assert!(find(&conn, &runs, 1, 25_000).is_empty(), "another workspace's id");
        // The pages, read in order, are the ids in order.
        let (ids_held, in_order): (i64, bool) = conn
            .query_row(
                "SELECT (SELECT ids FROM id_runs),
                        (SELECT count(*) = 0 FROM (SELECT ws, hash, lag(ws) OVER w AS pws, lag(hash) OVER w AS ph
                           FROM id_pages WINDOW w AS (ORDER BY id)) WHERE (pws, ph) >= (ws, hash))",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((ids_held, in_order), (30_000, true));
    }

    #[test]
    fn lookups_through_the_page_cache_find_what_the_pages_hold_reading_each_once() {
        let conn = db();
        let mut runs = Runs::load(&conn, 1_000).unwrap();
        flush(&conn, &mut runs, ids(1, 20_001, 1));
        // A colliding hash: two seqs under one key, in another run.
        flush(&conn, &mut runs, vec![(1, id_hash("m-7"), 99_999)]);
        let pages: i64 = conn.query_row("SELECT count(*) FROM id_pages", [], |r| r.get(0)).unwrap();
        let mut cache = PageCache::default();
        // Asked in hash order, as an append asks (then in no order, which reads more).
        let mut asked: Vec<i64> = (1..=20_000).collect();
        asked.sort_by_key(|i| id_hash(&format!("m-{i}")));
        for round in 0..3 {
            if round == 1 {
                asked.sort_by_key(|i| (i * 7_919) % 20_000);
            }
            for &i in &asked {
                let hash = id_hash(&format!("m-{i}"));
                let mut seqs = Vec::new();
                for run in runs.may_hold(1, hash).collect::<Vec<_>>() {
                    cache.find_in_run(&conn, run, 1, hash, &mut seqs).unwrap();
                }
                seqs.sort();
                let expected = if i == 7 { vec![7, 99_999] } else { vec![i] };
                assert_eq!(seqs, expected, "m-{i}, round {round}");
                // Another workspace's id of the same hash is not found.
                let mut other = Vec::new();
                for run in runs.may_hold(2, hash).collect::<Vec<_>>() {
                    cache.find_in_run(&conn, run, 2, hash, &mut other).unwrap();
                }
                assert!(other.is_empty());
            }
            if round == 0 {
                // In hash order, each page was read once (and again after a false positive of
                // a filter for the other workspace, which reads another page of the run).
                assert!(cache.read as i64 <= pages + 80, "{} pages read for {pages}", cache.read);
            }
        }
        let before = cache.read;
        cache.clear();
        let mut seqs = Vec::new();
        cache.find_in_run(&conn, 1, 1, id_hash("m-5"), &mut seqs).unwrap();
        assert_eq!((seqs, cache.read), (vec![5], before + 1), "read again once cleared");
    }

    #[test]
    fn a_build_cut_short_is_deleted_at_the_next_start() {
        let conn = db();
        let mut runs = Runs::load(&conn, 100_000).unwrap();
        runs.start_flush(vec![Box::new(ids(1, 60_000, 1).into_iter())], 59_999);
        runs.step(&conn).unwrap();
        assert!(runs.flushing(), "60,000 ids take more than one step");
        let mut restarted = Runs::load(&conn, 100_000).unwrap();
        assert_eq!(restarted.live(), 0);
        assert!(restarted.has_work());
        while restarted.has_work() {
            restarted.step(&conn).unwrap();
        }
        let left: i64 = conn.query_row("SELECT count(*) FROM id_pages", [], |r| r.get(0)).unwrap();
        assert_eq!(left, 0);
        assert_eq!(crate::ids::flushed_through(&conn).unwrap(), 0, "nothing was flushed");
    }
}
