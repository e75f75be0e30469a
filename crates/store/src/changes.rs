//! What processing a slice of the event log changes: decided by the processor, applied by a
//! backend in one transaction together with the cursor move.

use domain::{AccountId, IdentityKey, Timestamp};
use serde_json::{Map, Value};

/// What the store knows of the person an identity points to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownPerson {
    pub person_id: String,
    pub user_id: Option<String>,
}

/// One change, applied in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    CreatePerson {
        person_id: String,
        user_id: Option<String>,
        at: Timestamp,
    },
    SetUserId {
        person_id: String,
        user_id: String,
    },
    /// Points `key` at `person_id`, replacing where it pointed before.
    LinkIdentity {
        key: IdentityKey,
        person_id: String,
    },
    /// Moves everything of `from` (identities, memberships, events, traits it lacks) to
    /// `into`, and removes `from`.
    MergePeople {
        from: String,
        into: String,
        at: Timestamp,
    },
    /// Merges `traits` into the person's traits, recording each changed value in the history.
    SetPersonTraits {
        person_id: String,
        traits: Map<String, Value>,
        at: Timestamp,
    },
    /// Creates the account if it is new.
    UpsertAccount {
        account_id: AccountId,
        at: Timestamp,
    },
    SetAccountTraits {
        account_id: AccountId,
        traits: Map<String, Value>,
        at: Timestamp,
    },
    AddMembership {
        person_id: String,
        account_id: AccountId,
        at: Timestamp,
    },
    /// The person was active between `first` and `last`: widens the person's first/last seen,
    /// and that of `account_id` (the explicit one) or else of every account the person is in.
    /// With no person, widens only the account's.
    Seen {
        person_id: Option<String>,
        account_id: Option<AccountId>,
        first: Timestamp,
        last: Timestamp,
    },
    /// Widens only the person's first/last seen (their events named accounts, which the
    /// `Seen` of those accounts cover).
    PersonSeen {
        person_id: String,
        first: Timestamp,
        last: Timestamp,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    pub ops: Vec<Op>,
    /// Which person each event belongs to, after the merges above, in log order; a later
    /// entry for the same event replaces an earlier one.
    pub event_people: Vec<EventPerson>,
    /// What the slice adds to the daily usage rollups, applied after `ops`, aggregated per
    /// person, account, day and metric, in that order.
    pub usage: Vec<crate::Usage>,
}

/// Who did one event, with what the indexes of events by person and account need of it.
#[derive(Clone, Debug, PartialEq)]
pub struct EventPerson {
    pub seq: i64,
    /// Shared by the events of one person in a slice rather than copied for each. Empty for
    /// an event of an account with no person (a connector's `Payment Failed`): it is the
    /// account's alone.
    pub person_id: std::sync::Arc<str>,
    /// The account the event names (`group`, `context.groupId`), if any.
    pub account_id: Option<AccountId>,
    pub timestamp: Timestamp,
}

impl EventPerson {
    pub fn of(logged: &crate::LoggedEvent, person_id: impl Into<std::sync::Arc<str>>) -> EventPerson {
        EventPerson {
            seq: logged.position.seq,
            person_id: person_id.into(),
            account_id: logged.event.group_id.as_deref().and_then(|g| AccountId::parse(g).ok()),
            timestamp: logged.event.timestamp,
        }
    }
}
