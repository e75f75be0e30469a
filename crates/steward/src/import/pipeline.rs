//! Reading an import file on every core, CSV or JSON lines alike. One thread reads the file
//! (inflating it if it is gzipped) and cuts the text into chunks of whole records; workers
//! parse the chunks; the caller gets their rows back in file order. The check keeps, up to
//! [`KEEP_TEXT`] bytes, what storing needs without reading and inflating the file a second
//! time: for an events file each chunk's rows as it parsed them ([`KeptRows`]), so that
//! they are parsed once; for other kinds the chunks' text, parsed again.
//!
//! A CSV chunk ends at a line end outside quotes: CSV escapes a quote by doubling it, so a
//! line end is between records exactly when the quotes before it are even in number. A JSON
//! line never holds a raw line end, so a JSON-lines chunk ends at any. Each chunk knows the
//! line it starts on, so errors name the line of the file.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};

use super::events::{self, KeptRows, RowKeys};
use super::{Columns, CsvRow, Format, Options, Parser, Record, check_mapping, describe, format_of, jsonl, progress};

/// Text per chunk: a few thousand rows.
const CHUNK: usize = 256 << 10;
/// The most the check keeps for storing (decompressed text, or parsed event rows); a larger
/// file is read again.
const KEEP_TEXT: usize = 1 << 30;

/// Whole records of the file, as text or as the check parsed them.
#[derive(Clone)]
pub(super) struct Chunk {
    index: usize,
    /// The line of the file its first record starts on.
    line: u64,
    body: Body,
    /// Bytes of the file read when it was cut, for progress.
    read: u64,
}

#[derive(Clone)]
enum Body {
    Text(Arc<Vec<u8>>),
    /// Event rows the check parsed (events files only).
    Rows(Arc<KeptRows>),
}

/// How a file's rows are laid out.
#[derive(Clone)]
enum Layout {
    /// After a header, whose columns say what each field is.
    Csv {
        columns: Columns,
        width: usize,
    },
    JsonLines,
}

/// What the check found, for storing.
pub(super) struct Checked {
    layout: Layout,
    /// The rows the file holds.
    rows: u64,
    /// The keys of event rows with copies in the file.
    repeated: Arc<foldhash::HashSet<u64>>,
    /// The file's chunks, unless it was too large to keep.
    chunks: Option<Vec<Chunk>>,
}

impl Checked {
    /// The rows the file holds.
    pub(super) fn rows(&self) -> u64 {
        self.rows
    }
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
        if (total - quotes(&text[nl..])).is_multiple_of(2) {
            return Some(nl + 1);
        }
        end = nl;
    }
    None
}

/// Where the last whole record of `text` in `format` ends (after its line end), if any.
fn last_record_end(format: Format, text: &[u8]) -> Option<usize> {
    match format {
        Format::Csv => last_boundary(text),
        Format::JsonLines => memchr::memrchr(b'\n', text).map(|nl| nl + 1),
    }
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
    reader: Box<dyn BufRead + Send>,
    format: Format,
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
    let mut reader: Box<dyn BufRead + Send> = if gzip {
        Box::new(BufReader::with_capacity(1 << 16, flate2::bufread::MultiGzDecoder::new(buffered)))
    } else {
        Box::new(buffered)
    };
    let start = reader.fill_buf().with_context(|| format!("{}: reading", path.display()))?;
    let format = format_of(path, start)?;
    Ok(Source { reader, format, read })
}

/// Reads up to a chunk more of the file onto `pending`; true at the end of the file. Read
/// into the list's spare room, which is not zeroed first (that was as many bytes written as
/// the file has, for nothing).
fn read_more(pending: &mut Vec<u8>, source: &mut Source, file: &str) -> Result<bool> {
    pending.reserve(CHUNK);
    let n = (&mut source.reader).take(CHUNK as u64).read_to_end(pending).with_context(|| format!("reading {file}"))?;
    Ok(n == 0)
}

/// Reads `path` and sends its records (after the header of a CSV file), cut into chunks, in
/// order, until the file ends or the receivers are gone.
fn cut(path: &Path, file: &str, chunks: &SyncSender<Chunk>) -> Result<()> {
    let mut source = open(path)?;
    let format = source.format;
    let mut pending: Vec<u8> = Vec::with_capacity(2 * CHUNK);
    let mut eof = false;
    // A CSV header (the first record) is read by `layout`: skip it.
    let header_end = loop {
        if format == Format::JsonLines {
            break 0;
        }
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
            match last_record_end(format, &pending) {
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
            let read = source.read.load(Ordering::Relaxed);
            let chunk = Chunk { index, line, body: Body::Text(Arc::new(text)), read };
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

/// How many threads parse.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8)
}

/// Parses every row of `chunk` with `parser`, passing each record and whether its content
/// may have copies before it. Stops at the first bad row.
fn parse_chunk(
    parser: &mut Parser<'_>,
    chunk: &Chunk,
    layout: &Layout,
    mut each: impl FnMut(Record, &[(usize, u64)]),
) -> Result<u64> {
    let text = match &chunk.body {
        Body::Text(text) => text,
        Body::Rows(_) => unreachable!("kept rows are stored as they are, not parsed"),
    };
    let mut rows = 0;
    let mut parsed = |parser: &mut Parser<'_>, record: Record| {
        match parser.keys.take_repeated() {
            Some(key) => each(record, &[(0, key)]),
            None => each(record, &[]),
        }
        rows += 1;
    };
    let plain = match layout {
        Layout::Csv { .. } => plain_csv(text),
        Layout::JsonLines => None,
    };
    match (layout, plain) {
        // Most exports quote nothing: their lines are split at commas, with no reader.
        (Layout::Csv { columns, width }, Some(text)) => {
            let mut fields: Vec<&str> = Vec::with_capacity(*width);
            for (line, record) in plain_records(text, chunk.line) {
                fields.clear();
                split_commas(record, &mut fields);
                if fields.len() != *width {
                    bail!("{} line {line}: {} fields where the header has {width}", parser.file, fields.len());
                }
                let row = parser.parse(&CsvRow { columns, record: &fields }, line)?;
                parsed(parser, row);
            }
        }
        (Layout::Csv { columns, width }, None) => {
            let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(&text[..]);
            let mut record = csv::StringRecord::new();
            // The reader counts records' lines but not blank ones: lines are counted here.
            let mut lines = Lines { text, at: 0, line: chunk.line };
            loop {
                let at_fault = reader.read_record(&mut record);
                let line = match at_fault.as_ref().err().map_or(record.position(), csv::Error::position) {
                    Some(p) => lines.record(p.byte() as usize),
                    None => lines.line,
                };
                match at_fault {
                    Ok(false) => break,
                    Ok(true) => {}
                    Err(e) => bail!("{} line {line}: {}", parser.file, describe(&e)),
                }
                if record.len() != *width {
                    bail!("{} line {line}: {} fields where the header has {width}", parser.file, record.len());
                }
                let row = parser.parse(&CsvRow { columns, record: &record }, line)?;
                parsed(parser, row);
            }
        }
        (Layout::JsonLines, _) => {
            for (line, text) in (chunk.line..).zip(text.split(|b| *b == b'\n')) {
                if let Some(row) = jsonl::row(text, parser, line)? {
                    let row = parser.parse(&row, line)?;
                    parsed(parser, row);
                }
            }
        }
    }
    Ok(rows)
}

/// A chunk's text when splitting its lines at commas reads them as a CSV reader would: no
/// quotes, no carriage returns (which end records too), and valid UTF-8.
fn plain_csv(text: &[u8]) -> Option<&str> {
    if memchr::memchr2(b'"', b'\r', text).is_some() {
        return None;
    }
    std::str::from_utf8(text).ok()
}

/// Puts the fields of `record` (a line [`plain_csv`] accepted) in `fields`: what
/// `record.split(',')` gives, found by bytes (a comma is one byte, never part of another
/// character). A loop over the bytes rather than a search per comma: fields are a few bytes
/// long, shorter than what a vector search needs to pay for its start.
fn split_commas<'a>(record: &'a str, fields: &mut Vec<&'a str>) {
    let mut start = 0;
    for (at, &b) in record.as_bytes().iter().enumerate() {
        if b == b',' {
            fields.push(&record[start..at]);
            start = at + 1;
        }
    }
    fields.push(&record[start..]);
}

/// Line numbers of places in a chunk, asked in order.
struct Lines<'a> {
    text: &'a [u8],
    at: usize,
    /// The line of `at`.
    line: u64,
}

impl Lines<'_> {
    /// The line of the record a reader says starts at byte `at`: the reader's position is
    /// before the blank lines it skipped.
    fn record(&mut self, at: usize) -> u64 {
        let blank =
            self.text.get(at..).map_or(0, |rest| rest.iter().take_while(|b| matches!(b, b'\n' | b'\r')).count());
        self.of(at + blank)
    }

    /// The line byte `to` is on: each `\n`, or `\r` not before one, before it ends one.
    fn of(&mut self, to: usize) -> u64 {
        let to = to.min(self.text.len());
        if to > self.at {
            let ends = self.text[self.at..to]
                .iter()
                .enumerate()
                .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && self.text.get(self.at + i + 1) != Some(&b'\n')))
                .count();
            self.line += ends as u64;
            self.at = to;
        }
        self.line
    }
}

/// The records of a chunk [`plain_csv`] accepted, each with its line: blank lines are no
/// records, as for a CSV reader. The chunk is searched once for its line ends.
fn plain_records(text: &str, line: u64) -> impl Iterator<Item = (u64, &str)> {
    let mut ends = memchr::memchr_iter(b'\n', text.as_bytes());
    let (mut start, mut line, mut done) = (0, line, false);
    std::iter::from_fn(move || {
        while !done {
            let end = ends.next().unwrap_or_else(|| {
                done = true;
                text.len()
            });
            let (from, at) = (start, line);
            start = end + 1;
            line += 1;
            if end > from {
                return Some((at, &text[from..end]));
            }
        }
        None
    })
}

/// The chunks to parse: those kept by the check, or the file read again.
enum Feed {
    /// Each chunk the check kept, given away.
    Kept(Vec<Chunk>),
    File,
}

/// Runs `work` on every chunk on [`workers`] threads, the chunks coming from `feed`;
/// `work` gets the worker's number, and once it returns false that worker skips the rest.
/// With `keep`, the chunks read from the file are kept there (unless there are too many).
fn fan_out(
    path: &Path,
    file: &str,
    feed: Feed,
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
                    if tx.send(c).is_err() {
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
                    if let (Some(list), Some(_), Body::Text(text)) = (&mut kept, keep, &chunk.body) {
                        kept_bytes += text.len();
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
    let layout = layout(options, &file)?;
    let now = chrono::Utc::now();
    let parsers: Vec<Mutex<Parser<'_>>> = (0..workers())
        .map(|_| Mutex::new(Parser::new(options, &file, now, true, RowKeys::Collect(events::KeyBuckets::new()))))
        .collect();
    let progress = progress::Bar::new("checking", None, &options.file);
    let errors = FirstError::new();
    // The text of the file's chunks, or for an events file the rows parsed from them.
    let compact = parsers[0].lock().expect("parser lock").compact.is_some();
    let kept = Mutex::new(None);
    let parsed: Mutex<Option<Vec<Chunk>>> = Mutex::new(compact.then(Vec::new));
    let parsed_bytes = AtomicUsize::new(0);
    fan_out(&options.file, &file, Feed::File, (!compact).then_some(&kept), |w, chunk| {
        if errors.matters(chunk.index) {
            let mut parser = parsers[w].lock().expect("parser lock");
            if let (Some(rows), Body::Text(text)) = (parser.compact.as_mut(), &chunk.body) {
                rows.reserve_for(text);
            }
            match parse_chunk(&mut parser, &chunk, &layout, |_, _| {}) {
                Ok(n) => progress.add(n, chunk.read),
                Err(e) => errors.set(chunk.index, e),
            }
            if let Some(mut rows) = parser.compact.as_mut().map(|rows| std::mem::replace(rows, KeptRows::new(now))) {
                rows.fit();
                let bytes = parsed_bytes.fetch_add(rows.bytes(), Ordering::Relaxed) + rows.bytes();
                let mut parsed = parsed.lock().expect("parsed chunks lock");
                match parsed.as_mut() {
                    // Too large to keep: storing reads the file again.
                    Some(_) if bytes > KEEP_TEXT => *parsed = None,
                    Some(list) => list.push(Chunk { body: Body::Rows(Arc::new(rows)), ..chunk }),
                    None => {}
                }
            }
        }
        true
    })?;
    if let Some(e) = errors.take() {
        return Err(e);
    }
    progress.finish();
    let chunks = match parsed.into_inner().expect("parsed chunks lock") {
        Some(mut list) => {
            list.sort_unstable_by_key(|c| c.index);
            Some(list)
        }
        None => kept.into_inner().expect("kept chunks lock"),
    };
    let mut keys = Vec::new();
    for p in parsers {
        if let RowKeys::Collect(k) = p.into_inner().expect("parser lock").keys {
            keys.push(k);
        }
    }
    Ok(Checked { layout, rows: progress.rows(), repeated: Arc::new(events::repeated(keys)), chunks })
}

/// The file's format and, for CSV, what its header says.
fn layout(options: &Options, file: &str) -> Result<Layout> {
    check_mapping(options.kind, &options.columns)?;
    let source = open(&options.file)?;
    if source.format == Format::JsonLines {
        return Ok(Layout::JsonLines);
    }
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(source.reader);
    let mut header = csv::StringRecord::new();
    if let Err(e) = reader.read_record(&mut header) {
        bail!("{file}: reading the header: {}", describe(&e));
    }
    let columns = Columns::new(options.kind, &header, &options.columns, file)?;
    Ok(Layout::Csv { columns, width: header.len() })
}

/// Parses every row of a checked file on all cores and calls `each` with its records in file
/// order, a chunk at a time, copies of a row numbered in file order.
pub(super) fn read(
    options: &Options,
    checked: Checked,
    mut each: impl FnMut(Vec<Record>) -> Result<()>,
) -> Result<u64> {
    let file = options.file.display().to_string();
    let progress = progress::Bar::new("importing", Some(checked.rows), &options.file);
    let now = chrono::Utc::now();
    let Checked { layout, rows: _, repeated, chunks } = checked;
    let (layout, repeated) = (&layout, &repeated);
    let parsers: Vec<Mutex<Parser<'_>>> = (0..workers())
        .map(|_| {
            let keys = RowKeys::Number { repeated: repeated.clone(), last: None };
            Mutex::new(Parser::new(options, &file, now, false, keys))
        })
        .collect();
    let errors = FirstError::new();
    // Parsed chunks go back in order through here.
    type Parsed = (usize, Vec<Record>, Vec<(usize, usize, u64)>);
    let (done_tx, done_rx) = sync_channel::<Parsed>(2 * workers());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let feed = match chunks {
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
                if let Body::Rows(kept) = chunk.body {
                    // Checked already: the chunk's rows are the track calls they become, with
                    // no event built for each; their copies are numbered in file order.
                    let kept = Arc::try_unwrap(kept).unwrap_or_else(|shared| (*shared).clone());
                    let (tracks, copies) = kept.into_tracks(repeated);
                    progress.add(tracks.len() as u64, chunk.read);
                    let copies = copies.into_iter().map(|(row, key)| (0, row, key)).collect();
                    return done_tx.send((chunk.index, vec![Record::Tracks(Box::new(tracks))], copies)).is_ok();
                }
                let mut parser = parsers[w].lock().expect("parser lock");
                // A record a row: sized once for the chunk rather than grown.
                let mut records = Vec::with_capacity(CHUNK / 32);
                let mut copies = Vec::new();
                let parsed = parse_chunk(&mut parser, &chunk, layout, |record, repeated| {
                    copies.extend(repeated.iter().map(|&(row, key)| (records.len(), row, key)));
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
                for (i, row, key) in copies {
                    let n = seen.entry(key).or_default();
                    *n += 1;
                    match (&mut records[i], *n > 1) {
                        (Record::Event(e), true) => events::renumber(e, *n),
                        (Record::Tracks(t), true) => t.set_copy(row, *n),
                        _ => {}
                    }
                }
                rows += records.iter().map(Record::rows).sum::<u64>();
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
    progress.finish();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_lines_split_as_a_csv_reader_reads_them() {
        let cases =
            ["a,b\nc,d\n", "a,b\n\n\nc,d", "\n\na,b\n", " a , b ,\n,,\n", "one\n", "é,ü,日本\nx,y,z\n", "a,b\n\n", ""];
        for text in cases {
            assert!(super::plain_csv(text.as_bytes()).is_some(), "{text:?}");
            let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
            let mut lines = super::Lines { text: text.as_bytes(), at: 0, line: 10 };
            let read: Vec<(u64, Vec<String>)> = reader
                .records()
                .map(|r| {
                    let r = r.unwrap();
                    (lines.record(r.position().unwrap().byte() as usize), r.iter().map(str::to_owned).collect())
                })
                .collect();
            let split: Vec<(u64, Vec<String>)> = super::plain_records(text, 10)
                .map(|(line, record)| {
                    let mut fields = Vec::new();
                    super::split_commas(record, &mut fields);
                    (line, fields.into_iter().map(str::to_owned).collect())
                })
                .collect();
            assert_eq!(split, read, "{text:?}");
        }
        // Lines are the file's, blank ones counted.
        let lines: Vec<u64> = super::plain_records("a\n\n\nb\n\nc", 1).map(|(line, _)| line).collect();
        assert_eq!(lines, [1, 4, 6]);
        let mut lines = super::Lines { text: b"a\r\n\r\nb\rc\n\"d\ne\"\nf", at: 0, line: 1 };
        assert_eq!([0, 6, 8, 10, 17].map(|byte| lines.of(byte)), [1, 3, 4, 5, 7]);
        for needs_the_reader in ["a,\"b,c\"\n", "a,b\r\nc,d\r\n", "a\rb\n"] {
            assert!(super::plain_csv(needs_the_reader.as_bytes()).is_none(), "{needs_the_reader:?}");
        }
        assert!(super::plain_csv(b"a,\xff\n").is_none(), "not UTF-8: the reader says where");
    }

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
