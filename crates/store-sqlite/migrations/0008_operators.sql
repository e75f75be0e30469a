-- Operators signing in to the dashboard (store::operators): a disabled flag, their sessions
-- (known by the SHA-256 of the cookie's token) and the audit log of what was changed.

ALTER TABLE operators ADD COLUMN disabled_at INTEGER;

CREATE TABLE operator_sessions (
    token_hash   TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    operator_id  TEXT NOT NULL,
    csrf_token   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX operator_sessions_operator ON operator_sessions (workspace_id, operator_id);

CREATE TABLE audit_log (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    target       TEXT NOT NULL,
    details      TEXT NOT NULL,
    at           INTEGER NOT NULL
);
CREATE INDEX audit_log_workspace ON audit_log (workspace_id, seq);

-- The accounts list filters by plan and by owner (the CSM's email).
CREATE INDEX accounts_plan ON accounts (workspace_id, json_extract(traits, '$.plan'));
CREATE INDEX accounts_owner ON accounts (workspace_id, json_extract(traits, '$.csm_email'));
