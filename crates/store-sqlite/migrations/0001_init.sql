-- Steward's embedded schema. Times are UTC milliseconds since the epoch; JSON is text.

-- `ws` is the workspace's number inside this database: the event tables repeat it on every row,
-- so it is an integer rather than the public id.
CREATE TABLE workspaces (
    ws           INTEGER PRIMARY KEY,
    workspace_id TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE api_keys (
    key_id       TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id),
    role         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id);

CREATE TABLE operators (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (workspace_id),
    operator_id   TEXT NOT NULL,
    email         TEXT NOT NULL,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, operator_id),
    UNIQUE (workspace_id, email)
);

-- The event log, in blocks: one row per append holds the new events of one request, encoded
-- and compressed together (see `block.rs`). Their seqs are consecutive, `first_seq` to
-- `last_seq`; one writer appends, so seqs only grow. Ingest writes only here and the message ids;
-- everything derived from an event is written by processing.
-- `types` (a bit per message type) and `min_ts`/`max_ts` (event times) cover the block's
-- events, so that a filtered read of the log skips blocks without decoding them.
CREATE TABLE event_blocks (
    last_seq  INTEGER PRIMARY KEY,
    ws        INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    types     INTEGER NOT NULL,
    min_ts    INTEGER NOT NULL,
    max_ts    INTEGER NOT NULL,
    data      BLOB NOT NULL
);
CREATE INDEX event_blocks_log ON event_blocks (ws, last_seq, first_seq);

-- Every stored message id, as the first 8 bytes of its SHA-256 (a match is confirmed against
-- the event's own id), in sorted runs (see `runs.rs`). Ids of the newest events live in the
-- writer's memory and are written here as a new run now and then; `event_ids_through` in
-- `store_meta` is the last `seq` whose id is in a live run. A run is 'building', 'live' or
-- 'dead' (merged into a newer one; its pages are being deleted); `filter` is its Bloom filter.
CREATE TABLE id_runs (
    run    INTEGER PRIMARY KEY,
    state  TEXT NOT NULL CHECK (state IN ('building', 'live', 'dead')),
    ids    INTEGER NOT NULL,
    filter BLOB NOT NULL
);
-- A run's ids, sorted by (ws, hash, seq) and packed about 4 KB to a row; `ws` and `hash` are
-- the first id's.
CREATE TABLE id_pages (
    id   INTEGER PRIMARY KEY,
    run  INTEGER NOT NULL,
    ws   INTEGER NOT NULL,
    hash INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE UNIQUE INDEX id_pages_key ON id_pages (run, ws, hash);

CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

-- Written by processing, one row per slice: who did each of its events, the account each
-- names and when it happened, encoded together (see `owners.rs`), as decided then: a device
-- that later signs in as someone else keeps its earlier events with their first owner, and a
-- person merged since is followed through `person_merges`.
CREATE TABLE event_owners (
    last_seq  INTEGER PRIMARY KEY,
    ws        INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    data      BLOB NOT NULL
);
CREATE INDEX event_owners_log ON event_owners (ws, last_seq);

-- Built from `event_owners` in bulk, up to `processing_cursors.linked_seq`: the events of each
-- subject, as lists (one per subject per build, see `owners.rs`) of event time and seq, newest
-- first, each flagged when the event names an account. Subjects are `p:<person>` (every event
-- of the person) and `g:<account>` (events naming the account). `max_ts`/`min_ts` bound the
-- list's times, so that a read newest first stops at the first list older than what it has.
-- `upto` is the `linked_seq` of the build that wrote it: lists above the workspace's
-- `linked_seq` are of a build that did not finish, and the next build removes them first.
CREATE TABLE event_links (
    id      INTEGER PRIMARY KEY,
    ws      INTEGER NOT NULL,
    subject TEXT NOT NULL,
    max_ts  INTEGER NOT NULL,
    min_ts  INTEGER NOT NULL,
    upto    INTEGER NOT NULL,
    data    BLOB NOT NULL
);
CREATE INDEX event_links_subject ON event_links (ws, subject, max_ts);
CREATE INDEX event_links_build ON event_links (ws, upto);

CREATE TABLE processing_cursors (
    workspace_id TEXT PRIMARY KEY,
    tx           INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    linked_seq   INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE people (
    workspace_id  TEXT NOT NULL,
    person_id     TEXT NOT NULL,
    user_id       TEXT,
    traits        TEXT NOT NULL DEFAULT '{}',
    first_seen_at INTEGER,
    last_seen_at  INTEGER,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, person_id)
) WITHOUT ROWID;

CREATE TABLE identities (
    workspace_id TEXT NOT NULL,
    kind         TEXT NOT NULL,
    value        TEXT NOT NULL,
    person_id    TEXT NOT NULL,
    PRIMARY KEY (workspace_id, kind, value)
) WITHOUT ROWID;
CREATE INDEX identities_person ON identities (workspace_id, person_id);

CREATE TABLE person_merges (
    workspace_id TEXT NOT NULL,
    from_id      TEXT NOT NULL,
    into_id      TEXT NOT NULL,
    merged_at    INTEGER NOT NULL
);
CREATE INDEX person_merges_from ON person_merges (workspace_id, from_id);

CREATE TABLE accounts (
    workspace_id  TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    traits        TEXT NOT NULL DEFAULT '{}',
    first_seen_at INTEGER,
    last_seen_at  INTEGER,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, account_id)
) WITHOUT ROWID;

CREATE TABLE memberships (
    workspace_id TEXT NOT NULL,
    account_id   TEXT NOT NULL,
    person_id    TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, account_id, person_id)
) WITHOUT ROWID;
CREATE INDEX memberships_person ON memberships (workspace_id, person_id);

CREATE TABLE trait_history (
    workspace_id TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    key          TEXT NOT NULL,
    value        TEXT NOT NULL,
    at           INTEGER NOT NULL
);
CREATE INDEX trait_history_subject ON trait_history (workspace_id, subject_kind, subject_id, at);

CREATE TABLE subscriptions (
    workspace_id         TEXT NOT NULL,
    subscription_id      TEXT NOT NULL,
    account_id           TEXT NOT NULL,
    plan                 TEXT,
    status               TEXT NOT NULL,
    mrr_minor            INTEGER NOT NULL,
    currency             TEXT NOT NULL,
    quantity             INTEGER NOT NULL,
    started_at           INTEGER NOT NULL,
    ended_at             INTEGER,
    current_period_end   INTEGER,
    cancel_at_period_end INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    attributes           TEXT NOT NULL,
    PRIMARY KEY (workspace_id, subscription_id)
);
CREATE INDEX subscriptions_account ON subscriptions (workspace_id, account_id);

CREATE TABLE tickets (
    workspace_id      TEXT NOT NULL,
    ticket_id         TEXT NOT NULL,
    account_id        TEXT,
    person_id         TEXT,
    subject           TEXT NOT NULL,
    status            TEXT NOT NULL,
    priority          TEXT NOT NULL,
    opened_at         INTEGER NOT NULL,
    first_response_at INTEGER,
    resolved_at       INTEGER,
    csat              INTEGER,
    updated_at        INTEGER NOT NULL,
    attributes        TEXT NOT NULL,
    PRIMARY KEY (workspace_id, ticket_id)
);
CREATE INDEX tickets_account ON tickets (workspace_id, account_id);
