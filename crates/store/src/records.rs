//! The records the store keeps and returns.

use domain::{AccountId, EventType, KeyRole, Money, Timestamp, WorkspaceId};
use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Workspace {
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub created_at: Timestamp,
}

/// A person who signs in to Steward (a CSM, an admin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Operator {
    pub operator_id: String,
    pub workspace_id: WorkspaceId,
    pub email: String,
    pub name: String,
    /// Admin, member or viewer.
    pub role: KeyRole,
    /// An argon2 PHC string; none until a password is set.
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub created_at: Timestamp,
    /// A disabled operator cannot sign in.
    pub disabled_at: Option<Timestamp>,
}

/// A customer account (a Segment group).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Account {
    pub account_id: AccountId,
    /// The `name` trait, if any.
    pub name: Option<String>,
    pub traits: Value,
    pub people_count: i64,
    pub first_seen_at: Option<Timestamp>,
    /// Kept to the minute: activity less than a minute after it may not move it.
    pub last_seen_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// An end user of the customer's product.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Person {
    pub person_id: String,
    pub user_id: Option<String>,
    /// Every `userId` linked to this person (more than one after an alias).
    pub user_ids: Vec<String>,
    pub anonymous_ids: Vec<String>,
    pub traits: Value,
    pub account_ids: Vec<AccountId>,
    pub first_seen_at: Option<Timestamp>,
    /// Kept to the minute: activity less than a minute after it may not move it.
    pub last_seen_at: Option<Timestamp>,
}

/// An event as the read API returns it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredEvent {
    pub seq: i64,
    pub message_id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// `event` of a track, `name` of a page or screen.
    pub name: Option<String>,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// None until processing has resolved who sent it.
    pub person_id: Option<String>,
    /// The accounts it counts towards: the explicit one, or else every account of its person.
    pub account_ids: Vec<AccountId>,
    pub timestamp: Timestamp,
    pub received_at: Timestamp,
    /// The whole normalized message.
    pub message: Value,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventFilter {
    pub message_id: Option<String>,
    pub user_id: Option<String>,
    pub account_id: Option<AccountId>,
    pub kind: Option<EventType>,
    /// Inclusive lower bound on `timestamp`.
    pub since: Option<Timestamp>,
    /// Exclusive upper bound on `timestamp`.
    pub until: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraitSubject {
    Person(String),
    Account(AccountId),
}

impl TraitSubject {
    pub fn kind(&self) -> &'static str {
        match self {
            TraitSubject::Person(_) => "person",
            TraitSubject::Account(_) => "account",
        }
    }
    pub fn id(&self) -> &str {
        match self {
            TraitSubject::Person(p) => p,
            TraitSubject::Account(a) => a.as_str(),
        }
    }
}

/// One trait taking a new value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraitChange {
    pub key: String,
    pub value: Value,
    pub at: Timestamp,
}

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($name::$variant),)+
                    other => Err(format!(concat!("unknown ", stringify!($name), " {:?}"), other)),
                }
            }
        }
    };
}

string_enum!(
    /// Lifecycle of a subscription, as billing systems name it.
    SubscriptionStatus { Trialing = "trialing", Active = "active", PastDue = "past_due", Paused = "paused", Canceled = "canceled" }
);
string_enum!(TicketStatus { New = "new", Open = "open", Pending = "pending", Solved = "solved", Closed = "closed" });
string_enum!(TicketPriority { Low = "low", Normal = "normal", High = "high", Urgent = "urgent" });

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Subscription {
    /// The billing system's id.
    pub subscription_id: String,
    pub account_id: AccountId,
    pub plan: Option<String>,
    pub status: SubscriptionStatus,
    /// Monthly recurring revenue, normalized to a month.
    pub mrr: Money,
    pub quantity: i64,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub current_period_end: Option<Timestamp>,
    pub cancel_at_period_end: bool,
    /// When the source last changed it: the newest state wins.
    pub updated_at: Timestamp,
    pub attributes: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ticket {
    /// The support system's id.
    pub ticket_id: String,
    pub account_id: Option<AccountId>,
    pub person_id: Option<String>,
    pub subject: String,
    pub status: TicketStatus,
    pub priority: TicketPriority,
    pub opened_at: Timestamp,
    pub first_response_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    /// Satisfaction rating, 1 to 5.
    pub csat: Option<i16>,
    pub updated_at: Timestamp,
    pub attributes: Value,
}
