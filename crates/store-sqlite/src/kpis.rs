//! The CS KPIs as last computed (see `store::kpis`).

use chrono::NaiveDate;
use domain::{Currency, WorkspaceId};
use rusqlite::{OptionalExtension, params};
use store::{KpiMonth, KpiReport, Result, StoreError};

use crate::{SqliteStore, ms, parse_col, sql_error, time};

impl SqliteStore {
    pub(crate) async fn replace_kpis(&self, ws: &WorkspaceId, report: &KpiReport) -> Result<()> {
        let (ws, report) = (ws.clone(), report.clone());
        self.write(move |conn| {
            conn.execute("DELETE FROM kpi_months WHERE workspace_id = ?1", [ws.as_str()]).map_err(sql_error)?;
            let mut insert = conn
                .prepare_cached(
                    "INSERT INTO kpi_months (workspace_id, kpi, month, numerator, denominator) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sql_error)?;
            for m in &report.months {
                insert
                    .execute(params![ws.as_str(), m.kpi.as_str(), m.month.to_string(), m.numerator, m.denominator])
                    .map_err(sql_error)?;
            }
            conn.execute(
                "INSERT INTO kpi_reports (workspace_id, currency, computed_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (workspace_id) DO UPDATE SET currency = excluded.currency, computed_at = excluded.computed_at",
                params![ws.as_str(), report.currency.map(|c| c.as_str().to_owned()), ms(&report.computed_at)],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn kpi_report(&self, ws: &WorkspaceId) -> Result<Option<KpiReport>> {
        let ws = ws.clone();
        self.read(move |conn| {
            let head: Option<(Option<String>, i64)> = conn
                .prepare_cached("SELECT currency, computed_at FROM kpi_reports WHERE workspace_id = ?1")
                .map_err(sql_error)?
                .query_row([ws.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(sql_error)?;
            let Some((currency, computed_at)) = head else { return Ok(None) };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT kpi, month, numerator, denominator FROM kpi_months WHERE workspace_id = ?1 ORDER BY kpi, month",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map([ws.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, f64>(2)?, r.get::<_, f64>(3)?))
                })
                .map_err(sql_error)?;
            let mut months = Vec::new();
            for row in rows {
                let (kpi, month, numerator, denominator) = row.map_err(sql_error)?;
                months.push(KpiMonth {
                    kpi: parse_col(kpi)?,
                    month: month.parse::<NaiveDate>().map_err(|e| StoreError::Backend(e.to_string()))?,
                    numerator,
                    denominator,
                });
            }
            let currency =
                currency.map(|c| Currency::parse(&c).map_err(|e| StoreError::Backend(e.to_string()))).transpose()?;
            Ok(Some(KpiReport { computed_at: time(computed_at), currency, months }))
        })
        .await
    }
}
