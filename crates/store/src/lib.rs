//! The storage interface: the domain operations Steward needs, independent of the database.
//!
//! Each backend (`store-sqlite`, `store-postgres`) implements [`Store`] with its own
//! migrations; the contract suite (feature `contract`) runs against every backend so they
//! behave the same.
//!
//! Architecture Invariant: every operation takes the workspace it acts in; no query reads or
//! writes across workspaces.

mod changes;
pub mod connectors;
pub mod journeys;
pub mod operators;
mod page;
pub mod portfolio;
#[macro_use]
mod records;
pub mod kpis;
pub mod scores;
pub mod segments;
pub mod usage;

#[cfg(feature = "contract")]
pub mod contract;

pub use changes::{Changes, EventPerson, KnownPerson, Op};
pub use connectors::{ConnectorError, ConnectorProgress, ConnectorRecord, ObjectQuery, ProviderObject};
pub use journeys::{
    Attempt, Channel, JourneyDraft, JourneyRecord, JourneyStats, MessageFilter, MessageStatus, MessageUpdate,
    OutboxMessage, Reentry, Run, RunFilter, RunStart, RunStatus, RunUpdate, StepCount, StepRecord, Task, TaskFilter,
    TaskStatus,
};
pub use kpis::{Kpi, KpiMonth, KpiReport};
pub use operators::{AuditEntry, OperatorSession, SignedIn};
pub use page::{Cursor, DEFAULT_LIMIT, MAX_LIMIT, Page, PageRequest};
pub use portfolio::{BandChange, BandCounts, Portfolio, PortfolioDay, ScoreGroup};
pub use records::*;
pub use scores::{
    AccountChange, AccountChangeKind, AccountQuery, AccountRecords, AccountScore, AccountSort, Alert, AlertAction,
    AlertFilter, AlertKind, AlertScope, AlertSignal, AlertStatus, AlertSync, HealthBand, JsonText, ModelKind,
    ModelRecord, ModelStatus, ScorePoint, ScoreSummary, ScoredAccount, Severity,
};
pub use segments::{
    DueCheck, Membership, MembershipUpdate, PersonSummary, SegmentChange, SegmentMember, SegmentRecord, SubjectKind,
    Vocabulary,
};
pub use usage::{Credit, DailyUsage, Usage, UsageRow};

use async_trait::async_trait;
use domain::{AccountId, ApiKey, EventType, IdentityKey, KeyHash, NewEvent, Timestamp, WorkspaceId};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The disk or database is full: the write was refused and nothing was stored.
    #[error("storage is full: {0}")]
    Full(String),
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("the pagination cursor is not valid for this list")]
    InvalidCursor,
    /// Too much work is waiting: nothing was stored; try again shortly.
    #[error("storage is busy: {0}")]
    Busy(String),
    #[error("storage error: {0}")]
    Backend(String),
}

/// A position in a workspace's event log. Ordered; `ZERO` is before the first event.
///
/// `tx` orders by commit where the backend needs it (PostgreSQL assigns sequence numbers before
/// commit, so a reader ordering by `seq` alone could skip a row that commits late); SQLite has a
/// single writer, so its `tx` is always 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    pub tx: i64,
    pub seq: i64,
}

impl LogPosition {
    pub const ZERO: LogPosition = LogPosition { tx: 0, seq: 0 };
}

/// Which events of a log read come with their payload; the others come with an empty one.
/// The payload is most of an event, and most readers need it for a few kinds only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payloads(u8);

impl Payloads {
    pub const ALL: Payloads = Payloads::of(&EventType::ALL);

    pub const fn of(kinds: &[EventType]) -> Payloads {
        let (mut bits, mut i) = (0, 0);
        while i < kinds.len() {
            bits |= 1 << kinds[i] as u8;
            i += 1;
        }
        Payloads(bits)
    }

    pub fn wants(self, kind: EventType) -> bool {
        self.0 & (1 << kind as u8) != 0
    }
}

/// An event read back from the log, for processing.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedEvent {
    pub position: LogPosition,
    pub event: NewEvent,
}

/// The outcome of an append: every message is durably stored, once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendReport {
    /// Messages stored now.
    pub stored: usize,
    /// Messages whose `messageId` was already stored in this workspace.
    pub duplicates: usize,
}

/// Where an append put its events in the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// The workspace's last log position before the append ([`LogPosition::ZERO`] when it
    /// had none): the events stored follow it, with no other event of the workspace between.
    pub after: LogPosition,
    /// The position of each event given, in the order given (batch by batch); `None` for a
    /// duplicate that was left out.
    pub positions: Vec<Option<LogPosition>>,
}

/// The outcome of [`Store::append_event_batches`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchesReport {
    pub report: AppendReport,
    /// Where the events went, when the backend can tell at append time.
    pub placement: Option<Placement>,
}

/// How far processing of a workspace's log has got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStatus {
    pub cursor: LogPosition,
    pub total_events: i64,
    /// Events appended but not yet processed.
    pub pending_events: i64,
    /// When the oldest unprocessed event was received.
    pub oldest_pending_received_at: Option<Timestamp>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is, for logs and metrics.
    fn backend(&self) -> &'static str;

    // Workspaces, keys and operators.
    async fn create_workspace(&self, name: &str) -> Result<Workspace>;
    async fn get_workspace(&self, id: &WorkspaceId) -> Result<Option<Workspace>>;
    async fn list_workspaces(&self) -> Result<Vec<Workspace>>;
    async fn insert_key(&self, key: &ApiKey) -> Result<()>;
    /// Finds a key by the hash of its secret, revoked or not.
    async fn find_key(&self, hash: &KeyHash) -> Result<Option<ApiKey>>;
    async fn list_keys(&self, ws: &WorkspaceId) -> Result<Vec<ApiKey>>;
    /// Returns false when the workspace has no such key or it was already revoked.
    async fn revoke_key(&self, ws: &WorkspaceId, key_id: &str, at: Timestamp) -> Result<bool>;
    async fn insert_operator(&self, op: &Operator) -> Result<()>;
    async fn find_operator_by_email(&self, ws: &WorkspaceId, email: &str) -> Result<Option<Operator>>;
    async fn list_operators(&self, ws: &WorkspaceId) -> Result<Vec<Operator>>;
    async fn get_operator(&self, ws: &WorkspaceId, operator_id: &str) -> Result<Option<Operator>>;
    /// Disables an operator (ending their sessions) or enables one again; false when the
    /// workspace has no such operator.
    async fn set_operator_disabled(&self, ws: &WorkspaceId, operator_id: &str, at: Option<Timestamp>) -> Result<bool>;
    /// Replaces an operator's password hash and ends their sessions; false when there is none.
    async fn set_operator_password(&self, ws: &WorkspaceId, operator_id: &str, hash: &str) -> Result<bool>;

    // Sessions and the audit log.
    async fn insert_session(&self, session: &OperatorSession) -> Result<()>;
    /// The session with this token hash and its operator, whatever its expiry (the caller
    /// decides); none when there is no such session.
    async fn find_session(&self, token_hash: &str) -> Result<Option<SignedIn>>;
    /// Moves a session's `last_seen_at`.
    async fn touch_session(&self, token_hash: &str, at: Timestamp) -> Result<()>;
    /// Ends a session; false when there was none.
    async fn delete_session(&self, token_hash: &str) -> Result<bool>;
    /// Records a failed sign-in under `key` (an email or a client address: sign-in comes
    /// before any workspace is known), and forgets every key's failures before `forget_before`.
    async fn record_sign_in_failure(&self, key: &str, at: Timestamp, forget_before: Timestamp) -> Result<()>;
    /// The failed sign-ins under `key` at or after `since`: how many, and the oldest's time.
    async fn sign_in_failures(&self, key: &str, since: Timestamp) -> Result<(u64, Option<Timestamp>)>;
    /// Forgets `key`'s failed sign-ins (it signed in).
    async fn clear_sign_in_failures(&self, key: &str) -> Result<()>;
    /// Stores an entry (its `seq` is assigned) and returns its seq.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64>;
    /// Entries newest first, before `before` (a seq) when given, at most `limit`.
    async fn list_audit(&self, ws: &WorkspaceId, before: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>>;

    // The event log.
    /// Stores events durably before returning, each `message_id` at most once per workspace.
    async fn append_events(&self, ws: &WorkspaceId, events: &[NewEvent]) -> Result<AppendReport>;
    /// Appends `batches` as [`Store::append_events`] would one after the other: in this order
    /// in the log, each `message_id` at most once. For bulk imports: SQLite writes them in one
    /// transaction, a block each; PostgreSQL appends them in turn. Says where the events went
    /// when the backend can tell: SQLite, whose one writer orders the log, does; PostgreSQL,
    /// whose log is ordered by commit, does not (`placement` is `None`), so a reader finds
    /// them in the log.
    async fn append_event_batches(&self, ws: &WorkspaceId, batches: &[Vec<NewEvent>]) -> Result<BatchesReport>;
    /// Appends track calls given in columns (a bulk import's rows) exactly as
    /// [`Store::append_event_batches`] would the events they are: a backend that can store
    /// them without building each event does.
    async fn append_track_batches(
        &self,
        ws: &WorkspaceId,
        batches: &[std::sync::Arc<domain::TrackRows>],
    ) -> Result<BatchesReport> {
        let events: Vec<Vec<NewEvent>> = batches.iter().map(|b| b.to_events()).collect();
        self.append_event_batches(ws, &events).await
    }
    /// Says that about `events` events are about to be appended to `ws` (an import), so that
    /// a backend may size what it keeps per event once rather than grow it as they come.
    /// Changes nothing stored; a wrong guess costs memory or time, never correctness.
    async fn expect_appends(&self, ws: &WorkspaceId, events: usize) -> Result<()> {
        let _ = (ws, events);
        Ok(())
    }
    /// Up to `limit` events after `after`, in log order.
    async fn read_log(&self, ws: &WorkspaceId, after: LogPosition, limit: usize) -> Result<Vec<LoggedEvent>> {
        self.read_log_with(ws, after, limit, Payloads::ALL).await
    }
    /// Like [`Store::read_log`], with the payloads of the kinds `payloads` names only.
    async fn read_log_with(
        &self,
        ws: &WorkspaceId,
        after: LogPosition,
        limit: usize,
        payloads: Payloads,
    ) -> Result<Vec<LoggedEvent>>;
    async fn log_status(&self, ws: &WorkspaceId) -> Result<LogStatus>;

    // Processing: identity, accounts, traits.
    async fn load_identities(&self, ws: &WorkspaceId, keys: &[IdentityKey]) -> Result<Vec<(IdentityKey, KnownPerson)>>;
    /// Applies `changes` and moves the processing cursor from `from` to `to`, atomically.
    /// Returns false, changing nothing, when the cursor is no longer at `from` (another process
    /// got there first).
    async fn apply_changes(
        &self,
        ws: &WorkspaceId,
        from: LogPosition,
        to: LogPosition,
        changes: &Changes,
    ) -> Result<bool>;
    /// Forgets everything processing derived for the workspace and rewinds its cursor to zero,
    /// so that the log is replayed.
    async fn reset_processing(&self, ws: &WorkspaceId) -> Result<()>;
    /// Brings what the backend derives from processed events (indexes it builds in bulk
    /// rather than per slice) a bounded step closer to date. Reads are right without it;
    /// it keeps them fast. `idle` says processing has nothing else to do. Returns whether
    /// there is more to do.
    async fn maintain(&self, _ws: &WorkspaceId, _idle: bool) -> Result<bool> {
        Ok(false)
    }

    // Reads.
    async fn list_accounts(&self, ws: &WorkspaceId, page: &PageRequest) -> Result<Page<Account>>;
    /// Like [`Store::list_accounts`], for a reader of some traits of every account (segment
    /// conditions): each account's traits are those named `traits` only (and `name`, which
    /// names it), and its `people_count` is not counted (0).
    async fn list_account_records(
        &self,
        ws: &WorkspaceId,
        page: &PageRequest,
        traits: &[String],
    ) -> Result<Page<Account>>;
    async fn get_account(&self, ws: &WorkspaceId, id: &AccountId) -> Result<Option<Account>>;
    async fn account_people(&self, ws: &WorkspaceId, id: &AccountId, page: &PageRequest) -> Result<Page<Person>>;
    /// The account's events, newest first: those sent for it explicitly (`group`,
    /// `context.groupId`) and those of its people sent without an explicit account.
    async fn account_timeline(&self, ws: &WorkspaceId, id: &AccountId, page: &PageRequest)
    -> Result<Page<StoredEvent>>;
    /// A person by Steward's person id, or else by `userId`, or else by `anonymousId`.
    async fn get_person(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Person>>;
    /// Events newest first (by log order).
    async fn list_events(
        &self,
        ws: &WorkspaceId,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<StoredEvent>>;
    async fn trait_history(&self, ws: &WorkspaceId, subject: &TraitSubject) -> Result<Vec<TraitChange>>;
    /// The daily usage rollups of an account for days in `[from, to)`, ordered by metric and
    /// day; days without events are left out.
    async fn account_usage(
        &self,
        ws: &WorkspaceId,
        account: &AccountId,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<DailyUsage>>;
    /// The monthly usage rows of every account (or of `account` alone) for the months holding
    /// `[from, to)`, ordered by account, metric and month: what scoring reads (days outside
    /// the range are left in).
    async fn accounts_usage(
        &self,
        ws: &WorkspaceId,
        account: Option<&AccountId>,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<UsageRow>>;

    /// Each account's monthly usage rows for the months holding its own `[from, to)`, ordered
    /// by account, metric and month: what the activation of accounts first seen before a
    /// scoring run's usage reads (their first days alone).
    async fn accounts_usage_each(
        &self,
        ws: &WorkspaceId,
        ranges: &[(AccountId, chrono::NaiveDate, chrono::NaiveDate)],
    ) -> Result<Vec<UsageRow>>;

    // Billing and support records.
    /// Inserts or updates a subscription; an update older than the stored one (`updated_at`)
    /// is ignored, so out-of-order deliveries converge on the newest state. Returns whether it
    /// was applied.
    async fn upsert_subscription(&self, ws: &WorkspaceId, sub: &Subscription) -> Result<bool>;
    async fn account_subscriptions(&self, ws: &WorkspaceId, id: &AccountId) -> Result<Vec<Subscription>>;
    /// As [`Store::upsert_subscription`], for tickets.
    async fn upsert_ticket(&self, ws: &WorkspaceId, ticket: &Ticket) -> Result<bool>;
    async fn account_tickets(&self, ws: &WorkspaceId, id: &AccountId) -> Result<Vec<Ticket>>;

    /// Every subscription of the workspace, ordered by account and start: what scoring reads.
    async fn list_subscriptions(&self, ws: &WorkspaceId) -> Result<Vec<Subscription>>;
    /// Every ticket of the workspace opened from `since` on, ordered by account and opening.
    async fn list_tickets(&self, ws: &WorkspaceId, since: Timestamp) -> Result<Vec<Ticket>>;

    // Settings: a workspace's configuration, one JSON document per key.
    async fn get_setting(&self, ws: &WorkspaceId, key: &str) -> Result<Option<serde_json::Value>>;
    async fn put_setting(&self, ws: &WorkspaceId, key: &str, value: &serde_json::Value, at: Timestamp) -> Result<()>;
    /// Sets (`Some`) or removes (`None`) the entry `name` of the object-valued setting `key`
    /// (none, or not an object: an empty one) in one step, so that two writers of different
    /// entries never lose each other's; says whether the entry was there before.
    async fn put_setting_entry(
        &self,
        ws: &WorkspaceId,
        key: &str,
        name: &str,
        value: Option<&serde_json::Value>,
        at: Timestamp,
    ) -> Result<bool>;

    // Scores, models and alerts.
    /// Stores scores: each replaces its account's latest unless that is of a later day, and
    /// is kept as the account's history for its day (replacing an earlier run's of that day).
    async fn put_scores(&self, ws: &WorkspaceId, scores: &[AccountScore]) -> Result<()>;
    /// Stores scores in the daily history alone (each replacing an earlier run's of its
    /// day): the latest scores, and so the band changes journeys start from, stay as they
    /// are. What scoring a past day point-in-time writes.
    async fn put_score_history(&self, ws: &WorkspaceId, scores: &[AccountScore]) -> Result<()>;
    /// Stores one account's score as [`Store::put_scores`] does and syncs its alerts as
    /// [`Store::sync_alerts`] does for [`AlertScope::Accounts`] of that account, in one
    /// transaction: what rescoring an account after an event writes.
    async fn put_account_score(
        &self,
        ws: &WorkspaceId,
        score: &AccountScore,
        signals: &[AlertSignal],
        at: Timestamp,
    ) -> Result<AlertSync>;
    /// The account, its subscriptions and tickets, its usage rows of the months holding
    /// `usage` and its score points of the days in `scores` (each `[from, to)`), read
    /// together: what rescoring an account reads.
    async fn account_records(
        &self,
        ws: &WorkspaceId,
        id: &AccountId,
        usage: (chrono::NaiveDate, chrono::NaiveDate),
        scores: (chrono::NaiveDate, chrono::NaiveDate),
    ) -> Result<AccountRecords>;
    /// The account's latest score, with its explanation.
    async fn account_score(&self, ws: &WorkspaceId, id: &AccountId) -> Result<Option<AccountScore>>;
    /// The account's scores of days in `[from, to)`, oldest first.
    async fn score_history(
        &self,
        ws: &WorkspaceId,
        id: &AccountId,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<ScorePoint>>;
    /// Each account's latest history point of a day on or before `day`: what scoring
    /// compares with (the last run, a week ago, a month ago). Accounts whose days were
    /// scored in the history alone ([`Store::put_score_history`]) are among them.
    async fn score_points_as_of(
        &self,
        ws: &WorkspaceId,
        day: chrono::NaiveDate,
    ) -> Result<Vec<(AccountId, ScorePoint)>>;
    /// Like [`Store::score_points_as_of`], without each point's components (`Value::Null`):
    /// for readers of the headline numbers alone (segment conditions), who need not read
    /// or parse them.
    async fn score_headlines_as_of(
        &self,
        ws: &WorkspaceId,
        day: chrono::NaiveDate,
    ) -> Result<Vec<(AccountId, ScorePoint)>> {
        let mut points = self.score_points_as_of(ws, day).await?;
        for (_, p) in &mut points {
            p.components = serde_json::Value::Null;
        }
        Ok(points)
    }
    /// The portfolio's latest scores aggregated (see [`portfolio`]), with the open alerts
    /// and tasks and the accounts whose band changed after `compare_day` (each from the band
    /// it had before its latest change).
    async fn portfolio(&self, ws: &WorkspaceId, compare_day: chrono::NaiveDate) -> Result<Portfolio>;
    /// Replaces the workspace's KPIs with `report`'s.
    async fn put_kpis(&self, ws: &WorkspaceId, report: &KpiReport) -> Result<()>;
    /// The workspace's KPIs as last put, by KPI and month; none if never computed.
    async fn kpis(&self, ws: &WorkspaceId) -> Result<Option<KpiReport>>;
    /// The portfolio as scored on each day of `[from, to)` that has scores, oldest first.
    async fn portfolio_trend(
        &self,
        ws: &WorkspaceId,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<PortfolioDay>>;
    /// How many accounts `query` lists (its order aside), counting no further than `at_most`
    /// when given (a free-text search reads every account; the first thousand matches are
    /// found sooner).
    async fn count_accounts(&self, ws: &WorkspaceId, query: &AccountQuery, at_most: Option<u64>) -> Result<u64>;
    /// Accounts with their latest score, filtered and ordered as `query` says.
    async fn query_accounts(
        &self,
        ws: &WorkspaceId,
        query: &AccountQuery,
        page: &PageRequest,
    ) -> Result<Page<ScoredAccount>>;
    /// Stores a model. An active one retires the kind's active model, in one transaction.
    async fn insert_model(&self, ws: &WorkspaceId, model: &ModelRecord) -> Result<()>;
    /// The workspace's models without their parameters, newest first.
    async fn list_models(&self, ws: &WorkspaceId) -> Result<Vec<ModelRecord>>;
    /// The active model of `kind`, with its parameters.
    async fn active_model(&self, ws: &WorkspaceId, kind: ModelKind) -> Result<Option<ModelRecord>>;
    /// Opens, updates and resolves alerts as [`scores::plan_alerts`] decides, in one
    /// transaction.
    async fn sync_alerts(
        &self,
        ws: &WorkspaceId,
        scope: AlertScope<'_>,
        signals: &[AlertSignal],
        at: Timestamp,
    ) -> Result<AlertSync>;
    /// Alerts newest first.
    async fn list_alerts(&self, ws: &WorkspaceId, filter: &AlertFilter, page: &PageRequest) -> Result<Page<Alert>>;
    async fn get_alert(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Alert>>;
    /// Acknowledges (an open alert), resolves (an unresolved one) or records feedback on an
    /// alert; `None` when the workspace has no such alert. An action that does not apply to
    /// the alert's state leaves it as it is.
    async fn update_alert(
        &self,
        ws: &WorkspaceId,
        id: &str,
        action: &AlertAction,
        by: &str,
        at: Timestamp,
    ) -> Result<Option<Alert>>;

    /// Band changes (an account's first score included) and alerts opened, written after
    /// `after` in the order written, up to `limit`: what journeys start runs from. A change
    /// shows only once every change before it has committed, so a reader following the
    /// position skips none.
    async fn account_changes(&self, ws: &WorkspaceId, after: LogPosition, limit: usize) -> Result<Vec<AccountChange>>;

    /// Forgets the changes at or before `through` (read by the one who follows them) that
    /// happened before `before`; says how many. Without it they would pile up for ever.
    async fn prune_account_changes(&self, ws: &WorkspaceId, through: LogPosition, before: Timestamp) -> Result<u64>;

    // Segments.
    /// The workspace's people by id, as people segments read them.
    async fn list_people(&self, ws: &WorkspaceId, page: &PageRequest) -> Result<Page<PersonSummary>>;
    /// The trait keys and events the workspace's data has.
    async fn vocabulary(&self, ws: &WorkspaceId) -> Result<Vocabulary>;
    /// Stores a new segment; [`StoreError::Conflict`] when the workspace has one of that name.
    async fn insert_segment(&self, ws: &WorkspaceId, segment: &SegmentRecord) -> Result<()>;
    /// Replaces a segment's name, condition and description; `false` when there is none of
    /// that id. [`StoreError::Conflict`] when another segment has the new name. Its members
    /// stay until they are evaluated again.
    async fn update_segment(&self, ws: &WorkspaceId, segment: &SegmentRecord) -> Result<bool>;
    /// Deletes a segment with its memberships and their changes; `false` when there is none.
    async fn delete_segment(&self, ws: &WorkspaceId, id: &str) -> Result<bool>;
    async fn get_segment(&self, ws: &WorkspaceId, id: &str) -> Result<Option<SegmentRecord>>;
    /// The workspace's segments by name.
    async fn list_segments(&self, ws: &WorkspaceId) -> Result<Vec<SegmentRecord>>;
    /// Records memberships just evaluated, in one transaction: a subject that enters or
    /// leaves gets a [`SegmentChange`] at `at` (returned, in `updates`' order), one whose
    /// membership is unchanged keeps its `since`, and each keeps its next check. Updates of
    /// a segment the workspace does not have are ignored.
    async fn update_memberships(
        &self,
        ws: &WorkspaceId,
        segment_id: &str,
        updates: &[MembershipUpdate],
        at: Timestamp,
    ) -> Result<Vec<SegmentChange>>;
    /// A segment's current members by subject id.
    async fn segment_members(
        &self,
        ws: &WorkspaceId,
        segment_id: &str,
        page: &PageRequest,
    ) -> Result<Page<SegmentMember>>;
    /// How many members a segment has.
    async fn segment_size(&self, ws: &WorkspaceId, segment_id: &str) -> Result<u64>;
    /// The segments `subject_id` is a member of, by segment id, with when it entered each.
    async fn memberships_of(&self, ws: &WorkspaceId, subject_id: &str) -> Result<Vec<Membership>>;
    /// Memberships whose next check is at or before `now`, earliest first, at most `limit`.
    async fn due_checks(&self, ws: &WorkspaceId, now: Timestamp, limit: usize) -> Result<Vec<DueCheck>>;
    /// Entries and exits after `after` (a [`SegmentChange::seq`]), in order, at most `limit`.
    async fn segment_changes(&self, ws: &WorkspaceId, after: i64, limit: usize) -> Result<Vec<SegmentChange>>;

    // Journeys.
    /// Stores a new journey, or a new version of one when its definition changed (its name
    /// and `enabled` are updated either way), and returns it as stored.
    /// [`StoreError::Conflict`] when another journey has the name.
    async fn put_journey(&self, ws: &WorkspaceId, draft: &JourneyDraft, at: Timestamp) -> Result<JourneyRecord>;
    async fn get_journey(&self, ws: &WorkspaceId, id: &str) -> Result<Option<JourneyRecord>>;
    /// The workspace's journeys by name.
    async fn list_journeys(&self, ws: &WorkspaceId) -> Result<Vec<JourneyRecord>>;
    /// One version's definition, as runs started on it read it.
    async fn journey_version(&self, ws: &WorkspaceId, id: &str, version: i64) -> Result<Option<serde_json::Value>>;
    /// Turns a journey on or off; `false` when there is none of that id.
    async fn set_journey_enabled(&self, ws: &WorkspaceId, id: &str, enabled: bool, at: Timestamp) -> Result<bool>;
    /// Starts the runs whose journey's re-entry rule allows them and whose trigger key was not
    /// used before, in one transaction: says, in `starts`' order, which started.
    async fn start_runs(&self, ws: &WorkspaceId, starts: &[RunStart]) -> Result<Vec<bool>>;
    /// Active runs due at or before `now` (by `wake_at`), earliest first, at most `limit`.
    async fn due_runs(&self, ws: &WorkspaceId, now: Timestamp, limit: usize) -> Result<Vec<Run>>;
    /// Active runs waiting under any of these keys ([`journeys::wait_key`]).
    async fn waiting_runs(&self, ws: &WorkspaceId, keys: &[String]) -> Result<Vec<Run>>;
    /// Applies each update whose run is still at `expected_seq` (and active), with its step
    /// records, messages and tasks, in one transaction; says which applied. A message or task
    /// whose id exists already is left as it is.
    async fn advance_runs(&self, ws: &WorkspaceId, updates: &[RunUpdate]) -> Result<Vec<bool>>;
    async fn get_run(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Run>>;
    /// Runs, newest start first.
    async fn list_runs(&self, ws: &WorkspaceId, filter: &RunFilter, page: &PageRequest) -> Result<Page<Run>>;
    /// The steps a run took, in order.
    async fn run_steps(&self, ws: &WorkspaceId, run_id: &str) -> Result<Vec<StepRecord>>;
    async fn journey_stats(&self, ws: &WorkspaceId, id: &str) -> Result<JourneyStats>;

    // Outbox.
    /// Takes up to `limit` messages due at or before `now` (pending, or held by a deliverer
    /// whose lease ran out) for a deliverer until `lease_until`, earliest first. A taken
    /// message whose lease ran out had an attempt interrupted: it is recorded as such.
    async fn claim_messages(
        &self,
        ws: &WorkspaceId,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>>;
    /// Applies each update with the attempt it records, in one transaction.
    async fn update_messages(&self, ws: &WorkspaceId, updates: &[MessageUpdate], at: Timestamp) -> Result<()>;
    async fn get_message(&self, ws: &WorkspaceId, id: &str) -> Result<Option<OutboxMessage>>;
    /// Messages, newest first.
    async fn list_messages(
        &self,
        ws: &WorkspaceId,
        filter: &MessageFilter,
        page: &PageRequest,
    ) -> Result<Page<OutboxMessage>>;
    /// A message's attempts, in order.
    async fn message_attempts(&self, ws: &WorkspaceId, id: &str) -> Result<Vec<Attempt>>;
    /// Sends a dead or suppressed message again, now, its retry schedule from the start (its
    /// attempts go on counting, their history kept): `None` when there
    /// is no such message, the message as it was when it is in another state.
    async fn replay_message(&self, ws: &WorkspaceId, id: &str, now: Timestamp) -> Result<Option<OutboxMessage>>;
    /// How many messages of `channel` were decided for a person since `since` (frequency caps).
    async fn messages_to(&self, ws: &WorkspaceId, person_id: &str, channel: Channel, since: Timestamp) -> Result<u64>;
    /// Stops deliveries to an endpoint (a 410 answer, an unsubscribe, a bounce): `reason`
    /// is kept. Messages to it are then suppressed, not sent.
    async fn block_endpoint(&self, ws: &WorkspaceId, endpoint: &str, reason: &str, at: Timestamp) -> Result<()>;
    /// Lets deliveries to an endpoint go again; `false` when it was not blocked.
    async fn unblock_endpoint(&self, ws: &WorkspaceId, endpoint: &str) -> Result<bool>;
    /// Blocked endpoints with their reason and when, by endpoint.
    async fn blocked_endpoints(&self, ws: &WorkspaceId) -> Result<Vec<(String, String, Timestamp)>>;

    // Tasks.
    /// Tasks, open ones by due date first, then newest.
    async fn list_tasks(&self, ws: &WorkspaceId, filter: &TaskFilter, page: &PageRequest) -> Result<Page<Task>>;
    async fn get_task(&self, ws: &WorkspaceId, id: &str) -> Result<Option<Task>>;
    /// Stores a task made by hand; a task of that id is left as it is.
    async fn insert_task(&self, ws: &WorkspaceId, task: &Task) -> Result<()>;
    /// Moves a task to `status` (by `by`); `None` when there is none of that id.
    async fn update_task(
        &self,
        ws: &WorkspaceId,
        id: &str,
        status: TaskStatus,
        by: &str,
        at: Timestamp,
    ) -> Result<Option<Task>>;

    // Connectors: provider connections, their mirror of provider objects, their errors.
    /// Creates a connector; [`StoreError::Conflict`] when the workspace has one for that
    /// provider already.
    async fn create_connector(&self, ws: &WorkspaceId, connector: &ConnectorRecord) -> Result<()>;
    /// Replaces a connector's config, secrets and enabled flag (its state is kept); false if
    /// there is none.
    async fn update_connector(&self, ws: &WorkspaceId, connector: &ConnectorRecord) -> Result<bool>;
    async fn get_connector(&self, ws: &WorkspaceId, provider: &str) -> Result<Option<ConnectorRecord>>;
    /// The workspace's connectors, by provider.
    async fn list_connectors(&self, ws: &WorkspaceId) -> Result<Vec<ConnectorRecord>>;
    /// Deletes a connector with its mirrored objects and errors; false if there was none.
    async fn delete_connector(&self, ws: &WorkspaceId, provider: &str) -> Result<bool>;
    /// Adds `progress` to a connector's state (counters added, sync state replaced when
    /// given); false if there is no such connector.
    async fn record_connector_progress(
        &self,
        ws: &WorkspaceId,
        provider: &str,
        progress: &ConnectorProgress,
        at: Timestamp,
    ) -> Result<bool>;
    /// Marks a connector's requested sync to run `again` when it finishes, changing nothing
    /// else of its state (a sync under way saves its cursor meanwhile); false if no sync is
    /// requested (or there is no such connector), which the caller then requests whole.
    async fn mark_connector_sync_again(&self, ws: &WorkspaceId, provider: &str, at: Timestamp) -> Result<bool>;
    /// Replaces a connector's sealed secrets with `new` if they are still `old` (a refreshed
    /// access token does not undo secrets an operator set meanwhile); false otherwise.
    async fn replace_connector_secrets(&self, ws: &WorkspaceId, provider: &str, old: &str, new: &str) -> Result<bool>;
    /// Stores each object unless the one stored is newer (a higher `version`; an equal one
    /// is replaced), in one transaction. A replaced object keeps its account and how it was
    /// matched when the new one has none. Says for each whether it was written.
    async fn put_provider_objects(
        &self,
        ws: &WorkspaceId,
        provider: &str,
        objects: &[ProviderObject],
    ) -> Result<Vec<bool>>;
    /// Mirrored objects matching `query`, by kind and id.
    async fn provider_objects(
        &self,
        ws: &WorkspaceId,
        provider: &str,
        query: &ObjectQuery,
    ) -> Result<Vec<ProviderObject>>;
    /// Links an object, and the objects whose parent it is that have no account, to
    /// `account`; false if there is no such object.
    async fn link_provider_object(
        &self,
        ws: &WorkspaceId,
        provider: &str,
        kind: &str,
        object_id: &str,
        account: &AccountId,
        matched_by: &str,
    ) -> Result<bool>;
    /// Records an error (counted on the connector; the newest [`connectors::ERRORS_KEPT`]
    /// are kept).
    async fn add_connector_error(&self, ws: &WorkspaceId, provider: &str, error: &ConnectorError) -> Result<()>;
    /// A connector's errors, newest first.
    async fn connector_errors(&self, ws: &WorkspaceId, provider: &str, limit: usize) -> Result<Vec<ConnectorError>>;
}

/// An object-valued setting as it is (none, or not an object: an empty one) with its entry
/// `name` set (`Some`) or removed (`None`), and whether the entry was there: what
/// [`crate::Store::put_setting_entry`] writes.
pub fn with_setting_entry(
    current: Option<serde_json::Value>,
    name: &str,
    value: Option<&serde_json::Value>,
) -> (serde_json::Map<String, serde_json::Value>, bool) {
    let mut entries = match current {
        Some(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let existed = match value {
        Some(v) => entries.insert(name.to_owned(), v.clone()).is_some(),
        None => entries.remove(name).is_some(),
    };
    (entries, existed)
}
