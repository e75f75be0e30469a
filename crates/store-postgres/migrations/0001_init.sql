-- Steward's PostgreSQL schema (PostgreSQL 13 or newer: the log uses pg_current_xact_id).
--
-- Times are timestamptz: microseconds, which read back equal to what was written.
-- Traits, trait values and attributes are jsonb: they are whole JSON values that are read and
-- written as one, and jsonb lets operators query inside them. Event payloads stay text: the log
-- hands back the exact bytes capture produced (jsonb would reorder keys and drop whitespace),
-- and there is no need to parse every message again on the hot append path.
-- Identifiers are COLLATE "C" so that they sort byte-wise, as in SQLite: sort orders and page
-- cursors then mean the same on both backends whatever the database's locale.

CREATE TABLE workspaces (
    workspace_id text COLLATE "C" PRIMARY KEY,
    name         text NOT NULL,
    created_at   timestamptz NOT NULL
);

CREATE TABLE api_keys (
    key_id       text COLLATE "C" PRIMARY KEY,
    workspace_id text COLLATE "C" NOT NULL REFERENCES workspaces (workspace_id),
    role         text NOT NULL,
    prefix       text NOT NULL,
    hash         text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id);

CREATE TABLE operators (
    workspace_id  text COLLATE "C" NOT NULL REFERENCES workspaces (workspace_id),
    operator_id   text COLLATE "C" NOT NULL,
    -- Stored lower-cased, so that the unique constraint ignores case.
    email         text COLLATE "C" NOT NULL,
    name          text NOT NULL,
    role          text NOT NULL,
    password_hash text,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, operator_id),
    UNIQUE (workspace_id, email)
);

-- The event log. `seq` is taken from a sequence when the row is inserted, before its
-- transaction commits, so seq order is not commit order; `tx` is the inserting transaction's id,
-- and the log is read in (tx, seq) order only up to the oldest transaction still running (see
-- src/log.rs).
CREATE TABLE events (
    seq          bigserial PRIMARY KEY,
    tx           bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    workspace_id text COLLATE "C" NOT NULL,
    message_id   text COLLATE "C" NOT NULL,
    type         text NOT NULL,
    name         text,
    user_id      text COLLATE "C",
    anonymous_id text COLLATE "C",
    group_id     text COLLATE "C",
    previous_id  text COLLATE "C",
    person_id    text COLLATE "C",
    timestamp    timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    payload      text NOT NULL
);
CREATE UNIQUE INDEX events_message ON events (workspace_id, message_id);
-- read_log and log_status walk this one.
CREATE INDEX events_log ON events (workspace_id, tx, seq);
-- The read API lists events newest first by seq.
CREATE INDEX events_recent ON events (workspace_id, seq);
CREATE INDEX events_person ON events (workspace_id, person_id, timestamp) WHERE person_id IS NOT NULL;
CREATE INDEX events_group ON events (workspace_id, group_id, timestamp) WHERE group_id IS NOT NULL;
CREATE INDEX events_user ON events (workspace_id, user_id) WHERE user_id IS NOT NULL;

CREATE TABLE processing_cursors (
    workspace_id text COLLATE "C" PRIMARY KEY,
    tx           bigint NOT NULL,
    seq          bigint NOT NULL
);

CREATE TABLE people (
    workspace_id  text COLLATE "C" NOT NULL,
    person_id     text COLLATE "C" NOT NULL,
    user_id       text COLLATE "C",
    traits        jsonb NOT NULL DEFAULT '{}',
    first_seen_at timestamptz,
    last_seen_at  timestamptz,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, person_id)
);

CREATE TABLE identities (
    workspace_id text COLLATE "C" NOT NULL,
    kind         text COLLATE "C" NOT NULL,
    value        text COLLATE "C" NOT NULL,
    person_id    text COLLATE "C" NOT NULL,
    PRIMARY KEY (workspace_id, kind, value)
);
CREATE INDEX identities_person ON identities (workspace_id, person_id);

CREATE TABLE person_merges (
    workspace_id text COLLATE "C" NOT NULL,
    from_id      text COLLATE "C" NOT NULL,
    into_id      text COLLATE "C" NOT NULL,
    merged_at    timestamptz NOT NULL
);
CREATE INDEX person_merges_workspace ON person_merges (workspace_id);

CREATE TABLE accounts (
    workspace_id  text COLLATE "C" NOT NULL,
    account_id    text COLLATE "C" NOT NULL,
    traits        jsonb NOT NULL DEFAULT '{}',
    first_seen_at timestamptz,
    last_seen_at  timestamptz,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, account_id)
);

CREATE TABLE memberships (
    workspace_id text COLLATE "C" NOT NULL,
    account_id   text COLLATE "C" NOT NULL,
    person_id    text COLLATE "C" NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, account_id, person_id)
);
CREATE INDEX memberships_person ON memberships (workspace_id, person_id);

-- `id` keeps insertion order among changes made at the same time (SQLite's rowid).
CREATE TABLE trait_history (
    id           bigserial PRIMARY KEY,
    workspace_id text COLLATE "C" NOT NULL,
    subject_kind text COLLATE "C" NOT NULL,
    subject_id   text COLLATE "C" NOT NULL,
    key          text NOT NULL,
    value        jsonb NOT NULL,
    at           timestamptz NOT NULL
);
CREATE INDEX trait_history_subject ON trait_history (workspace_id, subject_kind, subject_id, at, id);

CREATE TABLE subscriptions (
    workspace_id         text COLLATE "C" NOT NULL,
    subscription_id      text COLLATE "C" NOT NULL,
    account_id           text COLLATE "C" NOT NULL,
    plan                 text,
    status               text NOT NULL,
    mrr_minor            bigint NOT NULL,
    currency             text NOT NULL,
    quantity             bigint NOT NULL,
    started_at           timestamptz NOT NULL,
    ended_at             timestamptz,
    current_period_end   timestamptz,
    cancel_at_period_end boolean NOT NULL,
    updated_at           timestamptz NOT NULL,
    attributes           jsonb NOT NULL,
    PRIMARY KEY (workspace_id, subscription_id)
);
CREATE INDEX subscriptions_account ON subscriptions (workspace_id, account_id);

CREATE TABLE tickets (
    workspace_id      text COLLATE "C" NOT NULL,
    ticket_id         text COLLATE "C" NOT NULL,
    account_id        text COLLATE "C",
    person_id         text COLLATE "C",
    subject           text NOT NULL,
    status            text NOT NULL,
    priority          text NOT NULL,
    opened_at         timestamptz NOT NULL,
    first_response_at timestamptz,
    resolved_at       timestamptz,
    csat              smallint,
    updated_at        timestamptz NOT NULL,
    attributes        jsonb NOT NULL,
    PRIMARY KEY (workspace_id, ticket_id)
);
CREATE INDEX tickets_account ON tickets (workspace_id, account_id);
