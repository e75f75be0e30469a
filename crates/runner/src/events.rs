//! Following the event log for journeys: runs started by an event, and runs that wait for one.
//! The log is read behind processing (so every event's person is known) from a cursor kept in
//! the store; starts are keyed by the event's `messageId` and moves by the run's transition,
//! so reading an event twice after a crash does nothing twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use domain::{AccountId, EventType, IdentityKey, Timestamp, WorkspaceId};
use journeys::{Journey, Subject, Trigger};
use serde_json::{Value, json};
use store::{JourneyRecord, LogPosition, Payloads};

use crate::{Result, Runner, Tick};

/// The setting holding how far journeys have read the workspace's log.
const LOG_CURSOR: &str = "journeys.log_cursor";
/// Events read per round.
const EVENTS_PER_READ: usize = 2_000;

/// A tracked event with who sent it, as journeys see it.
struct Seen {
    message_id: String,
    name: String,
    person_id: Option<String>,
    accounts: Vec<String>,
    properties: Value,
    timestamp: Timestamp,
}

impl Runner {
    /// Reads the events processed since the last call: starts the runs they trigger and moves
    /// the runs waiting for them.
    pub(crate) async fn follow_log(
        &self,
        ws: &WorkspaceId,
        all: &[store::JourneyRecord],
        journeys: &[(JourneyRecord, Arc<Journey>)],
        now: Timestamp,
    ) -> Result<Tick> {
        let mut tick = Tick::default();
        let processed = self.store.log_status(ws).await?.cursor;
        let stored = self.store.get_setting(ws, LOG_CURSOR).await?;
        let missing = stored.is_none();
        let mut at = match stored {
            Some(v) => LogPosition { tx: v["tx"].as_i64().unwrap_or(0), seq: v["seq"].as_i64().unwrap_or(0) },
            // A workspace's journeys begin with the events after their first tick.
            None => processed,
        };
        let triggered: Vec<&(JourneyRecord, Arc<Journey>)> =
            journeys.iter().filter(|(_, j)| matches!(j.trigger, Trigger::Event { .. })).collect();
        if triggered.is_empty() && !self.any_waits_for_events(ws, all).await? {
            // No journey starts from events and no run can wait for one: the log is not read
            // again (events then start nothing, and no run is waiting for them).
            if (at < processed || missing) && !journeys.is_empty() {
                self.store.put_setting(ws, LOG_CURSOR, &json!({"tx": processed.tx, "seq": processed.seq}), now).await?;
            }
            return Ok(tick);
        }
        while at < processed {
            let batch = self.store.read_log_with(ws, at, EVENTS_PER_READ, Payloads::of(&[EventType::Track])).await?;
            let batch: Vec<_> = batch.into_iter().filter(|e| e.position <= processed).collect();
            let Some(last) = batch.last().map(|e| e.position) else { break };
            let seen = self.who(ws, &batch).await?;
            let mut starts = Vec::new();
            for e in &seen {
                for (record, j) in &triggered {
                    let Trigger::Event { name } = &j.trigger else { continue };
                    if !domain::same_event(name, &e.name) {
                        continue;
                    }
                    let subjects: Vec<String> = match j.subject {
                        Subject::Accounts => e.accounts.clone(),
                        Subject::People => e.person_id.iter().cloned().collect(),
                    };
                    for subject in subjects {
                        let trigger = json!({"kind": "event", "data": {"event": e.name,
                            "properties": e.properties, "timestamp": e.timestamp}});
                        let account = e.accounts.first().cloned();
                        let key = format!("event:{}:{subject}", e.message_id);
                        starts.push(self.new_run(record, j, &subject, account, trigger, key, now));
                    }
                }
            }
            tick.started += self.start(ws, starts).await?;
            for e in &seen {
                let keys: Vec<Value> = match &e.properties {
                    Value::Object(m) => m.values().filter(|v| !v.is_object() && !v.is_array()).cloned().collect(),
                    _ => Vec::new(),
                };
                for subject in e.accounts.iter().chain(e.person_id.iter()) {
                    tick += self.event(ws, &e.name, subject, &keys, now).await?;
                }
            }
            self.store.put_setting(ws, LOG_CURSOR, &json!({"tx": last.tx, "seq": last.seq}), now).await?;
            at = last;
        }
        if !journeys.is_empty() && self.store.get_setting(ws, LOG_CURSOR).await?.is_none() {
            self.store.put_setting(ws, LOG_CURSOR, &json!({"tx": at.tx, "seq": at.seq}), now).await?;
        }
        Ok(tick)
    }

    /// Whether a version of any journey (enabled or not: runs go on) has a step that waits
    /// for an event.
    async fn any_waits_for_events(&self, ws: &WorkspaceId, all: &[store::JourneyRecord]) -> Result<bool> {
        for record in all {
            for version in 1..=record.version {
                match self.definition(ws, &record.journey_id, version).await {
                    Ok(j) if j.steps.iter().any(|s| matches!(s.action, journeys::Action::WaitFor { .. })) => {
                        return Ok(true);
                    }
                    Ok(_) | Err(crate::Error::NotFound) => {}
                    // A version that no longer reads: its runs fail when stepped; be safe here.
                    Err(_) => return Ok(true),
                }
            }
        }
        Ok(false)
    }

    /// The tracked events of a slice of the log with their person and accounts.
    async fn who(&self, ws: &WorkspaceId, batch: &[store::LoggedEvent]) -> Result<Vec<Seen>> {
        let tracks: Vec<&store::LoggedEvent> = batch.iter().filter(|e| e.event.kind == EventType::Track).collect();
        let mut keys: Vec<IdentityKey> = Vec::new();
        let mut wanted = HashSet::new();
        for e in &tracks {
            let key = match (&e.event.user_id, &e.event.anonymous_id) {
                (Some(u), _) => IdentityKey::user(u.clone()),
                (None, Some(a)) => IdentityKey::anonymous(a.clone()),
                _ => continue,
            };
            if wanted.insert(key.clone()) {
                keys.push(key);
            }
        }
        let people: HashMap<IdentityKey, String> = if keys.is_empty() {
            HashMap::new()
        } else {
            self.store.load_identities(ws, &keys).await?.into_iter().map(|(k, p)| (k, p.person_id)).collect()
        };
        let mut accounts_of: HashMap<String, Vec<String>> = HashMap::new();
        let mut out = Vec::with_capacity(tracks.len());
        for e in tracks {
            let key = match (&e.event.user_id, &e.event.anonymous_id) {
                (Some(u), _) => Some(IdentityKey::user(u.clone())),
                (None, Some(a)) => Some(IdentityKey::anonymous(a.clone())),
                _ => None,
            };
            let person_id = key.and_then(|k| people.get(&k).cloned());
            let accounts = match e.event.group_id.as_deref().and_then(|g| AccountId::parse(g).ok()) {
                Some(a) => vec![a.to_string()],
                None => match &person_id {
                    Some(p) => {
                        if !accounts_of.contains_key(p) {
                            let of = self.store.get_person(ws, p).await?.map(|p| p.account_ids).unwrap_or_default();
                            accounts_of.insert(p.clone(), of.iter().map(|a| a.to_string()).collect());
                        }
                        accounts_of[p].clone()
                    }
                    None => Vec::new(),
                },
            };
            let message: Value = serde_json::from_str(&e.event.payload).unwrap_or(Value::Null);
            out.push(Seen {
                message_id: e.event.message_id.clone(),
                name: e.event.name.clone().unwrap_or_default(),
                person_id,
                accounts,
                properties: message.get("properties").cloned().unwrap_or_else(|| json!({})),
                timestamp: e.event.timestamp,
            });
        }
        Ok(out)
    }
}
