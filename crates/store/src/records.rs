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

/// The entries of the JSON object `text` whose keys are among `keys`, parsed; the others are
/// read past without being built (a reader of a few traits of every account does not pay for
/// all of them). `Value::Null` if `text` is not a JSON object.
pub fn traits_named(text: &str, keys: &[String]) -> Value {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    use std::borrow::Cow;

    /// A key, borrowed from the text unless it has escapes.
    struct Key;
    impl<'de> DeserializeSeed<'de> for Key {
        type Value = Cow<'de, str>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl<'de> Visitor<'de> for Key {
        type Value = Cow<'de, str>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a key")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
            Ok(Cow::Borrowed(v))
        }
        fn visit_str<E>(self, v: &str) -> std::result::Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_owned()))
        }
    }
    struct Named<'k>(&'k [String]);
    impl<'de> Visitor<'de> for Named<'_> {
        type Value = serde_json::Map<String, Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
            let mut out = serde_json::Map::new();
            while let Some(key) = map.next_key_seed(Key)? {
                if self.0.iter().any(|k| *k == key) {
                    out.insert(key.into_owned(), map.next_value::<Value>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(out)
        }
    }
    let mut d = serde_json::Deserializer::from_str(text);
    match d.deserialize_map(Named(keys)).and_then(|m| d.end().map(|()| m)) {
        Ok(map) => Value::Object(map),
        Err(_) => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_named_traits_are_parsed_whatever_the_others_hold() {
        let keys = ["plan".to_owned(), "tab\tkey".to_owned(), "deep".to_owned()];
        let text = r#"{"name": "Acme", "plan": "pro", "tab\tkey": [1, {"a": null}], "other": {"plan": "no", "x": [1, 2, "}"]},
            "deep": {"k": "v"}, "s": "quote \" and \\ \u00e9"}"#;
        assert_eq!(traits_named(text, &keys), json!({"plan": "pro", "tab\tkey": [1, {"a": null}], "deep": {"k": "v"}}));
        assert_eq!(traits_named("{}", &keys), json!({}));
        assert_eq!(traits_named(r#"{"plan": 1}"#, &[]), json!({}));
        for not_an_object in ["[1]", "null", "", "{\"plan\": ", "{} trailing"] {
            assert_eq!(traits_named(not_an_object, &keys), Value::Null, "{not_an_object:?}");
        }
    }
}
