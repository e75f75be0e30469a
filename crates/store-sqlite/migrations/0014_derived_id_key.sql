-- Derived message ids (`import_<key>_<n>`: an import's rows without one) key on a keyed mix
-- of their parts instead of SHA-256 of their text (see `ids.rs`, `IdHashing`), with this
-- database's own random key, in a database whose log is empty when this runs. A log that
-- already holds ids keeps them all hashed as they were.
INSERT INTO store_meta (key, value)
SELECT 'derived_id_key_0', random() WHERE NOT EXISTS (SELECT 1 FROM event_blocks);
INSERT INTO store_meta (key, value)
SELECT 'derived_id_key_1', random() WHERE NOT EXISTS (SELECT 1 FROM event_blocks);
