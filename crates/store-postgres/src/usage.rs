//! The daily usage rollups (`usage_months`): applying a slice's usage, making a merged
//! person's days the survivor's, and reading days back. The arithmetic is `store::usage`'s.

use chrono::NaiveDate;
use domain::{AccountId, WorkspaceId};
use sqlx::PgConnection;
use std::collections::HashMap;
use store::usage::{UsageMonth, UsageRowKey, apply_usage, days_of, month_of, people_needing_memberships, usage_rows};
use store::{DailyUsage, Result, StoreError, Usage, UsageRow};

use crate::{PgStore, account_id, db_error};

fn corrupt(account: &str) -> StoreError {
    StoreError::Backend(format!("a usage row of account {account:?} is damaged"))
}

/// Writes rows, one statement for all.
async fn write_rows(
    conn: &mut PgConnection,
    ws: &WorkspaceId,
    rows: Vec<(String, String, i32, Vec<u8>)>,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let (mut accounts, mut metrics, mut months, mut data) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (a, m, mo, d) in rows {
        accounts.push(a);
        metrics.push(m);
        months.push(mo);
        data.push(d);
    }
    sqlx::query(
        "INSERT INTO usage_months (workspace_id, account_id, metric, month, data)
         SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::int[], $5::bytea[])
         ON CONFLICT (workspace_id, account_id, metric, month) DO UPDATE SET data = excluded.data",
    )
    .bind(ws.as_str())
    .bind(accounts)
    .bind(metrics)
    .bind(months)
    .bind(data)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// The accounts of each person whose unnamed events `usage` credits, as they were before the
/// slice: read before the slice's own changes.
pub(crate) async fn memberships_before(
    conn: &mut PgConnection,
    ws: &WorkspaceId,
    usage: &[Usage],
) -> Result<HashMap<String, Vec<AccountId>>> {
    let people = people_needing_memberships(usage);
    let mut memberships: HashMap<String, Vec<AccountId>> = HashMap::new();
    if people.is_empty() {
        return Ok(memberships);
    }
    let found: Vec<(String, String)> = sqlx::query_as(
        "SELECT person_id, account_id FROM memberships WHERE workspace_id = $1 AND person_id = ANY($2)
         ORDER BY person_id, account_id",
    )
    .bind(ws.as_str())
    .bind(&people)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    for (person, account) in found {
        memberships.entry(person).or_default().push(account_id(&account)?);
    }
    Ok(memberships)
}

/// Adds a slice's usage to the rollups, inside the slice's transaction: one read and one write
/// for all the rows it touches.
pub(crate) async fn apply(
    conn: &mut PgConnection,
    ws: &WorkspaceId,
    usage: &[Usage],
    memberships: &HashMap<String, Vec<AccountId>>,
) -> Result<()> {
    if usage.is_empty() {
        return Ok(());
    }
    let keys = usage_rows(usage, memberships);
    if keys.is_empty() {
        return Ok(());
    }
    let accounts: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let metrics: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let months: Vec<i32> = keys.iter().map(|k| k.2).collect();
    let stored: Vec<(String, String, i32, Vec<u8>)> = sqlx::query_as(
        "SELECT u.account_id, u.metric, u.month, u.data FROM usage_months u
         JOIN UNNEST($2::text[], $3::text[], $4::int[]) AS k (account_id, metric, month)
           ON u.account_id = k.account_id AND u.metric = k.metric AND u.month = k.month
         WHERE u.workspace_id = $1",
    )
    .bind(ws.as_str())
    .bind(&accounts)
    .bind(&metrics)
    .bind(&months)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let mut rows: HashMap<UsageRowKey, UsageMonth> = HashMap::new();
    for (account, metric, month, data) in stored {
        let row = UsageMonth::decode(&data).ok_or_else(|| corrupt(&account))?;
        rows.insert((account_id(&account)?, metric, month), row);
    }
    let changed = apply_usage(usage, memberships, &mut rows);
    let out = changed.into_iter().map(|k| {
        let data = rows[&k].encode();
        (k.0.as_str().to_owned(), k.1, k.2, data)
    });
    write_rows(conn, ws, out.collect()).await
}

/// Makes person `from`'s active days person `into`'s, in the rows of `into`'s accounts
/// (which hold `from`'s by now).
pub(crate) async fn merge(conn: &mut PgConnection, ws: &WorkspaceId, from: &str, into: &str) -> Result<()> {
    let stored: Vec<(String, String, i32, Vec<u8>)> = sqlx::query_as(
        "SELECT account_id, metric, month, data FROM usage_months
         WHERE workspace_id = $1
           AND account_id IN (SELECT account_id FROM memberships WHERE workspace_id = $1 AND person_id = $2)",
    )
    .bind(ws.as_str())
    .bind(into)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let mut changed = Vec::new();
    for (account, metric, month, data) in stored {
        let mut row = UsageMonth::decode(&data).ok_or_else(|| corrupt(&account))?;
        if row.merge_person(from, into) {
            changed.push((account, metric, month, row.encode()));
        }
    }
    write_rows(conn, ws, changed).await
}

impl PgStore {
    /// The days of `account` in `[from, to)`.
    pub(crate) async fn usage_of(
        &self,
        ws: &WorkspaceId,
        account: &AccountId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyUsage>> {
        let (first, last) = (month_of(from), month_of(to));
        let rows: Vec<(String, i32, Vec<u8>)> = sqlx::query_as(
            "SELECT metric, month, data FROM usage_months
             WHERE workspace_id = $1 AND account_id = $2 AND month BETWEEN $3 AND $4 ORDER BY metric, month",
        )
        .bind(ws.as_str())
        .bind(account.as_str())
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut out = Vec::new();
        for (metric, month, data) in rows {
            let row = UsageMonth::decode(&data).ok_or_else(|| corrupt(account.as_str()))?;
            out.extend(days_of(account, &metric, month, &row, from, to));
        }
        Ok(out)
    }

    /// Every account's monthly rows for the months holding `[from, to)`.
    /// Each account's rows for the months holding its own range, in one query.
    pub(crate) async fn usage_rows_each(
        &self,
        ws: &WorkspaceId,
        ranges: &[(AccountId, NaiveDate, NaiveDate)],
    ) -> Result<Vec<UsageRow>> {
        let ids: Vec<&str> = ranges.iter().map(|r| r.0.as_str()).collect();
        let firsts: Vec<i32> = ranges.iter().map(|r| month_of(r.1)).collect();
        let lasts: Vec<i32> = ranges.iter().map(|r| month_of(r.2)).collect();
        let rows: Vec<(String, String, i32, Vec<u8>)> = sqlx::query_as(
            "SELECT u.account_id, u.metric, u.month, u.data
             FROM UNNEST($2::text[], $3::int4[], $4::int4[]) AS r (a, f, l)
             JOIN usage_months u ON u.workspace_id = $1 AND u.account_id = r.a AND u.month BETWEEN r.f AND r.l
             ORDER BY u.account_id, u.metric, u.month",
        )
        .bind(ws.as_str())
        .bind(&ids)
        .bind(&firsts)
        .bind(&lasts)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|(id, metric, month, data)| {
                let row = UsageMonth::decode(&data).ok_or_else(|| corrupt(&id))?;
                Ok(UsageRow::new(account_id(&id)?, metric, month, &row))
            })
            .collect()
    }

    pub(crate) async fn usage_rows(
        &self,
        ws: &WorkspaceId,
        account: Option<&AccountId>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<UsageRow>> {
        let (first, last) = (month_of(from), month_of(to));
        let rows: Vec<(String, String, i32, Vec<u8>)> = sqlx::query_as(
            "SELECT account_id, metric, month, data FROM usage_months
             WHERE workspace_id = $1 AND month BETWEEN $2 AND $3 AND ($4::text IS NULL OR account_id = $4)
             ORDER BY account_id, metric, month",
        )
        .bind(ws.as_str())
        .bind(first)
        .bind(last)
        .bind(account.map(|a| a.as_str()))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|(id, metric, month, data)| {
                let row = UsageMonth::decode(&data).ok_or_else(|| corrupt(&id))?;
                Ok(UsageRow::new(account_id(&id)?, metric, month, &row))
            })
            .collect()
    }
}
