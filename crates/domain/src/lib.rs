//! Steward's domain types. Everything here can only hold valid values and does no IO.

mod event;
mod ids;
mod keys;
mod message_id;
mod money;
mod track;
mod tracks;

pub use event::{EventType, NewEvent, UnknownEventType, event_words, same_event};
pub use ids::{AccountId, IdKind, IdentityKey, InvalidId, WorkspaceId, person_id_for};
pub use keys::{ApiKey, KeyHash, KeyRole, NewApiKey, UnknownRole};
pub use message_id::{DerivedId, MessageId};
pub use money::{Currency, InvalidMoney, Money};
pub use track::TrackPayload;
pub use tracks::{Activity, Days, NewTrack, Track, TrackRows, same_opt, same_str};

/// Timestamps are always UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// Random bytes from the operating system, for ids and secrets.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf
}

/// A random token of `len` characters from `[0-9A-Za-z]`, for ids and secrets.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes::<64>() {
            // Rejection sampling keeps every character equally likely.
            if b < 248 && out.len() < len {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    out
}
