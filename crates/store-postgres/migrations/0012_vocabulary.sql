-- A workspace's vocabulary (the trait keys and event names a segment's condition may use),
-- read as the few distinct values these indexes hold, each found with one seek (see
-- `vocabulary`), instead of a walk over every trait change and every month of usage: about a
-- second at 100,000 accounts, paid on each check of a condition as it is typed.
CREATE INDEX trait_history_keys ON trait_history (workspace_id, subject_kind, key);
CREATE INDEX usage_months_metrics ON usage_months (workspace_id, metric);
