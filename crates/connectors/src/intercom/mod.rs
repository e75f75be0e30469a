//! Intercom: companies and contacts are matched to accounts, conversations become Steward's
//! tickets (state, priority, the contact who started them, first admin reply and close
//! times, the conversation rating) and `Ticket Opened`, `Ticket Solved` and `CSAT Rated`
//! events of the account. A conversation reaches its account through its first contact.
//!
//! Webhooks (`POST /webhooks/intercom/{workspace}`) are notifications whose `data.item` is the
//! whole object (`conversation.*`, `contact.*`, `company.*` topics), stored under its
//! `updated_at`. A backfill lists companies (by page number, or through the scroll API when
//! there are more than 10,000), contacts and conversations (by `starting_after`), each stored
//! under its own `updated_at`. The API key is an access token,
//! sent as Bearer with the `Intercom-Version` the mapping is written for.

pub mod signature;

use chrono::DateTime;
use domain::{AccountId, Timestamp};
use serde_json::{Map, Value, json};
use store::{ProviderObject, Ticket, TicketPriority, TicketStatus};

use crate::support::{query_value, resolved, ticket_events};
use crate::{Delivery, MatchKeys, Output, Resource, WebhookError};

pub const NAME: &str = "intercom";
pub const DEFAULT_BASE_URL: &str = "https://api.intercom.io";
pub const API_VERSION: &str = "2.11";

/// The kinds that match an account: companies, then contacts.
pub const ROOTS: [&str; 2] = ["company", "contact"];

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn int_of(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

fn time(seconds: i64) -> Timestamp {
    DateTime::from_timestamp(seconds, 0).unwrap_or_default()
}

/// A conversation's parent is a contact.
pub fn parent_kind(_object: &ProviderObject) -> &'static str {
    "contact"
}

/// A conversation's first contact: `contacts.contacts` (API 2.x) or a list (1.x's
/// `customers`).
fn first_contact(conversation: &Value) -> Option<String> {
    let contacts = conversation.get("contacts")?;
    let list = contacts.get("contacts").unwrap_or(contacts).as_array()?;
    list.first().and_then(|c| str_of(c, "id")).map(str::to_owned)
}

/// The mirror's record of an Intercom object, stored under its `updated_at` (or `fallback`,
/// in milliseconds, lacking one). Contacts are `contact` (older versions' `user` and `lead`).
pub fn object(value: Value, fallback: i64) -> Option<ProviderObject> {
    let kind = match str_of(&value, "type")? {
        "company" => "company",
        "contact" | "user" | "lead" => "contact",
        "conversation" => "conversation",
        _ => return None,
    };
    let object_id = str_of(&value, "id")?.to_owned();
    let version = int_of(&value, "updated_at").map_or(fallback, |t| t * 1000);
    let join = |parts: [Option<&str>; 3]| parts.into_iter().flatten().collect::<Vec<_>>().join(" · ");
    let (parent_id, label) = match kind {
        "company" => (None, join([str_of(&value, "name"), str_of(&value, "company_id"), Some(&object_id)])),
        "contact" => (None, join([str_of(&value, "name"), str_of(&value, "email"), Some(&object_id)])),
        _ => (first_contact(&value), format!("#{object_id} {}", subject(&value)).trim().to_owned()),
    };
    Some(crate::seen(kind.to_owned(), object_id, parent_id, version, label, value))
}

/// A notification: its id, and the object in `data.item`.
pub fn delivery(body: &[u8]) -> Result<Delivery, WebhookError> {
    let bad = |m: &str| WebhookError::BadPayload(m.to_owned());
    let event: Value = serde_json::from_slice(body).map_err(|e| WebhookError::BadPayload(format!("not JSON: {e}")))?;
    if str_of(&event, "type") != Some("notification_event") {
        return Err(bad("not an Intercom notification (`type` is not \"notification_event\")"));
    }
    let id = str_of(&event, "id").ok_or_else(|| bad("the notification has no `id`"))?;
    let topic = str_of(&event, "topic").ok_or_else(|| bad("the notification has no `topic`"))?;
    let created = int_of(&event, "created_at").ok_or_else(|| bad("the notification has no `created_at`"))?;
    let item = event.get("data").and_then(|d| d.get("item")).filter(|i| i.is_object());
    let item = item.ok_or_else(|| bad("the notification has no `data.item`"))?;
    Ok(Delivery {
        event_id: id.to_owned(),
        event_type: topic.to_owned(),
        objects: object(item.clone(), created * 1000).into_iter().collect(),
    })
}

/// How a company or a contact is matched. A company: the account id in its custom
/// attributes (under `metadata_key`), else its `company_id` (usually the customer's own id
/// for it); its website's domain. A contact: the account id in its custom attributes, its
/// email's domain, its email.
pub fn match_keys(root: &ProviderObject, metadata_key: &str) -> MatchKeys {
    let p = &root.payload;
    let custom = p.get("custom_attributes").and_then(|c| str_of(c, metadata_key)).map(str::to_owned);
    if root.kind == "company" {
        return MatchKeys {
            external_account: custom.or_else(|| str_of(p, "company_id").map(str::to_owned)),
            provider_id: root.object_id.clone(),
            domain: str_of(p, "website").and_then(crate::matching::normalize_domain),
            email: None,
        };
    }
    let email = str_of(p, "email").map(str::to_ascii_lowercase);
    MatchKeys {
        external_account: custom,
        provider_id: root.object_id.clone(),
        domain: email.as_deref().and_then(crate::matching::domain_of).map(str::to_owned),
        email,
    }
}

/// A conversation's subject: its title, else its first message's subject.
fn subject(conversation: &Value) -> String {
    let title = str_of(conversation, "title").filter(|t| !t.trim().is_empty());
    let source = conversation.get("source").and_then(|s| str_of(s, "subject")).filter(|t| !t.trim().is_empty());
    title.or(source).unwrap_or_default().trim().to_owned()
}

/// Open and not yet answered by an admin is new; snoozed waits; closed is solved.
fn status(conversation: &Value, first_reply: Option<i64>) -> TicketStatus {
    match str_of(conversation, "state") {
        Some("closed") => TicketStatus::Solved,
        Some("snoozed") => TicketStatus::Pending,
        _ if first_reply.is_none() => TicketStatus::New,
        _ => TicketStatus::Open,
    }
}

/// `priority`/`not_priority` (API 2.x), or the levels of newer versions.
fn priority(p: Option<&str>) -> TicketPriority {
    match p {
        Some("priority" | "high") => TicketPriority::High,
        Some("urgent") => TicketPriority::Urgent,
        Some("low") => TicketPriority::Low,
        _ => TicketPriority::Normal,
    }
}

/// Steward's ticket for a conversation of `account`.
pub fn ticket(object: &ProviderObject, account: &AccountId) -> Ticket {
    let p = &object.payload;
    let stats = p.get("statistics").cloned().unwrap_or_default();
    let updated = DateTime::from_timestamp_millis(object.version).unwrap_or_default();
    let first_reply = int_of(&stats, "first_admin_reply_at");
    let state = status(p, first_reply);
    let closed = int_of(&stats, "last_close_at").or_else(|| int_of(&stats, "first_close_at"));
    let rating = p.get("conversation_rating").cloned().unwrap_or_default();
    let mut attributes = Map::new();
    attributes.insert("provider".into(), json!(NAME));
    attributes.insert("intercom_state".into(), json!(str_of(p, "state")));
    attributes.insert("contact".into(), json!(object.parent_id));
    for key in ["admin_assignee_id", "team_assignee_id"] {
        if let Some(v) = p.get(key).filter(|v| !v.is_null()) {
            attributes.insert(key.into(), v.clone());
        }
    }
    for key in ["time_to_admin_reply", "time_to_first_close", "count_reopens"] {
        if let Some(v) = stats.get(key).filter(|v| v.is_number()) {
            attributes.insert(key.into(), v.clone());
        }
    }
    if let Some(remark) = str_of(&rating, "remark").filter(|r| !r.is_empty()) {
        attributes.insert("csat_comment".into(), json!(remark));
    }
    Ticket {
        ticket_id: object.object_id.clone(),
        account_id: Some(account.clone()),
        person_id: None,
        subject: subject(p),
        status: state,
        priority: priority(str_of(p, "priority")),
        opened_at: int_of(p, "created_at").map_or(updated, time),
        first_response_at: first_reply.map(time),
        resolved_at: resolved(state).then(|| closed.map_or(updated, time)),
        csat: int_of(&rating, "rating").filter(|r| (1..=5).contains(r)).map(|r| r as i16),
        updated_at: updated,
        attributes: Value::Object(attributes),
    }
}

/// The account traits a company sets.
fn company_traits(company: &ProviderObject) -> Map<String, Value> {
    let mut traits = Map::new();
    traits.insert("intercom_company_id".into(), json!(company.object_id));
    if let Some(name) = str_of(&company.payload, "name") {
        traits.insert("intercom_company".into(), json!(name));
    }
    traits
}

/// What a newly stored object means for its account, given the state stored before it.
pub fn outputs(object: &ProviderObject, previous: Option<&ProviderObject>, account: &AccountId) -> Vec<Output> {
    match object.kind.as_str() {
        "company" => {
            let at = DateTime::from_timestamp_millis(object.version).unwrap_or_default();
            crate::changed_traits(object, previous, company_traits, at).into_iter().collect()
        }
        "conversation" => {
            let t = ticket(object, account);
            let before = previous.map(|prev| ticket(prev, account));
            let rated = object.payload.get("conversation_rating").and_then(|r| int_of(r, "created_at"));
            let mut out = ticket_events(NAME, &t, before.as_ref(), &rated.map_or("-".into(), |t| t.to_string()), None);
            out.push(Output::Ticket(Box::new(t)));
            out
        }
        _ => Vec::new(),
    }
}

/// What a backfill lists, in order: companies and contacts first, so that conversations
/// find their account. Companies are paged by number, which Intercom serves up to 10,000
/// companies; a workspace with more is read through the scroll API ([`SCROLL`]).
pub fn resources() -> Vec<Resource> {
    vec![
        Resource { kind: "company", path: "/companies?per_page=50" },
        Resource { kind: "contact", path: "/contacts?per_page=150" },
        Resource { kind: "conversation", path: "/conversations?per_page=150" },
    ]
}

/// The most companies the page-number listing reaches.
pub const PAGED_COMPANIES: i64 = 10_000;

/// The cursor of a companies scroll's first page; `scroll:<scroll_param>` names a next one.
/// A scroll unused for a minute expires (and one cut short by a network error must start
/// again), so a backfill that resumes, or finds its scroll gone, starts a new one: the
/// companies read again change nothing.
pub const SCROLL: &str = "scroll";

/// A list page (`data`, or `conversations`) and the cursor of the next one: `pages.next`'s
/// `starting_after`, the next page's number where the list is paged by number (or the
/// scroll's start, when there are more companies than numbered pages reach), or the
/// scroll's `scroll_param` while it gives companies.
pub fn page(body: &[u8]) -> Result<(Vec<ProviderObject>, Option<String>), String> {
    let list: Value = serde_json::from_slice(body).map_err(|e| format!("a list page that is not JSON: {e}"))?;
    let items = ["data", "conversations", "companies"]
        .into_iter()
        .find_map(|key| list.get(key)?.as_array())
        .ok_or("a list page with no `data` or `conversations`")?;
    let now = chrono::Utc::now().timestamp_millis();
    let objects = items.iter().filter_map(|item| object(item.clone(), now)).collect();
    if let Some(param) = list.get("scroll_param").and_then(Value::as_str) {
        // The end of a scroll is a page with no companies.
        let next = (!items.is_empty() && !param.is_empty()).then(|| format!("{SCROLL}:{param}"));
        return Ok((objects, next));
    }
    let pages = list.get("pages").cloned().unwrap_or_default();
    let next = match pages.get("next") {
        Some(next) if next.is_object() => str_of(next, "starting_after").map(str::to_owned),
        _ => match (int_of(&pages, "page"), int_of(&pages, "total_pages")) {
            (Some(1), Some(total))
                if total > 1 && int_of(&list, "total_count").is_some_and(|n| n > PAGED_COMPANIES) =>
            {
                Some(SCROLL.to_owned())
            }
            (Some(page), Some(total)) if page < total => Some((page + 1).to_string()),
            _ => None,
        },
    };
    Ok((objects, next))
}

/// The URL of the page after `cursor`: a page number or a scroll for companies,
/// `starting_after` for the others.
pub fn page_url(base: &str, resource: &Resource, cursor: Option<&str>) -> String {
    let base = base.trim_end_matches('/');
    match cursor {
        Some(SCROLL) if resource.kind == "company" => format!("{base}/companies/scroll"),
        Some(c) if resource.kind == "company" => match c.strip_prefix("scroll:") {
            Some(param) => format!("{base}/companies/scroll?scroll_param={}", query_value(param)),
            None => format!("{base}{}&page={}", resource.path, query_value(c)),
        },
        Some(c) => format!("{base}{}&starting_after={}", resource.path, query_value(c)),
        None => format!("{base}{}", resource.path),
    }
}

fn scrolling(resource: &Resource, cursor: Option<&str>) -> bool {
    resource.kind == "company" && cursor.is_some_and(|c| c == SCROLL || c.starts_with("scroll:"))
}

/// A resumed backfill starts a scroll it was in anew: the scroll has expired since.
pub fn resume_cursor(resource: &Resource, cursor: Option<String>) -> Option<String> {
    if scrolling(resource, cursor.as_deref()) { Some(SCROLL.to_owned()) } else { cursor }
}

/// A scroll page answered `404` (the scroll expired: unused for a minute) or `5xx` (Intercom
/// asks for the scroll to be started again after a network error) goes on from a new scroll.
pub fn expired_cursor(resource: &Resource, cursor: Option<&str>, status: u16) -> Option<Option<String>> {
    let next = cursor.filter(|c| c.starts_with("scroll:"));
    (scrolling(resource, next) && (status == 404 || status >= 500)).then(|| Some(SCROLL.to_owned()))
}

pub fn auth_headers(api_key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("Bearer {api_key}")),
        ("intercom-version", API_VERSION.to_owned()),
        ("accept", "application/json".to_owned()),
    ]
}

#[cfg(test)]
mod tests;
