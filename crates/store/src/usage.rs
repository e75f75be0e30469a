//! Daily usage rollups: per account, per metric, per day, the events and the people active
//! (and so per person, their active days). Processing adds to them slice by slice, so that
//! scoring reads days, never raw events.
//!
//! Both backends store an account's metric as one row per calendar month ([`UsageMonth`]):
//! 31 day slots of events, and each active person's days as a 31-bit mask (under a hash of
//! their id). Distinct people
//! on a day are counted from the masks, so a slice adds to a row without knowing who was
//! already counted, any slicing of the log gives the same rows, and a merge of two people
//! who were both active on a day makes them one. A slice writes one row per account and
//! metric it touched, however many people were active. The arithmetic lives here so that
//! the backends agree.
//!
//! Metrics: a track call's event name; `$page` and `$screen` for those calls; `$any` for all
//! three together (its days are the active days). Identify, group and alias are not usage.

use chrono::{Datelike, NaiveDate};
use domain::{AccountId, EventType};
use std::collections::HashMap;
use std::sync::Arc;

/// Every tracked event, page and screen view.
pub const ANY: &str = "$any";
pub const PAGE: &str = "$page";
pub const SCREEN: &str = "$screen";

/// The metric an event of `kind` named `name` counts towards, besides [`ANY`]; `None` for
/// calls that are not usage.
pub fn metric_of(kind: EventType, name: Option<&str>) -> Option<&str> {
    match kind {
        EventType::Track => Some(name.unwrap_or("")),
        EventType::Page => Some(PAGE),
        EventType::Screen => Some(SCREEN),
        EventType::Identify | EventType::Group | EventType::Alias => None,
    }
}

/// Events of one person on one day for one metric, from one slice: what the rollups add.
/// Fields in this order so that sorting puts each person's day and metric together.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usage {
    /// Whose rollups count the events: the person as the slice ended (after its merges);
    /// empty for events of an account with no person, which mark no one active. Shared, as
    /// the metric is, by the rows of a slice that name it (a slice of an import makes a
    /// row for each person, day and metric: millions).
    pub person_id: Arc<str>,
    pub day: NaiveDate,
    pub metric: Arc<str>,
    /// Which accounts the events count for.
    pub credit: Credit,
    pub events: u32,
}

/// The accounts events count for, as of each event: the account it named, or else every
/// account its person was in then. So a rollup never depends on how the log was sliced.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Credit {
    /// The event named an account.
    Named(AccountId),
    /// The event named none: the accounts its person was in then. That is the accounts that
    /// `people` (the person the event resolved to, and those merged into it earlier in the
    /// slice) were in before the slice, which the store knows, and those they joined in the
    /// slice before the event, which the processor does.
    Members { people: Vec<String>, joined: Vec<AccountId> },
}

/// A calendar month as stored: months since January 1970.
pub fn month_of(day: NaiveDate) -> i32 {
    (day.year() - 1970) * 12 + day.month0() as i32
}

/// The first day of stored month `month`.
pub fn month_start(month: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970 + month.div_euclid(12), month.rem_euclid(12) as u32 + 1, 1)
        .expect("a month index within chrono's range")
}

/// A person as a rollup row knows them: a stable 64-bit hash (FNV-1a) of their id, so that a
/// row holds 12 bytes per person and is read without allocating.
pub fn person_key(person: &str) -> u64 {
    person.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// An account's metric over one calendar month: events per day, and the days each person
/// was active (bit `d` for day `d + 1`), by [`person_key`], sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageMonth {
    pub events: [u32; 31],
    pub people: Vec<(u64, u32)>,
}

impl UsageMonth {
    /// People active on day slot `slot` (0 for the 1st).
    pub fn users(&self, slot: usize) -> u32 {
        self.people.iter().filter(|(_, bits)| bits & (1 << slot) != 0).count() as u32
    }

    /// Marks `person` active on day slot `slot`.
    pub fn active(&mut self, person: &str, slot: usize) {
        self.active_key(person_key(person), slot);
    }

    /// [`UsageMonth::active`] for the person whose [`person_key`] is `key`.
    pub fn active_key(&mut self, key: u64, slot: usize) {
        match self.people.binary_search_by_key(&key, |p| p.0) {
            Ok(i) => self.people[i].1 |= 1 << slot,
            Err(i) => self.people.insert(i, (key, 1 << slot)),
        }
    }

    /// 31 little-endian u32 of events, then per person their key (u64) and days (u32).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(124 + self.people.len() * 12);
        for v in &self.events {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (key, bits) in &self.people {
            out.extend_from_slice(&key.to_le_bytes());
            out.extend_from_slice(&bits.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<UsageMonth> {
        let (events, rest) = bytes.split_at_checked(124)?;
        if rest.len() % 12 != 0 {
            return None;
        }
        let mut m = UsageMonth { events: [0; 31], people: Vec::with_capacity(rest.len() / 12) };
        for (i, chunk) in events.chunks_exact(4).enumerate() {
            m.events[i] = u32::from_le_bytes(chunk.try_into().ok()?);
        }
        for chunk in rest.chunks_exact(12) {
            let key = u64::from_le_bytes(chunk[..8].try_into().ok()?);
            let bits = u32::from_le_bytes(chunk[8..].try_into().ok()?);
            m.people.push((key, bits));
        }
        m.people.is_sorted_by_key(|p| p.0).then_some(m)
    }

    /// Makes `from`'s days `into`'s. Returns whether `from` was in the row.
    pub fn merge_person(&mut self, from: &str, into: &str) -> bool {
        let Ok(i) = self.people.binary_search_by_key(&person_key(from), |p| p.0) else { return false };
        let (_, bits) = self.people.remove(i);
        let key = person_key(into);
        match self.people.binary_search_by_key(&key, |p| p.0) {
            Ok(j) => self.people[j].1 |= bits,
            Err(j) => self.people.insert(j, (key, bits)),
        }
        true
    }
}

/// One stored row: `(account, metric, month)`.
pub type UsageRowKey = (AccountId, String, i32);

/// The accounts a usage counts for, given each person's memberships before the slice; may
/// name one twice.
fn credited<'a>(u: &'a Usage, before: &'a HashMap<String, Vec<AccountId>>) -> impl Iterator<Item = &'a AccountId> {
    let (named, people, joined): (Option<&AccountId>, &[String], &[AccountId]) = match &u.credit {
        Credit::Named(a) => (Some(a), &[], &[]),
        Credit::Members { people, joined } => (None, people, joined),
    };
    named.into_iter().chain(people.iter().filter_map(|p| before.get(p)).flatten()).chain(joined)
}

/// The people whose memberships before the slice applying `usage` needs: read them before
/// the slice's own changes.
pub fn people_needing_memberships(usage: &[Usage]) -> Vec<String> {
    let mut people: Vec<String> = usage
        .iter()
        .flat_map(|u| match &u.credit {
            Credit::Members { people, .. } => people.clone(),
            Credit::Named(_) => Vec::new(),
        })
        .collect();
    people.sort();
    people.dedup();
    people
}

/// A row's part of a slice's usage: the events of each day slot, and who was active on
/// which day.
#[derive(Debug, Default)]
pub struct Gain {
    events: Vec<(usize, u32)>,
    /// Each person's [`person_key`] and day slot.
    people: Vec<(u64, usize)>,
}

impl Gain {
    /// Adds this gain to the row.
    pub fn add_to(&self, row: &mut UsageMonth) {
        for &(slot, n) in &self.events {
            row.events[slot] = row.events[slot].saturating_add(n);
        }
        for &(key, slot) in &self.people {
            row.active_key(key, slot);
        }
    }
}

/// A row's key with borrowed parts: `(account, metric, month)`.
pub type RowRef<'a> = (&'a AccountId, &'a str, i32);

/// What `usage` adds to each row it touches, given each person's memberships before the
/// slice, in the rows' order: one entry per row, so that each is read and written once.
pub fn gains<'a>(usage: &'a [Usage], memberships: &'a HashMap<String, Vec<AccountId>>) -> Vec<(RowRef<'a>, Gain)> {
    // A slice names each row many times, and an account's usages mostly come together (they
    // are sorted by person): the last row found is tried first (ids compare by pointer first).
    let mut at: foldhash::HashMap<RowRef<'a>, usize> = foldhash::HashMap::default();
    let mut out: Vec<(RowRef<'a>, Gain)> = Vec::new();
    let mut add = |key: RowRef<'a>, u: &'a Usage, slot: usize| {
        let i = match out.last() {
            Some((last, _)) if *last == key => out.len() - 1,
            _ => *at.entry(key).or_insert_with(|| {
                out.push((key, Gain::default()));
                out.len() - 1
            }),
        };
        let gain = &mut out[i].1;
        gain.events.push((slot, u.events));
        if u.events > 0 && !u.person_id.is_empty() {
            gain.people.push((person_key(&u.person_id), slot));
        }
    };
    for u in usage {
        let slot = u.day.day0() as usize;
        let month = month_of(u.day);
        match &u.credit {
            Credit::Named(a) => add((a, &*u.metric, month), u, slot),
            Credit::Members { .. } => {
                // A membership known both before and in the slice names an account twice.
                let mut accounts: Vec<&AccountId> = credited(u, memberships).collect();
                accounts.sort_unstable();
                accounts.dedup();
                for a in accounts {
                    add((a, &*u.metric, month), u, slot);
                }
            }
        }
    }
    out.sort_unstable_by_key(|(key, _)| *key);
    out
}

/// Whether applying `usage` needs no memberships (every usage names its account), so that
/// its [`gains`] can be worked out before the slice is applied.
pub fn names_its_accounts(usage: &[Usage]) -> bool {
    usage.iter().all(|u| matches!(u.credit, Credit::Named(_)))
}

/// The rows applying `usage` reads and writes, sorted.
pub fn usage_rows(usage: &[Usage], memberships: &HashMap<String, Vec<AccountId>>) -> Vec<UsageRowKey> {
    gains(usage, memberships).into_iter().map(|((a, m, mo), _)| (a.clone(), m.to_owned(), mo)).collect()
}

/// Adds `usage` to `rows`, which hold the stored rows of [`usage_rows`] (absent ones
/// missing). Returns the keys of the rows it changed, sorted.
pub fn apply_usage(
    usage: &[Usage],
    memberships: &HashMap<String, Vec<AccountId>>,
    rows: &mut HashMap<UsageRowKey, UsageMonth>,
) -> Vec<UsageRowKey> {
    let gains = gains(usage, memberships);
    let mut changed = Vec::with_capacity(gains.len());
    for ((a, metric, month), gain) in gains {
        let key = (a.clone(), metric.to_owned(), month);
        gain.add_to(rows.entry(key.clone()).or_default());
        changed.push(key);
    }
    changed
}

/// A day of an account's usage of a metric, as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DailyUsage {
    pub account_id: AccountId,
    pub metric: String,
    pub day: NaiveDate,
    pub events: u32,
    /// Distinct people active.
    pub users: u32,
}

/// A stored month of an account's metric, as bulk reads return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRow {
    pub account_id: AccountId,
    pub metric: String,
    /// The first day of the month.
    pub month: NaiveDate,
    pub events: [u32; 31],
    pub users: [u32; 31],
    /// For [`ANY`] only (empty for other metrics): each person's active days, as in
    /// [`UsageMonth::people`], so that distinct people over any window can be counted.
    pub people: Vec<(u64, u32)>,
}

impl UsageRow {
    pub fn new(account_id: AccountId, metric: String, month: i32, row: &UsageMonth) -> UsageRow {
        let mut users = [0; 31];
        for (slot, u) in users.iter_mut().enumerate() {
            *u = row.users(slot);
        }
        let people = if metric == ANY { row.people.clone() } else { Vec::new() };
        UsageRow { account_id, metric, month: month_start(month), events: row.events, users, people }
    }
}

/// The days of a stored row within `[from, to)` with any events.
pub fn days_of(
    account: &AccountId,
    metric: &str,
    month: i32,
    row: &UsageMonth,
    from: NaiveDate,
    to: NaiveDate,
) -> Vec<DailyUsage> {
    let start = month_start(month);
    (0..31)
        .filter(|&i| row.events[i] > 0)
        .filter_map(|i| {
            let day = start + chrono::Days::new(i as u64);
            (day.month() == start.month() && day >= from && day < to).then(|| DailyUsage {
                account_id: account.clone(),
                metric: metric.to_owned(),
                day,
                events: row.events[i],
                users: row.users(i),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn usage(person: &str, account: Option<&str>, d: &str, metric: &str, events: u32) -> Usage {
        let credit = match account {
            Some(a) => Credit::Named(AccountId::parse(a).unwrap()),
            None => Credit::Members { people: vec![person.into()], joined: vec![] },
        };
        Usage { person_id: person.into(), day: day(d), metric: metric.into(), credit, events }
    }

    #[test]
    fn months_and_their_rows_round_trip() {
        for d in ["1970-01-01", "2020-02-29", "2026-12-31", "1969-12-31"] {
            let m = month_of(day(d));
            assert_eq!(month_of(month_start(m)), m);
            assert!(month_start(m) <= day(d) && day(d) < month_start(m + 1));
        }
        let mut row = UsageMonth::default();
        row.events[30] = 7;
        row.active("p_é", 30);
        row.active("p_2", 0);
        row.active("p_2", 1);
        assert_eq!((row.users(0), row.users(1), row.users(30), row.users(2)), (1, 1, 1, 0));
        assert_eq!(UsageMonth::decode(&row.encode()), Some(row.clone()));
        let bytes = row.encode();
        assert_eq!(UsageMonth::decode(&bytes[..bytes.len() - 1]), None, "a cut row is damage");
        assert_eq!(UsageMonth::decode(&[1, 2, 3]), None);
    }

    #[test]
    fn events_count_per_day_and_people_once_per_account_day() {
        let acme = AccountId::parse("acme").unwrap();
        let memberships = HashMap::from([("ana".to_string(), vec![acme.clone()])]);
        // Ana uses the product twice on one day (two slices), once without naming her
        // account; Bo names it, and uses it again naming none after joining in the slice.
        let mut first =
            vec![usage("ana", None, "2026-03-05", "report", 2), usage("bo", Some("acme"), "2026-03-05", "report", 1)];
        first.push(Usage {
            credit: Credit::Members { people: vec!["bo".into()], joined: vec![acme.clone()] },
            ..usage("bo", None, "2026-03-05", "report", 4)
        });
        first.sort();
        // Ana again, naming no account, having "joined" acme in the slice although she was
        // in it before: her events count once.
        let second = [Usage {
            credit: Credit::Members { people: vec!["ana".into()], joined: vec![acme.clone()] },
            ..usage("ana", None, "2026-03-05", "report", 3)
        }];
        let mut rows = HashMap::new();
        for slice in [&first[..], &second[..]] {
            let keys = usage_rows(slice, &memberships);
            let changed = apply_usage(slice, &memberships, &mut rows);
            assert!(changed.iter().all(|k| keys.contains(k)), "only the rows it asked for");
        }
        let key = (acme.clone(), "report".to_string(), month_of(day("2026-03-01")));
        let row = rows[&key].clone();
        assert_eq!((row.events[4], row.users(4)), (10, 2));
        let days = days_of(&acme, "report", key.2, &row, day("2026-03-01"), day("2026-04-01"));
        assert_eq!(days.len(), 1);
        assert_eq!((days[0].day, days[0].events, days[0].users), (day("2026-03-05"), 10, 2));
        // Merged, Ana and Bo are one person active that day.
        let mut merged = row;
        assert!(merged.merge_person("bo", "ana"));
        assert_eq!((merged.events[4], merged.users(4)), (10, 1));
        assert!(!merged.merge_person("bo", "ana"));
        // A person in no account counts for none.
        let lone = [usage("cy", None, "2026-03-05", "report", 1)];
        assert!(usage_rows(&lone, &memberships).is_empty());
    }
}
