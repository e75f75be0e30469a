//! Scores, models and alerts.

use chrono::NaiveDate;
use domain::{AccountId, Currency, Money, Timestamp, WorkspaceId};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use store::scores::{AlertWrite, plan_alerts};
use store::{
    AccountQuery, AccountRecords, AccountScore, AccountSort, Alert, AlertAction, AlertFilter, AlertScope, AlertSignal,
    AlertSync, Cursor, ModelKind, ModelRecord, Page, PageRequest, Result, ScorePoint, ScoreSummary, ScoredAccount,
    StoreError, Subscription, Ticket,
};

use crate::reads::{ACCOUNT_COLUMNS, account_row, query, to_account};
use crate::writer::Priority;
use crate::{SqliteStore, json_col, ms, opt_time, parse_col, sql_error, time};

/// Scores are written in transactions of this many accounts, so other writes wait little.
const SCORES_PER_WRITE: usize = 2_000;

fn money(minor: Option<i64>, currency: Option<String>) -> Result<Option<Money>> {
    match (minor, currency) {
        (Some(m), Some(c)) => {
            Ok(Some(Money::new(m, Currency::parse(&c).map_err(|e| StoreError::Backend(e.to_string()))?)))
        }
        _ => Ok(None),
    }
}

fn day(s: String) -> Result<NaiveDate> {
    s.parse().map_err(|_| StoreError::Backend(format!("unexpected stored day {s:?}")))
}

fn account_id(s: String) -> Result<AccountId> {
    AccountId::parse(&s).map_err(|e| StoreError::Backend(e.to_string()))
}

const POINT_COLUMNS: &str =
    "day, health, band, churn_30d, churn_60d, churn_90d, expansion, mrr_minor, currency, components";

fn point(r: &Row<'_>, at: usize) -> rusqlite::Result<Result<ScorePoint>> {
    let day_s: String = r.get(at)?;
    let band: String = r.get(at + 2)?;
    let (minor, currency): (Option<i64>, Option<String>) = (r.get(at + 7)?, r.get(at + 8)?);
    let components: Option<String> = r.get(at + 9)?;
    let (health, c30, c60, c90, exp) = (r.get(at + 1)?, r.get(at + 3)?, r.get(at + 4)?, r.get(at + 5)?, r.get(at + 6)?);
    Ok((|| {
        Ok(ScorePoint {
            day: day(day_s)?,
            health,
            band: parse_col(band)?,
            churn_30d: c30,
            churn_60d: c60,
            churn_90d: c90,
            expansion: exp,
            mrr: money(minor, currency)?,
            components: components.map_or(serde_json::Value::Null, |c| json_col(&c)),
        })
    })())
}

const SUMMARY_COLUMNS: &str = "s.day, s.health, s.band, s.churn_30d, s.expansion, s.mrr_minor, s.currency";

fn summary(r: &Row<'_>, at: usize) -> rusqlite::Result<Result<Option<ScoreSummary>>> {
    let Some(day_s) = r.get::<_, Option<String>>(at)? else { return Ok(Ok(None)) };
    let band: String = r.get(at + 2)?;
    let (health, churn, exp): (f64, Option<f64>, Option<f64>) = (r.get(at + 1)?, r.get(at + 3)?, r.get(at + 4)?);
    let (minor, currency): (Option<i64>, Option<String>) = (r.get(at + 5)?, r.get(at + 6)?);
    Ok((|| {
        Ok(Some(ScoreSummary {
            day: day(day_s)?,
            health,
            band: parse_col(band)?,
            churn_30d: churn,
            expansion: exp,
            mrr: money(minor, currency)?,
        }))
    })())
}

const ALERT_COLUMNS: &str = "alert_id, account_id, kind, reason, severity, title, evidence, status, opened_at,
    updated_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, useful, feedback, feedback_by";

fn alert(r: &Row<'_>) -> rusqlite::Result<Result<Alert>> {
    let (kind, severity, status): (String, String, String) = (r.get(2)?, r.get(4)?, r.get(7)?);
    let (account, evidence): (String, String) = (r.get(1)?, r.get(6)?);
    let alert_id = r.get(0)?;
    let (reason, title) = (r.get(3)?, r.get(5)?);
    let (opened, updated, acked, resolved): (i64, i64, Option<i64>, Option<i64>) =
        (r.get(8)?, r.get(9)?, r.get(10)?, r.get(12)?);
    let (acknowledged_by, resolved_by, useful, feedback, feedback_by) =
        (r.get(11)?, r.get(13)?, r.get(14)?, r.get(15)?, r.get(16)?);
    Ok((|| {
        Ok(Alert {
            alert_id,
            account_id: account_id(account)?,
            kind: parse_col(kind)?,
            reason,
            severity: parse_col(severity)?,
            title,
            evidence: json_col(&evidence),
            status: parse_col(status)?,
            opened_at: time(opened),
            updated_at: time(updated),
            acknowledged_at: opt_time(acked),
            acknowledged_by,
            resolved_at: opt_time(resolved),
            resolved_by,
            useful,
            feedback,
            feedback_by,
        })
    })())
}

fn get_alert(conn: &Connection, ws: &str, id: &str) -> Result<Option<Alert>> {
    conn.prepare_cached(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE workspace_id = ?1 AND alert_id = ?2"))
        .map_err(sql_error)?
        .query_row(params![ws, id], alert)
        .optional()
        .map_err(sql_error)?
        .transpose()
}

const MODEL_COLUMNS: &str = "model_id, kind, status, created_at, card, reason";

fn model(r: &Row<'_>, with_params: bool) -> rusqlite::Result<Result<ModelRecord>> {
    let (model_id, kind, status, created, card, reason): (String, String, String, i64, String, String) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
    let params: Option<String> = if with_params { r.get(6)? } else { None };
    Ok((|| {
        Ok(ModelRecord {
            model_id,
            kind: parse_col(kind)?,
            status: parse_col(status)?,
            created_at: time(created),
            card: json_col(&card),
            reason,
            model: params.map(|p| json_col(&p)),
        })
    })())
}

/// The conditions on the account itself (`a`): search, plan, owner, segment.
fn account_filters(q: &AccountQuery, args: &mut Vec<Sql>) -> String {
    account_filters_but(q, args, false)
}

/// The account filters, the segment's left out when the query reads its members already.
fn account_filters_but(q: &AccountQuery, args: &mut Vec<Sql>, from_members: bool) -> String {
    let mut arg = |v: String| {
        args.push(Sql::Text(v));
        format!("?{}", args.len())
    };
    let mut sql = String::new();
    if let Some((anywhere, start)) = q.search_patterns() {
        let (anywhere, start) = (arg(anywhere), arg(start));
        sql += &format!(
            " AND (a.account_id LIKE {start} ESCAPE '\\' OR json_extract(a.traits, '$.name') LIKE {anywhere} ESCAPE '\\')"
        );
    }
    if let Some(plan) = &q.plan {
        sql += &format!(" AND json_extract(a.traits, '$.plan') = {}", arg(plan.clone()));
    }
    if let Some(owner) = &q.owner {
        sql += &format!(" AND json_extract(a.traits, '$.csm_email') = {}", arg(owner.clone()));
    }
    if let Some(segment) = q.segment.as_ref().filter(|_| !from_members) {
        let seg = arg(segment.clone());
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM segment_members m WHERE m.workspace_id = a.workspace_id
               AND m.segment_id = {seg} AND m.subject_id = a.account_id AND m.member = 1){}",
            of_accounts(&seg)
        );
    }
    sql
}

/// The condition that segment `seg` (a placeholder) is of accounts: a segment of people
/// lists none, whatever its members' ids. Read once per statement.
fn of_accounts(seg: &str) -> String {
    format!(
        " AND EXISTS (SELECT 1 FROM segments g WHERE g.workspace_id = ?1 AND g.segment_id = {seg} AND g.kind = 'accounts')"
    )
}

/// `FROM ... WHERE ...` of the accounts `q` lists (the workspace is `?1`); to count them,
/// only the tables its filters need.
fn matching(q: &AccountQuery, args: &mut Vec<Sql>, counting: bool) -> String {
    let arg = |v: Sql, args: &mut Vec<Sql>| {
        args.push(v);
        format!("?{}", args.len())
    };
    if let Some(segment) = q.segment.as_ref().filter(|_| counting || !q.needs_score()) {
        // A segment's members (`segment_members_of`), then what else the query needs of
        // them: in member order, instead of a look into the members for every account of
        // the workspace. A count joins only what its filters read.
        let seg = arg(Sql::Text(segment.clone()), args);
        let record = !counting || q.reads_traits();
        let score = if !counting {
            "LEFT JOIN account_scores s ON s.workspace_id = m.workspace_id AND s.account_id = m.subject_id"
        } else if q.needs_score() {
            "JOIN account_scores s ON s.workspace_id = m.workspace_id AND s.account_id = m.subject_id"
        } else {
            ""
        };
        let mut sql = format!(
            "FROM segment_members m {} {score}
             WHERE m.workspace_id = ?1 AND m.segment_id = {seg} AND m.member = 1",
            if record {
                "JOIN accounts a ON a.workspace_id = m.workspace_id AND a.account_id = m.subject_id"
            } else {
                ""
            }
        );
        sql += &of_accounts(&seg);
        sql += &score_filters(q, args);
        sql += &account_filters_but(q, args, true);
        return sql;
    }
    if !q.needs_score() {
        let mut sql = if counting {
            "FROM accounts a WHERE a.workspace_id = ?1".to_owned()
        } else {
            "FROM accounts a
             LEFT JOIN account_scores s ON s.workspace_id = a.workspace_id AND s.account_id = a.account_id
             WHERE a.workspace_id = ?1"
                .to_owned()
        };
        sql += &account_filters(q, args);
        return sql;
    }
    let mut sql = if counting && !q.filters_accounts() {
        "FROM account_scores s WHERE s.workspace_id = ?1".to_owned()
    } else {
        "FROM account_scores s
         JOIN accounts a ON a.workspace_id = s.workspace_id AND a.account_id = s.account_id
         WHERE s.workspace_id = ?1"
            .to_owned()
    };
    sql += &score_filters(q, args);
    sql += &account_filters(q, args);
    sql
}

/// The filters on the latest score (`s`).
fn score_filters(q: &AccountQuery, args: &mut Vec<Sql>) -> String {
    let mut arg = |v: Sql| {
        args.push(v);
        format!("?{}", args.len())
    };
    let mut sql = String::new();
    if let Some(b) = q.band {
        sql += &format!(" AND s.band = {}", arg(Sql::Text(b.as_str().into())));
    }
    let bounds: [(&str, &str, Option<Sql>); 5] = [
        ("s.health", ">=", q.health_min.map(Sql::Real)),
        ("s.health", "<=", q.health_max.map(Sql::Real)),
        ("s.churn_30d", ">=", q.churn_min.map(Sql::Real)),
        ("s.mrr_minor", ">=", q.mrr_min.map(Sql::Integer)),
        ("s.mrr_minor", "<=", q.mrr_max.map(Sql::Integer)),
    ];
    for (col, op, v) in bounds {
        if let Some(v) = v {
            sql += &format!(" AND {col} {op} {}", arg(v));
        }
    }
    sql
}

/// The statement counting the accounts `q` lists in `ws` (up to `at_most`), and its arguments.
fn accounts_count_query(ws: &WorkspaceId, q: &AccountQuery, at_most: Option<u64>) -> (String, Vec<Sql>) {
    let mut args: Vec<Sql> = vec![Sql::Text(ws.as_str().to_owned())];
    let from = matching(q, &mut args, true);
    let sql = match at_most {
        Some(n) => format!("SELECT count(*) FROM (SELECT 1 {from} LIMIT {n})"),
        None => format!("SELECT count(*) {from}"),
    };
    (sql, args)
}

/// The statement reading a page of the accounts `q` lists in `ws`, and its arguments.
fn accounts_page_query(ws: &WorkspaceId, q: &AccountQuery, page: &PageRequest) -> Result<(String, Vec<Sql>)> {
    let mut args: Vec<Sql> = vec![Sql::Text(ws.as_str().to_owned())];
    let arg = |v: Sql, args: &mut Vec<Sql>| {
        args.push(v);
        format!("?{}", args.len())
    };
    let (cmp, dir) = if q.descending { ("<", "DESC") } else { (">", "ASC") };
    let mut sql = format!("SELECT {ACCOUNT_COLUMNS}, {SUMMARY_COLUMNS} {}", matching(q, &mut args, false));
    if !q.needs_score() {
        // A segment's list walks its members (see `matching`).
        let id = if q.segment.is_some() { "m.subject_id" } else { "a.account_id" };
        if let Some(c) = &page.after {
            let p = arg(Sql::Text(c.parts(1)?[0].clone()), &mut args);
            sql += &format!(" AND {id} {cmp} {p}");
        }
        sql += &format!(" ORDER BY {id} {dir}");
    } else {
        let expr = sort_expr(q.sort);
        if let Some(c) = &page.after {
            if q.sort == AccountSort::Id {
                sql += &format!(" AND s.account_id {cmp} {}", arg(Sql::Text(c.parts(1)?[0].clone()), &mut args));
            } else {
                let parts = c.parts(2)?;
                let v: f64 = parts[0].parse().map_err(|_| StoreError::InvalidCursor)?;
                let v = arg(Sql::Real(v), &mut args);
                let id = arg(Sql::Text(parts[1].clone()), &mut args);
                sql += &format!(" AND ({expr}, s.account_id) {cmp} ({v}, {id})");
            }
        }
        if q.sort == AccountSort::Id {
            sql += &format!(" ORDER BY s.account_id {dir}");
        } else {
            sql += &format!(" ORDER BY {expr} {dir}, s.account_id {dir}");
        }
    }
    sql += &format!(" LIMIT {}", page.fetch_limit());
    Ok((sql, args))
}

/// The SQL of the value an account list sorts by.
fn sort_expr(sort: AccountSort) -> &'static str {
    match sort {
        AccountSort::Id => "s.account_id",
        AccountSort::Health => "s.health",
        AccountSort::ChurnRisk => "coalesce(s.churn_30d, -1)",
        AccountSort::Expansion => "coalesce(s.expansion, -1)",
        AccountSort::Mrr => "coalesce(s.mrr_minor, -1)",
    }
}

/// Writes each score as the account's latest (unless that is of a later day) and as its
/// history point of the day (as [`write_history`] does).
fn write_scores(conn: &Connection, ws: &WorkspaceId, scores: &[AccountScore]) -> Result<()> {
    let mut latest = conn
        .prepare_cached(
            "INSERT INTO account_scores (workspace_id, account_id, day, health, band, churn_30d, churn_60d,
               churn_90d, expansion, mrr_minor, currency, components, explanation, scored_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (workspace_id, account_id) DO UPDATE SET
               day = excluded.day, health = excluded.health, band = excluded.band,
               churn_30d = excluded.churn_30d, churn_60d = excluded.churn_60d,
               churn_90d = excluded.churn_90d, expansion = excluded.expansion,
               mrr_minor = excluded.mrr_minor, currency = excluded.currency,
               components = excluded.components, explanation = excluded.explanation,
               scored_at = excluded.scored_at,
               band_from = CASE WHEN excluded.band <> account_scores.band THEN account_scores.band
                                ELSE account_scores.band_from END,
               band_since = CASE WHEN excluded.band <> account_scores.band THEN excluded.day
                                 ELSE account_scores.band_since END
             WHERE excluded.day >= account_scores.day",
        )
        .map_err(sql_error)?;
    let mut history = conn.prepare_cached(&history_upsert()).map_err(sql_error)?;
    for s in scores {
        let day = s.day.to_string();
        let components = s.components.to_string();
        let (minor, currency) = (s.mrr.map(|m| m.minor), s.mrr.map(|m| m.currency.as_str().to_owned()));
        latest
            .execute(params![
                ws.as_str(),
                s.account_id.as_str(),
                day,
                s.health,
                s.band.as_str(),
                s.churn_30d,
                s.churn_60d,
                s.churn_90d,
                s.expansion,
                minor,
                currency,
                components,
                s.explanation.as_str(),
                ms(&s.scored_at),
            ])
            .map_err(sql_error)?;
        history
            .execute(params![
                ws.as_str(),
                s.account_id.as_str(),
                day,
                s.health,
                s.band.as_str(),
                s.churn_30d,
                s.churn_60d,
                s.churn_90d,
                s.expansion,
                minor,
                currency,
                components,
            ])
            .map_err(sql_error)?;
    }
    Ok(())
}

/// A history point's upsert: a day scored again replaces its point.
fn history_upsert() -> String {
    format!(
        "INSERT INTO score_history (workspace_id, account_id, {POINT_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (workspace_id, account_id, day) DO UPDATE SET
           health = excluded.health, band = excluded.band, churn_30d = excluded.churn_30d,
           churn_60d = excluded.churn_60d, churn_90d = excluded.churn_90d, expansion = excluded.expansion,
           mrr_minor = excluded.mrr_minor, currency = excluded.currency, components = excluded.components"
    )
}

/// Each score as its account's history point of its day, a past day's (see
/// `score_history_past`).
fn write_history(conn: &Connection, ws: &WorkspaceId, scores: &[AccountScore]) -> Result<()> {
    if let Some(last) = scores.iter().map(|s| s.day).max() {
        conn.prepare_cached(
            "INSERT INTO score_history_past (workspace_id, through) VALUES (?1, ?2)
             ON CONFLICT (workspace_id) DO UPDATE SET through = max(through, excluded.through)",
        )
        .map_err(sql_error)?
        .execute(params![ws.as_str(), last.to_string()])
        .map_err(sql_error)?;
    }
    let mut history = conn.prepare_cached(&history_upsert()).map_err(sql_error)?;
    for s in scores {
        history
            .execute(params![
                ws.as_str(),
                s.account_id.as_str(),
                s.day.to_string(),
                s.health,
                s.band.as_str(),
                s.churn_30d,
                s.churn_60d,
                s.churn_90d,
                s.expansion,
                s.mrr.map(|m| m.minor),
                s.mrr.map(|m| m.currency.as_str().to_owned()),
                s.components.to_string(),
            ])
            .map_err(sql_error)?;
    }
    Ok(())
}

/// The account's score points of days in `[from, to)`, oldest first.
fn history_on(
    conn: &Connection,
    ws: &WorkspaceId,
    id: &AccountId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<ScorePoint>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {POINT_COLUMNS} FROM score_history
             WHERE workspace_id = ?1 AND account_id = ?2 AND day >= ?3 AND day < ?4 ORDER BY day"
        ))
        .map_err(sql_error)?;
    let rows = stmt
        .query_map(params![ws.as_str(), id.as_str(), from.to_string(), to.to_string()], |r| point(r, 0))
        .map_err(sql_error)?;
    rows.map(|r| r.map_err(sql_error)?).collect()
}

/// The statement listing a workspace's alerts by `f`, newest first, and its arguments. An
/// account's alerts are read through its index and then sorted: left to itself, SQLite walked
/// the workspace's alerts newest first to spare the sort (93 ms for 34,000 alerts, against
/// 0.1 ms), and an account's page asks for them on every view.
fn alerts_query(ws: &WorkspaceId, f: &AlertFilter, page: &PageRequest) -> Result<(String, Vec<Sql>)> {
    let mut args: Vec<Sql> = vec![Sql::Text(ws.as_str().to_owned())];
    let index = if f.account_id.is_some() { " INDEXED BY alerts_account" } else { "" };
    let mut sql = format!("SELECT {ALERT_COLUMNS} FROM alerts{index} WHERE workspace_id = ?1");
    let add = |cond: &str, v: Sql, args: &mut Vec<Sql>| {
        args.push(v);
        format!(" AND {cond} ?{}", args.len())
    };
    if let Some(s) = f.status {
        sql += &add("status =", Sql::Text(s.as_str().into()), &mut args);
    }
    if f.unresolved {
        sql += " AND status <> 'resolved'";
    }
    if let Some(a) = &f.account_id {
        sql += &add("account_id =", Sql::Text(a.as_str().into()), &mut args);
    }
    if let Some(k) = f.kind {
        sql += &add("kind =", Sql::Text(k.as_str().into()), &mut args);
    }
    if let Some(s) = f.severity {
        sql += &add("severity =", Sql::Text(s.as_str().into()), &mut args);
    }
    if let Some(c) = &page.after {
        let at = c.int(0)?;
        let id = c.parts(2)?[1].clone();
        args.push(Sql::Integer(at));
        args.push(Sql::Text(id));
        sql += &format!(" AND (opened_at, alert_id) < (?{}, ?{})", args.len() - 1, args.len());
    }
    sql += &format!(" ORDER BY opened_at DESC, alert_id DESC LIMIT {}", page.fetch_limit());
    Ok((sql, args))
}

/// Each account's latest point on or before `day`, without components, read from the latest
/// scores where they are that point: when `day` is on or after every latest score's day, an
/// account's latest score of a day after every point written to the history alone is its
/// point (see `score_history_past`). The other accounts' points are searched in the history.
/// `None` when `day` is before some latest score's day: every point is searched.
fn headlines_from_latest(
    conn: &Connection,
    ws: &WorkspaceId,
    day: NaiveDate,
) -> Result<Option<Vec<(AccountId, ScorePoint)>>> {
    let (latest, past): (Option<String>, Option<String>) = conn
        .prepare_cached(
            "SELECT (SELECT max(day) FROM account_scores WHERE workspace_id = ?1),
                    (SELECT through FROM score_history_past WHERE workspace_id = ?1)",
        )
        .map_err(sql_error)?
        .query_row([ws.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql_error)?;
    let day_text = day.to_string();
    if latest.is_none_or(|l| l > day_text) {
        return Ok(None);
    }
    let columns = POINT_COLUMNS.replace(", components", ", NULL");
    let mut out = Vec::new();
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT account_id, {columns} FROM account_scores WHERE workspace_id = ?1 AND day > ?2 ORDER BY account_id"
        ))
        .map_err(sql_error)?;
    let rows = stmt
        .query_map(params![ws.as_str(), past.unwrap_or_default()], |r| Ok((r.get::<_, String>(0)?, point(r, 1)?)))
        .map_err(sql_error)?;
    for r in rows {
        let (id, p) = r.map_err(sql_error)?;
        out.push((id, p?));
    }
    // The others (a latest score no later than a past day written, or none): searched.
    let mut rest = Vec::new();
    {
        let mut ids = conn
            .prepare_cached(
                "SELECT account_id FROM accounts WHERE workspace_id = ?1
                 UNION SELECT account_id FROM account_scores WHERE workspace_id = ?1 ORDER BY account_id",
            )
            .map_err(sql_error)?;
        let ids = ids.query_map([ws.as_str()], |r| r.get::<_, String>(0)).map_err(sql_error)?;
        let mut covered = out.iter().map(|(id, _)| id.as_str()).peekable();
        for id in ids {
            let id = id.map_err(sql_error)?;
            // Both lists are in account order.
            while covered.next_if(|c| *c < id.as_str()).is_some() {}
            if covered.next_if(|c| *c == id.as_str()).is_none() {
                rest.push(id);
            }
        }
    }
    if !rest.is_empty() {
        let mut seek = conn
            .prepare_cached(&format!(
                "SELECT {columns} FROM score_history WHERE workspace_id = ?1 AND account_id = ?2 AND day <= ?3
                 ORDER BY day DESC LIMIT 1"
            ))
            .map_err(sql_error)?;
        for id in rest {
            let found =
                seek.query_row(params![ws.as_str(), id, day_text], |r| point(r, 0)).optional().map_err(sql_error)?;
            if let Some(p) = found {
                out.push((id, p?));
            }
        }
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    }
    out.into_iter().map(|(id, p)| Ok((account_id(id)?, p))).collect::<Result<Vec<_>>>().map(Some)
}

/// Each account's (of the accounts table, or scored) latest history point of a day on or
/// before `?2`. CROSS JOIN keeps the accounts outside: one seek of the history per account.
/// With a plain JOIN, SQLite 3.51 walked the workspace's whole history instead, finding each
/// row's day again (26 s for 100,000 accounts with 90 days each, against 1.2 s).
/// Without `components`, the components column is a `NULL` in its place.
fn points_as_of_sql(components: bool) -> String {
    let columns = if components { POINT_COLUMNS.to_owned() } else { POINT_COLUMNS.replace(", components", ", NULL") };
    format!(
        "SELECT h.account_id, h.{}
         FROM (SELECT account_id FROM accounts WHERE workspace_id = ?1
               UNION SELECT account_id FROM account_scores WHERE workspace_id = ?1) s
         CROSS JOIN score_history h ON h.workspace_id = ?1 AND h.account_id = s.account_id
           AND h.day = (SELECT max(x.day) FROM score_history x
                        WHERE x.workspace_id = ?1 AND x.account_id = s.account_id AND x.day <= ?2)",
        columns.replace(", ", ", h.").replace("h.NULL", "NULL")
    )
}

/// Opens, updates and resolves the alerts of `accounts` (all of the workspace's: none) as
/// [`plan_alerts`] decides.
fn sync_on(
    conn: &Connection,
    ws: &WorkspaceId,
    accounts: Option<&[AccountId]>,
    signals: &[AlertSignal],
    at: Timestamp,
) -> Result<AlertSync> {
    let quiet = ms(&(at - chrono::Duration::days(store::scores::RESOLVED_QUIET_DAYS)));
    let sql = format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE workspace_id = ?1 AND account_id = ?2
         AND (status <> 'resolved' OR resolved_at >= ?3)"
    );
    let mut existing = Vec::new();
    match accounts {
        Some(ids) => {
            let mut stmt = conn.prepare_cached(&sql).map_err(sql_error)?;
            let mut seen = std::collections::HashSet::new();
            for id in ids.iter().chain(signals.iter().map(|s| &s.account_id)) {
                if seen.insert(id.as_str()) {
                    let rows = stmt.query_map(params![ws.as_str(), id.as_str(), quiet], alert).map_err(sql_error)?;
                    for r in rows {
                        existing.push(r.map_err(sql_error)??);
                    }
                }
            }
        }
        None => {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts WHERE workspace_id = ?1
                     AND (status <> 'resolved' OR resolved_at >= ?2)"
                ))
                .map_err(sql_error)?;
            let rows = stmt.query_map(params![ws.as_str(), quiet], alert).map_err(sql_error)?;
            for r in rows {
                existing.push(r.map_err(sql_error)??);
            }
        }
    }
    let scope = match accounts {
        Some(ids) => AlertScope::Accounts(ids),
        None => AlertScope::Workspace,
    };
    let (writes, sync) = plan_alerts(&existing, signals, scope, at, &mut store::scores::new_alert_id);
    let now = ms(&at);
    for w in writes {
        match w {
            AlertWrite::Open(a) => {
                conn.prepare_cached(&format!(
                    "INSERT INTO alerts (workspace_id, {ALERT_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
                ))
                .map_err(sql_error)?
                .execute(params![
                    ws.as_str(),
                    a.alert_id,
                    a.account_id.as_str(),
                    a.kind.as_str(),
                    a.reason,
                    a.severity.as_str(),
                    a.title,
                    a.evidence.to_string(),
                    a.status.as_str(),
                    now,
                    now,
                ])
                .map_err(sql_error)?;
            }
            AlertWrite::Update { alert_id, severity, title, evidence } => {
                conn.prepare_cached(
                    "UPDATE alerts SET severity = ?3, title = ?4, evidence = ?5, updated_at = ?6
                     WHERE workspace_id = ?1 AND alert_id = ?2",
                )
                .map_err(sql_error)?
                .execute(params![ws.as_str(), alert_id, severity.as_str(), title, evidence.to_string(), now])
                .map_err(sql_error)?;
            }
            AlertWrite::Resolve { alert_id } => {
                conn.prepare_cached(
                    "UPDATE alerts SET status = 'resolved', resolved_at = ?3, resolved_by = ?4, updated_at = ?3
                     WHERE workspace_id = ?1 AND alert_id = ?2",
                )
                .map_err(sql_error)?
                .execute(params![ws.as_str(), alert_id, now, store::scores::SYSTEM])
                .map_err(sql_error)?;
            }
        }
    }
    Ok(sync)
}

impl SqliteStore {
    pub(crate) async fn all_subscriptions(&self, ws: &WorkspaceId) -> Result<Vec<Subscription>> {
        let ws = ws.clone();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {} FROM subscriptions WHERE workspace_id = ?1 ORDER BY account_id, started_at, subscription_id",
                crate::records::SUBSCRIPTION_COLUMNS
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(sql_error)?;
            let rows = stmt.query_map([ws.as_str()], crate::records::subscription).map_err(sql_error)?;
            rows.map(|r| r.map_err(sql_error)?).collect()
        })
        .await
    }

    pub(crate) async fn all_tickets(&self, ws: &WorkspaceId, since: Timestamp) -> Result<Vec<Ticket>> {
        let ws = ws.clone();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {} FROM tickets WHERE workspace_id = ?1 AND opened_at >= ?2 ORDER BY account_id, opened_at, ticket_id",
                crate::records::TICKET_COLUMNS
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(sql_error)?;
            let rows = stmt.query_map(params![ws.as_str(), ms(&since)], crate::records::ticket).map_err(sql_error)?;
            rows.map(|r| r.map_err(sql_error)?).collect()
        })
        .await
    }

    pub(crate) async fn put_scores(&self, ws: &WorkspaceId, scores: &[AccountScore]) -> Result<()> {
        for chunk in scores.chunks(SCORES_PER_WRITE) {
            let (ws, chunk) = (ws.clone(), chunk.to_vec());
            // A full run's chunks yield to other writes; one account rescored is waited on.
            // Scores are derived: their commits do not wait for the disk.
            let write = move |conn: &rusqlite::Connection| write_scores(conn, &ws, &chunk);
            let priority = if scores.len() <= 16 { Priority::Now } else { Priority::Background };
            self.write_derived(priority, write).await?;
        }
        Ok(())
    }

    /// Scores in the history alone, as [`SqliteStore::put_scores`] writes them there.
    pub(crate) async fn put_history(&self, ws: &WorkspaceId, scores: &[AccountScore]) -> Result<()> {
        for chunk in scores.chunks(SCORES_PER_WRITE) {
            let (ws, chunk) = (ws.clone(), chunk.to_vec());
            let write = move |conn: &rusqlite::Connection| write_history(conn, &ws, &chunk);
            self.write_derived(Priority::Background, write).await?;
        }
        Ok(())
    }

    /// One account's score and its alerts, in one job of the writer: one commit, which
    /// does not wait for the disk (both are derived, and made again by the next rescore).
    pub(crate) async fn put_one_score(
        &self,
        ws: &WorkspaceId,
        score: &AccountScore,
        signals: &[AlertSignal],
        at: Timestamp,
    ) -> Result<AlertSync> {
        let (ws, score, signals) = (ws.clone(), score.clone(), signals.to_vec());
        self.write_derived(Priority::Now, move |conn| {
            write_scores(conn, &ws, std::slice::from_ref(&score))?;
            sync_on(conn, &ws, Some(std::slice::from_ref(&score.account_id)), &signals, at)
        })
        .await
    }

    /// What rescoring one account reads, on one reader connection.
    pub(crate) async fn records_of(
        &self,
        ws: &WorkspaceId,
        id: &AccountId,
        usage: (NaiveDate, NaiveDate),
        scores: (NaiveDate, NaiveDate),
    ) -> Result<AccountRecords> {
        let n = self.ws_number(ws).await?;
        let (ws, id) = (ws.clone(), id.clone());
        self.read(move |conn| {
            Ok(AccountRecords {
                account: crate::reads::account_on(conn, &ws, &id)?,
                subscriptions: crate::records::subscriptions_on(conn, &ws, &id)?,
                tickets: crate::records::tickets_on(conn, &ws, &id)?,
                usage: match n {
                    Some(n) => crate::usage::usage_rows_on(conn, n, Some(id.as_str()), usage.0, usage.1)?,
                    None => Vec::new(),
                },
                scores: history_on(conn, &ws, &id, scores.0, scores.1)?,
            })
        })
        .await
    }

    pub(crate) async fn score_of(&self, ws: &WorkspaceId, id: &AccountId) -> Result<Option<AccountScore>> {
        let (ws, id) = (ws.clone(), id.clone());
        self.read(move |conn| {
            let found = conn
                .prepare_cached(&format!(
                    "SELECT {POINT_COLUMNS}, explanation, scored_at FROM account_scores
                     WHERE workspace_id = ?1 AND account_id = ?2"
                ))
                .map_err(sql_error)?
                .query_row(params![ws.as_str(), id.as_str()], |r| {
                    Ok((point(r, 0)?, r.get::<_, String>(10)?, r.get::<_, i64>(11)?))
                })
                .optional()
                .map_err(sql_error)?;
            let Some((p, explanation, scored_at)) = found else { return Ok(None) };
            let p = p?;
            Ok(Some(AccountScore {
                account_id: id,
                day: p.day,
                health: p.health,
                band: p.band,
                churn_30d: p.churn_30d,
                churn_60d: p.churn_60d,
                churn_90d: p.churn_90d,
                expansion: p.expansion,
                mrr: p.mrr,
                components: p.components,
                explanation: store::JsonText::new(explanation),
                scored_at: time(scored_at),
            }))
        })
        .await
    }

    pub(crate) async fn history_of(
        &self,
        ws: &WorkspaceId,
        id: &AccountId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<ScorePoint>> {
        let (ws, id) = (ws.clone(), id.clone());
        self.read(move |conn| history_on(conn, &ws, &id, from, to)).await
    }

    pub(crate) async fn count_scored_accounts(
        &self,
        ws: &WorkspaceId,
        q: &AccountQuery,
        at_most: Option<u64>,
    ) -> Result<u64> {
        let (sql, args) = accounts_count_query(ws, q, at_most);
        self.read(move |conn| {
            let n: i64 = conn
                .prepare_cached(&sql)
                .map_err(sql_error)?
                .query_row(params_from_iter(args), |r| r.get(0))
                .map_err(sql_error)?;
            Ok(n as u64)
        })
        .await
    }

    pub(crate) async fn scored_accounts(
        &self,
        ws: &WorkspaceId,
        q: &AccountQuery,
        page: &PageRequest,
    ) -> Result<Page<ScoredAccount>> {
        let (sql, args) = accounts_page_query(ws, q, page)?;
        let (q, page) = (q.clone(), page.clone());
        self.read(move |conn| {
            let rows = query(
                conn,
                &sql,
                params_from_iter(args),
                |r| Ok((account_row(r)?, summary(r, 6)?)),
                |(a, s)| Ok(ScoredAccount { account: to_account(a)?, score: s? }),
            )?;
            Ok(page.finish(rows, |a| match (&a.score, q.sort) {
                (Some(s), sort) if sort != AccountSort::Id => {
                    Cursor(vec![q.sort_value(s).to_string(), a.account.account_id.to_string()])
                }
                _ => Cursor(vec![a.account.account_id.to_string()]),
            }))
        })
        .await
    }

    pub(crate) async fn add_model(&self, ws: &WorkspaceId, m: &ModelRecord) -> Result<()> {
        let (ws, m) = (ws.clone(), m.clone());
        self.write(move |conn| {
            if m.status == store::ModelStatus::Active {
                conn.execute(
                    "UPDATE models SET status = 'retired' WHERE workspace_id = ?1 AND kind = ?2 AND status = 'active'",
                    params![ws.as_str(), m.kind.as_str()],
                )
                .map_err(sql_error)?;
            }
            conn.execute(
                &format!(
                    "INSERT INTO models (workspace_id, {MODEL_COLUMNS}, model) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params![
                    ws.as_str(),
                    m.model_id,
                    m.kind.as_str(),
                    m.status.as_str(),
                    ms(&m.created_at),
                    m.card.to_string(),
                    m.reason,
                    m.model.as_ref().map(|v| v.to_string()),
                ],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn models(&self, ws: &WorkspaceId) -> Result<Vec<ModelRecord>> {
        let ws = ws.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {MODEL_COLUMNS} FROM models WHERE workspace_id = ?1 ORDER BY created_at DESC, model_id DESC"
                ))
                .map_err(sql_error)?;
            let rows = stmt.query_map([ws.as_str()], |r| model(r, false)).map_err(sql_error)?;
            rows.map(|r| r.map_err(sql_error)?).collect()
        })
        .await
    }

    pub(crate) async fn active(&self, ws: &WorkspaceId, kind: ModelKind) -> Result<Option<ModelRecord>> {
        let ws = ws.clone();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {MODEL_COLUMNS}, model FROM models WHERE workspace_id = ?1 AND kind = ?2 AND status = 'active'"
            ))
            .map_err(sql_error)?
            .query_row(params![ws.as_str(), kind.as_str()], |r| model(r, true))
            .optional()
            .map_err(sql_error)?
            .transpose()
        })
        .await
    }

    pub(crate) async fn sync(
        &self,
        ws: &WorkspaceId,
        scope: AlertScope<'_>,
        signals: &[AlertSignal],
        at: Timestamp,
    ) -> Result<AlertSync> {
        let ws = ws.clone();
        let signals = signals.to_vec();
        let accounts: Option<Vec<AccountId>> = match scope {
            AlertScope::Workspace => None,
            AlertScope::Accounts(ids) => Some(ids.to_vec()),
        };
        self.write(move |conn| sync_on(conn, &ws, accounts.as_deref(), &signals, at)).await
    }

    pub(crate) async fn alerts(&self, ws: &WorkspaceId, f: &AlertFilter, page: &PageRequest) -> Result<Page<Alert>> {
        let (ws, f, page) = (ws.clone(), f.clone(), page.clone());
        self.read(move |conn| {
            let (sql, args) = alerts_query(&ws, &f, &page)?;
            let rows = query(conn, &sql, params_from_iter(args), alert, |a| a)?;
            Ok(page.finish(rows, |a| Cursor(vec![ms(&a.opened_at).to_string(), a.alert_id.clone()])))
        })
        .await
    }

    pub(crate) async fn alert(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Alert>> {
        let (ws, id) = (ws.clone(), id.to_owned());
        self.read(move |conn| get_alert(conn, ws.as_str(), &id)).await
    }

    pub(crate) async fn act_on_alert(
        &self,
        ws: &WorkspaceId,
        id: &str,
        action: &AlertAction,
        by: &str,
        at: Timestamp,
    ) -> Result<Option<Alert>> {
        let (ws, id, action, by) = (ws.clone(), id.to_owned(), action.clone(), by.to_owned());
        self.write(move |conn| {
            let now = ms(&at);
            let (sql, extra): (&str, Vec<Sql>) = match &action {
                AlertAction::Acknowledge => (
                    "UPDATE alerts SET status = 'acknowledged', acknowledged_at = ?3, acknowledged_by = ?4, updated_at = ?3
                     WHERE workspace_id = ?1 AND alert_id = ?2 AND status = 'open'",
                    vec![],
                ),
                AlertAction::Resolve => (
                    "UPDATE alerts SET status = 'resolved', resolved_at = ?3, resolved_by = ?4, updated_at = ?3
                     WHERE workspace_id = ?1 AND alert_id = ?2 AND status <> 'resolved'",
                    vec![],
                ),
                AlertAction::Feedback { useful, note } => (
                    "UPDATE alerts SET useful = ?5, feedback = ?6, feedback_by = ?4, updated_at = ?3
                     WHERE workspace_id = ?1 AND alert_id = ?2",
                    vec![Sql::Integer(*useful as i64), note.clone().map_or(Sql::Null, Sql::Text)],
                ),
            };
            let mut args = vec![Sql::Text(ws.as_str().into()), Sql::Text(id.clone()), Sql::Integer(now), Sql::Text(by)];
            args.extend(extra);
            conn.execute(sql, params_from_iter(args)).map_err(sql_error)?;
            get_alert(conn, ws.as_str(), &id)
        })
        .await
    }

    /// Each account's latest point on or before `day`; with `components` false, the points
    /// carry none (`Null`), neither read nor parsed.
    pub(crate) async fn points_as_of(
        &self,
        ws: &WorkspaceId,
        day: NaiveDate,
        components: bool,
    ) -> Result<Vec<(AccountId, ScorePoint)>> {
        let ws = ws.clone();
        self.read(move |conn| {
            if !components {
                // One snapshot for the latest scores and the history searched for the rest.
                let tx = conn.unchecked_transaction().map_err(sql_error)?;
                if let Some(points) = headlines_from_latest(&tx, &ws, day)? {
                    return Ok(points);
                }
            }
            let mut stmt = conn.prepare_cached(&points_as_of_sql(components)).map_err(sql_error)?;
            let rows = stmt
                .query_map(params![ws.as_str(), day.to_string()], |r| Ok((r.get::<_, String>(0)?, point(r, 1)?)))
                .map_err(sql_error)?;
            rows.map(|r| {
                let (id, p) = r.map_err(sql_error)?;
                Ok((account_id(id)?, p?))
            })
            .collect()
        })
        .await
    }

    pub(crate) async fn setting(&self, ws: &WorkspaceId, key: &str) -> Result<Option<serde_json::Value>> {
        let (ws, key) = (ws.clone(), key.to_owned());
        self.read(move |conn| {
            let v: Option<String> = conn
                .prepare_cached("SELECT value FROM workspace_settings WHERE workspace_id = ?1 AND key = ?2")
                .map_err(sql_error)?
                .query_row(params![ws.as_str(), key], |r| r.get(0))
                .optional()
                .map_err(sql_error)?;
            Ok(v.map(|v| json_col(&v)))
        })
        .await
    }

    pub(crate) async fn set_setting(
        &self,
        ws: &WorkspaceId,
        key: &str,
        value: &serde_json::Value,
        at: Timestamp,
    ) -> Result<()> {
        let (ws, key, value) = (ws.clone(), key.to_owned(), value.to_string());
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO workspace_settings (workspace_id, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (workspace_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![ws.as_str(), key, value, ms(&at)],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }
}

impl SqliteStore {
    /// One entry of an object-valued setting, set or removed on the writer: the read and the
    /// write are one step.
    pub(crate) async fn set_setting_entry(
        &self,
        ws: &WorkspaceId,
        key: &str,
        name: &str,
        value: Option<&serde_json::Value>,
        at: Timestamp,
    ) -> Result<bool> {
        let (ws, key, name, value) = (ws.clone(), key.to_owned(), name.to_owned(), value.cloned());
        self.write(move |conn| {
            let current: Option<String> = conn
                .prepare_cached("SELECT value FROM workspace_settings WHERE workspace_id = ?1 AND key = ?2")
                .map_err(sql_error)?
                .query_row(params![ws.as_str(), key], |r| r.get(0))
                .optional()
                .map_err(sql_error)?;
            let (entries, existed) = store::with_setting_entry(current.map(|v| json_col(&v)), &name, value.as_ref());
            if value.is_none() && !existed {
                // Nothing to remove: nothing written.
                return Ok(false);
            }
            conn.prepare_cached(
                "INSERT INTO workspace_settings (workspace_id, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (workspace_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .map_err(sql_error)?
            .execute(params![ws.as_str(), key, serde_json::Value::Object(entries).to_string(), ms(&at)])
            .map_err(sql_error)?;
            Ok(existed)
        })
        .await
    }

    /// Forgets the changes up to `through.seq` that happened before `before`, in the
    /// background.
    pub(crate) async fn prune_changes(
        &self,
        ws: &WorkspaceId,
        through: store::LogPosition,
        before: Timestamp,
    ) -> Result<u64> {
        let ws = ws.clone();
        self.write_background(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM account_changes WHERE workspace_id = ?1 AND seq <= ?2 AND at < ?3")
                .map_err(sql_error)?
                .execute(params![ws.as_str(), through.seq, ms(&before)])
                .map_err(sql_error)?;
            Ok(n as u64)
        })
        .await
    }

    /// Band changes and alerts opened after `after` (its `tx` is always 0 here).
    pub(crate) async fn changes_after(
        &self,
        ws: &WorkspaceId,
        after: store::LogPosition,
        limit: usize,
    ) -> Result<Vec<store::AccountChange>> {
        let ws = ws.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, account_id, at, band_from, band_to, day, alert_id, alert_kind, alert_reason
                     FROM account_changes WHERE workspace_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![ws.as_str(), after.seq, limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, Option<String>>(8)?,
                    ))
                })
                .map_err(sql_error)?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, account_id, at, from, to, day_s, alert_id, kind, reason) = row.map_err(sql_error)?;
                let what = match (to, day_s, alert_id) {
                    (Some(to), Some(d), _) => store::AccountChangeKind::Band {
                        from: from.map(parse_col).transpose()?,
                        to: parse_col(to)?,
                        day: day(d)?,
                    },
                    (_, _, Some(alert_id)) => store::AccountChangeKind::AlertOpened {
                        alert_id,
                        kind: kind.unwrap_or_default(),
                        reason: reason.unwrap_or_default(),
                    },
                    _ => return Err(StoreError::Backend(format!("account change {seq} says neither band nor alert"))),
                };
                out.push(store::AccountChange {
                    position: store::LogPosition { tx: 0, seq },
                    account_id,
                    at: time(at),
                    what,
                });
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An account's alerts are found through the account's index, whatever else is asked.
    #[tokio::test]
    async fn an_accounts_alerts_are_read_through_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_in_dir(dir.path()).unwrap();
        let ws = WorkspaceId::parse("ws_plan").unwrap();
        let f =
            AlertFilter { account_id: Some(AccountId::parse("acme").unwrap()), unresolved: true, ..Default::default() };
        let (sql, args) = alerts_query(&ws, &f, &PageRequest::first(store::MAX_LIMIT)).unwrap();
        let plan = store
            .read(move |conn| {
                let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).map_err(sql_error)?;
                let rows = stmt.query_map(params_from_iter(args), |r| r.get::<_, String>(3)).map_err(sql_error)?;
                rows.map(|r| r.map_err(sql_error)).collect::<Result<Vec<String>>>()
            })
            .await
            .unwrap();
        assert!(
            plan.iter()
                .any(|l| l.starts_with("SEARCH alerts USING INDEX alerts_account (workspace_id=? AND account_id=?)")),
            "{plan:?}"
        );
        store.close();
    }

    /// What SQLite plans for a segment's list of accounts and its count: the segment's
    /// members through their own index, never its rows of subjects that are not members, nor
    /// every account of the workspace.
    #[tokio::test]
    async fn a_segments_accounts_are_read_from_its_members() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_in_dir(dir.path()).unwrap();
        let ws = WorkspaceId::parse("ws_plan").unwrap();
        let plan_of = |(sql, args): (String, Vec<Sql>)| {
            store.read(move |conn| {
                let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).map_err(sql_error)?;
                let rows = stmt.query_map(params_from_iter(args), |r| r.get::<_, String>(3)).map_err(sql_error)?;
                rows.map(|r| r.map_err(sql_error)).collect::<Result<Vec<String>>>()
            })
        };
        let members = "SEARCH m USING COVERING INDEX segment_members_of (workspace_id=? AND segment_id=?";
        let in_segment = AccountQuery { segment: Some("seg_1".into()), ..Default::default() };
        let mut deep = PageRequest::first(50);
        deep.after = Some(Cursor(vec!["acct_050000".into()]));
        let mut backwards = in_segment.clone();
        backwards.descending = true;
        let queries = [
            accounts_page_query(&ws, &in_segment, &PageRequest::first(50)).unwrap(),
            accounts_page_query(&ws, &in_segment, &deep).unwrap(),
            accounts_page_query(&ws, &backwards, &deep).unwrap(),
            accounts_count_query(&ws, &in_segment, None),
            accounts_count_query(
                &ws,
                &AccountQuery { band: Some(store::HealthBand::AtRisk), ..in_segment.clone() },
                None,
            ),
            accounts_count_query(&ws, &AccountQuery { plan: Some("team".into()), ..in_segment.clone() }, Some(1000)),
        ];
        for (sql, args) in queries {
            let plan = plan_of((sql.clone(), args)).await.unwrap();
            assert!(plan.iter().any(|l| l.starts_with(members)), "{sql}\n{plan:?}");
            assert!(!plan.iter().any(|l| l.contains("TEMP B-TREE")), "no sort: {sql}\n{plan:?}");
            let scans = plan.iter().filter(|l| l.starts_with("SCAN") && !l.starts_with("SCAN (subquery"));
            assert_eq!(scans.count(), 0, "no table walked whole: {sql}\n{plan:?}");
        }
        store.close();
    }

    /// What SQLite plans for scoring's look-up of past scores: the history is searched by
    /// account and day, never walked whole (on a new database as on a large one: the plan
    /// takes no statistics, which Steward does not gather).
    #[tokio::test]
    async fn past_scores_are_looked_up_one_account_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_in_dir(dir.path()).unwrap();
        for components in [true, false] {
            let plan = store
                .read(move |conn| {
                    let sql = format!("EXPLAIN QUERY PLAN {}", points_as_of_sql(components));
                    let mut stmt = conn.prepare(&sql).map_err(sql_error)?;
                    let rows =
                        stmt.query_map(params!["ws", "2026-10-01"], |r| r.get::<_, String>(3)).map_err(sql_error)?;
                    rows.map(|r| r.map_err(sql_error)).collect::<Result<Vec<String>>>()
                })
                .await
                .unwrap();
            let at = |line: &str| plan.iter().position(|l| l == line);
            let (accounts, seek) =
                (at("SCAN s"), at("SEARCH h USING PRIMARY KEY (workspace_id=? AND account_id=? AND day=?)"));
            assert!(
                matches!((accounts, seek), (Some(a), Some(h)) if a < h),
                "the accounts lead, then a seek: {plan:?}"
            );
        }
        store.close();
    }
}
