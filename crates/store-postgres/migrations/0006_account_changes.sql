-- What journeys start from in scoring: each change of an account's health band (its first
-- score included) and each alert opened, written by triggers in the transaction that stores
-- the score or the alert. Ordered by `(tx, seq)` and read below the oldest transaction still
-- running, as the event log is: `seq` is taken before commit, so it alone is not commit order.
CREATE TABLE account_changes (
    workspace_id text COLLATE "C" NOT NULL,
    tx           bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    seq          bigserial NOT NULL,
    account_id   text COLLATE "C" NOT NULL,
    at           timestamptz NOT NULL,
    -- A band change: the band before (none for a first score), the band now, its day.
    band_from    text,
    band_to      text,
    day          date,
    -- An alert opened.
    alert_id     text COLLATE "C",
    alert_kind   text,
    alert_reason text,
    PRIMARY KEY (workspace_id, tx, seq)
);

CREATE FUNCTION account_changes_band() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO account_changes (workspace_id, account_id, at, band_to, day)
        VALUES (NEW.workspace_id, NEW.account_id, NEW.scored_at, NEW.band, NEW.day);
    ELSIF OLD.band <> NEW.band THEN
        INSERT INTO account_changes (workspace_id, account_id, at, band_from, band_to, day)
        VALUES (NEW.workspace_id, NEW.account_id, NEW.scored_at, OLD.band, NEW.band, NEW.day);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER account_changes_band AFTER INSERT OR UPDATE OF band ON account_scores
    FOR EACH ROW EXECUTE FUNCTION account_changes_band();

CREATE FUNCTION account_changes_alert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_changes (workspace_id, account_id, at, alert_id, alert_kind, alert_reason)
    VALUES (NEW.workspace_id, NEW.account_id, NEW.opened_at, NEW.alert_id, NEW.kind, NEW.reason);
    RETURN NULL;
END $$;

CREATE TRIGGER account_changes_alert AFTER INSERT ON alerts
    FOR EACH ROW EXECUTE FUNCTION account_changes_alert();
