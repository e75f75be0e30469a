//! Scores, models and alerts.

use chrono::{DateTime, NaiveDate, Utc};
use domain::{AccountId, Currency, Money, Timestamp, WorkspaceId};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Arguments, AssertSqlSafe, PgConnection, Row};
use std::collections::HashMap;
use store::scores::{AlertWrite, plan_alerts};
use store::{
    AccountQuery, AccountRecords, AccountScore, AccountSort, Alert, AlertAction, AlertFilter, AlertScope, AlertSignal,
    AlertSync, Cursor, ModelKind, ModelRecord, Page, PageRequest, Result, ScorePoint, ScoreSummary, ScoredAccount,
    StoreError, Subscription, Ticket,
};

use crate::reads::{ACCOUNT_COLUMNS, to_account};
use crate::records::{SUBSCRIPTION_COLUMNS, SubscriptionRow, TICKET_COLUMNS, TicketRow, to_subscription, to_ticket};
use crate::{PgStore, account_id, db_error, parse_col};

/// Scores are written in statements of this many accounts.
const SCORES_PER_WRITE: usize = 5_000;

fn money(minor: Option<i64>, currency: Option<String>) -> Result<Option<Money>> {
    match (minor, currency) {
        (Some(m), Some(c)) => {
            Ok(Some(Money::new(m, Currency::parse(&c).map_err(|e| StoreError::Backend(e.to_string()))?)))
        }
        _ => Ok(None),
    }
}

pub(crate) fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
    r: &'r PgRow,
    i: usize,
) -> Result<T> {
    r.try_get(i).map_err(db_error)
}

const POINT_COLUMNS: &str =
    "day, health, band, churn_30d, churn_60d, churn_90d, expansion, mrr_minor, currency, components";

fn point(r: &PgRow, at: usize) -> Result<ScorePoint> {
    Ok(ScorePoint {
        day: get(r, at)?,
        health: get(r, at + 1)?,
        band: parse_col(&get::<String>(r, at + 2)?)?,
        churn_30d: get(r, at + 3)?,
        churn_60d: get(r, at + 4)?,
        churn_90d: get(r, at + 5)?,
        expansion: get(r, at + 6)?,
        mrr: money(get(r, at + 7)?, get(r, at + 8)?)?,
        components: get(r, at + 9)?,
    })
}

const SUMMARY_COLUMNS: &str = "s.day, s.health, s.band, s.churn_30d, s.expansion, s.mrr_minor, s.currency";

fn summary(r: &PgRow, at: usize) -> Result<Option<ScoreSummary>> {
    let Some(day) = get::<Option<NaiveDate>>(r, at)? else { return Ok(None) };
    Ok(Some(ScoreSummary {
        day,
        health: get(r, at + 1)?,
        band: parse_col(&get::<String>(r, at + 2)?)?,
        churn_30d: get(r, at + 3)?,
        expansion: get(r, at + 4)?,
        mrr: money(get(r, at + 5)?, get(r, at + 6)?)?,
    }))
}

fn account(r: &PgRow) -> Result<store::Account> {
    to_account((get(r, 0)?, get(r, 1)?, get(r, 2)?, get(r, 3)?, get(r, 4)?, get(r, 5)?))
}

const ALERT_COLUMNS: &str = "alert_id, account_id, kind, reason, severity, title, evidence, status, opened_at,
    updated_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, useful, feedback, feedback_by";

fn alert(r: &PgRow) -> Result<Alert> {
    Ok(Alert {
        alert_id: get(r, 0)?,
        account_id: account_id(&get::<String>(r, 1)?)?,
        kind: parse_col(&get::<String>(r, 2)?)?,
        reason: get(r, 3)?,
        severity: parse_col(&get::<String>(r, 4)?)?,
        title: get(r, 5)?,
        evidence: get(r, 6)?,
        status: parse_col(&get::<String>(r, 7)?)?,
        opened_at: get(r, 8)?,
        updated_at: get(r, 9)?,
        acknowledged_at: get(r, 10)?,
        acknowledged_by: get(r, 11)?,
        resolved_at: get(r, 12)?,
        resolved_by: get(r, 13)?,
        useful: get(r, 14)?,
        feedback: get(r, 15)?,
        feedback_by: get(r, 16)?,
    })
}

const MODEL_COLUMNS: &str = "model_id, kind, status, created_at, card, reason";

fn model(r: &PgRow, with_params: bool) -> Result<ModelRecord> {
    Ok(ModelRecord {
        model_id: get(r, 0)?,
        kind: parse_col(&get::<String>(r, 1)?)?,
        status: parse_col(&get::<String>(r, 2)?)?,
        created_at: get(r, 3)?,
        card: get(r, 4)?,
        reason: get(r, 5)?,
        model: if with_params { get(r, 6)? } else { None },
    })
}

/// The conditions on the account itself (`a`): search, plan, owner, segment.
fn account_filters(q: &AccountQuery, a: &mut Args) -> Result<String> {
    account_filters_but(q, a, false)
}

/// The account filters, the segment's left out when the query reads its members already.
fn account_filters_but(q: &AccountQuery, a: &mut Args, from_members: bool) -> Result<String> {
    let mut sql = String::new();
    if let Some((anywhere, start)) = q.search_patterns() {
        let (anywhere, start) = (a.arg(anywhere)?, a.arg(start)?);
        sql +=
            &format!(" AND (a.account_id ILIKE {start} ESCAPE '\\' OR a.traits->>'name' ILIKE {anywhere} ESCAPE '\\')");
    }
    if let Some(plan) = &q.plan {
        sql += &format!(" AND a.traits->>'plan' = {}", a.arg(plan.clone())?);
    }
    if let Some(owner) = &q.owner {
        sql += &format!(" AND a.traits->>'csm_email' = {}", a.arg(owner.clone())?);
    }
    if let Some(segment) = q.segment.as_ref().filter(|_| !from_members) {
        let seg = a.arg(segment.clone())?;
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM segment_members m WHERE m.workspace_id = a.workspace_id
               AND m.segment_id = {seg} AND m.subject_id = a.account_id AND m.member){}",
            of_accounts("a.workspace_id", &seg)
        );
    }
    Ok(sql)
}

/// The condition that segment `seg` of workspace `ws` (placeholders or columns) is of
/// accounts: a segment of people lists none, whatever its members' ids.
fn of_accounts(ws: &str, seg: &str) -> String {
    format!(
        " AND EXISTS (SELECT 1 FROM segments g WHERE g.workspace_id = {ws} AND g.segment_id = {seg} AND g.kind = 'accounts')"
    )
}

/// `FROM ... WHERE ...` of the accounts `q` lists in `ws`; to count them, only the tables
/// its filters need.
fn matching(ws: &WorkspaceId, q: &AccountQuery, a: &mut Args, counting: bool) -> Result<String> {
    let w = a.arg(ws.as_str().to_owned())?;
    if counting && let Some(segment) = &q.segment {
        // A segment's members, then their accounts (and scores), instead of a look into the
        // members for every account of the workspace.
        let seg = a.arg(segment.clone())?;
        let scores = if q.needs_score() {
            "JOIN account_scores s ON s.workspace_id = a.workspace_id AND s.account_id = a.account_id"
        } else {
            ""
        };
        let mut sql = format!(
            "FROM segment_members m
             JOIN accounts a ON a.workspace_id = m.workspace_id AND a.account_id = m.subject_id
             {scores}
             WHERE m.workspace_id = {w} AND m.segment_id = {seg} AND m.member{}",
            of_accounts(&w, &seg)
        );
        sql += &score_filters(q, a)?;
        sql += &account_filters_but(q, a, true)?;
        return Ok(sql);
    }
    if !q.needs_score() {
        let mut sql = if counting {
            format!("FROM accounts a WHERE a.workspace_id = {w}")
        } else {
            format!(
                "FROM accounts a
                 LEFT JOIN account_scores s ON s.workspace_id = a.workspace_id AND s.account_id = a.account_id
                 WHERE a.workspace_id = {w}"
            )
        };
        sql += &account_filters(q, a)?;
        return Ok(sql);
    }
    let mut sql = if counting && !q.filters_accounts() {
        format!("FROM account_scores s WHERE s.workspace_id = {w}")
    } else {
        format!(
            "FROM account_scores s
             JOIN accounts a ON a.workspace_id = s.workspace_id AND a.account_id = s.account_id
             WHERE s.workspace_id = {w}"
        )
    };
    sql += &score_filters(q, a)?;
    sql += &account_filters(q, a)?;
    Ok(sql)
}

/// The filters on the latest score (`s`).
fn score_filters(q: &AccountQuery, a: &mut Args) -> Result<String> {
    let mut sql = String::new();
    if let Some(b) = q.band {
        sql += &format!(" AND s.band = {}", a.arg(b.as_str().to_owned())?);
    }
    for (col, op, v) in
        [("s.health", ">=", q.health_min), ("s.health", "<=", q.health_max), ("s.churn_30d", ">=", q.churn_min)]
    {
        if let Some(v) = v {
            sql += &format!(" AND {col} {op} {}", a.arg(v)?);
        }
    }
    for (op, v) in [(">=", q.mrr_min), ("<=", q.mrr_max)] {
        if let Some(v) = v {
            sql += &format!(" AND s.mrr_minor {op} {}", a.arg(v)?);
        }
    }
    Ok(sql)
}

fn sort_expr(sort: AccountSort) -> &'static str {
    match sort {
        AccountSort::Id => "s.account_id",
        AccountSort::Health => "s.health",
        AccountSort::ChurnRisk => "coalesce(s.churn_30d, -1)",
        AccountSort::Expansion => "coalesce(s.expansion, -1)",
        AccountSort::Mrr => "coalesce(s.mrr_minor, -1)",
    }
}

/// Arguments of a query built piece by piece: `arg` binds a value and returns its placeholder.
pub(crate) struct Args {
    pub(crate) args: PgArguments,
    n: usize,
}

impl Args {
    pub(crate) fn new() -> Args {
        Args { args: PgArguments::default(), n: 0 }
    }

    pub(crate) fn arg<'q, T: 'q + sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send>(
        &mut self,
        v: T,
    ) -> Result<String> {
        self.args.add(v).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.n += 1;
        Ok(format!("${}", self.n))
    }
}

/// Writes each score as the account's latest (unless that is of a later day) and as its
/// history point of the day.
/// Marks the transaction's commit as not waiting for its WAL to reach the disk: scores and
/// the alerts they open are derived from stored data and made again if lost. PostgreSQL
/// keeps commits in WAL order, so a later synchronous commit makes this one durable too.
pub(crate) async fn derived(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SET LOCAL synchronous_commit TO OFF").execute(&mut *conn).await.map_err(db_error)?;
    Ok(())
}

/// Stores scores as if written one after the other, as SQLite does: per account, the last
/// of its latest day becomes its score; per account and day, the last goes to the history.
/// (One statement may not update a row twice, so repeats are settled here first.)
async fn write_scores(conn: &mut PgConnection, ws: &WorkspaceId, all: &[AccountScore]) -> Result<()> {
    let mut latest: HashMap<&str, &AccountScore> = HashMap::with_capacity(all.len());
    let mut daily: HashMap<(&str, NaiveDate), &AccountScore> = HashMap::with_capacity(all.len());
    for s in all {
        let id = s.account_id.as_str();
        match latest.get(id) {
            Some(kept) if kept.day > s.day => {}
            _ => {
                latest.insert(id, s);
            }
        }
        daily.insert((id, s.day), s);
    }
    if latest.len() == all.len() {
        return write_score_rows(conn, ws, all, all).await;
    }
    let latest: Vec<AccountScore> = latest.into_values().cloned().collect();
    let daily: Vec<AccountScore> = daily.into_values().cloned().collect();
    write_score_rows(conn, ws, &latest, &daily).await
}

/// `latest` has one score per account, `daily` one per account and day. The history goes
/// first, so that an account's first latest score finds its earlier days of the same call
/// when it takes its band change from them, as it does in SQLite, which writes one score
/// after the other.
async fn write_score_rows(
    conn: &mut PgConnection,
    ws: &WorkspaceId,
    latest: &[AccountScore],
    daily: &[AccountScore],
) -> Result<()> {
    write_history_rows(conn, ws, daily).await?;
    let explanations: Vec<&str> = latest.iter().map(|s| s.explanation.as_str()).collect();
    let scored: Vec<DateTime<Utc>> = latest.iter().map(|s| s.scored_at).collect();
    ScoreColumns::of(latest)
        .bind(
            sqlx::query(
                "INSERT INTO account_scores (workspace_id, account_id, day, health, band, churn_30d, churn_60d,
               churn_90d, expansion, mrr_minor, currency, components, explanation, scored_at)
             SELECT $1, a, d, h, b, c30, c60, c90, e, m, c, co::jsonb, ex::jsonb, at
             FROM UNNEST($2::text[], $3::date[], $4::float8[], $5::text[], $6::float8[], $7::float8[],
               $8::float8[], $9::float8[], $10::int8[], $11::text[], $12::text[], $13::text[], $14::timestamptz[])
               AS u (a, d, h, b, c30, c60, c90, e, m, c, co, ex, at)
             ON CONFLICT (workspace_id, account_id) DO UPDATE SET
               day = excluded.day, health = excluded.health, band = excluded.band,
               churn_30d = excluded.churn_30d, churn_60d = excluded.churn_60d, churn_90d = excluded.churn_90d,
               expansion = excluded.expansion, mrr_minor = excluded.mrr_minor, currency = excluded.currency,
               components = excluded.components, explanation = excluded.explanation,
               scored_at = excluded.scored_at,
               band_from = CASE WHEN excluded.band <> account_scores.band THEN account_scores.band
                                ELSE account_scores.band_from END,
               band_since = CASE WHEN excluded.band <> account_scores.band THEN excluded.day
                                 ELSE account_scores.band_since END
             WHERE excluded.day >= account_scores.day",
            ),
            ws,
        )
        .bind(&explanations)
        .bind(&scored)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// `daily` (one per account and day) as the accounts' history points of their days.
async fn write_history_rows(conn: &mut PgConnection, ws: &WorkspaceId, daily: &[AccountScore]) -> Result<()> {
    let history = format!(
        "INSERT INTO score_history (workspace_id, account_id, {POINT_COLUMNS})
         SELECT $1, a, d, h, b, c30, c60, c90, e, m, c, co::jsonb
         FROM UNNEST($2::text[], $3::date[], $4::float8[], $5::text[], $6::float8[], $7::float8[],
           $8::float8[], $9::float8[], $10::int8[], $11::text[], $12::text[])
           AS u (a, d, h, b, c30, c60, c90, e, m, c, co)
         ON CONFLICT (workspace_id, account_id, day) DO UPDATE SET
           health = excluded.health, band = excluded.band, churn_30d = excluded.churn_30d,
           churn_60d = excluded.churn_60d, churn_90d = excluded.churn_90d, expansion = excluded.expansion,
           mrr_minor = excluded.mrr_minor, currency = excluded.currency, components = excluded.components"
    );
    ScoreColumns::of(daily)
        .bind(sqlx::query(AssertSqlSafe(history)), ws)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// The columns a score point shares between the latest score and the history, as arrays.
struct ScoreColumns<'a> {
    ids: Vec<&'a str>,
    days: Vec<NaiveDate>,
    health: Vec<f64>,
    bands: Vec<&'a str>,
    c30: Vec<Option<f64>>,
    c60: Vec<Option<f64>>,
    c90: Vec<Option<f64>>,
    exp: Vec<Option<f64>>,
    minor: Vec<Option<i64>>,
    currency: Vec<Option<String>>,
    components: Vec<String>,
}

impl<'a> ScoreColumns<'a> {
    fn of(scores: &'a [AccountScore]) -> ScoreColumns<'a> {
        ScoreColumns {
            ids: scores.iter().map(|s| s.account_id.as_str()).collect(),
            days: scores.iter().map(|s| s.day).collect(),
            health: scores.iter().map(|s| s.health).collect(),
            bands: scores.iter().map(|s| s.band.as_str()).collect(),
            c30: scores.iter().map(|s| s.churn_30d).collect(),
            c60: scores.iter().map(|s| s.churn_60d).collect(),
            c90: scores.iter().map(|s| s.churn_90d).collect(),
            exp: scores.iter().map(|s| s.expansion).collect(),
            minor: scores.iter().map(|s| s.mrr.map(|m| m.minor)).collect(),
            currency: scores.iter().map(|s| s.mrr.map(|m| m.currency.as_str().to_owned())).collect(),
            components: scores.iter().map(|s| s.components.to_string()).collect(),
        }
    }

    /// Binds the workspace as `$1` and the columns as `$2` to `$12`.
    fn bind(
        self,
        query: sqlx::query::Query<'a, sqlx::Postgres, PgArguments>,
        ws: &'a WorkspaceId,
    ) -> sqlx::query::Query<'a, sqlx::Postgres, PgArguments> {
        query
            .bind(ws.as_str())
            .bind(self.ids)
            .bind(self.days)
            .bind(self.health)
            .bind(self.bands)
            .bind(self.c30)
            .bind(self.c60)
            .bind(self.c90)
            .bind(self.exp)
            .bind(self.minor)
            .bind(self.currency)
            .bind(self.components)
    }
}

/// Opens, updates and resolves the alerts in `scope` as [`plan_alerts`] decides.
async fn sync_in(
    conn: &mut PgConnection,
    ws: &WorkspaceId,
    scope: AlertScope<'_>,
    signals: &[AlertSignal],
    at: Timestamp,
) -> Result<AlertSync> {
    let quiet = at - chrono::Duration::days(store::scores::RESOLVED_QUIET_DAYS);
    // One sync at a time per workspace, so two runs cannot both open the same alert.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('alerts:' || $1))")
        .bind(ws.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    let rows = match scope {
        AlertScope::Workspace => sqlx::query(AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE workspace_id = $1
             AND (status <> 'resolved' OR resolved_at >= $2)"
        )))
        .bind(ws.as_str())
        .bind(quiet)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?,
        AlertScope::Accounts(ids) => {
            let mut all: Vec<&str> = ids.iter().map(|a| a.as_str()).collect();
            all.extend(signals.iter().map(|s| s.account_id.as_str()));
            sqlx::query(AssertSqlSafe(format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE workspace_id = $1 AND account_id = ANY($3)
                 AND (status <> 'resolved' OR resolved_at >= $2)"
            )))
            .bind(ws.as_str())
            .bind(quiet)
            .bind(&all)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?
        }
    };
    let existing = rows.iter().map(alert).collect::<Result<Vec<_>>>()?;
    let (writes, sync) = plan_alerts(&existing, signals, scope, at, &mut store::scores::new_alert_id);
    for w in writes {
        match w {
            AlertWrite::Open(a) => {
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO alerts (workspace_id, {ALERT_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
                )))
                .bind(ws.as_str())
                .bind(&a.alert_id)
                .bind(a.account_id.as_str())
                .bind(a.kind.as_str())
                .bind(&a.reason)
                .bind(a.severity.as_str())
                .bind(&a.title)
                .bind(&a.evidence)
                .bind(a.status.as_str())
                .bind(at)
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
            }
            AlertWrite::Update { alert_id, severity, title, evidence } => {
                sqlx::query(
                    "UPDATE alerts SET severity = $3, title = $4, evidence = $5, updated_at = $6
                     WHERE workspace_id = $1 AND alert_id = $2",
                )
                .bind(ws.as_str())
                .bind(&alert_id)
                .bind(severity.as_str())
                .bind(&title)
                .bind(&evidence)
                .bind(at)
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
            }
            AlertWrite::Resolve { alert_id } => {
                sqlx::query(
                    "UPDATE alerts SET status = 'resolved', resolved_at = $3, resolved_by = $4, updated_at = $3
                     WHERE workspace_id = $1 AND alert_id = $2",
                )
                .bind(ws.as_str())
                .bind(&alert_id)
                .bind(at)
                .bind(store::scores::SYSTEM)
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
            }
        }
    }
    Ok(sync)
}

impl PgStore {
    pub(crate) async fn all_subscriptions(&self, ws: &WorkspaceId) -> Result<Vec<Subscription>> {
        let rows: Vec<SubscriptionRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE workspace_id = $1
             ORDER BY account_id, started_at, subscription_id"
        )))
        .bind(ws.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(to_subscription).collect()
    }

    pub(crate) async fn all_tickets(&self, ws: &WorkspaceId, since: Timestamp) -> Result<Vec<Ticket>> {
        let rows: Vec<TicketRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE workspace_id = $1 AND opened_at >= $2
             ORDER BY account_id, opened_at, ticket_id"
        )))
        .bind(ws.as_str())
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(to_ticket).collect()
    }

    pub(crate) async fn put_scores(&self, ws: &WorkspaceId, scores: &[AccountScore]) -> Result<()> {
        for chunk in scores.chunks(SCORES_PER_WRITE) {
            let mut tx = self.pool.begin().await.map_err(db_error)?;
            derived(&mut tx).await?;
            write_scores(&mut tx, ws, chunk).await?;
            tx.commit().await.map_err(db_error)?;
        }
        Ok(())
    }

    /// Scores in the history alone, as [`PgStore::put_scores`] writes them there.
    pub(crate) async fn put_history(&self, ws: &WorkspaceId, scores: &[AccountScore]) -> Result<()> {
        for chunk in scores.chunks(SCORES_PER_WRITE) {
            // One row per account and day in a statement: the last of a day wins.
            let mut daily: HashMap<(&str, NaiveDate), &AccountScore> = HashMap::with_capacity(chunk.len());
            for s in chunk {
                daily.insert((s.account_id.as_str(), s.day), s);
            }
            let kept: Vec<AccountScore>;
            let daily = if daily.len() == chunk.len() {
                chunk
            } else {
                kept = daily.into_values().cloned().collect();
                &kept
            };
            let mut tx = self.pool.begin().await.map_err(db_error)?;
            derived(&mut tx).await?;
            write_history_rows(&mut tx, ws, daily).await?;
            tx.commit().await.map_err(db_error)?;
        }
        Ok(())
    }

    /// One account's score and its alerts, in one transaction.
    pub(crate) async fn put_one_score(
        &self,
        ws: &WorkspaceId,
        score: &AccountScore,
        signals: &[AlertSignal],
        at: Timestamp,
    ) -> Result<AlertSync> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        derived(&mut tx).await?;
        write_scores(&mut tx, ws, std::slice::from_ref(score)).await?;
        let scope = AlertScope::Accounts(std::slice::from_ref(&score.account_id));
        let sync = sync_in(&mut tx, ws, scope, signals, at).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(sync)
    }

    /// What rescoring one account reads: its reads run side by side on the pool's
    /// connections, so they wait for one round trip rather than five.
    pub(crate) async fn records_of(
        &self,
        ws: &WorkspaceId,
        id: &AccountId,
        usage: (NaiveDate, NaiveDate),
        scores: (NaiveDate, NaiveDate),
    ) -> Result<AccountRecords> {
        let (account, subscriptions, tickets, usage, scores) = tokio::try_join!(
            self.account(ws, id),
            self.subscriptions_of(ws, id),
            self.tickets_of(ws, id),
            self.usage_rows(ws, Some(id), usage.0, usage.1),
            self.history_of(ws, id, scores.0, scores.1),
        )?;
        Ok(AccountRecords { account, subscriptions, tickets, usage, scores })
    }

    pub(crate) async fn score_of(&self, ws: &WorkspaceId, id: &AccountId) -> Result<Option<AccountScore>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {POINT_COLUMNS}, explanation, scored_at FROM account_scores
             WHERE workspace_id = $1 AND account_id = $2"
        )))
        .bind(ws.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        let Some(r) = row else { return Ok(None) };
        let p = point(&r, 0)?;
        Ok(Some(AccountScore {
            account_id: id.clone(),
            day: p.day,
            health: p.health,
            band: p.band,
            churn_30d: p.churn_30d,
            churn_60d: p.churn_60d,
            churn_90d: p.churn_90d,
            expansion: p.expansion,
            mrr: p.mrr,
            components: p.components,
            explanation: store::JsonText::from_value(&get::<serde_json::Value>(&r, 10)?),
            scored_at: get(&r, 11)?,
        }))
    }

    pub(crate) async fn history_of(
        &self,
        ws: &WorkspaceId,
        id: &AccountId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<ScorePoint>> {
        // Within what a PostgreSQL date holds.
        let clamp = |d: NaiveDate| {
            d.clamp(
                NaiveDate::from_ymd_opt(1, 1, 1).expect("a date"),
                NaiveDate::from_ymd_opt(9999, 12, 31).expect("a date"),
            )
        };
        let (from, to) = (clamp(from), clamp(to));
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {POINT_COLUMNS} FROM score_history
             WHERE workspace_id = $1 AND account_id = $2 AND day >= $3 AND day < $4 ORDER BY day"
        )))
        .bind(ws.as_str())
        .bind(id.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(|r| point(r, 0)).collect()
    }

    pub(crate) async fn count_scored_accounts(
        &self,
        ws: &WorkspaceId,
        q: &AccountQuery,
        at_most: Option<u64>,
    ) -> Result<u64> {
        let mut a = Args::new();
        let from = matching(ws, q, &mut a, true)?;
        let sql = match at_most {
            Some(n) => format!("SELECT count(*) FROM (SELECT 1 {from} LIMIT {n}) AS found"),
            None => format!("SELECT count(*) {from}"),
        };
        let n: i64 =
            sqlx::query_scalar_with(AssertSqlSafe(sql), a.args).fetch_one(&self.pool).await.map_err(db_error)?;
        Ok(n as u64)
    }

    pub(crate) async fn scored_accounts(
        &self,
        ws: &WorkspaceId,
        q: &AccountQuery,
        page: &PageRequest,
    ) -> Result<Page<ScoredAccount>> {
        let mut a = Args::new();
        let (cmp, dir) = if q.descending { ("<", "DESC") } else { (">", "ASC") };
        let mut sql = format!("SELECT {ACCOUNT_COLUMNS}, {SUMMARY_COLUMNS} {}", matching(ws, q, &mut a, false)?);
        if !q.needs_score() {
            if let Some(c) = &page.after {
                sql += &format!(" AND a.account_id {cmp} {}", a.arg(c.parts(1)?[0].clone())?);
            }
            sql += &format!(" ORDER BY a.account_id {dir}");
        } else {
            let expr = sort_expr(q.sort);
            if let Some(c) = &page.after {
                if q.sort == AccountSort::Id {
                    sql += &format!(" AND s.account_id {cmp} {}", a.arg(c.parts(1)?[0].clone())?);
                } else {
                    let parts = c.parts(2)?;
                    let v: f64 = parts[0].parse().map_err(|_| StoreError::InvalidCursor)?;
                    // The sort value's type: MRR is a bigint.
                    let v = if q.sort == AccountSort::Mrr { format!("{}::float8", a.arg(v)?) } else { a.arg(v)? };
                    let id = a.arg(parts[1].clone())?;
                    sql += &format!(" AND ({expr}::float8, s.account_id) {cmp} ({v}, {id})");
                }
            }
            if q.sort == AccountSort::Id {
                sql += &format!(" ORDER BY s.account_id {dir}");
            } else {
                sql += &format!(" ORDER BY {expr} {dir}, s.account_id {dir}");
            }
        }
        sql += &format!(" LIMIT {}", page.fetch_limit());
        let rows = sqlx::query_with(AssertSqlSafe(sql), a.args).fetch_all(&self.pool).await.map_err(db_error)?;
        let items = rows
            .iter()
            .map(|r| Ok(ScoredAccount { account: account(r)?, score: summary(r, 6)? }))
            .collect::<Result<Vec<_>>>()?;
        Ok(page.finish(items, |s| match &s.score {
            Some(score) if q.sort != AccountSort::Id => {
                Cursor(vec![q.sort_value(score).to_string(), s.account.account_id.to_string()])
            }
            _ => Cursor(vec![s.account.account_id.to_string()]),
        }))
    }

    pub(crate) async fn add_model(&self, ws: &WorkspaceId, m: &ModelRecord) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        if m.status == store::ModelStatus::Active {
            sqlx::query(
                "UPDATE models SET status = 'retired' WHERE workspace_id = $1 AND kind = $2 AND status = 'active'",
            )
            .bind(ws.as_str())
            .bind(m.kind.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO models (workspace_id, {MODEL_COLUMNS}, model) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )))
        .bind(ws.as_str())
        .bind(&m.model_id)
        .bind(m.kind.as_str())
        .bind(m.status.as_str())
        .bind(m.created_at)
        .bind(&m.card)
        .bind(&m.reason)
        .bind(&m.model)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    pub(crate) async fn models(&self, ws: &WorkspaceId) -> Result<Vec<ModelRecord>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {MODEL_COLUMNS} FROM models WHERE workspace_id = $1 ORDER BY created_at DESC, model_id DESC"
        )))
        .bind(ws.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(|r| model(r, false)).collect()
    }

    pub(crate) async fn active(&self, ws: &WorkspaceId, kind: ModelKind) -> Result<Option<ModelRecord>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {MODEL_COLUMNS}, model FROM models WHERE workspace_id = $1 AND kind = $2 AND status = 'active'"
        )))
        .bind(ws.as_str())
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|r| model(&r, true)).transpose()
    }

    pub(crate) async fn sync(
        &self,
        ws: &WorkspaceId,
        scope: AlertScope<'_>,
        signals: &[AlertSignal],
        at: Timestamp,
    ) -> Result<AlertSync> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let sync = sync_in(&mut tx, ws, scope, signals, at).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(sync)
    }

    pub(crate) async fn alerts(&self, ws: &WorkspaceId, f: &AlertFilter, page: &PageRequest) -> Result<Page<Alert>> {
        let mut a = Args::new();
        let mut sql =
            format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE workspace_id = {}", a.arg(ws.as_str().to_owned())?);
        if let Some(s) = f.status {
            sql += &format!(" AND status = {}", a.arg(s.as_str().to_owned())?);
        }
        if f.unresolved {
            sql += " AND status <> 'resolved'";
        }
        if let Some(id) = &f.account_id {
            sql += &format!(" AND account_id = {}", a.arg(id.as_str().to_owned())?);
        }
        if let Some(k) = f.kind {
            sql += &format!(" AND kind = {}", a.arg(k.as_str().to_owned())?);
        }
        if let Some(s) = f.severity {
            sql += &format!(" AND severity = {}", a.arg(s.as_str().to_owned())?);
        }
        if let Some(c) = &page.after {
            let micros = c.int(0)?;
            let at = DateTime::from_timestamp_micros(micros).ok_or(StoreError::InvalidCursor)?;
            let id = c.parts(2)?[1].clone();
            sql += &format!(" AND (opened_at, alert_id) < ({}, {})", a.arg(at)?, a.arg(id)?);
        }
        sql += &format!(" ORDER BY opened_at DESC, alert_id DESC LIMIT {}", page.fetch_limit());
        let rows = sqlx::query_with(AssertSqlSafe(sql), a.args).fetch_all(&self.pool).await.map_err(db_error)?;
        let items = rows.iter().map(alert).collect::<Result<Vec<_>>>()?;
        Ok(page.finish(items, |a| Cursor(vec![a.opened_at.timestamp_micros().to_string(), a.alert_id.clone()])))
    }

    pub(crate) async fn alert(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Alert>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE workspace_id = $1 AND alert_id = $2"
        )))
        .bind(ws.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(alert).transpose()
    }

    pub(crate) async fn act_on_alert(
        &self,
        ws: &WorkspaceId,
        id: &str,
        action: &AlertAction,
        by: &str,
        at: Timestamp,
    ) -> Result<Option<Alert>> {
        let q = match action {
            AlertAction::Acknowledge => sqlx::query(
                "UPDATE alerts SET status = 'acknowledged', acknowledged_at = $3, acknowledged_by = $4, updated_at = $3
                 WHERE workspace_id = $1 AND alert_id = $2 AND status = 'open'",
            ),
            AlertAction::Resolve => sqlx::query(
                "UPDATE alerts SET status = 'resolved', resolved_at = $3, resolved_by = $4, updated_at = $3
                 WHERE workspace_id = $1 AND alert_id = $2 AND status <> 'resolved'",
            ),
            AlertAction::Feedback { .. } => sqlx::query(
                "UPDATE alerts SET useful = $5, feedback = $6, feedback_by = $4, updated_at = $3
                 WHERE workspace_id = $1 AND alert_id = $2",
            ),
        };
        let mut q = q.bind(ws.as_str()).bind(id).bind(at).bind(by);
        if let AlertAction::Feedback { useful, note } = action {
            q = q.bind(*useful).bind(note.clone());
        }
        q.execute(&self.pool).await.map_err(db_error)?;
        self.alert(ws, id).await
    }

    pub(crate) async fn points_as_of(&self, ws: &WorkspaceId, day: NaiveDate) -> Result<Vec<(AccountId, ScorePoint)>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT h.account_id, h.{}
             FROM (SELECT account_id FROM accounts WHERE workspace_id = $1
                   UNION SELECT account_id FROM account_scores WHERE workspace_id = $1) s
             JOIN score_history h ON h.workspace_id = $1 AND h.account_id = s.account_id
               AND h.day = (SELECT max(x.day) FROM score_history x
                            WHERE x.workspace_id = $1 AND x.account_id = s.account_id AND x.day <= $2)",
            POINT_COLUMNS.replace(", ", ", h.")
        )))
        .bind(ws.as_str())
        .bind(day)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(|r| Ok((account_id(&get::<String>(r, 0)?)?, point(r, 1)?))).collect()
    }

    pub(crate) async fn setting(&self, ws: &WorkspaceId, key: &str) -> Result<Option<serde_json::Value>> {
        let row: Option<(serde_json::Value,)> =
            sqlx::query_as("SELECT value FROM workspace_settings WHERE workspace_id = $1 AND key = $2")
                .bind(ws.as_str())
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(row.map(|r| r.0))
    }

    /// One entry of an object-valued setting, set or removed in a transaction that holds the
    /// setting's row (inserted empty first if missing), so writers of entries take turns.
    pub(crate) async fn set_setting_entry(
        &self,
        ws: &WorkspaceId,
        key: &str,
        name: &str,
        value: Option<&serde_json::Value>,
        at: Timestamp,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query(
            "INSERT INTO workspace_settings (workspace_id, key, value, updated_at) VALUES ($1, $2, '{}'::jsonb, $3)
             ON CONFLICT (workspace_id, key) DO NOTHING",
        )
        .bind(ws.as_str())
        .bind(key)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let (current,): (serde_json::Value,) =
            sqlx::query_as("SELECT value FROM workspace_settings WHERE workspace_id = $1 AND key = $2 FOR UPDATE")
                .bind(ws.as_str())
                .bind(key)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
        let (entries, existed) = store::with_setting_entry(Some(current), name, value);
        if value.is_none() && !existed {
            // Nothing to remove: nothing written (the row made for the lock goes too).
            tx.rollback().await.map_err(db_error)?;
            return Ok(false);
        }
        sqlx::query("UPDATE workspace_settings SET value = $3, updated_at = $4 WHERE workspace_id = $1 AND key = $2")
            .bind(ws.as_str())
            .bind(key)
            .bind(serde_json::Value::Object(entries))
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(existed)
    }

    pub(crate) async fn set_setting(
        &self,
        ws: &WorkspaceId,
        key: &str,
        value: &serde_json::Value,
        at: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO workspace_settings (workspace_id, key, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (workspace_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(ws.as_str())
        .bind(key)
        .bind(value)
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }
}

type ChangeRow = (
    i64,
    i64,
    String,
    DateTime<Utc>,
    Option<String>,
    Option<String>,
    Option<NaiveDate>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A change row (every column optional: the horizon row stands alone when none is visible)
/// and whether changes are held back.
type HeldChangeRow = (
    bool,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<String>,
    Option<NaiveDate>,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl PgStore {
    /// Forgets the changes at or before `through` that happened before `before`.
    pub(crate) async fn prune_changes(
        &self,
        ws: &WorkspaceId,
        through: store::LogPosition,
        before: Timestamp,
    ) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM account_changes WHERE workspace_id = $1 AND (tx, seq) <= ($2, $3) AND at < $4")
                .bind(ws.as_str())
                .bind(through.tx)
                .bind(through.seq)
                .bind(before)
                .execute(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    /// Band changes and alerts opened after `after`, only of transactions older than every
    /// one still running. Changes held back by a running transaction (of any workspace: the
    /// horizon is the database's) are waited for a little, as the event log's reader does;
    /// past that they are read by a later call.
    pub(crate) async fn changes_after(
        &self,
        ws: &WorkspaceId,
        after: store::LogPosition,
        limit: usize,
    ) -> Result<Vec<store::AccountChange>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let deadline = std::time::Instant::now() + crate::log::SETTLE_WAIT;
        let mut pause = std::time::Duration::from_millis(1);
        let rows = loop {
            // The horizon and the rows from one statement, hence one snapshot.
            let rows: Vec<HeldChangeRow> = sqlx::query_as(
                "SELECT h.held_back, c.tx, c.seq, c.account_id, c.at, c.band_from, c.band_to, c.day,
                            c.alert_id, c.alert_kind, c.alert_reason
                     FROM (SELECT s.xmin, EXISTS (SELECT 1 FROM account_changes x
                                                  WHERE x.workspace_id = $1 AND (x.tx, x.seq) > ($2, $3)
                                                    AND x.tx >= s.xmin) AS held_back
                           FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin) s) h
                     LEFT JOIN LATERAL (
                         SELECT * FROM account_changes c
                         WHERE c.workspace_id = $1 AND (c.tx, c.seq) > ($2, $3) AND c.tx < h.xmin
                         ORDER BY c.tx, c.seq LIMIT $4) c ON true
                     ORDER BY c.tx, c.seq",
            )
            .bind(ws.as_str())
            .bind(after.tx)
            .bind(after.seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
            let held_back = rows.first().is_some_and(|r| r.0);
            let rows: Vec<ChangeRow> = rows
                .into_iter()
                .filter_map(|(_, tx, seq, account, at, from, to, day, alert, kind, reason)| {
                    Some((tx?, seq?, account?, at?, from, to, day, alert, kind, reason))
                })
                .collect();
            if !held_back || rows.len() as i64 >= limit || std::time::Instant::now() >= deadline {
                break rows;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(crate::log::SETTLE_POLL_MAX);
        };
        let mut out = Vec::with_capacity(rows.len());
        for (tx, seq, account_id, at, from, to, day, alert_id, kind, reason) in rows {
            let what = match (to, day, alert_id) {
                (Some(to), Some(day), _) => store::AccountChangeKind::Band {
                    from: from.as_deref().map(parse_col).transpose()?,
                    to: parse_col(&to)?,
                    day,
                },
                (_, _, Some(alert_id)) => store::AccountChangeKind::AlertOpened {
                    alert_id,
                    kind: kind.unwrap_or_default(),
                    reason: reason.unwrap_or_default(),
                },
                _ => return Err(StoreError::Backend(format!("account change {seq} says neither band nor alert"))),
            };
            out.push(store::AccountChange { position: store::LogPosition { tx, seq }, account_id, at, what });
        }
        Ok(out)
    }
}
