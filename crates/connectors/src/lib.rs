//! Connectors to the tools that hold the rest of the truth about an account: billing (Stripe),
//! CRM and support (Zendesk, Intercom). Every connector has the same shape:
//!
//! - **configuration**: a [`store::ConnectorRecord`] per provider and workspace, its settings
//!   in [`Config`], its API key and webhook secrets sealed ([`secrets`]);
//! - **webhook verification**: the provider's own signature scheme, checked over the raw body
//!   before anything is parsed ([`Provider::verify`]);
//! - **a mirror**: each provider object is stored as last seen, the newest state winning
//!   whatever order deliveries and backfill pages arrive in ([`store::ProviderObject`]);
//! - **mapping**: a root object (a customer, a company, a requester) is matched to an account
//!   ([`matching`]); each object then becomes Steward's records and events ([`Output`]),
//!   compared with the state stored before it;
//! - **a client** for backfills ([`backfill`]): the provider's list endpoints, page by page,
//!   the cursor saved after each page so that a sync resumes where it stopped.
//!
//! Objects whose root matches no account wait in the mirror, listed for an operator to link
//! by hand; linking applies them.

pub mod backfill;
pub mod intercom;
pub mod matching;
pub mod secrets;
pub mod stripe;
mod support;
pub mod worker;
pub mod zendesk;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::{AccountId, EventType, NewEvent, Timestamp, WorkspaceId};
use futures_util::future::try_join_all;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use store::{ConnectorError, ConnectorProgress, ConnectorRecord, ObjectQuery, ProviderObject, Store, StoreError};

pub use matching::{Directory, MatchKeys, MatchRules};
pub use secrets::{SealingKey, Secrets};

/// The providers Steward connects to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    Stripe,
    Zendesk,
    Intercom,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Stripe, Provider::Zendesk, Provider::Intercom];

    pub fn parse(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Provider::Stripe => stripe::NAME,
            Provider::Zendesk => zendesk::NAME,
            Provider::Intercom => intercom::NAME,
        }
    }

    /// None where each customer of the provider has an API host of their own (Zendesk's
    /// `https://<subdomain>.zendesk.com`): the connector's `base_url` must say it.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Provider::Stripe => Some(stripe::DEFAULT_BASE_URL),
            Provider::Zendesk => None,
            Provider::Intercom => Some(intercom::DEFAULT_BASE_URL),
        }
    }

    /// The kinds of object that match an account, the first the main one (a Zendesk ticket
    /// reaches its account through its organization or, lacking one, its requester); the
    /// others reach one through them.
    pub fn root_kinds(self) -> &'static [&'static str] {
        match self {
            Provider::Stripe => &["customer"],
            Provider::Zendesk => &zendesk::ROOTS,
            Provider::Intercom => &intercom::ROOTS,
        }
    }

    pub fn is_root(self, kind: &str) -> bool {
        self.root_kinds().contains(&kind)
    }

    /// The kind of root an object's `parent_id` names.
    pub fn parent_kind(self, object: &ProviderObject) -> &'static str {
        match self {
            Provider::Stripe => "customer",
            Provider::Zendesk => zendesk::parent_kind(object),
            Provider::Intercom => intercom::parent_kind(object),
        }
    }

    /// Checks a delivery's signature, `header` giving the request's headers by name.
    pub fn verify(
        self,
        header: &(dyn Fn(&str) -> Option<String> + Sync),
        body: &[u8],
        secrets: &[String],
        now: i64,
    ) -> Result<(), WebhookError> {
        match self {
            Provider::Stripe => stripe::signature::verify(header("stripe-signature").as_deref(), body, secrets, now)
                .map(|_| ())
                .map_err(|e| WebhookError::Signature(e.to_string())),
            Provider::Zendesk => zendesk::signature::verify(
                header(zendesk::signature::HEADER).as_deref(),
                header(zendesk::signature::TIMESTAMP_HEADER).as_deref(),
                body,
                secrets,
                now,
            )
            .map_err(|e| WebhookError::Signature(e.to_string())),
            Provider::Intercom => {
                intercom::signature::verify(header(intercom::signature::HEADER).as_deref(), body, secrets)
                    .map_err(|e| WebhookError::Signature(e.to_string()))
            }
        }
    }

    pub fn delivery(self, body: &[u8]) -> Result<Delivery, WebhookError> {
        match self {
            Provider::Stripe => stripe::delivery(body),
            Provider::Zendesk => zendesk::delivery(body),
            Provider::Intercom => intercom::delivery(body),
        }
    }

    pub fn match_keys(self, root: &ProviderObject, rules: &MatchRules) -> MatchKeys {
        match self {
            Provider::Stripe => stripe::match_keys(root, &rules.metadata_key),
            Provider::Zendesk => zendesk::match_keys(root, &rules.metadata_key),
            Provider::Intercom => intercom::match_keys(root, &rules.metadata_key),
        }
    }

    pub fn outputs(
        self,
        object: &ProviderObject,
        previous: Option<&ProviderObject>,
        account: &AccountId,
    ) -> Vec<Output> {
        match self {
            Provider::Stripe => stripe::outputs(object, previous, account),
            Provider::Zendesk => zendesk::outputs(object, previous, account),
            Provider::Intercom => intercom::outputs(object, previous, account),
        }
    }

    /// Completes an object's newer state with what the stored one knew and it does not tell
    /// (a Zendesk ticket event carries no metrics or rating): a webhook's partial state does
    /// not erase a backfill's fuller one.
    pub fn complete(self, object: &mut ProviderObject, previous: &ProviderObject) {
        match self {
            Provider::Stripe | Provider::Intercom => {}
            Provider::Zendesk => zendesk::complete(object, previous),
        }
    }

    /// What a backfill lists, in order (roots first).
    pub fn resources(self) -> Vec<Resource> {
        match self {
            Provider::Stripe => stripe::resources(),
            Provider::Zendesk => zendesk::resources(),
            Provider::Intercom => intercom::resources(),
        }
    }

    /// A backfill page's objects, stored under `version` (the read's time) unless they carry
    /// their own (Zendesk's and Intercom's `updated_at`), and the next page's cursor.
    pub fn page(self, body: &[u8], version: i64) -> Result<(Vec<ProviderObject>, Option<String>), String> {
        match self {
            Provider::Stripe => {
                let (values, next) = stripe::page(body)?;
                Ok((values.into_iter().filter_map(|v| stripe::object(v, version)).collect(), next))
            }
            Provider::Zendesk => zendesk::page(body),
            Provider::Intercom => intercom::page(body),
        }
    }

    pub fn page_url(self, base: &str, resource: &Resource, cursor: Option<&str>) -> String {
        match self {
            Provider::Stripe => stripe::page_url(base, resource, cursor),
            Provider::Zendesk => zendesk::page_url(base, resource, cursor),
            Provider::Intercom => intercom::page_url(base, resource, cursor),
        }
    }

    /// The headers that authenticate an API call with `api_key`.
    pub fn auth_headers(self, api_key: &str) -> Vec<(&'static str, String)> {
        match self {
            Provider::Stripe => vec![("authorization", format!("Bearer {api_key}"))],
            Provider::Zendesk => zendesk::auth_headers(api_key),
            Provider::Intercom => intercom::auth_headers(api_key),
        }
    }
}

/// A list endpoint a backfill pages through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    pub kind: &'static str,
    /// Path and query of the first page, from the base URL.
    pub path: &'static str,
}

/// What a webhook delivery carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// The provider's id of the delivery's event: a redelivery has the same.
    pub event_id: String,
    pub event_type: String,
    /// The objects it tells of, each stored under the event's time (none for event types
    /// Steward does not keep).
    pub objects: Vec<ProviderObject>,
}

/// What an object means for its account.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Traits of the account, as a `group` call would set them.
    AccountTraits {
        traits: Map<String, Value>,
        at: Timestamp,
    },
    Subscription(Box<store::Subscription>),
    Ticket(Box<store::Ticket>),
    /// Something that happened to the account (`Payment Failed`), as a `track` call of the
    /// account's; `message_id` makes it once however often it is told.
    Event {
        message_id: String,
        name: String,
        properties: Value,
        at: Timestamp,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("no enabled {0} connector in this workspace")]
    NotConfigured(String),
    #[error("signature: {0}")]
    Signature(String),
    #[error("payload: {0}")]
    BadPayload(String),
    #[error("the connector's secrets cannot be read: {0}")]
    Secrets(#[from] secrets::SecretError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A connector's settings that are not secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The provider's API base URL (for a proxy, a regional endpoint or a test server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The provider-side metadata field holding Steward's account id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id_field: Option<String>,
    /// The account trait holding the provider's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_trait: Option<String>,
    /// Create an account for a root object that matches none.
    #[serde(default)]
    pub create_accounts: bool,
    /// Hours between scheduled backfills (none: only when asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_every_hours: Option<u32>,
}

impl Config {
    pub fn from_value(value: &Value) -> Result<Config, String> {
        let c: Config = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        if let Some(url) = &c.base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!("base_url {url:?} must be an absolute http(s) URL"));
        }
        if c.sync_every_hours == Some(0) {
            return Err("sync_every_hours must be at least 1".into());
        }
        Ok(c)
    }

    pub fn rules(&self) -> MatchRules {
        let d = MatchRules::default();
        MatchRules {
            metadata_key: self.account_id_field.clone().unwrap_or(d.metadata_key),
            account_trait: self.account_trait.clone().unwrap_or(d.account_trait),
            create_accounts: self.create_accounts,
            ..d
        }
    }
}

/// What storing a set of objects did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Ingested {
    /// The delivery was seen before and was not applied again.
    pub duplicate: bool,
    /// Objects stored (newer than what was stored).
    pub stored: usize,
    /// Objects left out as older than what was stored.
    pub stale: usize,
    /// Roots that match no account, and objects waiting on them.
    pub unmatched: usize,
    /// Records written (subscriptions, tickets) and events appended.
    pub records: usize,
    pub events: usize,
}

/// The mirror's kind for a webhook delivery applied, under its event id.
pub const DELIVERY_KIND: &str = "delivery";

/// How long a directory of the workspace's accounts is trusted before a miss reads it again.
const DIRECTORY_FRESH: Duration = Duration::from_secs(10);

/// A directory kept for webhooks, and when it was read.
type Kept = (Instant, Arc<Directory>);

/// The connectors of every workspace: webhooks in, objects mapped and applied.
pub struct Connectors {
    store: Arc<dyn Store>,
    key: Arc<SealingKey>,
    /// Each workspace's directory for webhooks, with when it was read.
    directories: Mutex<HashMap<(String, Provider), Kept>>,
}

impl Connectors {
    pub fn new(store: Arc<dyn Store>, key: Arc<SealingKey>) -> Connectors {
        Connectors { store, key, directories: Mutex::new(HashMap::new()) }
    }

    pub fn key(&self) -> &SealingKey {
        &self.key
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The connector's record and its secrets in the clear.
    pub async fn load(
        &self,
        ws: &WorkspaceId,
        provider: Provider,
    ) -> Result<Option<(ConnectorRecord, Secrets)>, WebhookError> {
        let Some(record) = self.store.get_connector(ws, provider.name()).await? else { return Ok(None) };
        let secrets = Secrets::open(&self.key, ws.as_str(), provider.name(), &record.secrets)?;
        Ok(Some((record, secrets)))
    }

    /// A webhook delivery: checked against the connector's secrets, then its objects stored
    /// and applied. Redeliveries are applied again, which changes nothing: each object is
    /// newest-wins and each event has its own id.
    pub async fn webhook(
        &self,
        ws: &WorkspaceId,
        provider: Provider,
        header: &(dyn Fn(&str) -> Option<String> + Sync),
        body: &[u8],
    ) -> Result<(Delivery, Ingested), WebhookError> {
        let not_configured = || WebhookError::NotConfigured(provider.name().into());
        let (record, secrets) = self.load(ws, provider).await?.ok_or_else(not_configured)?;
        if !record.enabled {
            return Err(not_configured());
        }
        provider.verify(header, body, &secrets.webhook_secrets, Utc::now().timestamp())?;
        let delivery = match provider.delivery(body) {
            Ok(d) => d,
            Err(e) => {
                let record = serde_json::from_slice::<Value>(body).ok();
                self.error(ws, provider, "webhook", None, &e.to_string(), record).await;
                return Err(e);
            }
        };
        // A delivery is remembered once applied: one seen before is not applied again (and
        // one whose applying was cut short is, which changes nothing already done).
        let seen = ObjectQuery {
            kind: Some(DELIVERY_KIND.into()),
            object_id: Some(delivery.event_id.clone()),
            limit: 1,
            ..Default::default()
        };
        if !self.store.provider_objects(ws, provider.name(), &seen).await?.is_empty() {
            let progress = ConnectorProgress { webhooks: 1, ..Default::default() };
            self.store.record_connector_progress(ws, provider.name(), &progress, Utc::now()).await?;
            return Ok((delivery, Ingested { duplicate: true, ..Default::default() }));
        }
        let config = Config::from_value(&record.config).unwrap_or_default();
        let ingested = self.ingest(ws, provider, &config.rules(), delivery.objects.clone(), None).await?;
        let now = Utc::now();
        let remembered = ProviderObject {
            kind: DELIVERY_KIND.into(),
            object_id: delivery.event_id.clone(),
            parent_id: None,
            version: now.timestamp_millis(),
            account_id: None,
            matched_by: None,
            label: delivery.event_type.clone(),
            payload: json!({"type": delivery.event_type}),
            updated_at: now,
        };
        self.store.put_provider_objects(ws, provider.name(), std::slice::from_ref(&remembered)).await?;
        let progress = ConnectorProgress { webhooks: 1, records: ingested.stored as i64, ..Default::default() };
        self.store.record_connector_progress(ws, provider.name(), &progress, now).await?;
        Ok((delivery, ingested))
    }

    /// The workspace's directory for matching: `fresh` reads it again unless it was read
    /// within [`DIRECTORY_FRESH`].
    async fn directory(
        &self,
        ws: &WorkspaceId,
        provider: Provider,
        rules: &MatchRules,
        fresh: bool,
    ) -> store::Result<Arc<Directory>> {
        let key = (ws.to_string(), provider);
        if let Some((at, d)) = self.directories.lock().expect("directories").get(&key)
            && (!fresh || at.elapsed() < DIRECTORY_FRESH)
        {
            return Ok(d.clone());
        }
        let d = Arc::new(Directory::load(self.store.as_ref(), ws, rules).await?);
        self.directories.lock().expect("directories").insert(key, (Instant::now(), d.clone()));
        Ok(d)
    }

    /// Stores `objects` (newest wins) and applies those stored: roots are matched to an
    /// account, others follow their root's. `directory` is the one a backfill read; webhooks
    /// use the kept one. The lookups run together, and what the objects mean is written
    /// together: the records concurrently (one commit for all of them on SQLite), the events
    /// in one append.
    pub async fn ingest(
        &self,
        ws: &WorkspaceId,
        provider: Provider,
        rules: &MatchRules,
        mut objects: Vec<ProviderObject>,
        directory: Option<&Directory>,
    ) -> Result<Ingested, WebhookError> {
        let mut out = Ingested::default();
        let store = self.store.as_ref();
        let one = |kind: &str, id: &str| ObjectQuery {
            kind: Some(kind.to_owned()),
            object_id: Some(id.to_owned()),
            limit: 1,
            ..Default::default()
        };
        // What was stored before each, for its link and to compare with; and the roots of
        // the others, each read once.
        let queries: Vec<ObjectQuery> = objects.iter().map(|o| one(&o.kind, &o.object_id)).collect();
        let previous: Vec<Option<ProviderObject>> =
            try_join_all(queries.iter().map(|q| store.provider_objects(ws, provider.name(), q)))
                .await?
                .into_iter()
                .map(|mut found| found.pop())
                .collect();
        let mut parents: Vec<(&str, &str)> = objects
            .iter()
            .filter(|o| !provider.is_root(&o.kind))
            .filter_map(|o| Some((provider.parent_kind(o), o.parent_id.as_deref()?)))
            .collect();
        parents.sort_unstable();
        parents.dedup();
        let queries: Vec<ObjectQuery> = parents.iter().map(|(kind, p)| one(kind, p)).collect();
        let roots: HashMap<(String, String), ProviderObject> =
            try_join_all(queries.iter().map(|q| store.provider_objects(ws, provider.name(), q)))
                .await?
                .into_iter()
                .filter_map(|mut found| found.pop())
                .map(|root| ((root.kind.clone(), root.object_id.clone()), root))
                .collect();
        // Roots found to match nothing are matched again once with a directory read anew.
        let mut kept = None;
        for (o, prev) in objects.iter_mut().zip(&previous) {
            if let Some(p) = prev.as_ref().filter(|p| p.version <= o.version) {
                provider.complete(o, p);
            }
            if let Some(p) = prev.as_ref().filter(|p| p.account_id.is_some() && p.version <= o.version) {
                o.account_id = p.account_id.clone();
                o.matched_by = p.matched_by.clone();
                // A root's external id, if it names another account now, moves it.
                if provider.is_root(&o.kind)
                    && p.matched_by.as_deref() != Some("manual")
                    && let Some(a) =
                        provider.match_keys(o, rules).external_account.and_then(|a| AccountId::parse(&a).ok())
                {
                    o.account_id = Some(a);
                    o.matched_by = Some("external_id".into());
                }
                continue;
            }
            if provider.is_root(&o.kind) {
                let keys = provider.match_keys(o, rules);
                let mut found = match directory {
                    Some(d) => d.find(store, ws, rules, &keys).await?,
                    None => {
                        let d = match &kept {
                            Some(d) => Arc::clone(d),
                            None => self.directory(ws, provider, rules, false).await?,
                        };
                        d.find(store, ws, rules, &keys).await?
                    }
                };
                if found.is_none() && directory.is_none() {
                    let d = self.directory(ws, provider, rules, true).await?;
                    found = d.find(store, ws, rules, &keys).await?;
                    kept = Some(d);
                }
                if let Some(m) = found {
                    o.account_id = Some(m.account);
                    o.matched_by = Some(m.by.into());
                }
            } else if let Some(root) =
                o.parent_id.as_ref().and_then(|p| roots.get(&(provider.parent_kind(o).to_owned(), p.clone())))
            {
                o.account_id = root.account_id.clone();
                o.matched_by = root.matched_by.as_ref().map(|_| "parent".to_owned());
            }
        }
        let written = store.put_provider_objects(ws, provider.name(), &objects).await?;
        let mut writes = Writes::default();
        let mut newly_matched = Vec::new();
        for ((object, prev), written) in objects.iter().zip(&previous).zip(written) {
            if !written {
                out.stale += 1;
                continue;
            }
            out.stored += 1;
            let Some(account) = &object.account_id else {
                out.unmatched += 1;
                continue;
            };
            writes.gather(provider, object, prev.as_ref(), account);
            // A root matched for the first time brings the objects that waited on it.
            if provider.is_root(&object.kind) && prev.as_ref().is_none_or(|p| p.account_id.is_none()) {
                newly_matched.push((object, account));
            }
        }
        for (root, account) in newly_matched {
            let children = waiting_on(store, ws, provider, root).await?;
            if children.is_empty() {
                continue;
            }
            let by = root.matched_by.as_deref().unwrap_or("parent");
            store.link_provider_object(ws, provider.name(), &root.kind, &root.object_id, account, by).await?;
            for child in &children {
                writes.gather(provider, child, None, account);
            }
        }
        self.write(ws, writes, &mut out).await?;
        metrics::counter!("steward_connector_objects_total", "provider" => provider.name())
            .increment(out.stored as u64);
        metrics::counter!("steward_connector_stale_objects_total", "provider" => provider.name())
            .increment(out.stale as u64);
        Ok(out)
    }

    /// Links a root object to `account` by hand and applies it and what waited on it.
    pub async fn link(
        &self,
        ws: &WorkspaceId,
        provider: Provider,
        kind: &str,
        object_id: &str,
        account: &AccountId,
    ) -> Result<Option<Ingested>, WebhookError> {
        let store = self.store.as_ref();
        let q =
            ObjectQuery { kind: Some(kind.into()), object_id: Some(object_id.into()), limit: 1, ..Default::default() };
        let Some(object) = store.provider_objects(ws, provider.name(), &q).await?.pop() else { return Ok(None) };
        let mut children = Vec::new();
        if provider.is_root(kind) {
            // The children to apply are those without an account before the link.
            children = waiting_on(store, ws, provider, &object).await?;
        }
        store.link_provider_object(ws, provider.name(), kind, object_id, account, "manual").await?;
        let mut writes = Writes::default();
        let linked = ProviderObject { account_id: Some(account.clone()), matched_by: Some("manual".into()), ..object };
        writes.gather(provider, &linked, None, account);
        for child in &children {
            writes.gather(provider, child, None, account);
        }
        let mut out = Ingested::default();
        self.write(ws, writes, &mut out).await?;
        Ok(Some(out))
    }

    /// Writes what objects meant: the records concurrently (so that the store commits them
    /// together), the events in one append.
    ///
    /// A subscription continues the period stored for it: a change of its MRR or seats closes
    /// that period (kept as a row of its own, `<id>@<start>`, ended at the change) and starts
    /// the next, so that the account's MRR history (expansions, contractions) is there for
    /// scoring as a billing export's periods would be.
    async fn write(&self, ws: &WorkspaceId, writes: Writes, out: &mut Ingested) -> Result<(), WebhookError> {
        let store = self.store.as_ref();
        let mut subscriptions = writes.subscriptions;
        let stored = try_join_all(subscriptions.iter().map(|s| store.account_subscriptions(ws, &s.account_id))).await?;
        let mut closed = Vec::new();
        for (s, rows) in subscriptions.iter_mut().zip(stored) {
            let Some(current) = rows.into_iter().find(|r| r.subscription_id == s.subscription_id) else { continue };
            if current.ended_at.is_some() || s.updated_at <= current.started_at {
                continue;
            }
            let repriced = current.mrr != s.mrr || current.quantity != s.quantity;
            if repriced && s.ended_at.is_none() {
                let at = s.updated_at;
                let mut attributes = current.attributes.clone();
                if let Value::Object(a) = &mut attributes {
                    a.insert("period_of".into(), json!(s.subscription_id));
                }
                closed.push(store::Subscription {
                    subscription_id: format!("{}@{}", current.subscription_id, current.started_at.timestamp()),
                    ended_at: Some(at),
                    updated_at: at,
                    attributes,
                    ..current
                });
                s.started_at = at;
            } else {
                // An end, or a change of nothing the period holds: the period goes on.
                s.started_at = current.started_at;
                if s.ended_at.is_some() {
                    (s.mrr, s.quantity) = (current.mrr, current.quantity);
                }
            }
        }
        subscriptions.extend(closed);
        try_join_all(subscriptions.iter().map(|s| store.upsert_subscription(ws, s))).await?;
        try_join_all(writes.tickets.iter().map(|t| store.upsert_ticket(ws, t))).await?;
        out.records += subscriptions.len() + writes.tickets.len();
        if !writes.events.is_empty() {
            out.events += store.append_events(ws, &writes.events).await?.stored;
        }
        Ok(())
    }

    /// Records an error; a failure to record it is logged, not raised over the first.
    pub async fn error(
        &self,
        ws: &WorkspaceId,
        provider: Provider,
        stage: &str,
        object: Option<&ProviderObject>,
        message: &str,
        record: Option<Value>,
    ) {
        let error = ConnectorError {
            at: Utc::now(),
            stage: stage.into(),
            object_kind: object.map(|o| o.kind.clone()),
            object_id: object.map(|o| o.object_id.clone()),
            message: message.into(),
            record: record.or_else(|| object.map(|o| o.payload.clone())),
        };
        metrics::counter!("steward_connector_errors_total", "provider" => provider.name(), "stage" => stage.to_owned())
            .increment(1);
        if let Err(e) = self.store.add_connector_error(ws, provider.name(), &error).await {
            tracing::warn!(workspace = %ws, provider = provider.name(), error = %e, "recording a connector error failed");
        }
    }
}

/// The objects without an account whose parent is `root` (a parent id names a root of one
/// kind: another kind's object with the same id is not its parent).
async fn waiting_on(
    store: &dyn Store,
    ws: &WorkspaceId,
    provider: Provider,
    root: &ProviderObject,
) -> store::Result<Vec<ProviderObject>> {
    let q = ObjectQuery { parent_id: Some(root.object_id.clone()), unmatched: true, ..Default::default() };
    let mut children = store.provider_objects(ws, provider.name(), &q).await?;
    children.retain(|c| !provider.is_root(&c.kind) && provider.parent_kind(c) == root.kind);
    Ok(children)
}

/// What a set of objects means, gathered to be written together.
#[derive(Default)]
struct Writes {
    subscriptions: Vec<store::Subscription>,
    tickets: Vec<store::Ticket>,
    events: Vec<NewEvent>,
}

impl Writes {
    fn gather(
        &mut self,
        provider: Provider,
        object: &ProviderObject,
        previous: Option<&ProviderObject>,
        account: &AccountId,
    ) {
        let now = Utc::now();
        for output in provider.outputs(object, previous, account) {
            match output {
                Output::Subscription(s) => self.subscriptions.push(*s),
                Output::Ticket(t) => self.tickets.push(*t),
                Output::AccountTraits { traits, at } => {
                    let id = format!("{}:{}:{}:{}", provider.name(), object.kind, object.object_id, object.version);
                    self.events.push(account_event(
                        id,
                        EventType::Group,
                        None,
                        account,
                        Value::Object(traits),
                        at,
                        now,
                    ));
                }
                Output::Event { message_id, name, properties, at } => {
                    self.events.push(account_event(
                        message_id,
                        EventType::Track,
                        Some(name),
                        account,
                        properties,
                        at,
                        now,
                    ));
                }
            }
        }
    }
}

/// An event of an account with no person: a `group` call setting its traits, or a `track`
/// call of something that happened to it.
fn account_event(
    message_id: String,
    kind: EventType,
    name: Option<String>,
    account: &AccountId,
    body: Value,
    at: Timestamp,
    now: Timestamp,
) -> NewEvent {
    let timestamp = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let payload = match kind {
        EventType::Group => json!({"type": "group", "messageId": message_id, "groupId": account.as_str(),
            "traits": body, "timestamp": timestamp}),
        _ => json!({"type": "track", "messageId": message_id, "event": name, "properties": body,
            "context": {"groupId": account.as_str()}, "timestamp": timestamp}),
    };
    NewEvent {
        message_id,
        kind,
        name,
        user_id: None,
        anonymous_id: None,
        group_id: Some(account.to_string()),
        previous_id: None,
        timestamp: at,
        received_at: now,
        payload: payload.to_string(),
    }
}
