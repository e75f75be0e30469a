//! Journeys (playbooks): what starts a run for an account or a person, the steps it takes,
//! and when it stops. A definition is a JSON document (or YAML read into the same value):
//!
//! ```json
//! {"name": "Onboarding", "trigger": {"segment_entered": "New, no project yet"},
//!  "reentry": "never", "goal": "last(event \"Project Created\") is set",
//!  "steps": [
//!    {"id": "welcome", "email": {"template": "welcome", "to": "account_owner"}},
//!    {"id": "pause", "wait": "2d"},
//!    {"id": "check", "branch": {"if": "count(event \"Project Created\", 30d) > 0",
//!                               "then": "done", "else": "nudge"}},
//!    {"id": "nudge", "task": {"title": "Call them", "assignee": "csm", "priority": "high", "due": "3d"}},
//!    {"id": "done", "end": {}}
//!  ]}
//! ```
//!
//! Steps run in the order written unless a step says `next` (or branches). [`parse`] checks
//! the whole document and returns every problem at once, each with the path of the value at
//! fault (`steps[2].branch.then`) and what was expected.

mod check;
mod cron;
mod model;

pub use check::{Problem, parse};
pub use cron::Cron;
pub use model::*;
