//! `steward import`: a workspace's history from files, as it arrives from another system.
//! CSV with a header row or JSON lines (one object per line), either optionally gzipped
//! (detected by their first bytes). Columns and fields are known by Steward's names or mapped
//! with `--column steward_name=file_name`; those Steward does not know become traits
//! (accounts, people), attributes (subscriptions, tickets) or properties (events).
//!
//! The whole file is checked before anything is stored, so a bad line changes nothing; each
//! error names the file, the line and the column. Importing the same file again changes
//! nothing: accounts, people and events get ids derived from their content (identical event
//! rows are told apart by how many came before), subscriptions and tickets keep their own ids
//! or get them from their content. Every kind derives them alike ([`content_key`]).
//!
//! The file is read on every core ([`pipeline`]), and its rows are stored in file order.

mod events;
mod jsonl;
mod people;
mod pipeline;
mod progress;
mod tickets;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use domain::{AccountId, Currency, EventType, Money, NewEvent, WorkspaceId};
use serde_json::{Map, Value, json};
use store::{Store, Subscription, SubscriptionStatus};

use events::RowKeys;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Customer accounts (`account_id`); other columns become account traits.
    Accounts,
    /// End users (`user_id`, `account_id`, `email`, `name`, `created_at`); other columns
    /// become person traits.
    People,
    /// Billing periods (`account_id`, `start_date`, `end_date`, `mrr`, ...).
    Subscriptions,
    /// Product usage (`event_time`, `event_type`, `user_id`, `account_id`, ...).
    Events,
    /// Support tickets (`ticket_id`, `account_id`, `user_id`, `status`, `priority`, `csat`, ...).
    Tickets,
}

/// Whose user ids a file's `user_id` column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum UserScope {
    /// User ids are the workspace's (as Segment's `userId`).
    Workspace,
    /// User ids are numbered within each account: the person is `<account_id>/<user_id>`.
    Account,
}

#[derive(Clone)]
pub struct Options {
    pub kind: Kind,
    pub file: PathBuf,
    /// `(steward name, file column)`.
    pub columns: Vec<(String, String)>,
    pub user_scope: UserScope,
    pub currency: Currency,
}

/// Parses `steward_name=file_name`.
pub fn column_mapping(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_owned(), b.to_owned())),
        _ => Err(format!("expected steward_name=file_name, got {s:?}")),
    }
}

/// The columns each kind knows: (name, required).
fn known(kind: Kind) -> &'static [(&'static str, bool)] {
    match kind {
        Kind::Accounts => &[("account_id", true)],
        Kind::People => people::COLUMNS,
        Kind::Tickets => tickets::COLUMNS,
        Kind::Subscriptions => &[
            ("account_id", true),
            ("start_date", true),
            ("end_date", false),
            ("mrr", false),
            ("quantity", false),
            ("product", false),
            ("status", false),
            ("subscription_id", false),
            ("currency", false),
        ],
        Kind::Events => &[
            ("account_id", false),
            ("user_id", false),
            ("anonymous_id", false),
            ("event_time", true),
            ("event_type", true),
            ("event_value", false),
            ("message_id", false),
        ],
    }
}

/// Where each of an events file's fields is in [`known`]'s list for [`Kind::Events`].
mod event_field {
    pub(super) const ACCOUNT_ID: usize = 0;
    pub(super) const USER_ID: usize = 1;
    pub(super) const ANONYMOUS_ID: usize = 2;
    pub(super) const EVENT_TIME: usize = 3;
    pub(super) const EVENT_TYPE: usize = 4;
    pub(super) const EVENT_VALUE: usize = 5;
    pub(super) const MESSAGE_ID: usize = 6;
}

/// Refuses a `--column` mapping to a name the kind does not know.
fn check_mapping(kind: Kind, mapping: &[(String, String)]) -> Result<()> {
    let names = known(kind);
    for (steward, _) in mapping {
        if !names.iter().any(|(n, _)| n == steward) {
            let list: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
            bail!("--column {steward}=...: {steward:?} is not a column of {kind:?} (known: {})", list.join(", "));
        }
    }
    Ok(())
}

/// Steward's name for a file's column or field: the one it is mapped to, else its own if
/// Steward knows it and no other column is mapped to it.
fn steward_name(kind: Kind, mapping: &[(String, String)], col: &str) -> Option<&'static str> {
    let steward = match mapping.iter().find(|(_, f)| f == col) {
        Some((s, _)) => s.as_str(),
        None if mapping.iter().any(|(s, _)| s == col) => return None,
        None => col,
    };
    known(kind).iter().map(|(n, _)| *n).find(|n| *n == steward)
}

/// One row of a file, whatever its format: Steward's fields by name, and the others.
trait Row {
    /// A known field's value, trimmed; `None` when it is absent or empty.
    fn get(&self, name: &str) -> Option<&str>;
    /// [`Row::get`] of the known field at `place` in [`known`]'s list for the kind, which is
    /// `name`: for the fields of every row of a large file, found without comparing names.
    fn get_known(&self, _place: usize, name: &str) -> Option<&str> {
        self.get(name)
    }
    /// The fields Steward does not know, as JSON values.
    fn extra(&self) -> Map<String, Value>;
    /// Whether [`Row::extra`] has any.
    fn has_extra(&self) -> bool {
        !self.extra().is_empty()
    }
    /// The whole row's [`content_key`]: what an event's id is derived from.
    fn key(&self) -> u128;
}

/// Where each known column is, and the others by name.
#[derive(Clone)]
struct Columns {
    /// Each name the kind knows, with its column if the file has one: a short list, read for
    /// each field of each row, so scanned rather than hashed (a row asks for a name by the
    /// same text as [`known`] holds, found by where it is before its bytes are compared).
    at: Vec<(&'static str, Option<usize>)>,
    others: Vec<(String, usize)>,
}

impl Columns {
    fn new(kind: Kind, header: &csv::StringRecord, mapping: &[(String, String)], file: &str) -> Result<Columns> {
        let mut at: Vec<(&'static str, Option<usize>)> = known(kind).iter().map(|(n, _)| (*n, None)).collect();
        let mut others = Vec::new();
        for (i, col) in header.iter().enumerate() {
            let col = col.trim();
            match steward_name(kind, mapping, col) {
                // A name given twice: its last column, as a map would keep.
                Some(name) => {
                    if let Some(place) = at.iter_mut().find(|(n, _)| *n == name) {
                        place.1 = Some(i);
                    }
                }
                None => others.push((col.to_owned(), i)),
            }
        }
        for ((name, required), (_, column)) in known(kind).iter().zip(&at) {
            if *required && column.is_none() {
                bail!("{file}: no column {name:?} in the header (map one with --column {name}=<column>)");
            }
        }
        Ok(Columns { at, others })
    }

    fn get<'r>(&self, row: &'r impl Fields, name: &str) -> Option<&'r str> {
        let &(_, i) = self
            .at
            .iter()
            .find(|(n, _)| std::ptr::eq(n.as_ptr(), name.as_ptr()) && n.len() == name.len())
            .or_else(|| self.at.iter().find(|(n, _)| *n == name))?;
        let v = trim(row.field(i?)?);
        (!v.is_empty()).then_some(v)
    }

    /// [`Columns::get`] of the name at `place` in [`known`]'s list.
    fn get_known<'r>(&self, row: &'r impl Fields, place: usize) -> Option<&'r str> {
        let v = trim(row.field(self.at.get(place)?.1?)?);
        (!v.is_empty()).then_some(v)
    }

    /// The columns Steward does not know, as JSON values (numbers where they parse).
    fn extra(&self, row: &impl Fields) -> Map<String, Value> {
        self.others
            .iter()
            .filter_map(|(name, i)| {
                let v = trim(row.field(*i)?);
                (!v.is_empty()).then(|| (name.clone(), scalar(v)))
            })
            .collect()
    }
}

/// A field without the whitespace around it, as `str::trim` gives it; most fields have none,
/// which their first and last bytes tell without decoding characters.
fn trim(v: &str) -> &str {
    // Bytes that start no whitespace character: printable ASCII.
    let plain = |b: u8| b > b' ' && b < 0x7f;
    match v.as_bytes() {
        [first, .., last] if plain(*first) && plain(*last) => v,
        [only] if plain(*only) => v,
        _ => v.trim(),
    }
}

/// The fields of one CSV record, by place.
trait Fields {
    fn field(&self, i: usize) -> Option<&str>;
    fn fields(&self) -> impl Iterator<Item = &str>;
}

impl Fields for csv::StringRecord {
    fn field(&self, i: usize) -> Option<&str> {
        self.get(i)
    }

    fn fields(&self) -> impl Iterator<Item = &str> {
        self.iter()
    }
}

/// A record split at its commas: a line that needs no unquoting.
impl Fields for Vec<&str> {
    fn field(&self, i: usize) -> Option<&str> {
        self.get(i).copied()
    }

    fn fields(&self) -> impl Iterator<Item = &str> {
        self.iter().copied()
    }
}

/// A CSV record with the columns that say what its fields are.
struct CsvRow<'a, F> {
    columns: &'a Columns,
    record: &'a F,
}

impl<F: Fields> Row for CsvRow<'_, F> {
    fn get(&self, name: &str) -> Option<&str> {
        self.columns.get(self.record, name)
    }

    fn get_known(&self, place: usize, name: &str) -> Option<&str> {
        debug_assert!(self.columns.at.get(place).is_some_and(|(n, _)| *n == name), "{name} is at {place}");
        self.columns.get_known(self.record, place)
    }

    fn extra(&self) -> Map<String, Value> {
        self.columns.extra(self.record)
    }

    fn has_extra(&self) -> bool {
        self.columns.others.iter().any(|(_, i)| self.record.field(*i).is_some_and(|v| !trim(v).is_empty()))
    }

    fn key(&self) -> u128 {
        content_key(self.record.fields().map(trim))
    }
}

/// The properties of an event row whose only other field is its value `v`: the text the map
/// of the one entry serialises to, without building the map.
fn value_properties(v: &str) -> String {
    format!("{{\"value\":{}}}", scalar(v))
}

fn scalar(v: &str) -> Value {
    if let Ok(i) = v.parse::<i64>() {
        return json!(i);
    }
    match v.parse::<f64>() {
        Ok(f) if f.is_finite() => json!(f),
        _ => json!(v),
    }
}

/// [`parse_time_in`] with no date read before.
#[cfg(test)]
fn parse_time(v: &str) -> Option<DateTime<Utc>> {
    parse_time_in(v, &LastDate::default())
}

/// The last date [`parse_time_in`] read, by its text: an export's rows come in runs of one
/// day (an account's events in time order), and checking a date is valid took a fifth of
/// reading a time.
#[derive(Default)]
struct LastDate(std::cell::Cell<Option<([u8; 10], NaiveDate)>>);

/// `YYYY-MM-DD HH:MM:SS` (UTC), RFC 3339, or a date (midnight UTC); a date the same as the
/// last one read (`last`) is not worked out again.
fn parse_time_in(v: &str, last: &LastDate) -> Option<DateTime<Utc>> {
    // Exports are mostly the first or last shape: read those digit by digit.
    let b = v.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + (c - b'0') as u32))
    };
    if (b.len() == 10 || b.len() == 19) && b[4] == b'-' && b[7] == b'-' {
        let text: [u8; 10] = b[..10].try_into().expect("ten bytes");
        let date = match last.0.get() {
            Some((t, date)) if t == text => date,
            _ => {
                let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
                last.0.set(Some((text, date)));
                date
            }
        };
        if b.len() == 10 {
            return Some(date.and_hms_opt(0, 0, 0)?.and_utc());
        }
        if b[10] == b' ' && b[13] == b':' && b[16] == b':' {
            return Some(date.and_hms_opt(num(11..13)?, num(14..16)?, num(17..19)?)?.and_utc());
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d").ok().map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
}

/// Digits after the decimal point of a currency's minor unit.
fn minor_digits(c: Currency) -> u32 {
    match c.as_str() {
        "JPY" | "KRW" | "VND" | "CLP" | "ISK" | "UGX" | "XAF" | "XOF" | "PYG" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" | "IQD" | "LYD" => 3,
        _ => 2,
    }
}

/// A decimal amount in major units (`9.99`) as minor units, exactly; `None` if it is not a
/// number or has more decimals than the currency.
fn parse_amount(v: &str, c: Currency) -> Option<i64> {
    let digits = minor_digits(c);
    let (neg, v) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() as u32 > digits {
        return None;
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let frac_minor: i64 =
        if frac.is_empty() { 0 } else { frac.parse::<i64>().ok()? * 10i64.pow(digits - frac.len() as u32) };
    let minor = whole.checked_mul(10i64.pow(digits))?.checked_add(frac_minor)?;
    Some(if neg { -minor } else { minor })
}

/// Content as a 128-bit key: two lanes of multiply-and-fold over each field's bytes, each
/// field ended by its length. Every id an import derives from content comes from it
/// ([`content_id`], an event row's `import_<key>_<n>`). Stable across versions: it is part of
/// stored ids, so a change would make a re-import store every row again. Not a defence
/// against rows crafted to collide (an import is its operator's own data); the odds of two
/// different rows colliding by chance are about n^2 / 2^129.
fn content_key<'a>(fields: impl Iterator<Item = &'a str>) -> u128 {
    const K: [u64; 4] = [0x9e37_79b9_7f4a_7c15, 0xc2b2_ae3d_27d4_eb4f, 0x1656_67b1_9e37_79f9, 0xd6e8_feb8_6659_fd93];
    fn fold(x: u64, k: u64) -> u64 {
        let m = u128::from(x) * u128::from(k);
        (m as u64) ^ ((m >> 64) as u64)
    }
    fn step(lanes: &mut (u64, u64), w: u64) {
        lanes.0 = fold(lanes.0 ^ w, K[0]).wrapping_add(lanes.0.rotate_left(29));
        lanes.1 = fold(lanes.1 ^ w.rotate_left(32), K[1]).wrapping_add(lanes.1.rotate_left(41));
    }
    let mut lanes = (K[2], K[3]);
    let mut total = 0u64;
    for field in fields {
        let bytes = field.as_bytes();
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            step(&mut lanes, u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            step(&mut lanes, tail_word(rest));
        }
        // The length ends the field, so that "ab","c" and "a","bc" differ.
        step(&mut lanes, (bytes.len() as u64) | (1 << 63));
        total += 1;
    }
    let a = fold(lanes.0 ^ total, K[2]) ^ fold(lanes.1, K[0]);
    let b = fold(lanes.1 ^ total.rotate_left(17), K[3]) ^ fold(lanes.0, K[1]);
    (u128::from(a) << 64) | u128::from(b)
}

/// The 1 to 7 bytes of `rest` as the little-endian word they start (`u64::from_le_bytes` of
/// them padded with zeros), read as overlapping words rather than copied into a buffer first:
/// a copy of a few bytes then read whole waits on the copy, for most fields of every row.
fn tail_word(rest: &[u8]) -> u64 {
    let n = rest.len();
    debug_assert!((1..8).contains(&n));
    if n >= 4 {
        let word = |at: usize| u64::from(u32::from_le_bytes(rest[at..at + 4].try_into().expect("4 bytes")));
        word(0) | word(n - 4) << (8 * (n - 4))
    } else {
        u64::from(rest[0]) | u64::from(rest[n / 2]) << (8 * (n / 2)) | u64::from(rest[n - 1]) << (8 * (n - 1))
    }
}

/// `<prefix><32 hex digits>`: the id of a record (or the message of a row that becomes one)
/// that is `parts`.
fn content_id(prefix: &str, parts: &[&str]) -> String {
    format!("{prefix}{:032x}", content_key(parts.iter().copied()))
}

/// How a file's rows are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Csv,
    JsonLines,
}

/// JSON lines when the file starts with an object or its name says so (`.jsonl`, `.ndjson`,
/// gzipped or not); CSV otherwise.
fn format_of(path: &Path, start: &[u8]) -> Result<Format> {
    let start = start.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(start);
    let first = start.iter().find(|b| !b.is_ascii_whitespace());
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    let json_name = [".jsonl", ".ndjson", ".json"].iter().any(|ext| name.ends_with(ext));
    Ok(match first {
        Some(b'{') => Format::JsonLines,
        Some(b'[') if json_name => {
            bail!("{}: a JSON array; expected JSON lines (one object per line)", path.display())
        }
        _ if json_name && !name.ends_with(".json") => Format::JsonLines,
        _ => Format::Csv,
    })
}

/// One parsed row.
enum Record {
    Account {
        account: AccountId,
        traits: Map<String, Value>,
    },
    Subscription(Box<Subscription>),
    /// Boxed, as every large variant is, so that a record is small: the check parses millions
    /// of rows into records it drops, and each was moved whole (a quarter kilobyte) several
    /// times. Most events files are kept as [`Record::Tracks`] and never make these.
    Event(Box<NewEvent>),
    /// A row that becomes several events (a person: identify, then group).
    Events(Vec<NewEvent>),
    Ticket(Box<tickets::Pending>),
    /// A row found valid, when only checking.
    Checked,
    /// A chunk of event rows the check parsed, as track calls in columns.
    Tracks(Box<domain::TrackRows>),
}

impl Record {
    /// The rows of the file it holds.
    fn rows(&self) -> u64 {
        match self {
            Record::Tracks(t) => t.len() as u64,
            _ => 1,
        }
    }
}

struct Parser<'a> {
    options: &'a Options,
    file: String,
    /// The content keys of event rows whose id derives from them.
    keys: RowKeys,
    now: DateTime<Utc>,
    /// Only check the rows: build nothing that is not needed to know they are valid.
    check_only: bool,
    /// While checking an events file: its rows as storing needs them, kept so that it
    /// parses them once (see [`events::KeptRows`]).
    compact: Option<events::KeptRows>,
    last_date: LastDate,
}

impl<'a> Parser<'a> {
    fn new(options: &'a Options, file: &str, now: DateTime<Utc>, check_only: bool, keys: RowKeys) -> Parser<'a> {
        let compact = (check_only && options.kind == Kind::Events).then(|| events::KeptRows::new(now));
        Parser { options, file: file.to_owned(), keys, now, check_only, compact, last_date: LastDate::default() }
    }

    fn error(&self, line: u64, column: &str, value: &str, expected: &str) -> anyhow::Error {
        anyhow!("{} line {line}: {column} {value:?} is not {expected}", self.file)
    }

    fn time(&self, row: &impl Row, line: u64, name: &str) -> Result<Option<DateTime<Utc>>> {
        self.time_in(row.get(name), line, name)
    }

    /// The time field `name` holds, `value`.
    fn time_in(&self, value: Option<&str>, line: u64, name: &str) -> Result<Option<DateTime<Utc>>> {
        match value {
            None => Ok(None),
            Some(v) => parse_time_in(v, &self.last_date)
                .map(Some)
                .ok_or_else(|| self.error(line, name, v, "a time (YYYY-MM-DD, YYYY-MM-DD HH:MM:SS or RFC 3339)")),
        }
    }

    fn account(&self, row: &impl Row, line: u64) -> Result<Option<AccountId>> {
        row.get("account_id")
            .map(|v| AccountId::parse(v).map_err(|e| anyhow!("{} line {line}: account_id: {e}", self.file)))
            .transpose()
    }

    fn some<T>(&self, value: Option<T>, line: u64, name: &str) -> Result<T> {
        value.ok_or_else(|| anyhow!("{} line {line}: {name} is missing", self.file))
    }

    fn parse(&mut self, row: &impl Row, line: u64) -> Result<Record> {
        match self.options.kind {
            Kind::Accounts => {
                let account = self.some(self.account(row, line)?, line, "account_id")?;
                Ok(Record::Account { account, traits: row.extra() })
            }
            Kind::Subscriptions => {
                let account = self.some(self.account(row, line)?, line, "account_id")?;
                let started = self.some(self.time(row, line, "start_date")?, line, "start_date")?;
                let ended = self.time(row, line, "end_date")?;
                if ended.is_some_and(|e| e < started) {
                    bail!("{} line {line}: end_date is before start_date", self.file);
                }
                let currency = match row.get("currency") {
                    Some(c) => Currency::parse(c).map_err(|_| self.error(line, "currency", c, "a currency code"))?,
                    None => self.options.currency,
                };
                let mrr = match row.get("mrr") {
                    Some(v) => parse_amount(v, currency).ok_or_else(|| self.error(line, "mrr", v, "an amount"))?,
                    None => 0,
                };
                let quantity = match row.get("quantity") {
                    Some(v) => v.parse::<i64>().map_err(|_| self.error(line, "quantity", v, "a whole number"))?,
                    None => 1,
                };
                let plan = row.get("product").map(str::to_owned);
                let status = match row.get("status") {
                    Some(v) => v
                        .parse::<SubscriptionStatus>()
                        .map_err(|e| anyhow!("{} line {line}: status: {e}", self.file))?,
                    None if ended.is_some_and(|e| e <= self.now) => SubscriptionStatus::Canceled,
                    None => SubscriptionStatus::Active,
                };
                let start_text = started.to_rfc3339();
                let id = match row.get("subscription_id") {
                    Some(id) => id.to_owned(),
                    None => content_id("import_", &[account.as_str(), plan.as_deref().unwrap_or(""), &start_text]),
                };
                Ok(Record::Subscription(Box::new(Subscription {
                    subscription_id: id,
                    account_id: account,
                    plan,
                    status,
                    mrr: Money::new(mrr, currency),
                    quantity,
                    started_at: started,
                    ended_at: ended.filter(|e| *e <= self.now),
                    current_period_end: ended,
                    cancel_at_period_end: false,
                    // The same row always carries the same time, so importing it again changes
                    // nothing; a later period of the same subscription id wins.
                    updated_at: ended.unwrap_or(started),
                    attributes: Value::Object(row.extra()),
                })))
            }
            Kind::Events => {
                // Checked, not made: a row's account is only read (no copy of millions of them).
                let account = row
                    .get_known(event_field::ACCOUNT_ID, "account_id")
                    .map(|v| AccountId::check(v).map_err(|e| anyhow!("{} line {line}: account_id: {e}", self.file)))
                    .transpose()?;
                let at = self.time_in(row.get_known(event_field::EVENT_TIME, "event_time"), line, "event_time")?;
                let at = self.some(at, line, "event_time")?;
                let name = self.some(row.get_known(event_field::EVENT_TYPE, "event_type"), line, "event_type")?;
                let (user, anonymous) = (
                    row.get_known(event_field::USER_ID, "user_id"),
                    row.get_known(event_field::ANONYMOUS_ID, "anonymous_id"),
                );
                let scoped = self.options.user_scope == UserScope::Account;
                if user.is_none() && anonymous.is_none() && !(scoped && account.is_some()) {
                    bail!("{} line {line}: user_id and anonymous_id are both empty", self.file);
                }
                let given_id = row.get_known(event_field::MESSAGE_ID, "message_id");
                let key = given_id.is_none().then(|| row.key());
                if let Some(key) = key {
                    self.keys.add(key);
                }
                if self.check_only && self.compact.is_none() {
                    return Ok(Record::Checked);
                }
                // With user ids numbered per account, the person is `<account>/<user>`, or the
                // account itself when the row names no one.
                let user = match (user, account) {
                    (Some(u), Some(a)) if scoped => Some([a, "/", u]),
                    (Some(u), _) => Some([u, "", ""]),
                    (None, Some(a)) if scoped && anonymous.is_none() => Some([a, "", ""]),
                    (None, _) => None,
                };
                let properties = if row.has_extra() {
                    let mut properties = row.extra();
                    if let Some(v) = row.get_known(event_field::EVENT_VALUE, "event_value") {
                        properties.insert("value".into(), scalar(v));
                    }
                    Some(serde_json::to_string(&properties).expect("a JSON map serialises"))
                } else {
                    // The usual row: its value alone, written as the map above would be.
                    row.get_known(event_field::EVENT_VALUE, "event_value").map(value_properties)
                };
                // Copies of a row are numbered by whoever reads the rows in order.
                let fields = events::EventFields {
                    account,
                    at,
                    name,
                    user,
                    anonymous,
                    properties: properties.as_deref(),
                    message_id: given_id,
                    key,
                };
                match &mut self.compact {
                    Some(rows) => {
                        rows.push(&fields);
                        Ok(Record::Checked)
                    }
                    None => Ok(Record::Event(Box::new(fields.event(self.now)))),
                }
            }
            Kind::People => people::parse(self, row, line),
            Kind::Tickets => tickets::parse(self, row, line),
        }
    }
}

/// What an import stored.
#[derive(Debug, Default, serde::Serialize)]
pub struct Imported {
    pub rows: u64,
    /// Rows that changed something (new events, new or changed records).
    pub stored: u64,
}

/// A CSV reading error as a user reads it.
fn describe(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("{len} fields where the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        _ => e.to_string(),
    }
}

/// The event a row of an accounts file becomes: a group call with no person, from which
/// processing creates the account and sets its traits (as a replay will again).
fn account_event(account: AccountId, traits: Map<String, Value>) -> NewEvent {
    let mut text: Vec<String> = vec![account.to_string()];
    text.extend(traits.iter().map(|(k, v)| format!("{k}={v}")));
    let parts: Vec<&str> = text.iter().map(String::as_str).collect();
    let message_id = content_id("import_", &parts);
    let now = Utc::now();
    let payload = json!({"type": "group", "messageId": message_id, "groupId": account, "traits": traits}).to_string();
    NewEvent {
        message_id,
        kind: EventType::Group,
        name: None,
        user_id: None,
        anonymous_id: None,
        group_id: Some(account.to_string()),
        previous_id: None,
        timestamp: now,
        received_at: now,
        payload,
    }
}

/// The largest slice processing takes while an import's events arrive.
const IMPORT_SLICE: usize = 65_536;
/// Batches of events (a block of the log each) appended together, in one transaction.
const APPEND_GROUP: usize = 8;
/// Kept event rows appended together, in one transaction (a block per kept chunk), and so
/// processed together: a group rewrites each account's monthly rollups once, and four times
/// fewer groups than of [`APPEND_GROUP`] batches took 6% less time to import ChurnSim's 3.6
/// million events (for about 130 MB more memory).
const TRACK_GROUP: usize = 160_000;
/// The smallest group of kept rows, at the start and the end of a file: groups double up to
/// [`TRACK_GROUP`] and halve as the file runs out (see [`track_group`]).
const FIRST_TRACK_GROUP: u64 = 16_384;

/// How many kept rows the next group takes, `appended` rows of `total` being appended
/// already. Processing follows storing a group behind: until the first group is stored it has
/// nothing to do, and once the last is, the import waits for it to process that one. Small
/// groups at either end keep both waits short.
fn track_group(appended: u64, total: u64) -> u64 {
    let remaining = total.saturating_sub(appended);
    appended.min(remaining / 2).clamp(FIRST_TRACK_GROUP, TRACK_GROUP as u64)
}

/// Imports the file into `ws`, then brings processing up to date.
pub async fn import(store: Arc<dyn Store>, ws: &WorkspaceId, options: &Options) -> Result<Imported> {
    // First the whole file is checked: a bad line stores nothing.
    let started = std::time::Instant::now();
    let check = options.clone();
    let checked = tokio::task::spawn_blocking(move || pipeline::check(&check)).await??;
    let checked_in = started.elapsed();
    let total_rows = checked.rows();
    // Most rows become one event each (a people row two). The store makes room while the
    // first rows are read and prepared (its memory of ids is tens of megabytes to clear).
    let expecting = matches!(options.kind, Kind::Events | Kind::People | Kind::Accounts).then(|| {
        let (store, ws, rows) = (store.clone(), ws.clone(), usize::try_from(total_rows).unwrap_or(usize::MAX));
        tokio::spawn(async move { store.expect_appends(&ws, rows).await })
    });

    // Then read on blocking threads, stored here in batches as they come, in file order.
    const BATCH: usize = 5_000;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Record>>(2 * APPEND_GROUP);
    let read = options.clone();
    let reader = tokio::task::spawn_blocking(move || {
        // Sized by the records each chunk gives: a chunk of an events file the check kept is
        // one record of thousands of rows, and room for a batch of records (a megabyte)
        // made for each such chunk was most of what an import allocated.
        let mut batch = Vec::new();
        let mut batch_rows = 0;
        let rows = pipeline::read(&read, checked, |records| {
            batch.reserve(records.len());
            for record in records {
                batch_rows += record.rows();
                batch.push(record);
                if batch_rows >= BATCH as u64 {
                    tx.blocking_send(std::mem::take(&mut batch)).map_err(|_| anyhow!("the import stopped"))?;
                    batch_rows = 0;
                }
            }
            Ok(())
        })?;
        if !batch.is_empty() {
            tx.blocking_send(batch).map_err(|_| anyhow!("the import stopped"))?;
        }
        Ok::<u64, anyhow::Error>(rows)
    });
    // Processing runs beside the import, on what is already stored: each group of events as
    // it was appended, from memory when the store says where in the log they went, else (or
    // when processing is not right before them) from the log.
    // An import is one long backlog: larger slices rewrite each account's rollups and each
    // person's row fewer times (the result does not depend on the slicing).
    let config = processor::ProcessorConfig { max_batch: IMPORT_SLICE, ..Default::default() };
    let processor = processor::Processor::new(store.clone(), config);
    // Each append's events with where the store put them, or `None` when it did not say.
    let (appended_tx, mut appended_rx) =
        tokio::sync::mpsc::channel::<Option<(store::LogPosition, processor::Appended)>>(2);
    let processing = tokio::spawn({
        let (processor, ws) = (processor.clone(), ws.clone());
        async move {
            // Groups whose place is known go to processing from memory, one resolved while
            // the one before is applied; the others are read from the log.
            let (placed_tx, placed_rx) = tokio::sync::mpsc::channel(1);
            let stream = tokio::spawn({
                let (processor, ws) = (processor.clone(), ws.clone());
                async move { processor.process_appended_stream(&ws, placed_rx).await }
            });
            while let Some(appended) = appended_rx.recv().await {
                match appended {
                    Some(group) => {
                        if placed_tx.send(group).await.is_err() {
                            break;
                        }
                    }
                    None => {
                        let end = store::LogPosition { tx: i64::MAX, seq: i64::MAX };
                        if let Err(e) = processor.run_through(&ws, end).await {
                            tracing::warn!(workspace = %ws, error = %e, "processing beside the import failed; will retry");
                        }
                    }
                }
            }
            drop(placed_tx);
            match stream.await {
                Ok(Ok(())) => {}
                // Whatever is left is processed from the log once the import is stored.
                Ok(Err(e)) => {
                    tracing::warn!(workspace = %ws, error = %e, "processing beside the import failed; will retry")
                }
                Err(e) => {
                    tracing::warn!(workspace = %ws, error = %e, "processing beside the import stopped; will retry")
                }
            }
        }
    });
    let mut out = Imported::default();
    // What is read waits here to be appended: whole events, or track calls in columns (an
    // events file the check kept), never both at once, so that the file's order is kept.
    let mut group: Vec<Vec<NewEvent>> = Vec::new();
    let mut tracks: Vec<Arc<domain::TrackRows>> = Vec::new();
    let mut tracks_appended = 0u64;
    // Appends wait for the room the store is making for them.
    let expecting = tokio::sync::Mutex::new(expecting);
    let ready = async || -> Result<()> {
        if let Some(expecting) = expecting.lock().await.take() {
            expecting.await??;
        }
        Ok(())
    };
    let append = async |group: Vec<Vec<NewEvent>>| -> Result<u64> {
        ready().await?;
        let report = store.append_event_batches(ws, &group).await?;
        let stored = report.report.stored as u64;
        let placed = report.placement.map(|placement| {
            // Sized once: a group is tens of thousands of events, and growing the list would
            // copy them again at each doubling.
            let mut events = Vec::with_capacity(placement.positions.iter().flatten().count());
            let appended = group.into_iter().flatten().zip(placement.positions);
            events.extend(appended.filter_map(|(event, at)| Some(store::LoggedEvent { position: at?, event })));
            (placement.after, processor::Appended::Events(events))
        });
        // Processing may lag; the import waits for it rather than holding more in memory.
        let _ = appended_tx.send(placed).await;
        Ok(stored)
    };
    let append_tracks = async |batches: Vec<Arc<domain::TrackRows>>| -> Result<u64> {
        ready().await?;
        let report = store.append_track_batches(ws, &batches).await?;
        let stored = report.report.stored as u64;
        let placed = report.placement.map(|placement| {
            (placement.after, processor::Appended::Tracks { batches, positions: placement.positions })
        });
        let _ = appended_tx.send(placed).await;
        Ok(stored)
    };
    while let Some(batch) = rx.recv().await {
        let mut events = Vec::with_capacity(batch.len());
        // Records are written concurrently, so that the store commits them together.
        let mut records = tokio::task::JoinSet::new();
        for record in batch {
            match record {
                Record::Event(e) => events.push(*e),
                Record::Events(e) => events.extend(e),
                Record::Account { account, traits } => events.push(account_event(account, traits)),
                Record::Checked => {}
                Record::Tracks(t) => {
                    if !group.is_empty() {
                        out.stored += append(std::mem::take(&mut group)).await?;
                    }
                    tracks.push(Arc::from(t));
                }
                Record::Subscription(s) => {
                    let (store, ws) = (store.clone(), ws.clone());
                    records.spawn(async move { store.upsert_subscription(&ws, &s).await });
                }
                Record::Ticket(t) => {
                    records.spawn(tickets::store(store.clone(), ws.clone(), *t));
                }
            }
        }
        while let Some(done) = records.join_next().await {
            out.stored += u64::from(done??);
        }
        if !events.is_empty() {
            if !tracks.is_empty() {
                out.stored += append_tracks(std::mem::take(&mut tracks)).await?;
            }
            group.push(events);
        }
        // Whatever has been read goes in one append (in file order), up to a group of batches.
        let track_rows: u64 = tracks.iter().map(|t| t.len() as u64).sum();
        if track_rows >= track_group(tracks_appended, total_rows) || (rx.is_empty() && !tracks.is_empty()) {
            out.stored += append_tracks(std::mem::take(&mut tracks)).await?;
            tracks_appended += track_rows;
        }
        if group.len() >= APPEND_GROUP || (rx.is_empty() && !group.is_empty()) {
            out.stored += append(std::mem::take(&mut group)).await?;
        }
    }
    if !tracks.is_empty() {
        out.stored += append_tracks(tracks).await?;
    }
    if !group.is_empty() {
        out.stored += append(group).await?;
    }
    out.rows = reader.await??;
    ready().await?;
    let stored = started.elapsed();
    drop(appended_tx);
    processing.await?;
    processor.run_until_idle(ws).await?;
    progress::summary(options, &out, checked_in, stored, started.elapsed());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_of_kept_rows_double_from_the_start_and_halve_to_the_end() {
        let total = 3_000_000;
        let (mut appended, mut sizes) = (0, Vec::new());
        while appended < total {
            let group = track_group(appended, total).min(total - appended);
            sizes.push(group);
            appended += group;
        }
        assert_eq!(sizes[..6], [16_384, 16_384, 32_768, 65_536, 131_072, 160_000]);
        assert!(sizes.iter().all(|&g| g <= TRACK_GROUP as u64));
        let tail = &sizes[sizes.len() - 5..];
        assert!(tail.windows(2).all(|w| w[1] < w[0]), "the last groups shrink: {tail:?}");
        assert!(tail[4] <= FIRST_TRACK_GROUP, "{tail:?}");
        assert!(sizes.len() < 30, "{} groups", sizes.len());
    }

    #[test]
    fn a_value_alone_is_written_as_its_map_would_be() {
        for v in ["3", "-0", "2.5", "1e3", "1e400", "abc", "say \"hi\"", "0x10", "NaN"] {
            let map: Map<String, Value> = [("value".to_owned(), scalar(v))].into_iter().collect();
            assert_eq!(value_properties(v), serde_json::to_string(&map).unwrap(), "{v}");
        }
    }

    #[test]
    fn amounts_are_exact_in_minor_units() {
        let usd = Currency::parse("USD").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(parse_amount("9.99", usd), Some(999));
        assert_eq!(parse_amount("10", usd), Some(1000));
        assert_eq!(parse_amount("0.5", usd), Some(50));
        assert_eq!(parse_amount("-3.10", usd), Some(-310));
        assert_eq!(parse_amount("1.234", usd), None, "more decimals than cents");
        assert_eq!(parse_amount("1200", jpy), Some(1200));
        for bad in ["", ".", "1e3", "ten", "1.2.3"] {
            assert_eq!(parse_amount(bad, usd), None, "{bad:?}");
        }
    }

    #[test]
    fn json_lines_are_known_by_their_first_byte_or_their_name() {
        let of = |name: &str, start: &str| format_of(Path::new(name), start.as_bytes()).map_err(|e| e.to_string());
        assert_eq!(of("events.csv", "account_id,event_time\n"), Ok(Format::Csv));
        assert_eq!(of("events.data", "  \n{\"event_time\": 1}"), Ok(Format::JsonLines));
        assert_eq!(of("events.csv.gz", "\u{feff}{\"a\": 1}"), Ok(Format::JsonLines), "after a byte order mark");
        assert_eq!(of("EVENTS.NDJSON.GZ", ""), Ok(Format::JsonLines));
        assert_eq!(of("events.jsonl", "not json"), Ok(Format::JsonLines), "then refused line by line");
        assert!(of("events.json", "[{\"a\": 1}]").is_err_and(|e| e.contains("JSON array")));
    }

    #[test]
    fn fields_are_trimmed_as_str_trim_trims_them() {
        let cases = [
            "",
            " ",
            "a",
            " a",
            "a ",
            "\ta\n",
            "abc",
            "a b",
            "\u{a0}x",
            "x\u{2003}",
            "é",
            "éa",
            "aé",
            "\u{7f}",
            "~!",
            "\u{3000}",
        ];
        for v in cases {
            assert_eq!(trim(v), v.trim(), "{v:?}");
        }
    }

    #[test]
    fn a_field_tail_reads_as_its_bytes_padded_with_zeros() {
        let bytes = [0x01, 0x82, 0x03, 0xf4, 0x05, 0x06, 0xff];
        for n in 1..8 {
            let mut padded = [0u8; 8];
            padded[..n].copy_from_slice(&bytes[..n]);
            assert_eq!(tail_word(&bytes[..n]), u64::from_le_bytes(padded), "{n} bytes");
        }
    }

    #[test]
    fn content_keys_are_stable_and_tell_fields_apart() {
        // Stored in ids: these values must never change.
        let key = content_key(["7", "2020-01-03 10:00:00", "like", "0", ""].into_iter());
        assert_eq!(format!("{key:032x}"), "3d798c1a0bd7400cddf199e87768222e");
        assert_eq!(content_id("import_", &["acme"]), format!("import_{:032x}", content_key(["acme"].into_iter())));
        assert_ne!(content_key(["ab", "c"].into_iter()), content_key(["a", "bc"].into_iter()));
        assert_ne!(content_key(["a", ""].into_iter()), content_key(["a"].into_iter()));
        assert_ne!(content_key(["12345678"].into_iter()), content_key(["12345678\0"].into_iter()));
    }

    #[test]
    fn times_in_the_shapes_exports_use() {
        let t = |s| parse_time(s).map(|t| t.to_rfc3339());
        assert_eq!(t("2020-01-31 23:59:59").as_deref(), Some("2020-01-31T23:59:59+00:00"));
        assert_eq!(t("2020-01-31").as_deref(), Some("2020-01-31T00:00:00+00:00"));
        assert_eq!(t("2020-01-31T10:00:00+02:00").as_deref(), Some("2020-01-31T08:00:00+00:00"));
        assert_eq!(t("31/01/2020"), None);
    }

    #[test]
    fn event_fields_are_where_the_kind_lists_them() {
        let names = known(Kind::Events).iter().map(|(n, _)| *n).collect::<Vec<_>>();
        let places = [
            (event_field::ACCOUNT_ID, "account_id"),
            (event_field::USER_ID, "user_id"),
            (event_field::ANONYMOUS_ID, "anonymous_id"),
            (event_field::EVENT_TIME, "event_time"),
            (event_field::EVENT_TYPE, "event_type"),
            (event_field::EVENT_VALUE, "event_value"),
            (event_field::MESSAGE_ID, "message_id"),
        ];
        assert_eq!(places.len(), names.len());
        for (place, name) in places {
            assert_eq!(names[place], name);
        }
    }

    #[test]
    fn a_date_read_before_reads_as_it_did() {
        let last = LastDate::default();
        let times = [
            "2020-01-31 23:59:59",
            "2020-01-31 00:00:01",
            "2020-01-31",
            "2020-01-31 25:00:00",
            "2020-01-31x00:00:00",
            "2020-02-30 10:00:00",
            "2020-01-31 08:00:00",
            "2021-01-31 10:00:00",
            "2020-01-31T10:00:00+02:00",
            "2020-01-31 10:00:00",
        ];
        for v in times {
            assert_eq!(parse_time_in(v, &last), parse_time(v), "{v}");
        }
        assert_eq!(parse_time_in("2020-02-30 10:00:00", &last), None, "an invalid date is never kept");
    }
}
