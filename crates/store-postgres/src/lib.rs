//! PostgreSQL storage, for running several Steward processes against one database.
//!
//! Unlike SQLite there is no single writer: every process writes through its own pool, so
//! everything that must not race is settled by the database itself. The event log orders rows
//! by the transaction that wrote them (see `log.rs`), processing serializes on a row lock of the
//! workspace's cursor (see `processing.rs`), and migrations run under an advisory lock.
//!
//! All SQL is runtime `sqlx::query`/`query_as`: the compile-time macros check against one
//! database's schema, and the workspace serves two.

mod appends;
mod connectors;
mod journeys;
mod kpis;
mod log;
mod operators;
mod portfolio;
mod processing;
mod reads;
mod records;
mod scores;
mod segments;
mod usage;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;
use store::{Result, StoreError};

/// Schema migrations, in order; `schema_migrations` records the versions that have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_usage.sql"),
    include_str!("../migrations/0003_scores.sql"),
    include_str!("../migrations/0004_segments.sql"),
    include_str!("../migrations/0005_journeys.sql"),
    include_str!("../migrations/0006_account_changes.sql"),
    include_str!("../migrations/0007_connectors.sql"),
    include_str!("../migrations/0008_operators.sql"),
    include_str!("../migrations/0009_overview.sql"),
    include_str!("../migrations/0010_band_from_history.sql"),
    include_str!("../migrations/0011_segment_members_of.sql"),
    include_str!("../migrations/0012_vocabulary.sql"),
];

/// Connections per process. Appends are one statement each, so a few connections carry a busy
/// ingest; the rest leaves room for reads while processing holds one in a transaction.
const MAX_CONNECTIONS: u32 = 16;

/// How long a caller waits for a pooled connection before getting an error rather than hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct PgStore {
    pool: PgPool,
    appends: appends::Appender,
}

impl PgStore {
    /// Connects, runs migrations. `url` like `postgres://postgres@127.0.0.1:5432/test`.
    pub async fn connect(url: &str) -> Result<PgStore> {
        PgStore::open(url, None).await
    }

    /// Same, but every connection uses `search_path = schema` (created if missing): used by
    /// tests for isolation. `schema` must be a plain lower-case identifier.
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<PgStore> {
        if !is_plain_identifier(schema) {
            return Err(StoreError::Backend(format!(
                "schema name {schema:?} must be 1 to 63 characters of a-z, 0-9 and _, not starting with a digit"
            )));
        }
        PgStore::open(url, Some(schema)).await
    }

    /// Waits for connections in use to be returned, then closes them all.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn open(url: &str, schema: Option<&str>) -> Result<PgStore> {
        let mut options =
            PgConnectOptions::from_str(url).map_err(|e| StoreError::Backend(format!("database url: {e}")))?;
        if options.get_application_name().is_none() {
            // So that an operator looking at pg_stat_activity (say, for a transaction holding
            // the log back) can tell Steward's connections apart.
            options = options.application_name("steward");
        }
        if let Some(schema) = schema {
            // A startup parameter rather than a `SET` after connecting: no extra round trip,
            // and a connection can never be used before it applies.
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(db_error)?;
        migrate(&pool, schema).await?;
        let appends = appends::Appender::start(pool.clone());
        Ok(PgStore { pool, appends })
    }
}

/// Names that need no quoting anywhere (in `search_path` or DDL), so none is misread.
fn is_plain_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Applies the migrations not yet recorded, all in one transaction.
///
/// Processes starting at once against an empty database would otherwise race to create the
/// same tables; the transaction-scoped advisory lock makes the others wait and then find the
/// work done. The lock is keyed by schema, so isolated test schemas migrate in parallel.
async fn migrate(pool: &PgPool, schema: Option<&str>) -> Result<()> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key(&format!("steward.migrations:{}", schema.unwrap_or_default())))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    if let Some(schema) = schema {
        // Checked by `is_plain_identifier`: safe to splice into DDL, which cannot take binds.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}")))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
    }
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    bigint PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    let done: i64 = sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM schema_migrations")
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        let version = i as i64 + 1;
        // A migration file holds several statements: the simple query protocol runs them all.
        sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(db_error)?;
        sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tracing::info!(migration = version, "migrated the PostgreSQL schema");
    }
    tx.commit().await.map_err(db_error)
}

/// A stable 64-bit key for an advisory lock (FNV-1a): the same in every process and release.
fn lock_key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// Maps a database error to the store's error kinds.
pub(crate) fn db_error(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::PoolTimedOut = e {
        return StoreError::Busy("no database connection came free in time".into());
    }
    if let sqlx::Error::Database(db) = &e {
        match db.code().as_deref() {
            // disk_full
            Some("53100") => return StoreError::Full(db.message().to_owned()),
            // Class 23, integrity constraint violation: as SQLite's ConstraintViolation, which
            // the other backend maps to Conflict, so callers see the same error from both.
            Some(code) if code.starts_with("23") => return StoreError::Conflict("a record with that key"),
            _ => {}
        }
    }
    StoreError::Backend(e.to_string())
}

/// Now, to the microsecond: what timestamptz holds, so a value reads back equal.
pub(crate) fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// A column that must parse as one of Steward's own values; a failure means a corrupt row.
pub(crate) fn parse_col<T: FromStr>(s: &str) -> Result<T> {
    s.parse().map_err(|_| StoreError::Backend(format!("unexpected stored value {s:?}")))
}

pub(crate) fn account_id(s: &str) -> Result<domain::AccountId> {
    domain::AccountId::parse(s).map_err(|e| StoreError::Backend(e.to_string()))
}

mod store_impl {
    //! [`store::Store`] for PostgreSQL: each operation delegates to the module that owns it.
    use super::PgStore;
    use async_trait::async_trait;
    use domain::{AccountId, ApiKey, IdentityKey, KeyHash, NewEvent, Timestamp, WorkspaceId};
    use store::*;

    #[async_trait]
    impl Store for PgStore {
        fn backend(&self) -> &'static str {
            "postgres"
        }
        async fn create_workspace(&self, name: &str) -> Result<Workspace> {
            self.new_workspace(name).await
        }
        async fn get_workspace(&self, id: &WorkspaceId) -> Result<Option<Workspace>> {
            Ok(self.workspaces(Some(id)).await?.pop())
        }
        async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
            self.workspaces(None).await
        }
        async fn insert_key(&self, key: &ApiKey) -> Result<()> {
            self.add_key(key).await
        }
        async fn find_key(&self, hash: &KeyHash) -> Result<Option<ApiKey>> {
            self.key_by_hash(hash).await
        }
        async fn list_keys(&self, ws: &WorkspaceId) -> Result<Vec<ApiKey>> {
            self.keys(ws).await
        }
        async fn revoke_key(&self, ws: &WorkspaceId, key_id: &str, at: Timestamp) -> Result<bool> {
            self.revoke(ws, key_id, at).await
        }
        async fn insert_operator(&self, op: &Operator) -> Result<()> {
            self.add_operator(op).await
        }
        async fn find_operator_by_email(&self, ws: &WorkspaceId, email: &str) -> Result<Option<Operator>> {
            Ok(self.operators(ws, Some(email)).await?.pop())
        }
        async fn list_operators(&self, ws: &WorkspaceId) -> Result<Vec<Operator>> {
            self.operators(ws, None).await
        }
        async fn get_operator(&self, ws: &WorkspaceId, operator_id: &str) -> Result<Option<Operator>> {
            self.operator_by_id(ws, operator_id).await
        }
        async fn set_operator_disabled(
            &self,
            ws: &WorkspaceId,
            operator_id: &str,
            at: Option<Timestamp>,
        ) -> Result<bool> {
            self.disable_operator(ws, operator_id, at).await
        }
        async fn set_operator_password(&self, ws: &WorkspaceId, operator_id: &str, hash: &str) -> Result<bool> {
            self.operator_password(ws, operator_id, hash).await
        }
        async fn insert_session(&self, session: &OperatorSession) -> Result<()> {
            self.add_session(session).await
        }
        async fn find_session(&self, token_hash: &str) -> Result<Option<SignedIn>> {
            self.session(token_hash).await
        }
        async fn touch_session(&self, token_hash: &str, at: Timestamp) -> Result<()> {
            self.touch(token_hash, at).await
        }
        async fn record_sign_in_failure(&self, key: &str, at: Timestamp, forget_before: Timestamp) -> Result<()> {
            self.add_failure(key, at, forget_before).await
        }
        async fn sign_in_failures(&self, key: &str, since: Timestamp) -> Result<(u64, Option<Timestamp>)> {
            self.failures(key, since).await
        }
        async fn clear_sign_in_failures(&self, key: &str) -> Result<()> {
            self.clear_failures(key).await
        }
        async fn delete_session(&self, token_hash: &str) -> Result<bool> {
            self.end_session(token_hash).await
        }
        async fn append_audit(&self, entry: &AuditEntry) -> Result<i64> {
            self.add_audit(entry).await
        }
        async fn list_audit(&self, ws: &WorkspaceId, before: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>> {
            self.audit(ws, before, limit).await
        }
        async fn append_events(&self, ws: &WorkspaceId, events: &[NewEvent]) -> Result<AppendReport> {
            self.appends.append(ws, events).await
        }
        async fn append_event_batches(&self, ws: &WorkspaceId, batches: &[Vec<NewEvent>]) -> Result<BatchesReport> {
            // In turn, so that the log keeps their order; each is one statement of the appender.
            // Positions are not known before the commit orders them: no placement.
            let mut report = AppendReport::default();
            for batch in batches.iter().filter(|b| !b.is_empty()) {
                let r = self.appends.append(ws, batch).await?;
                report.stored += r.stored;
                report.duplicates += r.duplicates;
            }
            Ok(BatchesReport { report, placement: None })
        }
        async fn read_log_with(
            &self,
            ws: &WorkspaceId,
            after: LogPosition,
            limit: usize,
            payloads: store::Payloads,
        ) -> Result<Vec<LoggedEvent>> {
            self.read_log_after(ws, after, limit, payloads).await
        }
        async fn log_status(&self, ws: &WorkspaceId) -> Result<LogStatus> {
            self.status(ws).await
        }
        async fn load_identities(
            &self,
            ws: &WorkspaceId,
            keys: &[IdentityKey],
        ) -> Result<Vec<(IdentityKey, KnownPerson)>> {
            self.identities(ws, keys).await
        }
        async fn apply_changes(
            &self,
            ws: &WorkspaceId,
            from: LogPosition,
            to: LogPosition,
            changes: &Changes,
        ) -> Result<bool> {
            self.apply(ws, from, to, changes).await
        }
        async fn reset_processing(&self, ws: &WorkspaceId) -> Result<()> {
            self.reset(ws).await
        }
        async fn list_accounts(&self, ws: &WorkspaceId, page: &PageRequest) -> Result<Page<Account>> {
            self.accounts(ws, page).await
        }
        async fn list_account_records(
            &self,
            ws: &WorkspaceId,
            page: &PageRequest,
            traits: &[String],
        ) -> Result<Page<Account>> {
            self.account_records(ws, page, traits).await
        }
        async fn get_account(&self, ws: &WorkspaceId, id: &AccountId) -> Result<Option<Account>> {
            self.account(ws, id).await
        }
        async fn account_people(&self, ws: &WorkspaceId, id: &AccountId, page: &PageRequest) -> Result<Page<Person>> {
            self.people_of(ws, id, page).await
        }
        async fn account_timeline(
            &self,
            ws: &WorkspaceId,
            id: &AccountId,
            page: &PageRequest,
        ) -> Result<Page<StoredEvent>> {
            self.timeline(ws, id, page).await
        }
        async fn get_person(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Person>> {
            self.find_person(ws, id).await
        }
        async fn list_events(
            &self,
            ws: &WorkspaceId,
            filter: &EventFilter,
            page: &PageRequest,
        ) -> Result<Page<StoredEvent>> {
            self.events(ws, filter, page).await
        }
        async fn trait_history(&self, ws: &WorkspaceId, subject: &TraitSubject) -> Result<Vec<TraitChange>> {
            self.traits_history(ws, subject).await
        }
        async fn account_usage(
            &self,
            ws: &WorkspaceId,
            account: &AccountId,
            from: chrono::NaiveDate,
            to: chrono::NaiveDate,
        ) -> Result<Vec<DailyUsage>> {
            self.usage_of(ws, account, from, to).await
        }
        async fn accounts_usage(
            &self,
            ws: &WorkspaceId,
            account: Option<&AccountId>,
            from: chrono::NaiveDate,
            to: chrono::NaiveDate,
        ) -> Result<Vec<UsageRow>> {
            self.usage_rows(ws, account, from, to).await
        }
        async fn accounts_usage_each(
            &self,
            ws: &WorkspaceId,
            ranges: &[(AccountId, chrono::NaiveDate, chrono::NaiveDate)],
        ) -> Result<Vec<UsageRow>> {
            self.usage_rows_each(ws, ranges).await
        }
        async fn upsert_subscription(&self, ws: &WorkspaceId, sub: &Subscription) -> Result<bool> {
            self.put_subscription(ws, sub).await
        }
        async fn account_subscriptions(&self, ws: &WorkspaceId, id: &AccountId) -> Result<Vec<Subscription>> {
            self.subscriptions_of(ws, id).await
        }
        async fn upsert_ticket(&self, ws: &WorkspaceId, ticket: &Ticket) -> Result<bool> {
            self.put_ticket(ws, ticket).await
        }
        async fn account_tickets(&self, ws: &WorkspaceId, id: &AccountId) -> Result<Vec<Ticket>> {
            self.tickets_of(ws, id).await
        }
        async fn list_subscriptions(&self, ws: &WorkspaceId) -> Result<Vec<Subscription>> {
            self.all_subscriptions(ws).await
        }
        async fn list_tickets(&self, ws: &WorkspaceId, since: Timestamp) -> Result<Vec<Ticket>> {
            self.all_tickets(ws, since).await
        }
        async fn put_scores(&self, ws: &WorkspaceId, scores: &[AccountScore]) -> Result<()> {
            PgStore::put_scores(self, ws, scores).await
        }
        async fn put_score_history(&self, ws: &WorkspaceId, scores: &[AccountScore]) -> Result<()> {
            self.put_history(ws, scores).await
        }
        async fn put_account_score(
            &self,
            ws: &WorkspaceId,
            score: &AccountScore,
            signals: &[AlertSignal],
            at: Timestamp,
        ) -> Result<AlertSync> {
            self.put_one_score(ws, score, signals, at).await
        }
        async fn account_records(
            &self,
            ws: &WorkspaceId,
            id: &AccountId,
            usage: (chrono::NaiveDate, chrono::NaiveDate),
            scores: (chrono::NaiveDate, chrono::NaiveDate),
        ) -> Result<AccountRecords> {
            self.records_of(ws, id, usage, scores).await
        }
        async fn account_score(&self, ws: &WorkspaceId, id: &AccountId) -> Result<Option<AccountScore>> {
            self.score_of(ws, id).await
        }
        async fn score_history(
            &self,
            ws: &WorkspaceId,
            id: &AccountId,
            from: chrono::NaiveDate,
            to: chrono::NaiveDate,
        ) -> Result<Vec<ScorePoint>> {
            self.history_of(ws, id, from, to).await
        }
        async fn score_points_as_of(
            &self,
            ws: &WorkspaceId,
            day: chrono::NaiveDate,
        ) -> Result<Vec<(AccountId, ScorePoint)>> {
            self.points_as_of(ws, day).await
        }
        async fn get_setting(&self, ws: &WorkspaceId, key: &str) -> Result<Option<serde_json::Value>> {
            self.setting(ws, key).await
        }
        async fn put_setting(
            &self,
            ws: &WorkspaceId,
            key: &str,
            value: &serde_json::Value,
            at: Timestamp,
        ) -> Result<()> {
            self.set_setting(ws, key, value, at).await
        }
        async fn put_setting_entry(
            &self,
            ws: &WorkspaceId,
            key: &str,
            name: &str,
            value: Option<&serde_json::Value>,
            at: Timestamp,
        ) -> Result<bool> {
            self.set_setting_entry(ws, key, name, value, at).await
        }
        async fn portfolio(&self, ws: &WorkspaceId, compare_day: chrono::NaiveDate) -> Result<Portfolio> {
            self.portfolio_of(ws, compare_day).await
        }
        async fn put_kpis(&self, ws: &WorkspaceId, report: &store::KpiReport) -> Result<()> {
            self.replace_kpis(ws, report).await
        }
        async fn kpis(&self, ws: &WorkspaceId) -> Result<Option<store::KpiReport>> {
            self.kpi_report(ws).await
        }
        async fn portfolio_trend(
            &self,
            ws: &WorkspaceId,
            from: chrono::NaiveDate,
            to: chrono::NaiveDate,
        ) -> Result<Vec<PortfolioDay>> {
            self.portfolio_days(ws, from, to).await
        }
        async fn count_accounts(&self, ws: &WorkspaceId, query: &AccountQuery, at_most: Option<u64>) -> Result<u64> {
            self.count_scored_accounts(ws, query, at_most).await
        }
        async fn query_accounts(
            &self,
            ws: &WorkspaceId,
            query: &AccountQuery,
            page: &PageRequest,
        ) -> Result<Page<ScoredAccount>> {
            self.scored_accounts(ws, query, page).await
        }
        async fn insert_model(&self, ws: &WorkspaceId, model: &ModelRecord) -> Result<()> {
            self.add_model(ws, model).await
        }
        async fn list_models(&self, ws: &WorkspaceId) -> Result<Vec<ModelRecord>> {
            self.models(ws).await
        }
        async fn active_model(&self, ws: &WorkspaceId, kind: ModelKind) -> Result<Option<ModelRecord>> {
            self.active(ws, kind).await
        }
        async fn sync_alerts(
            &self,
            ws: &WorkspaceId,
            scope: AlertScope<'_>,
            signals: &[AlertSignal],
            at: Timestamp,
        ) -> Result<AlertSync> {
            self.sync(ws, scope, signals, at).await
        }
        async fn list_alerts(&self, ws: &WorkspaceId, filter: &AlertFilter, page: &PageRequest) -> Result<Page<Alert>> {
            self.alerts(ws, filter, page).await
        }
        async fn account_changes(
            &self,
            ws: &WorkspaceId,
            after: LogPosition,
            limit: usize,
        ) -> Result<Vec<AccountChange>> {
            self.changes_after(ws, after, limit).await
        }
        async fn prune_account_changes(
            &self,
            ws: &WorkspaceId,
            through: LogPosition,
            before: Timestamp,
        ) -> Result<u64> {
            self.prune_changes(ws, through, before).await
        }
        async fn get_alert(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Alert>> {
            self.alert(ws, id).await
        }
        async fn update_alert(
            &self,
            ws: &WorkspaceId,
            id: &str,
            action: &AlertAction,
            by: &str,
            at: Timestamp,
        ) -> Result<Option<Alert>> {
            self.act_on_alert(ws, id, action, by, at).await
        }
        async fn list_people(&self, ws: &WorkspaceId, page: &PageRequest) -> Result<Page<PersonSummary>> {
            PgStore::list_people(self, ws, page).await
        }
        async fn vocabulary(&self, ws: &WorkspaceId) -> Result<Vocabulary> {
            PgStore::vocabulary(self, ws).await
        }
        async fn insert_segment(&self, ws: &WorkspaceId, segment: &SegmentRecord) -> Result<()> {
            PgStore::insert_segment(self, ws, segment).await
        }
        async fn update_segment(&self, ws: &WorkspaceId, segment: &SegmentRecord) -> Result<bool> {
            PgStore::update_segment(self, ws, segment).await
        }
        async fn delete_segment(&self, ws: &WorkspaceId, id: &str) -> Result<bool> {
            PgStore::delete_segment(self, ws, id).await
        }
        async fn get_segment(&self, ws: &WorkspaceId, id: &str) -> Result<Option<SegmentRecord>> {
            PgStore::get_segment(self, ws, id).await
        }
        async fn list_segments(&self, ws: &WorkspaceId) -> Result<Vec<SegmentRecord>> {
            PgStore::list_segments(self, ws).await
        }
        async fn update_memberships(
            &self,
            ws: &WorkspaceId,
            segment_id: &str,
            updates: &[MembershipUpdate],
            at: Timestamp,
        ) -> Result<Vec<SegmentChange>> {
            PgStore::update_memberships(self, ws, segment_id, updates, at).await
        }
        async fn segment_members(
            &self,
            ws: &WorkspaceId,
            segment_id: &str,
            page: &PageRequest,
        ) -> Result<Page<SegmentMember>> {
            PgStore::segment_members(self, ws, segment_id, page).await
        }
        async fn segment_size(&self, ws: &WorkspaceId, segment_id: &str) -> Result<u64> {
            PgStore::segment_size(self, ws, segment_id).await
        }
        async fn memberships_of(&self, ws: &WorkspaceId, subject_id: &str) -> Result<Vec<Membership>> {
            PgStore::memberships_of(self, ws, subject_id).await
        }
        async fn due_checks(&self, ws: &WorkspaceId, now: Timestamp, limit: usize) -> Result<Vec<DueCheck>> {
            PgStore::due_checks(self, ws, now, limit).await
        }
        async fn segment_changes(&self, ws: &WorkspaceId, after: i64, limit: usize) -> Result<Vec<SegmentChange>> {
            PgStore::segment_changes(self, ws, after, limit).await
        }

        async fn put_journey(&self, ws: &WorkspaceId, draft: &JourneyDraft, at: Timestamp) -> Result<JourneyRecord> {
            PgStore::put_journey(self, ws, draft, at).await
        }
        async fn get_journey(&self, ws: &WorkspaceId, id: &str) -> Result<Option<JourneyRecord>> {
            PgStore::get_journey(self, ws, id).await
        }
        async fn list_journeys(&self, ws: &WorkspaceId) -> Result<Vec<JourneyRecord>> {
            PgStore::list_journeys(self, ws).await
        }
        async fn journey_version(&self, ws: &WorkspaceId, id: &str, version: i64) -> Result<Option<serde_json::Value>> {
            PgStore::journey_version(self, ws, id, version).await
        }
        async fn set_journey_enabled(&self, ws: &WorkspaceId, id: &str, enabled: bool, at: Timestamp) -> Result<bool> {
            PgStore::set_journey_enabled(self, ws, id, enabled, at).await
        }
        async fn start_runs(&self, ws: &WorkspaceId, starts: &[RunStart]) -> Result<Vec<bool>> {
            PgStore::start_runs(self, ws, starts).await
        }
        async fn due_runs(&self, ws: &WorkspaceId, now: Timestamp, limit: usize) -> Result<Vec<Run>> {
            PgStore::due_runs(self, ws, now, limit).await
        }
        async fn waiting_runs(&self, ws: &WorkspaceId, keys: &[String]) -> Result<Vec<Run>> {
            PgStore::waiting_runs(self, ws, keys).await
        }
        async fn advance_runs(&self, ws: &WorkspaceId, updates: &[RunUpdate]) -> Result<Vec<bool>> {
            PgStore::advance_runs(self, ws, updates).await
        }
        async fn get_run(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Run>> {
            PgStore::get_run(self, ws, id).await
        }
        async fn list_runs(&self, ws: &WorkspaceId, filter: &RunFilter, page: &PageRequest) -> Result<Page<Run>> {
            PgStore::list_runs(self, ws, filter, page).await
        }
        async fn run_steps(&self, ws: &WorkspaceId, run_id: &str) -> Result<Vec<StepRecord>> {
            PgStore::run_steps(self, ws, run_id).await
        }
        async fn journey_stats(&self, ws: &WorkspaceId, id: &str) -> Result<JourneyStats> {
            PgStore::journey_stats(self, ws, id).await
        }
        async fn claim_messages(
            &self,
            ws: &WorkspaceId,
            now: Timestamp,
            lease_until: Timestamp,
            limit: usize,
        ) -> Result<Vec<OutboxMessage>> {
            PgStore::claim_messages(self, ws, now, lease_until, limit).await
        }
        async fn update_messages(&self, ws: &WorkspaceId, updates: &[MessageUpdate], at: Timestamp) -> Result<()> {
            PgStore::update_messages(self, ws, updates, at).await
        }
        async fn get_message(&self, ws: &WorkspaceId, id: &str) -> Result<Option<OutboxMessage>> {
            PgStore::get_message(self, ws, id).await
        }
        async fn list_messages(
            &self,
            ws: &WorkspaceId,
            filter: &MessageFilter,
            page: &PageRequest,
        ) -> Result<Page<OutboxMessage>> {
            PgStore::list_messages(self, ws, filter, page).await
        }
        async fn message_attempts(&self, ws: &WorkspaceId, id: &str) -> Result<Vec<Attempt>> {
            PgStore::message_attempts(self, ws, id).await
        }
        async fn replay_message(&self, ws: &WorkspaceId, id: &str, now: Timestamp) -> Result<Option<OutboxMessage>> {
            PgStore::replay_message(self, ws, id, now).await
        }
        async fn messages_to(
            &self,
            ws: &WorkspaceId,
            person_id: &str,
            channel: Channel,
            since: Timestamp,
        ) -> Result<u64> {
            PgStore::messages_to(self, ws, person_id, channel, since).await
        }
        async fn block_endpoint(&self, ws: &WorkspaceId, endpoint: &str, reason: &str, at: Timestamp) -> Result<()> {
            PgStore::block_endpoint(self, ws, endpoint, reason, at).await
        }
        async fn unblock_endpoint(&self, ws: &WorkspaceId, endpoint: &str) -> Result<bool> {
            PgStore::unblock_endpoint(self, ws, endpoint).await
        }
        async fn blocked_endpoints(&self, ws: &WorkspaceId) -> Result<Vec<(String, String, Timestamp)>> {
            PgStore::blocked_endpoints(self, ws).await
        }
        async fn list_tasks(&self, ws: &WorkspaceId, filter: &TaskFilter, page: &PageRequest) -> Result<Page<Task>> {
            PgStore::list_tasks(self, ws, filter, page).await
        }
        async fn get_task(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Task>> {
            PgStore::get_task(self, ws, id).await
        }
        async fn insert_task(&self, ws: &WorkspaceId, task: &Task) -> Result<()> {
            PgStore::insert_task(self, ws, task).await
        }
        async fn update_task(
            &self,
            ws: &WorkspaceId,
            id: &str,
            status: TaskStatus,
            by: &str,
            at: Timestamp,
        ) -> Result<Option<Task>> {
            PgStore::update_task(self, ws, id, status, by, at).await
        }
        async fn create_connector(&self, ws: &WorkspaceId, connector: &ConnectorRecord) -> Result<()> {
            PgStore::create_connector(self, ws, connector).await
        }
        async fn update_connector(&self, ws: &WorkspaceId, connector: &ConnectorRecord) -> Result<bool> {
            PgStore::update_connector(self, ws, connector).await
        }
        async fn get_connector(&self, ws: &WorkspaceId, provider: &str) -> Result<Option<ConnectorRecord>> {
            PgStore::get_connector(self, ws, provider).await
        }
        async fn list_connectors(&self, ws: &WorkspaceId) -> Result<Vec<ConnectorRecord>> {
            PgStore::list_connectors(self, ws).await
        }
        async fn delete_connector(&self, ws: &WorkspaceId, provider: &str) -> Result<bool> {
            PgStore::delete_connector(self, ws, provider).await
        }
        async fn record_connector_progress(
            &self,
            ws: &WorkspaceId,
            provider: &str,
            progress: &ConnectorProgress,
            at: Timestamp,
        ) -> Result<bool> {
            PgStore::record_connector_progress(self, ws, provider, progress, at).await
        }
        async fn mark_connector_sync_again(&self, ws: &WorkspaceId, provider: &str, at: Timestamp) -> Result<bool> {
            PgStore::mark_connector_sync_again(self, ws, provider, at).await
        }
        async fn replace_connector_secrets(
            &self,
            ws: &WorkspaceId,
            provider: &str,
            old: &str,
            new: &str,
        ) -> Result<bool> {
            PgStore::replace_connector_secrets(self, ws, provider, old, new).await
        }
        async fn put_provider_objects(
            &self,
            ws: &WorkspaceId,
            provider: &str,
            objects: &[ProviderObject],
        ) -> Result<Vec<bool>> {
            PgStore::put_provider_objects(self, ws, provider, objects).await
        }
        async fn provider_objects(
            &self,
            ws: &WorkspaceId,
            provider: &str,
            query: &ObjectQuery,
        ) -> Result<Vec<ProviderObject>> {
            PgStore::provider_objects(self, ws, provider, query).await
        }
        async fn link_provider_object(
            &self,
            ws: &WorkspaceId,
            provider: &str,
            kind: &str,
            object_id: &str,
            account: &AccountId,
            matched_by: &str,
        ) -> Result<bool> {
            PgStore::link_provider_object(self, ws, provider, kind, object_id, account, matched_by).await
        }
        async fn add_connector_error(&self, ws: &WorkspaceId, provider: &str, error: &ConnectorError) -> Result<()> {
            PgStore::add_connector_error(self, ws, provider, error).await
        }
        async fn connector_errors(
            &self,
            ws: &WorkspaceId,
            provider: &str,
            limit: usize,
        ) -> Result<Vec<ConnectorError>> {
            PgStore::connector_errors(self, ws, provider, limit).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_must_need_no_quoting() {
        assert!(is_plain_identifier("steward_test_abc123"));
        assert!(is_plain_identifier("_x"));
        for bad in ["", "1abc", "Upper", "a-b", "a b", "a\"b", &"x".repeat(64)] {
            assert!(!is_plain_identifier(bad), "{bad:?}");
        }
    }

    #[test]
    fn lock_keys_are_stable() {
        assert_eq!(lock_key(""), 0xcbf2_9ce4_8422_2325_u64 as i64);
        assert_ne!(lock_key("steward.migrations:a"), lock_key("steward.migrations:b"));
    }
}
