-- An account's first latest score takes its band change from the history when past days
-- were scored into it first (`put_score_history`: the demo, `steward score --history`): the
-- band it had before its latest change and the day of that change, as they would be had
-- each of those days been scored live. Only a true insert fires this (an upsert that
-- updates fires the update triggers), so rescoring an account already scored pays nothing;
-- the update sets no column the other triggers watch.
CREATE TRIGGER account_scores_band_from_history AFTER INSERT ON account_scores
WHEN EXISTS (SELECT 1 FROM score_history h WHERE h.workspace_id = NEW.workspace_id
               AND h.account_id = NEW.account_id AND h.day < NEW.day AND h.band <> NEW.band)
BEGIN
    UPDATE account_scores SET
        band_from = (SELECT h.band FROM score_history h WHERE h.workspace_id = NEW.workspace_id
                       AND h.account_id = NEW.account_id AND h.day < NEW.day AND h.band <> NEW.band
                     ORDER BY h.day DESC LIMIT 1),
        -- The day after the last point of another band: the first in the score's band.
        band_since = coalesce(
            (SELECT min(h.day) FROM score_history h WHERE h.workspace_id = NEW.workspace_id
               AND h.account_id = NEW.account_id AND h.day < NEW.day
               AND h.day > (SELECT max(o.day) FROM score_history o WHERE o.workspace_id = NEW.workspace_id
                              AND o.account_id = NEW.account_id AND o.day < NEW.day AND o.band <> NEW.band)),
            NEW.day)
    WHERE workspace_id = NEW.workspace_id AND account_id = NEW.account_id;
END;

-- Latest scores written before, first on top of such a history and never changed since,
-- get the same.
UPDATE account_scores SET
    band_from = (SELECT h.band FROM score_history h WHERE h.workspace_id = account_scores.workspace_id
                   AND h.account_id = account_scores.account_id AND h.day < account_scores.day
                   AND h.band <> account_scores.band
                 ORDER BY h.day DESC LIMIT 1),
    band_since = coalesce(
        (SELECT min(h.day) FROM score_history h WHERE h.workspace_id = account_scores.workspace_id
           AND h.account_id = account_scores.account_id AND h.day < account_scores.day
           AND h.day > (SELECT max(o.day) FROM score_history o WHERE o.workspace_id = account_scores.workspace_id
                          AND o.account_id = account_scores.account_id AND o.day < account_scores.day
                          AND o.band <> account_scores.band)),
        account_scores.day)
WHERE band_from IS NULL AND EXISTS (
    SELECT 1 FROM score_history h WHERE h.workspace_id = account_scores.workspace_id
      AND h.account_id = account_scores.account_id AND h.day < account_scores.day AND h.band <> account_scores.band);
