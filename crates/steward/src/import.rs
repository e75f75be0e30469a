//! `steward import`: a workspace's history from files, as it arrives from another system.
//! CSV with a header row, optionally gzipped (detected by its first bytes). Columns are
//! known by Steward's names or mapped with `--column steward_name=file_name`; columns Steward
//! does not know become traits (accounts), attributes (subscriptions) or properties (events).
//!
//! The whole file is checked before anything is stored, so a bad line changes nothing; each
//! error names the file, the line and the column. Importing the same file again changes
//! nothing: accounts and events get ids derived from their content (identical event rows are
//! told apart by how many came before), subscriptions from their account, plan and start.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use domain::{AccountId, Currency, EventType, Money, NewEvent, WorkspaceId};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use store::{Store, Subscription, SubscriptionStatus};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Accounts,
    Subscriptions,
    Events,
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

/// Where each known column is, and the others by name.
struct Columns {
    at: HashMap<&'static str, usize>,
    others: Vec<(String, usize)>,
}

impl Columns {
    fn new(kind: Kind, header: &csv::StringRecord, mapping: &[(String, String)], file: &str) -> Result<Columns> {
        let names = known(kind);
        for (steward, _) in mapping {
            if !names.iter().any(|(n, _)| n == steward) {
                let list: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
                bail!("--column {steward}=...: {steward:?} is not a column of {kind:?} (known: {})", list.join(", "));
            }
        }
        let mut at = HashMap::new();
        let mut others = Vec::new();
        for (i, col) in header.iter().enumerate() {
            let col = col.trim();
            let steward = mapping
                .iter()
                .find(|(_, f)| f == col)
                .map(|(s, _)| s.as_str())
                .or_else(|| names.iter().map(|(n, _)| *n).find(|n| *n == col));
            match steward.and_then(|s| names.iter().find(|(n, _)| *n == s)) {
                Some((name, _)) => {
                    at.insert(*name, i);
                }
                None => others.push((col.to_owned(), i)),
            }
        }
        for (name, required) in names {
            if *required && !at.contains_key(name) {
                bail!("{file}: no column {name:?} in the header (map one with --column {name}=<column>)");
            }
        }
        Ok(Columns { at, others })
    }

    fn get<'r>(&self, row: &'r csv::StringRecord, name: &str) -> Option<&'r str> {
        let v = row.get(*self.at.get(name)?)?.trim();
        (!v.is_empty()).then_some(v)
    }

    /// The columns Steward does not know, as JSON values (numbers where they parse).
    fn extra(&self, row: &csv::StringRecord) -> Map<String, Value> {
        self.others
            .iter()
            .filter_map(|(name, i)| {
                let v = row.get(*i)?.trim();
                (!v.is_empty()).then(|| (name.clone(), scalar(v)))
            })
            .collect()
    }
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

/// `YYYY-MM-DD HH:MM:SS` (UTC), RFC 3339, or a date (midnight UTC).
fn parse_time(v: &str) -> Option<DateTime<Utc>> {
    // Exports are mostly the first or last shape: read those digit by digit.
    let b = v.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + (c - b'0') as u32))
    };
    if (b.len() == 10 || b.len() == 19) && b[4] == b'-' && b[7] == b'-' {
        let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
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

fn content_id(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0x1f]);
    }
    format!("{prefix}{}", hex::encode(&h.finalize()[..16]))
}

/// Reads a file, through gzip if it starts like gzip, counting the bytes read from disk.
struct Source {
    reader: csv::Reader<Box<dyn Read>>,
    read: Arc<std::sync::atomic::AtomicU64>,
    size: u64,
}

struct Counting<R> {
    inner: R,
    read: Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

fn open(path: &Path) -> Result<Source> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let size = file.metadata()?.len();
    let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut buffered = BufReader::with_capacity(1 << 16, Counting { inner: file, read: read.clone() });
    let gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let inner: Box<dyn Read> =
        if gzip { Box::new(flate2::bufread::MultiGzDecoder::new(buffered)) } else { Box::new(buffered) };
    let reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(inner);
    Ok(Source { reader, read, size })
}

/// One parsed row.
enum Record {
    Account {
        account: AccountId,
        traits: Map<String, Value>,
    },
    Subscription(Box<Subscription>),
    Event(Box<NewEvent>),
    /// A row found valid, when only checking.
    Checked,
}

struct Parser<'a> {
    options: &'a Options,
    file: String,
    columns: Columns,
    /// How many identical event rows came before, by content: the n-th copy gets its own id.
    seen: foldhash::HashMap<u128, u32>,
    now: DateTime<Utc>,
    /// Only check the rows: build nothing that is not needed to know they are valid.
    check_only: bool,
}

impl Parser<'_> {
    fn error(&self, line: u64, column: &str, value: &str, expected: &str) -> anyhow::Error {
        anyhow!("{} line {line}: {column} {value:?} is not {expected}", self.file)
    }

    fn time(&self, row: &csv::StringRecord, line: u64, name: &str) -> Result<Option<DateTime<Utc>>> {
        match self.columns.get(row, name) {
            None => Ok(None),
            Some(v) => parse_time(v)
                .map(Some)
                .ok_or_else(|| self.error(line, name, v, "a time (YYYY-MM-DD, YYYY-MM-DD HH:MM:SS or RFC 3339)")),
        }
    }

    fn account(&self, row: &csv::StringRecord, line: u64) -> Result<Option<AccountId>> {
        self.columns
            .get(row, "account_id")
            .map(|v| AccountId::parse(v).map_err(|e| anyhow!("{} line {line}: account_id: {e}", self.file)))
            .transpose()
    }

    fn some<T>(&self, value: Option<T>, line: u64, name: &str) -> Result<T> {
        value.ok_or_else(|| anyhow!("{} line {line}: {name} is empty", self.file))
    }

    fn parse(&mut self, row: &csv::StringRecord, line: u64) -> Result<Record> {
        match self.options.kind {
            Kind::Accounts => {
                let account = self.some(self.account(row, line)?, line, "account_id")?;
                Ok(Record::Account { account, traits: self.columns.extra(row) })
            }
            Kind::Subscriptions => {
                let account = self.some(self.account(row, line)?, line, "account_id")?;
                let started = self.some(self.time(row, line, "start_date")?, line, "start_date")?;
                let ended = self.time(row, line, "end_date")?;
                if ended.is_some_and(|e| e < started) {
                    bail!("{} line {line}: end_date is before start_date", self.file);
                }
                let currency = match self.columns.get(row, "currency") {
                    Some(c) => Currency::parse(c).map_err(|_| self.error(line, "currency", c, "a currency code"))?,
                    None => self.options.currency,
                };
                let mrr = match self.columns.get(row, "mrr") {
                    Some(v) => parse_amount(v, currency).ok_or_else(|| self.error(line, "mrr", v, "an amount"))?,
                    None => 0,
                };
                let quantity = match self.columns.get(row, "quantity") {
                    Some(v) => v.parse::<i64>().map_err(|_| self.error(line, "quantity", v, "a whole number"))?,
                    None => 1,
                };
                let plan = self.columns.get(row, "product").map(str::to_owned);
                let status = match self.columns.get(row, "status") {
                    Some(v) => v
                        .parse::<SubscriptionStatus>()
                        .map_err(|e| anyhow!("{} line {line}: status: {e}", self.file))?,
                    None if ended.is_some_and(|e| e <= self.now) => SubscriptionStatus::Canceled,
                    None => SubscriptionStatus::Active,
                };
                let start_text = started.to_rfc3339();
                let id = match self.columns.get(row, "subscription_id") {
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
                    attributes: Value::Object(self.columns.extra(row)),
                })))
            }
            Kind::Events => {
                let account = self.account(row, line)?;
                let at = self.some(self.time(row, line, "event_time")?, line, "event_time")?;
                let name = self.some(self.columns.get(row, "event_type"), line, "event_type")?.to_owned();
                let user = self.columns.get(row, "user_id").map(|u| match (self.options.user_scope, &account) {
                    (UserScope::Account, Some(a)) => format!("{a}/{u}"),
                    _ => u.to_owned(),
                });
                let anonymous = self.columns.get(row, "anonymous_id").map(str::to_owned);
                let (user, anonymous) = match (user, anonymous, &account) {
                    (None, None, Some(a)) if self.options.user_scope == UserScope::Account => {
                        (Some(a.to_string()), None)
                    }
                    (None, None, _) => bail!("{} line {line}: user_id and anonymous_id are both empty", self.file),
                    ids => (ids.0, ids.1),
                };
                if self.check_only {
                    return Ok(Record::Checked);
                }
                let mut properties = self.columns.extra(row);
                if let Some(v) = self.columns.get(row, "event_value") {
                    properties.insert("value".into(), scalar(v));
                }
                let message_id = match self.columns.get(row, "message_id") {
                    Some(id) => id.to_owned(),
                    None => {
                        let mut h = Sha256::new();
                        for part in row.iter() {
                            h.update(part.trim().as_bytes());
                            h.update([0x1f]);
                        }
                        let key: [u8; 16] = h.finalize()[..16].try_into().expect("16 bytes");
                        let n = self.seen.entry(u128::from_le_bytes(key)).or_default();
                        *n += 1;
                        format!("import_{}_{}", hex::encode(key), n)
                    }
                };
                let payload = serde_json::to_string(&TrackMessage {
                    kind: "track",
                    message_id: &message_id,
                    event: &name,
                    user_id: user.as_deref(),
                    anonymous_id: anonymous.as_deref(),
                    timestamp: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    properties: &properties,
                    context: account.as_ref().map(|a| MessageContext { group_id: a.as_str() }),
                })?;
                Ok(Record::Event(Box::new(NewEvent {
                    message_id,
                    kind: EventType::Track,
                    name: Some(name),
                    user_id: user,
                    anonymous_id: anonymous,
                    group_id: account.map(|a| a.to_string()),
                    previous_id: None,
                    timestamp: at,
                    received_at: self.now,
                    payload,
                })))
            }
        }
    }
}

/// A track call as an imported event's payload (the shape capture stores).
#[derive(serde::Serialize)]
struct TrackMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "messageId")]
    message_id: &'a str,
    event: &'a str,
    #[serde(rename = "userId", skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(rename = "anonymousId", skip_serializing_if = "Option::is_none")]
    anonymous_id: Option<&'a str>,
    timestamp: String,
    properties: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<MessageContext<'a>>,
}

#[derive(serde::Serialize)]
struct MessageContext<'a> {
    #[serde(rename = "groupId")]
    group_id: &'a str,
}

/// What an import stored.
#[derive(Debug, Default, serde::Serialize)]
pub struct Imported {
    pub rows: u64,
    /// Rows that changed something (new events, new or changed records).
    pub stored: u64,
}

/// Reads every row of the file through `each`, with progress on stderr.
fn each_row(
    options: &Options,
    mut each: impl FnMut(Record) -> Result<()>,
    phase: &str,
    check_only: bool,
) -> Result<u64> {
    let file = options.file.display().to_string();
    let mut source = open(&options.file)?;
    let header = source.reader.headers().with_context(|| format!("{file}: reading the header"))?.clone();
    let mut parser = Parser {
        options,
        file: file.clone(),
        columns: Columns::new(options.kind, &header, &options.columns, &file)?,
        seen: foldhash::HashMap::default(),
        now: Utc::now(),
        check_only,
    };
    let mut row = csv::StringRecord::new();
    let mut rows = 0u64;
    let started = std::time::Instant::now();
    loop {
        match source.reader.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(rows + 2);
                bail!("{file} line {line}: {}", describe(&e));
            }
        }
        let line = row.position().map(|p| p.line()).unwrap_or(rows + 2);
        each(parser.parse(&row, line)?)?;
        rows += 1;
        if rows % 200_000 == 0 {
            let done = source.read.load(std::sync::atomic::Ordering::Relaxed) as f64 / source.size.max(1) as f64;
            eprint!(
                "\r{phase}: {rows} rows, {:.0}% of the file, {:.0} s",
                done * 100.0,
                started.elapsed().as_secs_f64()
            );
        }
    }
    if rows >= 200_000 {
        eprintln!("\r{phase}: {rows} rows, 100% of the file, {:.0} s", started.elapsed().as_secs_f64());
    }
    Ok(rows)
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

/// Imports the file into `ws`, then brings processing up to date.
pub async fn import(store: Arc<dyn Store>, ws: &WorkspaceId, options: &Options) -> Result<Imported> {
    // First the whole file is checked: a bad line stores nothing.
    let check = options.clone();
    tokio::task::spawn_blocking(move || each_row(&check, |_| Ok(()), "checking", true)).await??;

    // Then read on a blocking thread, stored here in batches as they come.
    const BATCH: usize = 5_000;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Record>>(4);
    let read = options.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(BATCH);
        let rows = each_row(
            &read,
            |record| {
                batch.push(record);
                if batch.len() >= BATCH {
                    tx.blocking_send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                        .map_err(|_| anyhow!("the import stopped"))?;
                }
                Ok(())
            },
            "importing",
            false,
        )?;
        if !batch.is_empty() {
            tx.blocking_send(batch).map_err(|_| anyhow!("the import stopped"))?;
        }
        Ok::<u64, anyhow::Error>(rows)
    });
    // Processing runs beside the import, on what is already stored.
    let processor = processor::Processor::new(store.clone(), processor::ProcessorConfig::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let background = tokio::spawn(processor.clone().run(stop.clone()));
    let mut out = Imported::default();
    let mut appends = tokio::task::JoinSet::new();
    while let Some(batch) = rx.recv().await {
        let mut events = Vec::with_capacity(batch.len());
        // Records are written concurrently, so that the store commits them together.
        let mut records = tokio::task::JoinSet::new();
        for record in batch {
            match record {
                Record::Event(e) => events.push(*e),
                Record::Account { account, traits } => events.push(account_event(account, traits)),
                Record::Checked => {}
                Record::Subscription(s) => {
                    let (store, ws) = (store.clone(), ws.clone());
                    records.spawn(async move { store.upsert_subscription(&ws, &s).await });
                }
            }
        }
        while let Some(done) = records.join_next().await {
            out.stored += u64::from(done??);
        }
        if !events.is_empty() {
            // A few appends in flight, so that one is encoded while another commits.
            if appends.len() >= 3 {
                out.stored += appends.join_next().await.expect("not empty")??;
            }
            let (store, ws) = (store.clone(), ws.clone());
            appends.spawn(async move {
                Ok::<u64, store::StoreError>(store.append_events(&ws, &events).await?.stored as u64)
            });
        }
    }
    while let Some(done) = appends.join_next().await {
        out.stored += done??;
    }
    out.rows = reader.await??;
    stop.cancel();
    background.await?;
    processor.run_until_idle(ws).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn times_in_the_shapes_exports_use() {
        let t = |s| parse_time(s).map(|t| t.to_rfc3339());
        assert_eq!(t("2020-01-31 23:59:59").as_deref(), Some("2020-01-31T23:59:59+00:00"));
        assert_eq!(t("2020-01-31").as_deref(), Some("2020-01-31T00:00:00+00:00"));
        assert_eq!(t("2020-01-31T10:00:00+02:00").as_deref(), Some("2020-01-31T08:00:00+00:00"));
        assert_eq!(t("31/01/2020"), None);
    }
}
