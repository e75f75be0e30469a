-- Daily usage rollups (store::usage): one row per account, metric and calendar month
-- (months since 1970-01), holding 31 day slots of events and each active person's days.
CREATE TABLE usage_months (
    workspace_id text COLLATE "C" NOT NULL REFERENCES workspaces (workspace_id),
    account_id text COLLATE "C" NOT NULL,
    metric text COLLATE "C" NOT NULL,
    month integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (workspace_id, account_id, metric, month)
);
