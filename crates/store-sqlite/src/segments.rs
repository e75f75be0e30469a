//! Segments: definitions, memberships and their changes (see `migrations/0004_segments.sql`).

use domain::{Timestamp, WorkspaceId};
use rusqlite::{OptionalExtension, Row, params};
use store::{
    Cursor, DueCheck, Membership, MembershipUpdate, Page, PageRequest, PersonSummary, Result, SegmentChange,
    SegmentMember, SegmentRecord, StoreError, SubjectKind, Vocabulary,
};

use crate::writer::Priority;
use crate::{SqliteStore, ms, opt_time, sql_error, time};

const SEGMENT_COLUMNS: &str = "segment_id, name, kind, condition, description, created_at, updated_at";

/// The distinct trait keys of a workspace's (`?1`) subjects of a kind (`?2`), in order: each
/// the least key after the one before, one seek each in `trait_history_keys`, where
/// `DISTINCT` walks every change of every trait.
const VOCABULARY_TRAITS: &str = "WITH RECURSIVE k(key) AS (
       SELECT (SELECT min(key) FROM trait_history WHERE workspace_id = ?1 AND subject_kind = ?2)
       UNION ALL
       SELECT (SELECT min(t.key) FROM trait_history t
               WHERE t.workspace_id = ?1 AND t.subject_kind = ?2 AND t.key > k.key)
       FROM k WHERE k.key IS NOT NULL)
     SELECT key FROM k WHERE key IS NOT NULL";

/// The distinct metrics of a workspace's (`?1`, its number) usage, the same way through
/// `usage_months_metrics`.
const VOCABULARY_EVENTS: &str = "WITH RECURSIVE m(metric) AS (
       SELECT (SELECT min(metric) FROM usage_months WHERE ws = ?1)
       UNION ALL
       SELECT (SELECT min(u.metric) FROM usage_months u WHERE u.ws = ?1 AND u.metric > m.metric)
       FROM m WHERE m.metric IS NOT NULL)
     SELECT metric FROM m WHERE metric IS NOT NULL";

fn segment(r: &Row<'_>) -> rusqlite::Result<SegmentRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
}

type SegmentRow = (String, String, String, String, Option<String>, i64, i64);

fn to_segment((segment_id, name, kind, condition, description, created, updated): SegmentRow) -> Result<SegmentRecord> {
    let kind =
        SubjectKind::parse(&kind).ok_or_else(|| StoreError::Backend(format!("unexpected segment kind {kind:?}")))?;
    Ok(SegmentRecord {
        segment_id,
        name,
        kind,
        condition,
        description,
        created_at: time(created),
        updated_at: time(updated),
    })
}

fn name_taken(e: StoreError) -> StoreError {
    match e {
        StoreError::Conflict(_) => StoreError::Conflict("a segment with that name"),
        other => other,
    }
}

fn change(r: &Row<'_>) -> rusqlite::Result<SegmentChange> {
    Ok(SegmentChange {
        seq: r.get(0)?,
        segment_id: r.get(1)?,
        subject_id: r.get(2)?,
        entered: r.get(3)?,
        at: time(r.get(4)?),
    })
}

impl SqliteStore {
    pub(crate) async fn list_people(&self, ws: &WorkspaceId, page: &PageRequest) -> Result<Page<PersonSummary>> {
        let (ws, page) = (ws.clone(), page.clone());
        self.read(move |conn| {
            let after = match &page.after {
                Some(c) => c.parts(1)?[0].clone(),
                None => String::new(),
            };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT person_id, user_id, traits, first_seen_at, last_seen_at FROM people
                     WHERE workspace_id = ?1 AND person_id > ?2 ORDER BY person_id LIMIT ?3",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![ws.as_str(), after, page.fetch_limit() as i64], |r| {
                    Ok(PersonSummary {
                        person_id: r.get(0)?,
                        user_id: r.get(1)?,
                        traits: crate::json_col(&r.get::<_, String>(2)?),
                        first_seen_at: opt_time(r.get(3)?),
                        last_seen_at: opt_time(r.get(4)?),
                    })
                })
                .map_err(sql_error)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql_error)?;
            Ok(page.finish(rows, |p| Cursor(vec![p.person_id.clone()])))
        })
        .await
    }

    pub(crate) async fn vocabulary(&self, ws: &WorkspaceId) -> Result<Vocabulary> {
        let n = self.ws_number(ws).await?;
        let ws = ws.clone();
        self.read(move |conn| {
            let strings = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<Vec<String>> {
                let mut stmt = conn.prepare_cached(sql).map_err(sql_error)?;
                let rows = stmt.query_map(p, |r| r.get::<_, String>(0)).map_err(sql_error)?;
                let mut out = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_error)?;
                out.sort();
                Ok(out)
            };
            let events = match n {
                Some(n) => strings(VOCABULARY_EVENTS, &[&n])?,
                None => Vec::new(),
            };
            let traits = VOCABULARY_TRAITS;
            Ok(Vocabulary {
                account_traits: strings(traits, &[&ws.as_str(), &"account"])?,
                person_traits: strings(traits, &[&ws.as_str(), &"person"])?,
                events: events.into_iter().filter(|m| !m.starts_with('$')).collect(),
            })
        })
        .await
    }

    pub(crate) async fn insert_segment(&self, ws: &WorkspaceId, seg: &SegmentRecord) -> Result<()> {
        let (ws, seg) = (ws.clone(), seg.clone());
        self.write(move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO segments (workspace_id, {SEGMENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params![
                    ws.as_str(),
                    seg.segment_id,
                    seg.name,
                    seg.kind.as_str(),
                    seg.condition,
                    seg.description,
                    ms(&seg.created_at),
                    ms(&seg.updated_at)
                ],
            )
            .map_err(|e| name_taken(sql_error(e)))?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn update_segment(&self, ws: &WorkspaceId, seg: &SegmentRecord) -> Result<bool> {
        let (ws, seg) = (ws.clone(), seg.clone());
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE segments SET name = ?3, condition = ?4, description = ?5, updated_at = ?6
                     WHERE workspace_id = ?1 AND segment_id = ?2",
                    params![ws.as_str(), seg.segment_id, seg.name, seg.condition, seg.description, ms(&seg.updated_at)],
                )
                .map_err(|e| name_taken(sql_error(e)))?;
            Ok(n > 0)
        })
        .await
    }

    pub(crate) async fn delete_segment(&self, ws: &WorkspaceId, id: &str) -> Result<bool> {
        let (ws, id) = (ws.clone(), id.to_owned());
        self.write(move |conn| {
            let n = conn
                .execute("DELETE FROM segments WHERE workspace_id = ?1 AND segment_id = ?2", params![ws.as_str(), id])
                .map_err(sql_error)?;
            for table in ["segment_members", "segment_changes"] {
                conn.execute(
                    &format!("DELETE FROM {table} WHERE workspace_id = ?1 AND segment_id = ?2"),
                    params![ws.as_str(), id],
                )
                .map_err(sql_error)?;
            }
            Ok(n > 0)
        })
        .await
    }

    pub(crate) async fn get_segment(&self, ws: &WorkspaceId, id: &str) -> Result<Option<SegmentRecord>> {
        let (ws, id) = (ws.clone(), id.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {SEGMENT_COLUMNS} FROM segments WHERE workspace_id = ?1 AND segment_id = ?2"
            ))
            .map_err(sql_error)?
            .query_row(params![ws.as_str(), id], segment)
            .optional()
            .map_err(sql_error)?
            .map(to_segment)
            .transpose()
        })
        .await
    }

    pub(crate) async fn list_segments(&self, ws: &WorkspaceId) -> Result<Vec<SegmentRecord>> {
        let ws = ws.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {SEGMENT_COLUMNS} FROM segments WHERE workspace_id = ?1 ORDER BY name"
                ))
                .map_err(sql_error)?;
            let rows = stmt.query_map([ws.as_str()], segment).map_err(sql_error)?;
            rows.map(|r| to_segment(r.map_err(sql_error)?)).collect()
        })
        .await
    }

    pub(crate) async fn update_memberships(
        &self,
        ws: &WorkspaceId,
        segment_id: &str,
        updates: &[MembershipUpdate],
        at: Timestamp,
    ) -> Result<Vec<SegmentChange>> {
        let (ws, segment_id, updates) = (ws.clone(), segment_id.to_owned(), updates.to_vec());
        // Derived from stored records, and evaluated again if lost: the commit does not wait
        // for the disk (see `Durability::Derived`).
        self.write_derived(Priority::Now, move |conn| {
            let exists: Option<i64> = conn
                .prepare_cached("SELECT 1 FROM segments WHERE workspace_id = ?1 AND segment_id = ?2")
                .map_err(sql_error)?
                .query_row(params![ws.as_str(), segment_id], |r| r.get(0))
                .optional()
                .map_err(sql_error)?;
            if exists.is_none() {
                return Ok(Vec::new());
            }
            let mut seq: i64 = conn
                .prepare_cached("SELECT coalesce(max(seq), 0) FROM segment_changes WHERE workspace_id = ?1")
                .map_err(sql_error)?
                .query_row([ws.as_str()], |r| r.get(0))
                .map_err(sql_error)?;
            let mut current = conn
                .prepare_cached(
                    "SELECT member FROM segment_members WHERE workspace_id = ?1 AND segment_id = ?2 AND subject_id = ?3",
                )
                .map_err(sql_error)?;
            let mut upsert = conn
                .prepare_cached(
                    "INSERT INTO segment_members (workspace_id, segment_id, subject_id, member, since, next_check)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (workspace_id, segment_id, subject_id) DO UPDATE SET
                       member = excluded.member, next_check = excluded.next_check,
                       since = CASE WHEN segment_members.member = excluded.member THEN segment_members.since
                                    ELSE excluded.since END",
                )
                .map_err(sql_error)?;
            let mut remove = conn
                .prepare_cached(
                    "DELETE FROM segment_members WHERE workspace_id = ?1 AND segment_id = ?2 AND subject_id = ?3",
                )
                .map_err(sql_error)?;
            let mut record = conn
                .prepare_cached(
                    "INSERT INTO segment_changes (workspace_id, seq, segment_id, subject_id, entered, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(sql_error)?;
            let now = ms(&at);
            let mut changes = Vec::new();
            for u in &updates {
                let was: bool = current
                    .query_row(params![ws.as_str(), segment_id, u.subject_id], |r| r.get::<_, bool>(0))
                    .optional()
                    .map_err(sql_error)?
                    .unwrap_or(false);
                if u.member || u.next_check.is_some() {
                    let since = u.member.then_some(now);
                    upsert
                        .execute(params![
                            ws.as_str(),
                            segment_id,
                            u.subject_id,
                            u.member,
                            since,
                            u.next_check.as_ref().map(ms)
                        ])
                        .map_err(sql_error)?;
                } else {
                    remove.execute(params![ws.as_str(), segment_id, u.subject_id]).map_err(sql_error)?;
                }
                if was != u.member {
                    seq += 1;
                    record.execute(params![ws.as_str(), seq, segment_id, u.subject_id, u.member, now]).map_err(sql_error)?;
                    changes.push(SegmentChange {
                        seq,
                        segment_id: segment_id.clone(),
                        subject_id: u.subject_id.clone(),
                        entered: u.member,
                        at,
                    });
                }
            }
            Ok(changes)
        })
        .await
    }

    pub(crate) async fn segment_members(
        &self,
        ws: &WorkspaceId,
        segment_id: &str,
        page: &PageRequest,
    ) -> Result<Page<SegmentMember>> {
        let (ws, segment_id, page) = (ws.clone(), segment_id.to_owned(), page.clone());
        self.read(move |conn| {
            let after = match &page.after {
                Some(c) => c.parts(1)?[0].clone(),
                None => String::new(),
            };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT subject_id, since FROM segment_members
                     WHERE workspace_id = ?1 AND segment_id = ?2 AND member = 1 AND subject_id > ?3
                     ORDER BY subject_id LIMIT ?4",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![ws.as_str(), segment_id, after, page.fetch_limit() as i64], |r| {
                    Ok(SegmentMember { subject_id: r.get(0)?, since: time(r.get::<_, Option<i64>>(1)?.unwrap_or(0)) })
                })
                .map_err(sql_error)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql_error)?;
            Ok(page.finish(rows, |m| Cursor(vec![m.subject_id.clone()])))
        })
        .await
    }

    pub(crate) async fn segment_size(&self, ws: &WorkspaceId, segment_id: &str) -> Result<u64> {
        let (ws, segment_id) = (ws.clone(), segment_id.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT count(*) FROM segment_members WHERE workspace_id = ?1 AND segment_id = ?2 AND member = 1",
            )
            .map_err(sql_error)?
            .query_row(params![ws.as_str(), segment_id], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(sql_error)
        })
        .await
    }

    pub(crate) async fn memberships_of(&self, ws: &WorkspaceId, subject_id: &str) -> Result<Vec<Membership>> {
        let (ws, subject_id) = (ws.clone(), subject_id.to_owned());
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    // Through the subject's index: ordered in SQL, the planner would rather walk
                    // the workspace's rows in key order than sort a handful.
                    "SELECT segment_id, since FROM segment_members INDEXED BY segment_members_subject
                     WHERE workspace_id = ?1 AND subject_id = ?2 AND member = 1",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![ws.as_str(), subject_id], |r| {
                    Ok(Membership { segment_id: r.get(0)?, since: time(r.get::<_, Option<i64>>(1)?.unwrap_or(0)) })
                })
                .map_err(sql_error)?;
            let mut out = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_error)?;
            out.sort_by(|a, b| a.segment_id.cmp(&b.segment_id));
            Ok(out)
        })
        .await
    }

    pub(crate) async fn due_checks(&self, ws: &WorkspaceId, now: Timestamp, limit: usize) -> Result<Vec<DueCheck>> {
        let ws = ws.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT segment_id, subject_id, next_check FROM segment_members
                     WHERE workspace_id = ?1 AND next_check IS NOT NULL AND next_check <= ?2
                     ORDER BY next_check, segment_id, subject_id LIMIT ?3",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![ws.as_str(), ms(&now), limit as i64], |r| {
                    Ok(DueCheck {
                        segment_id: r.get(0)?,
                        subject_id: r.get(1)?,
                        at: opt_time(r.get(2)?).unwrap_or_default(),
                    })
                })
                .map_err(sql_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_error)
        })
        .await
    }

    pub(crate) async fn segment_changes(
        &self,
        ws: &WorkspaceId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<SegmentChange>> {
        let ws = ws.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, segment_id, subject_id, entered, at FROM segment_changes
                     WHERE workspace_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(sql_error)?;
            let rows = stmt.query_map(params![ws.as_str(), after, limit as i64], change).map_err(sql_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_error)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite plans for the vocabulary: seeks in the indexes of trait keys and of
    /// metrics, never a walk over the trait changes or the usage rows.
    #[tokio::test]
    async fn the_vocabulary_is_read_with_a_seek_per_word() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_in_dir(dir.path()).unwrap();
        use rusqlite::types::Value;
        let traits = vec![Value::Text("ws".into()), Value::Text("account".into())];
        for (sql, index, args) in [
            (VOCABULARY_TRAITS, "trait_history_keys", traits),
            (VOCABULARY_EVENTS, "usage_months_metrics", vec![Value::Integer(1)]),
        ] {
            let plan = store
                .read(move |conn| {
                    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).map_err(sql_error)?;
                    let rows = stmt
                        .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
                        .map_err(sql_error)?;
                    rows.map(|r| r.map_err(sql_error)).collect::<Result<Vec<String>>>()
                })
                .await
                .unwrap();
            let seeks =
                plan.iter().filter(|l| l.starts_with("SEARCH") && l.contains(&format!("COVERING INDEX {index} ")));
            assert_eq!(seeks.count(), 2, "the first word and each next one: {plan:?}");
            let tables =
                plan.iter().filter(|l| l.starts_with("SCAN") && !l.starts_with("SCAN k") && !l.starts_with("SCAN m"));
            assert_eq!(tables.filter(|l| !l.contains("CONSTANT ROW")).count(), 0, "no table walked: {plan:?}");
        }
        store.close();
    }
}
