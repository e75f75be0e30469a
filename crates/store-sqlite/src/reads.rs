//! The read side: accounts, people, events, trait history.

use domain::{AccountId, IdKind, WorkspaceId};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use store::{Account, Cursor, EventFilter, Page, PageRequest, Person, Result, StoredEvent, TraitChange, TraitSubject};

use crate::ids::id_hash;
use crate::processing::kind_of;
use crate::{SqliteStore, json_col, ms, opt_time, parse_col, sql_error, time};

const ACCOUNT_COLUMNS: &str = "a.account_id, a.traits, a.first_seen_at, a.last_seen_at, a.created_at,
    (SELECT count(*) FROM memberships m WHERE m.workspace_id = a.workspace_id AND m.account_id = a.account_id)";

/// The event columns, with the accounts each event counts towards: the explicit one, or
/// else every account of its person. Needs `events e LEFT JOIN event_people ep` and the
/// workspace id as `?1`.
const EVENT_COLUMNS: &str = "e.seq, e.message_id, e.type, e.name, e.user_id, e.anonymous_id, ep.person_id,
    CASE WHEN e.group_id IS NOT NULL THEN e.group_id
         ELSE (SELECT group_concat(account_id, char(31)) FROM
               (SELECT account_id FROM memberships m WHERE m.workspace_id = ?1 AND m.person_id = ep.person_id
                ORDER BY account_id)) END,
    e.timestamp, e.received_at, e.payload";

const EVENTS_FROM: &str = "events e LEFT JOIN event_people ep ON ep.seq = e.seq";

/// The link subjects of account `?2` (workspace `?1`): the account itself and its people.
const ACCOUNT_SUBJECTS: &str = "SELECT 'g:' || ?2 UNION ALL
    SELECT 'p:' || person_id FROM memberships WHERE workspace_id = ?1 AND account_id = ?2";

fn account_row(r: &Row<'_>) -> rusqlite::Result<(String, String, Option<i64>, Option<i64>, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

fn to_account(row: (String, String, Option<i64>, Option<i64>, i64, i64)) -> Result<Account> {
    let (id, traits, first, last, created, people) = row;
    let traits = json_col(&traits);
    Ok(Account {
        account_id: AccountId::parse(&id).map_err(|e| store::StoreError::Backend(e.to_string()))?,
        name: traits.get("name").and_then(|n| n.as_str()).map(str::to_owned),
        traits,
        people_count: people,
        first_seen_at: opt_time(first),
        last_seen_at: opt_time(last),
        created_at: time(created),
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
    Option<String>,
    i64,
    i64,
    String,
);

fn event_row(r: &Row<'_>) -> rusqlite::Result<EventRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
    ))
}

fn to_event(row: EventRow) -> Result<StoredEvent> {
    let (seq, message_id, kind, name, user_id, anonymous_id, person_id, accounts, ts, received, payload) = row;
    let account_ids =
        accounts.map(|a| a.split('\u{1f}').filter_map(|s| AccountId::parse(s).ok()).collect()).unwrap_or_default();
    Ok(StoredEvent {
        seq,
        message_id,
        kind: parse_col(kind)?,
        name,
        user_id,
        anonymous_id,
        person_id,
        account_ids,
        timestamp: time(ts),
        received_at: time(received),
        message: json_col(&payload),
    })
}

fn query<T, R>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    row: impl FnMut(&Row<'_>) -> rusqlite::Result<R>,
    convert: impl Fn(R) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(sql_error)?;
    let rows = stmt.query_map(params, row).map_err(sql_error)?;
    rows.map(|r| convert(r.map_err(sql_error)?)).collect()
}

impl SqliteStore {
    pub(crate) async fn accounts(&self, ws: &WorkspaceId, page: &PageRequest) -> Result<Page<Account>> {
        let (ws, page) = (ws.clone(), page.clone());
        self.read(move |conn| {
            let after = match &page.after {
                Some(c) => c.parts(1)?[0].clone(),
                None => String::new(),
            };
            let sql = format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.workspace_id = ?1 AND a.account_id > ?2
                 ORDER BY a.account_id LIMIT ?3"
            );
            let rows =
                query(conn, &sql, params![ws.as_str(), after, page.fetch_limit() as i64], account_row, to_account)?;
            Ok(page.finish(rows, |a| Cursor(vec![a.account_id.to_string()])))
        })
        .await
    }

    pub(crate) async fn account(&self, ws: &WorkspaceId, id: &AccountId) -> Result<Option<Account>> {
        let (ws, id) = (ws.clone(), id.clone());
        self.read(move |conn| {
            let sql =
                format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.workspace_id = ?1 AND a.account_id = ?2");
            let row = conn
                .prepare_cached(&sql)
                .map_err(sql_error)?
                .query_row(params![ws.as_str(), id.as_str()], account_row)
                .optional()
                .map_err(sql_error)?;
            row.map(to_account).transpose()
        })
        .await
    }

    pub(crate) async fn people_of(&self, ws: &WorkspaceId, id: &AccountId, page: &PageRequest) -> Result<Page<Person>> {
        let (ws, id, page) = (ws.clone(), id.clone(), page.clone());
        self.read(move |conn| {
            let after = match &page.after {
                Some(c) => c.parts(1)?[0].clone(),
                None => String::new(),
            };
            let ids: Vec<String> = query(
                conn,
                "SELECT person_id FROM memberships WHERE workspace_id = ?1 AND account_id = ?2 AND person_id > ?3
                 ORDER BY person_id LIMIT ?4",
                params![ws.as_str(), id.as_str(), after, page.fetch_limit() as i64],
                |r| r.get(0),
                Ok,
            )?;
            let people = ids.iter().filter_map(|p| person(conn, &ws, p).transpose()).collect::<Result<Vec<_>>>()?;
            Ok(page.finish(people, |p| Cursor(vec![p.person_id.clone()])))
        })
        .await
    }

    pub(crate) async fn timeline(
        &self,
        ws: &WorkspaceId,
        id: &AccountId,
        page: &PageRequest,
    ) -> Result<Page<StoredEvent>> {
        let n = self.ws_number(ws).await?.unwrap_or(-1);
        let (ws, id, page) = (ws.clone(), id.clone(), page.clone());
        self.read(move |conn| {
            let (ts, seq) = match &page.after {
                Some(c) => (c.int(0)?, c.int(1)?),
                None => (i64::MAX, i64::MAX),
            };
            // A person's event that names another account counts only there.
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM event_links l JOIN events e ON e.seq = l.seq LEFT JOIN event_people ep ON ep.seq = e.seq
                 WHERE l.ws = ?3 AND l.subject IN ({ACCOUNT_SUBJECTS})
                   AND (l.subject = 'g:' || ?2 OR e.group_id IS NULL)
                   AND (l.ts < ?4 OR (l.ts = ?4 AND l.seq < ?5))
                 ORDER BY l.ts DESC, l.seq DESC LIMIT ?6"
            );
            let rows = query(
                conn,
                &sql,
                params![ws.as_str(), id.as_str(), n, ts, seq, page.fetch_limit() as i64],
                event_row,
                to_event,
            )?;
            Ok(page.finish(rows, |e| Cursor(vec![ms(&e.timestamp).to_string(), e.seq.to_string()])))
        })
        .await
    }

    pub(crate) async fn find_person(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Person>> {
        let (ws, id) = (ws.clone(), id.to_owned());
        self.read(move |conn| {
            if let Some(p) = person(conn, &ws, &id)? {
                return Ok(Some(p));
            }
            for kind in [IdKind::User, IdKind::Anonymous] {
                let found: Option<String> = conn
                    .prepare_cached(
                        "SELECT person_id FROM identities WHERE workspace_id = ?1 AND kind = ?2 AND value = ?3",
                    )
                    .map_err(sql_error)?
                    .query_row(params![ws.as_str(), kind.as_str(), id], |r| r.get(0))
                    .optional()
                    .map_err(sql_error)?;
                if let Some(pid) = found {
                    return person(conn, &ws, &pid);
                }
            }
            Ok(None)
        })
        .await
    }

    pub(crate) async fn events(
        &self,
        ws: &WorkspaceId,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<StoredEvent>> {
        let n = self.ws_number(ws).await?.unwrap_or(-1);
        let (ws, filter, page) = (ws.clone(), filter.clone(), page.clone());
        self.read(move |conn| {
            // Events not yet processed have no links; they are found in the log's tail. The
            // selective filters are written as a set of candidate seqs (a union, not an OR), so
            // that SQLite looks them up rather than scanning the workspace's log.
            let processed = crate::log::cursor(conn, &ws)?.seq;
            // ?1 is the workspace, ?2 the account (possibly unused), ?3 the workspace's number,
            // ?4 where processing is; the rest are numbered in order.
            let mut args: Vec<Sql> = vec![
                Sql::Text(ws.to_string()),
                Sql::Text(filter.account_id.as_ref().map(|a| a.to_string()).unwrap_or_default()),
                Sql::Integer(n),
                Sql::Integer(processed),
            ];
            let mut clauses = vec!["e.ws = ?3".to_string()];
            let mut push = |clause: &str, v: Vec<Sql>| {
                let mut clause = clause.to_string();
                for (i, v) in v.into_iter().enumerate() {
                    args.push(v);
                    clause = clause.replace(&format!("?{}", (b'a' + i as u8) as char), &format!("?{}", args.len()));
                }
                clauses.push(clause);
            };
            if let Some(m) = &filter.message_id {
                let through = crate::ids::flushed_through(conn)?;
                push(
                    "e.seq IN (SELECT seq FROM event_ids WHERE ws = ?3 AND hash = ?a
                               UNION ALL SELECT seq FROM events WHERE ws = ?3 AND seq > ?b)
                     AND e.message_id = ?c",
                    vec![Sql::Integer(id_hash(m)), Sql::Integer(through), Sql::Text(m.clone())],
                );
            }
            if let Some(u) = &filter.user_id {
                push(
                    "e.seq IN (SELECT l.seq FROM event_links l WHERE l.ws = ?3 AND l.subject =
                        (SELECT 'p:' || person_id FROM identities WHERE workspace_id = ?1 AND kind = 'user' AND value = ?a)
                      UNION ALL SELECT seq FROM events WHERE ws = ?3 AND seq > ?4)
                     AND e.user_id = ?a",
                    vec![Sql::Text(u.clone())],
                );
            }
            if let Some(k) = filter.kind {
                push("e.type = ?a", vec![Sql::Text(k.as_str().into())]);
            }
            if let Some(s) = &filter.since {
                push("e.timestamp >= ?a", vec![Sql::Integer(ms(s))]);
            }
            if let Some(u) = &filter.until {
                push("e.timestamp < ?a", vec![Sql::Integer(ms(u))]);
            }
            if let Some(c) = &page.after {
                push("e.seq < ?a", vec![Sql::Integer(c.int(0)?)]);
            }
            if filter.account_id.is_some() {
                clauses.push(format!(
                    "((e.seq IN (SELECT l.seq FROM event_links l WHERE l.ws = ?3 AND l.subject IN ({ACCOUNT_SUBJECTS}))
                       AND (e.group_id = ?2 OR e.group_id IS NULL))
                      OR (e.seq > ?4 AND e.group_id = ?2))"
                ));
            }
            args.push(Sql::Integer(page.fetch_limit() as i64));
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM {EVENTS_FROM} WHERE {} ORDER BY e.seq DESC LIMIT ?{}",
                clauses.join(" AND "),
                args.len()
            );
            let rows = query(conn, &sql, params_from_iter(args), event_row, to_event)?;
            Ok(page.finish(rows, |e| Cursor(vec![e.seq.to_string()])))
        })
        .await
    }

    pub(crate) async fn traits_history(&self, ws: &WorkspaceId, subject: &TraitSubject) -> Result<Vec<TraitChange>> {
        let (ws, kind, id) = (ws.clone(), subject.kind(), subject.id().to_owned());
        self.read(move |conn| {
            query(
                conn,
                "SELECT key, value, at FROM trait_history WHERE workspace_id = ?1 AND subject_kind = ?2 AND subject_id = ?3
                 ORDER BY at, rowid",
                params![ws.as_str(), kind, id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)),
                |(key, value, at)| Ok(TraitChange { key, value: json_col(&value), at: time(at) }),
            )
        })
        .await
    }
}

/// A person by Steward's id, with identities and accounts.
fn person(conn: &Connection, ws: &WorkspaceId, id: &str) -> Result<Option<Person>> {
    let row = conn
        .prepare_cached("SELECT person_id, user_id, traits, first_seen_at, last_seen_at FROM people WHERE workspace_id = ?1 AND person_id = ?2")
        .map_err(sql_error)?
        .query_row(params![ws.as_str(), id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, String>(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()
        .map_err(sql_error)?;
    let Some((person_id, user_id, traits, first, last)) = row else { return Ok(None) };
    let identities: Vec<(String, String)> = query(
        conn,
        "SELECT kind, value FROM identities WHERE workspace_id = ?1 AND person_id = ?2 ORDER BY kind, value",
        params![ws.as_str(), person_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
        Ok,
    )?;
    let account_ids = query(
        conn,
        "SELECT account_id FROM memberships WHERE workspace_id = ?1 AND person_id = ?2 ORDER BY account_id",
        params![ws.as_str(), person_id],
        |r| r.get::<_, String>(0),
        |a| AccountId::parse(&a).map_err(|e| store::StoreError::Backend(e.to_string())),
    )?;
    let pick = |k: IdKind| {
        identities.iter().filter(|(kind, _)| kind_of(kind) == k).map(|(_, v)| v.clone()).collect::<Vec<_>>()
    };
    Ok(Some(Person {
        person_id,
        user_id,
        user_ids: pick(IdKind::User),
        anonymous_ids: pick(IdKind::Anonymous),
        traits: json_col(&traits),
        account_ids,
        first_seen_at: opt_time(first),
        last_seen_at: opt_time(last),
    }))
}
