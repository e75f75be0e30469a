//! Connectors to the tools that hold the rest of the truth about an account: billing (Stripe),
//! CRM (HubSpot, Salesforce) and support (Zendesk, Intercom). Every connector has the same
//! shape:
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
//!   the cursor saved after each page so that a sync resumes where it stopped; providers that
//!   can be asked for what changed since a time (Salesforce) read only that after the first.
//!
//! Objects whose root matches no account wait in the mirror, listed for an operator to link
//! by hand; linking applies them.

pub mod backfill;
mod crm;
pub mod hubspot;
pub mod intercom;
pub mod matching;
pub mod oauth;
pub mod salesforce;
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
    HubSpot,
    Salesforce,
}

impl Provider {
    pub const ALL: [Provider; 5] =
        [Provider::Stripe, Provider::Zendesk, Provider::Intercom, Provider::HubSpot, Provider::Salesforce];

    pub fn parse(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Provider::Stripe => stripe::NAME,
            Provider::Zendesk => zendesk::NAME,
            Provider::Intercom => intercom::NAME,
            Provider::HubSpot => hubspot::NAME,
            Provider::Salesforce => salesforce::NAME,
        }
    }

    /// None where each customer of the provider has an API host of their own (Zendesk's
    /// `https://<subdomain>.zendesk.com`, a Salesforce org's instance URL): the connector's
    /// `base_url` must say it.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Provider::Stripe => Some(stripe::DEFAULT_BASE_URL),
            Provider::Zendesk | Provider::Salesforce => None,
            Provider::Intercom => Some(intercom::DEFAULT_BASE_URL),
            Provider::HubSpot => Some(hubspot::DEFAULT_BASE_URL),
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
            Provider::HubSpot => &["company"],
            Provider::Salesforce => &["account"],
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
            Provider::HubSpot => "company",
            Provider::Salesforce => "account",
        }
    }

    /// Checks a delivery's signature, `header` giving the request's headers by name (and its
    /// path and query as `:path`, HTTP/2's name for it: HubSpot signs the URL it called).
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
            Provider::HubSpot => hubspot::signature::verify(header, body, secrets, now * 1000)
                .map_err(|e| WebhookError::Signature(e.to_string())),
            Provider::Salesforce => Err(WebhookError::Signature(salesforce::NO_WEBHOOKS.into())),
        }
    }

    pub fn delivery(self, body: &[u8]) -> Result<Delivery, WebhookError> {
        match self {
            Provider::Stripe => stripe::delivery(body),
            Provider::Zendesk => zendesk::delivery(body),
            Provider::Intercom => intercom::delivery(body),
            Provider::HubSpot => hubspot::delivery(body),
            Provider::Salesforce => Err(WebhookError::BadPayload(salesforce::NO_WEBHOOKS.into())),
        }
    }

    pub fn match_keys(self, root: &ProviderObject, rules: &MatchRules) -> MatchKeys {
        match self {
            Provider::Stripe => stripe::match_keys(root, &rules.metadata_key),
            Provider::Zendesk => zendesk::match_keys(root, &rules.metadata_key),
            Provider::Intercom => intercom::match_keys(root, &rules.metadata_key),
            Provider::HubSpot => hubspot::match_keys(root, &rules.metadata_key),
            Provider::Salesforce => salesforce::match_keys(root, &rules.metadata_key),
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
            Provider::HubSpot => hubspot::outputs(object, previous),
            Provider::Salesforce => salesforce::outputs(object, previous),
        }
    }

    /// Completes an object's newer state with what the stored one knew and it does not tell
    /// (a Zendesk ticket event carries no metrics or rating): a webhook's partial state does
    /// not erase a backfill's fuller one.
    pub fn complete(self, object: &mut ProviderObject, previous: &ProviderObject) {
        match self {
            Provider::Stripe | Provider::Intercom | Provider::HubSpot | Provider::Salesforce => {}
            Provider::Zendesk => zendesk::complete(object, previous),
        }
    }

    /// Makes an object older than the one stored into the stored one with what it newly
    /// tells, when it tells what the stored state does not know yet (a Zendesk rating
    /// delivered after a later event of its ticket); says whether it did. An object left as
    /// it was is stale.
    pub fn late(self, object: &mut ProviderObject, stored: &ProviderObject) -> bool {
        match self {
            Provider::Stripe | Provider::Intercom | Provider::HubSpot | Provider::Salesforce => false,
            Provider::Zendesk => zendesk::late(object, stored),
        }
    }

    /// A delivery that names what changed without carrying it (HubSpot's) asks for a sync,
    /// which reads it.
    pub fn syncs_on_webhook(self) -> bool {
        matches!(self, Provider::HubSpot)
    }

    /// The id of the object's owner (kind `owner`) when the mapping needs the owner's state
    /// and the object does not carry it: ingesting embeds the stored owner as `owner`.
    pub fn owner_id(self, object: &ProviderObject) -> Option<String> {
        match self {
            Provider::HubSpot => hubspot::owner_id(object),
            Provider::Stripe | Provider::Zendesk | Provider::Intercom | Provider::Salesforce => None,
        }
    }

    /// Whether the object is the provider's word that it was deleted (where a deletion can
    /// be told by id alone).
    pub fn deleted(self, object: &ProviderObject) -> bool {
        match self {
            Provider::HubSpot => hubspot::archived(object),
            Provider::Salesforce => salesforce::deleted(object),
            Provider::Stripe | Provider::Zendesk | Provider::Intercom => false,
        }
    }

    /// The children summed into traits of their root's account (deals into the open
    /// pipeline), and the sum over one root's.
    pub fn rollup_kind(self) -> Option<&'static str> {
        match self {
            Provider::HubSpot => Some("deal"),
            Provider::Salesforce => Some("opportunity"),
            Provider::Stripe | Provider::Zendesk | Provider::Intercom => None,
        }
    }

    pub fn rollup(self, children: &[&ProviderObject]) -> Map<String, Value> {
        match self {
            Provider::HubSpot => hubspot::open_pipeline(children),
            Provider::Salesforce => salesforce::open_pipeline(children),
            Provider::Stripe | Provider::Zendesk | Provider::Intercom => Map::new(),
        }
    }

    /// What a backfill lists, in order (roots first).
    pub fn resources(self) -> Vec<Resource> {
        match self {
            Provider::Stripe => stripe::resources(),
            Provider::Zendesk => zendesk::resources(),
            Provider::Intercom => intercom::resources(),
            Provider::HubSpot => hubspot::resources(),
            Provider::Salesforce => salesforce::resources(),
        }
    }

    /// A backfill page of `resource` asked for after `cursor` (with the watermark `since`):
    /// its objects, stored under `version` (the read's time) unless they carry their own
    /// (Zendesk's and Intercom's `updated_at`, HubSpot's `updatedAt`, Salesforce's
    /// `SystemModstamp`), and the next page's cursor.
    pub fn page(
        self,
        resource: &Resource,
        cursor: Option<&str>,
        since: Option<Timestamp>,
        body: &[u8],
        version: i64,
    ) -> Result<(Vec<ProviderObject>, Option<String>), String> {
        match self {
            Provider::Stripe => {
                let (values, next) = stripe::page(body)?;
                Ok((values.into_iter().filter_map(|v| stripe::object(v, version)).collect(), next))
            }
            Provider::Zendesk => zendesk::page(body),
            Provider::Intercom => intercom::page(body),
            Provider::HubSpot => hubspot::page(resource, cursor, since, body, version),
            Provider::Salesforce => salesforce::page(body, version),
        }
    }

    /// The request for a page: the first of `resource` (only what changed since `since`, for
    /// a provider that can be asked so, with the fields `rules` match on), or the one `cursor`
    /// names.
    pub fn page_request(
        self,
        base: &str,
        resource: &Resource,
        cursor: Option<&str>,
        since: Option<Timestamp>,
        rules: &MatchRules,
    ) -> PageRequest {
        let get = |url: String| PageRequest { url, body: None };
        match self {
            Provider::Stripe => get(stripe::page_url(base, resource, cursor)),
            Provider::Zendesk => get(zendesk::page_url(base, resource, cursor)),
            Provider::Intercom => get(intercom::page_url(base, resource, cursor)),
            Provider::HubSpot => hubspot::page_request(base, resource, cursor, since, &rules.metadata_key),
            Provider::Salesforce => get(salesforce::page_url(base, resource, cursor, since, &rules.metadata_key)),
        }
    }

    /// A request that completes a page's objects with what the page leaves out (the
    /// companies of the contacts and deals a HubSpot search found), if one is needed.
    pub fn follow_up(
        self,
        base: &str,
        resource: &Resource,
        objects: &[ProviderObject],
        since: Option<Timestamp>,
    ) -> Option<PageRequest> {
        match self {
            Provider::HubSpot => hubspot::associations_request(base, resource, objects, since),
            Provider::Stripe | Provider::Zendesk | Provider::Intercom | Provider::Salesforce => None,
        }
    }

    /// Completes `objects` with the answer to [`Provider::follow_up`]'s request.
    pub fn attach(self, resource: &Resource, objects: &mut [ProviderObject], body: &[u8]) -> Result<(), String> {
        match self {
            Provider::HubSpot => hubspot::attach_companies(resource, objects, body),
            Provider::Stripe | Provider::Zendesk | Provider::Intercom | Provider::Salesforce => Ok(()),
        }
    }

    /// The cursor a backfill that resumes starts from, given the one it stopped at: cursors
    /// good only for a while (Salesforce's query locators, Intercom's scroll) are not reused
    /// (the list, or the scroll, is read again from its start).
    pub fn resume_cursor(self, resource: &Resource, cursor: Option<String>) -> Option<String> {
        match self {
            Provider::Salesforce => None,
            Provider::Intercom => intercom::resume_cursor(resource, cursor),
            Provider::Stripe | Provider::Zendesk | Provider::HubSpot => cursor,
        }
    }

    /// The cursor to go on from when the page `cursor` names was answered `status`, because
    /// the cursor expired within the run (an Intercom scroll unused for a minute); none when
    /// the answer is a failure.
    pub fn expired_cursor(self, resource: &Resource, cursor: Option<&str>, status: u16) -> Option<Option<String>> {
        match self {
            Provider::Intercom => intercom::expired_cursor(resource, cursor, status),
            Provider::Stripe | Provider::Zendesk | Provider::HubSpot | Provider::Salesforce => None,
        }
    }

    /// Whether the API key may be an OAuth access token renewed with a refresh token.
    pub fn refreshes_tokens(self) -> bool {
        matches!(self, Provider::Salesforce)
    }

    /// The headers that authenticate an API call with `api_key`.
    pub fn auth_headers(self, api_key: &str) -> Vec<(&'static str, String)> {
        match self {
            Provider::Stripe | Provider::HubSpot | Provider::Salesforce => {
                vec![("authorization", format!("Bearer {api_key}"))]
            }
            Provider::Zendesk => zendesk::auth_headers(api_key),
            Provider::Intercom => intercom::auth_headers(api_key),
        }
    }
}

/// A list endpoint a backfill pages through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    pub kind: &'static str,
    /// Path and query of the first page, from the base URL (Salesforce: the sObject its
    /// query reads).
    pub path: &'static str,
}

/// A request for a backfill page: a GET of `url`, or a POST of the JSON `body` to it (a
/// search).
#[derive(Clone, Debug, PartialEq)]
pub struct PageRequest {
    pub url: String,
    pub body: Option<Value>,
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
    /// Minutes between scheduled backfills, instead of hours: for a provider polled for what
    /// changed (Salesforce), where each reads little.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_every_minutes: Option<u32>,
    /// Where an OAuth access token is refreshed (`https://login.salesforce.com`,
    /// `https://test.salesforce.com` for a sandbox, or the org's My Domain); none: the
    /// `base_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_url: Option<String>,
}

impl Config {
    pub fn from_value(value: &Value) -> Result<Config, String> {
        let c: Config = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        for (field, url) in [("base_url", &c.base_url), ("login_url", &c.login_url)] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(format!("{field} {url:?} must be an absolute http(s) URL"));
            }
        }
        if c.sync_every_hours == Some(0) {
            return Err("sync_every_hours must be at least 1".into());
        }
        if c.sync_every_minutes == Some(0) {
            return Err("sync_every_minutes must be at least 1".into());
        }
        if c.sync_every_hours.is_some() && c.sync_every_minutes.is_some() {
            return Err("set sync_every_hours or sync_every_minutes, not both".into());
        }
        Ok(c)
    }

    /// The time between scheduled backfills, if they are scheduled.
    pub fn sync_every(&self) -> Option<chrono::Duration> {
        self.sync_every_minutes
            .map(|m| chrono::Duration::minutes(i64::from(m)))
            .or(self.sync_every_hours.map(|h| chrono::Duration::hours(i64::from(h))))
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
        let mut progress = ConnectorProgress { webhooks: 1, records: ingested.stored as i64, ..Default::default() };
        // What changed is read by a sync: one under way is marked to run again (its state
        // otherwise left as it saves it), else one is asked for.
        if provider.syncs_on_webhook() && !self.store.mark_connector_sync_again(ws, provider.name(), now).await? {
            let mut sync = backfill::SyncState::of(&record);
            sync.request(false);
            sync.retry_at = None;
            progress.sync = Some(serde_json::to_value(&sync).expect("state serializes"));
        }
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
        // A deletion told by id alone keeps the parent stored, so that its root's sums change.
        for (o, prev) in objects.iter_mut().zip(&previous) {
            if o.parent_id.is_none()
                && provider.deleted(o)
                && let Some(p) = prev
            {
                o.parent_id = p.parent_id.clone();
            }
        }
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
        // Objects whose owner the mapping needs carry the owner as stored (an owner in the
        // same set is newer).
        let owner_ids: Vec<String> = objects.iter().filter_map(|o| provider.owner_id(o)).collect();
        if !owner_ids.is_empty() {
            let queries: Vec<ObjectQuery> = owner_ids.iter().map(|id| one("owner", id)).collect();
            let mut owners: HashMap<String, Value> =
                try_join_all(queries.iter().map(|q| store.provider_objects(ws, provider.name(), q)))
                    .await?
                    .into_iter()
                    .filter_map(|mut found| found.pop())
                    .map(|owner| (owner.object_id, owner.payload))
                    .collect();
            owners
                .extend(objects.iter().filter(|o| o.kind == "owner").map(|o| (o.object_id.clone(), o.payload.clone())));
            for o in &mut objects {
                if let Some(owner) = provider.owner_id(o).and_then(|id| owners.get(&id))
                    && let Some(fields) = o.payload.as_object_mut()
                {
                    fields.insert("owner".into(), owner.clone());
                }
            }
        }
        // Roots found to match nothing are matched again once with a directory read anew.
        let mut kept = None;
        for (o, prev) in objects.iter_mut().zip(&previous) {
            if let Some(p) = prev.as_ref().filter(|p| p.version > o.version) {
                provider.late(o, p);
            }
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
        for ((object, prev), &written) in objects.iter().zip(&previous).zip(&written) {
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
        let changed: Vec<(&ProviderObject, Option<&ProviderObject>)> = objects
            .iter()
            .zip(&previous)
            .zip(&written)
            .filter(|(_, written)| **written)
            .map(|((o, prev), _)| (o, prev.as_ref()))
            .collect();
        self.rollups(ws, provider, &changed, &newly_matched, &mut writes).await?;
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

    /// Traits summed over a root's children (a company's open pipeline), told when a child
    /// stored changes them (`changed`: each with its state before), and when a root is first
    /// matched (`matched`).
    async fn rollups(
        &self,
        ws: &WorkspaceId,
        provider: Provider,
        changed: &[(&ProviderObject, Option<&ProviderObject>)],
        matched: &[(&ProviderObject, &AccountId)],
        writes: &mut Writes,
    ) -> store::Result<()> {
        let Some(kind) = provider.rollup_kind() else { return Ok(()) };
        let mut roots: HashMap<&str, Rollup> = HashMap::new();
        for &(o, prev) in changed {
            if let (true, Some(account), Some(root)) = (o.kind == kind, &o.account_id, &o.parent_id) {
                roots.entry(root).or_insert_with(|| Rollup::new(account)).changed.push((o, prev));
            }
        }
        for (root, account) in matched {
            roots.entry(&root.object_id).or_insert_with(|| Rollup::new(account)).matched = true;
        }
        let now = Utc::now();
        let roots: Vec<(&str, Rollup)> = roots.into_iter().collect();
        let queries: Vec<ObjectQuery> = roots
            .iter()
            .map(|(root, _)| ObjectQuery {
                kind: Some(kind.into()),
                parent_id: Some((*root).into()),
                ..Default::default()
            })
            .collect();
        let children =
            try_join_all(queries.iter().map(|q| self.store.provider_objects(ws, provider.name(), q))).await?;
        for ((root, rollup), children) in roots.into_iter().zip(children) {
            let after = provider.rollup(&children.iter().collect::<Vec<_>>());
            let before: Vec<&ProviderObject> = children
                .iter()
                .filter_map(|c| match rollup.changed.iter().find(|(o, _)| o.object_id == c.object_id) {
                    Some((_, prev)) => *prev,
                    None => Some(c),
                })
                .collect();
            if !rollup.matched && provider.rollup(&before) == after {
                continue;
            }
            let version = children.iter().map(|c| c.version).max().unwrap_or_default();
            let id = format!("{}:{}:{root}:{kind}s:{version}", provider.name(), provider.root_kinds()[0]);
            let at = chrono::DateTime::from_timestamp_millis(version).unwrap_or(now);
            writes.events.push(account_event(
                id,
                EventType::Group,
                None,
                rollup.account,
                Value::Object(after),
                at,
                now,
            ));
        }
        Ok(())
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
        if provider.is_root(kind) {
            self.rollups(ws, provider, &[], &[(&linked, account)], &mut writes).await?;
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

/// A root whose children's sum may have changed.
struct Rollup<'a> {
    account: &'a AccountId,
    /// Its children stored now, each with its state before.
    changed: Vec<(&'a ProviderObject, Option<&'a ProviderObject>)>,
    /// The root was just matched: its sum is told whatever it was.
    matched: bool,
}

impl<'a> Rollup<'a> {
    fn new(account: &'a AccountId) -> Rollup<'a> {
        Rollup { account, changed: Vec::new(), matched: false }
    }
}

/// A provider object as just seen: not matched yet, stored now.
pub(crate) fn seen(
    kind: String,
    object_id: String,
    parent_id: Option<String>,
    version: i64,
    label: String,
    payload: Value,
) -> ProviderObject {
    ProviderObject {
        kind,
        object_id,
        parent_id,
        version,
        account_id: None,
        matched_by: None,
        label,
        payload,
        updated_at: Utc::now(),
    }
}

/// A root's traits, told only when they differ from the state stored before (a backfill
/// reads every root anew).
pub(crate) fn changed_traits(
    object: &ProviderObject,
    previous: Option<&ProviderObject>,
    traits: fn(&ProviderObject) -> Map<String, Value>,
    at: Timestamp,
) -> Option<Output> {
    let now = traits(object);
    previous.is_none_or(|prev| traits(prev) != now).then_some(Output::AccountTraits { traits: now, at })
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
