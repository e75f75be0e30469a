//! The daily usage rollups (`usage_months`): applying a slice's usage, making a merged
//! person's days the survivor's, and reading days back. The arithmetic is `store::usage`'s.

use chrono::NaiveDate;
use domain::{AccountId, WorkspaceId};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use store::usage::{
    Gain, RowRef, UsageMonth, UsageRowKey, days_of, gains, month_of, names_its_accounts, people_needing_memberships,
};
use store::{DailyUsage, Result, StoreError, Usage, UsageRow};

use crate::{SqliteStore, sql_error};

fn corrupt(account: &str) -> StoreError {
    StoreError::Backend(format!("a usage row of account {account:?} is damaged"))
}

fn parse_account(s: String) -> Result<AccountId> {
    AccountId::parse(&s).map_err(|_| StoreError::Backend(format!("unexpected stored account {s:?}")))
}

const UPSERT: &str = "INSERT INTO usage_months (ws, account_id, metric, month, data) VALUES (?1, ?2, ?3, ?4, ?5)
                      ON CONFLICT (ws, account_id, metric, month) DO UPDATE SET data = excluded.data";

/// The accounts of each person whose unnamed events `usage` credits, as they were before the
/// slice: read before the slice's own changes.
pub(crate) fn memberships_before(
    conn: &Connection,
    ws: &WorkspaceId,
    usage: &[Usage],
) -> Result<HashMap<String, Vec<AccountId>>> {
    let mut memberships = HashMap::new();
    let mut stmt = conn
        .prepare_cached("SELECT account_id FROM memberships WHERE workspace_id = ?1 AND person_id = ?2")
        .map_err(sql_error)?;
    for person in people_needing_memberships(usage) {
        let accounts = stmt
            .query_map(params![ws.as_str(), person], |r| r.get::<_, String>(0))
            .map_err(sql_error)?
            .map(|a| parse_account(a.map_err(sql_error)?))
            .collect::<Result<Vec<AccountId>>>()?;
        memberships.insert(person, accounts);
    }
    Ok(memberships)
}

/// A slice's usage, as its transaction takes it.
pub(crate) enum SliceUsage {
    /// What each row gains, worked out before (every usage names its account).
    Gains(Vec<(UsageRowKey, Gain)>),
    /// Usage that credits people's accounts: worked out with their memberships before the
    /// slice, which only the transaction can read.
    Usage(Vec<Usage>),
}

impl SliceUsage {
    /// The slice's usage, worked out here when it needs no memberships (off the writer).
    pub(crate) fn of(usage: &[Usage]) -> SliceUsage {
        if names_its_accounts(usage) {
            let none = HashMap::new();
            SliceUsage::Gains(
                gains(usage, &none)
                    .into_iter()
                    .map(|((a, m, month), g)| ((a.clone(), m.to_owned(), month), g))
                    .collect(),
            )
        } else {
            SliceUsage::Usage(usage.to_vec())
        }
    }

    /// The accounts of each person it credits through memberships, as they were before the
    /// slice: read before the slice's own changes.
    pub(crate) fn memberships_before(
        &self,
        conn: &Connection,
        ws: &WorkspaceId,
    ) -> Result<HashMap<String, Vec<AccountId>>> {
        match self {
            SliceUsage::Gains(_) => Ok(HashMap::new()),
            SliceUsage::Usage(usage) => memberships_before(conn, ws, usage),
        }
    }

    /// Adds the usage to the rollups, inside the slice's transaction: one row read and
    /// written per account, metric and month it touches.
    pub(crate) fn apply(&self, conn: &Connection, n: i64, memberships: &HashMap<String, Vec<AccountId>>) -> Result<()> {
        match self {
            SliceUsage::Gains(rows) => add_gains(conn, n, rows.iter().map(|((a, m, mo), g)| ((a, m.as_str(), *mo), g))),
            SliceUsage::Usage(usage) => add_gains(conn, n, gains(usage, memberships).iter().map(|(k, g)| (*k, g))),
        }
    }
}

/// An account's gains in a slice from which its rows are read with one statement (those of
/// the months the gains span) rather than one each: a slice of an import gains tens of rows
/// per account (a month of each metric), a slice of live events a row or two.
const READ_ACCOUNT_AT: usize = 8;

/// Adds each gain to its row, read and written back once, in the order given (the rows':
/// an account's gains together).
fn add_gains<'a>(conn: &Connection, n: i64, gains: impl Iterator<Item = (RowRef<'a>, &'a Gain)>) -> Result<()> {
    let mut read = conn
        .prepare_cached(
            "SELECT data FROM usage_months WHERE ws = ?1 AND account_id = ?2 AND metric = ?3 AND month = ?4",
        )
        .map_err(sql_error)?;
    let mut read_account = conn
        .prepare_cached(
            "SELECT metric, month, data FROM usage_months
             WHERE ws = ?1 AND account_id = ?2 AND month BETWEEN ?3 AND ?4 ORDER BY metric, month",
        )
        .map_err(sql_error)?;
    let mut write = conn.prepare_cached(UPSERT).map_err(sql_error)?;
    let mut gains = gains.peekable();
    let mut of_account: Vec<(RowRef<'a>, &'a Gain)> = Vec::new();
    let mut stored: Vec<((String, i32), Vec<u8>)> = Vec::new();
    while let Some(first) = gains.next() {
        let account = first.0.0;
        of_account.clear();
        of_account.push(first);
        while let Some(next) = gains.next_if(|((a, _, _), _)| *a == account) {
            of_account.push(next);
        }
        let whole = of_account.len() >= READ_ACCOUNT_AT;
        if whole {
            let (from, to) =
                of_account.iter().fold((i32::MAX, i32::MIN), |(lo, hi), ((_, _, m), _)| (lo.min(*m), hi.max(*m)));
            stored.clear();
            let rows = read_account
                .query_map(params![n, account.as_str(), from, to], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
                .map_err(sql_error)?;
            // In the key's order, which the table's own makes free: searched below.
            for row in rows {
                stored.push(row.map_err(sql_error)?);
            }
        }
        for &((_, metric, month), gain) in &of_account {
            let at = whole.then(|| stored.binary_search_by(|((m, mo), _)| (m.as_str(), *mo).cmp(&(metric, month))));
            let data: Option<Vec<u8>> = match at {
                Some(Ok(i)) => Some(std::mem::take(&mut stored[i].1)),
                Some(Err(_)) => None,
                None => read
                    .query_row(params![n, account.as_str(), metric, month], |r| r.get(0))
                    .optional()
                    .map_err(sql_error)?,
            };
            let mut row = match data {
                Some(data) => UsageMonth::decode(&data).ok_or_else(|| corrupt(account.as_str()))?,
                None => UsageMonth::default(),
            };
            gain.add_to(&mut row);
            let data = row.encode();
            write.execute(params![n, account.as_str(), metric, month, &data]).map_err(sql_error)?;
            // Should a row come twice, the second adds to what the first wrote.
            match at {
                Some(Ok(i)) => stored[i].1 = data,
                Some(Err(i)) => stored.insert(i, ((metric.to_owned(), month), data)),
                None => {}
            }
        }
    }
    Ok(())
}

/// Makes person `from`'s active days person `into`'s, in the rows of `into`'s accounts
/// (which hold `from`'s by now).
pub(crate) fn merge(conn: &Connection, ws: &WorkspaceId, n: i64, from: &str, into: &str) -> Result<()> {
    let rows: Vec<(String, String, i32, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT account_id, metric, month, data FROM usage_months
             WHERE ws = ?1 AND account_id IN (SELECT account_id FROM memberships WHERE workspace_id = ?2 AND person_id = ?3)",
        )
        .map_err(sql_error)?
        .query_map(params![n, ws.as_str(), into], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .map_err(sql_error)?
        .collect::<rusqlite::Result<_>>()
        .map_err(sql_error)?;
    let mut stmt = conn.prepare_cached(UPSERT).map_err(sql_error)?;
    for (account, metric, month, data) in rows {
        let mut row = UsageMonth::decode(&data).ok_or_else(|| corrupt(&account))?;
        if row.merge_person(from, into) {
            stmt.execute(params![n, account, metric, month, row.encode()]).map_err(sql_error)?;
        }
    }
    Ok(())
}

impl SqliteStore {
    /// The days of `account` in `[from, to)`.
    pub(crate) async fn usage_of(
        &self,
        ws: &WorkspaceId,
        account: &AccountId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyUsage>> {
        let Some(n) = self.ws_number(ws).await? else { return Ok(Vec::new()) };
        let account = account.clone();
        let (first, last) = (month_of(from), month_of(to));
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT metric, month, data FROM usage_months
                     WHERE ws = ?1 AND account_id = ?2 AND month BETWEEN ?3 AND ?4 ORDER BY metric, month",
                )
                .map_err(sql_error)?;
            let mut rows = stmt.query(params![n, account.as_str(), first, last]).map_err(sql_error)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(sql_error)? {
                let metric: String = r.get(0).map_err(sql_error)?;
                let month: i32 = r.get(1).map_err(sql_error)?;
                let data: Vec<u8> = r.get(2).map_err(sql_error)?;
                let row = UsageMonth::decode(&data).ok_or_else(|| corrupt(account.as_str()))?;
                out.extend(days_of(&account, &metric, month, &row, from, to));
            }
            Ok(out)
        })
        .await
    }

    /// Every account's monthly rows for the months holding `[from, to)`.
    pub(crate) async fn usage_rows(
        &self,
        ws: &WorkspaceId,
        account: Option<&AccountId>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<UsageRow>> {
        let Some(n) = self.ws_number(ws).await? else { return Ok(Vec::new()) };
        let account = account.map(|a| a.as_str().to_owned());
        self.read(move |conn| usage_rows_on(conn, n, account.as_deref(), from, to)).await
    }
}

impl SqliteStore {
    /// Each account's rows for the months holding its own range: one reader, a seek per account.
    pub(crate) async fn usage_rows_each(
        &self,
        ws: &WorkspaceId,
        ranges: &[(AccountId, NaiveDate, NaiveDate)],
    ) -> Result<Vec<UsageRow>> {
        let Some(n) = self.ws_number(ws).await? else { return Ok(Vec::new()) };
        let mut ranges = ranges.to_vec();
        ranges.sort_by(|a, b| a.0.cmp(&b.0));
        self.read(move |conn| {
            let mut out = Vec::new();
            for (account, from, to) in &ranges {
                out.extend(usage_rows_on(conn, n, Some(account.as_str()), *from, *to)?);
            }
            Ok(out)
        })
        .await
    }
}

/// The monthly rows of workspace number `n` (of `account` alone, if given) for the months
/// holding `[from, to)`.
pub(crate) fn usage_rows_on(
    conn: &rusqlite::Connection,
    n: i64,
    account: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<UsageRow>> {
    let (first, last) = (month_of(from), month_of(to));
    let mut stmt = conn
        .prepare_cached(if account.is_some() {
            "SELECT account_id, metric, month, data FROM usage_months
             WHERE ws = ?1 AND account_id = ?4 AND month BETWEEN ?2 AND ?3 ORDER BY account_id, metric, month"
        } else {
            "SELECT account_id, metric, month, data FROM usage_months
             WHERE ws = ?1 AND month BETWEEN ?2 AND ?3 AND ?4 IS NULL ORDER BY account_id, metric, month"
        })
        .map_err(sql_error)?;
    let mut rows = stmt.query(params![n, first, last, account]).map_err(sql_error)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sql_error)? {
        let id: String = r.get(0).map_err(sql_error)?;
        let metric: String = r.get(1).map_err(sql_error)?;
        let month: i32 = r.get(2).map_err(sql_error)?;
        let data: Vec<u8> = r.get(3).map_err(sql_error)?;
        let row = UsageMonth::decode(&data).ok_or_else(|| corrupt(&id))?;
        out.push(UsageRow::new(parse_account(id)?, metric, month, &row));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::usage::Credit;

    fn rows(conn: &Connection) -> Vec<(String, String, i32, Vec<u8>)> {
        let mut stmt =
            conn.prepare("SELECT account_id, metric, month, data FROM usage_months ORDER BY 1, 2, 3").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect()
    }

    /// Usage that names its accounts is worked out before the transaction, the rest in it;
    /// both add to the rows as the rollups' arithmetic does.
    #[test]
    fn usage_worked_out_before_the_transaction_adds_what_it_would_in_it() {
        let day = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
        let acme = AccountId::parse("acme").unwrap();
        let named = |person: &str, d: &str, metric: &str, events: u32| Usage {
            person_id: person.into(),
            day: day(d),
            metric: metric.into(),
            credit: Credit::Named(acme.clone()),
            events,
        };
        let slices = [
            vec![named("ana", "2026-03-05", "report", 2), named("bo", "2026-03-05", "report", 1)],
            vec![named("ana", "2026-03-05", "report", 3), named("ana", "2026-04-01", "$any", 1)],
        ];
        let applied = |as_gains: bool| {
            let conn = Connection::open_in_memory().unwrap();
            conn.execute_batch(include_str!("../migrations/0001_init.sql")).unwrap();
            conn.execute_batch(include_str!("../migrations/0002_usage.sql")).unwrap();
            for slice in &slices {
                let usage = if as_gains { SliceUsage::of(slice) } else { SliceUsage::Usage(slice.clone()) };
                assert_eq!(matches!(usage, SliceUsage::Gains(_)), as_gains);
                let before = usage.memberships_before(&conn, &WorkspaceId::parse("ws_test").unwrap()).unwrap();
                usage.apply(&conn, 1, &before).unwrap();
            }
            rows(&conn)
        };
        let (before, within) = (applied(true), applied(false));
        assert_eq!(before, within);
        assert_eq!(before.len(), 2);
        let march = UsageMonth::decode(&before.iter().find(|r| r.1 == "report").unwrap().3).unwrap();
        assert_eq!((march.events[4], march.users(4)), (6, 2));
        // Usage crediting a person's accounts waits for the transaction.
        let members = Usage {
            credit: Credit::Members { people: vec!["cy".into()], joined: vec![] },
            ..named("cy", "2026-03-06", "report", 1)
        };
        assert!(matches!(SliceUsage::of(&[members]), SliceUsage::Usage(_)));
    }

    /// An account with many rows in a slice has them read with one statement (those of the
    /// months its gains span), one with few a statement each: both add what the rows hold
    /// already, rows outside the span are left as they were, and the outcome is the same as
    /// usage applied one event at a time.
    #[test]
    fn rows_read_by_account_or_one_by_one_add_up_alike() {
        let day = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
        let usage = |account: &str, person: &str, d: &str, metric: &str, events: u32| Usage {
            person_id: person.into(),
            day: day(d),
            metric: metric.into(),
            credit: Credit::Named(AccountId::parse(account).unwrap()),
            events,
        };
        // "big" gains 12 rows in the second slice (three metrics over four months), one of
        // them and a row of an earlier month stored by the first; "small" gains two.
        let first = vec![
            usage("big", "ana", "2026-01-10", "report", 4),
            usage("big", "ana", "2026-03-02", "export", 1),
            usage("small", "cy", "2026-03-02", "report", 2),
        ];
        let mut second = Vec::new();
        for (i, metric) in ["export", "login", "report"].into_iter().enumerate() {
            for month in 3..=6 {
                let d = format!("2026-{month:02}-{:02}", 2 + i);
                second.push(usage("big", if i == 1 { "bo" } else { "ana" }, &d, metric, month as u32));
            }
        }
        second.push(usage("small", "cy", "2026-03-02", "report", 1));
        second.push(usage("small", "dee", "2026-04-09", "report", 5));
        assert!(second.iter().filter(|u| !matches!(&*u.person_id, "cy" | "dee")).count() >= READ_ACCOUNT_AT);
        let applied = |slices: Vec<Vec<Usage>>| {
            let conn = Connection::open_in_memory().unwrap();
            conn.execute_batch(include_str!("../migrations/0001_init.sql")).unwrap();
            conn.execute_batch(include_str!("../migrations/0002_usage.sql")).unwrap();
            for slice in &slices {
                let usage = SliceUsage::of(slice);
                let before = usage.memberships_before(&conn, &WorkspaceId::parse("ws_test").unwrap()).unwrap();
                usage.apply(&conn, 1, &before).unwrap();
            }
            rows(&conn)
        };
        let together = applied(vec![first.clone(), second.clone()]);
        let one_by_one = applied(first.iter().chain(&second).map(|u| vec![u.clone()]).collect());
        assert_eq!(together, one_by_one);
        assert_eq!(together.len(), 1 + 12 + 2, "big's January row, its twelve, small's two");
        let row = |account: &str, metric: &str, month: i32| {
            let r = together.iter().find(|r| r.0 == account && r.1 == metric && r.2 == month).unwrap();
            UsageMonth::decode(&r.3).unwrap()
        };
        let march = month_of(day("2026-03-01"));
        // Stored by the first slice and added to by the second.
        assert_eq!(row("big", "export", march).events[1], 1 + 3);
        assert_eq!(row("small", "report", march).events[1], 2 + 1);
        // Outside the second slice's months: as the first left it.
        assert_eq!(row("big", "report", month_of(day("2026-01-01"))).events[9], 4);
        assert_eq!(row("big", "login", march + 3).users(2), 1);
    }
}
