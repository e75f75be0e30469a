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
    Seen {
        person_id: Option<String>,
        account_id: Option<AccountId>,
        first: Timestamp,
        last: Timestamp,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    pub ops: Vec<Op>,
    /// Which person each event (by log sequence number) belongs to, after the merges above.
    pub event_people: Vec<(i64, String)>,
}
