-- The portfolio by day (store::portfolio): the score history summed by day, band and
-- currency ('' for none), kept by statement triggers as history rows are written, so that
-- the overview's trend reads a few hundred rows instead of every account's history. Each
-- statement applies its changes to the sums in key order, so two writers never wait on
-- each other's rows in opposite orders. An account's MRR counts in the expansion pipeline
-- from an expansion propensity of 0.5 (store::portfolio::EXPANSION_PIPELINE_MIN).
CREATE TABLE portfolio_days (
    workspace_id  text COLLATE "C" NOT NULL,
    day           date NOT NULL,
    band          text NOT NULL,
    currency      text NOT NULL,
    accounts      bigint NOT NULL,
    mrr_minor     bigint NOT NULL,
    expansion_mrr bigint NOT NULL,
    PRIMARY KEY (workspace_id, day, band, currency)
);

INSERT INTO portfolio_days
SELECT workspace_id, day, band, coalesce(currency, ''), count(*), coalesce(sum(mrr_minor), 0),
       coalesce(sum(mrr_minor) FILTER (WHERE expansion >= 0.5), 0)
FROM score_history GROUP BY 1, 2, 3, 4;

CREATE FUNCTION portfolio_days_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO portfolio_days AS p
        SELECT workspace_id, day, band, coalesce(currency, ''), count(*), coalesce(sum(mrr_minor), 0),
               coalesce(sum(mrr_minor) FILTER (WHERE expansion >= 0.5), 0)
        FROM added GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (workspace_id, day, band, currency) DO UPDATE SET
            accounts = p.accounts + excluded.accounts, mrr_minor = p.mrr_minor + excluded.mrr_minor,
            expansion_mrr = p.expansion_mrr + excluded.expansion_mrr;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO portfolio_days AS p
        SELECT workspace_id, day, band, currency, sum(n), sum(mrr), sum(exp)
        FROM (SELECT workspace_id, day, band, coalesce(currency, '') AS currency, 1 AS n,
                     coalesce(mrr_minor, 0) AS mrr, CASE WHEN expansion >= 0.5 THEN coalesce(mrr_minor, 0) ELSE 0 END AS exp
              FROM added
              UNION ALL
              SELECT workspace_id, day, band, coalesce(currency, ''), -1,
                     -coalesce(mrr_minor, 0), CASE WHEN expansion >= 0.5 THEN -coalesce(mrr_minor, 0) ELSE 0 END
              FROM removed) d
        GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (workspace_id, day, band, currency) DO UPDATE SET
            accounts = p.accounts + excluded.accounts, mrr_minor = p.mrr_minor + excluded.mrr_minor,
            expansion_mrr = p.expansion_mrr + excluded.expansion_mrr;
    ELSE
        INSERT INTO portfolio_days AS p
        SELECT workspace_id, day, band, coalesce(currency, ''), -count(*), -coalesce(sum(mrr_minor), 0),
               -coalesce(sum(mrr_minor) FILTER (WHERE expansion >= 0.5), 0)
        FROM removed GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (workspace_id, day, band, currency) DO UPDATE SET
            accounts = p.accounts + excluded.accounts, mrr_minor = p.mrr_minor + excluded.mrr_minor,
            expansion_mrr = p.expansion_mrr + excluded.expansion_mrr;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER portfolio_days_added AFTER INSERT ON score_history
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION portfolio_days_apply();
CREATE TRIGGER portfolio_days_changed AFTER UPDATE ON score_history
    REFERENCING OLD TABLE AS removed NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION portfolio_days_apply();
CREATE TRIGGER portfolio_days_removed AFTER DELETE ON score_history
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION portfolio_days_apply();

-- The CS KPIs as last computed (store::kpis): one row per KPI and month.
CREATE TABLE kpi_months (
    workspace_id text COLLATE "C" NOT NULL,
    kpi          text COLLATE "C" NOT NULL,
    month        date NOT NULL,
    numerator    double precision NOT NULL,
    denominator  double precision NOT NULL,
    PRIMARY KEY (workspace_id, kpi, month)
);
CREATE TABLE kpi_reports (
    workspace_id text COLLATE "C" PRIMARY KEY,
    currency     text,
    computed_at  timestamptz NOT NULL
);

-- Failed sign-ins by email and by client address (`email:...`, `ip:...`), for the sign-in
-- rate limit shared by every process; kept a little longer than its window.
CREATE TABLE sign_in_failures (
    key text COLLATE "C" NOT NULL,
    at  timestamptz NOT NULL
);
CREATE INDEX sign_in_failures_key ON sign_in_failures (key, at);
CREATE INDEX sign_in_failures_at ON sign_in_failures (at);

-- The latest scores' numbers without their explanations, in account order: what the
-- overview aggregates, what counting a filtered accounts list reads, and what a list by
-- account filtered by a score walks.
CREATE INDEX account_scores_summary
    ON account_scores (workspace_id, account_id, day, health, band, churn_30d, expansion, mrr_minor, currency);

-- When each account's band last changed and from what, kept as its latest score is
-- written: the overview's "changed band this week" reads the few that changed, instead of
-- comparing every account with its history a week ago. Accounts scored before are given
-- the band of their history point a week before their latest day.
ALTER TABLE account_scores ADD COLUMN band_from text;
ALTER TABLE account_scores ADD COLUMN band_since date;
UPDATE account_scores s SET
    band_from = (SELECT h.band FROM score_history h WHERE h.workspace_id = s.workspace_id
                   AND h.account_id = s.account_id AND h.day <= s.day - 7
                 ORDER BY h.day DESC LIMIT 1);
UPDATE account_scores SET band_since = day WHERE band_from IS NOT NULL AND band_from <> band;

-- The portfolio now (store::portfolio): the latest scores summed by band, tenth of the
-- health range (9 holds 100) and currency, kept by statement triggers like
-- `portfolio_days`, so that the overview reads a few dozen rows however many accounts.
CREATE TABLE portfolio_now (
    workspace_id  text COLLATE "C" NOT NULL,
    band          text NOT NULL,
    bucket        int NOT NULL,
    currency      text NOT NULL,
    accounts      bigint NOT NULL,
    mrr_minor     bigint NOT NULL,
    expansion_mrr bigint NOT NULL,
    PRIMARY KEY (workspace_id, band, bucket, currency)
);

INSERT INTO portfolio_now
SELECT workspace_id, band, least(floor(health / 10)::int, 9), coalesce(currency, ''), count(*),
       coalesce(sum(mrr_minor), 0), coalesce(sum(mrr_minor) FILTER (WHERE expansion >= 0.5), 0)
FROM account_scores GROUP BY 1, 2, 3, 4;

CREATE FUNCTION portfolio_now_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO portfolio_now AS p
        SELECT workspace_id, band, least(floor(health / 10)::int, 9), coalesce(currency, ''), count(*),
               coalesce(sum(mrr_minor), 0), coalesce(sum(mrr_minor) FILTER (WHERE expansion >= 0.5), 0)
        FROM added GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (workspace_id, band, bucket, currency) DO UPDATE SET
            accounts = p.accounts + excluded.accounts, mrr_minor = p.mrr_minor + excluded.mrr_minor,
            expansion_mrr = p.expansion_mrr + excluded.expansion_mrr;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO portfolio_now AS p
        SELECT workspace_id, band, bucket, currency, sum(n), sum(mrr), sum(exp)
        FROM (SELECT workspace_id, band, least(floor(health / 10)::int, 9) AS bucket, coalesce(currency, '') AS currency,
                     1 AS n, coalesce(mrr_minor, 0) AS mrr,
                     CASE WHEN expansion >= 0.5 THEN coalesce(mrr_minor, 0) ELSE 0 END AS exp
              FROM added
              UNION ALL
              SELECT workspace_id, band, least(floor(health / 10)::int, 9), coalesce(currency, ''), -1,
                     -coalesce(mrr_minor, 0), CASE WHEN expansion >= 0.5 THEN -coalesce(mrr_minor, 0) ELSE 0 END
              FROM removed) d
        GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (workspace_id, band, bucket, currency) DO UPDATE SET
            accounts = p.accounts + excluded.accounts, mrr_minor = p.mrr_minor + excluded.mrr_minor,
            expansion_mrr = p.expansion_mrr + excluded.expansion_mrr;
    ELSE
        INSERT INTO portfolio_now AS p
        SELECT workspace_id, band, least(floor(health / 10)::int, 9), coalesce(currency, ''), -count(*),
               -coalesce(sum(mrr_minor), 0), -coalesce(sum(mrr_minor) FILTER (WHERE expansion >= 0.5), 0)
        FROM removed GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (workspace_id, band, bucket, currency) DO UPDATE SET
            accounts = p.accounts + excluded.accounts, mrr_minor = p.mrr_minor + excluded.mrr_minor,
            expansion_mrr = p.expansion_mrr + excluded.expansion_mrr;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER portfolio_now_added AFTER INSERT ON account_scores
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION portfolio_now_apply();
CREATE TRIGGER portfolio_now_changed AFTER UPDATE ON account_scores
    REFERENCING OLD TABLE AS removed NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION portfolio_now_apply();
CREATE TRIGGER portfolio_now_removed AFTER DELETE ON account_scores
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION portfolio_now_apply();

-- The accounts whose band changed, by health: the overview's list walks it and stops at 100.
CREATE INDEX account_scores_changed ON account_scores (workspace_id, health, account_id)
    INCLUDE (band_since, band_from, band) WHERE band_since IS NOT NULL;

-- A plan and an owner together are found in one index (which also serves a plan alone).
DROP INDEX accounts_plan;
CREATE INDEX accounts_plan_owner ON accounts (workspace_id, (traits->>'plan'), (traits->>'csm_email'));
