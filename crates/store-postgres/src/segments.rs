//! Segments: definitions, memberships and their changes (see `migrations/0004_segments.sql`).

use chrono::{DateTime, Utc};
use domain::{Timestamp, WorkspaceId};
use sqlx::{AssertSqlSafe, Row};
use std::collections::HashMap;
use store::{
    Cursor, DueCheck, Membership, MembershipUpdate, Page, PageRequest, PersonSummary, Result, SegmentChange,
    SegmentMember, SegmentRecord, StoreError, SubjectKind, Vocabulary,
};

use crate::{PgStore, db_error};

const SEGMENT_COLUMNS: &str = "segment_id, name, kind, condition, description, created_at, updated_at";

type SegmentRow = (String, String, String, String, Option<String>, DateTime<Utc>, DateTime<Utc>);

fn to_segment(
    (segment_id, name, kind, condition, description, created_at, updated_at): SegmentRow,
) -> Result<SegmentRecord> {
    let kind =
        SubjectKind::parse(&kind).ok_or_else(|| StoreError::Backend(format!("unexpected segment kind {kind:?}")))?;
    Ok(SegmentRecord { segment_id, name, kind, condition, description, created_at, updated_at })
}

fn name_taken(e: sqlx::Error) -> StoreError {
    match db_error(e) {
        StoreError::Conflict(_) => StoreError::Conflict("a segment with that name"),
        other => other,
    }
}

type ChangeRow = (i64, String, String, bool, DateTime<Utc>);

fn to_change((seq, segment_id, subject_id, entered, at): ChangeRow) -> SegmentChange {
    SegmentChange { seq, segment_id, subject_id, entered, at }
}

impl PgStore {
    pub(crate) async fn list_people(&self, ws: &WorkspaceId, page: &PageRequest) -> Result<Page<PersonSummary>> {
        let after = match &page.after {
            Some(c) => c.parts(1)?[0].clone(),
            None => String::new(),
        };
        let rows = sqlx::query(
            "SELECT person_id, user_id, traits, first_seen_at, last_seen_at FROM people
             WHERE workspace_id = $1 AND person_id > $2 ORDER BY person_id LIMIT $3",
        )
        .bind(ws.as_str())
        .bind(after)
        .bind(page.fetch_limit() as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let people = rows
            .into_iter()
            .map(|r| PersonSummary {
                person_id: r.get(0),
                user_id: r.get(1),
                traits: r.get(2),
                first_seen_at: r.get(3),
                last_seen_at: r.get(4),
            })
            .collect();
        Ok(page.finish(people, |p| Cursor(vec![p.person_id.clone()])))
    }

    pub(crate) async fn vocabulary(&self, ws: &WorkspaceId) -> Result<Vocabulary> {
        // Each distinct value the least after the one before: one seek each in
        // `trait_history_keys` and `usage_months_metrics`, where `DISTINCT` reads every row.
        let traits = |kind: &'static str| {
            sqlx::query(
                "WITH RECURSIVE k(key) AS (
                   SELECT (SELECT min(key) FROM trait_history WHERE workspace_id = $1 AND subject_kind = $2)
                   UNION ALL
                   SELECT (SELECT min(t.key) FROM trait_history t
                           WHERE t.workspace_id = $1 AND t.subject_kind = $2 AND t.key > k.key)
                   FROM k WHERE k.key IS NOT NULL)
                 SELECT key FROM k WHERE key IS NOT NULL",
            )
            .bind(ws.as_str())
            .bind(kind)
            .fetch_all(&self.pool)
        };
        let (accounts, people, events) = tokio::try_join!(
            traits("account"),
            traits("person"),
            sqlx::query(
                "WITH RECURSIVE m(metric) AS (
                   SELECT (SELECT min(metric) FROM usage_months WHERE workspace_id = $1)
                   UNION ALL
                   SELECT (SELECT min(u.metric) FROM usage_months u WHERE u.workspace_id = $1 AND u.metric > m.metric)
                   FROM m WHERE m.metric IS NOT NULL)
                 SELECT metric FROM m WHERE metric IS NOT NULL",
            )
            .bind(ws.as_str())
            .fetch_all(&self.pool),
        )
        .map_err(db_error)?;
        let sorted = |rows: Vec<sqlx::postgres::PgRow>| {
            let mut out: Vec<String> = rows.into_iter().map(|r| r.get(0)).collect();
            out.sort();
            out
        };
        Ok(Vocabulary {
            account_traits: sorted(accounts),
            person_traits: sorted(people),
            events: sorted(events).into_iter().filter(|m| !m.starts_with('$')).collect(),
        })
    }

    pub(crate) async fn insert_segment(&self, ws: &WorkspaceId, seg: &SegmentRecord) -> Result<()> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO segments (workspace_id, {SEGMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )))
        .bind(ws.as_str())
        .bind(&seg.segment_id)
        .bind(&seg.name)
        .bind(seg.kind.as_str())
        .bind(&seg.condition)
        .bind(&seg.description)
        .bind(seg.created_at)
        .bind(seg.updated_at)
        .execute(&self.pool)
        .await
        .map_err(name_taken)?;
        Ok(())
    }

    pub(crate) async fn update_segment(&self, ws: &WorkspaceId, seg: &SegmentRecord) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE segments SET name = $3, condition = $4, description = $5, updated_at = $6
             WHERE workspace_id = $1 AND segment_id = $2",
        )
        .bind(ws.as_str())
        .bind(&seg.segment_id)
        .bind(&seg.name)
        .bind(&seg.condition)
        .bind(&seg.description)
        .bind(seg.updated_at)
        .execute(&self.pool)
        .await
        .map_err(name_taken)?;
        Ok(done.rows_affected() > 0)
    }

    /// Its members and changes go with it (`ON DELETE CASCADE`).
    pub(crate) async fn delete_segment(&self, ws: &WorkspaceId, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM segments WHERE workspace_id = $1 AND segment_id = $2")
            .bind(ws.as_str())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn get_segment(&self, ws: &WorkspaceId, id: &str) -> Result<Option<SegmentRecord>> {
        let row: Option<SegmentRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {SEGMENT_COLUMNS} FROM segments WHERE workspace_id = $1 AND segment_id = $2"
        )))
        .bind(ws.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(to_segment).transpose()
    }

    pub(crate) async fn list_segments(&self, ws: &WorkspaceId) -> Result<Vec<SegmentRecord>> {
        let rows: Vec<SegmentRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {SEGMENT_COLUMNS} FROM segments WHERE workspace_id = $1 ORDER BY name COLLATE \"C\""
        )))
        .bind(ws.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(to_segment).collect()
    }

    /// One transaction, which first locks the workspace's change counter: writers of
    /// memberships take turns per workspace, and changes are numbered in commit order.
    pub(crate) async fn update_memberships(
        &self,
        ws: &WorkspaceId,
        segment_id: &str,
        updates: &[MembershipUpdate],
        at: Timestamp,
    ) -> Result<Vec<SegmentChange>> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        // Derived from stored records, and evaluated again if lost.
        crate::scores::derived(&mut tx).await?;
        let exists = sqlx::query("SELECT 1 FROM segments WHERE workspace_id = $1 AND segment_id = $2")
            .bind(ws.as_str())
            .bind(segment_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        if exists.is_none() || updates.is_empty() {
            return Ok(Vec::new());
        }
        let mut seq: i64 = sqlx::query(
            "INSERT INTO segment_change_counters (workspace_id, seq) VALUES ($1, 0)
             ON CONFLICT (workspace_id) DO UPDATE SET seq = segment_change_counters.seq RETURNING seq",
        )
        .bind(ws.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?
        .get(0);
        let subjects: Vec<&str> = updates.iter().map(|u| u.subject_id.as_str()).collect();
        let mut member: HashMap<String, bool> = sqlx::query(
            "SELECT subject_id, member FROM segment_members
             WHERE workspace_id = $1 AND segment_id = $2 AND subject_id = ANY($3)",
        )
        .bind(ws.as_str())
        .bind(segment_id)
        .bind(&subjects)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|r| (r.get::<String, _>(0), r.get::<bool, _>(1)))
        .collect();
        // In order, as if each were written alone; a subject's last update is what stays.
        let mut changes = Vec::new();
        let mut last: HashMap<&str, &MembershipUpdate> = HashMap::with_capacity(updates.len());
        for u in updates {
            let was = member.get(&u.subject_id).copied().unwrap_or(false);
            if was != u.member {
                seq += 1;
                changes.push(SegmentChange {
                    seq,
                    segment_id: segment_id.to_owned(),
                    subject_id: u.subject_id.clone(),
                    entered: u.member,
                    at,
                });
                // Entered here: its since is now, whatever the row said.
                member.insert(u.subject_id.clone(), u.member);
            }
            last.insert(&u.subject_id, u);
        }
        let entered_now: std::collections::HashSet<&str> =
            changes.iter().filter(|c| c.entered).map(|c| c.subject_id.as_str()).collect();
        let (mut keep, mut gone) = (Vec::new(), Vec::new());
        for u in last.into_values() {
            if u.member || u.next_check.is_some() {
                keep.push(u);
            } else {
                gone.push(u.subject_id.as_str());
            }
        }
        if !keep.is_empty() {
            let ids: Vec<&str> = keep.iter().map(|u| u.subject_id.as_str()).collect();
            let members: Vec<bool> = keep.iter().map(|u| u.member).collect();
            let since: Vec<Option<DateTime<Utc>>> = keep.iter().map(|u| u.member.then_some(at)).collect();
            let fresh: Vec<bool> = keep.iter().map(|u| entered_now.contains(u.subject_id.as_str())).collect();
            let next: Vec<Option<DateTime<Utc>>> = keep.iter().map(|u| u.next_check).collect();
            sqlx::query(
                "INSERT INTO segment_members (workspace_id, segment_id, subject_id, member, since, next_check)
                 SELECT $1, $2, s, m, si, n FROM UNNEST($3::text[], $4::bool[], $5::timestamptz[], $7::timestamptz[])
                   AS u (s, m, si, n)
                 ON CONFLICT (workspace_id, segment_id, subject_id) DO UPDATE SET
                   member = excluded.member, next_check = excluded.next_check,
                   since = CASE WHEN segment_members.member = excluded.member
                                 AND NOT (excluded.subject_id = ANY($6::text[]))
                            THEN segment_members.since ELSE excluded.since END",
            )
            .bind(ws.as_str())
            .bind(segment_id)
            .bind(&ids)
            .bind(&members)
            .bind(&since)
            .bind(ids.iter().zip(&fresh).filter(|(_, f)| **f).map(|(s, _)| *s).collect::<Vec<&str>>())
            .bind(&next)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        if !gone.is_empty() {
            sqlx::query(
                "DELETE FROM segment_members WHERE workspace_id = $1 AND segment_id = $2 AND subject_id = ANY($3)",
            )
            .bind(ws.as_str())
            .bind(segment_id)
            .bind(&gone)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        if !changes.is_empty() {
            sqlx::query(
                "INSERT INTO segment_changes (workspace_id, seq, segment_id, subject_id, entered, at)
                 SELECT $1, q, $2, s, e, $6 FROM UNNEST($3::int8[], $4::text[], $5::bool[]) AS u (q, s, e)",
            )
            .bind(ws.as_str())
            .bind(segment_id)
            .bind(changes.iter().map(|c| c.seq).collect::<Vec<i64>>())
            .bind(changes.iter().map(|c| c.subject_id.as_str()).collect::<Vec<&str>>())
            .bind(changes.iter().map(|c| c.entered).collect::<Vec<bool>>())
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            sqlx::query("UPDATE segment_change_counters SET seq = $2 WHERE workspace_id = $1")
                .bind(ws.as_str())
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(changes)
    }

    pub(crate) async fn segment_members(
        &self,
        ws: &WorkspaceId,
        segment_id: &str,
        page: &PageRequest,
    ) -> Result<Page<SegmentMember>> {
        let after = match &page.after {
            Some(c) => c.parts(1)?[0].clone(),
            None => String::new(),
        };
        let rows = sqlx::query(
            "SELECT subject_id, since FROM segment_members
             WHERE workspace_id = $1 AND segment_id = $2 AND member AND subject_id > $3
             ORDER BY subject_id LIMIT $4",
        )
        .bind(ws.as_str())
        .bind(segment_id)
        .bind(after)
        .bind(page.fetch_limit() as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let members = rows
            .into_iter()
            .map(|r| SegmentMember {
                subject_id: r.get(0),
                since: r.get::<Option<DateTime<Utc>>, _>(1).unwrap_or_default(),
            })
            .collect();
        Ok(page.finish(members, |m| Cursor(vec![m.subject_id.clone()])))
    }

    pub(crate) async fn segment_size(&self, ws: &WorkspaceId, segment_id: &str) -> Result<u64> {
        let n: i64 =
            sqlx::query("SELECT count(*) FROM segment_members WHERE workspace_id = $1 AND segment_id = $2 AND member")
                .bind(ws.as_str())
                .bind(segment_id)
                .fetch_one(&self.pool)
                .await
                .map_err(db_error)?
                .get(0);
        Ok(n as u64)
    }

    pub(crate) async fn memberships_of(&self, ws: &WorkspaceId, subject_id: &str) -> Result<Vec<Membership>> {
        let rows = sqlx::query(
            "SELECT segment_id, since FROM segment_members WHERE workspace_id = $1 AND subject_id = $2 AND member
             ORDER BY segment_id",
        )
        .bind(ws.as_str())
        .bind(subject_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|r| Membership {
                segment_id: r.get(0),
                since: r.get::<Option<DateTime<Utc>>, _>(1).unwrap_or_default(),
            })
            .collect())
    }

    pub(crate) async fn due_checks(&self, ws: &WorkspaceId, now: Timestamp, limit: usize) -> Result<Vec<DueCheck>> {
        let rows = sqlx::query(
            "SELECT segment_id, subject_id, next_check FROM segment_members
             WHERE workspace_id = $1 AND next_check IS NOT NULL AND next_check <= $2
             ORDER BY next_check, segment_id, subject_id LIMIT $3",
        )
        .bind(ws.as_str())
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(|r| DueCheck { segment_id: r.get(0), subject_id: r.get(1), at: r.get(2) }).collect())
    }

    pub(crate) async fn segment_changes(
        &self,
        ws: &WorkspaceId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<SegmentChange>> {
        let rows: Vec<ChangeRow> = sqlx::query_as(
            "SELECT seq, segment_id, subject_id, entered, at FROM segment_changes
             WHERE workspace_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(ws.as_str())
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(to_change).collect())
    }
}
