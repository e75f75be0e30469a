//! A journey definition once checked.

use serde::Serialize;

/// Seconds.
pub type Seconds = i64;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Journey {
    pub name: String,
    pub subject: Subject,
    pub trigger: Trigger,
    pub reentry: Reentry,
    /// A condition (the segment language) that ends a run when it holds.
    pub exit_when: Option<String>,
    /// A condition that ends a run as a conversion when it holds.
    pub goal: Option<String>,
    /// At most `max` messages to one person in `per` seconds, across journeys.
    pub frequency_cap: Option<FrequencyCap>,
    /// No message is sent between `from` and `to`, in the recipient's time zone.
    pub quiet_hours: Option<QuietHours>,
    pub steps: Vec<Step>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Accounts,
    People,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    SegmentEntered {
        segment: String,
    },
    SegmentExited {
        segment: String,
    },
    Event {
        name: String,
    },
    /// The account's health band changes to `to` (from `from`, if given).
    HealthBand {
        to: String,
        from: Option<String>,
    },
    AlertOpened {
        kind: Option<String>,
        reason: Option<String>,
    },
    /// A cron expression (minute hour day-of-month month day-of-week), in `timezone` (the
    /// workspace's when none is given), for every member of `segment`.
    Schedule {
        cron: String,
        timezone: Option<String>,
        segment: String,
    },
    Manual,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reentry {
    /// One run per subject, ever.
    Never,
    /// Again once the last run ended at least this long ago.
    After(Seconds),
    /// Again whenever triggered while no run of it is active.
    Always,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FrequencyCap {
    pub max: u32,
    pub per: Seconds,
}

/// Minutes after midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct QuietHours {
    pub from: u32,
    pub to: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    pub id: String,
    pub action: Action,
    /// The step after this one: the next written when `None` (the end after the last).
    pub next: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Email {
        template: String,
        to: String,
    },
    Slack {
        text: String,
        channel: Option<String>,
    },
    Webhook {
        url: String,
        body: Option<serde_json::Value>,
    },
    Task {
        title: String,
        assignee: String,
        priority: String,
        due: Option<Seconds>,
    },
    Wait {
        seconds: Seconds,
    },
    /// Waits for an event (keyed, when `key` is given, to the triggering event's property of
    /// that name); after `timeout` goes to `on_timeout`.
    WaitFor {
        event: String,
        key: Option<String>,
        timeout: Seconds,
        on_timeout: String,
    },
    Branch {
        condition: String,
        then: String,
        otherwise: String,
    },
    /// Goes to one arm at random, in proportion to the weights.
    Split {
        arms: Vec<(u32, String)>,
    },
    SetTrait {
        key: String,
        value: serde_json::Value,
    },
    End,
}

impl Action {
    /// The steps this one may go to besides its `next`.
    pub fn targets(&self) -> Vec<&str> {
        match self {
            Action::WaitFor { on_timeout, .. } => vec![on_timeout],
            Action::Branch { then, otherwise, .. } => vec![then, otherwise],
            Action::Split { arms } => arms.iter().map(|(_, s)| s.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the step takes time before the run goes on (so a loop through it does not
    /// spin).
    pub fn waits(&self) -> bool {
        matches!(self, Action::Wait { .. } | Action::WaitFor { .. })
    }

    /// Whether the run goes to the written next step when this one is done (a branch, a
    /// split and the end choose for themselves).
    pub fn falls_through(&self) -> bool {
        !matches!(self, Action::Branch { .. } | Action::Split { .. } | Action::End)
    }
}
