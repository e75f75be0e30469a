-- Scores, models and alerts (store::scores).

-- Each account's latest score, with its whole explanation.
CREATE TABLE account_scores (
    workspace_id text COLLATE "C" NOT NULL REFERENCES workspaces (workspace_id),
    account_id   text COLLATE "C" NOT NULL,
    day          date NOT NULL,
    health       double precision NOT NULL,
    band         text NOT NULL,
    churn_30d    double precision,
    churn_60d    double precision,
    churn_90d    double precision,
    expansion    double precision,
    mrr_minor    bigint,
    currency     text,
    components   jsonb NOT NULL,
    explanation  jsonb NOT NULL,
    scored_at    timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, account_id)
);
-- The accounts list sorts by these; a missing value sorts below every value.
CREATE INDEX account_scores_health ON account_scores (workspace_id, health, account_id);
CREATE INDEX account_scores_churn ON account_scores (workspace_id, (coalesce(churn_30d, -1)), account_id);
CREATE INDEX account_scores_expansion ON account_scores (workspace_id, (coalesce(expansion, -1)), account_id);
CREATE INDEX account_scores_mrr ON account_scores (workspace_id, (coalesce(mrr_minor, -1)), account_id);

-- One row per account and day scored: the headline numbers and each component's points.
CREATE TABLE score_history (
    workspace_id text COLLATE "C" NOT NULL REFERENCES workspaces (workspace_id),
    account_id   text COLLATE "C" NOT NULL,
    day          date NOT NULL,
    health       double precision NOT NULL,
    band         text NOT NULL,
    churn_30d    double precision,
    churn_60d    double precision,
    churn_90d    double precision,
    expansion    double precision,
    mrr_minor    bigint,
    currency     text,
    components   jsonb NOT NULL,
    PRIMARY KEY (workspace_id, account_id, day)
);

CREATE TABLE models (
    workspace_id text COLLATE "C" NOT NULL REFERENCES workspaces (workspace_id),
    model_id     text COLLATE "C" NOT NULL,
    kind         text NOT NULL,
    status       text NOT NULL,
    created_at   timestamptz NOT NULL,
    card         jsonb NOT NULL,
    reason       text NOT NULL,
    model        jsonb,
    PRIMARY KEY (workspace_id, model_id)
);
CREATE UNIQUE INDEX models_active ON models (workspace_id, kind) WHERE status = 'active';

CREATE TABLE alerts (
    workspace_id    text COLLATE "C" NOT NULL REFERENCES workspaces (workspace_id),
    alert_id        text COLLATE "C" NOT NULL,
    account_id      text COLLATE "C" NOT NULL,
    kind            text NOT NULL,
    reason          text NOT NULL,
    severity        text NOT NULL,
    title           text NOT NULL,
    evidence        jsonb NOT NULL,
    status          text NOT NULL,
    opened_at       timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    acknowledged_at timestamptz,
    acknowledged_by text,
    resolved_at     timestamptz,
    resolved_by     text,
    useful          boolean,
    feedback        text,
    feedback_by     text,
    PRIMARY KEY (workspace_id, alert_id)
);
-- One unresolved alert per account, kind and reason.
CREATE UNIQUE INDEX alerts_unresolved ON alerts (workspace_id, account_id, kind, reason) WHERE status <> 'resolved';
CREATE INDEX alerts_recent ON alerts (workspace_id, opened_at, alert_id);
CREATE INDEX alerts_account ON alerts (workspace_id, account_id, resolved_at);

-- A workspace's configuration: one JSON document per key (scoring, ...).
CREATE TABLE workspace_settings (
    workspace_id text COLLATE "C" NOT NULL REFERENCES workspaces (workspace_id),
    key          text COLLATE "C" NOT NULL,
    value        jsonb NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, key)
);
