//! The delivery loop: takes due outbox messages, sends each through its channel, records the
//! attempt, and schedules the next one (exponential backoff with jitter over about three
//! days, `Retry-After` honoured) or makes it a dead letter an operator can replay.
//!
//! Email goes in two steps so that a crash cannot send twice: the message is written to the
//! relay up to the final `.` of its data, a line goes to the hand-over journal (one `write`,
//! with nothing else run in between), the outbox row is marked handed over (a commit), and
//! only then is the relay's answer read. A crash after the line leaves the email counted as
//! sent ([`Deliverer::recover`] marks it at the next start) and never sent again; a crash
//! before the data's end leaves the row held, taken again when its lease ends, the attempt
//! recorded as interrupted (the relay drops a message whose data did not end). Only a crash
//! in the microseconds between the final `.` leaving and the journal's line can make a second
//! copy (RFC 1047's window), and it carries the same `Message-ID`, as a webhook's retry
//! carries the same `webhook-id` for its receiver to drop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::{Timestamp, WorkspaceId};
use futures_util::StreamExt;
use outbox::Outcome;
use outbox::email::{Email, Mailbox, Smtp};
use outbox::http::HttpClient;
use outbox::retry::RateLimit;
use outbox::slack::{Slack, SlackMessage};
use outbox::template::Template;
use outbox::unsubscribe::UnsubscribeKey;
use outbox::webhook::{Secret, Webhook};
use serde_json::{Value, json};
use store::{Attempt, Channel, MessageStatus, MessageUpdate, OutboxMessage, Store};

use crate::Result;

/// The setting holding a workspace's email templates, by name.
pub const TEMPLATES: &str = "email.templates";
/// The setting holding a workspace's sender: `{"name": ..., "address": ...}`.
pub const SENDER: &str = "email.from";
/// The settings holding secrets made on first use.
pub const UNSUBSCRIBE_SECRET: &str = "email.unsubscribe_secret";
pub const WEBHOOK_SECRET: &str = "webhooks.signing_secret";

/// How messages leave: the relay for email, the HTTP client's limits, how long a deliverer
/// holds a message, and the rates per channel.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// None: emails wait (pending) until a relay is configured.
    pub smtp: Option<outbox::email::SmtpConfig>,
    /// The sender when a workspace has none of its own.
    pub from: Option<String>,
    /// Where Steward is reached from outside, for unsubscribe links (`https://cs.example.com`).
    pub public_url: Option<String>,
    pub http: outbox::http::HttpConfig,
    /// How long a deliverer holds a message it took; another may take it after.
    pub lease: Duration,
    /// Messages taken per round.
    pub batch: usize,
    /// Messages sent at once.
    pub parallel: usize,
    /// Where the hand-over journal is kept (see [`Journal`]); none: hand-overs are recorded
    /// in the store only.
    pub journal: Option<std::path::PathBuf>,
    /// Messages per second and burst, per workspace and channel.
    pub email_rate: (f64, u32),
    pub slack_rate: (f64, u32),
    pub webhook_rate: (f64, u32),
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            smtp: None,
            from: None,
            public_url: None,
            journal: None,
            http: outbox::http::HttpConfig::default(),
            lease: Duration::from_secs(60),
            batch: 200,
            parallel: 8,
            email_rate: (50.0, 100),
            slack_rate: (1.0, 5),
            webhook_rate: (50.0, 100),
        }
    }
}

pub struct Deliverer {
    store: Arc<dyn Store>,
    config: DeliveryConfig,
    smtp: Option<Smtp>,
    http: HttpClient,
    limits: Mutex<HashMap<(WorkspaceId, Channel), RateLimit>>,
    started: Instant,
    journal: Option<Journal>,
}

/// What a round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub taken: usize,
    pub delivered: usize,
    pub retried: usize,
    pub dead: usize,
    pub suppressed: usize,
}

/// What one message came to, with the row's new state.
struct Done {
    update: MessageUpdate,
    block: Option<String>,
}

impl Deliverer {
    pub fn new(store: Arc<dyn Store>, config: DeliveryConfig) -> Result<Deliverer> {
        let smtp = match &config.smtp {
            Some(c) => Some(Smtp::new(c.clone()).map_err(|e| crate::Error::Refused(format!("email relay: {e}")))?),
            None => None,
        };
        let http = HttpClient::new(&config.http).map_err(|e| crate::Error::Refused(format!("HTTP client: {e}")))?;
        let journal = match &config.journal {
            Some(path) => Some(
                Journal::open(path)
                    .map_err(|e| crate::Error::Refused(format!("the hand-over journal {}: {e}", path.display())))?,
            ),
            None => None,
        };
        Ok(Deliverer {
            store,
            config,
            smtp,
            http,
            limits: Mutex::new(HashMap::new()),
            started: Instant::now(),
            journal,
        })
    }

    /// Marks handed over the messages the journal says were handed to the relay before a
    /// crash could record it in the store, then empties the journal. Run before delivering.
    pub async fn recover(&self) -> Result<usize> {
        let Some(journal) = &self.journal else { return Ok(0) };
        let entries =
            journal.entries().map_err(|e| crate::Error::Refused(format!("reading the hand-over journal: {e}")))?;
        let mut marked = 0;
        let now = Utc::now();
        for (ws, id) in entries {
            let Ok(ws) = WorkspaceId::parse(&ws) else { continue };
            let Some(m) = self.store.get_message(&ws, &id).await? else { continue };
            if m.status != MessageStatus::Sending {
                continue;
            }
            let update = finish(&m, MessageStatus::Handed, now, Some(RECOVERED.into()), None);
            let detail = RECOVERED.to_owned();
            let update = with_attempt(update, &m, "unconfirmed", None, detail, Instant::now(), now);
            self.store.update_messages(&ws, &[update], now).await?;
            marked += 1;
        }
        journal.clear().map_err(|e| crate::Error::Refused(format!("emptying the hand-over journal: {e}")))?;
        if marked > 0 {
            tracing::info!(marked, "messages handed over before a crash are counted as sent");
        }
        Ok(marked)
    }

    /// Takes the messages due at `now` and delivers them; retries are scheduled from `now`.
    pub async fn deliver_due(&self, ws: &WorkspaceId, now: Timestamp) -> Result<Round> {
        let lease = now + chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::seconds(60));
        let mut taken = self.store.claim_messages(ws, now, lease, self.config.batch).await?;
        if self.smtp.is_none() {
            // Emails stay pending until a relay is configured; the others go.
            let (email, rest): (Vec<_>, Vec<_>) = taken.into_iter().partition(|m| m.channel == Channel::Email);
            let back: Vec<MessageUpdate> = email
                .iter()
                .map(|m| MessageUpdate {
                    message_id: m.message_id.clone(),
                    status: MessageStatus::Pending,
                    attempts: m.attempts - 1,
                    next_attempt_at: Some(now + chrono::Duration::minutes(1)),
                    last_error: Some("no email relay is configured".into()),
                    delivered_at: None,
                    attempt: None,
                })
                .collect();
            if !back.is_empty() {
                self.store.update_messages(ws, &back, now).await?;
            }
            taken = rest;
        }
        let mut round = Round { taken: taken.len(), ..Round::default() };
        if taken.is_empty() {
            return Ok(round);
        }
        let blocked: HashMap<String, String> =
            self.store.blocked_endpoints(ws).await?.into_iter().map(|(e, r, _)| (e.to_lowercase(), r)).collect();
        let context = Arc::new(self.workspace_context(ws, now).await?);
        let outcomes: Vec<Result<Done>> = futures_util::stream::iter(taken.into_iter().map(|m| {
            let blocked = blocked.get(&m.endpoint.to_lowercase()).cloned();
            let context = context.clone();
            async move { self.deliver_one(ws, m, blocked, &context, now).await }
        }))
        .buffer_unordered(self.config.parallel.max(1))
        .collect()
        .await;
        let mut updates = Vec::new();
        for done in outcomes {
            let done = done?;
            if let Some(reason) = &done.block {
                let endpoint = self.store.get_message(ws, &done.update.message_id).await?.map(|m| m.endpoint);
                if let Some(endpoint) = endpoint {
                    self.store.block_endpoint(ws, &endpoint, reason, now).await?;
                }
            }
            match done.update.status {
                MessageStatus::Delivered | MessageStatus::Handed => round.delivered += 1,
                MessageStatus::Pending => round.retried += 1,
                MessageStatus::Dead => round.dead += 1,
                MessageStatus::Suppressed => round.suppressed += 1,
                MessageStatus::Sending => {}
            }
            updates.push(done.update);
        }
        self.store.update_messages(ws, &updates, now).await?;
        Ok(round)
    }

    /// What every message of the workspace needs: its templates, sender and secrets.
    async fn workspace_context(&self, ws: &WorkspaceId, now: Timestamp) -> Result<WorkspaceContext> {
        let templates = match self.store.get_setting(ws, TEMPLATES).await? {
            Some(Value::Object(m)) => {
                m.into_iter().filter_map(|(k, v)| serde_json::from_value::<Template>(v).ok().map(|t| (k, t))).collect()
            }
            _ => HashMap::new(),
        };
        let sender = match self.store.get_setting(ws, SENDER).await? {
            Some(v) => v["address"].as_str().map(|a| (v["name"].as_str().map(str::to_owned), a.to_owned())),
            None => None,
        }
        .or_else(|| self.config.from.clone().map(|a| (None, a)));
        let unsubscribe = self.secret(ws, UNSUBSCRIBE_SECRET, now).await?;
        let unsubscribe = UnsubscribeKey::new(&unsubscribe).ok();
        let webhook =
            Secret::parse(&format!("whsec_{}", base64_std(&self.secret(ws, WEBHOOK_SECRET, now).await?))).ok();
        Ok(WorkspaceContext { templates, sender, unsubscribe, webhook })
    }

    /// A workspace's secret of that name, made on first use (32 random bytes).
    async fn secret(&self, ws: &WorkspaceId, name: &str, now: Timestamp) -> Result<Vec<u8>> {
        workspace_secret(&self.store, ws, name, now).await
    }

    async fn deliver_one(
        &self,
        ws: &WorkspaceId,
        m: OutboxMessage,
        blocked: Option<String>,
        cx: &WorkspaceContext,
        now: Timestamp,
    ) -> Result<Done> {
        let started = Instant::now();
        let attempt = m.attempts;
        if let Some(reason) = blocked {
            let update =
                finish(&m, MessageStatus::Suppressed, now, Some(format!("the endpoint is blocked: {reason}")), None);
            return Ok(Done {
                update: with_attempt(update, &m, "suppressed", None, reason, started, now),
                block: None,
            });
        }
        self.wait_for_token(ws, m.channel).await;
        let outcome = match m.channel {
            Channel::Email => match self.email(ws, &m, cx) {
                Err(outcome) => outcome,
                Ok(email) => match &self.smtp {
                    None => Outcome::Retry { status: None, retry_after: None, reason: "no email relay".into() },
                    Some(smtp) => match smtp.hand_over(&email).await {
                        Err(outcome) => outcome,
                        Ok(handed) => {
                            // Counted as sent from here on: a crash now does not send it again.
                            // The journal line is written before anything else can run (no
                            // await between the data's end and it); the store's mark follows.
                            if let Some(j) = &self.journal {
                                j.record(ws, &m.message_id);
                            }
                            let mark = finish(&m, MessageStatus::Handed, now, None, None);
                            let marked = self.store.update_messages(ws, &[mark], now).await;
                            if let Some(j) = &self.journal {
                                j.done();
                            }
                            marked?;
                            match handed.confirm().await {
                                // No answer at all: it may have arrived; it stays handed over,
                                // visible, and is not sent again.
                                Outcome::Retry { status: None, reason, .. } => {
                                    let update = finish(
                                        &m,
                                        MessageStatus::Handed,
                                        now,
                                        Some(format!(
                                            "no answer after the message was handed over ({reason}); it may have arrived"
                                        )),
                                        None,
                                    );
                                    return Ok(Done {
                                        update: with_attempt(update, &m, "unconfirmed", None, reason, started, now),
                                        block: None,
                                    });
                                }
                                other => other,
                            }
                        }
                    },
                },
            },
            Channel::Slack => {
                let text = render_text(m.payload["text"].as_str().unwrap_or(""), &m.payload["context"]);
                match text {
                    Ok(text) => self.slack().deliver(&m.endpoint, &SlackMessage { text, blocks: None }).await,
                    Err(e) => Outcome::Rejected { status: None, reason: e },
                }
            }
            Channel::Webhook => match &cx.webhook {
                None => {
                    Outcome::Rejected { status: None, reason: "the workspace has no webhook signing secret".into() }
                }
                Some(secret) => {
                    let body = serde_json::to_vec(&m.payload["body"]).unwrap_or_default();
                    Webhook::new(self.http.clone(), vec![secret.clone()])
                        .deliver(&m.endpoint, &m.message_id, &body)
                        .await
                }
            },
        };
        Ok(self.outcome(&m, outcome, attempt, started, now))
    }

    fn outcome(&self, m: &OutboxMessage, outcome: Outcome, attempt: i64, started: Instant, now: Timestamp) -> Done {
        let status = outcome.status().map(i64::from);
        match outcome {
            Outcome::Delivered { detail, .. } => {
                let update = finish(m, MessageStatus::Delivered, now, None, Some(now));
                Done { update: with_attempt(update, m, "delivered", status, detail, started, now), block: None }
            }
            Outcome::Retry { retry_after, reason, .. } => {
                let jitter = jitter(&m.message_id, attempt);
                let made = u32::try_from(attempt - m.retry_base).unwrap_or(u32::MAX);
                match outbox::retry::next_delay(made, retry_after, jitter) {
                    Some(delay) => {
                        let at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::days(1));
                        let mut update = finish(m, MessageStatus::Pending, now, Some(reason.clone()), None);
                        update.next_attempt_at = Some(at);
                        Done { update: with_attempt(update, m, "retry", status, reason, started, now), block: None }
                    }
                    None => {
                        let last = format!("gave up after {attempt} attempts: {reason}");
                        let update = finish(m, MessageStatus::Dead, now, Some(last), None);
                        Done { update: with_attempt(update, m, "retry", status, reason, started, now), block: None }
                    }
                }
            }
            Outcome::Gone { reason, .. } => {
                let update = finish(m, MessageStatus::Dead, now, Some(format!("the endpoint is gone: {reason}")), None);
                Done {
                    update: with_attempt(update, m, "gone", status, reason.clone(), started, now),
                    block: Some(reason),
                }
            }
            Outcome::Rejected { reason, .. } => {
                let update = finish(m, MessageStatus::Dead, now, Some(reason.clone()), None);
                Done { update: with_attempt(update, m, "rejected", status, reason, started, now), block: None }
            }
        }
    }

    fn slack(&self) -> Slack {
        Slack::new(self.http.clone())
    }

    /// Builds the email of a message: its template filled with the context it was decided
    /// with, and an unsubscribe link. A message that cannot be built is rejected (a dead
    /// letter, replayable once the template is fixed).
    fn email(&self, ws: &WorkspaceId, m: &OutboxMessage, cx: &WorkspaceContext) -> Result<Email, Outcome> {
        let reject = |reason: String| Outcome::Rejected { status: None, reason };
        let name = m.payload["template"].as_str().unwrap_or("");
        let template =
            cx.templates.get(name).ok_or_else(|| reject(format!("the workspace has no email template {name:?}")))?;
        let Some((from_name, from)) = &cx.sender else {
            return Err(reject("the workspace has no sender address (setting email.from)".into()));
        };
        let to = m.endpoint.as_str();
        let unsubscribe = match (&self.config.public_url, &cx.unsubscribe) {
            (Some(base), Some(key)) => {
                let token = outbox::unsubscribe::unsubscribe_token(key, ws.as_str(), &to.to_lowercase());
                Some(format!(
                    "{}/unsubscribe/{}?email={}&token={token}",
                    base.trim_end_matches('/'),
                    ws.as_str(),
                    percent(to)
                ))
            }
            _ => None,
        };
        let mut context = m.payload["context"].clone();
        if !context.is_object() {
            context = json!({});
        }
        context["unsubscribe_url"] = json!(unsubscribe);
        let rendered =
            outbox::template::render(template, &context).map_err(|e| reject(format!("template {name:?}: {e}")))?;
        let domain = from.rsplit_once('@').map(|(_, d)| d).unwrap_or("localhost");
        Ok(Email {
            message_id: outbox::email::message_id(&m.message_id, domain),
            from: Mailbox::new(from_name.as_deref(), from).map_err(|e| reject(format!("sender: {e}")))?,
            to: Mailbox::new(None, to).map_err(|e| reject(format!("recipient: {e}")))?,
            subject: rendered.subject,
            html: rendered.html,
            text: rendered.text,
            // One-click unsubscribe headers need HTTPS (RFC 8058); the link in the body works either way.
            list_unsubscribe: unsubscribe.filter(|u| u.starts_with("https://")),
            headers: Vec::new(),
        })
    }

    /// Waits for the channel's rate limit to let one more message go.
    async fn wait_for_token(&self, ws: &WorkspaceId, channel: Channel) {
        loop {
            let now_ms = self.started.elapsed().as_millis() as u64;
            let wait = {
                let mut limits = self.limits.lock().expect("limits lock");
                let (rate, burst) = match channel {
                    Channel::Email => self.config.email_rate,
                    Channel::Slack => self.config.slack_rate,
                    Channel::Webhook => self.config.webhook_rate,
                };
                let limit = limits.entry((ws.clone(), channel)).or_insert_with(|| {
                    RateLimit::new(rate, burst, now_ms)
                        .unwrap_or_else(|_| RateLimit::new(1.0, 1, now_ms).expect("a valid limit"))
                });
                match limit.try_acquire(now_ms) {
                    Ok(()) => return,
                    Err(wait) => wait,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Delivers every workspace's due messages every `every` until `shutdown`, and again at
    /// once while a round finds a full batch.
    pub async fn run(self: Arc<Self>, every: Duration, shutdown: tokio_util::sync::CancellationToken) {
        if let Err(e) = self.recover().await {
            tracing::error!(error = %e, "the hand-over journal could not be read; deliveries wait");
            return;
        }
        loop {
            let mut busy = false;
            match self.store.list_workspaces().await {
                Ok(workspaces) => {
                    for w in workspaces {
                        match self.deliver_due(&w.workspace_id, Utc::now()).await {
                            Ok(r) => busy |= r.taken >= self.config.batch,
                            Err(e) => {
                                tracing::warn!(workspace = %w.workspace_id, error = %e, "a delivery round failed")
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "deliveries could not list the workspaces"),
            }
            if busy && !shutdown.is_cancelled() {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

const RECOVERED: &str = "handed to the relay before a crash; its answer was not read";

/// The hand-over journal: one line per email handed to the relay (`workspace<TAB>message`),
/// appended with one `write` the moment the data's final `.` is written and before the store
/// can record it. A process killed then leaves the line, which [`Deliverer::recover`] turns
/// into the store's mark at the next start, so the email is not sent again. Emptied when no
/// hand-over is between its line and its mark and it has grown past a megabyte.
struct Journal {
    state: Mutex<JournalState>,
    path: std::path::PathBuf,
}

struct JournalState {
    file: std::fs::File,
    size: u64,
    in_flight: usize,
}

const JOURNAL_LIMIT: u64 = 1 << 20;

impl Journal {
    fn open(path: &std::path::Path) -> std::io::Result<Journal> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Journal { state: Mutex::new(JournalState { file, size, in_flight: 0 }), path: path.to_owned() })
    }

    fn record(&self, ws: &WorkspaceId, id: &str) {
        use std::io::Write;
        let line = format!("{}\t{id}\n", ws.as_str());
        let mut s = self.state.lock().expect("journal lock");
        s.in_flight += 1;
        match s.file.write_all(line.as_bytes()) {
            Ok(()) => s.size += line.len() as u64,
            Err(e) => tracing::error!(error = %e, "writing the hand-over journal failed"),
        }
    }

    fn done(&self) {
        let mut s = self.state.lock().expect("journal lock");
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 && s.size > JOURNAL_LIMIT {
            match s.file.set_len(0) {
                Ok(()) => s.size = 0,
                Err(e) => tracing::warn!(error = %e, "emptying the hand-over journal failed"),
            }
        }
    }

    fn entries(&self) -> std::io::Result<Vec<(String, String)>> {
        let text = std::fs::read_to_string(&self.path)?;
        Ok(text.lines().filter_map(|l| l.split_once('\t')).map(|(ws, id)| (ws.to_owned(), id.to_owned())).collect())
    }

    fn clear(&self) -> std::io::Result<()> {
        let mut s = self.state.lock().expect("journal lock");
        if s.in_flight == 0 {
            s.file.set_len(0)?;
            s.size = 0;
        }
        Ok(())
    }
}

struct WorkspaceContext {
    templates: HashMap<String, Template>,
    sender: Option<(Option<String>, String)>,
    unsubscribe: Option<UnsubscribeKey>,
    webhook: Option<Secret>,
}

/// A workspace's secret of that name, made on first use (32 random bytes, kept base64 in the
/// workspace's settings).
pub async fn workspace_secret(store: &Arc<dyn Store>, ws: &WorkspaceId, name: &str, now: Timestamp) -> Result<Vec<u8>> {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    if let Some(v) = store.get_setting(ws, name).await?
        && let Some(bytes) = v.as_str().and_then(|s| engine.decode(s).ok())
    {
        return Ok(bytes);
    }
    let bytes = domain::random_bytes::<32>().to_vec();
    store.put_setting(ws, name, &json!(engine.encode(&bytes)), now).await?;
    Ok(bytes)
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn render_text(text: &str, context: &Value) -> Result<String, String> {
    let t = Template { subject: String::new(), html: None, text: text.to_owned() };
    outbox::template::render(&t, context).map(|r| r.text).map_err(|e| e.to_string())
}

fn finish(
    m: &OutboxMessage,
    status: MessageStatus,
    _now: Timestamp,
    last_error: Option<String>,
    delivered_at: Option<Timestamp>,
) -> MessageUpdate {
    MessageUpdate {
        message_id: m.message_id.clone(),
        status,
        attempts: m.attempts,
        next_attempt_at: None,
        last_error,
        delivered_at,
        attempt: None,
    }
}

fn with_attempt(
    mut update: MessageUpdate,
    m: &OutboxMessage,
    outcome: &str,
    status: Option<i64>,
    detail: String,
    started: Instant,
    now: Timestamp,
) -> MessageUpdate {
    update.attempt = Some(Attempt {
        message_id: m.message_id.clone(),
        attempt: m.attempts,
        at: now,
        outcome: outcome.to_owned(),
        status,
        detail,
        duration_ms: started.elapsed().as_millis() as i64,
    });
    update
}

/// A fraction in [0, 1) that differs between messages and attempts, so retries spread out.
fn jitter(id: &str, attempt: i64) -> f64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{id}/{attempt}").as_bytes());
    f64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]])) / (f64::from(u32::MAX) + 1.0)
}

/// An address made safe for a URL's query.
fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
