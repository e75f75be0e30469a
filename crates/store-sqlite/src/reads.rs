//! The read side: accounts, people, events, trait history.

use domain::{AccountId, IdKind, WorkspaceId};
use rusqlite::{Connection, OptionalExtension, Row, params};
use store::{
    Account, Cursor, EventFilter, Page, PageRequest, Person, Result, StoreError, StoredEvent, TraitChange, TraitSubject,
};

use crate::block::EventRef;
use crate::ids::IdHashing;
use crate::log::Blocks;
use crate::owners::{Merges, Owners};
use crate::processing::kind_of;
use crate::{SqliteStore, json_col, ms, opt_time, sql_error, time};
use std::collections::HashSet;

pub(crate) const ACCOUNT_COLUMNS: &str = "a.account_id, a.traits, a.first_seen_at, a.last_seen_at, a.created_at,
    (SELECT count(*) FROM memberships m WHERE m.workspace_id = a.workspace_id AND m.account_id = a.account_id)";

/// The link subjects of account `?2` (workspace `?1`): the account itself and its people.
const ACCOUNT_SUBJECTS: &str = "SELECT 'g:' || ?2 UNION ALL
    SELECT 'p:' || person_id FROM memberships WHERE workspace_id = ?1 AND account_id = ?2";

/// An account row: id, traits, first and last seen, created, people.
pub(crate) type AccountRow = (String, String, Option<i64>, Option<i64>, i64, i64);

pub(crate) fn account_row(r: &Row<'_>) -> rusqlite::Result<AccountRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

pub(crate) fn to_account(row: AccountRow) -> Result<Account> {
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

pub(crate) fn query<T, R>(
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

    /// Accounts with the traits named `traits` only and no people counted, for conditions:
    /// a page of them without a count of members per account or every trait parsed.
    pub(crate) async fn account_records(
        &self,
        ws: &WorkspaceId,
        page: &PageRequest,
        traits: &[String],
    ) -> Result<Page<Account>> {
        let (ws, page) = (ws.clone(), page.clone());
        let mut traits = traits.to_vec();
        if !traits.iter().any(|k| k == "name") {
            traits.push("name".into());
        }
        self.read(move |conn| {
            let after = match &page.after {
                Some(c) => c.parts(1)?[0].clone(),
                None => String::new(),
            };
            let rows = query(
                conn,
                "SELECT a.account_id, a.traits, a.first_seen_at, a.last_seen_at, a.created_at, 0 FROM accounts a
                 WHERE a.workspace_id = ?1 AND a.account_id > ?2 ORDER BY a.account_id LIMIT ?3",
                params![ws.as_str(), after, page.fetch_limit() as i64],
                account_row,
                |(id, text, first, last, created, people)| {
                    let named = store::traits_named(&text, &traits);
                    Ok(Account {
                        account_id: AccountId::parse(&id).map_err(|e| StoreError::Backend(e.to_string()))?,
                        name: named.get("name").and_then(|n| n.as_str()).map(str::to_owned),
                        traits: named,
                        people_count: people,
                        first_seen_at: opt_time(first),
                        last_seen_at: opt_time(last),
                        created_at: time(created),
                    })
                },
            )?;
            Ok(page.finish(rows, |a| Cursor(vec![a.account_id.to_string()])))
        })
        .await
    }

    pub(crate) async fn account(&self, ws: &WorkspaceId, id: &AccountId) -> Result<Option<Account>> {
        let (ws, id) = (ws.clone(), id.clone());
        self.read(move |conn| account_on(conn, &ws, &id)).await
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
            let want = page.fetch_limit();
            let before = (ts, seq);
            // The newest `want` from the link lists, newest list first: a list whose newest
            // event is older than the `want`th found so far has nothing to add.
            let sql = format!(
                "SELECT subject, max_ts, data FROM event_links
                 WHERE ws = ?3 AND subject IN ({ACCOUNT_SUBJECTS}) AND min_ts <= ?4
                 ORDER BY max_ts DESC"
            );
            let mut found: Vec<(i64, i64)> = Vec::new();
            {
                let mut stmt = conn.prepare_cached(&sql).map_err(sql_error)?;
                let mut lists = stmt.query(params![ws.as_str(), id.as_str(), n, ts]).map_err(sql_error)?;
                while let Some(list) = lists.next().map_err(sql_error)? {
                    let max_ts: i64 = list.get(1).map_err(sql_error)?;
                    if found.len() >= want && max_ts < found[want - 1].0 {
                        break;
                    }
                    let own = list
                        .get_ref(0)
                        .map_err(sql_error)?
                        .as_str()
                        .map_err(|e| StoreError::Backend(e.to_string()))?
                        .starts_with("g:");
                    let data = list
                        .get_ref(2)
                        .map_err(sql_error)?
                        .as_blob()
                        .map_err(|e| StoreError::Backend(e.to_string()))?;
                    for (t, s, names_account) in crate::owners::decode_links(data)? {
                        // A person's event that names an account counts only there.
                        if (t, s) < before && (own || !names_account) {
                            found.push((t, s));
                        }
                    }
                    found.sort_unstable_by(|a, b| b.cmp(a));
                    found.dedup();
                    found.truncate(want);
                }
            }
            let mut blocks = Blocks::new(conn);
            // ...and from the processed events not linked yet, then the newest of both.
            let members = members_of(conn, &ws, &id)?;
            let mut owners = Owners::new(conn, n, ws.as_str());
            unlinked(conn, &ws, n, owners.merges(), |account, person| {
                Ok(match account {
                    Some(a) => a == id.as_str(),
                    None => members.contains(person()?.as_str()),
                })
            })?
            .into_iter()
            .filter(|&(t, s)| (t, s) < before)
            .for_each(|at| found.push(at));
            found.sort_unstable_by(|a, b| b.cmp(a));
            found.dedup();
            found.truncate(want);
            let mut out = Vec::with_capacity(found.len());
            for (_, seq) in found {
                if let Some(e) = blocks.get(n, seq)? {
                    out.push(stored_event(conn, &ws, &mut owners, seq, e)?);
                }
            }
            Ok(page.finish(out, |e| Cursor(vec![ms(&e.timestamp).to_string(), e.seq.to_string()])))
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
        let hashing = self.hashing;
        self.read(move |conn| {
            let before = match &page.after {
                Some(c) => c.int(0)?,
                None => i64::MAX,
            };
            let want = page.fetch_limit();
            let check = Check::new(conn, &ws, &filter)?;
            let mut owners = Owners::new(conn, n, ws.as_str());
            let mut out = Vec::new();
            match candidates(conn, &ws, n, &filter, hashing, &check.members, owners.merges(), before)? {
                // A selective filter: look at the events it names, newest first.
                Some(seqs) => {
                    let mut blocks = Blocks::new(conn);
                    for seq in seqs {
                        let Some(e) = blocks.get(n, seq)? else { continue };
                        if check.matches(&mut owners, seq, &e)? {
                            out.push(stored_event(conn, &ws, &mut owners, seq, e)?);
                            if out.len() == want {
                                break;
                            }
                        }
                    }
                }
                // Otherwise read the log backwards.
                None => {
                    // Blocks whose summary rules the filter out are not read.
                    let types = filter.kind.map_or(-1, crate::block::type_bit);
                    let since = filter.since.as_ref().map_or(i64::MIN, ms);
                    let until = filter.until.as_ref().map_or(i64::MAX, ms);
                    crate::log::each_block(
                        conn,
                        "SELECT first_seq, data FROM event_blocks
                         WHERE ws = ?1 AND first_seq < ?2 AND types & ?3 != 0 AND max_ts >= ?4 AND min_ts < ?5
                         ORDER BY last_seq DESC",
                        params![n, before, types, since, until],
                        |_, first_seq, block| {
                            for i in (0..block.len()).rev() {
                                let seq = first_seq + i as i64;
                                let Some(e) = block.get(i) else { continue };
                                if seq < before && check.matches(&mut owners, seq, &e)? {
                                    out.push(stored_event(conn, &ws, &mut owners, seq, e)?);
                                    if out.len() == want {
                                        return Ok(false);
                                    }
                                }
                            }
                            Ok(true)
                        },
                    )?;
                }
            }
            Ok(page.finish(out, |e| Cursor(vec![e.seq.to_string()])))
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

/// Which events of the log's tail a filter names.
type Pick = Box<dyn Fn(&EventRef<'_>) -> bool>;

/// The seqs (below `before`, newest first) that the most selective filter names, or `None`
/// when no filter is selective and the log must be read. Processed events are found through
/// what processing wrote (the links, and the owner rows not linked yet); the rest in the
/// log's tail. A superset is fine: each candidate is checked.
#[allow(clippy::too_many_arguments)]
fn candidates(
    conn: &Connection,
    ws: &WorkspaceId,
    n: i64,
    filter: &EventFilter,
    hashing: IdHashing,
    members: &HashSet<String>,
    merges: &mut Merges,
    before: i64,
) -> Result<Option<Vec<i64>>> {
    let mut seqs: Vec<i64>;
    // `tail` is where the written lookups end; `tail_matches` picks events after it.
    let (tail, tail_matches): (i64, Pick) = if let Some(m) = &filter.message_id {
        let through;
        (seqs, through) = crate::runs::stored_seqs(conn, n, hashing.hash(m))?;
        let m = m.clone();
        (through, Box::new(move |e| e.message_id == m.as_str()))
    } else if let Some(u) = &filter.user_id {
        let person: Option<String> = conn
            .prepare_cached("SELECT person_id FROM identities WHERE workspace_id = ?1 AND kind = 'user' AND value = ?2")
            .map_err(sql_error)?
            .query_row(params![ws.as_str(), u], |r| r.get(0))
            .optional()
            .map_err(sql_error)?;
        seqs = Vec::new();
        if let Some(person) = person {
            for data in query(
                conn,
                "SELECT data FROM event_links WHERE ws = ?1 AND subject = 'p:' || ?2",
                params![n, person],
                |r| r.get::<_, Vec<u8>>(0),
                Ok,
            )? {
                seqs.extend(crate::owners::decode_links(&data)?.into_iter().map(|(_, seq, _)| seq));
            }
            let more = unlinked(conn, ws, n, merges, |_, p| Ok(p()? == person))?;
            seqs.extend(more.into_iter().map(|(_, seq)| seq));
        }
        let u = u.clone();
        (crate::log::cursor(conn, ws)?.seq, Box::new(move |e| e.user_id == Some(u.as_str())))
    } else if let Some(a) = &filter.account_id {
        let sql = format!("SELECT subject, data FROM event_links WHERE ws = ?3 AND subject IN ({ACCOUNT_SUBJECTS})");
        seqs = Vec::new();
        let lists = query(
            conn,
            &sql,
            params![ws.as_str(), a.as_str(), n],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)),
            Ok,
        )?;
        for (subject, data) in lists {
            let own = subject.starts_with("g:");
            let links = crate::owners::decode_links(&data)?;
            // A person's event that names an account counts only there.
            seqs.extend(links.into_iter().filter(|l| own || !l.2).map(|(_, seq, _)| seq));
        }
        let more = unlinked(conn, ws, n, merges, |account, p| {
            Ok(match account {
                Some(g) => g == a.as_str(),
                None => members.contains(p()?.as_str()),
            })
        })?;
        seqs.extend(more.into_iter().map(|(_, seq)| seq));
        let a = a.to_string();
        (crate::log::cursor(conn, ws)?.seq, Box::new(move |e| e.group_id == Some(a.as_str())))
    } else {
        return Ok(None);
    };
    crate::log::scan_blocks(conn, n, tail, |first_seq, block| {
        for (i, e) in block.iter().enumerate() {
            let seq = first_seq + i as i64;
            if seq > tail && tail_matches(&e) {
                seqs.push(seq);
            }
        }
        Ok(true)
    })?;
    seqs.retain(|&s| s < before);
    seqs.sort_unstable_by(|a, b| b.cmp(a));
    seqs.dedup();
    Ok(Some(seqs))
}

/// The `(ts, seq)` of the processed events not yet in `event_links` that `keep` picks, given
/// the account the event names and a way to its person (as now, after merges).
fn unlinked(
    conn: &Connection,
    ws: &WorkspaceId,
    n: i64,
    merges: &mut Merges,
    mut keep: impl FnMut(Option<&str>, &mut dyn FnMut() -> Result<String>) -> Result<bool>,
) -> Result<Vec<(i64, i64)>> {
    let linked = crate::owners::linked_seq(conn, ws.as_str())?;
    let mut out = Vec::new();
    crate::owners::scan(conn, n, (linked, i64::MAX), |_, row| {
        for e in row.entries().iter().filter(|e| e.seq > linked) {
            let mut person = || merges.resolve(conn, row.person(e));
            if keep(row.account(e), &mut person)? {
                out.push((e.ts, e.seq));
            }
        }
        Ok(true)
    })?;
    Ok(out)
}

/// The people of an account.
fn members_of(conn: &Connection, ws: &WorkspaceId, account: &AccountId) -> Result<HashSet<String>> {
    Ok(query(
        conn,
        "SELECT person_id FROM memberships WHERE workspace_id = ?1 AND account_id = ?2",
        params![ws.as_str(), account.as_str()],
        |r| r.get(0),
        Ok,
    )?
    .into_iter()
    .collect())
}

/// An event filter, checked against one event.
struct Check<'f> {
    filter: &'f EventFilter,
    /// The people of the filter's account.
    members: HashSet<String>,
}

impl<'f> Check<'f> {
    fn new(conn: &Connection, ws: &WorkspaceId, filter: &'f EventFilter) -> Result<Check<'f>> {
        let members = match &filter.account_id {
            Some(a) => members_of(conn, ws, a)?,
            None => Default::default(),
        };
        Ok(Check { filter, members })
    }

    fn matches(&self, owners: &mut Owners<'_>, seq: i64, e: &EventRef<'_>) -> Result<bool> {
        let f = self.filter;
        let basic = f.message_id.as_deref().is_none_or(|m| e.message_id == m)
            && f.user_id.as_deref().is_none_or(|u| Some(u) == e.user_id)
            && f.kind.is_none_or(|k| k == e.kind)
            && f.since.is_none_or(|t| e.timestamp_ms >= ms(&t))
            && f.until.is_none_or(|t| e.timestamp_ms < ms(&t));
        let Some(account) = &f.account_id else { return Ok(basic) };
        if !basic {
            return Ok(false);
        }
        // The event names the account, or names none and its person belongs to it.
        Ok(match e.group_id {
            Some(g) => g == account.as_str(),
            None => owners.person(seq)?.is_some_and(|p| self.members.contains(&p)),
        })
    }
}

/// An event as the API shows it: with who did it and the accounts it counts towards (the one
/// it names, or else every account of its person).
fn stored_event(
    conn: &Connection,
    ws: &WorkspaceId,
    owners: &mut Owners<'_>,
    seq: i64,
    e: EventRef<'_>,
) -> Result<StoredEvent> {
    let person_id = owners.person(seq)?;
    let account_ids = match (e.group_id, &person_id) {
        (Some(g), _) => AccountId::parse(g).ok().into_iter().collect(),
        (None, Some(p)) => query(
            conn,
            "SELECT account_id FROM memberships WHERE workspace_id = ?1 AND person_id = ?2 ORDER BY account_id",
            params![ws.as_str(), p],
            |r| r.get::<_, String>(0),
            Ok,
        )?
        .into_iter()
        .filter_map(|a| AccountId::parse(&a).ok())
        .collect(),
        (None, None) => Vec::new(),
    };
    Ok(StoredEvent {
        seq,
        message_id: e.message_id.text().into_owned(),
        kind: e.kind,
        name: e.name.map(str::to_owned),
        user_id: e.user_id.map(str::to_owned),
        anonymous_id: e.anonymous_id.map(str::to_owned),
        person_id,
        account_ids,
        timestamp: time(e.timestamp_ms),
        received_at: time(e.received_at_ms),
        message: json_col(&e.payload()),
    })
}

pub(crate) fn account_on(conn: &Connection, ws: &WorkspaceId, id: &AccountId) -> Result<Option<Account>> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.workspace_id = ?1 AND a.account_id = ?2");
    let row = conn
        .prepare_cached(&sql)
        .map_err(sql_error)?
        .query_row(params![ws.as_str(), id.as_str()], account_row)
        .optional()
        .map_err(sql_error)?;
    row.map(to_account).transpose()
}
