-- An account's first latest score takes its band change from the history when past days
-- were scored into it first (`put_score_history`: the demo, `steward score --history`): the
-- band it had before its latest change and the day of that change, as they would be had
-- each of those days been scored live. The insert's transition table holds only the rows
-- inserted (not those an upsert updated), so rescoring accounts already scored pays nothing;
-- the update names no column the row triggers watch.
CREATE FUNCTION account_scores_band_from_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM added) THEN
        RETURN NULL;
    END IF;
    UPDATE account_scores s SET band_from = c.band_from, band_since = c.band_since
    FROM (SELECT a.workspace_id, a.account_id, o.band AS band_from,
                 -- The day after the last point of another band: the first in the score's band.
                 coalesce((SELECT min(h.day) FROM score_history h
                           WHERE h.workspace_id = a.workspace_id AND h.account_id = a.account_id
                             AND h.day > o.day AND h.day < a.day), a.day) AS band_since
          FROM added a
          CROSS JOIN LATERAL (SELECT h.band, h.day FROM score_history h
                              WHERE h.workspace_id = a.workspace_id AND h.account_id = a.account_id
                                AND h.day < a.day AND h.band <> a.band
                              ORDER BY h.day DESC LIMIT 1) o) c
    WHERE s.workspace_id = c.workspace_id AND s.account_id = c.account_id;
    RETURN NULL;
END $$;

CREATE TRIGGER account_scores_band_from_history AFTER INSERT ON account_scores
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION account_scores_band_from_history();

-- Latest scores written before, first on top of such a history and never changed since,
-- get the same.
UPDATE account_scores s SET band_from = c.band_from, band_since = c.band_since
FROM (SELECT a.workspace_id, a.account_id, o.band AS band_from,
             coalesce((SELECT min(h.day) FROM score_history h
                       WHERE h.workspace_id = a.workspace_id AND h.account_id = a.account_id
                         AND h.day > o.day AND h.day < a.day), a.day) AS band_since
      FROM account_scores a
      CROSS JOIN LATERAL (SELECT h.band, h.day FROM score_history h
                          WHERE h.workspace_id = a.workspace_id AND h.account_id = a.account_id
                            AND h.day < a.day AND h.band <> a.band
                          ORDER BY h.day DESC LIMIT 1) o
      WHERE a.band_from IS NULL) c
WHERE s.workspace_id = c.workspace_id AND s.account_id = c.account_id;
