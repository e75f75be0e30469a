-- Operators signing in to the dashboard (store::operators): a disabled flag, their sessions
-- (known by the SHA-256 of the cookie's token) and the audit log of what was changed.

ALTER TABLE operators ADD COLUMN disabled_at timestamptz;

CREATE TABLE operator_sessions (
    token_hash   text COLLATE "C" PRIMARY KEY,
    workspace_id text COLLATE "C" NOT NULL,
    operator_id  text COLLATE "C" NOT NULL,
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX operator_sessions_operator ON operator_sessions (workspace_id, operator_id);

CREATE TABLE audit_log (
    seq          bigserial PRIMARY KEY,
    workspace_id text COLLATE "C" NOT NULL,
    actor        text NOT NULL,
    action       text NOT NULL,
    target       text NOT NULL,
    details      jsonb NOT NULL,
    at           timestamptz NOT NULL
);
CREATE INDEX audit_log_workspace ON audit_log (workspace_id, seq);

-- The accounts list filters by plan and by owner (the CSM's email).
CREATE INDEX accounts_plan ON accounts (workspace_id, (traits->>'plan'));
CREATE INDEX accounts_owner ON accounts (workspace_id, (traits->>'csm_email'));
