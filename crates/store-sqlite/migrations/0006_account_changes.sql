-- What journeys start from in scoring: each change of an account's health band (its first
-- score included) and each alert opened, written by triggers in the transaction that stores
-- the score or the alert. `seq` orders them: the single writer hands rowids out in commit
-- order, and AUTOINCREMENT never hands one out twice.
CREATE TABLE account_changes (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL,
    account_id   TEXT NOT NULL,
    at           INTEGER NOT NULL,
    -- A band change: the band before (none for a first score), the band now, its day.
    band_from    TEXT,
    band_to      TEXT,
    day          TEXT,
    -- An alert opened.
    alert_id     TEXT,
    alert_kind   TEXT,
    alert_reason TEXT
);
CREATE INDEX account_changes_by_workspace ON account_changes (workspace_id, seq);

CREATE TRIGGER account_changes_first_band AFTER INSERT ON account_scores
BEGIN
    INSERT INTO account_changes (workspace_id, account_id, at, band_to, day)
    VALUES (NEW.workspace_id, NEW.account_id, NEW.scored_at, NEW.band, NEW.day);
END;

CREATE TRIGGER account_changes_band AFTER UPDATE OF band ON account_scores
WHEN OLD.band <> NEW.band
BEGIN
    INSERT INTO account_changes (workspace_id, account_id, at, band_from, band_to, day)
    VALUES (NEW.workspace_id, NEW.account_id, NEW.scored_at, OLD.band, NEW.band, NEW.day);
END;

CREATE TRIGGER account_changes_alert AFTER INSERT ON alerts
BEGIN
    INSERT INTO account_changes (workspace_id, account_id, at, alert_id, alert_kind, alert_reason)
    VALUES (NEW.workspace_id, NEW.account_id, NEW.opened_at, NEW.alert_id, NEW.kind, NEW.reason);
END;
