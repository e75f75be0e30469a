//! Embedded SQLite storage, Steward's default: one database file in WAL mode under the data
//! directory, one writer thread that group-commits, and a pool of reader connections.
//!
//! Architecture Invariant: every write goes through [`writer::Writer`], so the log's `seq`
//! only grows and there is never lock contention between Steward's own writers. Other
//! processes (the CLI creating a key while a server runs) wait on SQLite's busy timeout.

mod block;
mod checkpoint;
mod connectors;
mod ids;
mod journeys;
mod kpis;
mod log;
mod operators;
mod owners;
mod portfolio;
mod processing;
mod reads;
mod records;
mod runs;
mod scores;
mod segments;
mod usage;
mod writer;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use store::{Result, StoreError};
use tokio::sync::Semaphore;

use writer::{Durability, Priority, Writer};

/// Schema migrations, in order; `PRAGMA user_version` records how many have run.
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
    include_str!("../migrations/0013_history_past.sql"),
    include_str!("../migrations/0014_derived_id_key.sql"),
];

const READERS: usize = 4;

pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
    checkpointer: checkpoint::Checkpointer,
    readers: Mutex<Vec<Connection>>,
    reader_permits: Semaphore,
    /// Workspace id → its number in this database (numbers never change).
    ws_numbers: std::sync::RwLock<std::collections::HashMap<domain::WorkspaceId, i64>>,
    /// Builds of `event_links` under way, by workspace number.
    link_builds: tokio::sync::Mutex<std::collections::HashMap<i64, owners::LinkBuild>>,
    /// How this database's message ids are hashed.
    hashing: ids::IdHashing,
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Backend(format!("create {}: {e}", dir.display())))?;
        }
        let conn = connect(&path, false)?;
        migrate(&conn)?;
        let hashing = ids::IdHashing::of(&conn)?;
        let ids = ids::RecentIds::new(lock_path(&path), hashing);
        let readers = (0..READERS).map(|_| connect(&path, true)).collect::<Result<Vec<_>>>()?;
        let writer = Writer::start(conn, ids);
        let checkpointer = checkpoint::Checkpointer::start(connect(&path, false)?, writer.stats.clone());
        Ok(SqliteStore {
            path,
            writer,
            checkpointer,
            ws_numbers: Default::default(),
            readers: Mutex::new(readers),
            reader_permits: Semaphore::new(READERS),
            link_builds: Default::default(),
            hashing,
        })
    }

    /// Opens the database in `dir`, as `steward serve --data-dir` does.
    pub fn open_in_dir(dir: impl AsRef<Path>) -> Result<SqliteStore> {
        SqliteStore::open(dir.as_ref().join("steward.db"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Transactions committed and pieces of work they carried: their ratio is the group size.
    pub fn commit_stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.writer.stats.transactions.load(Relaxed), self.writer.stats.jobs.load(Relaxed))
    }

    /// Finishes queued writes and stops the writer.
    pub fn close(&self) {
        let started = std::time::Instant::now();
        self.checkpointer.hurry();
        self.writer.close();
        let writer = started.elapsed();
        self.checkpointer.close();
        tracing::debug!(writer = ?writer, checkpointer = ?(started.elapsed() - writer), "closed the store");
    }

    async fn read<R: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<R> + Send + 'static) -> Result<R> {
        let _permit = self.reader_permits.acquire().await.map_err(|e| StoreError::Backend(e.to_string()))?;
        let conn = self.readers.lock().expect("reader pool lock").pop().expect("a permit guarantees a connection");
        let (conn, out) = tokio::task::spawn_blocking(move || {
            let out = f(&conn);
            (conn, out)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("a read panicked: {e}")))?;
        self.readers.lock().expect("reader pool lock").push(conn);
        out
    }

    async fn write<R: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<R> + Send + 'static) -> Result<R> {
        self.writer.write(Priority::Now, Durability::Synced, move |conn, _| f(conn)).await
    }

    /// Like [`SqliteStore::write`], for work nobody waits on: it yields to other writes.
    async fn write_background<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.writer.write(Priority::Background, Durability::Synced, move |conn, _| f(conn)).await
    }

    /// Like [`SqliteStore::write`], for what is derived from stored data and made again if
    /// lost (see [`Durability::Derived`]): returns once committed, without waiting for the disk.
    async fn write_derived<R: Send + 'static>(
        &self,
        priority: Priority,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.writer.write(priority, Durability::Derived, move |conn, _| f(conn)).await
    }

    /// The workspace's number in this database; `None` for a workspace that does not exist.
    async fn ws_number(&self, ws: &domain::WorkspaceId) -> Result<Option<i64>> {
        if let Some(&n) = self.ws_numbers.read().expect("workspace numbers lock").get(ws) {
            return Ok(Some(n));
        }
        let id = ws.clone();
        let found: Option<i64> = self
            .read(move |conn| {
                conn.prepare_cached("SELECT ws FROM workspaces WHERE workspace_id = ?1")
                    .map_err(sql_error)?
                    .query_row([id.as_str()], |r| r.get(0))
                    .optional()
                    .map_err(sql_error)
            })
            .await?;
        if let Some(n) = found {
            self.ws_numbers.write().expect("workspace numbers lock").insert(ws.clone(), n);
        }
        Ok(found)
    }
}

/// The file whose lock says which process appends events to the database at `path`.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push("-append.lock");
    path.with_file_name(name)
}

fn connect(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(sql_error)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(sql_error)?;
    // FULL: a commit is on disk before the caller hears of it. Measured to cost little with
    // group commit, and it makes the guarantee hold across power loss, not only a crash.
    // Checkpoints are the checkpoint thread's; the automatic one is only a bound.
    // Temporary storage: in memory for readers. Not for writing connections: under the
    // writer's savepoint per job, each statement with triggers or several rows keeps its
    // pages in a statement journal, and SQLite gives an in-memory one back at the
    // statement's end by walking it from its start; over a job of thousands of statements
    // (2,000 scores) that walk was 94% of a full rescore's time through SQLite (147 to 190 s
    // for 100,000 accounts, 8 to 14 s with the journal in a temporary file).
    let temp_store = if read_only { "MEMORY" } else { "FILE" };
    // A new database has pages of 16 KiB (SQLite's default is 4 KiB; one made before keeps
    // its own, which only a rebuild of the file changes). Most of what Steward writes is
    // blocks of events, their ids and their owners, tens of kilobytes a row: with larger pages
    // each takes a fourth of the page writes, WAL frames and checkpoint copies, and an import
    // of ChurnSim's events took 9% less time; capture, journeys and segments were as fast
    // or faster. A commit of a few rows writes whole pages, so one account's rescore takes
    // longer to write: its median went from about 0.4 to 0.6 ms, under its 1 ms bar (see
    // BENCHMARKS.md).
    if !read_only {
        conn.execute_batch(&format!("PRAGMA page_size = {PAGE_SIZE}")).map_err(sql_error)?;
    }
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -65536; PRAGMA temp_store = {temp_store};"
    ))
    .map_err(sql_error)?;
    let page = page_size(&conn)?;
    conn.execute_batch(&format!("PRAGMA wal_autocheckpoint = {}", checkpoint::WRITER_BOUND_BYTES / page))
        .map_err(sql_error)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The size of a page of a new database, in bytes (see [`connect`]).
const PAGE_SIZE: i64 = 16 << 10;

/// The size of the database's pages, in bytes.
pub(crate) fn page_size(conn: &Connection) -> Result<i64> {
    conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(sql_error)
}

fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql_error)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {}; COMMIT;", i + 1))
            .map_err(sql_error)?;
        tracing::info!(migration = i + 1, "migrated the SQLite schema");
    }
    Ok(())
}

pub(crate) fn sql_error(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::Full(e.to_string()),
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict("a record with that key"),
        _ => StoreError::Backend(e.to_string()),
    }
}

pub(crate) fn ms(t: &DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub(crate) fn opt_time(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.map(time)
}

/// A column that must parse as one of Steward's own values; a failure means a corrupt row.
pub(crate) fn parse_col<T: std::str::FromStr>(s: String) -> Result<T> {
    s.parse().map_err(|_| StoreError::Backend(format!("unexpected stored value {s:?}")))
}

pub(crate) fn json_col(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or(serde_json::Value::Null)
}

mod store_impl {
    //! [`store::Store`] for SQLite: each operation delegates to the module that owns it.
    use super::SqliteStore;
    use async_trait::async_trait;
    use domain::{AccountId, ApiKey, IdentityKey, KeyHash, NewEvent, Timestamp, WorkspaceId};
    use store::*;

    #[async_trait]
    impl Store for SqliteStore {
        fn backend(&self) -> &'static str {
            "sqlite"
        }
        async fn create_workspace(&self, name: &str) -> Result<Workspace> {
            self.new_workspace(name).await
        }
        async fn get_workspace(&self, id: &WorkspaceId) -> Result<Option<Workspace>> {
            Ok(self.workspaces(Some(id.clone())).await?.pop())
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
            Ok(self.operators(ws, Some(email.to_owned())).await?.pop())
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
            self.append(ws, events).await
        }
        async fn append_event_batches(&self, ws: &WorkspaceId, batches: &[Vec<NewEvent>]) -> Result<BatchesReport> {
            self.append_batches(ws, batches).await
        }
        async fn append_track_batches(
            &self,
            ws: &WorkspaceId,
            batches: &[std::sync::Arc<domain::TrackRows>],
        ) -> Result<BatchesReport> {
            self.append_track_batches(ws, batches).await
        }
        async fn expect_appends(&self, ws: &WorkspaceId, events: usize) -> Result<()> {
            self.expect_appends(ws, events).await
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
        async fn maintain(&self, ws: &WorkspaceId, idle: bool) -> Result<bool> {
            SqliteStore::maintain(self, ws, idle).await
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
            SqliteStore::put_scores(self, ws, scores).await
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
            self.points_as_of(ws, day, true).await
        }
        async fn score_headlines_as_of(
            &self,
            ws: &WorkspaceId,
            day: chrono::NaiveDate,
        ) -> Result<Vec<(AccountId, ScorePoint)>> {
            self.points_as_of(ws, day, false).await
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
            SqliteStore::list_people(self, ws, page).await
        }
        async fn vocabulary(&self, ws: &WorkspaceId) -> Result<Vocabulary> {
            SqliteStore::vocabulary(self, ws).await
        }
        async fn insert_segment(&self, ws: &WorkspaceId, segment: &SegmentRecord) -> Result<()> {
            SqliteStore::insert_segment(self, ws, segment).await
        }
        async fn update_segment(&self, ws: &WorkspaceId, segment: &SegmentRecord) -> Result<bool> {
            SqliteStore::update_segment(self, ws, segment).await
        }
        async fn delete_segment(&self, ws: &WorkspaceId, id: &str) -> Result<bool> {
            SqliteStore::delete_segment(self, ws, id).await
        }
        async fn get_segment(&self, ws: &WorkspaceId, id: &str) -> Result<Option<SegmentRecord>> {
            SqliteStore::get_segment(self, ws, id).await
        }
        async fn list_segments(&self, ws: &WorkspaceId) -> Result<Vec<SegmentRecord>> {
            SqliteStore::list_segments(self, ws).await
        }
        async fn update_memberships(
            &self,
            ws: &WorkspaceId,
            segment_id: &str,
            updates: &[MembershipUpdate],
            at: Timestamp,
        ) -> Result<Vec<SegmentChange>> {
            SqliteStore::update_memberships(self, ws, segment_id, updates, at).await
        }
        async fn segment_members(
            &self,
            ws: &WorkspaceId,
            segment_id: &str,
            page: &PageRequest,
        ) -> Result<Page<SegmentMember>> {
            SqliteStore::segment_members(self, ws, segment_id, page).await
        }
        async fn segment_size(&self, ws: &WorkspaceId, segment_id: &str) -> Result<u64> {
            SqliteStore::segment_size(self, ws, segment_id).await
        }
        async fn memberships_of(&self, ws: &WorkspaceId, subject_id: &str) -> Result<Vec<Membership>> {
            SqliteStore::memberships_of(self, ws, subject_id).await
        }
        async fn due_checks(&self, ws: &WorkspaceId, now: Timestamp, limit: usize) -> Result<Vec<DueCheck>> {
            SqliteStore::due_checks(self, ws, now, limit).await
        }
        async fn segment_changes(&self, ws: &WorkspaceId, after: i64, limit: usize) -> Result<Vec<SegmentChange>> {
            SqliteStore::segment_changes(self, ws, after, limit).await
        }

        async fn put_journey(&self, ws: &WorkspaceId, draft: &JourneyDraft, at: Timestamp) -> Result<JourneyRecord> {
            SqliteStore::put_journey(self, ws, draft, at).await
        }
        async fn get_journey(&self, ws: &WorkspaceId, id: &str) -> Result<Option<JourneyRecord>> {
            SqliteStore::get_journey(self, ws, id).await
        }
        async fn list_journeys(&self, ws: &WorkspaceId) -> Result<Vec<JourneyRecord>> {
            SqliteStore::list_journeys(self, ws).await
        }
        async fn journey_version(&self, ws: &WorkspaceId, id: &str, version: i64) -> Result<Option<serde_json::Value>> {
            SqliteStore::journey_version(self, ws, id, version).await
        }
        async fn set_journey_enabled(&self, ws: &WorkspaceId, id: &str, enabled: bool, at: Timestamp) -> Result<bool> {
            SqliteStore::set_journey_enabled(self, ws, id, enabled, at).await
        }
        async fn start_runs(&self, ws: &WorkspaceId, starts: &[RunStart]) -> Result<Vec<bool>> {
            SqliteStore::start_runs(self, ws, starts).await
        }
        async fn due_runs(&self, ws: &WorkspaceId, now: Timestamp, limit: usize) -> Result<Vec<Run>> {
            SqliteStore::due_runs(self, ws, now, limit).await
        }
        async fn waiting_runs(&self, ws: &WorkspaceId, keys: &[String]) -> Result<Vec<Run>> {
            SqliteStore::waiting_runs(self, ws, keys).await
        }
        async fn advance_runs(&self, ws: &WorkspaceId, updates: &[RunUpdate]) -> Result<Vec<bool>> {
            SqliteStore::advance_runs(self, ws, updates).await
        }
        async fn get_run(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Run>> {
            SqliteStore::get_run(self, ws, id).await
        }
        async fn list_runs(&self, ws: &WorkspaceId, filter: &RunFilter, page: &PageRequest) -> Result<Page<Run>> {
            SqliteStore::list_runs(self, ws, filter, page).await
        }
        async fn run_steps(&self, ws: &WorkspaceId, run_id: &str) -> Result<Vec<StepRecord>> {
            SqliteStore::run_steps(self, ws, run_id).await
        }
        async fn journey_stats(&self, ws: &WorkspaceId, id: &str) -> Result<JourneyStats> {
            SqliteStore::journey_stats(self, ws, id).await
        }
        async fn claim_messages(
            &self,
            ws: &WorkspaceId,
            now: Timestamp,
            lease_until: Timestamp,
            limit: usize,
        ) -> Result<Vec<OutboxMessage>> {
            SqliteStore::claim_messages(self, ws, now, lease_until, limit).await
        }
        async fn update_messages(&self, ws: &WorkspaceId, updates: &[MessageUpdate], at: Timestamp) -> Result<()> {
            SqliteStore::update_messages(self, ws, updates, at).await
        }
        async fn get_message(&self, ws: &WorkspaceId, id: &str) -> Result<Option<OutboxMessage>> {
            SqliteStore::get_message(self, ws, id).await
        }
        async fn list_messages(
            &self,
            ws: &WorkspaceId,
            filter: &MessageFilter,
            page: &PageRequest,
        ) -> Result<Page<OutboxMessage>> {
            SqliteStore::list_messages(self, ws, filter, page).await
        }
        async fn message_attempts(&self, ws: &WorkspaceId, id: &str) -> Result<Vec<Attempt>> {
            SqliteStore::message_attempts(self, ws, id).await
        }
        async fn replay_message(&self, ws: &WorkspaceId, id: &str, now: Timestamp) -> Result<Option<OutboxMessage>> {
            SqliteStore::replay_message(self, ws, id, now).await
        }
        async fn messages_to(
            &self,
            ws: &WorkspaceId,
            person_id: &str,
            channel: Channel,
            since: Timestamp,
        ) -> Result<u64> {
            SqliteStore::messages_to(self, ws, person_id, channel, since).await
        }
        async fn block_endpoint(&self, ws: &WorkspaceId, endpoint: &str, reason: &str, at: Timestamp) -> Result<()> {
            SqliteStore::block_endpoint(self, ws, endpoint, reason, at).await
        }
        async fn unblock_endpoint(&self, ws: &WorkspaceId, endpoint: &str) -> Result<bool> {
            SqliteStore::unblock_endpoint(self, ws, endpoint).await
        }
        async fn blocked_endpoints(&self, ws: &WorkspaceId) -> Result<Vec<(String, String, Timestamp)>> {
            SqliteStore::blocked_endpoints(self, ws).await
        }
        async fn list_tasks(&self, ws: &WorkspaceId, filter: &TaskFilter, page: &PageRequest) -> Result<Page<Task>> {
            SqliteStore::list_tasks(self, ws, filter, page).await
        }
        async fn get_task(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Task>> {
            SqliteStore::get_task(self, ws, id).await
        }
        async fn insert_task(&self, ws: &WorkspaceId, task: &Task) -> Result<()> {
            SqliteStore::insert_task(self, ws, task).await
        }
        async fn update_task(
            &self,
            ws: &WorkspaceId,
            id: &str,
            status: TaskStatus,
            by: &str,
            at: Timestamp,
        ) -> Result<Option<Task>> {
            SqliteStore::update_task(self, ws, id, status, by, at).await
        }

        async fn create_connector(&self, ws: &WorkspaceId, connector: &ConnectorRecord) -> Result<()> {
            SqliteStore::create_connector(self, ws, connector).await
        }
        async fn update_connector(&self, ws: &WorkspaceId, connector: &ConnectorRecord) -> Result<bool> {
            SqliteStore::update_connector(self, ws, connector).await
        }
        async fn get_connector(&self, ws: &WorkspaceId, provider: &str) -> Result<Option<ConnectorRecord>> {
            SqliteStore::get_connector(self, ws, provider).await
        }
        async fn list_connectors(&self, ws: &WorkspaceId) -> Result<Vec<ConnectorRecord>> {
            SqliteStore::list_connectors(self, ws).await
        }
        async fn delete_connector(&self, ws: &WorkspaceId, provider: &str) -> Result<bool> {
            SqliteStore::delete_connector(self, ws, provider).await
        }
        async fn record_connector_progress(
            &self,
            ws: &WorkspaceId,
            provider: &str,
            progress: &ConnectorProgress,
            at: Timestamp,
        ) -> Result<bool> {
            SqliteStore::record_connector_progress(self, ws, provider, progress, at).await
        }
        async fn mark_connector_sync_again(&self, ws: &WorkspaceId, provider: &str, at: Timestamp) -> Result<bool> {
            SqliteStore::mark_connector_sync_again(self, ws, provider, at).await
        }
        async fn replace_connector_secrets(
            &self,
            ws: &WorkspaceId,
            provider: &str,
            old: &str,
            new: &str,
        ) -> Result<bool> {
            SqliteStore::replace_connector_secrets(self, ws, provider, old, new).await
        }
        async fn put_provider_objects(
            &self,
            ws: &WorkspaceId,
            provider: &str,
            objects: &[ProviderObject],
        ) -> Result<Vec<bool>> {
            SqliteStore::put_provider_objects(self, ws, provider, objects).await
        }
        async fn provider_objects(
            &self,
            ws: &WorkspaceId,
            provider: &str,
            query: &ObjectQuery,
        ) -> Result<Vec<ProviderObject>> {
            SqliteStore::provider_objects(self, ws, provider, query).await
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
            SqliteStore::link_provider_object(self, ws, provider, kind, object_id, account, matched_by).await
        }
        async fn add_connector_error(&self, ws: &WorkspaceId, provider: &str, error: &ConnectorError) -> Result<()> {
            SqliteStore::add_connector_error(self, ws, provider, error).await
        }
        async fn connector_errors(
            &self,
            ws: &WorkspaceId,
            provider: &str,
            limit: usize,
        ) -> Result<Vec<ConnectorError>> {
            SqliteStore::connector_errors(self, ws, provider, limit).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer keeps its temporary storage, statement journals included, in files, and
    /// readers theirs in memory (see `connect`).
    #[tokio::test]
    async fn the_writer_keeps_statement_journals_out_of_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_in_dir(dir.path()).unwrap();
        let temp_store =
            |conn: &Connection| conn.query_row("PRAGMA temp_store", [], |r| r.get::<_, i64>(0)).map_err(sql_error);
        // 1 is FILE, 2 MEMORY.
        assert_eq!(store.write(temp_store).await.unwrap(), 1);
        assert_eq!(store.read(temp_store).await.unwrap(), 2);
        store.close();
    }

    /// Processing's results are derived from the log, with the cursor they reach: their
    /// commits do not wait for the disk, while an append's do.
    #[tokio::test]
    async fn processing_commits_without_waiting_for_the_disk() {
        use std::sync::atomic::Ordering::Relaxed;
        use store::Store;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_in_dir(dir.path()).unwrap();
        let ws = store.create_workspace("durability").await.unwrap().workspace_id;
        let counts = || (store.writer.stats.commits.load(Relaxed), store.writer.stats.synced.load(Relaxed));
        let before = counts();
        assert_eq!(store.append_events(&ws, &[crate::log::tests::with_id("m1")]).await.unwrap().stored, 1);
        let appended = counts();
        // (Writing held ids out, should the writer idle, commits too, but is no group's.)
        assert!(appended.0 > before.0);
        assert_eq!(appended.1 - before.1, 1, "an append is synced");
        let to = store::LogPosition { tx: 0, seq: 1 };
        assert!(store.apply_changes(&ws, store::LogPosition::ZERO, to, &store::Changes::default()).await.unwrap());
        let applied = counts();
        assert!(applied.0 > appended.0, "processing committed");
        assert_eq!(applied.1, appended.1, "processing is not synced");
        assert_eq!(store.log_status(&ws).await.unwrap().cursor, to);
        store.close();
    }

    /// A new database has 16 KiB pages; one made with SQLite's default 4 KiB keeps them and
    /// works as before. The writer's bound on the WAL is the same number of bytes either way.
    #[tokio::test]
    async fn new_databases_have_large_pages_and_older_ones_keep_theirs() {
        use store::Store;
        let dir = tempfile::tempdir().unwrap();
        let older = dir.path().join("older.db");
        Connection::open(&older)
            .unwrap()
            .execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE before (v INTEGER)")
            .unwrap();
        for (path, page) in [(dir.path().join("new.db"), 16_384), (older, 4_096)] {
            let store = SqliteStore::open(&path).unwrap();
            assert_eq!(store.read(page_size).await.unwrap(), page, "{}", path.display());
            let bound = |c: &Connection| {
                c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get::<_, i64>(0)).map_err(sql_error)
            };
            assert_eq!(store.write(bound).await.unwrap() * page, checkpoint::WRITER_BOUND_BYTES);
            let ws = store.create_workspace("pages").await.unwrap().workspace_id;
            let event = crate::log::tests::with_id("m1");
            assert_eq!(store.append_events(&ws, &[event]).await.unwrap().stored, 1);
            let log = store.read_log(&ws, store::LogPosition::ZERO, 10).await.unwrap();
            assert_eq!(log.iter().map(|e| e.event.message_id.as_str()).collect::<Vec<_>>(), ["m1"]);
            store.close();
        }
    }
}
