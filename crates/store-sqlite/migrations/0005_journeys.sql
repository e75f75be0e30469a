-- Journeys (store::journeys): versioned definitions, runs with their step and timer, the steps
-- runs took, outbox messages with their attempts, blocked endpoints, and tasks.

CREATE TABLE journeys (
    workspace_id TEXT NOT NULL,
    journey_id   TEXT NOT NULL,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    enabled      INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, journey_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX journeys_name ON journeys (workspace_id, name);

CREATE TABLE journey_versions (
    workspace_id TEXT NOT NULL,
    journey_id   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    definition   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, journey_id, version)
) WITHOUT ROWID;

CREATE TABLE journey_runs (
    workspace_id TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    journey_id   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    subject_id   TEXT NOT NULL,
    account_id   TEXT,
    status       TEXT NOT NULL,
    step         TEXT,
    seq          INTEGER NOT NULL,
    wake_at      INTEGER,
    waiting      TEXT,
    context      TEXT NOT NULL,
    trigger_key  TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    ended_at     INTEGER,
    PRIMARY KEY (workspace_id, run_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX journey_runs_trigger ON journey_runs (workspace_id, journey_id, trigger_key);
CREATE UNIQUE INDEX journey_runs_active ON journey_runs (workspace_id, journey_id, subject_id) WHERE status = 'active';
CREATE INDEX journey_runs_subject ON journey_runs (workspace_id, subject_id, journey_id, started_at);
CREATE INDEX journey_runs_account ON journey_runs (workspace_id, account_id, started_at) WHERE account_id IS NOT NULL;
CREATE INDEX journey_runs_due ON journey_runs (workspace_id, wake_at) WHERE status = 'active' AND wake_at IS NOT NULL;
CREATE INDEX journey_runs_waiting ON journey_runs (workspace_id, waiting) WHERE status = 'active' AND waiting IS NOT NULL;
CREATE INDEX journey_runs_journey ON journey_runs (workspace_id, journey_id, status, started_at);

CREATE TABLE journey_steps (
    workspace_id TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    journey_id   TEXT NOT NULL,
    step_id      TEXT NOT NULL,
    at           INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    PRIMARY KEY (workspace_id, run_id, seq)
) WITHOUT ROWID;
CREATE INDEX journey_steps_journey ON journey_steps (workspace_id, journey_id, step_id, outcome);

CREATE TABLE outbox (
    workspace_id    TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    channel         TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    payload         TEXT NOT NULL,
    journey_id      TEXT,
    run_id          TEXT,
    step_id         TEXT,
    account_id      TEXT,
    person_id       TEXT,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER,
    lease_until     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    retry_base      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, message_id)
) WITHOUT ROWID;
-- What a deliverer takes next: pending messages by when they are due, held ones by lease.
CREATE INDEX outbox_due ON outbox (workspace_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_leased ON outbox (workspace_id, lease_until) WHERE status = 'sending';
CREATE INDEX outbox_account ON outbox (workspace_id, account_id, created_at) WHERE account_id IS NOT NULL;
CREATE INDEX outbox_journey ON outbox (workspace_id, journey_id, created_at) WHERE journey_id IS NOT NULL;
CREATE INDEX outbox_person ON outbox (workspace_id, person_id, channel, created_at) WHERE person_id IS NOT NULL;
CREATE INDEX outbox_status ON outbox (workspace_id, status, created_at);

CREATE TABLE outbox_attempts (
    workspace_id TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    status       INTEGER,
    detail       TEXT NOT NULL,
    duration_ms  INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, message_id, attempt)
) WITHOUT ROWID;

CREATE TABLE blocked_endpoints (
    workspace_id TEXT NOT NULL,
    endpoint     TEXT NOT NULL,
    reason       TEXT NOT NULL,
    at           INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, endpoint)
) WITHOUT ROWID;

CREATE TABLE tasks (
    workspace_id TEXT NOT NULL,
    task_id      TEXT NOT NULL,
    title        TEXT NOT NULL,
    body         TEXT,
    assignee     TEXT NOT NULL,
    priority     TEXT NOT NULL,
    due_at       INTEGER,
    status       TEXT NOT NULL,
    account_id   TEXT,
    person_id    TEXT,
    journey_id   TEXT,
    run_id       TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    closed_by    TEXT,
    PRIMARY KEY (workspace_id, task_id)
) WITHOUT ROWID;
CREATE INDEX tasks_open ON tasks (workspace_id, status, due_at, created_at);
CREATE INDEX tasks_account ON tasks (workspace_id, account_id, created_at) WHERE account_id IS NOT NULL;
CREATE INDEX tasks_assignee ON tasks (workspace_id, assignee, status, created_at);
