-- The portfolio by day (store::portfolio): the score history summed by day, band and
-- currency ('' for none), kept by triggers as history rows are written, so that the
-- overview's trend reads a few hundred rows instead of every account's history. An
-- account's MRR counts in the expansion pipeline from an expansion propensity of 0.5
-- (store::portfolio::EXPANSION_PIPELINE_MIN). (A row is added with `WHERE NOT EXISTS`, not
-- `INSERT OR IGNORE`: an upsert's conflict policy would override the trigger's.)
CREATE TABLE portfolio_days (
    workspace_id  TEXT NOT NULL,
    day           TEXT NOT NULL,
    band          TEXT NOT NULL,
    currency      TEXT NOT NULL,
    accounts      INTEGER NOT NULL,
    mrr_minor     INTEGER NOT NULL,
    expansion_mrr INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, day, band, currency)
) WITHOUT ROWID;

INSERT INTO portfolio_days
SELECT workspace_id, day, band, coalesce(currency, ''), count(*), coalesce(sum(mrr_minor), 0),
       coalesce(sum(CASE WHEN expansion >= 0.5 THEN mrr_minor END), 0)
FROM score_history GROUP BY 1, 2, 3, 4;

CREATE TRIGGER portfolio_days_added AFTER INSERT ON score_history BEGIN
    INSERT INTO portfolio_days SELECT NEW.workspace_id, NEW.day, NEW.band, coalesce(NEW.currency, ''), 0, 0, 0
    WHERE NOT EXISTS (SELECT 1 FROM portfolio_days WHERE workspace_id = NEW.workspace_id AND day = NEW.day
                      AND band = NEW.band AND currency = coalesce(NEW.currency, ''));
    UPDATE portfolio_days SET accounts = accounts + 1, mrr_minor = mrr_minor + coalesce(NEW.mrr_minor, 0),
        expansion_mrr = expansion_mrr + CASE WHEN NEW.expansion >= 0.5 THEN coalesce(NEW.mrr_minor, 0) ELSE 0 END
    WHERE workspace_id = NEW.workspace_id AND day = NEW.day AND band = NEW.band AND currency = coalesce(NEW.currency, '');
END;

CREATE TRIGGER portfolio_days_removed AFTER DELETE ON score_history BEGIN
    UPDATE portfolio_days SET accounts = accounts - 1, mrr_minor = mrr_minor - coalesce(OLD.mrr_minor, 0),
        expansion_mrr = expansion_mrr - CASE WHEN OLD.expansion >= 0.5 THEN coalesce(OLD.mrr_minor, 0) ELSE 0 END
    WHERE workspace_id = OLD.workspace_id AND day = OLD.day AND band = OLD.band AND currency = coalesce(OLD.currency, '');
END;

CREATE TRIGGER portfolio_days_changed AFTER UPDATE ON score_history BEGIN
    UPDATE portfolio_days SET accounts = accounts - 1, mrr_minor = mrr_minor - coalesce(OLD.mrr_minor, 0),
        expansion_mrr = expansion_mrr - CASE WHEN OLD.expansion >= 0.5 THEN coalesce(OLD.mrr_minor, 0) ELSE 0 END
    WHERE workspace_id = OLD.workspace_id AND day = OLD.day AND band = OLD.band AND currency = coalesce(OLD.currency, '');
    INSERT INTO portfolio_days SELECT NEW.workspace_id, NEW.day, NEW.band, coalesce(NEW.currency, ''), 0, 0, 0
    WHERE NOT EXISTS (SELECT 1 FROM portfolio_days WHERE workspace_id = NEW.workspace_id AND day = NEW.day
                      AND band = NEW.band AND currency = coalesce(NEW.currency, ''));
    UPDATE portfolio_days SET accounts = accounts + 1, mrr_minor = mrr_minor + coalesce(NEW.mrr_minor, 0),
        expansion_mrr = expansion_mrr + CASE WHEN NEW.expansion >= 0.5 THEN coalesce(NEW.mrr_minor, 0) ELSE 0 END
    WHERE workspace_id = NEW.workspace_id AND day = NEW.day AND band = NEW.band AND currency = coalesce(NEW.currency, '');
END;

-- The CS KPIs as last computed (store::kpis): one row per KPI and month.
CREATE TABLE kpi_months (
    workspace_id TEXT NOT NULL,
    kpi          TEXT NOT NULL,
    month        TEXT NOT NULL,
    numerator    REAL NOT NULL,
    denominator  REAL NOT NULL,
    PRIMARY KEY (workspace_id, kpi, month)
) WITHOUT ROWID;
CREATE TABLE kpi_reports (
    workspace_id TEXT PRIMARY KEY,
    currency     TEXT,
    computed_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- Failed sign-ins by email and by client address (`email:...`, `ip:...`), for the sign-in
-- rate limit; kept a little longer than its window.
CREATE TABLE sign_in_failures (
    key TEXT NOT NULL,
    at  INTEGER NOT NULL
);
CREATE INDEX sign_in_failures_key ON sign_in_failures (key, at);
CREATE INDEX sign_in_failures_at ON sign_in_failures (at);

-- The latest scores' numbers without their explanations, in account order: what the
-- overview aggregates, what counting a filtered accounts list reads, and what a list by
-- account filtered by a score walks, a few dozen bytes an account.
CREATE INDEX account_scores_summary
    ON account_scores (workspace_id, account_id, day, health, band, churn_30d, expansion, mrr_minor, currency);

-- When each account's band last changed and from what, kept as its latest score is
-- written: the overview's "changed band this week" reads the few that changed, instead of
-- comparing every account with its history a week ago. Accounts scored before are given
-- the band of their history point a week before their latest day.
ALTER TABLE account_scores ADD COLUMN band_from TEXT;
ALTER TABLE account_scores ADD COLUMN band_since TEXT;
UPDATE account_scores SET
    band_from = (SELECT h.band FROM score_history h WHERE h.workspace_id = account_scores.workspace_id
                   AND h.account_id = account_scores.account_id AND h.day <= date(account_scores.day, '-7 days')
                 ORDER BY h.day DESC LIMIT 1);
UPDATE account_scores SET band_since = day WHERE band_from IS NOT NULL AND band_from <> band;

-- The portfolio now (store::portfolio): the latest scores summed by band, tenth of the
-- health range (9 holds 100) and currency, kept by triggers like `portfolio_days`, so that
-- the overview reads a few dozen rows however many accounts there are.
CREATE TABLE portfolio_now (
    workspace_id  TEXT NOT NULL,
    band          TEXT NOT NULL,
    bucket        INTEGER NOT NULL,
    currency      TEXT NOT NULL,
    accounts      INTEGER NOT NULL,
    mrr_minor     INTEGER NOT NULL,
    expansion_mrr INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, band, bucket, currency)
) WITHOUT ROWID;

INSERT INTO portfolio_now
SELECT workspace_id, band, min(CAST(health / 10 AS INTEGER), 9), coalesce(currency, ''), count(*),
       coalesce(sum(mrr_minor), 0), coalesce(sum(CASE WHEN expansion >= 0.5 THEN mrr_minor END), 0)
FROM account_scores GROUP BY 1, 2, 3, 4;

CREATE TRIGGER portfolio_now_added AFTER INSERT ON account_scores BEGIN
    INSERT INTO portfolio_now SELECT NEW.workspace_id, NEW.band, min(CAST(NEW.health / 10 AS INTEGER), 9), coalesce(NEW.currency, ''), 0, 0, 0
    WHERE NOT EXISTS (SELECT 1 FROM portfolio_now WHERE workspace_id = NEW.workspace_id AND band = NEW.band
                      AND bucket = min(CAST(NEW.health / 10 AS INTEGER), 9) AND currency = coalesce(NEW.currency, ''));
    UPDATE portfolio_now SET accounts = accounts + 1, mrr_minor = mrr_minor + coalesce(NEW.mrr_minor, 0),
        expansion_mrr = expansion_mrr + CASE WHEN NEW.expansion >= 0.5 THEN coalesce(NEW.mrr_minor, 0) ELSE 0 END
    WHERE workspace_id = NEW.workspace_id AND band = NEW.band AND bucket = min(CAST(NEW.health / 10 AS INTEGER), 9)
      AND currency = coalesce(NEW.currency, '');
END;

CREATE TRIGGER portfolio_now_removed AFTER DELETE ON account_scores BEGIN
    UPDATE portfolio_now SET accounts = accounts - 1, mrr_minor = mrr_minor - coalesce(OLD.mrr_minor, 0),
        expansion_mrr = expansion_mrr - CASE WHEN OLD.expansion >= 0.5 THEN coalesce(OLD.mrr_minor, 0) ELSE 0 END
    WHERE workspace_id = OLD.workspace_id AND band = OLD.band AND bucket = min(CAST(OLD.health / 10 AS INTEGER), 9)
      AND currency = coalesce(OLD.currency, '');
END;

CREATE TRIGGER portfolio_now_changed AFTER UPDATE OF band, health, currency, mrr_minor, expansion ON account_scores BEGIN
    UPDATE portfolio_now SET accounts = accounts - 1, mrr_minor = mrr_minor - coalesce(OLD.mrr_minor, 0),
        expansion_mrr = expansion_mrr - CASE WHEN OLD.expansion >= 0.5 THEN coalesce(OLD.mrr_minor, 0) ELSE 0 END
    WHERE workspace_id = OLD.workspace_id AND band = OLD.band AND bucket = min(CAST(OLD.health / 10 AS INTEGER), 9)
      AND currency = coalesce(OLD.currency, '');
    INSERT INTO portfolio_now SELECT NEW.workspace_id, NEW.band, min(CAST(NEW.health / 10 AS INTEGER), 9), coalesce(NEW.currency, ''), 0, 0, 0
    WHERE NOT EXISTS (SELECT 1 FROM portfolio_now WHERE workspace_id = NEW.workspace_id AND band = NEW.band
                      AND bucket = min(CAST(NEW.health / 10 AS INTEGER), 9) AND currency = coalesce(NEW.currency, ''));
    UPDATE portfolio_now SET accounts = accounts + 1, mrr_minor = mrr_minor + coalesce(NEW.mrr_minor, 0),
        expansion_mrr = expansion_mrr + CASE WHEN NEW.expansion >= 0.5 THEN coalesce(NEW.mrr_minor, 0) ELSE 0 END
    WHERE workspace_id = NEW.workspace_id AND band = NEW.band AND bucket = min(CAST(NEW.health / 10 AS INTEGER), 9)
      AND currency = coalesce(NEW.currency, '');
END;

-- The accounts whose band changed, by health: the overview's list walks it and stops at 100.
CREATE INDEX account_scores_changed ON account_scores (workspace_id, health, account_id, band_since, band_from, band)
    WHERE band_since IS NOT NULL;

-- A plan and an owner together are found in one index (which also serves a plan alone).
DROP INDEX accounts_plan;
CREATE INDEX accounts_plan_owner ON accounts (workspace_id, json_extract(traits, '$.plan'), json_extract(traits, '$.csm_email'));
