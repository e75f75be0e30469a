//! People rows become what the customer's product would have sent through Segment: an
//! `identify` with the person's traits and, when the row names an account, a `group` call
//! making them a member. They go through the event log like any other message, so a replay
//! rebuilds them, and their ids come from their content, so importing a row again changes
//! nothing while a changed row updates the person.

use anyhow::{Result, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use domain::{AccountId, EventType, NewEvent};
use serde_json::{Map, Value, json};

use super::{Parser, Record, Row, UserScope, content_id};

pub(super) const COLUMNS: &[(&str, bool)] =
    &[("user_id", true), ("account_id", false), ("email", false), ("name", false), ("created_at", false)];

pub(super) fn parse(p: &Parser, row: &impl Row, line: u64) -> Result<Record> {
    let account = p.account(row, line)?;
    let user = p.some(row.get("user_id"), line, "user_id")?;
    let user = match (p.options.user_scope, &account) {
        (UserScope::Workspace, _) => user.to_owned(),
        (UserScope::Account, Some(a)) => format!("{a}/{user}"),
        (UserScope::Account, None) => bail!(
            "{} line {line}: account_id is missing (with --user-scope account a user id names a person only within an account)",
            p.file
        ),
    };
    let mut traits = row.extra();
    if let Some(email) = row.get("email") {
        if !is_email(email) {
            return Err(p.error(line, "email", email, "an email address"));
        }
        traits.insert("email".into(), email.into());
    }
    if let Some(name) = row.get("name") {
        traits.insert("name".into(), name.into());
    }
    let created = p.time(row, line, "created_at")?;
    if let Some(at) = created {
        traits.insert("created_at".into(), at.to_rfc3339_opts(SecondsFormat::Secs, true).into());
    }
    if p.check_only {
        return Ok(Record::Checked);
    }
    // A person who signed up at a known time was first seen then; otherwise now, as a
    // message sent by the import would be.
    Ok(Record::Events(events(&user, account.as_ref(), &traits, created.unwrap_or(p.now))))
}

/// `something@somewhere`, without spaces: enough to catch a column mapped by mistake.
fn is_email(v: &str) -> bool {
    v.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'))
        && !v.contains(char::is_whitespace)
}

/// The identify (and group) a person's row stands for.
fn events(user: &str, account: Option<&AccountId>, traits: &Map<String, Value>, at: DateTime<Utc>) -> Vec<NewEvent> {
    let mut text = vec!["identify".to_owned(), user.to_owned()];
    text.extend(traits.iter().map(|(k, v)| format!("{k}={v}")));
    let parts: Vec<&str> = text.iter().map(String::as_str).collect();
    let timestamp = at.to_rfc3339_opts(SecondsFormat::Millis, true);
    let id = content_id("import_", &parts);
    let identify =
        json!({"type": "identify", "messageId": id, "userId": user, "traits": traits, "timestamp": timestamp});
    let mut out = vec![event(EventType::Identify, id, user, None, at, identify)];
    if let Some(account) = account {
        let id = content_id("import_", &["group", user, account.as_str()]);
        let group =
            json!({"type": "group", "messageId": id, "userId": user, "groupId": account, "timestamp": timestamp});
        out.push(event(EventType::Group, id, user, Some(account), at, group));
    }
    out
}

fn event(
    kind: EventType,
    message_id: String,
    user: &str,
    account: Option<&AccountId>,
    at: DateTime<Utc>,
    payload: Value,
) -> NewEvent {
    NewEvent {
        message_id,
        kind,
        name: None,
        user_id: Some(user.to_owned()),
        anonymous_id: None,
        group_id: account.map(AccountId::to_string),
        previous_id: None,
        timestamp: at,
        received_at: Utc::now(),
        payload: payload.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_person_is_an_identify_and_a_group_with_ids_from_their_content() {
        let at = "2020-01-02T03:04:05Z".parse().unwrap();
        let acme = AccountId::parse("acme").unwrap();
        let traits: Map<String, Value> = [("email".to_owned(), json!("ana@acme.test"))].into_iter().collect();
        let e = events("ana", Some(&acme), &traits, at);
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].kind, e[1].kind), (EventType::Identify, EventType::Group));
        assert_eq!(e[1].group_id.as_deref(), Some("acme"));
        let identify: Value = serde_json::from_str(&e[0].payload).unwrap();
        assert_eq!(identify["traits"], json!({"email": "ana@acme.test"}));
        assert_eq!(identify["messageId"], json!(e[0].message_id));
        let later = events("ana", Some(&acme), &traits, Utc::now());
        assert_eq!(later[0].message_id, e[0].message_id, "the same row, the same ids");
        let changed: Map<String, Value> = [("email".to_owned(), json!("ana@new.test"))].into_iter().collect();
        let changed = events("ana", None, &changed, at);
        assert_eq!(changed.len(), 1, "no account, no group call");
        assert_ne!(changed[0].message_id, e[0].message_id, "a changed row is a new identify");
        assert!(is_email("ana@acme.test") && !is_email("ana") && !is_email("a na@x") && !is_email("@x"));
    }
}
