//! Taking a run's steps: from the step it is at, as far as it can go now (to a wait, an end,
//! or a step that waits for an event), with what each step decides.

use std::collections::HashMap;

use futures_util::StreamExt;

use chrono::Duration;
use domain::{AccountId, Timestamp, WorkspaceId};
use journeys::{Action, Journey, Subject};
use serde_json::{Value, json};
use store::{
    Channel, MessageStatus, OutboxMessage, PageRequest, Run, RunStatus, RunUpdate, StepRecord, Task, TaskStatus,
};

use crate::{Result, Runner, Tick, kind_of, zone};

/// Steps one run may take in one go: a loop of steps that never waits stops here and goes
/// on at the next tick.
const MAX_STEPS: usize = 64;
/// The setting holding the workspace's Slack incoming webhook URL.
pub const SLACK_URL: &str = "slack.webhook_url";

/// Contexts read at once before a batch's steps are taken.
const CONTEXT_READS_AT_ONCE: usize = 16;

/// The key of a run's context: its subject and account.
fn context_key(r: &Run) -> String {
    format!("{}\u{1f}{}", r.subject_id, r.account_id.as_deref().unwrap_or(""))
}

/// Why a run is being stepped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Its timer is due (or it just started).
    Due,
    /// The event it waited for arrived.
    Event,
}

/// What the steps of one run read about its subject, read once when first needed.
#[derive(Default)]
pub(crate) struct Subjects {
    context: HashMap<String, Value>,
}

impl Runner {
    /// Takes the steps of `runs` as of `now` and stores the outcome of all of them at once.
    pub(crate) async fn step_runs(&self, ws: &WorkspaceId, runs: Vec<Run>, why: Why, now: Timestamp) -> Result<Tick> {
        let mut updates = Vec::with_capacity(runs.len());
        let mut subjects = Subjects::default();
        // Goals and exit conditions, tested for all the runs of one journey version at once.
        let mut by_version: HashMap<(String, i64), Vec<usize>> = HashMap::new();
        for (i, r) in runs.iter().enumerate() {
            by_version.entry((r.journey_id.clone(), r.version)).or_default().push(i);
        }
        let mut ends: HashMap<usize, (RunStatus, &'static str)> = HashMap::new();
        let mut definitions = HashMap::new();
        for ((journey_id, version), idx) in &by_version {
            let j = match self.definition(ws, journey_id, *version).await {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!(workspace = %ws, journey = %journey_id, version, error = %e, "a run's journey version cannot be read; its runs fail");
                    for i in idx {
                        ends.insert(*i, (RunStatus::Failed, "definition"));
                    }
                    continue;
                }
            };
            for (condition, status, outcome) in
                [(&j.goal, RunStatus::Converted, "goal"), (&j.exit_when, RunStatus::Exited, "exit")]
            {
                let Some(condition) = condition else { continue };
                let open: Vec<usize> = idx.iter().copied().filter(|i| !ends.contains_key(i)).collect();
                let ids: Vec<String> = open.iter().map(|i| runs[*i].subject_id.clone()).collect();
                let holds = self.membership.holds(ws, kind_of(j.subject), condition, &ids, now).await?;
                for (i, h) in open.into_iter().zip(holds) {
                    if h {
                        ends.insert(i, (status, outcome));
                    }
                }
            }
            definitions.insert((journey_id.clone(), *version), j);
        }
        self.prefetch_contexts(ws, &runs, &definitions, &mut subjects).await?;
        let mut transitions = 0;
        for (i, run) in runs.into_iter().enumerate() {
            let update = match (ends.get(&i), definitions.get(&(run.journey_id.clone(), run.version))) {
                (Some((status, outcome)), _) => end_early(&run, *status, outcome, now),
                (None, Some(j)) => self.take_steps(ws, j, run, why, now, &mut subjects).await?,
                (None, None) => end_early(&run, RunStatus::Failed, "definition", now),
            };
            transitions += update.steps.len();
            updates.push(update);
        }
        let applied = self.store.advance_runs(ws, &updates).await?;
        let advanced = applied.iter().filter(|a| **a).count();
        let transitions = if advanced == updates.len() {
            transitions
        } else {
            updates.iter().zip(&applied).filter(|(_, a)| **a).map(|(u, _)| u.steps.len()).sum()
        };
        Ok(Tick { started: 0, advanced, transitions })
    }

    pub(crate) async fn take_steps(
        &self,
        ws: &WorkspaceId,
        j: &Journey,
        run: Run,
        why: Why,
        now: Timestamp,
        subjects: &mut Subjects,
    ) -> Result<RunUpdate> {
        let expected_seq = run.seq;
        let mut r = run;
        let (mut steps, mut messages, mut tasks) = (Vec::new(), Vec::new(), Vec::new());
        let mut why = why;
        r.updated_at = now;
        for _ in 0..MAX_STEPS {
            let Some(step_id) = r.step.clone() else {
                finish(&mut r, RunStatus::Completed, now);
                break;
            };
            let Some(idx) = j.steps.iter().position(|s| s.id == step_id) else {
                // A version's steps never change; a run at an unknown step is corrupt.
                finish(&mut r, RunStatus::Failed, now);
                break;
            };
            let step = &j.steps[idx];
            let following = step.next.clone().or_else(|| j.steps.get(idx + 1).map(|s| s.id.clone()));
            let key = format!("{}:{}:{}", r.run_id, step.id, r.seq);
            let mut stop = false;
            let (outcome, to) = match &step.action {
                Action::Email { template, to } => {
                    let context = self.context(ws, j, &r, subjects).await?;
                    let recipients = self.recipients(ws, &r, to).await?;
                    if recipients.is_empty() {
                        ("no_recipient".to_owned(), following)
                    } else {
                        let mut outcome = "sent";
                        for (n, (address, person_id)) in recipients.into_iter().enumerate() {
                            if let (Some(cap), Some(person)) = (j.frequency_cap, &person_id) {
                                let since = now - Duration::seconds(cap.per);
                                let sent = self.store.messages_to(ws, person, Channel::Email, since).await?;
                                if sent >= u64::from(cap.max) {
                                    outcome = "capped";
                                    continue;
                                }
                            }
                            let payload = json!({"template": template, "to": address, "context": context});
                            let id = if n == 0 { key.clone() } else { format!("{key}:{n}") };
                            let at = self.quiet_end(ws, j, person_id.as_deref(), now).await?;
                            messages.push(message(
                                id,
                                Channel::Email,
                                address,
                                payload,
                                j,
                                &r,
                                &step.id,
                                person_id,
                                at,
                                now,
                            ));
                        }
                        (outcome.to_owned(), following)
                    }
                }
                Action::Slack { text, channel } => match self.store.get_setting(ws, SLACK_URL).await? {
                    Some(Value::String(url)) => {
                        let context = self.context(ws, j, &r, subjects).await?;
                        let payload = json!({"text": text, "channel": channel, "context": context});
                        let at = self.quiet_end(ws, j, None, now).await?;
                        messages.push(message(key, Channel::Slack, url, payload, j, &r, &step.id, None, at, now));
                        ("sent".to_owned(), following)
                    }
                    _ => ("no_endpoint".to_owned(), following),
                },
                Action::Webhook { url, body } => {
                    let context = self.context(ws, j, &r, subjects).await?;
                    let body = body.clone().unwrap_or_else(|| {
                        json!({"type": "journey.step", "journey_id": r.journey_id, "run_id": r.run_id,
                               "step_id": step.id, "subject_id": r.subject_id, "account_id": r.account_id,
                               "context": context})
                    });
                    let payload = json!({"body": body});
                    messages.push(message(
                        key,
                        Channel::Webhook,
                        url.clone(),
                        payload,
                        j,
                        &r,
                        &step.id,
                        None,
                        now,
                        now,
                    ));
                    ("sent".to_owned(), following)
                }
                Action::Task { title, assignee, priority, due } => {
                    tasks.push(Task {
                        task_id: format!("task_{}", short_hash(&key)),
                        title: title.clone(),
                        body: Some(format!("From the journey {:?}, for {}.", j.name, r.subject_id)),
                        assignee: assignee.clone(),
                        priority: priority.clone(),
                        due_at: due.map(|s| now + Duration::seconds(s)),
                        status: TaskStatus::Open,
                        account_id: r.account_id.clone(),
                        person_id: (j.subject == Subject::People).then(|| r.subject_id.clone()),
                        journey_id: Some(r.journey_id.clone()),
                        run_id: Some(r.run_id.clone()),
                        created_at: now,
                        updated_at: now,
                        closed_by: None,
                    });
                    ("created".to_owned(), following)
                }
                Action::Wait { seconds } => {
                    r.wake_at = Some(now + Duration::seconds(*seconds));
                    stop = true;
                    ("waited".to_owned(), following)
                }
                Action::WaitFor { event, key: prop, timeout, on_timeout } => {
                    if r.waiting.is_none() {
                        // Waits from now: for the event, keyed to the trigger's property.
                        let value = prop.as_ref().and_then(|p| r.context["trigger"]["data"]["properties"].get(p));
                        r.waiting = Some(store::journeys::wait_key(event, &r.subject_id, value));
                        r.wake_at = Some(now + Duration::seconds(*timeout));
                        stop = true;
                        ("waiting".to_owned(), Some(step.id.clone()))
                    } else if why == Why::Event {
                        r.waiting = None;
                        ("received".to_owned(), following)
                    } else {
                        r.waiting = None;
                        ("timeout".to_owned(), Some(on_timeout.clone()))
                    }
                }
                Action::Branch { condition, then, otherwise } => {
                    let holds = self
                        .membership
                        .holds(ws, kind_of(j.subject), condition, std::slice::from_ref(&r.subject_id), now)
                        .await?;
                    if holds.first() == Some(&true) {
                        ("then".to_owned(), Some(then.clone()))
                    } else {
                        ("else".to_owned(), Some(otherwise.clone()))
                    }
                }
                Action::Split { arms } => {
                    // The same run always takes the same arm, however often the step runs.
                    let total: u64 = arms.iter().map(|(w, _)| u64::from(*w)).sum();
                    let mut pick = short_hash(&key) % total.max(1);
                    let mut chosen = arms.len() - 1;
                    for (n, (w, _)) in arms.iter().enumerate() {
                        if pick < u64::from(*w) {
                            chosen = n;
                            break;
                        }
                        pick -= u64::from(*w);
                    }
                    (format!("arm:{}", chosen + 1), Some(arms[chosen].1.clone()))
                }
                Action::SetTrait { key: trait_key, value } => {
                    self.set_trait(ws, j, &r, &key, trait_key, value, now).await?;
                    ("set".to_owned(), following)
                }
                Action::End => ("ended".to_owned(), None),
            };
            steps.push(StepRecord {
                run_id: r.run_id.clone(),
                journey_id: r.journey_id.clone(),
                seq: r.seq,
                step_id: step.id.clone(),
                at: now,
                outcome,
            });
            r.seq += 1;
            r.step = to;
            why = Why::Due;
            if r.step.is_none() {
                finish(&mut r, RunStatus::Completed, now);
                break;
            }
            if stop {
                break;
            }
            r.wake_at = Some(now);
        }
        if r.status == RunStatus::Active && r.waiting.is_none() && r.wake_at.is_none_or(|w| w <= now) {
            // Stopped by the step limit: it goes on at the next tick.
            r.wake_at = Some(now);
        }
        Ok(RunUpdate { run: r, expected_seq, steps, messages, tasks })
    }

    /// What a message's template may name: the person, the account, its scores and the run.
    /// When a message to `person_id` decided at `now` may go: after the journey's quiet
    /// hours in the person's time zone (their `timezone` trait, an IANA name as Segment's
    /// `context.timezone` gives), else the workspace's, else UTC.
    async fn quiet_end(
        &self,
        ws: &WorkspaceId,
        j: &Journey,
        person_id: Option<&str>,
        now: Timestamp,
    ) -> Result<Timestamp> {
        if j.quiet_hours.is_none() {
            return Ok(now);
        }
        let mut tz = None;
        if let Some(p) = person_id
            && let Some(person) = self.store.get_person(ws, p).await?
        {
            tz = person.traits["timezone"].as_str().and_then(zone::named);
        }
        let tz = match tz {
            Some(tz) => tz,
            None => zone::of_workspace(self.store.as_ref(), ws).await?,
        };
        Ok(zone::quiet_until(now, j.quiet_hours, &tz))
    }

    async fn context(&self, ws: &WorkspaceId, j: &Journey, r: &Run, subjects: &mut Subjects) -> Result<Value> {
        let key = context_key(r);
        if let Some(v) = subjects.context.get(&key) {
            return Ok(with_run(v.clone(), j, r));
        }
        let cx = self.load_context(ws, j.subject, &r.subject_id, r.account_id.as_deref()).await?;
        subjects.context.insert(key, cx.clone());
        Ok(with_run(cx, j, r))
    }

    /// The person (for a journey of people), the account and its score, as templates see them.
    async fn load_context(
        &self,
        ws: &WorkspaceId,
        subject: Subject,
        subject_id: &str,
        account_id: Option<&str>,
    ) -> Result<Value> {
        let mut cx = json!({});
        if subject == Subject::People
            && let Some(p) = self.store.get_person(ws, subject_id).await?
        {
            cx["person"] = person_value(&p.person_id, p.user_id.as_deref(), &p.traits);
        }
        if let Some(id) = account_id.and_then(|a| AccountId::parse(a).ok()) {
            let (account, score) =
                tokio::try_join!(self.store.get_account(ws, &id), self.store.account_score(ws, &id))?;
            if let Some(a) = account {
                let mut account = match a.traits.clone() {
                    Value::Object(m) => Value::Object(m),
                    _ => json!({}),
                };
                account["id"] = json!(a.account_id.as_str());
                account["name"] = json!(a.name.clone().unwrap_or_else(|| a.account_id.to_string()));
                cx["account"] = account;
            }
            if let Some(s) = score {
                cx["score"] = json!({
                    "health": s.health.round(), "band": s.band, "churn_30d": s.churn_30d,
                    "churn_90d": s.churn_90d, "expansion": s.expansion,
                });
            }
        }
        Ok(cx)
    }

    /// Reads, several at once, the context of every run in `runs` whose journey makes
    /// messages: a batch's steps then wait on no read of their own.
    async fn prefetch_contexts(
        &self,
        ws: &WorkspaceId,
        runs: &[Run],
        definitions: &HashMap<(String, i64), std::sync::Arc<Journey>>,
        subjects: &mut Subjects,
    ) -> Result<()> {
        let mut wanted: HashMap<String, (Subject, String, Option<String>)> = HashMap::new();
        for r in runs {
            let Some(j) = definitions.get(&(r.journey_id.clone(), r.version)) else { continue };
            let messages = j
                .steps
                .iter()
                .any(|s| matches!(s.action, Action::Email { .. } | Action::Slack { .. } | Action::Webhook { .. }));
            if messages {
                wanted.entry(context_key(r)).or_insert_with(|| (j.subject, r.subject_id.clone(), r.account_id.clone()));
            }
        }
        let loads = wanted.into_iter().map(|(key, (subject, id, account))| async move {
            self.load_context(ws, subject, &id, account.as_deref()).await.map(|cx| (key, cx))
        });
        let loaded: Vec<Result<(String, Value)>> =
            futures_util::stream::iter(loads).buffer_unordered(CONTEXT_READS_AT_ONCE).collect().await;
        for l in loaded {
            let (key, cx) = l?;
            subjects.context.insert(key, cx);
        }
        Ok(())
    }

    /// The addresses (and people) an email step goes to.
    async fn recipients(&self, ws: &WorkspaceId, r: &Run, to: &str) -> Result<Vec<(String, Option<String>)>> {
        if to.contains('@') {
            return Ok(vec![(to.to_owned(), None)]);
        }
        if to == "person" {
            let Some(p) = self.store.get_person(ws, &r.subject_id).await? else { return Ok(Vec::new()) };
            return Ok(email_of(&p.traits).map(|e| vec![(e, Some(p.person_id))]).unwrap_or_default());
        }
        let Some(account) = r.account_id.as_deref().and_then(|a| AccountId::parse(a).ok()) else {
            return Ok(Vec::new());
        };
        let Some(a) = self.store.get_account(ws, &account).await? else { return Ok(Vec::new()) };
        if to == "csm" {
            let csm = ["csm_email", "owner_email", "csm"]
                .iter()
                .find_map(|k| a.traits[*k].as_str().filter(|e| e.contains('@')));
            return Ok(csm.map(|e| vec![(e.to_owned(), None)]).unwrap_or_default());
        }
        let people = self.store.account_people(ws, &account, &PageRequest::first(200)).await?.items;
        let role = |p: &store::Person| p.traits["role"].as_str().map(str::to_ascii_lowercase);
        let mut admins: Vec<(String, Option<String>)> = people
            .iter()
            .filter(|p| matches!(role(p).as_deref(), Some("owner" | "admin" | "administrator")))
            .filter_map(|p| email_of(&p.traits).map(|e| (e, Some(p.person_id.clone()))))
            .collect();
        if to == "account_admins" {
            return Ok(admins);
        }
        // The account's owner: as the account says, or its owner or first admin, or else
        // the first person with an address.
        if let Some(e) = a.traits["owner_email"].as_str().filter(|e| e.contains('@')) {
            let person = people.iter().find(|p| email_of(&p.traits).as_deref() == Some(e)).map(|p| p.person_id.clone());
            return Ok(vec![(e.to_owned(), person)]);
        }
        admins.sort_by_key(|(_, p)| {
            let owner = people.iter().find(|x| Some(&x.person_id) == p.as_ref()).and_then(role);
            owner.as_deref() != Some("owner")
        });
        if let Some(first) = admins.into_iter().next() {
            return Ok(vec![first]);
        }
        Ok(people
            .iter()
            .find_map(|p| email_of(&p.traits).map(|e| (e, Some(p.person_id.clone()))))
            .into_iter()
            .collect())
    }

    /// Updates a trait of the run's subject through the event log, keyed so it happens once.
    #[allow(clippy::too_many_arguments)]
    async fn set_trait(
        &self,
        ws: &WorkspaceId,
        j: &Journey,
        r: &Run,
        key: &str,
        trait_key: &str,
        value: &Value,
        now: Timestamp,
    ) -> Result<()> {
        let message = match j.subject {
            Subject::Accounts => json!({"type": "group", "messageId": key, "userId": "steward",
                                       "groupId": r.subject_id, "traits": {trait_key: value},
                                       "timestamp": now.to_rfc3339()}),
            Subject::People => {
                let Some(p) = self.store.get_person(ws, &r.subject_id).await? else { return Ok(()) };
                let Some(user) = p.user_id else { return Ok(()) };
                json!({"type": "identify", "messageId": key, "userId": user, "traits": {trait_key: value},
                       "timestamp": now.to_rfc3339()})
            }
        };
        let body = json!({ "batch": [message] }).to_string();
        let parsed = capture::parse_batch(body.as_bytes(), now, &capture::Limits::default())
            .map_err(|e| crate::Error::Refused(format!("set_trait: {e}")))?;
        if let Some(rejected) = parsed.rejected.first() {
            return Err(crate::Error::Refused(format!("set_trait: {rejected:?}")));
        }
        self.store.append_events(ws, &parsed.events).await?;
        Ok(())
    }
}

fn with_run(mut cx: Value, j: &Journey, r: &Run) -> Value {
    cx["journey"] = json!({"id": r.journey_id, "name": j.name, "run_id": r.run_id});
    cx["trigger"] = r.context["trigger"].clone();
    cx
}

fn person_value(id: &str, user_id: Option<&str>, traits: &Value) -> Value {
    let mut p = match traits {
        Value::Object(m) => Value::Object(m.clone()),
        _ => json!({}),
    };
    p["id"] = json!(id);
    p["user_id"] = json!(user_id);
    p
}

fn email_of(traits: &Value) -> Option<String> {
    traits["email"].as_str().filter(|e| e.contains('@')).map(str::to_owned)
}

fn end_early(run: &Run, status: RunStatus, outcome: &str, now: Timestamp) -> RunUpdate {
    let mut r = run.clone();
    let steps = vec![StepRecord {
        run_id: r.run_id.clone(),
        journey_id: r.journey_id.clone(),
        seq: r.seq,
        step_id: r.step.clone().unwrap_or_else(|| "-".into()),
        at: now,
        outcome: outcome.to_owned(),
    }];
    r.seq += 1;
    r.updated_at = now;
    finish(&mut r, status, now);
    RunUpdate { expected_seq: run.seq, run: r, steps, messages: Vec::new(), tasks: Vec::new() }
}

fn finish(r: &mut Run, status: RunStatus, now: Timestamp) {
    r.status = status;
    r.step = None;
    r.wake_at = None;
    r.waiting = None;
    r.ended_at = Some(now);
}

#[allow(clippy::too_many_arguments)]
fn message(
    id: String,
    channel: Channel,
    endpoint: String,
    payload: Value,
    j: &Journey,
    r: &Run,
    step: &str,
    person_id: Option<String>,
    due: Timestamp,
    now: Timestamp,
) -> OutboxMessage {
    let person_id = person_id.or_else(|| (j.subject == Subject::People).then(|| r.subject_id.clone()));
    OutboxMessage {
        message_id: id,
        channel,
        endpoint,
        payload,
        journey_id: Some(r.journey_id.clone()),
        run_id: Some(r.run_id.clone()),
        step_id: Some(step.to_owned()),
        account_id: r.account_id.clone(),
        person_id,
        status: MessageStatus::Pending,
        attempts: 0,
        retry_base: 0,
        next_attempt_at: Some(due),
        lease_until: None,
        last_error: None,
        created_at: now,
        updated_at: now,
        delivered_at: None,
    }
}

/// A stable hash of a key: the same in every process and version.
fn short_hash(key: &str) -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest has 32 bytes"))
}
