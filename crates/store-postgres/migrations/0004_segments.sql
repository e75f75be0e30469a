-- Segments (store::segments): definitions, each subject's membership, and the stream of
-- entries and exits.

CREATE TABLE segments (
    workspace_id text COLLATE "C" NOT NULL REFERENCES workspaces (workspace_id),
    segment_id   text COLLATE "C" NOT NULL,
    name         text NOT NULL,
    kind         text NOT NULL,
    condition    text NOT NULL,
    description  text,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, segment_id),
    UNIQUE (workspace_id, name)
);

-- A member (`member`, since `since`), or a subject that is not one but may become one by
-- time alone (at `next_check`). Subjects that are neither have no row.
CREATE TABLE segment_members (
    workspace_id text COLLATE "C" NOT NULL,
    segment_id   text COLLATE "C" NOT NULL,
    subject_id   text COLLATE "C" NOT NULL,
    member       boolean NOT NULL,
    since        timestamptz,
    next_check   timestamptz,
    PRIMARY KEY (workspace_id, segment_id, subject_id),
    FOREIGN KEY (workspace_id, segment_id) REFERENCES segments (workspace_id, segment_id) ON DELETE CASCADE
);
CREATE INDEX segment_members_subject ON segment_members (workspace_id, subject_id) WHERE member;
CREATE INDEX segment_members_due ON segment_members (workspace_id, next_check) WHERE next_check IS NOT NULL;

-- Changes are numbered per workspace from a counter row that each writer of changes locks,
-- so numbers are handed out in commit order and a reader following `seq` never skips one.
CREATE TABLE segment_change_counters (
    workspace_id text COLLATE "C" PRIMARY KEY REFERENCES workspaces (workspace_id),
    seq          bigint NOT NULL
);

CREATE TABLE segment_changes (
    workspace_id text COLLATE "C" NOT NULL,
    seq          bigint NOT NULL,
    segment_id   text COLLATE "C" NOT NULL,
    subject_id   text COLLATE "C" NOT NULL,
    entered      boolean NOT NULL,
    at           timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, seq),
    FOREIGN KEY (workspace_id, segment_id) REFERENCES segments (workspace_id, segment_id) ON DELETE CASCADE
);
CREATE INDEX segment_changes_segment ON segment_changes (workspace_id, segment_id);
