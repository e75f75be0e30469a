//! HubSpot: companies become accounts (name, domain, industry, size, lifecycle stage, and
//! their owner as the account's CSM), deals become account events (`Deal Won`, `Deal Lost`,
//! `Renewal Opportunity Created`) and the open pipeline a trait of the account; owners are
//! kept for the CSM, contacts in the mirror only (Steward's people are the product's users,
//! told by its events; a CRM contact who never used the product is not one of them).
//!
//! Webhooks (`POST /webhooks/hubspot/{workspace}`, signed as [`signature`] says) carry a batch
//! of events that name a changed object (`objectId`, `subscriptionType`, `propertyName`,
//! `propertyValue`) without its state: the delivery is checked and remembered, and asks for
//! a sync, which reads the objects through the CRM API (`/crm/v3/owners`,
//! `/crm/v3/objects/{companies,contacts,deals}`, paged by `after`). The first sync (or a full
//! one) pages those lists; the next ones ask the CRM search API only for what was modified
//! since the watermark (`hs_lastmodifieddate`, a contact's `lastmodifieddate`, at or after
//! it, oldest first, 100 a page), starting a new search from the last modification read
//! when one reaches HubSpot's 10,000-result cap (or, when all 10,000 were modified in the
//! same millisecond, searching that millisecond alone by object id, then what follows it),
//! and read the companies of the contacts and deals found through the associations API
//! (search results carry none). Each object is
//! stored under its `updatedAt`, and one that did not change tells nothing. Deletions are
//! the exception: the lists leave deleted objects out, so a `*.deletion` event is stored as
//! the object archived, at the event's time (a deleted deal leaves the open pipeline).

pub mod signature;

use chrono::DateTime;
use serde_json::{Map, Value, json};
use store::ProviderObject;

use crate::crm::{Deal, deal_events, pipeline};
use crate::{Delivery, MatchKeys, Output, Resource, WebhookError};

pub const NAME: &str = "hubspot";
pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// A property: HubSpot gives every property as a string, or null.
fn prop<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.get("properties").and_then(|p| str_of(p, key))
}

fn millis(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis())
}

fn time(ms: i64) -> domain::Timestamp {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A number property (`"12000.50"`).
fn number(object: &Value, key: &str) -> Option<f64> {
    prop(object, key).and_then(|v| v.parse::<f64>().ok()).filter(|n| n.is_finite())
}

/// The company an object is associated with: the primary association (`contact_to_company`,
/// `deal_to_company`) first, else the first.
fn company_of(object: &Value) -> Option<String> {
    let results = object.get("associations")?.get("companies")?.get("results")?.as_array()?;
    let primary = results.iter().find(|r| str_of(r, "type").is_some_and(|t| t.ends_with("_to_company")));
    primary.or(results.first()).and_then(|r| match r.get("id")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// The mirror's record of an object of `kind` as a list page gives it, stored under its
/// `updatedAt` (or `version`, milliseconds, when it has none).
pub fn object(kind: &str, value: Value, version: i64) -> Option<ProviderObject> {
    let object_id = str_of(&value, "id")?.to_owned();
    let version = str_of(&value, "updatedAt").and_then(millis).unwrap_or(version);
    let parent_id = match kind {
        "contact" | "deal" => company_of(&value),
        _ => None,
    };
    let label = match kind {
        "company" => [prop(&value, "name"), prop(&value, "domain"), Some(object_id.as_str())]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" · "),
        "deal" => prop(&value, "dealname").unwrap_or(&object_id).to_owned(),
        "contact" => prop(&value, "email").unwrap_or(&object_id).to_owned(),
        _ => str_of(&value, "email").unwrap_or(&object_id).to_owned(),
    };
    Some(crate::seen(kind.to_owned(), object_id, parent_id, version, label, value))
}

/// The kinds whose deletions are kept, by the prefix of their events' `subscriptionType`.
const DELETED: [(&str, &str); 3] = [("company.", "company"), ("contact.", "contact"), ("deal.", "deal")];

/// An object deleted at `ms`, as HubSpot lists it archived.
fn deleted(kind: &str, id: String, ms: i64) -> Option<ProviderObject> {
    let updated = time(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    object(kind, json!({"id": id, "properties": {}, "updatedAt": updated, "archived": true}), ms)
}

/// A webhook delivery: a JSON array of events, each naming a changed object. Its id is the
/// event's (`eventId`), or for a batch a digest of its events' ids; it carries the objects
/// its `*.deletion` events delete, archived.
pub fn delivery(body: &[u8]) -> Result<Delivery, WebhookError> {
    let bad = |m: &str| WebhookError::BadPayload(m.to_owned());
    let events: Value = serde_json::from_slice(body).map_err(|e| bad(&format!("not JSON: {e}")))?;
    let events = events.as_array().ok_or_else(|| bad("not a HubSpot batch (a JSON array of events)"))?;
    if events.is_empty() {
        return Err(bad("an empty batch"));
    }
    let text = |v: Option<&Value>| v.and_then(|i| i.as_i64().map(|n| n.to_string()).or(i.as_str().map(str::to_owned)));
    let mut ids = Vec::with_capacity(events.len());
    let mut types: Vec<&str> = Vec::new();
    let mut objects = Vec::new();
    for e in events {
        ids.push(text(e.get("eventId")).ok_or_else(|| bad("an event has no `eventId`"))?);
        let kind = str_of(e, "subscriptionType").ok_or_else(|| bad("an event has no `subscriptionType`"))?;
        let object_id = text(e.get("objectId")).ok_or_else(|| bad("an event has no `objectId`"))?;
        if !types.contains(&kind) {
            types.push(kind);
        }
        if kind.ends_with(".deletion")
            && let Some((_, deleted_kind)) = DELETED.iter().find(|(prefix, _)| kind.starts_with(prefix))
        {
            let at =
                e.get("occurredAt").and_then(Value::as_i64).ok_or_else(|| bad("a deletion has no `occurredAt`"))?;
            objects.extend(deleted(deleted_kind, object_id, at));
        }
    }
    ids.sort_unstable();
    let event_id = match ids.as_slice() {
        [one] => one.clone(),
        _ => {
            let digest = ring::digest::digest(&ring::digest::SHA256, ids.join(",").as_bytes());
            format!("batch:{}", hex::encode(&digest.as_ref()[..12]))
        }
    };
    Ok(Delivery { event_id, event_type: types.join(","), objects })
}

/// How a company is matched: Steward's account id in the property `property`, its id as an
/// account's trait, its domain.
pub fn match_keys(company: &ProviderObject, property: &str) -> MatchKeys {
    let p = &company.payload;
    MatchKeys {
        external_account: prop(p, property).map(str::to_owned),
        provider_id: company.object_id.clone(),
        domain: prop(p, "domain").and_then(crate::matching::normalize_domain),
        email: None,
    }
}

/// A company's owner, whose email and name make the account's CSM.
pub fn owner_id(object: &ProviderObject) -> Option<String> {
    (object.kind == "company").then(|| prop(&object.payload, "hubspot_owner_id").map(str::to_owned)).flatten()
}

/// The account traits a company sets.
fn company_traits(company: &ProviderObject) -> Map<String, Value> {
    let p = &company.payload;
    let mut traits = Map::new();
    traits.insert("crm_id".into(), json!(company.object_id));
    for (from, to) in [("name", "name"), ("industry", "industry"), ("lifecyclestage", "lifecycle_stage")] {
        if let Some(v) = prop(p, from) {
            traits.insert(to.into(), json!(v));
        }
    }
    if let Some(d) = prop(p, "domain").and_then(crate::matching::normalize_domain) {
        traits.insert("domain".into(), json!(d));
    }
    if let Some(n) = number(p, "numberofemployees") {
        traits.insert("employees".into(), json!(n as i64));
    }
    match (prop(p, "hubspot_owner_id"), p.get("owner")) {
        // No owner: no CSM.
        (None, _) => {
            traits.insert("csm_email".into(), Value::Null);
            traits.insert("csm_name".into(), Value::Null);
        }
        (Some(_), Some(owner)) => {
            let name =
                [str_of(owner, "firstName"), str_of(owner, "lastName")].into_iter().flatten().collect::<Vec<_>>();
            traits.insert("csm_email".into(), json!(str_of(owner, "email")));
            traits.insert("csm_name".into(), if name.is_empty() { Value::Null } else { json!(name.join(" ")) });
        }
        // An owner not read yet: the CSM is left as it is.
        (Some(_), None) => {}
    }
    traits
}

fn deal(object: &ProviderObject) -> Deal {
    let p = &object.payload;
    let stage = prop(p, "dealstage").unwrap_or_default();
    let won = prop(p, "hs_is_closed_won") == Some("true") || stage == "closedwon";
    let closed = won || prop(p, "hs_is_closed") == Some("true") || stage == "closedlost";
    Deal { won, closed, renewal: prop(p, "dealtype") == Some("existingbusiness") }
}

pub fn archived(object: &ProviderObject) -> bool {
    object.payload.get("archived").and_then(Value::as_bool).unwrap_or(false)
}

/// What a newly stored object means for its account, given the state stored before it.
pub fn outputs(object: &ProviderObject, previous: Option<&ProviderObject>) -> Vec<Output> {
    let p = &object.payload;
    let at = time(object.version);
    let id = &object.object_id;
    let mut out = Vec::new();
    if archived(object) {
        return out;
    }
    match object.kind.as_str() {
        "company" => {
            out.extend(crate::changed_traits(object, previous, company_traits, at));
        }
        "deal" => {
            let now = deal(object);
            let before = previous.filter(|b| !archived(b)).map(deal);
            let closes = prop(p, "closedate").and_then(millis).map_or(at, time);
            let props = json!({"deal_id": id, "name": prop(p, "dealname"), "amount": number(p, "amount"),
                "close_date": prop(p, "closedate"), "stage": prop(p, "dealstage"), "pipeline": prop(p, "pipeline"),
                "deal_type": prop(p, "dealtype")});
            let created = prop(p, "createdate").and_then(millis).map_or(at, time);
            out.extend(deal_events(&format!("hubspot:deal:{id}"), &now, before.as_ref(), props, created, closes));
        }
        _ => {}
    }
    out
}

/// The open pipeline of a company's deals: the sum of the amounts of those not closed.
pub fn open_pipeline(deals: &[&ProviderObject]) -> Map<String, Value> {
    let open: Vec<Option<f64>> =
        deals.iter().filter(|d| !archived(d) && !deal(d).closed).map(|d| number(&d.payload, "amount")).collect();
    pipeline(&open)
}

/// What a sync lists, in order: owners (for the CSM), companies (the roots), then contacts
/// and deals with their companies.
pub fn resources() -> Vec<Resource> {
    vec![
        Resource { kind: "owner", path: "/crm/v3/owners?limit=100" },
        Resource {
            kind: "company",
            path: "/crm/v3/objects/companies?limit=100&properties=name,domain,industry,numberofemployees,lifecyclestage,hubspot_owner_id",
        },
        Resource {
            kind: "contact",
            path: "/crm/v3/objects/contacts?limit=100&properties=email,firstname,lastname,jobtitle&associations=companies",
        },
        Resource {
            kind: "deal",
            path: "/crm/v3/objects/deals?limit=100&properties=dealname,amount,closedate,createdate,dealstage,pipeline,dealtype,hs_is_closed,hs_is_closed_won&associations=companies",
        },
    ]
}

/// HubSpot's search answers at most this many results for one query: paging past it is
/// refused, so a search that reaches it starts again from the last modification read.
pub const SEARCH_CAP: u64 = 10_000;

/// Results per search page, the most HubSpot gives.
const SEARCH_PAGE: u64 = 100;

/// The object type in the CRM's paths (`companies`) of a list resource, and the properties
/// it asks for.
fn listed(resource: &Resource) -> Option<(&'static str, Vec<&'static str>)> {
    let rest = resource.path.strip_prefix("/crm/v3/objects/")?;
    let (object, query) = rest.split_once('?').unwrap_or((rest, ""));
    let properties = query
        .split('&')
        .find_map(|p| p.strip_prefix("properties="))
        .map(|p| p.split(',').collect())
        .unwrap_or_default();
    Some((object, properties))
}

/// The property that holds a record's last modification: contacts have their own name.
fn modified_property(resource: &Resource) -> &'static str {
    if resource.kind == "contact" { "lastmodifieddate" } else { "hs_lastmodifieddate" }
}

/// Whether a page of `resource` is read through the search API: after the first sync (a
/// watermark), for CRM objects (owners are few and have no search).
fn searching(resource: &Resource, since: Option<domain::Timestamp>) -> bool {
    since.is_some() && listed(resource).is_some()
}

/// Where a search is: the modification time searched from (milliseconds), HubSpot's `after`
/// within that search (none: its first page), and, while reading the objects modified in
/// that very millisecond alone, by id, the id they follow. Written `<from>:<after>`, or
/// `<from>=<id>:<after>` within a millisecond.
#[derive(Debug, PartialEq)]
struct SearchCursor {
    from: i64,
    after: Option<String>,
    /// Within millisecond `from`: the objects whose id is above this one.
    above: Option<u64>,
}

impl SearchCursor {
    fn parse(cursor: Option<&str>, since: domain::Timestamp) -> SearchCursor {
        let parsed = cursor.and_then(|c| c.split_once(':')).and_then(|(at, after)| {
            let (from, above) = match at.split_once('=') {
                Some((from, id)) => (from, Some(id.parse::<u64>().ok()?)),
                None => (at, None),
            };
            Some(SearchCursor {
                from: from.parse().ok()?,
                after: Some(after.to_owned()).filter(|a| !a.is_empty()),
                above,
            })
        });
        parsed.unwrap_or(SearchCursor { from: since.timestamp_millis(), after: None, above: None })
    }

    /// The first page of a new search: from `from` on, or within it above `above`.
    fn start(from: i64, above: Option<u64>) -> String {
        match above {
            Some(id) => format!("{from}={id}:"),
            None => format!("{from}:"),
        }
    }

    /// The next page of this search.
    fn next(&self, after: &str) -> String {
        match self.above {
            Some(id) => format!("{}={id}:{after}", self.from),
            None => format!("{}:{after}", self.from),
        }
    }
}

/// The request for a page: the list endpoint on a first (or full) sync; after it, a search
/// for what was modified since the watermark, oldest change first, 100 a page.
pub fn page_request(
    base: &str,
    resource: &Resource,
    cursor: Option<&str>,
    since: Option<domain::Timestamp>,
    account_property: &str,
) -> crate::PageRequest {
    let (Some(since), Some((object, mut properties))) = (since, listed(resource)) else {
        return crate::PageRequest { url: page_url(base, resource, cursor, account_property), body: None };
    };
    if resource.kind == "company" && plain_property(account_property) {
        properties.push(account_property);
    }
    let SearchCursor { from, after, above } = SearchCursor::parse(cursor, since);
    let modified = modified_property(resource);
    let (filters, sort) = match above {
        None => (json!([{"propertyName": modified, "operator": "GTE", "value": from.to_string()}]), modified),
        // Within one millisecond, by id: what HubSpot's cap leaves unread of it follows the last
        // id read.
        Some(id) => (
            json!([
                {"propertyName": modified, "operator": "EQ", "value": from.to_string()},
                {"propertyName": "hs_object_id", "operator": "GT", "value": id.to_string()}
            ]),
            "hs_object_id",
        ),
    };
    let mut body = json!({
        "filterGroups": [{"filters": filters}],
        "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
        "properties": properties,
        "limit": SEARCH_PAGE,
    });
    if let Some(after) = after {
        body["after"] = json!(after);
    }
    let base = base.trim_end_matches('/');
    crate::PageRequest { url: format!("{base}/crm/v3/objects/{object}/search"), body: Some(body) }
}

/// A list or search page: its objects and the cursor of the next (`paging.next.after`; for
/// a search that would pass [`SEARCH_CAP`], a new search from the last modification read, or
/// within it by id when the whole search was one millisecond's; after a millisecond read by
/// id, a search of what follows it).
pub fn page(
    resource: &Resource,
    cursor: Option<&str>,
    since: Option<domain::Timestamp>,
    body: &[u8],
    version: i64,
) -> Result<(Vec<ProviderObject>, Option<String>), String> {
    let list: Value = serde_json::from_slice(body).map_err(|e| format!("a list page that is not JSON: {e}"))?;
    let results = list.get("results").and_then(Value::as_array).ok_or("a list page with no `results`")?;
    let next = list.get("paging").and_then(|p| p.get("next")).and_then(|n| str_of(n, "after")).map(str::to_owned);
    let objects: Vec<ProviderObject> =
        results.iter().filter_map(|v| object(resource.kind, v.clone(), version)).collect();
    let Some(since) = since.filter(|_| searching(resource, since)) else { return Ok((objects, next)) };
    let at = SearchCursor::parse(cursor, since);
    let next = match next {
        // The millisecond is read: on with what was modified after it.
        None if at.above.is_some() => Some(SearchCursor::start(at.from + 1, None)),
        None => None,
        Some(after) if after.parse::<u64>().is_ok_and(|a| a + SEARCH_PAGE > SEARCH_CAP) => match at.above {
            // Sorted by id within the millisecond, the last page holds the highest id read:
            // on from there (past the millisecond should ids not be numbers).
            Some(above) => {
                let highest = objects.iter().filter_map(|o| o.object_id.parse::<u64>().ok()).max();
                Some(match highest.filter(|&id| id > above) {
                    Some(id) => SearchCursor::start(at.from, Some(id)),
                    None => SearchCursor::start(at.from + 1, None),
                })
            }
            None => {
                // Sorted by modification, the last read is the newest: the next search starts
                // there (what has that very time is read again, which changes nothing). When
                // the whole search was that one millisecond, starting there again would read
                // the same ten thousand: the millisecond is read alone, by id, from the start.
                let last = objects.iter().map(|o| o.version).max().unwrap_or(at.from);
                Some(if last > at.from {
                    SearchCursor::start(last, None)
                } else {
                    SearchCursor::start(at.from, Some(0))
                })
            }
        },
        Some(after) => Some(at.next(&after)),
    };
    Ok((objects, next))
}

/// The companies of the contacts or deals a search found, which its results leave out: one
/// batch read of their associations (`/crm/v4/associations/{type}/companies/batch/read`).
pub fn associations_request(
    base: &str,
    resource: &Resource,
    objects: &[ProviderObject],
    since: Option<domain::Timestamp>,
) -> Option<crate::PageRequest> {
    if !searching(resource, since) || !matches!(resource.kind, "contact" | "deal") || objects.is_empty() {
        return None;
    }
    let (object, _) = listed(resource)?;
    let inputs: Vec<Value> = objects.iter().map(|o| json!({"id": o.object_id})).collect();
    let base = base.trim_end_matches('/');
    Some(crate::PageRequest {
        url: format!("{base}/crm/v4/associations/{object}/companies/batch/read"),
        body: Some(json!({"inputs": inputs})),
    })
}

/// Puts the companies a batch read of associations answered into each object as a list
/// page's `associations` would have them (the primary company first), and its parent.
pub fn attach_companies(resource: &Resource, objects: &mut [ProviderObject], body: &[u8]) -> Result<(), String> {
    let answer: Value =
        serde_json::from_slice(body).map_err(|e| format!("an associations answer that is not JSON: {e}"))?;
    let results = answer.get("results").and_then(Value::as_array).ok_or("an associations answer with no `results`")?;
    let id_text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let mut companies: std::collections::HashMap<String, Vec<(String, bool)>> = Default::default();
    for r in results {
        let Some(from) = id_text(r.get("from").and_then(|f| f.get("id"))) else { continue };
        for to in r.get("to").and_then(Value::as_array).into_iter().flatten() {
            let Some(company) = id_text(to.get("toObjectId")) else { continue };
            let primary = to
                .get("associationTypes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|t| t.get("label").and_then(Value::as_str).is_some_and(|l| l.eq_ignore_ascii_case("primary")));
            companies.entry(from.clone()).or_default().push((company, primary));
        }
    }
    for o in objects.iter_mut() {
        let mut found = companies.remove(&o.object_id).unwrap_or_default();
        found.sort_by_key(|(_, primary)| !primary);
        let kind = resource.kind;
        let listed: Vec<Value> = found
            .iter()
            .map(|(id, primary)| {
                let label =
                    if *primary { format!("{kind}_to_company") } else { format!("{kind}_to_company_unlabeled") };
                json!({"id": id, "type": label})
            })
            .collect();
        if let Some(fields) = o.payload.as_object_mut() {
            fields.insert("associations".into(), json!({"companies": {"results": listed}}));
        }
        o.parent_id = company_of(&o.payload);
    }
    Ok(())
}

fn plain_property(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The URL of the page after `cursor`; companies are asked for the property holding
/// Steward's account id too.
pub fn page_url(base: &str, resource: &Resource, cursor: Option<&str>, account_property: &str) -> String {
    let base = base.trim_end_matches('/');
    let mut url = format!("{base}{}", resource.path);
    if resource.kind == "company" && plain_property(account_property) {
        url.push(',');
        url.push_str(account_property);
    }
    if let Some(c) = cursor {
        url.push_str("&after=");
        url.push_str(&crate::backfill::query_escape(c));
    }
    url
}

#[cfg(test)]
mod tests;
