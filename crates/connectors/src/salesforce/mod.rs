//! Salesforce: Accounts become accounts (name, website, industry, size, type, and their owner
//! as the account's CSM), Opportunities become account events (`Deal Won`, `Deal Lost`,
//! `Renewal Opportunity Created`) and the open pipeline a trait of the account; Users (the
//! owners) and Contacts are kept in the mirror only (Steward's people are the product's
//! users, told by its events).
//!
//! Salesforce has no webhook signed with a shared secret (outbound messages and change data
//! capture need a listener that Salesforce authenticates otherwise), so Steward **polls for
//! changes**: every sync runs SOQL through `/services/data/v59.0/queryAll` (which includes
//! deleted records, `IsDeleted`), `WHERE SystemModstamp > <watermark> ORDER BY
//! SystemModstamp`, following `nextRecordsUrl`. The first sync (or a full one) reads
//! everything; the worker runs it on the connector's schedule (`sync_every_minutes`, say 5,
//! or `sync_every_hours`) or when asked. Each record is stored under its `SystemModstamp`; a
//! deleted one tells nothing and leaves the open pipeline. The API key is an OAuth access
//! token and `base_url` the org's instance URL (`https://<domain>.my.salesforce.com`).

use chrono::{DateTime, NaiveDate};
use domain::Timestamp;
use serde_json::{Map, Value, json};
use store::ProviderObject;

use crate::crm::{Deal, deal_events, pipeline};
use crate::{MatchKeys, Output, Resource};

pub const NAME: &str = "salesforce";
/// The REST API version asked for.
pub const API_VERSION: &str = "v59.0";
/// Why a webhook to this provider is refused.
pub const NO_WEBHOOKS: &str = "Salesforce changes are polled, not delivered: it has no webhook endpoint";

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// A Salesforce datetime (`2024-03-05T14:22:10.000+0000`) in milliseconds.
fn millis(text: &str) -> Option<i64> {
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|t| t.timestamp_millis())
}

fn time(ms: i64) -> Timestamp {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The mirror's kind of each sObject read.
const KINDS: [(&str, &str); 4] =
    [("User", "owner"), ("Account", "account"), ("Contact", "contact"), ("Opportunity", "opportunity")];

/// The mirror's record of a query's record, stored under its `SystemModstamp` (or
/// `version`, milliseconds, when it has none).
pub fn object(value: Value, version: i64) -> Option<ProviderObject> {
    let sobject = value.get("attributes").and_then(|a| str_of(a, "type"))?;
    let kind = KINDS.iter().find(|(s, _)| *s == sobject)?.1;
    let object_id = str_of(&value, "Id")?.to_owned();
    let version = str_of(&value, "SystemModstamp").and_then(millis).unwrap_or(version);
    let parent_id = matches!(kind, "contact" | "opportunity").then(|| str_of(&value, "AccountId").map(str::to_owned));
    let label = match kind {
        "account" => [str_of(&value, "Name"), str_of(&value, "Website"), Some(object_id.as_str())]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" · "),
        "contact" | "owner" => str_of(&value, "Email").unwrap_or(&object_id).to_owned(),
        _ => str_of(&value, "Name").unwrap_or(&object_id).to_owned(),
    };
    Some(crate::seen(kind.to_owned(), object_id, parent_id.flatten(), version, label, value))
}

/// How an Account is matched: Steward's account id in the custom field `field` (when one is
/// configured), its id as an account's trait, its website's domain.
pub fn match_keys(account: &ProviderObject, field: &str) -> MatchKeys {
    let p = &account.payload;
    MatchKeys {
        external_account: str_of(p, field).map(str::to_owned),
        provider_id: account.object_id.clone(),
        domain: str_of(p, "Website").and_then(crate::matching::normalize_domain),
        email: None,
    }
}

/// The account traits an Account sets.
fn account_traits(account: &ProviderObject) -> Map<String, Value> {
    let p = &account.payload;
    let mut traits = Map::new();
    traits.insert("crm_id".into(), json!(account.object_id));
    for (from, to) in [("Name", "name"), ("Industry", "industry"), ("Type", "account_type")] {
        if let Some(v) = str_of(p, from) {
            traits.insert(to.into(), json!(v));
        }
    }
    if let Some(d) = str_of(p, "Website").and_then(crate::matching::normalize_domain) {
        traits.insert("domain".into(), json!(d));
    }
    if let Some(n) = p.get("NumberOfEmployees").and_then(Value::as_i64) {
        traits.insert("employees".into(), json!(n));
    }
    let owner = p.get("Owner").filter(|o| o.is_object());
    traits.insert("csm_email".into(), json!(owner.and_then(|o| str_of(o, "Email"))));
    traits.insert("csm_name".into(), json!(owner.and_then(|o| str_of(o, "Name"))));
    traits
}

fn opportunity(object: &ProviderObject) -> Deal {
    let p = &object.payload;
    let flag = |k: &str| p.get(k).and_then(Value::as_bool).unwrap_or(false);
    Deal {
        won: flag("IsWon"),
        closed: flag("IsClosed"),
        renewal: str_of(p, "Type").is_some_and(|t| t.to_ascii_lowercase().contains("renewal")),
    }
}

pub fn deleted(object: &ProviderObject) -> bool {
    object.payload.get("IsDeleted").and_then(Value::as_bool).unwrap_or(false)
}

/// What a newly stored record means for its account, given the state stored before it.
pub fn outputs(object: &ProviderObject, previous: Option<&ProviderObject>) -> Vec<Output> {
    let p = &object.payload;
    let at = time(object.version);
    let id = &object.object_id;
    let mut out = Vec::new();
    if deleted(object) {
        return out;
    }
    match object.kind.as_str() {
        "account" => {
            out.extend(crate::changed_traits(object, previous, account_traits, at));
        }
        "opportunity" => {
            let now = opportunity(object);
            let before = previous.filter(|b| !deleted(b)).map(opportunity);
            let date = |key: &str| {
                str_of(p, key)
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                    .map(|d| d.and_time(Default::default()).and_utc())
            };
            let closes = date("CloseDate").unwrap_or(at);
            let props = json!({"opportunity_id": id, "name": str_of(p, "Name"), "amount": p.get("Amount").and_then(Value::as_f64),
                "close_date": str_of(p, "CloseDate"), "stage": str_of(p, "StageName"), "type": str_of(p, "Type")});
            let created = str_of(p, "CreatedDate").and_then(millis).map_or(at, time);
            out.extend(deal_events(
                &format!("salesforce:opportunity:{id}"),
                &now,
                before.as_ref(),
                props,
                created,
                closes,
            ));
        }
        _ => {}
    }
    out
}

/// The open pipeline of an Account's Opportunities: the sum of the amounts of those not
/// closed.
pub fn open_pipeline(opportunities: &[&ProviderObject]) -> Map<String, Value> {
    let open: Vec<Option<f64>> = opportunities
        .iter()
        .filter(|o| !deleted(o) && !opportunity(o).closed)
        .map(|o| o.payload.get("Amount").and_then(Value::as_f64))
        .collect();
    pipeline(&open)
}

/// What a sync queries, in order: Users (the owners), Accounts (the roots), then Contacts
/// and Opportunities. The path names the sObject; [`page_url`] writes the query.
pub fn resources() -> Vec<Resource> {
    vec![
        Resource { kind: "owner", path: "User" },
        Resource { kind: "account", path: "Account" },
        Resource { kind: "contact", path: "Contact" },
        Resource { kind: "opportunity", path: "Opportunity" },
    ]
}

/// The fields read of each sObject (Users are deactivated, never deleted).
fn fields(kind: &str) -> &'static str {
    match kind {
        "owner" => "Id, Name, Email, IsActive, SystemModstamp",
        "account" => {
            "Id, Name, Website, Industry, NumberOfEmployees, Type, OwnerId, Owner.Name, Owner.Email, IsDeleted, \
             SystemModstamp"
        }
        "contact" => "Id, AccountId, FirstName, LastName, Email, Title, IsDeleted, SystemModstamp",
        _ => {
            "Id, AccountId, Name, Amount, CloseDate, StageName, IsClosed, IsWon, Type, CreatedDate, IsDeleted, \
             SystemModstamp"
        }
    }
}

/// The SOQL of a resource's first page: what changed after `since`, oldest change first.
/// Accounts are asked for `account_field` too when it names a custom field (`...__c`).
pub fn soql(resource: &Resource, since: Option<Timestamp>, account_field: &str) -> String {
    let mut fields = fields(resource.kind).to_owned();
    let custom = account_field.ends_with("__c") && account_field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if resource.kind == "account" && custom {
        fields.push_str(", ");
        fields.push_str(account_field);
    }
    let filter =
        since.map(|t| format!(" WHERE SystemModstamp > {}", t.format("%Y-%m-%dT%H:%M:%SZ"))).unwrap_or_default();
    format!("SELECT {fields} FROM {}{filter} ORDER BY SystemModstamp", resource.path)
}

/// The URL of a page: the query's first, or the `nextRecordsUrl` that `cursor` holds.
pub fn page_url(
    base: &str,
    resource: &Resource,
    cursor: Option<&str>,
    since: Option<Timestamp>,
    account_field: &str,
) -> String {
    let base = base.trim_end_matches('/');
    match cursor {
        Some(next) => format!("{base}{next}"),
        None => format!(
            "{base}/services/data/{API_VERSION}/queryAll?q={}",
            crate::backfill::query_escape(&soql(resource, since, account_field))
        ),
    }
}

/// A query page: its records and the next page's path (`nextRecordsUrl` while not `done`).
pub fn page(body: &[u8], version: i64) -> Result<(Vec<ProviderObject>, Option<String>), String> {
    let result: Value = serde_json::from_slice(body).map_err(|e| format!("a query page that is not JSON: {e}"))?;
    let records = result.get("records").and_then(Value::as_array).ok_or("a query page with no `records`")?;
    let done = result.get("done").and_then(Value::as_bool).unwrap_or(true);
    let next = str_of(&result, "nextRecordsUrl").filter(|n| !done && n.starts_with('/')).map(str::to_owned);
    Ok((records.iter().filter_map(|r| object(r.clone(), version)).collect(), next))
}

#[cfg(test)]
mod tests;
