//! Connecting the tests to PostgreSQL: each test gets a fresh schema of its own.

use store_postgres::PgStore;

/// The database to test against, or None to skip; in CI the PostgreSQL run is mandatory.
pub fn database_url() -> Option<String> {
    match std::env::var("STEWARD_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "STEWARD_TEST_DATABASE_URL is not set: CI must run the PostgreSQL tests \
             (e.g. STEWARD_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test)"
        ),
        _ => None,
    }
}

/// A schema name no other test uses, so tests run in parallel on one database.
pub fn fresh_schema() -> String {
    format!("steward_test_{}", domain::random_token(16).to_lowercase())
}

/// A store on an empty schema of its own, or None when no database is configured.
#[allow(dead_code, reason = "each test binary uses the helpers it needs")]
pub async fn fresh() -> Option<PgStore> {
    let url = database_url()?;
    Some(PgStore::connect_in_schema(&url, &fresh_schema()).await.expect("connect to the test database"))
}
