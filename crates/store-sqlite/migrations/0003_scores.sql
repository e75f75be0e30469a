-- Scores, models and alerts (store::scores). Days are ISO dates ('2024-03-01'), which sort
-- as dates.

-- Each account's latest score, with its whole explanation.
CREATE TABLE account_scores (
    workspace_id TEXT NOT NULL,
    account_id   TEXT NOT NULL,
    day          TEXT NOT NULL,
    health       REAL NOT NULL,
    band         TEXT NOT NULL,
    churn_30d    REAL,
    churn_60d    REAL,
    churn_90d    REAL,
    expansion    REAL,
    mrr_minor    INTEGER,
    currency     TEXT,
    components   TEXT NOT NULL,
    explanation  TEXT NOT NULL,
    scored_at    INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, account_id)
) WITHOUT ROWID;
-- The accounts list sorts by these; a missing value sorts below every value.
CREATE INDEX account_scores_health ON account_scores (workspace_id, health, account_id);
CREATE INDEX account_scores_churn ON account_scores (workspace_id, coalesce(churn_30d, -1), account_id);
CREATE INDEX account_scores_expansion ON account_scores (workspace_id, coalesce(expansion, -1), account_id);
CREATE INDEX account_scores_mrr ON account_scores (workspace_id, coalesce(mrr_minor, -1), account_id);

-- One row per account and day scored: the headline numbers and each component's points.
CREATE TABLE score_history (
    workspace_id TEXT NOT NULL,
    account_id   TEXT NOT NULL,
    day          TEXT NOT NULL,
    health       REAL NOT NULL,
    band         TEXT NOT NULL,
    churn_30d    REAL,
    churn_60d    REAL,
    churn_90d    REAL,
    expansion    REAL,
    mrr_minor    INTEGER,
    currency     TEXT,
    components   TEXT NOT NULL,
    PRIMARY KEY (workspace_id, account_id, day)
) WITHOUT ROWID;

CREATE TABLE models (
    workspace_id TEXT NOT NULL,
    model_id     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    card         TEXT NOT NULL,
    reason       TEXT NOT NULL,
    model        TEXT,
    PRIMARY KEY (workspace_id, model_id)
);
CREATE UNIQUE INDEX models_active ON models (workspace_id, kind) WHERE status = 'active';

CREATE TABLE alerts (
    workspace_id    TEXT NOT NULL,
    alert_id        TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    kind            TEXT NOT NULL,
    reason          TEXT NOT NULL,
    severity        TEXT NOT NULL,
    title           TEXT NOT NULL,
    evidence        TEXT NOT NULL,
    status          TEXT NOT NULL,
    opened_at       INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    acknowledged_at INTEGER,
    acknowledged_by TEXT,
    resolved_at     INTEGER,
    resolved_by     TEXT,
    useful          INTEGER,
    feedback        TEXT,
    feedback_by     TEXT,
    PRIMARY KEY (workspace_id, alert_id)
);
-- One unresolved alert per account, kind and reason.
CREATE UNIQUE INDEX alerts_unresolved ON alerts (workspace_id, account_id, kind, reason) WHERE status <> 'resolved';
CREATE INDEX alerts_recent ON alerts (workspace_id, opened_at, alert_id);
CREATE INDEX alerts_account ON alerts (workspace_id, account_id, resolved_at);

-- A workspace's configuration: one JSON document per key (scoring, ...).
CREATE TABLE workspace_settings (
    workspace_id TEXT NOT NULL,
    key          TEXT NOT NULL,
    value        TEXT NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, key)
) WITHOUT ROWID;
