//! What the CRM connectors (HubSpot, Salesforce) share: a deal's (an opportunity's) change as
//! the events it tells its account, and an account's open pipeline.

use domain::Timestamp;
use serde_json::{Map, Value, json};

use crate::Output;

/// A deal's state as its events need it.
pub(crate) struct Deal {
    pub won: bool,
    pub closed: bool,
    pub renewal: bool,
}

/// What a deal's change from `before` to `now` tells: a renewal opportunity opened (at
/// `created`), the deal won or lost (at `closes`). Each has an id of its own (`<key>:<what>`,
/// the key naming the provider, the kind and the deal), so that a webhook and every sync that
/// reads the deal tell it once.
pub(crate) fn deal_events(
    key: &str,
    now: &Deal,
    before: Option<&Deal>,
    properties: Value,
    created: Timestamp,
    closes: Timestamp,
) -> Vec<Output> {
    let event = |name: &str, what: &str, at| Output::Event {
        message_id: format!("{key}:{what}"),
        name: name.to_owned(),
        properties: properties.clone(),
        at,
    };
    let mut out = Vec::new();
    if now.renewal && before.is_none_or(|b| !b.renewal) {
        out.push(event("Renewal Opportunity Created", "renewal_created", created));
    }
    if now.won && before.is_none_or(|b| !b.won) {
        out.push(event("Deal Won", "won", closes));
    } else if now.closed && !now.won && before.is_none_or(|b| !b.closed || b.won) {
        out.push(event("Deal Lost", "lost", closes));
    }
    out
}

/// An account's open pipeline: the sum of the amounts of its open deals, and how many.
pub(crate) fn pipeline(open: &[Option<f64>]) -> Map<String, Value> {
    let amount: f64 = open.iter().flatten().sum();
    let mut traits = Map::new();
    traits.insert("open_pipeline_amount".into(), json!(amount));
    traits.insert("open_deals".into(), json!(open.len()));
    traits
}
