//! Runs started by time and by scoring: cron schedules (every member of a segment at each
//! time the expression names), health band changes and alerts opened. Each start is keyed by
//! what triggered it, and each source keeps its cursor in the workspace's settings, moved
//! after the starts it covers: a crash between the two starts nothing twice.

use std::collections::HashMap;
use std::sync::Arc;

use domain::{Timestamp, WorkspaceId};
use journeys::{Cron, Journey, Trigger};
use serde_json::json;
use store::{AccountChangeKind, JourneyRecord, LogPosition, PageRequest};

use crate::{Result, Runner, zone};

/// The setting holding how far journeys have read band changes and alerts opened.
const ACCOUNT_CURSOR: &str = "journeys.account_cursor";
/// Days band changes and alerts opened are kept once journeys have read them.
const KEEP_CHANGES_DAYS: i64 = 30;
/// The prefix of the setting holding, per journey, the last time its schedule was handled.
const SCHEDULE_CURSOR: &str = "journeys.schedule.";
const CHANGES_PER_READ: usize = 5_000;
const MEMBERS_PER_PAGE: usize = 1_000;

impl Runner {
    /// Starts the runs of schedules whose time has come by `now`. After a gap (the server
    /// was down) a schedule fires once, for the latest time it named, not once per time
    /// missed. A schedule seen for the first time fires from then on.
    pub(crate) async fn start_from_schedules(
        &self,
        ws: &WorkspaceId,
        journeys: &[(JourneyRecord, Arc<Journey>)],
        now: Timestamp,
    ) -> Result<usize> {
        let mut started = 0;
        let mut segments: Option<HashMap<String, String>> = None;
        for (record, j) in journeys {
            let Trigger::Schedule { cron, timezone, segment } = &j.trigger else { continue };
            let key = format!("{SCHEDULE_CURSOR}{}", record.journey_id);
            let Some(last) = self.store.get_setting(ws, &key).await? else {
                self.store.put_setting(ws, &key, &json!(now), now).await?;
                continue;
            };
            let Some(last) = serde_json::from_value::<Timestamp>(last).ok() else { continue };
            let Ok(cron) = Cron::parse(cron) else { continue };
            let tz = match timezone {
                Some(name) => match zone::named(name) {
                    Some(tz) => tz,
                    None => {
                        tracing::warn!(workspace = %ws, journey = %record.journey_id, timezone = %name,
                            "a schedule names a time zone the database does not know; it does not fire");
                        continue;
                    }
                },
                None => zone::of_workspace(self.store.as_ref(), ws).await?,
            };
            // The latest time named in (last, now].
            let mut fire = None;
            let mut after = last;
            while let Some(t) = zone::next_fire(&cron, &tz, after).filter(|t| *t <= now) {
                fire = Some(t);
                after = t;
            }
            let Some(fire) = fire else { continue };
            let names = match &segments {
                Some(n) => n,
                None => segments
                    .insert(self.store.list_segments(ws).await?.into_iter().map(|s| (s.name, s.segment_id)).collect()),
            };
            if let Some(segment_id) = names.get(segment) {
                let mut page = PageRequest::first(MEMBERS_PER_PAGE);
                loop {
                    let members = self.store.segment_members(ws, segment_id, &page).await?;
                    let at = fire.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                    let starts = members
                        .items
                        .iter()
                        .map(|m| {
                            let trigger = json!({"kind": "schedule", "segment": segment, "at": at});
                            let key = format!("schedule:{at}:{}", m.subject_id);
                            self.new_run(record, j, &m.subject_id, None, trigger, key, now)
                        })
                        .collect();
                    started += self.start(ws, starts).await?;
                    match members.next {
                        Some(next) => page.after = Some(next),
                        None => break,
                    }
                }
            }
            self.store.put_setting(ws, &key, &json!(fire), now).await?;
        }
        Ok(started)
    }

    /// Starts the runs of journeys triggered by health band changes and alerts opened since
    /// the last call.
    pub(crate) async fn start_from_scoring(
        &self,
        ws: &WorkspaceId,
        journeys: &[(JourneyRecord, Arc<Journey>)],
        now: Timestamp,
    ) -> Result<usize> {
        let listening: Vec<&(JourneyRecord, Arc<Journey>)> = journeys
            .iter()
            .filter(|(_, j)| matches!(j.trigger, Trigger::HealthBand { .. } | Trigger::AlertOpened { .. }))
            .collect();
        let mut after = match self.store.get_setting(ws, ACCOUNT_CURSOR).await? {
            Some(v) => LogPosition { tx: v["tx"].as_i64().unwrap_or(0), seq: v["seq"].as_i64().unwrap_or(0) },
            None => LogPosition::ZERO,
        };
        let mut started = 0;
        loop {
            let changes = self.store.account_changes(ws, after, CHANGES_PER_READ).await?;
            let Some(last) = changes.last().map(|c| c.position) else { break };
            let mut starts = Vec::new();
            for c in &changes {
                for (record, j) in &listening {
                    let fired = match (&j.trigger, &c.what) {
                        (Trigger::HealthBand { to, from }, AccountChangeKind::Band { from: was, to: is, day }) => {
                            let from_matches = match from {
                                None => true,
                                Some(f) => was.is_some_and(|w| w.as_str() == f),
                            };
                            (is.as_str() == to && from_matches).then(|| {
                                let trigger = json!({"kind": "health_band", "from": was.map(|w| w.as_str().to_owned()),
                                                     "to": to, "day": day, "at": c.at});
                                (trigger, format!("band:{}:{to}:{day}", c.account_id))
                            })
                        }
                        (
                            Trigger::AlertOpened { kind, reason },
                            AccountChangeKind::AlertOpened { alert_id, kind: k, reason: r },
                        ) => (kind.as_ref().is_none_or(|x| x == k) && reason.as_ref().is_none_or(|x| x == r)).then(
                            || {
                                let trigger = json!({"kind": "alert_opened", "alert_id": alert_id, "alert_kind": k,
                                                 "reason": r, "at": c.at});
                                (trigger, format!("alert:{alert_id}"))
                            },
                        ),
                        _ => None,
                    };
                    if let Some((trigger, key)) = fired {
                        starts.push(self.new_run(record, j, &c.account_id, None, trigger, key, now));
                    }
                }
            }
            started += self.start(ws, starts).await?;
            self.store.put_setting(ws, ACCOUNT_CURSOR, &json!({"tx": last.tx, "seq": last.seq}), now).await?;
            after = last;
            if changes.len() < CHANGES_PER_READ {
                // What has been read is kept a while (to look into), then forgotten.
                let before = now - chrono::Duration::days(KEEP_CHANGES_DAYS);
                self.store.prune_account_changes(ws, after, before).await?;
                break;
            }
        }
        Ok(started)
    }
}
