//! What the SQLite tests share.

use domain::{EventType, NewEvent};

/// A track event of `user`, `minute` minutes into a fixed day, as capture would store it.
pub fn track(id: &str, user: &str, minute: i64) -> NewEvent {
    let at = chrono::DateTime::from_timestamp(1_790_000_000 + minute * 60, 0).unwrap();
    NewEvent {
        message_id: id.to_owned(),
        kind: EventType::Track,
        name: Some("Report Created".into()),
        user_id: Some(user.to_owned()),
        anonymous_id: None,
        group_id: None,
        previous_id: None,
        timestamp: at,
        received_at: at,
        payload: "{}".into(),
    }
}
