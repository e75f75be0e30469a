//! Applying what processing decided: people, identities, accounts, memberships, traits.
//!
//! Several processes may process the same workspace. Each change set is applied in one
//! transaction that first locks the workspace's row in `processing_cursors`: a second process
//! waits there, then finds the cursor moved and applies nothing (compare-and-set). Holding that
//! lock, the transaction is the only writer of the workspace's derived rows, which is why traits
//! can be read, compared in Rust (with exactly the SQLite backend's notion of "changed") and
//! written back.

use domain::{AccountId, IdentityKey, Timestamp, WorkspaceId};
use serde_json::{Map, Value};
use sqlx::PgConnection;
use std::collections::HashMap;
use store::{Changes, EventPerson, KnownPerson, LogPosition, Op, Result};

use crate::{PgStore, db_error};

impl PgStore {
    pub(crate) async fn identities(
        &self,
        ws: &WorkspaceId,
        keys: &[IdentityKey],
    ) -> Result<Vec<(IdentityKey, KnownPerson)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let kinds: Vec<&str> = keys.iter().map(|k| k.kind.as_str()).collect();
        let values: Vec<&str> = keys.iter().map(|k| k.value.as_str()).collect();
        // One round trip for the whole batch; the ordinality returns hits in the order asked.
        let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
            "SELECT k.ord, i.person_id, p.user_id
             FROM UNNEST($2::text[], $3::text[]) WITH ORDINALITY AS k (kind, value, ord)
             JOIN identities i ON i.workspace_id = $1 AND i.kind = k.kind AND i.value = k.value
             JOIN people p ON p.workspace_id = i.workspace_id AND p.person_id = i.person_id
             ORDER BY k.ord",
        )
        .bind(ws.as_str())
        .bind(kinds)
        .bind(values)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .filter_map(|(ord, person_id, user_id)| {
                let key = keys.get(usize::try_from(ord).ok()?.checked_sub(1)?)?;
                Some((key.clone(), KnownPerson { person_id, user_id }))
            })
            .collect())
    }

    pub(crate) async fn apply(
        &self,
        ws: &WorkspaceId,
        from: LogPosition,
        to: LogPosition,
        changes: &Changes,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        if lock_cursor(&mut tx, ws).await? != from {
            // Another process got there first. Rolled back here rather than left to the pool:
            // the row lock gave this transaction an id, and while it stays open it holds back
            // every reader of the log (see log.rs).
            tx.rollback().await.map_err(db_error)?;
            return Ok(false);
        }
        let members_before = crate::usage::memberships_before(&mut tx, ws, &changes.usage).await?;
        // Runs of Seen ops (the processor emits one per person and account at the end of a
        // slice) go as one statement; every other op is applied on its own, in order.
        let mut seen = Vec::new();
        for op in &changes.ops {
            match op {
                Op::Seen { person_id, account_id, first, last } => seen.push(Seen {
                    person: person_id.as_deref(),
                    account: account_id.as_ref(),
                    first,
                    last,
                    members: true,
                }),
                Op::PersonSeen { person_id, first, last } => {
                    seen.push(Seen { person: Some(person_id), account: None, first, last, members: false })
                }
                _ => {
                    widen_seen(&mut tx, ws, std::mem::take(&mut seen)).await?;
                    apply_op(&mut tx, ws, op).await?;
                }
            }
        }
        widen_seen(&mut tx, ws, seen).await?;
        assign_events(&mut tx, ws, &changes.event_people).await?;
        crate::usage::apply(&mut tx, ws, &changes.usage, &members_before).await?;
        sqlx::query("UPDATE processing_cursors SET tx = $2, seq = $3 WHERE workspace_id = $1")
            .bind(ws.as_str())
            .bind(to.tx)
            .bind(to.seq)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    pub(crate) async fn reset(&self, ws: &WorkspaceId) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        // The same lock as `apply`, taken first, so a reset never interleaves with a change set.
        lock_cursor(&mut tx, ws).await?;
        // Independent deletes of disjoint rows: one statement, one round trip.
        sqlx::query(
            "WITH people AS (DELETE FROM people WHERE workspace_id = $1),
                  identities AS (DELETE FROM identities WHERE workspace_id = $1),
                  merges AS (DELETE FROM person_merges WHERE workspace_id = $1),
                  accounts AS (DELETE FROM accounts WHERE workspace_id = $1),
                  memberships AS (DELETE FROM memberships WHERE workspace_id = $1),
                  history AS (DELETE FROM trait_history WHERE workspace_id = $1),
                  usage AS (DELETE FROM usage_months WHERE workspace_id = $1),
                  cursor AS (UPDATE processing_cursors SET tx = 0, seq = 0 WHERE workspace_id = $1)
             UPDATE events SET person_id = NULL WHERE workspace_id = $1 AND person_id IS NOT NULL",
        )
        .bind(ws.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }
}

/// Locks the workspace's cursor row for the rest of the transaction and returns the cursor.
///
/// The row is created first if missing, so that there is always a row to lock: two processes
/// starting on a new workspace both wait on it instead of both seeing "no cursor".
async fn lock_cursor(conn: &mut PgConnection, ws: &WorkspaceId) -> Result<LogPosition> {
    sqlx::query(
        "INSERT INTO processing_cursors (workspace_id, tx, seq) VALUES ($1, 0, 0)
         ON CONFLICT (workspace_id) DO NOTHING",
    )
    .bind(ws.as_str())
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    let (tx, seq): (i64, i64) =
        sqlx::query_as("SELECT tx, seq FROM processing_cursors WHERE workspace_id = $1 FOR UPDATE")
            .bind(ws.as_str())
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)?;
    Ok(LogPosition { tx, seq })
}

/// Records which person each event belongs to, in one statement for the whole batch.
async fn assign_events(conn: &mut PgConnection, ws: &WorkspaceId, event_people: &[EventPerson]) -> Result<()> {
    if event_people.is_empty() {
        return Ok(());
    }
    // Applied one by one (as SQLite does), a later assignment of the same event wins; an UPDATE
    // joined to duplicates would pick one arbitrarily, so keep only the last of each.
    let last: HashMap<i64, usize> = event_people.iter().enumerate().map(|(i, e)| (e.seq, i)).collect();
    // An account's own event of no one keeps no person (the timeline finds it by its
    // `group_id`).
    let (seqs, people): (Vec<i64>, Vec<&str>) = event_people
        .iter()
        .enumerate()
        .filter(|(i, e)| last.get(&e.seq) == Some(i) && !e.person_id.is_empty())
        .map(|(_, e)| (e.seq, &*e.person_id))
        .unzip();
    if seqs.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE events e SET person_id = v.person_id
         FROM UNNEST($2::bigint[], $3::text[]) AS v (seq, person_id)
         WHERE e.workspace_id = $1 AND e.seq = v.seq",
    )
    .bind(ws.as_str())
    .bind(seqs)
    .bind(people)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

async fn exec<'q>(
    conn: &mut PgConnection,
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Result<u64> {
    Ok(query.execute(conn).await.map_err(db_error)?.rows_affected())
}

async fn apply_op(conn: &mut PgConnection, ws: &WorkspaceId, op: &Op) -> Result<()> {
    let w = ws.as_str();
    match op {
        Op::CreatePerson { person_id, user_id, at } => {
            let q = sqlx::query(
                "INSERT INTO people (workspace_id, person_id, user_id, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (workspace_id, person_id) DO NOTHING",
            );
            exec(conn, q.bind(w).bind(person_id).bind(user_id).bind(at)).await?;
        }
        Op::SetUserId { person_id, user_id } => {
            let q = sqlx::query("UPDATE people SET user_id = $3 WHERE workspace_id = $1 AND person_id = $2");
            exec(conn, q.bind(w).bind(person_id).bind(user_id)).await?;
        }
        Op::LinkIdentity { key, person_id } => {
            let q = sqlx::query(
                "INSERT INTO identities (workspace_id, kind, value, person_id) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (workspace_id, kind, value) DO UPDATE SET person_id = excluded.person_id",
            );
            exec(conn, q.bind(w).bind(key.kind.as_str()).bind(&key.value).bind(person_id)).await?;
        }
        Op::MergePeople { from, into, at } => merge(conn, ws, from, into, at).await?,
        Op::SetPersonTraits { person_id, traits, at } => {
            set_traits(conn, ws, Subject::Person, person_id, traits, at).await?
        }
        Op::UpsertAccount { account_id, at } => {
            let q = sqlx::query(
                "INSERT INTO accounts (workspace_id, account_id, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (workspace_id, account_id) DO NOTHING",
            );
            exec(conn, q.bind(w).bind(account_id.as_str()).bind(at)).await?;
        }
        Op::SetAccountTraits { account_id, traits, at } => {
            set_traits(conn, ws, Subject::Account, account_id.as_str(), traits, at).await?
        }
        Op::AddMembership { person_id, account_id, at } => {
            let q = sqlx::query(
                "INSERT INTO memberships (workspace_id, account_id, person_id, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (workspace_id, account_id, person_id) DO NOTHING",
            );
            exec(conn, q.bind(w).bind(account_id.as_str()).bind(person_id).bind(at)).await?;
        }
        Op::Seen { person_id, account_id, first, last } => {
            let seen = Seen { person: person_id.as_deref(), account: account_id.as_ref(), first, last, members: true };
            widen_seen(conn, ws, vec![seen]).await?;
        }
        Op::PersonSeen { person_id, first, last } => {
            let seen = Seen { person: Some(person_id), account: None, first, last, members: false };
            widen_seen(conn, ws, vec![seen]).await?;
        }
    }
    Ok(())
}

/// One Seen or PersonSeen op: the person, the explicit account, first and last activity, and
/// whether, with no explicit account, every account of the person is widened.
struct Seen<'a> {
    person: Option<&'a str>,
    account: Option<&'a AccountId>,
    first: &'a Timestamp,
    last: &'a Timestamp,
    members: bool,
}

/// Applies consecutive Seen ops in one statement. Widening (LEAST/GREATEST) gives the same
/// result in any order and grouped, and no op of the run changes memberships, so this equals
/// applying them one by one: the person's first/last seen, and that of the explicit account or
/// else of every account the person is in. Grouping by target keeps each row updated once.
async fn widen_seen(conn: &mut PgConnection, ws: &WorkspaceId, run: Vec<Seen<'_>>) -> Result<()> {
    if run.is_empty() {
        return Ok(());
    }
    let people: Vec<Option<&str>> = run.iter().map(|s| s.person).collect();
    let accounts: Vec<Option<&str>> = run.iter().map(|s| s.account.map(AccountId::as_str)).collect();
    let firsts: Vec<Timestamp> = run.iter().map(|s| *s.first).collect();
    let lasts: Vec<Timestamp> = run.iter().map(|s| *s.last).collect();
    let members: Vec<bool> = run.iter().map(|s| s.members).collect();
    // LEAST and GREATEST ignore NULL: a first sighting sets both bounds.
    let q = sqlx::query(
        "WITH seen AS (
             SELECT * FROM UNNEST($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::bool[])
                 AS s (person_id, account_id, first, last, members)),
         people AS (
             UPDATE people p SET first_seen_at = LEAST(p.first_seen_at, g.first),
                                 last_seen_at = GREATEST(p.last_seen_at, g.last)
             FROM (SELECT person_id, min(first) AS first, max(last) AS last
                   FROM seen WHERE person_id IS NOT NULL GROUP BY person_id) g
             WHERE p.workspace_id = $1 AND p.person_id = g.person_id)
         UPDATE accounts a SET first_seen_at = LEAST(a.first_seen_at, g.first),
                               last_seen_at = GREATEST(a.last_seen_at, g.last)
         FROM (SELECT t.account_id, min(t.first) AS first, max(t.last) AS last FROM (
                   SELECT s.account_id, s.first, s.last FROM seen s WHERE s.account_id IS NOT NULL
                   UNION ALL
                   SELECT m.account_id, s.first, s.last FROM seen s
                   JOIN memberships m ON m.workspace_id = $1 AND m.person_id = s.person_id
                   WHERE s.account_id IS NULL AND s.members) t
               GROUP BY t.account_id) g
         WHERE a.workspace_id = $1 AND a.account_id = g.account_id",
    );
    exec(conn, q.bind(ws.as_str()).bind(people).bind(accounts).bind(firsts).bind(lasts).bind(members)).await?;
    Ok(())
}

#[derive(Clone, Copy)]
enum Subject {
    Person,
    Account,
}

impl Subject {
    fn kind(self) -> &'static str {
        match self {
            Subject::Person => "person",
            Subject::Account => "account",
        }
    }
}

async fn set_traits(
    conn: &mut PgConnection,
    ws: &WorkspaceId,
    subject: Subject,
    id: &str,
    new: &Map<String, Value>,
    at: &Timestamp,
) -> Result<()> {
    let load = match subject {
        Subject::Person => "SELECT traits FROM people WHERE workspace_id = $1 AND person_id = $2",
        Subject::Account => "SELECT traits FROM accounts WHERE workspace_id = $1 AND account_id = $2",
    };
    let current: Option<Value> =
        sqlx::query_scalar(load).bind(ws.as_str()).bind(id).fetch_optional(&mut *conn).await.map_err(db_error)?;
    let Some(current) = current else { return Ok(()) };
    let mut current = match current {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    for (k, v) in new {
        if current.get(k) != Some(v) {
            keys.push(k.as_str());
            values.push(v.clone());
            current.insert(k.clone(), v.clone());
        }
    }
    if keys.is_empty() {
        return Ok(());
    }
    // The history rows and the new traits in one statement; the ordinality gives the history
    // rows their ids in the order the changes were made.
    let store = match subject {
        Subject::Person => {
            "WITH history AS (
                 INSERT INTO trait_history (workspace_id, subject_kind, subject_id, key, value, at)
                 SELECT $1, $2, $3, c.key, c.value, $6
                 FROM UNNEST($4::text[], $5::jsonb[]) WITH ORDINALITY AS c (key, value, ord) ORDER BY c.ord)
             UPDATE people SET traits = $7 WHERE workspace_id = $1 AND person_id = $3"
        }
        Subject::Account => {
            "WITH history AS (
                 INSERT INTO trait_history (workspace_id, subject_kind, subject_id, key, value, at)
                 SELECT $1, $2, $3, c.key, c.value, $6
                 FROM UNNEST($4::text[], $5::jsonb[]) WITH ORDINALITY AS c (key, value, ord) ORDER BY c.ord)
             UPDATE accounts SET traits = $7 WHERE workspace_id = $1 AND account_id = $3"
        }
    };
    let q = sqlx::query(store)
        .bind(ws.as_str())
        .bind(subject.kind())
        .bind(id)
        .bind(keys)
        .bind(values)
        .bind(at)
        .bind(Value::Object(current));
    exec(conn, q).await?;
    Ok(())
}

async fn merge(conn: &mut PgConnection, ws: &WorkspaceId, from: &str, into: &str, at: &Timestamp) -> Result<()> {
    if from == into {
        return Ok(());
    }
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM people WHERE workspace_id = $1 AND person_id = $2")
        .bind(ws.as_str())
        .bind(from)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
    if exists.is_none() {
        return Ok(());
    }
    // Every step reads the state before the merge and writes rows no other step writes, so
    // they can run as one statement: one round trip.
    //  - `into` keeps its traits and gains those it lacks (`||` lets the right side win), keeps
    //    its user id if it has one, and takes the wider first/last seen.
    //  - identities, memberships, events and trait history move to `into`; `from` is removed and
    //    the merge recorded.
    let q = sqlx::query(
        "WITH survivor AS (
             UPDATE people SET traits = f.traits || people.traits,
                               user_id = coalesce(people.user_id, f.user_id),
                               first_seen_at = LEAST(people.first_seen_at, f.first_seen_at),
                               last_seen_at = GREATEST(people.last_seen_at, f.last_seen_at)
             FROM people f
             WHERE f.workspace_id = $1 AND f.person_id = $2 AND people.workspace_id = $1 AND people.person_id = $3),
         identities AS (UPDATE identities SET person_id = $3 WHERE workspace_id = $1 AND person_id = $2),
         copied AS (
             INSERT INTO memberships (workspace_id, account_id, person_id, created_at)
             SELECT workspace_id, account_id, $3, created_at FROM memberships WHERE workspace_id = $1 AND person_id = $2
             ON CONFLICT (workspace_id, account_id, person_id) DO NOTHING),
         left_behind AS (DELETE FROM memberships WHERE workspace_id = $1 AND person_id = $2),
         events AS (UPDATE events SET person_id = $3 WHERE workspace_id = $1 AND person_id = $2),
         history AS (
             UPDATE trait_history SET subject_id = $3
             WHERE workspace_id = $1 AND subject_kind = 'person' AND subject_id = $2),
         gone AS (DELETE FROM people WHERE workspace_id = $1 AND person_id = $2)
         INSERT INTO person_merges (workspace_id, from_id, into_id, merged_at) VALUES ($1, $2, $3, $4)",
    );
    exec(conn, q.bind(ws.as_str()).bind(from).bind(into).bind(at)).await?;
    crate::usage::merge(conn, ws, from, into).await
}
