//! The storage contract, on a fresh SQLite database per test.

use store_sqlite::SqliteStore;

async fn fresh() -> Option<SqliteStore> {
    // The directory lives as long as the test process; each test gets its own.
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    Some(SqliteStore::open_in_dir(dir.path()).unwrap())
}

store::contract_tests!(fresh);
