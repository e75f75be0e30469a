//! The portfolio aggregated for the overview (see `store::portfolio`).

use chrono::NaiveDate;
use domain::{Currency, WorkspaceId};
use sqlx::AssertSqlSafe;
use store::{BandChange, Portfolio, PortfolioDay, Result, ScoreGroup, StoreError};

use crate::{PgStore, account_id, db_error, parse_col};

type GroupRow = (Option<NaiveDate>, String, i32, Option<String>, i64, i64, i64);

fn group(row: GroupRow) -> Result<ScoreGroup> {
    let (day, band, bucket, currency, accounts, mrr, expansion_mrr) = row;
    Ok(ScoreGroup {
        day,
        band: parse_col(&band)?,
        bucket: bucket.clamp(0, 9) as u8,
        currency: currency.map(|c| Currency::parse(&c).map_err(|e| StoreError::Backend(e.to_string()))).transpose()?,
        accounts: accounts as u64,
        mrr,
        expansion_mrr,
    })
}

impl PgStore {
    pub(crate) async fn portfolio_of(&self, ws: &WorkspaceId, compare_day: NaiveDate) -> Result<Portfolio> {
        let rows: Vec<GroupRow> = sqlx::query_as(
            "SELECT NULL::date, band, bucket, nullif(currency, ''), accounts, mrr_minor, expansion_mrr
             FROM portfolio_now WHERE workspace_id = $1 AND accounts <> 0",
        )
        .bind(ws.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut p = Portfolio::from_groups(&rows.into_iter().map(group).collect::<Result<Vec<_>>>()?);
        let (alerts, tasks): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM alerts WHERE workspace_id = $1 AND status <> 'resolved'),
                    (SELECT count(*) FROM tasks WHERE workspace_id = $1 AND status = 'open')",
        )
        .bind(ws.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        (p.open_alerts, p.open_tasks) = (alerts as u64, tasks as u64);
        let changes: Vec<(String, Option<String>, String, String, f64)> = sqlx::query_as(AssertSqlSafe(
            "SELECT s.account_id, a.traits->>'name', s.band_from, s.band, s.health
             FROM account_scores s
             LEFT JOIN accounts a ON a.workspace_id = s.workspace_id AND a.account_id = s.account_id
             WHERE s.workspace_id = $1 AND s.band_since > $2 AND s.band_from <> s.band
             ORDER BY s.health, s.account_id LIMIT 100"
                .to_owned(),
        ))
        .bind(ws.as_str())
        .bind(compare_day)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        for (id, name, from, to, health) in changes {
            p.band_changes.push(BandChange {
                account_id: account_id(&id)?,
                name,
                from: parse_col(&from)?,
                to: parse_col(&to)?,
                health,
            });
        }
        Ok(p)
    }

    pub(crate) async fn portfolio_days(
        &self,
        ws: &WorkspaceId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<PortfolioDay>> {
        let rows: Vec<GroupRow> = sqlx::query_as(
            "SELECT day, band, 0, nullif(currency, ''), accounts, mrr_minor, expansion_mrr
             FROM portfolio_days WHERE workspace_id = $1 AND day >= $2 AND day < $3 AND accounts <> 0",
        )
        .bind(ws.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(PortfolioDay::from_groups(&rows.into_iter().map(group).collect::<Result<Vec<_>>>()?))
    }
}
