-- Connectors (store::connectors): each provider connection of a workspace with its sync state
-- and counters, a mirror of the provider's objects as last seen, and the errors met.
--
-- Config, sync state, payloads and error records are jsonb: whole JSON values read and written
-- as one. Objects and errors belong to their connector and go with it.

CREATE TABLE connectors (
    workspace_id      text COLLATE "C" NOT NULL REFERENCES workspaces (workspace_id),
    provider          text COLLATE "C" NOT NULL,
    config            jsonb NOT NULL,
    secrets           text NOT NULL,
    enabled           boolean NOT NULL,
    sync              jsonb NOT NULL,
    last_sync_at      timestamptz,
    records_synced    bigint NOT NULL,
    webhooks_received bigint NOT NULL,
    errors            bigint NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, provider)
);

CREATE TABLE connector_objects (
    workspace_id text COLLATE "C" NOT NULL,
    provider     text COLLATE "C" NOT NULL,
    kind         text COLLATE "C" NOT NULL,
    object_id    text COLLATE "C" NOT NULL,
    parent_id    text COLLATE "C",
    version      bigint NOT NULL,
    account_id   text COLLATE "C",
    matched_by   text,
    label        text NOT NULL,
    payload      jsonb NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, provider, kind, object_id),
    FOREIGN KEY (workspace_id, provider) REFERENCES connectors (workspace_id, provider) ON DELETE CASCADE
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
    workspace_id text COLLATE "C" NOT NULL,
    provider     text COLLATE "C" NOT NULL,
    id           bigint GENERATED ALWAYS AS IDENTITY,
    at           timestamptz NOT NULL,
    stage        text NOT NULL,
    object_kind  text,
    object_id    text,
    message      text NOT NULL,
    record       jsonb,
    PRIMARY KEY (workspace_id, provider, id),
    FOREIGN KEY (workspace_id, provider) REFERENCES connectors (workspace_id, provider) ON DELETE CASCADE
);
