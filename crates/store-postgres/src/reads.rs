//! The read side: accounts, people, events, trait history.
//!
//! Each read is one statement: a person's identities and accounts, an event's accounts and an
//! account's member count come back as arrays and subqueries of the same row, so a page costs
//! one round trip however many rows it has.

use chrono::{DateTime, Utc};
use domain::{AccountId, WorkspaceId};
use serde_json::Value;
use sqlx::AssertSqlSafe;
use store::{
    Account, Cursor, EventFilter, Page, PageRequest, Person, Result, StoreError, StoredEvent, TraitChange, TraitSubject,
};

use crate::{PgStore, account_id, db_error, parse_col};

pub(crate) const ACCOUNT_COLUMNS: &str = "a.account_id, a.traits, a.first_seen_at, a.last_seen_at, a.created_at,
    (SELECT count(*) FROM memberships m WHERE m.workspace_id = a.workspace_id AND m.account_id = a.account_id)";

/// A person with identities and accounts, each list sorted (byte-wise, as the columns are "C").
const PERSON_COLUMNS: &str = "p.person_id, p.user_id, p.traits, p.first_seen_at, p.last_seen_at,
    ARRAY(SELECT i.value FROM identities i
          WHERE i.workspace_id = p.workspace_id AND i.person_id = p.person_id AND i.kind = 'user' ORDER BY i.value),
    ARRAY(SELECT i.value FROM identities i
          WHERE i.workspace_id = p.workspace_id AND i.person_id = p.person_id AND i.kind = 'anonymous' ORDER BY i.value),
    ARRAY(SELECT m.account_id FROM memberships m
          WHERE m.workspace_id = p.workspace_id AND m.person_id = p.person_id ORDER BY m.account_id)";

/// The event columns, with the accounts each event counts towards: the explicit one, or
/// else every account of its person (none while it has no person).
const EVENT_COLUMNS: &str = "e.seq, e.message_id, e.type, e.name, e.user_id, e.anonymous_id, e.person_id,
    CASE WHEN e.group_id IS NOT NULL THEN ARRAY[e.group_id]
         ELSE ARRAY(SELECT m.account_id FROM memberships m
                    WHERE m.workspace_id = e.workspace_id AND m.person_id = e.person_id ORDER BY m.account_id) END,
    e.timestamp, e.received_at, e.payload";

/// Events that count towards account `?` of workspace `$1` (`?` is replaced by a placeholder).
const FOR_ACCOUNT: &str = "(e.group_id = ? OR (e.group_id IS NULL AND e.person_id IN
    (SELECT person_id FROM memberships WHERE workspace_id = $1 AND account_id = ?)))";

pub(crate) type AccountRow = (String, Value, Option<DateTime<Utc>>, Option<DateTime<Utc>>, DateTime<Utc>, i64);

pub(crate) fn to_account(row: AccountRow) -> Result<Account> {
    let (id, traits, first_seen_at, last_seen_at, created_at, people_count) = row;
    Ok(Account {
        account_id: account_id(&id)?,
        name: traits.get("name").and_then(|n| n.as_str()).map(str::to_owned),
        traits,
        people_count,
        first_seen_at,
        last_seen_at,
        created_at,
    })
}

type PersonRow = (
    String,
    Option<String>,
    Value,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
);

fn to_person(row: PersonRow) -> Result<Person> {
    let (person_id, user_id, traits, first_seen_at, last_seen_at, user_ids, anonymous_ids, accounts) = row;
    Ok(Person {
        person_id,
        user_id,
        user_ids,
        anonymous_ids,
        traits,
        account_ids: accounts.iter().map(|a| account_id(a)).collect::<Result<_>>()?,
        first_seen_at,
        last_seen_at,
    })
}

type EventRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Vec<String>,
    DateTime<Utc>,
    DateTime<Utc>,
    String,
);

fn to_event(row: EventRow) -> Result<StoredEvent> {
    let (seq, message_id, kind, name, user_id, anonymous_id, person_id, accounts, timestamp, received_at, payload) =
        row;
    Ok(StoredEvent {
        seq,
        message_id,
        kind: parse_col(&kind)?,
        name,
        user_id,
        anonymous_id,
        person_id,
        // As SQLite: an explicit account id that is not a valid one is left out, not an error.
        account_ids: accounts.iter().filter_map(|a| AccountId::parse(a).ok()).collect(),
        timestamp,
        received_at,
        message: serde_json::from_str(&payload).unwrap_or(Value::Null),
    })
}

/// A bind parameter of a query assembled at run time.
enum Arg {
    Text(String),
    Time(DateTime<Utc>),
    Int(i64),
}

/// The page cursor part holding a time: microseconds, all that timestamptz keeps.
fn cursor_time(c: &Cursor, i: usize) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(c.int(i)?).ok_or(StoreError::InvalidCursor)
}

impl PgStore {
    pub(crate) async fn accounts(&self, ws: &WorkspaceId, page: &PageRequest) -> Result<Page<Account>> {
        let after = match &page.after {
            Some(c) => c.parts(1)?[0].clone(),
            None => String::new(),
        };
        let rows: Vec<AccountRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.workspace_id = $1 AND a.account_id > $2
             ORDER BY a.account_id LIMIT $3"
        )))
        .bind(ws.as_str())
        .bind(after)
        .bind(page.fetch_limit() as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let accounts = rows.into_iter().map(to_account).collect::<Result<Vec<_>>>()?;
        Ok(page.finish(accounts, |a| Cursor(vec![a.account_id.to_string()])))
    }

    /// Accounts for conditions: the traits named `traits` only (and `name`), picked out by the
    /// database, and no members counted.
    pub(crate) async fn account_records(
        &self,
        ws: &WorkspaceId,
        page: &PageRequest,
        traits: &[String],
    ) -> Result<Page<Account>> {
        let after = match &page.after {
            Some(c) => c.parts(1)?[0].clone(),
            None => String::new(),
        };
        let rows: Vec<AccountRow> = sqlx::query_as(
            "SELECT a.account_id,
                    (SELECT coalesce(jsonb_object_agg(t.key, t.value), '{}'::jsonb) FROM jsonb_each(a.traits) t
                     WHERE t.key = 'name' OR t.key = ANY($4)),
                    a.first_seen_at, a.last_seen_at, a.created_at, 0::bigint
             FROM accounts a WHERE a.workspace_id = $1 AND a.account_id > $2 ORDER BY a.account_id LIMIT $3",
        )
        .bind(ws.as_str())
        .bind(after)
        .bind(page.fetch_limit() as i64)
        .bind(traits)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let accounts = rows.into_iter().map(to_account).collect::<Result<Vec<_>>>()?;
        Ok(page.finish(accounts, |a| Cursor(vec![a.account_id.to_string()])))
    }

    pub(crate) async fn account(&self, ws: &WorkspaceId, id: &AccountId) -> Result<Option<Account>> {
        let row: Option<AccountRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.workspace_id = $1 AND a.account_id = $2"
        )))
        .bind(ws.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(to_account).transpose()
    }

    pub(crate) async fn people_of(&self, ws: &WorkspaceId, id: &AccountId, page: &PageRequest) -> Result<Page<Person>> {
        let after = match &page.after {
            Some(c) => c.parts(1)?[0].clone(),
            None => String::new(),
        };
        let rows: Vec<PersonRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {PERSON_COLUMNS}
             FROM memberships am JOIN people p ON p.workspace_id = am.workspace_id AND p.person_id = am.person_id
             WHERE am.workspace_id = $1 AND am.account_id = $2 AND am.person_id > $3
             ORDER BY am.person_id LIMIT $4"
        )))
        .bind(ws.as_str())
        .bind(id.as_str())
        .bind(after)
        .bind(page.fetch_limit() as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let people = rows.into_iter().map(to_person).collect::<Result<Vec<_>>>()?;
        Ok(page.finish(people, |p| Cursor(vec![p.person_id.clone()])))
    }

    pub(crate) async fn timeline(
        &self,
        ws: &WorkspaceId,
        id: &AccountId,
        page: &PageRequest,
    ) -> Result<Page<StoredEvent>> {
        let after = match &page.after {
            Some(c) => Some((cursor_time(c, 0)?, c.int(1)?)),
            None => None,
        };
        // The first page has no bound at all, rather than an `IS NULL OR` that a generic plan
        // could not use the index for.
        let bound = if after.is_some() { "AND (e.timestamp, e.seq) < ($3, $4)" } else { "" };
        let limit = if after.is_some() { "$5" } else { "$3" };
        let for_account = FOR_ACCOUNT.replace('?', "$2");
        let mut q = sqlx::query_as::<_, EventRow>(AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.workspace_id = $1 AND {for_account} {bound}
             ORDER BY e.timestamp DESC, e.seq DESC LIMIT {limit}"
        )))
        .bind(ws.as_str())
        .bind(id.as_str());
        if let Some((ts, seq)) = after {
            q = q.bind(ts).bind(seq);
        }
        let rows = q.bind(page.fetch_limit() as i64).fetch_all(&self.pool).await.map_err(db_error)?;
        let events = rows.into_iter().map(to_event).collect::<Result<Vec<_>>>()?;
        Ok(page.finish(events, |e| Cursor(vec![e.timestamp.timestamp_micros().to_string(), e.seq.to_string()])))
    }

    pub(crate) async fn find_person(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Person>> {
        // As SQLite: Steward's person id first, else the person a userId names, else the one an
        // anonymousId names; the first that matches decides, even if it names no person.
        let row: Option<PersonRow> = sqlx::query_as(AssertSqlSafe(format!(
            "WITH target AS (
                 SELECT t.person_id FROM (
                     SELECT 0 AS rank, person_id FROM people WHERE workspace_id = $1 AND person_id = $2
                     UNION ALL
                     SELECT 1, person_id FROM identities WHERE workspace_id = $1 AND kind = 'user' AND value = $2
                     UNION ALL
                     SELECT 2, person_id FROM identities WHERE workspace_id = $1 AND kind = 'anonymous' AND value = $2
                 ) t ORDER BY t.rank LIMIT 1)
             SELECT {PERSON_COLUMNS} FROM target JOIN people p ON p.workspace_id = $1 AND p.person_id = target.person_id"
        )))
        .bind(ws.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(to_person).transpose()
    }

    pub(crate) async fn events(
        &self,
        ws: &WorkspaceId,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<StoredEvent>> {
        // $1 is the workspace; each filter present adds a clause and its placeholder, in order.
        let mut args = vec![Arg::Text(ws.to_string())];
        let mut clauses = vec!["e.workspace_id = $1".to_string()];
        let mut push = |clause: &str, v: Arg| {
            args.push(v);
            clauses.push(clause.replace('?', &format!("${}", args.len())));
        };
        if let Some(m) = &filter.message_id {
            push("e.message_id = ?", Arg::Text(m.clone()));
        }
        if let Some(u) = &filter.user_id {
            push("e.user_id = ?", Arg::Text(u.clone()));
        }
        if let Some(k) = filter.kind {
            push("e.type = ?", Arg::Text(k.as_str().into()));
        }
        if let Some(s) = filter.since {
            push("e.timestamp >= ?", Arg::Time(s));
        }
        if let Some(u) = filter.until {
            push("e.timestamp < ?", Arg::Time(u));
        }
        if let Some(c) = &page.after {
            push("e.seq < ?", Arg::Int(c.int(0)?));
        }
        if let Some(a) = &filter.account_id {
            push(FOR_ACCOUNT, Arg::Text(a.to_string()));
        }
        args.push(Arg::Int(page.fetch_limit() as i64));
        // Only the constant fragments above are spliced in; every value is a bind parameter.
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE {} ORDER BY e.seq DESC LIMIT ${}",
            clauses.join(" AND "),
            args.len()
        );
        let mut q = sqlx::query_as::<_, EventRow>(AssertSqlSafe(sql));
        for arg in args {
            q = match arg {
                Arg::Text(s) => q.bind(s),
                Arg::Time(t) => q.bind(t),
                Arg::Int(i) => q.bind(i),
            };
        }
        let rows = q.fetch_all(&self.pool).await.map_err(db_error)?;
        let events = rows.into_iter().map(to_event).collect::<Result<Vec<_>>>()?;
        Ok(page.finish(events, |e| Cursor(vec![e.seq.to_string()])))
    }

    pub(crate) async fn traits_history(&self, ws: &WorkspaceId, subject: &TraitSubject) -> Result<Vec<TraitChange>> {
        let rows: Vec<(String, Value, DateTime<Utc>)> = sqlx::query_as(
            "SELECT key, value, at FROM trait_history
             WHERE workspace_id = $1 AND subject_kind = $2 AND subject_id = $3
             ORDER BY at, id",
        )
        .bind(ws.as_str())
        .bind(subject.kind())
        .bind(subject.id())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(|(key, value, at)| TraitChange { key, value, at }).collect())
    }
}
