-- Segments (store::segments): definitions, each subject's membership, and the stream of
-- entries and exits.

CREATE TABLE segments (
    workspace_id TEXT NOT NULL,
    segment_id   TEXT NOT NULL,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    condition    TEXT NOT NULL,
    description  TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, segment_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX segments_name ON segments (workspace_id, name);

-- A member (`member` = 1, since `since`), or a subject that is not one but may become one by
-- time alone (at `next_check`). Subjects that are neither have no row.
CREATE TABLE segment_members (
    workspace_id TEXT NOT NULL,
    segment_id   TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    member       INTEGER NOT NULL,
    since        INTEGER,
    next_check   INTEGER,
    PRIMARY KEY (workspace_id, segment_id, subject_id)
) WITHOUT ROWID;
CREATE INDEX segment_members_subject ON segment_members (workspace_id, subject_id) WHERE member = 1;
CREATE INDEX segment_members_due ON segment_members (workspace_id, next_check) WHERE next_check IS NOT NULL;

CREATE TABLE segment_changes (
    workspace_id TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    segment_id   TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    entered      INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, seq)
) WITHOUT ROWID;
CREATE INDEX segment_changes_segment ON segment_changes (workspace_id, segment_id);
