-- Connectors (store::connectors): each provider connection of a workspace with its sync state
-- and counters, a mirror of the provider's objects as last seen, and the errors met.

CREATE TABLE connectors (
    workspace_id      TEXT NOT NULL,
    provider          TEXT NOT NULL,
    config            TEXT NOT NULL,
    secrets           TEXT NOT NULL,
    enabled           INTEGER NOT NULL,
    sync              TEXT NOT NULL,
    last_sync_at      INTEGER,
    records_synced    INTEGER NOT NULL,
    webhooks_received INTEGER NOT NULL,
    errors            INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, provider)
) WITHOUT ROWID;

-- A rowid table: payloads are whole provider objects, often kilobytes, which a WITHOUT ROWID
-- table would keep in its key's b-tree.
CREATE TABLE connector_objects (
    workspace_id TEXT NOT NULL,
    provider     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    object_id    TEXT NOT NULL,
    parent_id    TEXT,
    version      INTEGER NOT NULL,
    account_id   TEXT,
    matched_by   TEXT,
    label        TEXT NOT NULL,
    payload      TEXT NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, provider, kind, object_id)
);
-- An object's children (linked with it), what an account is linked to, and what an operator
-- still has to link: each in the order they are listed.
CREATE INDEX connector_objects_parent ON connector_objects (workspace_id, provider, parent_id, kind, object_id)
    WHERE parent_id IS NOT NULL;
CREATE INDEX connector_objects_account ON connector_objects (workspace_id, provider, account_id, kind, object_id)
    WHERE account_id IS NOT NULL;
CREATE INDEX connector_objects_unmatched ON connector_objects (workspace_id, provider, kind, object_id)
    WHERE account_id IS NULL;

-- `id` orders each connector's errors; the oldest beyond the newest 1000 are deleted as new
-- ones come.
CREATE TABLE connector_errors (
    id           INTEGER PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    provider     TEXT NOT NULL,
    at           INTEGER NOT NULL,
    stage        TEXT NOT NULL,
    object_kind  TEXT,
    object_id    TEXT,
    message      TEXT NOT NULL,
    record       TEXT
);
CREATE INDEX connector_errors_connector ON connector_errors (workspace_id, provider, id);
