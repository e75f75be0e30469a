//! The portfolio aggregated for the overview (see `store::portfolio`).

use chrono::NaiveDate;
use domain::{Currency, WorkspaceId};
use rusqlite::{Connection, params};
use store::{BandChange, HealthBand, Portfolio, PortfolioDay, Result, ScoreGroup, StoreError};

use crate::{SqliteStore, parse_col, sql_error};

type GroupRow = (Option<String>, String, i64, Option<String>, i64, i64, i64);

fn group(row: GroupRow) -> Result<ScoreGroup> {
    let (day, band, bucket, currency, accounts, mrr, expansion_mrr) = row;
    Ok(ScoreGroup {
        day: day.map(|d| d.parse::<NaiveDate>().map_err(|e| StoreError::Backend(e.to_string()))).transpose()?,
        band: parse_col(band)?,
        bucket: bucket.clamp(0, 9) as u8,
        currency: currency.map(|c| Currency::parse(&c).map_err(|e| StoreError::Backend(e.to_string()))).transpose()?,
        accounts: accounts as u64,
        mrr,
        expansion_mrr,
    })
}

fn groups(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<ScoreGroup>> {
    let mut stmt = conn.prepare_cached(sql).map_err(sql_error)?;
    let rows = stmt
        .query_map(params, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
        .map_err(sql_error)?;
    rows.map(|r| group(r.map_err(sql_error)?)).collect()
}

fn count(conn: &Connection, sql: &str, ws: &str) -> Result<u64> {
    let n: i64 = conn.prepare_cached(sql).map_err(sql_error)?.query_row([ws], |r| r.get(0)).map_err(sql_error)?;
    Ok(n as u64)
}

impl SqliteStore {
    pub(crate) async fn portfolio_of(&self, ws: &WorkspaceId, compare_day: NaiveDate) -> Result<Portfolio> {
        let ws = ws.clone();
        self.read(move |conn| {
            let mut p = Portfolio::from_groups(&groups(
                conn,
                "SELECT NULL, band, bucket, nullif(currency, ''), accounts, mrr_minor, expansion_mrr
                 FROM portfolio_now WHERE workspace_id = ?1 AND accounts <> 0",
                params![ws.as_str()],
            )?);
            p.open_alerts = count(
                conn,
                "SELECT count(*) FROM alerts WHERE workspace_id = ?1 AND status <> 'resolved'",
                ws.as_str(),
            )?;
            p.open_tasks =
                count(conn, "SELECT count(*) FROM tasks WHERE workspace_id = ?1 AND status = 'open'", ws.as_str())?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT s.account_id, json_extract(a.traits, '$.name'), s.band_from, s.band, s.health
                     FROM account_scores s
                     LEFT JOIN accounts a ON a.workspace_id = s.workspace_id AND a.account_id = s.account_id
                     WHERE s.workspace_id = ?1 AND s.band_since > ?2 AND s.band_from <> s.band
                     ORDER BY s.health, s.account_id LIMIT 100",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![ws.as_str(), compare_day.to_string()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, f64>(4)?,
                    ))
                })
                .map_err(sql_error)?;
            for r in rows {
                let (id, name, from, to, health) = r.map_err(sql_error)?;
                p.band_changes.push(BandChange {
                    account_id: domain::AccountId::parse(&id).map_err(|e| StoreError::Backend(e.to_string()))?,
                    name,
                    from: parse_col::<HealthBand>(from)?,
                    to: parse_col::<HealthBand>(to)?,
                    health,
                });
            }
            Ok(p)
        })
        .await
    }

    pub(crate) async fn portfolio_days(
        &self,
        ws: &WorkspaceId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<PortfolioDay>> {
        let ws = ws.clone();
        self.read(move |conn| {
            let groups = groups(
                conn,
                "SELECT day, band, 0, nullif(currency, ''), accounts, mrr_minor, expansion_mrr
                 FROM portfolio_days WHERE workspace_id = ?1 AND day >= ?2 AND day < ?3 AND accounts <> 0",
                params![ws.as_str(), from.to_string(), to.to_string()],
            )?;
            Ok(PortfolioDay::from_groups(&groups))
        })
        .await
    }
}
