//! Reading an import file on every core. One thread reads the file (inflating it if it is
//! gzipped) and cuts the text into chunks of whole CSV records; workers parse the chunks; the
//! caller gets their rows back in file order. The check keeps the chunks it read, up to
//! [`KEEP_TEXT`] bytes of text, so that storing parses them again without reading and
//! inflating the file a second time.
//!
//! A chunk ends at a line end outside quotes: CSV escapes a quote by doubling it, so a line
//! end is between records exactly when the quotes before it are even in number. Each chunk
//! knows the line it starts on, so errors name the line of the file.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};

use super::events::{self, RowKeys};
use super::{Columns, Options, Parser, Record, describe};

/// Text per chunk: a few thousand rows.
const CHUNK: usize = 256 << 10;
/// The most decompressed text the check keeps for storing; a larger file is read again.
const KEEP_TEXT: usize = 1 << 30;

/// Whole records of the file, as text.
#[derive(Clone)]
pub(super) struct Chunk {
    index: usize,
    /// The line of the file its first record starts on.
    line: u64,
    text: Arc<Vec<u8>>,
    /// Bytes of the file read when it was cut, for progress.
    read: u64,
}

/// What the check found, for storing.
pub(super) struct Checked {
    header: csv::StringRecord,
    /// The keys of event rows with copies in the file.
    repeated: Arc<foldhash::HashSet<u64>>,
    /// The file's chunks, unless it was too large to keep.
    chunks: Option<Vec<Chunk>>,
}

/// Counts the `"` in `text`.
fn quotes(text: &[u8]) -> usize {
    memchr::memchr_iter(b'"', text).count()
}

/// Where the last record of `text` that is followed by a line end ends (after the `\n`), if
/// any; `text` starts at a record's start.
fn last_boundary(text: &[u8]) -> Option<usize> {
    let total = quotes(text);
    let mut end = text.len();
    while let Some(nl) = memchr::memrchr(b'\n', &text[..end]) {
        if (total - quotes(&text[nl..])) % 2 == 0 {
            return Some(nl + 1);
        }
        end = nl;
    }
    None
}

/// Where the first record of `text` ends (after its `\n`), if a line end follows it.
fn first_boundary(text: &[u8]) -> Option<usize> {
    let mut odd = false;
    for at in memchr::memchr2_iter(b'"', b'\n', text) {
        if text[at] == b'"' {
            odd = !odd;
        } else if !odd {
            return Some(at + 1);
        }
    }
    None
}

/// Reads a file, through gzip if it starts like gzip, counting the bytes read from disk.
struct Source {
    reader: Box<dyn Read + Send>,
    read: Arc<AtomicU64>,
}

struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn open(path: &Path) -> Result<Source> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let read = Arc::new(AtomicU64::new(0));
    let mut buffered = BufReader::with_capacity(1 << 16, Counting { inner: file, read: read.clone() });
    let gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read + Send> =
        if gzip { Box::new(flate2::bufread::MultiGzDecoder::new(buffered)) } else { Box::new(buffered) };
    Ok(Source { reader, read })
}

/// Reads up to a chunk more of the file onto `pending`; true at the end of the file.
fn read_more(pending: &mut Vec<u8>, source: &mut Source, file: &str) -> Result<bool> {
    let at = pending.len();
    pending.resize(at + CHUNK, 0);
    let n = source.reader.read(&mut pending[at..]).with_context(|| format!("reading {file}"))?;
    pending.truncate(at + n);
    Ok(n == 0)
}

/// Reads `path` and sends its records after the header, cut into chunks, in order, until the
/// file ends or the receivers are gone.
fn cut(path: &Path, file: &str, chunks: &SyncSender<Chunk>) -> Result<()> {
    let mut source = open(path)?;
    let mut pending: Vec<u8> = Vec::with_capacity(2 * CHUNK);
    let mut eof = false;
    // The header (the first record) is read by `header_of`: skip it.
    let header_end = loop {
        if let Some(end) = first_boundary(&pending) {
            break end;
        }
        if eof {
            break pending.len();
        }
        eof = read_more(&mut pending, &mut source, file)?;
    };
    let mut line = 1 + memchr::memchr_iter(b'\n', &pending[..header_end]).count() as u64;
    pending.drain(..header_end);
    let mut index = 0;
    loop {
        while !eof && pending.len() < CHUNK {
            eof = read_more(&mut pending, &mut source, file)?;
        }
        let end = if eof {
            pending.len()
        } else {
            match last_boundary(&pending) {
                Some(end) => end,
                // A record longer than what is read: read on.
                None => {
                    eof = read_more(&mut pending, &mut source, file)?;
                    continue;
                }
            }
        };
        if end > 0 {
            let rest = pending[end..].to_vec();
            pending.truncate(end);
            let text = std::mem::replace(&mut pending, rest);
            let lines = memchr::memchr_iter(b'\n', &text).count() as u64;
            let chunk = Chunk { index, line, text: Arc::new(text), read: source.read.load(Ordering::Relaxed) };
            if chunks.send(chunk).is_err() {
                break;
            }
            line += lines;
            index += 1;
        }
        if eof {
            break;
        }
    }
    Ok(())
}

/// Progress on stderr, every 200,000 rows.
struct Progress {
    phase: &'static str,
    rows: AtomicU64,
    /// Of the file: bytes read and its size.
    read: AtomicU64,
    size: u64,
    started: std::time::Instant,
}

impl Progress {
    fn new(phase: &'static str, path: &Path) -> Progress {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Progress { phase, rows: AtomicU64::new(0), read: AtomicU64::new(0), size, started: std::time::Instant::now() }
    }

    fn add(&self, rows: u64, read: u64) {
        self.read.fetch_max(read, Ordering::Relaxed);
        let before = self.rows.fetch_add(rows, Ordering::Relaxed);
        if (before + rows) / 200_000 > before / 200_000 {
            let done = self.read.load(Ordering::Relaxed) as f64 / self.size.max(1) as f64;
            eprint!(
                "\r{}: {} rows, {:.0}% of the file, {:.0} s",
                self.phase,
                before + rows,
                (done * 100.0).min(100.0),
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    fn done(&self) {
        let rows = self.rows.load(Ordering::Relaxed);
        if rows >= 200_000 {
            eprintln!("\r{}: {rows} rows, 100% of the file, {:.0} s", self.phase, self.started.elapsed().as_secs_f64());
        }
    }
}

/// How many threads parse.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8)
}

/// Parses every row of `chunk` with `parser`, passing each record and whether its content
/// may have copies before it. Stops at the first bad row.
fn parse_chunk(
    parser: &mut Parser<'_>,
    chunk: &Chunk,
    width: usize,
    mut each: impl FnMut(Record, Option<u64>),
) -> Result<u64> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(&chunk.text[..]);
    let mut row = csv::StringRecord::new();
    let mut rows = 0;
    loop {
        let line_of = |p: Option<&csv::Position>| p.map_or(chunk.line + rows, |p| chunk.line + p.line() - 1);
        match reader.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => bail!("{} line {}: {}", parser.file, line_of(e.position()), describe(&e)),
        }
        let line = line_of(row.position());
        if row.len() != width {
            bail!("{} line {line}: {} fields where the header has {width}", parser.file, row.len());
        }
        let record = parser.parse(&row, line)?;
        each(record, parser.keys.take_repeated());
        rows += 1;
    }
    Ok(rows)
}

/// The chunks to parse: those kept by the check, or the file read again.
enum Feed<'a> {
    Kept(&'a [Chunk]),
    File,
}

/// Runs `work` on every chunk on [`workers`] threads, the chunks coming from `feed`;
/// `work` gets the worker's number, and once it returns false that worker skips the rest.
/// With `keep`, the chunks read from the file are kept there (unless there are too many).
fn fan_out(
    path: &Path,
    file: &str,
    feed: Feed<'_>,
    keep: Option<&Mutex<Option<Vec<Chunk>>>>,
    work: impl Fn(usize, Chunk) -> bool + Sync,
) -> Result<()> {
    let (tx, rx) = sync_channel::<Chunk>(2 * workers());
    let rx = Mutex::new(rx);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..workers())
            .map(|w| {
                let (rx, work) = (&rx, &work);
                s.spawn(move || {
                    // After a failure the rest is received and dropped, so the feed ends.
                    let mut skip = false;
                    loop {
                        let Ok(chunk) = rx.lock().expect("chunk queue lock").recv() else { break };
                        skip = skip || !work(w, chunk);
                    }
                })
            })
            .collect();
        let cutting = match feed {
            Feed::Kept(chunks) => {
                for c in chunks {
                    if tx.send(c.clone()).is_err() {
                        break;
                    }
                }
                drop(tx);
                Ok(())
            }
            Feed::File => {
                // Kept chunks are also forwarded, so the cutting runs through a relay.
                let (cut_tx, cut_rx): (SyncSender<Chunk>, Receiver<Chunk>) = sync_channel(2);
                let cutter = s.spawn(move || cut(path, file, &cut_tx));
                let mut kept = Some(Vec::new());
                let mut kept_bytes = 0usize;
                for chunk in cut_rx {
                    if let (Some(list), Some(_)) = (&mut kept, keep) {
                        kept_bytes += chunk.text.len();
                        if kept_bytes <= KEEP_TEXT {
                            list.push(chunk.clone());
                        } else {
                            kept = None;
                        }
                    }
                    if tx.send(chunk).is_err() {
                        break;
                    }
                }
                drop(tx);
                if let Some(keep) = keep {
                    *keep.lock().expect("kept chunks lock") = kept;
                }
                cutter.join().map_err(|_| anyhow!("reading {file} panicked"))?
            }
        };
        for t in threads {
            t.join().map_err(|_| anyhow!("parsing {file} panicked"))?;
        }
        cutting
    })
}

/// The first error in file order, among those of chunks parsed so far.
struct FirstError(Mutex<Option<(usize, anyhow::Error)>>, AtomicUsize);

impl FirstError {
    fn new() -> FirstError {
        FirstError(Mutex::new(None), AtomicUsize::new(usize::MAX))
    }

    /// Whether chunk `index` can still matter: it is before every chunk that failed.
    fn matters(&self, index: usize) -> bool {
        index < self.1.load(Ordering::Relaxed)
    }

    fn set(&self, index: usize, e: anyhow::Error) {
        let mut first = self.0.lock().expect("error lock");
        if first.as_ref().is_none_or(|(i, _)| index < *i) {
            *first = Some((index, e));
            self.1.store(index, Ordering::Relaxed);
        }
    }

    fn take(self) -> Option<anyhow::Error> {
        self.0.into_inner().expect("error lock").map(|(_, e)| e)
    }
}

/// Checks every row of the file on all cores; an error names the first bad line.
pub(super) fn check(options: &Options) -> Result<Checked> {
    let file = options.file.display().to_string();
    let header = header_of(&options.file, &file)?;
    let columns = Columns::new(options.kind, &header, &options.columns, &file)?;
    let width = header.len();
    let now = chrono::Utc::now();
    let parsers: Vec<Mutex<Parser<'_>>> = (0..workers())
        .map(|_| Mutex::new(Parser::new(options, &file, columns.clone(), now, true, RowKeys::Collect(Vec::new()))))
        .collect();
    let progress = Progress::new("checking", &options.file);
    let errors = FirstError::new();
    let kept = Mutex::new(None);
    fan_out(&options.file, &file, Feed::File, Some(&kept), |w, chunk| {
        if errors.matters(chunk.index) {
            let mut parser = parsers[w].lock().expect("parser lock");
            match parse_chunk(&mut parser, &chunk, width, |_, _| {}) {
                Ok(n) => progress.add(n, chunk.read),
                Err(e) => errors.set(chunk.index, e),
            }
        }
        true
    })?;
    if let Some(e) = errors.take() {
        if progress.rows.load(Ordering::Relaxed) >= 200_000 {
            eprintln!();
        }
        return Err(e);
    }
    progress.done();
    let mut keys = Vec::new();
    for p in parsers {
        if let RowKeys::Collect(k) = p.into_inner().expect("parser lock").keys {
            keys.extend(k);
        }
    }
    Ok(Checked {
        header,
        repeated: Arc::new(events::repeated(keys)),
        chunks: kept.into_inner().expect("kept chunks lock"),
    })
}

/// The file's header record, read on its own.
fn header_of(path: &Path, file: &str) -> Result<csv::StringRecord> {
    let source = open(path)?;
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(source.reader);
    let mut header = csv::StringRecord::new();
    if let Err(e) = reader.read_record(&mut header) {
        bail!("{file}: reading the header: {}", describe(&e));
    }
    Ok(header)
}

/// Parses every row of a checked file on all cores and calls `each` with its records in file
/// order, a chunk at a time, copies of a row numbered in file order.
pub(super) fn read(
    options: &Options,
    checked: Checked,
    mut each: impl FnMut(Vec<Record>) -> Result<()>,
) -> Result<u64> {
    let file = options.file.display().to_string();
    let progress = Progress::new("importing", &options.file);
    let now = chrono::Utc::now();
    let columns = Columns::new(options.kind, &checked.header, &options.columns, &file)?;
    let width = checked.header.len();
    let parsers: Vec<Mutex<Parser<'_>>> = (0..workers())
        .map(|_| {
            let keys = RowKeys::Number { repeated: checked.repeated.clone(), last: None };
            Mutex::new(Parser::new(options, &file, columns.clone(), now, false, keys))
        })
        .collect();
    let errors = FirstError::new();
    // Parsed chunks go back in order through here.
    type Parsed = (usize, Vec<Record>, Vec<(usize, u64)>);
    let (done_tx, done_rx) = sync_channel::<Parsed>(2 * workers());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let feed = match &checked.chunks {
        Some(chunks) => Feed::Kept(chunks),
        None => Feed::File,
    };
    let mut rows = 0u64;
    let mut failed: Option<anyhow::Error> = None;
    let (parsers, first_error, progress, stop, file_name) = (&parsers, &errors, &progress, &stop, &file);
    std::thread::scope(|s| {
        let parsing = s.spawn(move || {
            fan_out(&options.file, file_name, feed, None, |w, chunk| {
                if stop.load(Ordering::Relaxed) || !first_error.matters(chunk.index) {
                    return false;
                }
                let mut parser = parsers[w].lock().expect("parser lock");
                let mut records = Vec::with_capacity(CHUNK / 32);
                let mut copies = Vec::new();
                let parsed = parse_chunk(&mut parser, &chunk, width, |record, repeated| {
                    if let Some(key) = repeated {
                        copies.push((records.len(), key));
                    }
                    records.push(record);
                });
                match parsed {
                    Ok(n) => {
                        progress.add(n, chunk.read);
                        done_tx.send((chunk.index, records, copies)).is_ok()
                    }
                    Err(e) => {
                        // The check passed, so this is the file changing under the import.
                        first_error.set(chunk.index, e);
                        false
                    }
                }
            })
        });
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0usize;
        let mut seen: foldhash::HashMap<u64, u32> = foldhash::HashMap::default();
        for parsed in done_rx {
            waiting.insert(parsed.0, parsed);
            while let Some((_, mut records, copies)) = waiting.remove(&next) {
                for (i, key) in copies {
                    let n = seen.entry(key).or_default();
                    *n += 1;
                    if let (Record::Event(e), true) = (&mut records[i], *n > 1) {
                        events::renumber(e, *n);
                    }
                }
                rows += records.len() as u64;
                next += 1;
                if failed.is_none()
                    && let Err(e) = each(records)
                {
                    failed = Some(e);
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
        match parsing.join() {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(anyhow!("parsing {file} panicked")),
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if let Some(e) = errors.take() {
        return Err(e.context("the file changed after it was checked"));
    }
    progress.done();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_end_between_records() {
        let text = b"a,\"x\ny\",1\nb,2,3\nc,\"\"\"q\n\",4\n";
        // The line ends inside quotes are not boundaries.
        assert_eq!(first_boundary(text), Some(10));
        assert_eq!(last_boundary(text), Some(text.len()));
        assert_eq!(last_boundary(&text[..text.len() - 3]), Some(16));
        assert_eq!(last_boundary(b"a,\"x\ny"), None);
        assert_eq!(first_boundary(b"a,b"), None);
    }
}
