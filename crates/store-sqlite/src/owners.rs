//! Who did each processed event, and the index of events by person and account built from it.
//!
//! A row per event in a table keyed by person or account costs a page write per event once
//! the table outgrows what one commit touches, because the people of a slice are spread over
//! the whole key space. So processing writes one `event_owners` row per slice (its events'
//! people, accounts and times, encoded together), and `event_links`, the index by subject, is
//! built from those rows in bulk: many slices at once, one list per subject (its events'
//! times and seqs, encoded together), so that a build writes a row per subject rather than a
//! row per event. The build runs in chunks of background writes that yield to appends, and
//! `processing_cursors.linked_seq` says how far it has got. Reads use the lists up to there
//! and the owner rows after it (see `reads.rs`).
//!
//! Person ids in owner rows are those processing decided at the time; a person merged into
//! another since is followed through `person_merges`. A merged person's id never comes back:
//! ids derive from identities, and a merge points all of them at the surviving person.

use foldhash::{HashMap, HashMapExt};

use domain::WorkspaceId;
use rusqlite::{Connection, OptionalExtension, params};
use store::{EventPerson, Result, StoreError};

use crate::block::{Reader, corrupt, put_int, put_str, put_uint};
use crate::sql_error;

/// Owner rows and link lists with times as steps in milliseconds.
const FORMAT_V1: u8 = 1;
/// Times as [`put_step`] writes them: whole seconds (most exports' times) take about a byte
/// and a third less a time than milliseconds did (ChurnSim's owner rows and link lists, 59 to
/// 45 MB).
const FORMAT_V2: u8 = 2;

/// A step from one time to the next, in milliseconds, as format 2 writes it: a whole number
/// of seconds as its seconds, shifted left (even), other steps as their milliseconds, shifted
/// left and marked (odd).
fn put_step(out: &mut Vec<u8>, ms: i64) {
    put_int(out, if ms % 1_000 == 0 { ms / 1_000 * 2 } else { ms * 2 + 1 });
}

/// A step [`put_step`] wrote, in milliseconds (format 1 wrote the milliseconds alone).
fn read_step(r: &mut Reader<'_>, format: u8) -> Result<i64> {
    let v = r.int()?;
    if format == FORMAT_V1 {
        Ok(v)
    } else if v & 1 == 1 {
        Ok(v >> 1)
    } else {
        (v >> 1).checked_mul(1_000).ok_or_else(|| corrupt("a time step out of range"))
    }
}

/// Processed events not yet in `event_links` beyond which a build starts while processing is
/// busy (when it is idle, any). The larger, the more entries share a page; reads decode the
/// owner rows of this many events at most, plus a build under way.
pub(crate) const LINK_BATCH: i64 = 131_072;
/// Events one build takes on at most, so its memory is bounded.
const BUILD_LINKS: usize = 4 * LINK_BATCH as usize;
/// Lists (subjects) written per background write.
const LINK_CHUNK: usize = 2_048;

/// Encodes a slice's event people (in any order; of two entries for one event the later
/// counts) as an `event_owners` row: `(first_seq, last_seq, data)`.
pub(crate) fn encode<'a>(people: &'a [EventPerson]) -> Option<(i64, i64, Vec<u8>)> {
    // A slice is in log order, one entry per event: then that is the order, without a map
    // and a sort of every event (a few percent of an import's CPU).
    let order: Vec<usize> = if people.windows(2).all(|w| w[0].seq < w[1].seq) {
        (0..people.len()).collect()
    } else {
        let mut last_of: HashMap<i64, usize> = HashMap::with_capacity(people.len());
        for (i, e) in people.iter().enumerate() {
            last_of.insert(e.seq, i);
        }
        let mut order: Vec<usize> = last_of.into_values().collect();
        order.sort_unstable_by_key(|&i| people[i].seq);
        order
    };
    let (first, last) = (people[*order.first()?].seq, people[*order.last()?].seq);
    let mut strings = Strings::default();
    let mut body = Vec::with_capacity(order.len() * 6);
    let (mut prev_seq, mut prev_ts) = (first, 0i64);
    // Events come in runs of one person's and one account's: the string before is tried
    // first, by where its text is, before the map.
    let mut last_person: Option<(&str, u64)> = None;
    let mut last_account: Option<(&str, u64)> = None;
    let index = |strings: &mut Strings<'a>, last: &mut Option<(&'a str, u64)>, s: &'a str| match *last {
        Some((text, n)) if std::ptr::eq(text, s) || text == s => n,
        _ => {
            let n = strings.index(s);
            *last = Some((s, n));
            n
        }
    };
    for &i in &order {
        let e = &people[i];
        let person = index(&mut strings, &mut last_person, &e.person_id);
        let account = e.account_id.as_ref().map_or(0, |a| index(&mut strings, &mut last_account, a.as_str()) + 1);
        let ts = e.timestamp.timestamp_millis();
        put_uint(&mut body, (e.seq - prev_seq) as u64);
        put_uint(&mut body, person);
        put_uint(&mut body, account);
        put_step(&mut body, ts - prev_ts);
        (prev_seq, prev_ts) = (e.seq, ts);
    }
    let mut out = Vec::with_capacity(1 + 10 + strings.table.len() + 10 + body.len());
    out.push(FORMAT_V2);
    put_uint(&mut out, strings.index.len() as u64);
    out.extend_from_slice(&strings.table);
    put_uint(&mut out, order.len() as u64);
    out.extend_from_slice(&body);
    Some((first, last, out))
}

/// The distinct strings of a row, each written once and referred to by its number.
#[derive(Default)]
struct Strings<'a> {
    index: HashMap<&'a str, u64>,
    table: Vec<u8>,
}

impl<'a> Strings<'a> {
    fn index(&mut self, s: &'a str) -> u64 {
        let next = self.index.len() as u64;
        *self.index.entry(s).or_insert_with(|| {
            put_str(&mut self.table, s);
            next
        })
    }
}

/// One event of an owner row.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub seq: i64,
    person: u32,
    /// 0 for none, else the string number plus one.
    account: u32,
    pub ts: i64,
}

/// A decoded `event_owners` row.
pub(crate) struct OwnerRow {
    strings: Vec<String>,
    entries: Vec<Entry>,
}

impl OwnerRow {
    pub(crate) fn decode(first_seq: i64, data: &[u8]) -> Result<OwnerRow> {
        let mut r = Reader::new(data);
        let format = r.byte()?;
        if format != FORMAT_V1 && format != FORMAT_V2 {
            return Err(corrupt("unknown owner row format"));
        }
        let count = r.uint()? as usize;
        let mut strings = Vec::with_capacity(count.min(data.len()));
        for _ in 0..count {
            strings.push(r.str()?.to_owned());
        }
        let n = r.uint()? as usize;
        let mut entries = Vec::with_capacity(n.min(data.len()));
        let (mut seq, mut ts) = (first_seq, 0i64);
        for _ in 0..n {
            seq += r.uint()? as i64;
            let person = r.uint()? as u32;
            let account = r.uint()? as u32;
            ts += read_step(&mut r, format)?;
            if person as usize >= strings.len() || account as usize > strings.len() {
                return Err(corrupt("owner row names a string it lacks"));
            }
            entries.push(Entry { seq, person, account, ts });
        }
        if !r.at_end() {
            return Err(corrupt("trailing bytes in owner row"));
        }
        Ok(OwnerRow { strings, entries })
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub(crate) fn person(&self, e: &Entry) -> &str {
        &self.strings[e.person as usize]
    }

    pub(crate) fn account(&self, e: &Entry) -> Option<&str> {
        e.account.checked_sub(1).map(|i| self.strings[i as usize].as_str())
    }

    fn find(&self, seq: i64) -> Option<&Entry> {
        self.entries.binary_search_by_key(&seq, |e| e.seq).ok().map(|i| &self.entries[i])
    }
}

/// Calls `f` with each owner row of workspace `ws` holding events after `after` and ending by
/// `upto`, in order, and the row's last seq, while it returns true.
pub(crate) fn scan(
    conn: &Connection,
    ws: i64,
    (after, upto): (i64, i64),
    mut f: impl FnMut(i64, &OwnerRow) -> Result<bool>,
) -> Result<()> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT first_seq, last_seq, data FROM event_owners WHERE ws = ?1 AND last_seq > ?2 AND last_seq <= ?3
             ORDER BY last_seq",
        )
        .map_err(sql_error)?;
    let mut rows = stmt.query(params![ws, after, upto]).map_err(sql_error)?;
    while let Some(row) = rows.next().map_err(sql_error)? {
        let (first_seq, last_seq): (i64, i64) = (row.get(0).map_err(sql_error)?, row.get(1).map_err(sql_error)?);
        let data = row.get_ref(2).map_err(sql_error)?.as_blob().map_err(|e| StoreError::Backend(e.to_string()))?;
        if !f(last_seq, &OwnerRow::decode(first_seq, data)?)? {
            break;
        }
    }
    Ok(())
}

/// Follows merges from the person ids of owner rows to the people they are now.
pub(crate) struct Merges {
    workspace_id: String,
    now: HashMap<String, String>,
}

impl Merges {
    pub(crate) fn new(workspace_id: &str) -> Merges {
        Merges { workspace_id: workspace_id.to_owned(), now: HashMap::new() }
    }

    /// The person `person` is now.
    pub(crate) fn resolve(&mut self, conn: &Connection, person: &str) -> Result<String> {
        if let Some(p) = self.now.get(person) {
            return Ok(p.clone());
        }
        let mut stmt = conn
            .prepare_cached(
                "SELECT into_id FROM person_merges WHERE workspace_id = ?1 AND from_id = ?2 ORDER BY rowid DESC LIMIT 1",
            )
            .map_err(sql_error)?;
        let mut p = person.to_owned();
        // A chain is as long as the merges one person went through; the bound only guards
        // against a cycle in damaged data.
        for _ in 0..64 {
            match stmt.query_row(params![self.workspace_id, p], |r| r.get::<_, String>(0)).optional() {
                Ok(Some(next)) if next != p => p = next,
                Ok(_) => break,
                Err(e) => return Err(sql_error(e)),
            }
        }
        self.now.insert(person.to_owned(), p.clone());
        Ok(p)
    }
}

/// Reads who did events by seq, keeping the last owner row it decoded.
pub(crate) struct Owners<'c> {
    conn: &'c Connection,
    ws: i64,
    current: Option<(i64, i64, OwnerRow)>,
    merges: Merges,
}

impl<'c> Owners<'c> {
    pub(crate) fn new(conn: &'c Connection, ws: i64, workspace_id: &str) -> Owners<'c> {
        Owners { conn, ws, current: None, merges: Merges::new(workspace_id) }
    }

    /// The person who did the event at `seq`, once processing has decided.
    pub(crate) fn person(&mut self, seq: i64) -> Result<Option<String>> {
        if !self.current.as_ref().is_some_and(|(first, last, _)| (*first..=*last).contains(&seq)) {
            let row: Option<(i64, i64, Vec<u8>)> = self
                .conn
                .prepare_cached(
                    "SELECT first_seq, last_seq, data FROM event_owners WHERE ws = ?1 AND last_seq >= ?2
                     ORDER BY last_seq LIMIT 1",
                )
                .map_err(sql_error)?
                .query_row(params![self.ws, seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
                .map_err(sql_error)?;
            self.current = match row {
                Some((first, last, data)) => Some((first, last, OwnerRow::decode(first, &data)?)),
                None => None,
            };
        }
        let Some((_, _, row)) = &self.current else { return Ok(None) };
        match row.find(seq) {
            // An account's own event of no one.
            Some(e) if row.person(e).is_empty() => Ok(None),
            Some(e) => self.merges.resolve(self.conn, row.person(e)).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn merges(&mut self) -> &mut Merges {
        &mut self.merges
    }
}

/// How far `event_links` covers the workspace's processed events.
pub(crate) fn linked_seq(conn: &Connection, workspace_id: &str) -> Result<i64> {
    conn.prepare_cached("SELECT linked_seq FROM processing_cursors WHERE workspace_id = ?1")
        .map_err(sql_error)?
        .query_row([workspace_id], |r| r.get(0))
        .optional()
        .map_err(sql_error)
        .map(|v| v.unwrap_or(0))
}

/// One subject's events in one build, newest first: event time, seq, and whether the event
/// names an account.
pub(crate) type Link = (i64, i64, bool);

/// Encodes a subject's links (in any order) as an `event_links` list: `(max_ts, min_ts, data)`.
fn encode_links(links: &mut [Link]) -> (i64, i64, Vec<u8>) {
    links.sort_unstable_by_key(|l| std::cmp::Reverse((l.0, l.1)));
    let mut out = Vec::with_capacity(2 + links.len() * 4);
    out.push(FORMAT_V2);
    put_uint(&mut out, links.len() as u64);
    let (mut ts, mut seq) = (0i64, 0i64);
    for &(t, s, names_account) in links.iter() {
        put_step(&mut out, t - ts);
        put_int(&mut out, (s - seq) * 2 + i64::from(names_account));
        (ts, seq) = (t, s);
    }
    (links.first().map_or(0, |l| l.0), links.last().map_or(0, |l| l.0), out)
}

/// The links of an `event_links` list, newest first.
pub(crate) fn decode_links(data: &[u8]) -> Result<Vec<Link>> {
    let mut r = Reader::new(data);
    let format = r.byte()?;
    if format != FORMAT_V1 && format != FORMAT_V2 {
        return Err(corrupt("unknown link list format"));
    }
    let n = r.uint()? as usize;
    let mut out = Vec::with_capacity(n.min(data.len()));
    let (mut ts, mut seq) = (0i64, 0i64);
    for _ in 0..n {
        ts += read_step(&mut r, format)?;
        let v = r.int()?;
        seq += v >> 1;
        out.push((ts, seq, v & 1 == 1));
    }
    if !r.at_end() {
        return Err(corrupt("trailing bytes in link list"));
    }
    Ok(out)
}

/// The links of a build, by subject.
#[derive(Default)]
struct Subjects {
    lists: Vec<(String, Vec<Link>)>,
    index: HashMap<String, usize>,
}

impl Subjects {
    /// Where the links of the subject `name` makes are in `lists`, remembered in `known`.
    fn slot(&mut self, known: &mut Option<usize>, name: impl FnOnce() -> Result<String>) -> Result<usize> {
        if let Some(i) = *known {
            return Ok(i);
        }
        let subject = name()?;
        let next = self.lists.len();
        let i = *self.index.entry(subject.clone()).or_insert(next);
        if i == next {
            self.lists.push((subject, Vec::new()));
        }
        Ok(*known.insert(i))
    }
}

/// A build of `event_links` under way: the lists of the events after `from` up to `upto`,
/// one per subject, in subject order, of which `done` are written.
pub(crate) struct LinkBuild {
    from: i64,
    upto: i64,
    /// The newest merge the lists' person ids account for.
    merges_seen: i64,
    lists: Vec<(String, i64, i64, Vec<u8>)>,
    done: usize,
}

fn newest_merge(conn: &Connection, workspace_id: &str) -> Result<i64> {
    conn.prepare_cached("SELECT coalesce(max(rowid), 0) FROM person_merges WHERE workspace_id = ?1")
        .map_err(sql_error)?
        .query_row([workspace_id], |r| r.get(0))
        .map_err(sql_error)
}

impl LinkBuild {
    /// Reads what the next build covers, if one is due: when `LINK_BATCH` processed events
    /// await linking, or when `idle` and any do.
    pub(crate) fn prepare(
        conn: &Connection,
        ws: i64,
        workspace: &WorkspaceId,
        idle: bool,
    ) -> Result<Option<LinkBuild>> {
        let workspace_id = workspace.as_str();
        let from = linked_seq(conn, workspace_id)?;
        let cursor = crate::log::cursor(conn, workspace)?.seq;
        if cursor <= from || (!idle && cursor - from < LINK_BATCH) {
            return Ok(None);
        }
        let merges_seen = newest_merge(conn, workspace_id)?;
        let mut merges = Merges::new(workspace_id);
        let mut subjects = Subjects::default();
        let mut taken = 0usize;
        let mut upto = cursor;
        scan(conn, ws, (from, cursor), |last_seq, row| {
            // Each of the row's people and accounts is looked up as a subject once (apart: an
            // account may be named like a person).
            let mut slot_of: Vec<Option<usize>> = vec![None; row.strings.len()];
            let mut account_slot_of: Vec<Option<usize>> = vec![None; row.strings.len()];
            for e in row.entries() {
                // An account's own event of no one is in the account's list alone.
                if !row.person(e).is_empty() {
                    let person = subjects.slot(&mut slot_of[e.person as usize], || {
                        Ok(format!("p:{}", merges.resolve(conn, row.person(e))?))
                    })?;
                    subjects.lists[person].1.push((e.ts, e.seq, e.account != 0));
                }
                if let Some(a) = e.account.checked_sub(1) {
                    let account = subjects
                        .slot(&mut account_slot_of[a as usize], || Ok(format!("g:{}", row.strings[a as usize])))?;
                    subjects.lists[account].1.push((e.ts, e.seq, true));
                }
                taken += 1;
            }
            upto = last_seq;
            Ok(taken < BUILD_LINKS)
        })?;
        if taken < BUILD_LINKS {
            upto = cursor;
        }
        let mut lists: Vec<_> = subjects
            .lists
            .into_iter()
            .map(|(subject, mut links)| {
                let (max_ts, min_ts, data) = encode_links(&mut links);
                (subject, max_ts, min_ts, data)
            })
            .collect();
        // In key order, each index page is visited once rather than once per list.
        lists.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(Some(LinkBuild { from, upto, merges_seen, lists, done: 0 }))
    }

    /// Writes the next chunk, in the writer. Returns whether the build is over (finished, or
    /// abandoned because `event_links` moved under it).
    pub(crate) fn write_chunk(&mut self, conn: &Connection, ws: i64, workspace_id: &str) -> Result<bool> {
        if linked_seq(conn, workspace_id)? != self.from {
            return Ok(true);
        }
        if self.done == 0 {
            // What a build that did not finish (the process stopped) left.
            conn.prepare_cached("DELETE FROM event_links WHERE ws = ?1 AND upto > ?2")
                .map_err(sql_error)?
                .execute(params![ws, self.from])
                .map_err(sql_error)?;
        }
        // People merged since the lists were read: their lists go to the person they became.
        // (Lists already written were moved by the merge itself.)
        let newest = newest_merge(conn, workspace_id)?;
        if newest > self.merges_seen {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT from_id, into_id FROM person_merges WHERE workspace_id = ?1 AND rowid > ?2 ORDER BY rowid",
                )
                .map_err(sql_error)?;
            let moved = stmt
                .query_map(params![workspace_id, self.merges_seen], |r| {
                    Ok((format!("p:{}", r.get::<_, String>(0)?), format!("p:{}", r.get::<_, String>(1)?)))
                })
                .map_err(sql_error)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql_error)?;
            for (from, into) in moved {
                for list in &mut self.lists[self.done..] {
                    if list.0 == from {
                        list.0.clone_from(&into);
                    }
                }
            }
            self.merges_seen = newest;
        }
        let end = (self.done + LINK_CHUNK).min(self.lists.len());
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO event_links (ws, subject, max_ts, min_ts, upto, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(sql_error)?;
        for (subject, max_ts, min_ts, data) in &self.lists[self.done..end] {
            insert.execute(params![ws, subject, max_ts, min_ts, self.upto, data]).map_err(sql_error)?;
        }
        self.done = end;
        if self.done < self.lists.len() {
            return Ok(false);
        }
        conn.prepare_cached("UPDATE processing_cursors SET linked_seq = ?2 WHERE workspace_id = ?1")
            .map_err(sql_error)?
            .execute(params![workspace_id, self.upto])
            .map_err(sql_error)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use domain::AccountId;

    fn person(seq: i64, p: &str, account: Option<&str>, ts: i64) -> EventPerson {
        EventPerson {
            seq,
            person_id: p.into(),
            account_id: account.map(|a| AccountId::parse(a).unwrap()),
            timestamp: Utc.timestamp_millis_opt(ts).unwrap(),
        }
    }

    #[test]
    fn rows_come_back_as_they_went_in_and_later_entries_win() {
        let people = [
            person(12, "p_b", None, 1_700_000_000_500),
            person(10, "p_a", Some("acme"), 1_700_000_000_000),
            person(11, "p_a", None, 1_699_999_999_000),
            person(12, "p_c", Some("acme"), 1_700_000_000_900),
        ];
        let (first, last, data) = encode(&people).unwrap();
        assert_eq!((first, last), (10, 12));
        let row = OwnerRow::decode(first, &data).unwrap();
        let got: Vec<_> = row.entries().iter().map(|e| (e.seq, row.person(e), row.account(e), e.ts)).collect();
        assert_eq!(
            got,
            [
                (10, "p_a", Some("acme"), 1_700_000_000_000),
                (11, "p_a", None, 1_699_999_999_000),
                (12, "p_c", Some("acme"), 1_700_000_000_900),
            ]
        );
        assert!(encode(&[]).is_none());
        // Already in log order, one entry per event: the same row.
        let in_order = [people[1].clone(), people[2].clone(), people[3].clone()];
        assert_eq!(encode(&in_order), Some((first, last, data)));
    }

    #[test]
    fn link_lists_come_back_newest_first() {
        let mut links = vec![(5, 40, false), (9, 41, true), (5, 38, true), (-3, 50, false)];
        let (max_ts, min_ts, data) = encode_links(&mut links);
        assert_eq!((max_ts, min_ts), (9, -3));
        assert_eq!(decode_links(&data).unwrap(), [(9, 41, true), (5, 40, false), (5, 38, true), (-3, 50, false)]);
        for cut in 0..data.len() {
            assert!(decode_links(&data[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn times_in_whole_seconds_take_fewer_bytes_and_milliseconds_survive() {
        // Whole seconds apart, as most exports' times are, and a step of milliseconds.
        let at = |i: i64| 1_600_000_000_000 + i * 3_600_000;
        let mut people: Vec<_> = (0..1_000).map(|i| person(i + 1, "p", Some("a"), at(i))).collect();
        people.push(person(1_001, "p", Some("a"), at(999) + 7));
        people.push(person(1_002, "p", Some("a"), at(999) - 5));
        let (first, _, data) = encode(&people).unwrap();
        let row = OwnerRow::decode(first, &data).unwrap();
        let times: Vec<i64> = row.entries().iter().map(|e| e.ts).collect();
        assert_eq!(times, people.iter().map(|p| p.timestamp.timestamp_millis()).collect::<Vec<_>>());
        // An hour is 3,600 seconds (2 bytes) where it was 3,600,000 milliseconds (4 bytes):
        // about 5 bytes an event where format 1 took 7.
        assert!(data.len() < 1_002 * 6, "{} bytes", data.len());
        let mut links: Vec<Link> = people.iter().map(|p| (p.timestamp.timestamp_millis(), p.seq, true)).collect();
        let (_, _, list) = encode_links(&mut links);
        let back = decode_links(&list).unwrap();
        assert_eq!(back, links, "newest first, to the millisecond");
        assert!(list.len() < 1_002 * 4, "{} bytes (format 1: about 5 an event)", list.len());
    }

    #[test]
    fn rows_and_lists_of_format_1_still_read() {
        // Format 1: times as steps of milliseconds.
        let mut row = vec![FORMAT_V1];
        put_uint(&mut row, 2);
        put_str(&mut row, "p");
        put_str(&mut row, "acme");
        put_uint(&mut row, 2);
        for (seq_step, person, account, ts_step) in [(0, 0, 2, 1_700_000_000_250), (3, 0, 0, -1_000)] {
            put_uint(&mut row, seq_step);
            put_uint(&mut row, person);
            put_uint(&mut row, account);
            put_int(&mut row, ts_step);
        }
        let row = OwnerRow::decode(40, &row).unwrap();
        let got: Vec<_> = row.entries().iter().map(|e| (e.seq, row.person(e), row.account(e), e.ts)).collect();
        assert_eq!(got, [(40, "p", Some("acme"), 1_700_000_000_250), (43, "p", None, 1_699_999_999_250)]);
        let mut list = vec![FORMAT_V1];
        put_uint(&mut list, 2);
        for (ts_step, seq_step) in [(9_001, 41 * 2 + 1), (-4_000, -3 * 2)] {
            put_int(&mut list, ts_step);
            put_int(&mut list, seq_step);
        }
        assert_eq!(decode_links(&list).unwrap(), [(9_001, 41, true), (5_001, 38, false)]);
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let (first, _, data) = encode(&[person(5, "p", Some("a"), 7)]).unwrap();
        for cut in 0..data.len() {
            assert!(OwnerRow::decode(first, &data[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = data.clone();
        bad[0] = 9;
        assert!(OwnerRow::decode(first, &bad).is_err());
    }
}
