//! Stripe: customers become accounts, subscriptions become Steward's subscriptions (status,
//! plan, quantity, MRR normalised to a month; a change of MRR or seats starts a new period,
//! see [`crate::Connectors::ingest`]), invoices are kept and their failed payments
//! become `Payment Failed` events; starts, cancellations, expansions and contractions become
//! events of the account.
//!
//! Webhooks (`POST /webhooks/stripe/{workspace}`) carry an event whose `data.object` is the
//! object's state when the event happened: that state is stored under the event's time, so a
//! late delivery of an older event does not undo a newer one. A backfill lists customers,
//! subscriptions (every status) and invoices through the REST API, each stored under the
//! time it was read.

pub mod mrr;
pub mod signature;

use chrono::DateTime;
use domain::{AccountId, Currency, Money};
use serde_json::{Map, Value, json};
use store::{ProviderObject, Subscription, SubscriptionStatus};

use crate::{Delivery, MatchKeys, Output, Resource, WebhookError};

pub const NAME: &str = "stripe";
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com";

/// The object kinds kept; their parent is the customer.
const KINDS: [&str; 3] = ["customer", "subscription", "invoice"];

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn int_of(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

/// An id field that may be expanded into its object.
fn id_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    let field = v.get(key)?;
    field.as_str().or_else(|| str_of(field, "id"))
}

fn time(seconds: i64) -> domain::Timestamp {
    DateTime::from_timestamp(seconds, 0).unwrap_or_default()
}

/// The mirror's record of a Stripe object seen at `version` (milliseconds).
pub fn object(value: Value, version: i64) -> Option<ProviderObject> {
    let kind = str_of(&value, "object")?;
    if !KINDS.contains(&kind) {
        return None;
    }
    let object_id = str_of(&value, "id")?.to_owned();
    let parent_id = (kind != "customer").then(|| id_of(&value, "customer").map(str::to_owned)).flatten();
    let label = match kind {
        "customer" => [str_of(&value, "name"), str_of(&value, "email"), Some(object_id.as_str())]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" · "),
        _ => object_id.clone(),
    };
    Some(crate::seen(kind.to_owned(), object_id, parent_id, version, label, value))
}

/// A webhook delivery's event: its id, and the object it carries stored under its time.
pub fn delivery(body: &[u8]) -> Result<Delivery, WebhookError> {
    let event: Value = serde_json::from_slice(body).map_err(|e| WebhookError::BadPayload(format!("not JSON: {e}")))?;
    if str_of(&event, "object") != Some("event") {
        return Err(WebhookError::BadPayload("not a Stripe event (`object` is not \"event\")".into()));
    }
    let id = str_of(&event, "id").ok_or_else(|| WebhookError::BadPayload("the event has no `id`".into()))?;
    let kind = str_of(&event, "type").ok_or_else(|| WebhookError::BadPayload("the event has no `type`".into()))?;
    let created =
        int_of(&event, "created").ok_or_else(|| WebhookError::BadPayload("the event has no `created`".into()))?;
    let data = event.get("data").and_then(|d| d.get("object")).filter(|o| o.is_object());
    let data = data.ok_or_else(|| WebhookError::BadPayload("the event has no `data.object`".into()))?;
    // `customer.deleted` carries the customer as it was; kept as deleted.
    let mut carried = data.clone();
    if kind == "customer.deleted" {
        carried["deleted"] = json!(true);
    }
    Ok(Delivery {
        event_id: id.to_owned(),
        event_type: kind.to_owned(),
        objects: object(carried, created * 1000).into_iter().collect(),
    })
}

/// How a customer is matched: the account id in its metadata (under `metadata_key`), its id
/// as an account's trait, its email's domain, its email.
pub fn match_keys(customer: &ProviderObject, metadata_key: &str) -> MatchKeys {
    let p = &customer.payload;
    let email = str_of(p, "email").map(str::to_ascii_lowercase);
    MatchKeys {
        external_account: p.get("metadata").and_then(|m| str_of(m, metadata_key)).map(str::to_owned),
        provider_id: customer.object_id.clone(),
        domain: email.as_deref().and_then(crate::matching::domain_of).map(str::to_owned),
        email,
    }
}

fn status(sub: &Value) -> SubscriptionStatus {
    let paused = sub.get("pause_collection").is_some_and(|p| !p.is_null());
    match str_of(sub, "status").unwrap_or("active") {
        "trialing" => SubscriptionStatus::Trialing,
        "canceled" | "incomplete_expired" => SubscriptionStatus::Canceled,
        "past_due" | "unpaid" | "incomplete" => SubscriptionStatus::PastDue,
        "paused" => SubscriptionStatus::Paused,
        _ if paused => SubscriptionStatus::Paused,
        _ => SubscriptionStatus::Active,
    }
}

/// The end of the current period: on the subscription in older API versions, on each item
/// in newer ones.
fn period_end(sub: &Value) -> Option<i64> {
    int_of(sub, "current_period_end").or_else(|| {
        let items = sub.get("items")?.get("data")?.as_array()?;
        items.iter().filter_map(|i| int_of(i, "current_period_end")).max()
    })
}

/// Steward's subscription for a Stripe subscription of `account`.
pub fn subscription(object: &ProviderObject, account: &AccountId) -> Option<Subscription> {
    let sub = &object.payload;
    let mrr = mrr::of(sub, object.version / 1000);
    let currency = Currency::parse(mrr.currency.as_deref().unwrap_or("usd")).ok()?;
    let names: Vec<&str> = mrr.items.iter().filter_map(|i| i.name.as_deref()).collect();
    let quantity = mrr.items.iter().filter(|i| !i.metered).map(|i| i.quantity).sum();
    let started = int_of(sub, "start_date").or_else(|| int_of(sub, "created")).unwrap_or(object.version / 1000);
    let items: Vec<Value> = mrr
        .items
        .iter()
        .map(|i| {
            json!({"item": i.item_id, "price": i.price_id, "name": i.name, "quantity": i.quantity,
                   "interval": i.interval, "interval_count": i.interval_count,
                   "mrr": i.monthly.round() as i64, "metered": i.metered})
        })
        .collect();
    let mut attributes = Map::new();
    attributes.insert("provider".into(), json!(NAME));
    attributes.insert("customer".into(), json!(object.parent_id));
    attributes.insert("stripe_status".into(), json!(str_of(sub, "status")));
    attributes.insert("list_mrr".into(), json!(mrr.list));
    attributes.insert("items".into(), Value::Array(items));
    for key in ["trial_start", "trial_end", "cancel_at", "canceled_at", "pause_collection", "collection_method"] {
        if let Some(v) = sub.get(key).filter(|v| !v.is_null()) {
            attributes.insert(key.into(), v.clone());
        }
    }
    if !mrr.unknown.is_empty() {
        attributes.insert("mrr_unknown".into(), json!(mrr.unknown));
    }
    let ended = int_of(sub, "ended_at").filter(|_| status(sub) == SubscriptionStatus::Canceled);
    Some(Subscription {
        subscription_id: object.object_id.clone(),
        account_id: account.clone(),
        plan: (!names.is_empty()).then(|| names.join(" + ")),
        status: status(sub),
        // An ended subscription keeps what it paid while it ran: its end is the churn.
        mrr: Money::new(if status(sub) == SubscriptionStatus::Canceled { mrr.list } else { mrr.current }, currency),
        quantity,
        started_at: time(started),
        ended_at: ended.map(time),
        current_period_end: period_end(sub).map(time),
        cancel_at_period_end: sub.get("cancel_at_period_end").and_then(Value::as_bool).unwrap_or(false),
        updated_at: time(object.version / 1000),
        attributes: Value::Object(attributes),
    })
}

/// The account traits a customer sets.
fn customer_traits(customer: &ProviderObject) -> Map<String, Value> {
    let p = &customer.payload;
    let mut traits = Map::new();
    traits.insert("stripe_customer_id".into(), json!(customer.object_id));
    for (from, to) in [("email", "billing_email"), ("name", "billing_name"), ("currency", "billing_currency")] {
        if let Some(v) = str_of(p, from) {
            traits.insert(to.into(), json!(v));
        }
    }
    if let Some(d) = p.get("delinquent").and_then(Value::as_bool) {
        traits.insert("delinquent".into(), json!(d));
    }
    traits
}

/// What a newly stored object means for its account, given the state stored before it.
pub fn outputs(object: &ProviderObject, previous: Option<&ProviderObject>, account: &AccountId) -> Vec<Output> {
    let p = &object.payload;
    let at = time(object.version / 1000);
    let id = &object.object_id;
    let mut out = Vec::new();
    match object.kind.as_str() {
        "customer" => {
            out.extend(crate::changed_traits(object, previous, customer_traits, at));
        }
        "subscription" => {
            let Some(sub) = subscription(object, account) else { return out };
            let before = previous.and_then(|prev| subscription(prev, account));
            // Starts and cancellations carry their own times and ids, so that a backfill and a
            // webhook tell of each once, when it happened; changes carry the version's.
            let event = |name: &str, what: &str, when: Option<i64>, extra: Value| {
                let mut props = json!({"subscription_id": id, "plan": sub.plan, "status": sub.status.as_str(),
                    "mrr": sub.mrr.minor, "currency": sub.mrr.currency.as_str(), "quantity": sub.quantity});
                if let (Some(o), Value::Object(e)) = (props.as_object_mut(), extra) {
                    o.extend(e);
                }
                let (message_id, at) = match when {
                    Some(t) => (format!("stripe:{id}:{what}"), time(t)),
                    None => (format!("stripe:{id}:{what}:{}", object.version), at),
                };
                Output::Event { message_id, name: name.to_owned(), properties: props, at }
            };
            let started = int_of(p, "start_date").or_else(|| int_of(p, "created"));
            let ended = int_of(p, "ended_at").or_else(|| int_of(p, "canceled_at")).or(Some(object.version / 1000));
            if before.is_none() {
                out.push(event("Subscription Started", "started", started, json!({})));
            }
            match &before {
                Some(b) if sub.status == SubscriptionStatus::Canceled && b.status == SubscriptionStatus::Canceled => {}
                _ if sub.status == SubscriptionStatus::Canceled => {
                    out.push(event("Subscription Canceled", "canceled", ended, json!({})));
                }
                Some(b) if b.status != SubscriptionStatus::Canceled => {
                    let (was, now) = (b.mrr.minor, sub.mrr.minor);
                    if was != now && b.mrr.currency == sub.mrr.currency && was > 0 && now > 0 {
                        let (name, what) = if now > was {
                            ("Subscription Expanded", "expanded")
                        } else {
                            ("Subscription Contracted", "contracted")
                        };
                        out.push(event(
                            name,
                            what,
                            None,
                            json!({"previous_mrr": was, "previous_quantity": b.quantity}),
                        ));
                    }
                    if sub.cancel_at_period_end && !b.cancel_at_period_end {
                        out.push(event("Subscription Cancellation Scheduled", "cancel_scheduled", None, json!({})));
                    }
                }
                _ => {}
            }
            out.push(Output::Subscription(Box::new(sub)));
        }
        "invoice" => {
            // A failed payment attempt: an open invoice attempted and not paid. Its message id
            // is the attempt's, so a webhook and a backfill see the same failure once.
            let attempts = int_of(p, "attempt_count").unwrap_or(0);
            let paid = p.get("paid").and_then(Value::as_bool).unwrap_or(str_of(p, "status") == Some("paid"));
            let failed = attempts > 0 && !paid && str_of(p, "status") == Some("open");
            let before = previous.and_then(|b| int_of(&b.payload, "attempt_count")).unwrap_or(0);
            if failed && (attempts > before || previous.is_none()) {
                out.push(Output::Event {
                    message_id: format!("stripe:{id}:payment_failed:{attempts}"),
                    name: "Payment Failed".into(),
                    properties: json!({"invoice_id": id, "amount": int_of(p, "amount_due"),
                        "currency": str_of(p, "currency").map(str::to_ascii_uppercase), "attempt": attempts,
                        "subscription_id": id_of(p, "subscription")}),
                    at,
                });
            }
        }
        _ => {}
    }
    out
}

/// What a backfill lists, in order: customers first, so that subscriptions and invoices
/// find their account.
pub fn resources() -> Vec<Resource> {
    vec![
        Resource { kind: "customer", path: "/v1/customers?limit=100" },
        Resource {
            kind: "subscription",
            path: "/v1/subscriptions?limit=100&status=all&expand[]=data.discounts&expand[]=data.items.data.discounts",
        },
        Resource { kind: "invoice", path: "/v1/invoices?limit=100" },
    ]
}

/// A list page of the REST API: its objects and the cursor of the next page (`None` at the
/// end). Stripe pages with `starting_after=<last id>` while `has_more` is true.
pub fn page(body: &[u8]) -> Result<(Vec<Value>, Option<String>), String> {
    let list: Value = serde_json::from_slice(body).map_err(|e| format!("a list page that is not JSON: {e}"))?;
    let data = list.get("data").and_then(Value::as_array).ok_or("a list page with no `data`")?.clone();
    let more = list.get("has_more").and_then(Value::as_bool).unwrap_or(false);
    let next = if more { data.last().and_then(|o| str_of(o, "id")).map(str::to_owned) } else { None };
    Ok((data, next))
}

/// The URL of the page after `cursor`.
pub fn page_url(base: &str, resource: &Resource, cursor: Option<&str>) -> String {
    let base = base.trim_end_matches('/');
    match cursor {
        Some(c) => format!("{base}{}&starting_after={c}", resource.path),
        None => format!("{base}{}", resource.path),
    }
}

#[cfg(test)]
mod tests;
