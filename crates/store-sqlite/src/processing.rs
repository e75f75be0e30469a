//! Applying what processing decided: people, identities, accounts, memberships, traits.

use domain::{IdKind, IdentityKey, Timestamp, WorkspaceId};
use foldhash::HashMap;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};
use store::{Changes, KnownPerson, LogPosition, Op, Result};

use crate::log::cursor;
use crate::owners::LinkBuild;
use crate::writer::Priority;
use crate::{SqliteStore, ms, sql_error};

impl SqliteStore {
    pub(crate) async fn identities(
        &self,
        ws: &WorkspaceId,
        keys: &[IdentityKey],
    ) -> Result<Vec<(IdentityKey, KnownPerson)>> {
        let ws = ws.clone();
        let keys = keys.to_vec();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT i.person_id, p.user_id FROM identities i
                     JOIN people p ON p.workspace_id = i.workspace_id AND p.person_id = i.person_id
                     WHERE i.workspace_id = ?1 AND i.kind = ?2 AND i.value = ?3",
                )
                .map_err(sql_error)?;
            let mut out = Vec::new();
            for key in keys {
                let found = stmt
                    .query_row(params![ws.as_str(), key.kind.as_str(), key.value], |r| {
                        Ok(KnownPerson { person_id: r.get(0)?, user_id: r.get(1)? })
                    })
                    .optional()
                    .map_err(sql_error)?;
                if let Some(p) = found {
                    out.push((key, p));
                }
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn apply(
        &self,
        ws: &WorkspaceId,
        from: LogPosition,
        to: LogPosition,
        changes: &Changes,
    ) -> Result<bool> {
        let Some(n) = self.ws_number(ws).await? else {
            return Err(store::StoreError::Backend(format!("no workspace {ws}")));
        };
        let ws = ws.clone();
        // Everything but the statements is done here, off the writer.
        let owners = crate::owners::encode(&changes.event_people);
        let ops = changes.ops.clone();
        let usage = crate::usage::SliceUsage::of(&changes.usage);
        // Nobody waits on processing but the processor: appends go first. What it writes is
        // derived from the log, with the cursor that says how far: lost to a power cut, it is
        // made again from there, so its commit does not wait for the disk.
        self.write_derived(Priority::Background, move |conn| {
            if cursor(conn, &ws)? != from {
                return Ok(false);
            }
            let members_before = usage.memberships_before(conn, &ws)?;
            // Runs of first/last-seen ops (processing ends each slice with one per person and
            // account) go as a few statements; every other op is applied on its own, in order.
            let mut seen = SeenRun::default();
            for op in &ops {
                if !seen.add(op) {
                    seen.apply(conn, &ws)?;
                    apply_op(conn, &ws, n, op)?;
                }
            }
            seen.apply(conn, &ws)?;
            usage.apply(conn, n, &members_before)?;
            if let Some((first_seq, last_seq, data)) = owners {
                conn.prepare_cached("INSERT INTO event_owners (last_seq, ws, first_seq, data) VALUES (?1, ?2, ?3, ?4)")
                    .map_err(sql_error)?
                    .execute(params![last_seq, n, first_seq, data])
                    .map_err(sql_error)?;
            }
            conn.prepare_cached(
                "INSERT INTO processing_cursors (workspace_id, tx, seq) VALUES (?1, ?2, ?3)
                 ON CONFLICT (workspace_id) DO UPDATE SET tx = excluded.tx, seq = excluded.seq",
            )
            .map_err(sql_error)?
            .execute(params![ws.as_str(), to.tx, to.seq])
            .map_err(sql_error)?;
            Ok(true)
        })
        .await
    }

    /// Writes the next chunk of `event_links`, preparing a build first if one is due.
    pub(crate) async fn maintain(&self, ws: &WorkspaceId, idle: bool) -> Result<bool> {
        let Some(n) = self.ws_number(ws).await? else { return Ok(false) };
        // Held throughout, so that a reset cannot interleave with a chunk.
        let mut builds = self.link_builds.lock().await;
        let build = match builds.remove(&n) {
            Some(build) => build,
            None => {
                let workspace = ws.clone();
                match self.read(move |conn| LinkBuild::prepare(conn, n, &workspace, idle)).await? {
                    Some(build) => build,
                    None => return Ok(false),
                }
            }
        };
        let workspace = ws.clone();
        let (build, over) = self
            .write_derived(Priority::Background, move |conn| {
                let mut build = build;
                let over = build.write_chunk(conn, n, workspace.as_str())?;
                Ok((build, over))
            })
            .await?;
        if !over {
            builds.insert(n, build);
        }
        Ok(true)
    }

    pub(crate) async fn reset(&self, ws: &WorkspaceId) -> Result<()> {
        let n = self.ws_number(ws).await?.unwrap_or(-1);
        let ws = ws.clone();
        let mut builds = self.link_builds.lock().await;
        builds.remove(&n);
        self.write(move |conn| {
            for table in [
                "people",
                "identities",
                "person_merges",
                "accounts",
                "memberships",
                "trait_history",
                "processing_cursors",
            ] {
                conn.execute(&format!("DELETE FROM {table} WHERE workspace_id = ?1"), [ws.as_str()])
                    .map_err(sql_error)?;
            }
            for table in ["event_owners", "event_links", "usage_months"] {
                conn.execute(&format!("DELETE FROM {table} WHERE ws = ?1"), [n]).map_err(sql_error)?;
            }
            Ok(())
        })
        .await
    }
}

fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
    conn.prepare_cached(sql).map_err(sql_error)?.execute(params).map_err(sql_error)
}

fn apply_op(conn: &Connection, ws: &WorkspaceId, n: i64, op: &Op) -> Result<()> {
    let w = ws.as_str();
    match op {
        Op::CreatePerson { person_id, user_id, at } => {
            exec(
                conn,
                "INSERT OR IGNORE INTO people (workspace_id, person_id, user_id, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![w, person_id, user_id, ms(at)],
            )?;
        }
        Op::SetUserId { person_id, user_id } => {
            exec(
                conn,
                "UPDATE people SET user_id = ?3 WHERE workspace_id = ?1 AND person_id = ?2",
                params![w, person_id, user_id],
            )?;
        }
        Op::LinkIdentity { key, person_id } => {
            exec(
                conn,
                "INSERT INTO identities (workspace_id, kind, value, person_id) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (workspace_id, kind, value) DO UPDATE SET person_id = excluded.person_id",
                params![w, key.kind.as_str(), key.value, person_id],
            )?;
        }
        Op::MergePeople { from, into, at } => merge(conn, ws, n, from, into, at)?,
        Op::SetPersonTraits { person_id, traits, at } => set_traits(conn, ws, "person", person_id, traits, at)?,
        Op::UpsertAccount { account_id, at } => {
            exec(
                conn,
                "INSERT OR IGNORE INTO accounts (workspace_id, account_id, created_at) VALUES (?1, ?2, ?3)",
                params![w, account_id.as_str(), ms(at)],
            )?;
        }
        Op::SetAccountTraits { account_id, traits, at } => {
            set_traits(conn, ws, "account", account_id.as_str(), traits, at)?
        }
        Op::AddMembership { person_id, account_id, at } => {
            exec(
                conn,
                "INSERT OR IGNORE INTO memberships (workspace_id, account_id, person_id, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![w, account_id.as_str(), person_id, ms(at)],
            )?;
        }
        Op::Seen { .. } | Op::PersonSeen { .. } => unreachable!("first/last-seen ops are applied as runs"),
    }
    Ok(())
}

/// Consecutive Seen and PersonSeen ops, widened per person and account. Widening gives the
/// same result in any order and grouped, and no op of a run changes memberships, so applying
/// a run at once equals applying its ops one by one.
#[derive(Default)]
struct SeenRun {
    people: HashMap<String, (i64, i64)>,
    accounts: HashMap<String, (i64, i64)>,
    /// People whose every account is widened.
    members_of: HashMap<String, (i64, i64)>,
}

fn widen(map: &mut HashMap<String, (i64, i64)>, key: &str, first: i64, last: i64) {
    match map.get_mut(key) {
        Some(span) => *span = (span.0.min(first), span.1.max(last)),
        None => {
            map.insert(key.to_owned(), (first, last));
        }
    }
}

impl SeenRun {
    /// Takes `op` into the run if it is one of its kind.
    fn add(&mut self, op: &Op) -> bool {
        match op {
            Op::Seen { person_id, account_id, first, last } => {
                let (first, last) = (ms(first), ms(last));
                if let Some(p) = person_id {
                    widen(&mut self.people, p, first, last);
                }
                match (account_id, person_id) {
                    (Some(a), _) => widen(&mut self.accounts, a.as_str(), first, last),
                    (None, Some(p)) => widen(&mut self.members_of, p, first, last),
                    (None, None) => {}
                }
                true
            }
            Op::PersonSeen { person_id, first, last } => {
                widen(&mut self.people, person_id, ms(first), ms(last));
                true
            }
            _ => false,
        }
    }

    /// Applies the run, a row at a time, each row once, and empties it.
    fn apply(&mut self, conn: &Connection, ws: &WorkspaceId) -> Result<()> {
        const WIDEN: &str = "SET first_seen_at = min(coalesce(first_seen_at, ?3), ?3),
                                 last_seen_at = max(coalesce(last_seen_at, ?4), ?4)";
        let targets = [
            (&mut self.people, format!("UPDATE people {WIDEN} WHERE workspace_id = ?1 AND person_id = ?2")),
            (&mut self.accounts, format!("UPDATE accounts {WIDEN} WHERE workspace_id = ?1 AND account_id = ?2")),
            (
                &mut self.members_of,
                format!(
                    "UPDATE accounts {WIDEN} WHERE workspace_id = ?1 AND account_id IN
                     (SELECT account_id FROM memberships WHERE workspace_id = ?1 AND person_id = ?2)"
                ),
            ),
        ];
        for (spans, sql) in targets {
            if spans.is_empty() {
                continue;
            }
            let mut stmt = conn.prepare_cached(&sql).map_err(sql_error)?;
            for (id, (first, last)) in spans.drain() {
                stmt.execute(params![ws.as_str(), id, first, last]).map_err(sql_error)?;
            }
        }
        Ok(())
    }
}

fn load_traits(conn: &Connection, ws: &WorkspaceId, kind: &str, id: &str) -> Result<Option<Map<String, Value>>> {
    let sql = match kind {
        "person" => "SELECT traits FROM people WHERE workspace_id = ?1 AND person_id = ?2",
        _ => "SELECT traits FROM accounts WHERE workspace_id = ?1 AND account_id = ?2",
    };
    let text: Option<String> = conn
        .prepare_cached(sql)
        .map_err(sql_error)?
        .query_row(params![ws.as_str(), id], |r| r.get(0))
        .optional()
        .map_err(sql_error)?;
    Ok(text.map(|t| match serde_json::from_str(&t) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }))
}

fn store_traits(conn: &Connection, ws: &WorkspaceId, kind: &str, id: &str, traits: &Map<String, Value>) -> Result<()> {
    let sql = match kind {
        "person" => "UPDATE people SET traits = ?3 WHERE workspace_id = ?1 AND person_id = ?2",
        _ => "UPDATE accounts SET traits = ?3 WHERE workspace_id = ?1 AND account_id = ?2",
    };
    exec(conn, sql, params![ws.as_str(), id, Value::Object(traits.clone()).to_string()])?;
    Ok(())
}

fn set_traits(
    conn: &Connection,
    ws: &WorkspaceId,
    kind: &str,
    id: &str,
    new: &Map<String, Value>,
    at: &Timestamp,
) -> Result<()> {
    let Some(mut current) = load_traits(conn, ws, kind, id)? else { return Ok(()) };
    let mut changed = false;
    for (k, v) in new {
        if current.get(k) != Some(v) {
            exec(
                conn,
                "INSERT INTO trait_history (workspace_id, subject_kind, subject_id, key, value, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![ws.as_str(), kind, id, k, v.to_string(), ms(at)],
            )?;
            current.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    if changed {
        store_traits(conn, ws, kind, id, &current)?;
    }
    Ok(())
}

fn merge(conn: &Connection, ws: &WorkspaceId, n: i64, from: &str, into: &str, at: &Timestamp) -> Result<()> {
    let w = ws.as_str();
    if from == into {
        return Ok(());
    }
    let Some(from_traits) = load_traits(conn, ws, "person", from)? else { return Ok(()) };
    let mut traits = load_traits(conn, ws, "person", into)?.unwrap_or_default();
    for (k, v) in from_traits {
        traits.entry(k).or_insert(v);
    }
    store_traits(conn, ws, "person", into, &traits)?;
    exec(
        conn,
        "UPDATE people SET
             user_id = coalesce(people.user_id, f.user_id),
             first_seen_at = CASE WHEN people.first_seen_at IS NULL THEN f.first_seen_at
                                  WHEN f.first_seen_at IS NULL THEN people.first_seen_at
                                  ELSE min(people.first_seen_at, f.first_seen_at) END,
             last_seen_at = max(coalesce(people.last_seen_at, f.last_seen_at), coalesce(f.last_seen_at, people.last_seen_at))
         FROM (SELECT user_id, first_seen_at, last_seen_at FROM people WHERE workspace_id = ?1 AND person_id = ?2) AS f
         WHERE people.workspace_id = ?1 AND people.person_id = ?3",
        params![w, from, into],
    )?;
    exec(
        conn,
        "UPDATE identities SET person_id = ?3 WHERE workspace_id = ?1 AND person_id = ?2",
        params![w, from, into],
    )?;
    exec(
        conn,
        "INSERT OR IGNORE INTO memberships (workspace_id, account_id, person_id, created_at)
         SELECT workspace_id, account_id, ?3, created_at FROM memberships WHERE workspace_id = ?1 AND person_id = ?2",
        params![w, from, into],
    )?;
    exec(conn, "DELETE FROM memberships WHERE workspace_id = ?1 AND person_id = ?2", params![w, from])?;
    exec(
        conn,
        "UPDATE event_links SET subject = 'p:' || ?3 WHERE ws = ?1 AND subject = 'p:' || ?2",
        params![n, from, into],
    )?;
    crate::usage::merge(conn, ws, n, from, into)?;
    exec(
        conn,
        "UPDATE trait_history SET subject_id = ?3 WHERE workspace_id = ?1 AND subject_kind = 'person' AND subject_id = ?2",
        params![w, from, into],
    )?;
    exec(conn, "DELETE FROM people WHERE workspace_id = ?1 AND person_id = ?2", params![w, from])?;
    exec(
        conn,
        "INSERT INTO person_merges (workspace_id, from_id, into_id, merged_at) VALUES (?1, ?2, ?3, ?4)",
        params![w, from, into, ms(at)],
    )?;
    Ok(())
}

pub(crate) fn kind_of(s: &str) -> IdKind {
    IdKind::parse(s).unwrap_or(IdKind::User)
}
