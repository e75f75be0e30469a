//! Zendesk: organizations and end users (the requesters) are matched to accounts, tickets
//! become Steward's tickets (status, priority, requester, first reply and resolution times,
//! the satisfaction rating) and `Ticket Opened`, `Ticket Solved` and `CSAT Rated` events of
//! the account. A ticket reaches its account through its organization or, lacking one, its
//! requester.
//!
//! Webhooks (`POST /webhooks/zendesk/{workspace}`) are Zendesk's event subscriptions
//! (`zen:event-type:ticket.*`, `user.*`, `organization.*`): their `detail` is the object's
//! state, stored under its `updated_at`. A ticket event carries no metrics and no rating: the
//! stored state's are kept ([`complete`]), a public reply by an agent (`comment_added`) marks
//! the first reply, a change to solved marks the resolution. Ratings come from a trigger
//! whose webhook posts a body written with placeholders ([`rating_delivery`]), signed as the
//! event subscriptions are. A backfill lists organizations,
//! end users and tickets (with their metric sets) by cursor pagination, each stored under its
//! own `updated_at`.
//!
//! The connector's `base_url` is the account's host (`https://<subdomain>.zendesk.com`); its
//! API key is `<email>/token:<api token>` (sent as Basic authentication) or an OAuth access
//! token (sent as Bearer).

pub mod signature;

use base64::Engine;
use chrono::DateTime;
use domain::{AccountId, Timestamp};
use serde_json::{Map, Value, json};
use store::{ProviderObject, Ticket, TicketPriority, TicketStatus};

use crate::support::{query_value, resolved, ticket_events};
use crate::{Delivery, MatchKeys, Output, Resource, WebhookError};

pub const NAME: &str = "zendesk";

/// The kinds that match an account: organizations, then requesters.
pub const ROOTS: [&str; 2] = ["organization", "user"];

/// What the stored ticket marks: the first public reply by an agent and the resolution, seen
/// by webhooks (a backfill reads them from the ticket's metric set).
const FIRST_REPLY: &str = "steward_first_reply_at";
const SOLVED: &str = "steward_solved_at";

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// An id: a number in the REST API, a string in event payloads.
fn id_of(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn time_of(v: &Value, key: &str) -> Option<Timestamp> {
    str_of(v, key).and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.to_utc())
}

fn stamp(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A ticket's parent: its organization or, lacking one, its requester.
pub fn parent_kind(object: &ProviderObject) -> &'static str {
    if id_of(&object.payload, "organization_id").is_some() { "organization" } else { "user" }
}

/// The mirror's record of a Zendesk object of `kind`, stored under its `updated_at` (or
/// `fallback`, in milliseconds, lacking one). Statuses and priorities are kept in lower case,
/// as the REST API gives them (event payloads give them in upper case).
pub fn object(kind: &str, mut value: Value, fallback: i64) -> Option<ProviderObject> {
    let object_id = id_of(&value, "id")?;
    let version = time_of(&value, "updated_at").map_or(fallback, |t| t.timestamp_millis());
    for key in ["status", "priority"] {
        if let Some(v) = str_of(&value, key).map(str::to_ascii_lowercase) {
            value[key] = json!(v);
        }
    }
    let (parent_id, label) = match kind {
        "ticket" => (
            id_of(&value, "organization_id").or_else(|| id_of(&value, "requester_id")),
            format!("#{object_id} {}", str_of(&value, "subject").unwrap_or_default()).trim().to_owned(),
        ),
        "organization" => (None, str_of(&value, "name").unwrap_or(&object_id).to_owned()),
        "user" => (
            None,
            [str_of(&value, "name"), str_of(&value, "email"), Some(object_id.as_str())]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" · "),
        ),
        _ => return None,
    };
    Some(crate::seen(kind.to_owned(), object_id, parent_id, version, label, value))
}

/// The `type` of the body a trigger's webhook sends when a satisfaction rating changes (see
/// [`rating_delivery`]).
pub const RATING_TYPE: &str = "satisfaction_rating";

/// An event subscription's delivery (its id, and the object its `detail` carries), or a
/// trigger's satisfaction rating ([`rating_delivery`]).
pub fn delivery(body: &[u8]) -> Result<Delivery, WebhookError> {
    let bad = |m: &str| WebhookError::BadPayload(m.to_owned());
    let event: Value = serde_json::from_slice(body).map_err(|e| WebhookError::BadPayload(format!("not JSON: {e}")))?;
    let kind = str_of(&event, "type").ok_or_else(|| bad("the event has no `type`"))?;
    if kind == RATING_TYPE {
        return rating_delivery(&event);
    }
    let what = kind
        .strip_prefix("zen:event-type:")
        .ok_or_else(|| bad("not a Zendesk event (`type` is not `zen:event-type:...`)"))?;
    let id = str_of(&event, "id").ok_or_else(|| bad("the event has no `id`"))?;
    let at = time_of(&event, "time").ok_or_else(|| bad("the event has no `time`"))?;
    let detail = event.get("detail").filter(|d| d.is_object()).ok_or_else(|| bad("the event has no `detail`"))?;
    let (domain, change) = what.split_once('.').unwrap_or((what, ""));
    let mut carried = detail.clone();
    if domain == "ticket" && change == "comment_added" {
        let comment = event.get("event").and_then(|e| e.get("comment")).cloned().unwrap_or_default();
        let by_agent = comment.get("author").and_then(|a| a.get("is_staff")).and_then(Value::as_bool);
        if by_agent == Some(true) && comment.get("is_public").and_then(Value::as_bool) == Some(true) {
            carried[FIRST_REPLY] = json!(stamp(at));
        }
    }
    // Agents are users too: only end users (requesters) are matched, as a backfill lists them.
    let role = str_of(detail, "role").map(|r| r.to_ascii_lowercase().replace('_', "-"));
    let kept = match domain {
        "user" => role.as_deref().is_none_or(|r| r == "end-user"),
        _ => matches!(domain, "ticket" | "organization"),
    };
    let objects = if kept { object(domain, carried, at.timestamp_millis()).into_iter().collect() } else { Vec::new() };
    Ok(Delivery { event_id: id.to_owned(), event_type: kind.to_owned(), objects })
}

/// A satisfaction rating told by a trigger ("Satisfaction changed") whose webhook posts this
/// JSON body, written with Zendesk's placeholders (event subscriptions carry no rating):
///
/// ```json
/// {"type": "satisfaction_rating", "ticket_id": "{{ticket.id}}",
///  "rating": "{{satisfaction.current_rating}}", "comment": "{{satisfaction.current_comment}}",
///  "requester_id": "{{ticket.requester.id}}", "requester_email": "{{ticket.requester.email}}",
///  "updated_at": "{{ticket.updated_at_with_timestamp}}"}
/// ```
///
/// The rating is the placeholder's text (`Good, I'm satisfied`, `Bad, I'm unsatisfied`,
/// `Offered`, `Unoffered`) or a score from 1 to 5. It becomes the ticket's
/// `satisfaction_rating` at `updated_at`; what the rating does not say (status, subject,
/// metrics) is kept from the ticket as stored ([`complete`]). Its id is the ticket's, the
/// rating's and the time's, so a retried invocation is the same delivery.
pub fn rating_delivery(event: &Value) -> Result<Delivery, WebhookError> {
    let bad = |m: String| WebhookError::BadPayload(m);
    let text = |key: &str| str_of(event, key).map(str::trim).filter(|t| !t.is_empty());
    let ticket =
        match event.get("ticket_id") {
            Some(Value::Number(n)) => n.to_string(),
            _ => text("ticket_id").filter(|t| t.bytes().all(|b| b.is_ascii_digit())).map(str::to_owned).ok_or_else(
                || bad("a satisfaction rating needs `ticket_id`, the ticket's number (`{{ticket.id}}`)".into()),
            )?,
        };
    let updated = text("updated_at").and_then(lenient_time).ok_or_else(|| {
        bad("a satisfaction rating needs `updated_at`, an ISO 8601 time (`{{ticket.updated_at_with_timestamp}}`)"
            .into())
    })?;
    let said = match event.get("rating") {
        Some(Value::Number(n)) => n.to_string(),
        _ => text("rating").unwrap_or_default().to_ascii_lowercase(),
    };
    let score = match said.as_str() {
        s if s.starts_with("good") => json!("good"),
        s if s.starts_with("bad") => json!("bad"),
        "" | "offered" | "unoffered" => json!(if said.is_empty() { "unoffered" } else { said.as_str() }),
        s => match s.parse::<i64>() {
            Ok(n) if (1..=5).contains(&n) => json!(n),
            _ => {
                return Err(bad(format!(
                    "`rating` {said:?} is not a Zendesk satisfaction rating (good, bad, offered, unoffered, or 1 to 5)"
                )));
            }
        },
    };
    let mut rating = json!({"score": score, RATED_AT: stamp(updated)});
    if let Some(comment) = text("comment") {
        rating["comment"] = json!(comment);
    }
    let mut detail = json!({"id": ticket, "satisfaction_rating": rating, "updated_at": stamp(updated)});
    // Ids only where the placeholder gave one (a requester's, a number).
    for key in ["requester_id", "organization_id"] {
        if let Some(id) = text(key).filter(|t| t.bytes().all(|b| b.is_ascii_digit())) {
            detail[key] = json!(id);
        }
    }
    if let Some(email) = text("requester_email") {
        detail["requester"] = json!({"email": email.to_ascii_lowercase()});
    }
    let event_id = format!("{RATING_TYPE}:{ticket}:{said}:{}", updated.timestamp());
    let objects = object("ticket", detail, updated.timestamp_millis()).into_iter().collect();
    Ok(Delivery { event_id, event_type: RATING_TYPE.to_owned(), objects })
}

/// A time as Zendesk's placeholders write it: RFC 3339, or ISO 8601 to the minute
/// (`2024-05-01T10:30Z`, what `{{ticket.updated_at_with_timestamp}}` gives).
fn lenient_time(text: &str) -> Option<Timestamp> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .ok()
        .or_else(|| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%MZ").ok().map(|t| t.and_utc()))
}

const RATING: &str = "satisfaction_rating";
/// When the rating a ticket holds was given, or known: a trigger's rating says when it was
/// given; one read with the ticket (a backfill's) is known as of that read.
const RATED_AT: &str = "steward_rated_at";

/// The time (milliseconds) as of which the stored ticket's rating is known: when it was
/// given, or when it was read with the ticket; `None` when it holds none.
fn rating_known_at(stored: &ProviderObject) -> Option<i64> {
    let rating = stored.payload.get(RATING)?;
    Some(time_of(rating, RATED_AT).map_or(stored.version, |t| t.timestamp_millis()))
}

/// A trigger's rating older than the ticket stored (its webhook was retried late, after a
/// ticket event): the stored ticket takes it, at the stored ticket's version, when the stored
/// rating is older still (or there is none); otherwise it is stale. Says whether `object` is
/// now that ticket. A ticket event carries no rating, so without this a rating delivered after
/// a later event of its ticket would be left out until a backfill read it.
pub fn late(object: &mut ProviderObject, stored: &ProviderObject) -> bool {
    let given = object.payload.get(RATING).filter(|r| r.get(RATED_AT).is_some());
    let (true, true, Some(rating)) = (object.kind == "ticket", object.payload.get("status").is_none(), given) else {
        return false;
    };
    if stored.version <= object.version || rating_known_at(stored).is_some_and(|known| known >= object.version) {
        return false;
    }
    let mut payload = stored.payload.clone();
    let Value::Object(fields) = &mut payload else { return false };
    fields.insert(RATING.into(), rating.clone());
    object.payload = payload;
    object.version = stored.version;
    object.parent_id = stored.parent_id.clone().or(object.parent_id.take());
    true
}

/// Keeps what the stored state knew and a newer one does not tell (an event's ticket has no
/// metric set, no rating, no marks), the earliest first reply, and the resolution's time while
/// the ticket stays resolved (a change to resolved is marked at the change). A rating kept
/// from a state read whole (a backfill's) is marked as known as of that state.
pub fn complete(object: &mut ProviderObject, previous: &ProviderObject) {
    // A rating (no status: a ticket partly told) belongs where the stored ticket does.
    if object.parent_id.is_none() || (object.payload.get("status").is_none() && previous.parent_id.is_some()) {
        object.parent_id = previous.parent_id.clone();
    }
    let (Value::Object(now), Value::Object(before)) = (&mut object.payload, &previous.payload) else { return };
    let rating_kept = !now.contains_key(RATING);
    for (key, value) in before {
        if !now.contains_key(key) {
            now.insert(key.clone(), value.clone());
        }
    }
    if rating_kept
        && let Some(Value::Object(rating)) = now.get_mut(RATING)
        && !rating.contains_key(RATED_AT)
    {
        let read = DateTime::from_timestamp_millis(previous.version).unwrap_or_default();
        rating.insert(RATED_AT.into(), json!(stamp(read)));
    }
    if let (Some(Value::String(a)), Some(Value::String(b))) = (now.get(FIRST_REPLY), before.get(FIRST_REPLY))
        && b < a
    {
        now.insert(FIRST_REPLY.into(), json!(b));
    }
    if object.kind != "ticket" {
        return;
    }
    let status = |m: &Map<String, Value>| status(m.get("status").and_then(Value::as_str));
    if !resolved(status(now)) {
        now.remove(SOLVED);
        return;
    }
    let at = if resolved(status(before)) {
        solved_at(&previous.payload, previous.version)
    } else {
        DateTime::from_timestamp_millis(object.version).unwrap_or_default()
    };
    now.insert(SOLVED.into(), json!(stamp(at)));
}

/// When a resolved ticket was resolved: as marked, as its metric set says, or its version.
fn solved_at(ticket: &Value, version: i64) -> Timestamp {
    let metrics = ticket.get("metric_set").cloned().unwrap_or_default();
    time_of(ticket, SOLVED)
        .or_else(|| time_of(&metrics, "solved_at"))
        .unwrap_or_else(|| DateTime::from_timestamp_millis(version).unwrap_or_default())
}

/// How an organization or a user is matched. An organization: the account id in its
/// organization fields (under `metadata_key`), else its external id; its first domain name.
/// A user: the account id in its user fields, its email's domain, its email.
pub fn match_keys(root: &ProviderObject, metadata_key: &str) -> MatchKeys {
    let p = &root.payload;
    let field = |fields: &str| p.get(fields).and_then(|f| str_of(f, metadata_key)).map(str::to_owned);
    if root.kind == "organization" {
        let domains = p.get("domain_names").and_then(Value::as_array);
        return MatchKeys {
            external_account: field("organization_fields").or_else(|| id_of(p, "external_id")),
            provider_id: root.object_id.clone(),
            domain: domains.into_iter().flatten().filter_map(Value::as_str).find_map(crate::matching::normalize_domain),
            email: None,
        };
    }
    let email = str_of(p, "email").map(str::to_ascii_lowercase);
    MatchKeys {
        external_account: field("user_fields"),
        provider_id: root.object_id.clone(),
        domain: email.as_deref().and_then(crate::matching::domain_of).map(str::to_owned),
        email,
    }
}

fn status(s: Option<&str>) -> TicketStatus {
    match s.unwrap_or("open") {
        "new" => TicketStatus::New,
        // On hold waits on someone else, as pending waits on the requester.
        "pending" | "hold" => TicketStatus::Pending,
        "solved" => TicketStatus::Solved,
        "closed" => TicketStatus::Closed,
        _ => TicketStatus::Open,
    }
}

fn priority(p: Option<&str>) -> TicketPriority {
    match p {
        Some("low") => TicketPriority::Low,
        Some("high") => TicketPriority::High,
        Some("urgent") => TicketPriority::Urgent,
        _ => TicketPriority::Normal,
    }
}

/// A satisfaction rating as 1 to 5: Zendesk's good is 5 and bad is 1; a numeric score (a
/// five-point survey) is kept; offered and unoffered are none.
fn csat(rating: &Value) -> Option<i16> {
    match rating.get("score")? {
        Value::String(s) if s == "good" => Some(5),
        Value::String(s) if s == "bad" => Some(1),
        Value::Number(n) => n.as_i64().filter(|n| (1..=5).contains(n)).map(|n| n as i16),
        _ => None,
    }
}

/// Steward's ticket for a Zendesk ticket of `account`.
pub fn ticket(object: &ProviderObject, account: &AccountId) -> Ticket {
    let p = &object.payload;
    let updated = DateTime::from_timestamp_millis(object.version).unwrap_or_default();
    let opened = time_of(p, "created_at").unwrap_or(updated);
    let metrics = p.get("metric_set").cloned().unwrap_or_default();
    let minutes = |key: &str| metrics.get(key).and_then(|m| m.get("calendar")).and_then(Value::as_i64);
    let first_response = minutes("reply_time_in_minutes")
        .map(|m| opened + chrono::Duration::minutes(m))
        .or_else(|| time_of(p, FIRST_REPLY));
    let state = status(str_of(p, "status"));
    let resolved_at = resolved(state).then(|| solved_at(p, object.version));
    let rating = p.get("satisfaction_rating").cloned().unwrap_or_default();
    let mut attributes = Map::new();
    attributes.insert("provider".into(), json!(NAME));
    attributes.insert("zendesk_status".into(), json!(str_of(p, "status")));
    for key in ["requester_id", "organization_id", "assignee_id", "group_id"] {
        if let Some(id) = id_of(p, key) {
            attributes.insert(key.into(), json!(id));
        }
    }
    for key in ["type", "tags", "via"] {
        if let Some(v) = p.get(key).filter(|v| !v.is_null()) {
            attributes.insert(key.into(), v.clone());
        }
    }
    if let Some(comment) = str_of(&rating, "comment").filter(|c| !c.is_empty()) {
        attributes.insert("csat_comment".into(), json!(comment));
    }
    for key in ["reopens", "replies"] {
        if let Some(n) = metrics.get(key).filter(|n| n.is_number()) {
            attributes.insert(key.into(), n.clone());
        }
    }
    Ticket {
        ticket_id: object.object_id.clone(),
        account_id: Some(account.clone()),
        person_id: None,
        subject: str_of(p, "subject").unwrap_or_default().to_owned(),
        status: state,
        priority: priority(str_of(p, "priority")),
        opened_at: opened,
        first_response_at: first_response,
        resolved_at,
        csat: csat(&rating),
        updated_at: updated,
        attributes: Value::Object(attributes),
    }
}

/// The account traits an organization sets.
fn organization_traits(org: &ProviderObject) -> Map<String, Value> {
    let mut traits = Map::new();
    traits.insert("zendesk_organization_id".into(), json!(org.object_id));
    if let Some(name) = str_of(&org.payload, "name") {
        traits.insert("zendesk_organization".into(), json!(name));
    }
    traits
}

/// What a newly stored object means for its account, given the state stored before it.
pub fn outputs(object: &ProviderObject, previous: Option<&ProviderObject>, account: &AccountId) -> Vec<Output> {
    match object.kind.as_str() {
        "organization" => {
            let at = DateTime::from_timestamp_millis(object.version).unwrap_or_default();
            crate::changed_traits(object, previous, organization_traits, at).into_iter().collect()
        }
        // A rating of a ticket not seen yet is kept until the ticket is: it tells nothing alone.
        "ticket" if object.payload.get("status").is_none() => Vec::new(),
        "ticket" => {
            let t = ticket(object, account);
            let before = previous.filter(|p| p.payload.get("status").is_some()).map(|prev| ticket(prev, account));
            let rating = object.payload.get(RATING);
            let rated_at = rating.and_then(|r| time_of(r, RATED_AT));
            let rating = rating.and_then(|r| id_of(r, "id").or_else(|| str_of(r, RATED_AT).map(str::to_owned)));
            // A rating delivered late is told at the time it was given.
            let mut out = ticket_events(NAME, &t, before.as_ref(), rating.as_deref().unwrap_or("-"), rated_at);
            out.push(Output::Ticket(Box::new(t)));
            out
        }
        _ => Vec::new(),
    }
}

/// What a backfill lists, in order: organizations and end users first, so that tickets find
/// their account; tickets with their metric sets side-loaded.
pub fn resources() -> Vec<Resource> {
    vec![
        Resource { kind: "organization", path: "/api/v2/organizations.json?page[size]=100" },
        Resource { kind: "user", path: "/api/v2/users.json?page[size]=100&role=end-user" },
        Resource { kind: "ticket", path: "/api/v2/tickets.json?page[size]=100&include=metric_sets" },
    ]
}

/// A list page (`organizations`, `users` or `tickets`, with `metric_sets` side-loaded) and
/// the cursor of the next one: `meta.after_cursor` while `meta.has_more`.
pub fn page(body: &[u8]) -> Result<(Vec<ProviderObject>, Option<String>), String> {
    let list: Value = serde_json::from_slice(body).map_err(|e| format!("a list page that is not JSON: {e}"))?;
    let (kind, items) = [("organization", "organizations"), ("user", "users"), ("ticket", "tickets")]
        .into_iter()
        .find_map(|(kind, key)| Some((kind, list.get(key)?.as_array()?)))
        .ok_or("a list page with no `organizations`, `users` or `tickets`")?;
    let metrics: std::collections::HashMap<String, &Value> = list
        .get("metric_sets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| Some((id_of(m, "ticket_id")?, m)))
        .collect();
    let now = chrono::Utc::now().timestamp_millis();
    let objects = items
        .iter()
        .filter_map(|item| {
            let mut item = item.clone();
            if let Some(m) = id_of(&item, "id").and_then(|id| metrics.get(&id)) {
                item["metric_set"] = (*m).clone();
            }
            object(kind, item, now)
        })
        .collect();
    let meta = list.get("meta").cloned().unwrap_or_default();
    let more = meta.get("has_more").and_then(Value::as_bool).unwrap_or(false);
    Ok((objects, if more { str_of(&meta, "after_cursor").map(str::to_owned) } else { None }))
}

/// The URL of the page after `cursor`.
pub fn page_url(base: &str, resource: &Resource, cursor: Option<&str>) -> String {
    let base = base.trim_end_matches('/');
    match cursor {
        Some(c) => format!("{base}{}&page[after]={}", resource.path, query_value(c)),
        None => format!("{base}{}", resource.path),
    }
}

/// `<email>/token:<api token>` is sent as Basic authentication, anything else as an OAuth
/// bearer token.
pub fn auth_headers(api_key: &str) -> Vec<(&'static str, String)> {
    if api_key.contains("/token:") {
        let encoded = base64::engine::general_purpose::STANDARD.encode(api_key);
        vec![("authorization", format!("Basic {encoded}"))]
    } else {
        vec![("authorization", format!("Bearer {api_key}"))]
    }
}

#[cfg(test)]
mod tests;
