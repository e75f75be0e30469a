-- Journeys (store::journeys): versioned definitions, runs with their step and timer, the steps
-- runs took, outbox messages with their attempts, blocked endpoints, and tasks.
--
-- Definitions, run contexts and message payloads are jsonb: whole JSON values read and written
-- as one. The tables written on every step of a run (runs, steps, the outbox and its attempts)
-- carry no foreign keys: they are the journey engine's hot path, and their rows are written
-- only with a run that was started on a stored journey.

CREATE TABLE journeys (
    workspace_id text COLLATE "C" NOT NULL REFERENCES workspaces (workspace_id),
    journey_id   text COLLATE "C" NOT NULL,
    name         text NOT NULL,
    kind         text NOT NULL,
    enabled      boolean NOT NULL,
    version      bigint NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, journey_id),
    UNIQUE (workspace_id, name)
);

CREATE TABLE journey_versions (
    workspace_id text COLLATE "C" NOT NULL,
    journey_id   text COLLATE "C" NOT NULL,
    version      bigint NOT NULL,
    definition   jsonb NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, journey_id, version),
    FOREIGN KEY (workspace_id, journey_id) REFERENCES journeys (workspace_id, journey_id) ON DELETE CASCADE
);

-- One run per journey and trigger; one active run per journey and subject. Starts also take
-- a transaction-level advisory lock per journey and subject, so that the re-entry rule (which
-- reads the subject's last run) holds when several processes start runs at once.
CREATE TABLE journey_runs (
    workspace_id text COLLATE "C" NOT NULL,
    run_id       text COLLATE "C" NOT NULL,
    journey_id   text COLLATE "C" NOT NULL,
    version      bigint NOT NULL,
    subject_id   text COLLATE "C" NOT NULL,
    account_id   text COLLATE "C",
    status       text NOT NULL,
    step         text,
    seq          bigint NOT NULL,
    wake_at      timestamptz,
    waiting      text COLLATE "C",
    context      jsonb NOT NULL,
    trigger_key  text COLLATE "C" NOT NULL,
    started_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    PRIMARY KEY (workspace_id, run_id)
);
CREATE UNIQUE INDEX journey_runs_trigger ON journey_runs (workspace_id, journey_id, trigger_key);
CREATE UNIQUE INDEX journey_runs_active ON journey_runs (workspace_id, journey_id, subject_id) WHERE status = 'active';
CREATE INDEX journey_runs_subject ON journey_runs (workspace_id, subject_id, journey_id, started_at);
CREATE INDEX journey_runs_account ON journey_runs (workspace_id, account_id, started_at) WHERE account_id IS NOT NULL;
CREATE INDEX journey_runs_due ON journey_runs (workspace_id, wake_at) WHERE status = 'active' AND wake_at IS NOT NULL;
CREATE INDEX journey_runs_waiting ON journey_runs (workspace_id, waiting) WHERE status = 'active' AND waiting IS NOT NULL;
CREATE INDEX journey_runs_journey ON journey_runs (workspace_id, journey_id, status, started_at);
CREATE INDEX journey_runs_recent ON journey_runs (workspace_id, started_at, run_id);

CREATE TABLE journey_steps (
    workspace_id text COLLATE "C" NOT NULL,
    run_id       text COLLATE "C" NOT NULL,
    seq          bigint NOT NULL,
    journey_id   text COLLATE "C" NOT NULL,
    step_id      text COLLATE "C" NOT NULL,
    at           timestamptz NOT NULL,
    outcome      text COLLATE "C" NOT NULL,
    PRIMARY KEY (workspace_id, run_id, seq)
);
CREATE INDEX journey_steps_journey ON journey_steps (workspace_id, journey_id, step_id, outcome);

CREATE TABLE outbox (
    workspace_id    text COLLATE "C" NOT NULL,
    message_id      text COLLATE "C" NOT NULL,
    channel         text NOT NULL,
    endpoint        text NOT NULL,
    payload         jsonb NOT NULL,
    journey_id      text COLLATE "C",
    run_id          text COLLATE "C",
    step_id         text COLLATE "C",
    account_id      text COLLATE "C",
    person_id       text COLLATE "C",
    status          text NOT NULL,
    attempts        bigint NOT NULL,
    next_attempt_at timestamptz,
    lease_until     timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    delivered_at    timestamptz,
    retry_base      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, message_id)
);
-- What a deliverer takes next: pending messages by when they are due, held ones by lease.
CREATE INDEX outbox_due ON outbox (workspace_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_leased ON outbox (workspace_id, lease_until) WHERE status = 'sending';
CREATE INDEX outbox_account ON outbox (workspace_id, account_id, created_at) WHERE account_id IS NOT NULL;
CREATE INDEX outbox_journey ON outbox (workspace_id, journey_id, created_at) WHERE journey_id IS NOT NULL;
CREATE INDEX outbox_person ON outbox (workspace_id, person_id, channel, created_at) WHERE person_id IS NOT NULL;
CREATE INDEX outbox_status ON outbox (workspace_id, status, created_at);
CREATE INDEX outbox_recent ON outbox (workspace_id, created_at, message_id);

CREATE TABLE outbox_attempts (
    workspace_id text COLLATE "C" NOT NULL,
    message_id   text COLLATE "C" NOT NULL,
    attempt      bigint NOT NULL,
    at           timestamptz NOT NULL,
    outcome      text NOT NULL,
    status       bigint,
    detail       text NOT NULL,
    duration_ms  bigint NOT NULL,
    PRIMARY KEY (workspace_id, message_id, attempt)
);

CREATE TABLE blocked_endpoints (
    workspace_id text COLLATE "C" NOT NULL REFERENCES workspaces (workspace_id),
    endpoint     text COLLATE "C" NOT NULL,
    reason       text NOT NULL,
    at           timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, endpoint)
);

CREATE TABLE tasks (
    workspace_id text COLLATE "C" NOT NULL REFERENCES workspaces (workspace_id),
    task_id      text COLLATE "C" NOT NULL,
    title        text NOT NULL,
    body         text,
    assignee     text COLLATE "C" NOT NULL,
    priority     text NOT NULL,
    due_at       timestamptz,
    status       text NOT NULL,
    account_id   text COLLATE "C",
    person_id    text COLLATE "C",
    journey_id   text COLLATE "C",
    run_id       text COLLATE "C",
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    closed_by    text,
    PRIMARY KEY (workspace_id, task_id)
);
-- The task list's order: open ones first, by due date (none last), then newest.
CREATE INDEX tasks_open ON tasks (workspace_id, (status <> 'open'), (coalesce(due_at, 'infinity')), created_at DESC, task_id);
CREATE INDEX tasks_account ON tasks (workspace_id, account_id, created_at) WHERE account_id IS NOT NULL;
CREATE INDEX tasks_assignee ON tasks (workspace_id, assignee, status, created_at);
