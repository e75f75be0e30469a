//! Segments as stored: their definitions, each subject's membership (with when it may next
//! change by time alone), and the stream of entries and exits that journeys start from.

use domain::Timestamp;
use serde::{Deserialize, Serialize};

/// What a segment's members are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Accounts,
    People,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Accounts => "accounts",
            SubjectKind::People => "people",
        }
    }

    pub fn parse(s: &str) -> Option<SubjectKind> {
        match s {
            "accounts" => Some(SubjectKind::Accounts),
            "people" => Some(SubjectKind::People),
            _ => None,
        }
    }
}

/// A segment's definition: its condition as written (checked before it is stored).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SegmentRecord {
    pub segment_id: String,
    /// Unique within the workspace; conditions name other segments by it.
    pub name: String,
    pub kind: SubjectKind,
    pub condition: String,
    pub description: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One subject's membership as just evaluated.
#[derive(Clone, Debug, PartialEq)]
pub struct MembershipUpdate {
    /// An account id or a person id.
    pub subject_id: String,
    pub member: bool,
    /// When the result can next change with no new data, if it can.
    pub next_check: Option<Timestamp>,
}

/// A current member and since when.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SegmentMember {
    pub subject_id: String,
    pub since: Timestamp,
}

/// A segment a subject is a member of, and since when.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Membership {
    pub segment_id: String,
    pub since: Timestamp,
}

/// A subject entering or leaving a segment. `seq` orders a workspace's changes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SegmentChange {
    pub seq: i64,
    pub segment_id: String,
    pub subject_id: String,
    pub entered: bool,
    pub at: Timestamp,
}

/// A membership due to be evaluated again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueCheck {
    pub segment_id: String,
    pub subject_id: String,
    pub at: Timestamp,
}

/// The names a workspace's data has: what a segment's condition may name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vocabulary {
    /// Every trait key accounts have had, sorted.
    pub account_traits: Vec<String>,
    /// Every trait key people have had, sorted.
    pub person_traits: Vec<String>,
    /// Every event counted in the usage rollups (`$page`, `$screen` and `$any` aside), sorted.
    pub events: Vec<String>,
}

/// What a people segment reads of a person.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PersonSummary {
    pub person_id: String,
    pub user_id: Option<String>,
    pub traits: serde_json::Value,
    pub first_seen_at: Option<Timestamp>,
    pub last_seen_at: Option<Timestamp>,
}

pub fn new_segment_id() -> String {
    format!("seg_{}", domain::random_token(16))
}
