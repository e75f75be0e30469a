//! Journeys as stored: their versioned definitions, the runs (one per subject and start) with
//! their step and timer, each step a run took, and the effects steps decided: outbox messages
//! (email, Slack, webhooks) with their delivery attempts, and tasks for people.
//!
//! A run moves by [`RunUpdate`]s that say which transition they expect to follow (`seq`): a
//! step that runs twice (after a crash, or on two nodes) applies once, and the effects it
//! decided are written in the same transaction, keyed by run, step and transition, so they
//! exist once.

use domain::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::SubjectKind;

/// A journey with its current definition.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JourneyRecord {
    pub journey_id: String,
    /// Unique within the workspace.
    pub name: String,
    pub kind: SubjectKind,
    pub enabled: bool,
    /// The current version; a run keeps the version it started on.
    pub version: i64,
    /// The current version's definition as given (JSON; YAML is read into the same value).
    pub definition: Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What [`crate::Store::put_journey`] stores: a new journey, or a new version of one.
#[derive(Clone, Debug, PartialEq)]
pub struct JourneyDraft {
    pub journey_id: String,
    pub name: String,
    pub kind: SubjectKind,
    pub enabled: bool,
    pub definition: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Active,
    /// Reached the end of its steps.
    Completed,
    /// Its goal held: ended early, counted as a conversion.
    Converted,
    /// Its exit condition held, or its subject left.
    Exited,
    /// A step could not be taken (its definition names what no longer exists).
    Failed,
}

impl RunStatus {
    pub const ALL: [RunStatus; 5] =
        [RunStatus::Active, RunStatus::Completed, RunStatus::Converted, RunStatus::Exited, RunStatus::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Active => "active",
            RunStatus::Completed => "completed",
            RunStatus::Converted => "converted",
            RunStatus::Exited => "exited",
            RunStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One subject's way through one version of a journey.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Run {
    pub run_id: String,
    pub journey_id: String,
    pub version: i64,
    /// An account id or a person id, as the journey's kind says.
    pub subject_id: String,
    /// The account the run acts for (the subject, or the person's account), if known.
    pub account_id: Option<String>,
    pub status: RunStatus,
    /// The step the run is at (to take when it wakes); `None` once it ended.
    pub step: Option<String>,
    /// How many transitions the run has made: the step it is at was entered by transition
    /// `seq`. Effects are keyed by it, and an update applies only after the one it expects.
    pub seq: i64,
    /// When the run is to be stepped next; `None` while it waits for an event only, or ended.
    pub wake_at: Option<Timestamp>,
    /// What event the run waits for ([`wait_key`]), if it does.
    pub waiting: Option<String>,
    /// What started it (the trigger and its data) and what its steps noted on the way.
    pub context: Value,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
    pub ended_at: Option<Timestamp>,
}

/// The key under which a run waits for an event named `event` from `subject_id`, with the
/// property the wait is keyed to, if any (normalised as JSON text).
pub fn wait_key(event: &str, subject_id: &str, key: Option<&Value>) -> String {
    let event = domain::event_words(event);
    match key {
        Some(v) => format!("{event}\u{1f}{subject_id}\u{1f}{v}"),
        None => format!("{event}\u{1f}{subject_id}"),
    }
}

/// Who may run a journey again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reentry {
    /// Once per subject, ever.
    Never,
    /// Again once its last run ended at least this many seconds ago.
    After(i64),
    /// Again whenever it has no active run.
    Always,
}

/// A run to start, if the journey's re-entry rule allows it and no start of the same
/// trigger (`trigger_key`, unique per journey) was made before.
#[derive(Clone, Debug, PartialEq)]
pub struct RunStart {
    pub run: Run,
    pub reentry: Reentry,
    pub trigger_key: String,
}

/// A step a run took.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepRecord {
    pub run_id: String,
    pub journey_id: String,
    /// The transition that entered the step.
    pub seq: i64,
    pub step_id: String,
    pub at: Timestamp,
    /// What the step did: `sent`, `task`, `waited`, `timeout`, `then`, `else`, `arm:2`,
    /// `capped`, `suppressed`, `ended`, ...
    pub outcome: String,
}

/// A run's move from the state it was read in (`expected_seq`) to `run`, with what its steps
/// did and decided.
#[derive(Clone, Debug, PartialEq)]
pub struct RunUpdate {
    pub run: Run,
    pub expected_seq: i64,
    pub steps: Vec<StepRecord>,
    pub messages: Vec<OutboxMessage>,
    pub tasks: Vec<Task>,
}

/// How many runs a journey has had, by status, and how many times each step was taken.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct JourneyStats {
    pub entered: u64,
    pub active: u64,
    pub completed: u64,
    pub converted: u64,
    pub exited: u64,
    pub failed: u64,
    /// Step id and how many times runs took it (with its outcomes), by step id.
    pub steps: Vec<StepCount>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StepCount {
    pub step_id: String,
    pub taken: u64,
    /// Outcome and count, by outcome.
    pub outcomes: Vec<(String, u64)>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFilter {
    pub journey_id: Option<String>,
    pub subject_id: Option<String>,
    pub account_id: Option<String>,
    pub status: Option<RunStatus>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Slack,
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Slack, Channel::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Slack => "slack",
            Channel::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// To be sent at `next_attempt_at`.
    Pending,
    /// A deliverer holds it until `lease_until`; after that another may take it.
    Sending,
    /// Handed to the mail server (its end of data written) with no answer yet: a crash now
    /// leaves it here, counted as sent and never sent again (RFC 1047's window).
    Handed,
    Delivered,
    /// Every attempt failed, or the receiver refused it for good: an operator may replay it.
    Dead,
    /// Not sent: the recipient unsubscribed or is suppressed, or the endpoint is disabled.
    Suppressed,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 6] = [
        MessageStatus::Pending,
        MessageStatus::Sending,
        MessageStatus::Handed,
        MessageStatus::Delivered,
        MessageStatus::Dead,
        MessageStatus::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Sending => "sending",
            MessageStatus::Handed => "handed",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Dead => "dead",
            MessageStatus::Suppressed => "suppressed",
        }
    }

    pub fn parse(s: &str) -> Option<MessageStatus> {
        MessageStatus::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A side effect to deliver: one email, Slack message or webhook call, keyed by what decided
/// it (`message_id` = run, step and transition), rendered when it was decided.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutboxMessage {
    pub message_id: String,
    pub channel: Channel,
    /// Where it goes: an email address, a webhook's URL, a Slack incoming webhook's URL.
    pub endpoint: String,
    /// What to send, as the channel reads it (email: subject, text, html, to; webhook: body).
    pub payload: Value,
    pub journey_id: Option<String>,
    pub run_id: Option<String>,
    pub step_id: Option<String>,
    pub account_id: Option<String>,
    pub person_id: Option<String>,
    pub status: MessageStatus,
    /// Attempts made in all.
    pub attempts: i64,
    /// Attempts made before the message was last replayed: the retry schedule counts from
    /// there.
    pub retry_base: i64,
    pub next_attempt_at: Option<Timestamp>,
    pub lease_until: Option<Timestamp>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

/// One attempt to deliver a message and what came of it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attempt {
    pub message_id: String,
    /// 1 for the first.
    pub attempt: i64,
    pub at: Timestamp,
    /// `delivered`, `retry`, `gone`, `rejected`, `interrupted` (the process stopped during it).
    pub outcome: String,
    /// The receiver's status code (HTTP or SMTP), if it answered.
    pub status: Option<i64>,
    pub detail: String,
    pub duration_ms: i64,
}

/// A message's new state after an attempt (or a replay), with the attempt to record.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageUpdate {
    pub message_id: String,
    pub status: MessageStatus,
    pub attempts: i64,
    pub next_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
    pub attempt: Option<Attempt>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct MessageFilter {
    pub account_id: Option<String>,
    pub journey_id: Option<String>,
    pub run_id: Option<String>,
    pub status: Option<MessageStatus>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Open,
    Done,
    Dismissed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Open => "open",
            TaskStatus::Done => "done",
            TaskStatus::Dismissed => "dismissed",
        }
    }

    pub fn parse(s: &str) -> Option<TaskStatus> {
        [TaskStatus::Open, TaskStatus::Done, TaskStatus::Dismissed].into_iter().find(|k| k.as_str() == s)
    }
}

/// Work for a person on the team, created by a journey step (keyed like a message) or by hand.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Task {
    pub task_id: String,
    pub title: String,
    pub body: Option<String>,
    /// An operator's email, or a role (`csm`: the account's owner) resolved when shown.
    pub assignee: String,
    pub priority: String,
    pub due_at: Option<Timestamp>,
    pub status: TaskStatus,
    pub account_id: Option<String>,
    pub person_id: Option<String>,
    pub journey_id: Option<String>,
    pub run_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Who closed it, when it is done or dismissed.
    pub closed_by: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub assignee: Option<String>,
    pub account_id: Option<String>,
}

pub fn new_journey_id() -> String {
    format!("jny_{}", domain::random_token(16))
}

pub fn new_run_id() -> String {
    format!("run_{}", domain::random_token(16))
}

pub fn new_task_id() -> String {
    format!("task_{}", domain::random_token(16))
}
