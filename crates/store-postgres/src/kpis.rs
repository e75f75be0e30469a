//! The CS KPIs as last computed (see `store::kpis`).

use chrono::{DateTime, NaiveDate, Utc};
use domain::{Currency, WorkspaceId};
use store::{KpiMonth, KpiReport, Result, StoreError};

use crate::{PgStore, db_error, parse_col};

impl PgStore {
    pub(crate) async fn replace_kpis(&self, ws: &WorkspaceId, report: &KpiReport) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query("DELETE FROM kpi_months WHERE workspace_id = $1")
            .bind(ws.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let kpis: Vec<&str> = report.months.iter().map(|m| m.kpi.as_str()).collect();
        let months: Vec<NaiveDate> = report.months.iter().map(|m| m.month).collect();
        let nums: Vec<f64> = report.months.iter().map(|m| m.numerator).collect();
        let dens: Vec<f64> = report.months.iter().map(|m| m.denominator).collect();
        sqlx::query(
            "INSERT INTO kpi_months (workspace_id, kpi, month, numerator, denominator)
             SELECT $1, k, m, n, d FROM UNNEST($2::text[], $3::date[], $4::float8[], $5::float8[]) AS u (k, m, n, d)",
        )
        .bind(ws.as_str())
        .bind(&kpis)
        .bind(&months)
        .bind(&nums)
        .bind(&dens)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO kpi_reports (workspace_id, currency, computed_at) VALUES ($1, $2, $3)
             ON CONFLICT (workspace_id) DO UPDATE SET currency = excluded.currency, computed_at = excluded.computed_at",
        )
        .bind(ws.as_str())
        .bind(report.currency.map(|c| c.as_str().to_owned()))
        .bind(report.computed_at)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    pub(crate) async fn kpi_report(&self, ws: &WorkspaceId) -> Result<Option<KpiReport>> {
        let head: Option<(Option<String>, DateTime<Utc>)> =
            sqlx::query_as("SELECT currency, computed_at FROM kpi_reports WHERE workspace_id = $1")
                .bind(ws.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
        let Some((currency, computed_at)) = head else { return Ok(None) };
        let rows: Vec<(String, NaiveDate, f64, f64)> = sqlx::query_as(
            "SELECT kpi, month, numerator, denominator FROM kpi_months WHERE workspace_id = $1 ORDER BY kpi, month",
        )
        .bind(ws.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let months = rows
            .into_iter()
            .map(|(kpi, month, numerator, denominator)| {
                Ok(KpiMonth { kpi: parse_col(&kpi)?, month, numerator, denominator })
            })
            .collect::<Result<Vec<_>>>()?;
        let currency =
            currency.map(|c| Currency::parse(&c).map_err(|e| StoreError::Backend(e.to_string()))).transpose()?;
        Ok(Some(KpiReport { computed_at, currency, months }))
    }
}
