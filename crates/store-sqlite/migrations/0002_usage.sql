-- Daily usage rollups (store::usage): one row per account, metric and calendar month
-- (months since 1970-01), holding 31 day slots of events and each active person's days.
CREATE TABLE usage_months (
    ws INTEGER NOT NULL,
    account_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    month INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (ws, account_id, metric, month)
) WITHOUT ROWID;
