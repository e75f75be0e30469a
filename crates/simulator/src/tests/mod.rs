//! Tests of the simulation as a whole: shared helpers, then the Segment contract (`spec`) and
//! the stories the data tells (`stories`).

mod spec;
mod stories;

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use crate::{Fate, SimAccount, SimConfig, Simulation};

pub(super) fn end() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z").unwrap().with_timezone(&Utc)
}

/// Small enough to generate in a blink in a debug build, big enough to hold every fate.
pub(super) fn small(seed: u64) -> SimConfig {
    SimConfig { seed, accounts: 40, days: 60, end: end() }
}

pub(super) fn time(m: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(m["timestamp"].as_str().expect("a timestamp")).expect("RFC 3339").with_timezone(&Utc)
}

/// A finished run, with each message attributed to its account.
pub(super) struct Run {
    pub sim: Simulation,
    pub messages: Vec<Value>,
    /// Account id to (time, index into `messages`).
    pub by_account: HashMap<String, Vec<(DateTime<Utc>, usize)>>,
}

impl Run {
    pub fn new(config: SimConfig) -> Run {
        let sim = Simulation::new(config);
        let messages: Vec<Value> = sim.messages().collect();
        let mut account_of_user = HashMap::new();
        for m in &messages {
            if m["type"] == "group" {
                account_of_user
                    .insert(m["userId"].as_str().unwrap().to_owned(), m["groupId"].as_str().unwrap().to_owned());
            }
        }
        let mut by_account: HashMap<String, Vec<(DateTime<Utc>, usize)>> = HashMap::new();
        for (i, m) in messages.iter().enumerate() {
            let account = m["groupId"]
                .as_str()
                .or(m["context"]["groupId"].as_str())
                .or_else(|| m["userId"].as_str().and_then(|u| account_of_user.get(u)).map(String::as_str));
            if let Some(account) = account {
                by_account.entry(account.to_owned()).or_default().push((time(m), i));
            }
        }
        Run { sim, messages, by_account }
    }

    pub fn window_start(&self) -> DateTime<Utc> {
        self.sim.config.end - Duration::days(i64::from(self.sim.config.days))
    }

    /// How much the account's people used the product in [from, to): tracks and pages.
    pub fn usage(&self, account: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> usize {
        self.by_account.get(account).map_or(0, |events| {
            events
                .iter()
                .filter(|(t, i)| {
                    *t >= from && *t < to && matches!(self.messages[*i]["type"].as_str(), Some("track" | "page"))
                })
                .count()
        })
    }

    /// Distinct people using the product in [from, to): not counting the billing notices and
    /// survey answers sent in their name.
    pub fn active_people(&self, account: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> usize {
        self.by_account.get(account).map_or(0, |events| {
            events
                .iter()
                .filter(|(t, i)| {
                    let m = &self.messages[*i];
                    *t >= from && *t < to && m["event"] != "Payment Failed" && m["traits"].get("nps").is_none()
                })
                .filter_map(|(_, i)| self.messages[*i]["userId"].as_str())
                .collect::<HashSet<_>>()
                .len()
        })
    }

    pub fn of_fate(&self, fate: Fate) -> impl Iterator<Item = &SimAccount> {
        self.sim.accounts().iter().filter(move |a| a.fate == fate)
    }
}

/// Runs shared by the tests of fates, which read them in different ways: three small ones and a
/// longer one in which accounts sign up, grow and fade inside the window.
pub(super) fn fate_runs() -> &'static [Run] {
    static RUNS: OnceLock<Vec<Run>> = OnceLock::new();
    RUNS.get_or_init(|| {
        [small(1), small(2), small(3), SimConfig { seed: 4, accounts: 60, days: 150, end: end() }]
            .into_iter()
            .map(Run::new)
            .collect()
    })
}
