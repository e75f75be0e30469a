-- Per workspace, the latest day of a score written to the history alone (a past day scored
-- point-in-time). Any later history point is a live run's, also the account's latest score,
-- so an account whose latest score is of a later day has that score as its point for every
-- day since: conditions read the latest scores instead of searching every account's history.
-- History written before this table is counted as past days, up to its last day.
CREATE TABLE score_history_past (
    workspace_id TEXT PRIMARY KEY,
    through      TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO score_history_past (workspace_id, through)
    SELECT workspace_id, max(day) FROM score_history GROUP BY workspace_id;
