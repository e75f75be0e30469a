//! The contract every backend fulfils. Each backend's tests call [`contract_tests!`] with a
//! function that makes a fresh, empty store (or `None` to skip, when no database is configured).

use crate::*;
use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::{Currency, EventType, IdKind, KeyRole, Money, NewApiKey};
use serde_json::{Value, json};

/// Generates one `#[tokio::test]` per contract case. `$make` is an async fn returning
/// `Option<impl Store>`.
#[macro_export]
macro_rules! contract_tests {
    ($make:path) => {
        $crate::contract_tests!(@cases $make;
            workspaces_and_keys, operators, operator_sessions_end_and_are_isolated, the_audit_log_lists_newest_first_per_workspace,
            accounts_are_searched_and_filtered_by_plan_owner_and_segment,
            the_portfolio_adds_up_scores_alerts_tasks_and_band_changes,
            the_trend_follows_a_day_scored_again, kpis_are_replaced_whole_per_workspace,
            sign_in_failures_are_counted_per_key_and_forgotten, band_changes_are_each_accounts_latest,
            append_stores_each_message_once, batches_append_in_order_once, track_batches_are_stored_as_their_events,
            read_log_in_order, payloads_read_back_as_they_were_appended,
            processing_creates_people_accounts_and_traits, apply_changes_is_compare_and_set,
            merging_people_moves_everything, reset_processing_rewinds, event_filters_and_pages,
            explicit_account_wins_over_membership, billing_and_support_records_keep_the_newest,
            workspaces_are_isolated, account_list_pages_in_order, filters_find_events_of_every_append,
            reads_agree_before_and_after_maintenance, usage_rollups_count_events_and_people_per_day,
            scores_keep_the_latest_and_a_daily_history, scores_of_one_account_in_one_call,
            past_days_go_to_the_history_alone, a_first_score_takes_its_band_change_from_the_history,
            headlines_are_the_points_as_of_whatever_wrote_them,
            accounts_sort_and_filter_by_their_scores,
            one_model_is_active_per_kind, alerts_stay_one_per_account_kind_and_reason,
            band_changes_and_opened_alerts_are_read_in_order,
            operators_act_on_alerts_and_their_feedback_is_kept, whole_workspace_reads_for_scoring,
            one_account_is_read_and_written_at_once, settings_are_kept_per_workspace,
            segments_are_named_uniquely_within_a_workspace, memberships_record_entries_exits_and_next_checks,
            the_vocabulary_is_what_the_data_names, people_list_in_pages_by_id,
            journeys_are_versioned_and_named_uniquely, runs_start_once_per_trigger_and_by_their_reentry_rule,
            runs_advance_once_with_their_effects, the_outbox_leases_retries_and_replays,
            tasks_list_open_ones_by_due_date_and_are_closed_by_operators,
            connectors_are_one_per_provider_and_keep_their_state, connector_progress_adds_up,
            a_sync_is_marked_again_alone, secrets_are_replaced_only_if_unchanged,
            provider_objects_keep_the_newest_version, provider_objects_are_found_by_each_field_and_in_pages,
            linking_an_object_links_its_unmatched_children, connector_errors_are_counted_and_the_newest_kept,
            connectors_are_isolated_by_workspace);
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                match $make().await {
                    Some(store) => $crate::contract::$case(&store).await,
                    None => eprintln!("skipped {}: no database configured", stringify!($case)),
                }
            }
        )*
    };
}

fn t(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, day, hour, 0, 0).unwrap()
}

/// Events as the capture path makes them, from Segment messages.
pub fn events(messages: Value) -> Vec<NewEvent> {
    let body = json!({ "batch": messages }).to_string();
    let parsed = capture::parse_batch(body.as_bytes(), t(20, 12), &capture::Limits::default()).unwrap();
    assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
    parsed.events
}

fn track(id: &str, user: &str, name: &str, day: u32) -> Value {
    json!({"type": "track", "messageId": id, "userId": user, "event": name,
           "timestamp": t(day, 10).to_rfc3339()})
}

async fn workspace<S: Store>(s: &S, name: &str) -> WorkspaceId {
    s.create_workspace(name).await.unwrap().workspace_id
}

fn acct(s: &str) -> AccountId {
    AccountId::parse(s).unwrap()
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().unwrap().clone()
}

async fn all_events<S: Store>(s: &S, ws: &WorkspaceId, filter: &EventFilter) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(1000);
    loop {
        let p = s.list_events(ws, filter, &page).await.unwrap();
        out.extend(p.items);
        match p.next {
            Some(c) => page.after = Some(c),
            None => return out,
        }
    }
}

/// Creates a person with a user id and links it, as processing would.
fn person_ops(person: &str, user: &str, at: DateTime<Utc>) -> Vec<Op> {
    vec![
        Op::CreatePerson { person_id: person.into(), user_id: Some(user.into()), at },
        Op::LinkIdentity { key: IdentityKey::user(user), person_id: person.into() },
    ]
}

/// Applies `changes` as the next step of processing everything appended so far.
async fn process<S: Store>(s: &S, ws: &WorkspaceId, changes: Changes) {
    let status = s.log_status(ws).await.unwrap();
    let log = s.read_log(ws, status.cursor, 100_000).await.unwrap();
    let to = log.last().map(|e| e.position).unwrap_or(status.cursor);
    assert!(s.apply_changes(ws, status.cursor, to, &changes).await.unwrap());
}

pub async fn workspaces_and_keys<S: Store>(s: &S) {
    let ws = s.create_workspace("Acme Analytics").await.unwrap();
    assert_eq!(s.get_workspace(&ws.workspace_id).await.unwrap().unwrap().name, "Acme Analytics");
    assert!(s.list_workspaces().await.unwrap().iter().any(|w| w.workspace_id == ws.workspace_id));
    assert!(s.get_workspace(&WorkspaceId::generate()).await.unwrap().is_none());

    let now = t(1, 9);
    let write = NewApiKey::generate(&ws.workspace_id, KeyRole::Write, now);
    let admin = NewApiKey::generate(&ws.workspace_id, KeyRole::Admin, now);
    s.insert_key(&write.key).await.unwrap();
    s.insert_key(&admin.key).await.unwrap();
    let found = s.find_key(&KeyHash::of(&write.secret)).await.unwrap().unwrap();
    assert_eq!(found, write.key);
    assert!(s.find_key(&KeyHash::of("stw_wk_nope")).await.unwrap().is_none());
    assert_eq!(s.list_keys(&ws.workspace_id).await.unwrap().len(), 2);

    let other = workspace(s, "Other").await;
    assert!(!s.revoke_key(&other, &admin.key.key_id, now).await.unwrap(), "keys are revoked within their workspace");
    assert!(s.revoke_key(&ws.workspace_id, &admin.key.key_id, now).await.unwrap());
    assert!(!s.revoke_key(&ws.workspace_id, &admin.key.key_id, now).await.unwrap());
    let revoked = s.find_key(&KeyHash::of(&admin.secret)).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(now));
}

pub async fn operators<S: Store>(s: &S) {
    let ws = workspace(s, "Ops").await;
    let op = Operator {
        operator_id: "op_1".into(),
        workspace_id: ws.clone(),
        email: "csm@steward.test".into(),
        name: "Casey".into(),
        role: KeyRole::Member,
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        created_at: t(1, 9),
        disabled_at: None,
    };
    s.insert_operator(&op).await.unwrap();
    assert_eq!(s.find_operator_by_email(&ws, "CSM@steward.test").await.unwrap(), Some(op.clone()));
    let dup = Operator { operator_id: "op_2".into(), ..op.clone() };
    assert!(matches!(s.insert_operator(&dup).await, Err(StoreError::Conflict(_))));
    let other = workspace(s, "Other").await;
    assert!(s.find_operator_by_email(&other, "csm@steward.test").await.unwrap().is_none());
    assert_eq!(s.list_operators(&ws).await.unwrap(), vec![op.clone()]);
    assert_eq!(s.get_operator(&ws, "op_1").await.unwrap(), Some(op.clone()));
    assert_eq!(s.get_operator(&other, "op_1").await.unwrap(), None, "operators are found in their workspace only");
    assert!(s.set_operator_disabled(&ws, "op_1", Some(t(2, 9))).await.unwrap());
    assert_eq!(s.get_operator(&ws, "op_1").await.unwrap().unwrap().disabled_at, Some(t(2, 9)));
    assert!(!s.set_operator_disabled(&other, "op_1", Some(t(2, 9))).await.unwrap());
    assert!(s.set_operator_disabled(&ws, "op_1", None).await.unwrap());
    assert!(s.set_operator_password(&ws, "op_1", "$argon2id$new").await.unwrap());
    let changed = s.get_operator(&ws, "op_1").await.unwrap().unwrap();
    assert_eq!((changed.password_hash.as_deref(), changed.disabled_at), (Some("$argon2id$new"), None));
    assert!(!s.set_operator_password(&other, "op_1", "x").await.unwrap());
}

fn session(ws: &WorkspaceId, operator: &str, token: &str) -> OperatorSession {
    OperatorSession {
        token_hash: format!("hash-{token}"),
        workspace_id: ws.clone(),
        operator_id: operator.into(),
        csrf_token: format!("csrf-{token}"),
        created_at: t(1, 9),
        last_seen_at: t(1, 9),
        expires_at: t(2, 9),
    }
}

fn operator_named(ws: &WorkspaceId, id: &str, email: &str, role: KeyRole) -> Operator {
    Operator {
        operator_id: id.into(),
        workspace_id: ws.clone(),
        email: email.into(),
        name: id.to_uppercase(),
        role,
        password_hash: Some("$argon2id$x".into()),
        created_at: t(1, 8),
        disabled_at: None,
    }
}

pub async fn operator_sessions_end_and_are_isolated<S: Store>(s: &S) {
    let ws = workspace(s, "Sessions").await;
    let other = workspace(s, "Other").await;
    let ana = operator_named(&ws, "op_ana", "ana@steward.test", KeyRole::Admin);
    let bo = operator_named(&other, "op_bo", "bo@steward.test", KeyRole::Viewer);
    s.insert_operator(&ana).await.unwrap();
    s.insert_operator(&bo).await.unwrap();
    let (a1, a2, b1) = (session(&ws, "op_ana", "a1"), session(&ws, "op_ana", "a2"), session(&other, "op_bo", "b1"));
    for x in [&a1, &a2, &b1] {
        s.insert_session(x).await.unwrap();
    }
    let found = s.find_session("hash-a1").await.unwrap().unwrap();
    assert_eq!(found, SignedIn { session: a1.clone(), operator: ana.clone() });
    assert_eq!(s.find_session("hash-b1").await.unwrap().unwrap().operator, bo, "each session opens its own workspace");
    assert_eq!(s.find_session("hash-nope").await.unwrap(), None);
    s.touch_session("hash-a1", t(1, 11)).await.unwrap();
    assert_eq!(s.find_session("hash-a1").await.unwrap().unwrap().session.last_seen_at, t(1, 11));
    assert!(s.delete_session("hash-a1").await.unwrap());
    assert!(!s.delete_session("hash-a1").await.unwrap());
    assert_eq!(s.find_session("hash-a1").await.unwrap(), None);
    // Disabling an operator ends every session of theirs, and only theirs.
    assert!(s.set_operator_disabled(&ws, "op_ana", Some(t(1, 12))).await.unwrap());
    assert_eq!(s.find_session("hash-a2").await.unwrap(), None);
    assert!(s.find_session("hash-b1").await.unwrap().is_some());
    // A new password ends them too.
    assert!(s.set_operator_disabled(&ws, "op_ana", None).await.unwrap());
    s.insert_session(&session(&ws, "op_ana", "a3")).await.unwrap();
    assert!(s.set_operator_password(&ws, "op_ana", "$argon2id$y").await.unwrap());
    assert_eq!(s.find_session("hash-a3").await.unwrap(), None);
}

pub async fn the_audit_log_lists_newest_first_per_workspace<S: Store>(s: &S) {
    let ws = workspace(s, "Audit").await;
    let other = workspace(s, "Other").await;
    let entry = |ws: &WorkspaceId, n: u32| AuditEntry {
        seq: 0,
        workspace_id: ws.clone(),
        actor: "op_ana".into(),
        action: "alert.acknowledge".into(),
        target: format!("al_{n}"),
        details: json!({"n": n}),
        at: t(1, n),
    };
    let mut seqs = Vec::new();
    for n in 1..=5 {
        seqs.push(s.append_audit(&entry(&ws, n)).await.unwrap());
    }
    s.append_audit(&entry(&other, 9)).await.unwrap();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs increase: {seqs:?}");
    let newest = s.list_audit(&ws, None, 3).await.unwrap();
    let targets = |es: &[AuditEntry]| es.iter().map(|e| e.target.clone()).collect::<Vec<_>>();
    assert_eq!(targets(&newest), ["al_5", "al_4", "al_3"]);
    assert_eq!(newest[0], AuditEntry { seq: seqs[4], ..entry(&ws, 5) });
    let older = s.list_audit(&ws, Some(newest[2].seq), 10).await.unwrap();
    assert_eq!(targets(&older), ["al_2", "al_1"]);
    assert_eq!(targets(&s.list_audit(&other, None, 10).await.unwrap()), ["al_9"]);
}

pub async fn the_portfolio_adds_up_scores_alerts_tasks_and_band_changes<S: Store>(s: &S) {
    let ws = workspace(s, "Overview").await;
    let other = workspace(s, "Other").await;
    accounts_named(s, &ws, &["a", "b", "c"]).await;
    let day = |d: &str| d.parse::<chrono::NaiveDate>().unwrap();
    let week_ago =
        [score("a", "2026-10-01", 80.0, Some(0.1), Some(9000)), score("b", "2026-10-01", 75.0, Some(0.2), Some(2000))];
    s.put_scores(&ws, &week_ago).await.unwrap();
    let today = [
        score("a", "2026-10-08", 85.0, Some(0.3), Some(9000)),
        score("b", "2026-10-08", 30.0, Some(0.7), Some(2000)),
        score("c", "2026-10-08", 55.0, None, None),
    ];
    s.put_scores(&ws, &today).await.unwrap();
    s.put_scores(&other, &[score("a", "2026-10-08", 10.0, Some(0.9), Some(100))]).await.unwrap();
    s.sync_alerts(&ws, AlertScope::Workspace, &[signal("b", "churn_risk", Severity::High, 0.7)], t(8, 1))
        .await
        .unwrap();
    s.insert_task(&ws, &task("t1", "Call", None, t(8, 2))).await.unwrap();
    let p = s.portfolio(&ws, day("2026-10-01")).await.unwrap();
    assert_eq!(p.histogram, [0, 0, 0, 1, 0, 1, 0, 0, 1, 0]);
    assert_eq!(p.bands, BandCounts { healthy: 1, neutral: 1, at_risk: 1 });
    let usd = |m| vec![Money::new(m, Currency::parse("USD").unwrap())];
    assert_eq!(p.mrr_at_risk, usd(2000));
    assert_eq!(p.expansion_pipeline, usd(9000), "a's expansion is 0.7, b's 0.3");
    assert_eq!(p.mrr, usd(11000));
    assert_eq!((p.open_alerts, p.open_tasks), (1, 1));
    assert_eq!(
        p.band_changes,
        [BandChange {
            account_id: acct("b"),
            name: None,
            from: HealthBand::Healthy,
            to: HealthBand::AtRisk,
            health: 30.0
        }]
    );
    let trend = s.portfolio_trend(&ws, day("2026-10-01"), day("2026-10-09")).await.unwrap();
    assert_eq!(trend.iter().map(|d| d.day).collect::<Vec<_>>(), [day("2026-10-01"), day("2026-10-08")]);
    assert_eq!(trend[0].bands, BandCounts { healthy: 2, neutral: 0, at_risk: 0 });
    assert_eq!(trend[1].bands, BandCounts { healthy: 1, neutral: 1, at_risk: 1 });
    assert_eq!(trend[1].mrr_at_risk, usd(2000));
    assert_eq!(trend[0].expansion_pipeline, usd(11000));
    assert!(s.portfolio_trend(&ws, day("2026-10-02"), day("2026-10-08")).await.unwrap().is_empty());
    let theirs = s.portfolio(&other, day("2026-10-01")).await.unwrap();
    assert_eq!((theirs.bands.total(), theirs.open_alerts, theirs.open_tasks), (1, 0, 0));
}

/// The trend's sums follow each history row as it is written, written again the same day
/// (a band, an MRR, an expansion that change) and in another workspace.
pub async fn the_trend_follows_a_day_scored_again<S: Store>(s: &S) {
    let ws = workspace(s, "Trend").await;
    let other = workspace(s, "Other").await;
    let day = |d: &str| d.parse::<chrono::NaiveDate>().unwrap();
    let usd = |m| vec![Money::new(m, Currency::parse("USD").unwrap())];
    // Expansion is 1 - churn: a 0.6, b 0.9, c exactly 0.5 (counted: from 0.5 on).
    s.put_scores(
        &ws,
        &[
            score("a", "2026-10-08", 80.0, Some(0.4), Some(1000)),
            score("b", "2026-10-08", 20.0, Some(0.1), Some(500)),
            score("c", "2026-10-08", 50.0, Some(0.5), Some(700)),
        ],
    )
    .await
    .unwrap();
    s.put_scores(&other, &[score("a", "2026-10-08", 10.0, Some(0.0), Some(99))]).await.unwrap();
    let trend = s.portfolio_trend(&ws, day("2026-10-01"), day("2026-10-09")).await.unwrap();
    assert_eq!(trend.len(), 1);
    assert_eq!(trend[0].bands, BandCounts { healthy: 1, neutral: 1, at_risk: 1 });
    assert_eq!(trend[0].mrr_at_risk, usd(500));
    assert_eq!(trend[0].expansion_pipeline, usd(2200));
    // Scored again the same day: a falls to at risk with more MRR; b recovers; c's MRR goes.
    s.put_scores(
        &ws,
        &[
            score("a", "2026-10-08", 30.0, Some(0.9), Some(1200)),
            score("b", "2026-10-08", 75.0, Some(0.1), Some(500)),
            score("c", "2026-10-08", 50.0, Some(0.5), None),
        ],
    )
    .await
    .unwrap();
    let trend = s.portfolio_trend(&ws, day("2026-10-01"), day("2026-10-09")).await.unwrap();
    assert_eq!(trend.len(), 1);
    assert_eq!(trend[0].bands, BandCounts { healthy: 1, neutral: 1, at_risk: 1 });
    assert_eq!(trend[0].mrr_at_risk, usd(1200));
    assert_eq!(trend[0].expansion_pipeline, usd(500), "b's 0.9; a's 0.1 no longer; c has no MRR");
    let theirs = s.portfolio_trend(&other, day("2026-10-01"), day("2026-10-09")).await.unwrap();
    assert_eq!((theirs[0].bands.total(), theirs[0].mrr_at_risk.clone()), (1, usd(99)));
}

pub async fn band_changes_are_each_accounts_latest<S: Store>(s: &S) {
    let ws = workspace(s, "Bands").await;
    accounts_named(s, &ws, &["up", "down", "back", "still", "old"]).await;
    let day = |d: &str| d.parse::<chrono::NaiveDate>().unwrap();
    let runs: [&[(&str, f64)]; 4] = [
        &[("up", 30.0), ("down", 80.0), ("back", 80.0), ("still", 50.0), ("old", 80.0)],
        &[("old", 20.0)],
        &[("back", 20.0), ("up", 50.0)],
        &[("back", 75.0), ("up", 90.0), ("down", 35.0), ("still", 55.0)],
    ];
    for (run, d) in runs.iter().zip(["2026-09-20", "2026-09-25", "2026-10-03", "2026-10-08"]) {
        let scores: Vec<AccountScore> = run.iter().map(|(a, h)| score(a, d, *h, None, None)).collect();
        s.put_scores(&ws, &scores).await.unwrap();
    }
    // Since October 1st: "down" fell, "up" rose twice (its latest change counts: from
    // neutral), "back" fell and recovered (from at risk); "still" stayed neutral; "old"
    // changed before.
    let changes = s.portfolio(&ws, day("2026-10-01")).await.unwrap().band_changes;
    let seen: Vec<(String, HealthBand, HealthBand)> =
        changes.iter().map(|c| (c.account_id.to_string(), c.from, c.to)).collect();
    assert_eq!(
        seen,
        [
            ("down".to_owned(), HealthBand::Healthy, HealthBand::AtRisk),
            ("back".to_owned(), HealthBand::AtRisk, HealthBand::Healthy),
            ("up".to_owned(), HealthBand::Neutral, HealthBand::Healthy),
        ]
    );
    // An older score written later changes nothing.
    s.put_scores(&ws, &[score("down", "2026-10-02", 90.0, None, None)]).await.unwrap();
    assert_eq!(s.portfolio(&ws, day("2026-10-01")).await.unwrap().band_changes, changes);
    let now = s.portfolio(&ws, day("2026-10-08")).await.unwrap();
    assert!(now.band_changes.is_empty(), "none after the 8th");
    // The sums of the latest scores followed every change: 90, 35, 75, 55 and 20.
    assert_eq!(now.bands, BandCounts { healthy: 2, neutral: 1, at_risk: 2 });
    assert_eq!(now.histogram, [0, 0, 1, 1, 0, 1, 0, 1, 0, 1]);
}

pub async fn sign_in_failures_are_counted_per_key_and_forgotten<S: Store>(s: &S) {
    // Keys of this run alone: the table is shared by every workspace of the database.
    let tag = domain::random_token(8);
    let (ana, ip) = (format!("email:ana-{tag}@a.test"), format!("ip:10.0.0.{}", tag.len()));
    for hour in [1, 2, 3] {
        s.record_sign_in_failure(&ana, t(5, hour), t(1, 0)).await.unwrap();
    }
    s.record_sign_in_failure(&ip, t(5, 4), t(1, 0)).await.unwrap();
    assert_eq!(s.sign_in_failures(&ana, t(5, 0)).await.unwrap(), (3, Some(t(5, 1))));
    assert_eq!(s.sign_in_failures(&ana, t(5, 2)).await.unwrap(), (2, Some(t(5, 2))), "from `since` on");
    assert_eq!(s.sign_in_failures(&ip, t(5, 0)).await.unwrap(), (1, Some(t(5, 4))));
    s.clear_sign_in_failures(&ana).await.unwrap();
    assert_eq!(s.sign_in_failures(&ana, t(5, 0)).await.unwrap(), (0, None));
    assert_eq!(s.sign_in_failures(&ip, t(5, 0)).await.unwrap().0, 1, "another key's stay");
    // A later failure forgets those before its horizon.
    s.record_sign_in_failure(&ana, t(6, 0), t(5, 23)).await.unwrap();
    assert_eq!(s.sign_in_failures(&ip, t(1, 0)).await.unwrap(), (0, None));
    assert_eq!(s.sign_in_failures(&ana, t(1, 0)).await.unwrap(), (1, Some(t(6, 0))));
}

pub async fn kpis_are_replaced_whole_per_workspace<S: Store>(s: &S) {
    use crate::{Kpi, KpiMonth, KpiReport};
    let ws = workspace(s, "KPIs").await;
    let other = workspace(s, "Other").await;
    let month = |m: &str| m.parse::<chrono::NaiveDate>().unwrap();
    let row = |kpi, m: &str, numerator, denominator| KpiMonth { kpi, month: month(m), numerator, denominator };
    assert_eq!(s.kpis(&ws).await.unwrap(), None, "never computed");
    let first = KpiReport {
        computed_at: t(3, 4),
        currency: Some(Currency::parse("EUR").unwrap()),
        months: vec![
            row(Kpi::Nrr, "2026-09-01", 500.0, 820.0),
            row(Kpi::Activation, "2026-09-01", 1.0, 4.0),
            row(Kpi::Nrr, "2026-08-01", 900.0, 1000.0),
            row(Kpi::GrossMrrChurn, "2026-09-01", 420.0, 820.0),
        ],
    };
    s.put_kpis(&ws, &first).await.unwrap();
    let read = s.kpis(&ws).await.unwrap().unwrap();
    assert_eq!(read.computed_at, t(3, 4));
    assert_eq!(read.currency, first.currency);
    // By KPI (its name), then month.
    assert_eq!(
        read.months,
        [
            row(Kpi::Activation, "2026-09-01", 1.0, 4.0),
            row(Kpi::GrossMrrChurn, "2026-09-01", 420.0, 820.0),
            row(Kpi::Nrr, "2026-08-01", 900.0, 1000.0),
            row(Kpi::Nrr, "2026-09-01", 500.0, 820.0),
        ]
    );
    assert_eq!(read.months[0].value(), Some(0.25));
    assert_eq!(s.kpis(&other).await.unwrap(), None, "another workspace's are not ours");
    let second =
        KpiReport { computed_at: t(4, 5), currency: None, months: vec![row(Kpi::LogoChurn, "2026-10-01", 0.0, 0.0)] };
    s.put_kpis(&ws, &second).await.unwrap();
    let read = s.kpis(&ws).await.unwrap().unwrap();
    assert_eq!(read, second, "replaced whole");
    assert_eq!(read.months[0].value(), None, "nothing measured");
}

pub async fn accounts_are_searched_and_filtered_by_plan_owner_and_segment<S: Store>(s: &S) {
    let ws = workspace(s, "Filters").await;
    accounts_named(s, &ws, &["acme", "acorn", "globex", "initech", "percent"]).await;
    let traits = |id: &str, v: Value| Op::SetAccountTraits { account_id: acct(id), traits: obj(v), at: t(2, 1) };
    let ops = vec![
        traits("acme", json!({"name": "Acme Corp", "plan": "pro", "csm_email": "ana@steward.test"})),
        traits("acorn", json!({"name": "Acorn Ltd", "plan": "team", "csm_email": "bo@steward.test"})),
        traits("globex", json!({"name": "Globex ACME Division", "plan": "pro", "csm_email": "bo@steward.test"})),
        traits("initech", json!({"name": "Initech", "plan": "pro"})),
        traits("percent", json!({"name": "100% Uptime_Co"})),
    ];
    process(s, &ws, Changes { ops, event_people: vec![], ..Default::default() }).await;
    s.put_scores(
        &ws,
        &[
            score("acme", "2026-10-01", 80.0, Some(0.1), Some(9000)),
            score("globex", "2026-10-01", 30.0, Some(0.7), Some(4000)),
            score("initech", "2026-10-01", 35.0, Some(0.6), Some(1000)),
        ],
    )
    .await
    .unwrap();
    let seg = SegmentRecord {
        segment_id: "seg_1".into(),
        name: "Big".into(),
        kind: SubjectKind::Accounts,
        condition: "mrr > 10".into(),
        description: None,
        created_at: t(1, 1),
        updated_at: t(1, 1),
    };
    s.insert_segment(&ws, &seg).await.unwrap();
    // Members, and subjects that are not (yet): waiting on a time, or left.
    let updates = [
        update("acme", true, None),
        update("acorn", true, None),
        update("globex", false, Some(t(9, 1))),
        update("initech", true, None),
        update("percent", true, None),
    ];
    s.update_memberships(&ws, "seg_1", &updates, t(3, 1)).await.unwrap();
    s.update_memberships(&ws, "seg_1", &[update("percent", false, Some(t(9, 2)))], t(3, 2)).await.unwrap();
    // A segment of people: its id lists no account.
    let people = SegmentRecord { segment_id: "seg_people".into(), kind: SubjectKind::People, ..seg.clone() };
    let people = SegmentRecord { name: "People".into(), ..people };
    s.insert_segment(&ws, &people).await.unwrap();
    s.update_memberships(&ws, "seg_people", &[update("acme", true, None)], t(3, 1)).await.unwrap();
    let ids = |rows: Vec<(String, Option<f64>)>| rows.into_iter().map(|r| r.0).collect::<Vec<_>>();
    let q = |f: fn(&mut AccountQuery)| {
        let mut q = AccountQuery::default();
        f(&mut q);
        q
    };
    // An id's start, or anywhere in the name, in any case.
    assert_eq!(ids(query_all(s, &ws, &q(|q| q.search = Some("ACO".into())), 1).await), ["acorn"]);
    assert!(query_all(s, &ws, &q(|q| q.search = Some("cent".into())), 5).await.is_empty(), "ids match at the start");
    assert_eq!(ids(query_all(s, &ws, &q(|q| q.search = Some("acme".into())), 1).await), ["acme", "globex"]);
    // `%` and `_` are themselves.
    assert_eq!(ids(query_all(s, &ws, &q(|q| q.search = Some("0%".into())), 5).await), ["percent"]);
    assert!(ids(query_all(s, &ws, &q(|q| q.search = Some("a_me".into())), 5).await).is_empty());
    assert_eq!(ids(query_all(s, &ws, &q(|q| q.plan = Some("pro".into())), 2).await), ["acme", "globex", "initech"]);
    assert_eq!(ids(query_all(s, &ws, &q(|q| q.owner = Some("bo@steward.test".into())), 5).await), ["acorn", "globex"]);
    // Scored or not (acorn is not), in account order either way.
    let members = q(|q| q.segment = Some("seg_1".into()));
    assert_eq!(ids(query_all(s, &ws, &members, 1).await), ["acme", "acorn", "initech"]);
    let backwards = q(|q| {
        q.segment = Some("seg_1".into());
        q.descending = true;
    });
    assert_eq!(ids(query_all(s, &ws, &backwards, 1).await), ["initech", "acorn", "acme"]);
    assert!(query_all(s, &ws, &q(|q| q.segment = Some("seg_people".into())), 5).await.is_empty());
    assert!(query_all(s, &ws, &q(|q| q.segment = Some("seg_none".into())), 5).await.is_empty());
    // A segment with a score filter, and with a search (each list's count checked too).
    let at_risk_members = q(|q| {
        q.segment = Some("seg_1".into());
        q.band = Some(HealthBand::AtRisk);
    });
    assert_eq!(ids(query_all(s, &ws, &at_risk_members, 1).await), ["initech"]);
    let named = q(|q| {
        q.segment = Some("seg_1".into());
        q.search = Some("corp".into());
    });
    assert_eq!(ids(query_all(s, &ws, &named, 1).await), ["acme"]);
    let team_members = q(|q| {
        q.segment = Some("seg_1".into());
        q.plan = Some("team".into());
    });
    assert_eq!(ids(query_all(s, &ws, &team_members, 1).await), ["acorn"]);
    // With a score's sort and filter.
    let risky = AccountQuery {
        sort: AccountSort::ChurnRisk,
        descending: true,
        plan: Some("pro".into()),
        band: Some(HealthBand::AtRisk),
        ..Default::default()
    };
    assert_eq!(ids(query_all(s, &ws, &risky, 1).await), ["globex", "initech"]);
    let in_segment = AccountQuery { sort: AccountSort::Health, segment: Some("seg_1".into()), ..Default::default() };
    assert_eq!(ids(query_all(s, &ws, &in_segment, 1).await), ["initech", "acme"]);
    let other = workspace(s, "Other").await;
    assert!(query_all(s, &other, &q(|q| q.plan = Some("pro".into())), 5).await.is_empty());
    assert!(query_all(s, &other, &q(|q| q.segment = Some("seg_1".into())), 5).await.is_empty());
}

pub async fn append_stores_each_message_once<S: Store>(s: &S) {
    let ws = workspace(s, "Dedup").await;
    let first = events(json!([track("m1", "u1", "A", 1), track("m2", "u1", "B", 2), track("m3", "u2", "C", 3)]));
    assert_eq!(s.append_events(&ws, &first).await.unwrap(), AppendReport { stored: 3, duplicates: 0 });
    // A retry of the same batch plus one new message, and a duplicate within the batch.
    let retry = events(json!([
        track("m1", "u1", "A", 1),
        track("m2", "u1", "B", 2),
        track("m3", "u2", "C", 3),
        track("m4", "u2", "D", 4),
        track("m4", "u2", "D", 4)
    ]));
    assert_eq!(s.append_events(&ws, &retry).await.unwrap(), AppendReport { stored: 1, duplicates: 4 });
    let stored = all_events(s, &ws, &EventFilter::default()).await;
    let mut ids: Vec<_> = stored.iter().map(|e| e.message_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["m1", "m2", "m3", "m4"]);
    let m1 = stored.iter().find(|e| e.message_id == "m1").unwrap();
    assert_eq!((m1.kind, m1.name.as_deref(), m1.user_id.as_deref()), (EventType::Track, Some("A"), Some("u1")));
    assert_eq!(m1.timestamp, t(1, 10));
    assert_eq!(m1.message["event"], "A");
    assert_eq!(s.append_events(&ws, &[]).await.unwrap(), AppendReport::default());
}

pub async fn batches_append_in_order_once<S: Store>(s: &S) {
    let ws = workspace(s, "Bulk").await;
    s.append_events(&ws, &events(json!([track("m2", "ana", "Seen", 1)]))).await.unwrap();
    // Three batches: an id stored before, one repeated within a batch and one across batches.
    let batches = vec![
        events(json!([track("b1", "ana", "A", 1), track("m2", "ana", "Seen", 1), track("b2", "bo", "B", 2)])),
        events(json!([track("b3", "cy", "C", 3), track("b3", "cy", "C", 3)])),
        events(json!([track("b1", "ana", "A", 1), track("b4", "dan", "D", 4)])),
    ];
    // Another workspace's events, appended between, are not this one's.
    let other = workspace(s, "Bulk elsewhere").await;
    s.append_events(&other, &events(json!([track("o1", "ana", "Seen", 1)]))).await.unwrap();
    // Told what is coming (an import's hint), the store still stores each id once.
    s.expect_appends(&ws, 10_000).await.unwrap();
    let appended = s.append_event_batches(&ws, &batches).await.unwrap();
    assert_eq!(appended.report, AppendReport { stored: 4, duplicates: 3 });
    let log = s.read_log(&ws, LogPosition::ZERO, 100).await.unwrap();
    let ids: Vec<&str> = log.iter().map(|e| e.event.message_id.as_str()).collect();
    assert_eq!(ids, ["m2", "b1", "b2", "b3", "b4"], "in the order of the batches");
    assert!(log.windows(2).all(|w| w[0].position < w[1].position));
    if let Some(placement) = &appended.placement {
        // Where the events went is where the log has them: right after the workspace's last.
        assert_eq!(placement.after, log[0].position);
        let stored: Vec<(usize, LogPosition)> =
            placement.positions.iter().enumerate().filter_map(|(i, p)| p.map(|p| (i, p))).collect();
        assert_eq!(placement.positions.len(), 7, "one per event given");
        assert_eq!(stored.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 2, 3, 6], "duplicates have none");
        let read: Vec<LogPosition> = log[1..].iter().map(|e| e.position).collect();
        assert_eq!(stored.iter().map(|(_, p)| *p).collect::<Vec<_>>(), read);
    }
    // Again: nothing new.
    let again = s.append_event_batches(&ws, &batches).await.unwrap();
    assert_eq!(again.report, AppendReport { stored: 0, duplicates: 7 });
    if let Some(placement) = &again.placement {
        assert_eq!(placement.after, log[4].position);
        assert_eq!(placement.positions, vec![None; 7]);
    }
    let empty = s.append_event_batches(&ws, &[]).await.unwrap();
    assert_eq!(empty.report, AppendReport::default());
    assert!(empty.placement.is_none_or(|p| p.positions.is_empty()));
    if s.backend() == "sqlite" {
        assert!(appended.placement.is_some(), "SQLite places what it appends");
    }
    assert_eq!(s.log_status(&ws).await.unwrap().total_events, 5);
}

pub async fn track_batches_are_stored_as_their_events<S: Store>(s: &S) {
    use domain::{DerivedId, MessageId, NewTrack, TrackRows};
    let received = t(20, 12);
    let row = |rows: &mut TrackRows,
               id: MessageId<'_>,
               user: Option<&str>,
               props: Option<&str>,
               at: chrono::DateTime<Utc>| {
        rows.push(&NewTrack {
            message_id: id,
            event: "Report Created",
            user_id: user.map(|u| ["acme", "/", u]),
            anonymous_id: user.is_none().then_some("anon-1"),
            group_id: Some("acme"),
            properties: props,
            timestamp: at,
        })
    };
    let mut first = TrackRows::with_capacity(received, 4, 256);
    // An id an import derives, held in parts, is the same id as its text.
    let derived = DerivedId { key: 0x0123_4567_89ab_cdef_0011_2233_4455_6677, n: 2 };
    let derived_text = derived.to_string();
    row(&mut first, "k1".into(), Some("ana"), Some(r#"{"value":3,"plan":"pro \"x\""}"#), t(3, 10));
    row(&mut first, "k2".into(), None, None, t(3, 11) + chrono::Duration::nanoseconds(1_234_567));
    row(&mut first, "k1".into(), Some("ana"), None, t(3, 12));
    row(&mut first, "stored".into(), Some("bo"), None, t(3, 13));
    row(&mut first, MessageId::Derived(derived), Some("di"), None, t(3, 14));
    let mut second = TrackRows::with_capacity(received, 2, 64);
    row(&mut second, "k2".into(), None, None, t(4, 10));
    row(&mut second, MessageId::Text(&derived_text), Some("di"), None, t(4, 11));
    row(&mut second, "k3".into(), Some("cy"), Some("{}"), t(4, 12));
    let batches = vec![std::sync::Arc::new(first), std::sync::Arc::new(second)];
    let events: Vec<Vec<NewEvent>> = batches.iter().map(|b| b.to_events()).collect();
    assert_eq!(events[0][0].user_id.as_deref(), Some("acme/ana"));

    // The same rows, once in columns and once as events, each in a workspace of its own that
    // already holds one of the ids.
    let (columns, whole) = (workspace(s, "Columns").await, workspace(s, "Whole").await);
    let mut stored = events[0][3].clone();
    stored.received_at = t(1, 1);
    for ws in [&columns, &whole] {
        s.append_events(ws, std::slice::from_ref(&stored)).await.unwrap();
    }
    let by_columns = s.append_track_batches(&columns, &batches).await.unwrap();
    let by_events = s.append_event_batches(&whole, &events).await.unwrap();
    assert_eq!(by_columns.report, AppendReport { stored: 4, duplicates: 4 });
    assert_eq!(by_columns.report, by_events.report);
    let pattern =
        |r: &BatchesReport| r.placement.as_ref().map(|p| p.positions.iter().map(Option::is_some).collect::<Vec<_>>());
    assert_eq!(pattern(&by_columns), pattern(&by_events));
    if let Some(kept) = pattern(&by_columns) {
        assert_eq!(
            kept,
            [true, true, false, false, true, false, false, true],
            "repeats and the stored id are left out"
        );
    }
    let mut logs = Vec::new();
    for ws in [&columns, &whole] {
        let log = s.read_log(ws, LogPosition::ZERO, 100).await.unwrap();
        logs.push(log.into_iter().map(|e| e.event).collect::<Vec<NewEvent>>());
    }
    let (a, b) = (&logs[0], &logs[1]);
    assert_eq!(a.len(), 5);
    assert_eq!(a, b, "the same events, payloads included");
    let ids: Vec<&str> = a.iter().map(|e| e.message_id.as_str()).collect();
    assert_eq!(ids, ["stored", "k1", "k2", &derived_text, "k3"]);
    let payload: Value = serde_json::from_str(&a[3].payload).unwrap();
    assert_eq!(payload["messageId"], json!(derived_text));
    let payload: Value = serde_json::from_str(&a[1].payload).unwrap();
    assert_eq!(payload["properties"], json!({"value": 3, "plan": "pro \"x\""}));
    assert_eq!(payload["context"]["groupId"], "acme");
    assert_eq!(a[2].anonymous_id.as_deref(), Some("anon-1"));
    let mut listed = Vec::new();
    for ws in [&columns, &whole] {
        let mut all = all_events(s, ws, &EventFilter::default()).await;
        all.sort_by(|x, y| x.message_id.cmp(&y.message_id));
        listed.push(all.into_iter().map(|e| (e.message_id, e.timestamp, e.message)).collect::<Vec<_>>());
    }
    assert_eq!(listed[0], listed[1]);
    assert_eq!(listed[0].len(), 5);
}

pub async fn read_log_in_order<S: Store>(s: &S) {
    let ws = workspace(s, "Log").await;
    s.append_events(&ws, &events(json!([track("a", "u", "1", 5), track("b", "u", "2", 1)]))).await.unwrap();
    s.append_events(&ws, &events(json!([track("c", "u", "3", 3)]))).await.unwrap();
    let log = s.read_log(&ws, LogPosition::ZERO, 10).await.unwrap();
    let ids: Vec<_> = log.iter().map(|e| e.event.message_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"], "log order is append order, not event time");
    assert!(log.windows(2).all(|w| w[0].position < w[1].position));
    let rest = s.read_log(&ws, log[0].position, 1).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].event.message_id, "b");
    assert_eq!(rest[0].event, log[1].event);
    assert!(s.read_log(&ws, log[2].position, 10).await.unwrap().is_empty());
    let tracks = crate::Payloads::of(&[EventType::Track]);
    let with = s.read_log_with(&ws, LogPosition::ZERO, 10, tracks).await.unwrap();
    assert_eq!(with, log, "every payload of the kinds asked for");
    let without =
        s.read_log_with(&ws, LogPosition::ZERO, 10, crate::Payloads::of(&[EventType::Identify])).await.unwrap();
    assert!(without.iter().all(|e| e.event.payload.is_empty()), "no payload of other kinds");
    assert!(
        without.iter().zip(&log).all(|(a, b)| (a.position, &a.event.message_id) == (b.position, &b.event.message_id))
    );

    let status = s.log_status(&ws).await.unwrap();
    assert_eq!((status.cursor, status.total_events, status.pending_events), (LogPosition::ZERO, 3, 3));
    assert_eq!(status.oldest_pending_received_at, Some(t(20, 12)));
    assert!(s.apply_changes(&ws, LogPosition::ZERO, log[1].position, &Changes::default()).await.unwrap());
    let status = s.log_status(&ws).await.unwrap();
    assert_eq!((status.cursor, status.pending_events), (log[1].position, 1));
}

/// Payloads come back as the text appended, whether a backend keeps them whole or rebuilds
/// those that their track call's fields write (an import's).
pub async fn payloads_read_back_as_they_were_appended<S: Store>(s: &S) {
    let ws = workspace(s, "Payloads").await;
    let mut appended = events(json!([track("captured", "u", "Signed Up", 2)]));
    let shapes = [
        (Some("7/0"), None, Some(r#"{"value":2.5}"#), Some("7")),
        (None, Some("anon \"quoted\"\n"), None, None),
        (Some("ü/1"), Some("a"), Some("{}"), Some("acme\\x")),
    ];
    for (i, (user, anonymous, properties, group)) in shapes.into_iter().enumerate() {
        let message_id = format!("import_{i:032x}_1");
        // Finer than milliseconds, which the payload (and the SQLite log) keeps.
        let timestamp = t(3, 10) + Duration::microseconds(i as i64 * 1_500);
        let payload = domain::TrackPayload {
            message_id: &message_id,
            event: "Report \"Created\"",
            user_id: user,
            anonymous_id: anonymous,
            timestamp,
            properties,
            group_id: group,
        }
        .to_json();
        appended.push(NewEvent {
            message_id,
            kind: EventType::Track,
            name: Some("Report \"Created\"".into()),
            user_id: user.map(str::to_owned),
            anonymous_id: anonymous.map(str::to_owned),
            group_id: group.map(str::to_owned),
            previous_id: None,
            timestamp,
            received_at: t(20, 12),
            payload,
        });
    }
    s.append_event_batches(&ws, &[appended.clone()]).await.unwrap();
    let log = s.read_log(&ws, LogPosition::ZERO, 10).await.unwrap();
    let payloads: Vec<&str> = log.iter().map(|e| e.event.payload.as_str()).collect();
    let expected: Vec<&str> = appended.iter().map(|e| e.payload.as_str()).collect();
    assert_eq!(payloads, expected);
    let listed = all_events(s, &ws, &EventFilter::default()).await;
    for e in &appended {
        let found = listed.iter().find(|l| l.message_id == e.message_id).expect("listed");
        assert_eq!(found.message, serde_json::from_str::<Value>(&e.payload).unwrap(), "{}", e.message_id);
    }
}

pub async fn processing_creates_people_accounts_and_traits<S: Store>(s: &S) {
    let ws = workspace(s, "Proc").await;
    s.append_events(
        &ws,
        &events(json!([
            {"type": "identify", "messageId": "i1", "userId": "u1", "anonymousId": "anon-1",
             "traits": {"email": "ana@acme.test"}, "timestamp": t(1, 9).to_rfc3339()},
            {"type": "group", "messageId": "g1", "userId": "u1", "groupId": "acme",
             "traits": {"name": "Acme", "plan": "pro"}, "timestamp": t(1, 9).to_rfc3339()},
            track("e1", "u1", "Report Created", 2),
        ])),
    )
    .await
    .unwrap();
    let log = s.read_log(&ws, LogPosition::ZERO, 10).await.unwrap();
    let p = "p_ana".to_string();
    let mut ops = person_ops(&p, "u1", t(1, 9));
    ops.extend([
        Op::LinkIdentity { key: IdentityKey::anonymous("anon-1"), person_id: p.clone() },
        Op::SetPersonTraits { person_id: p.clone(), traits: obj(json!({"email": "ana@acme.test"})), at: t(1, 9) },
        Op::UpsertAccount { account_id: acct("acme"), at: t(1, 9) },
        Op::SetAccountTraits {
            account_id: acct("acme"),
            traits: obj(json!({"name": "Acme", "plan": "pro"})),
            at: t(1, 9),
        },
        Op::AddMembership { person_id: p.clone(), account_id: acct("acme"), at: t(1, 9) },
        Op::AddMembership { person_id: p.clone(), account_id: acct("acme"), at: t(1, 9) },
        Op::Seen { person_id: Some(p.clone()), account_id: Some(acct("acme")), first: t(1, 9), last: t(1, 9) },
        Op::Seen { person_id: Some(p.clone()), account_id: None, first: t(2, 10), last: t(2, 10) },
        Op::SetAccountTraits { account_id: acct("acme"), traits: obj(json!({"plan": "enterprise"})), at: t(3, 9) },
    ]);
    let changes = Changes {
        ops,
        event_people: log.iter().map(|e| EventPerson::of(e, p.clone())).collect(),
        ..Default::default()
    };
    assert!(s.apply_changes(&ws, LogPosition::ZERO, log[2].position, &changes).await.unwrap());

    let known = s
        .load_identities(&ws, &[IdentityKey::user("u1"), IdentityKey::anonymous("anon-1"), IdentityKey::user("nobody")])
        .await
        .unwrap();
    assert_eq!(known.len(), 2);
    assert!(known.iter().all(|(_, k)| k == &KnownPerson { person_id: p.clone(), user_id: Some("u1".into()) }));

    for id in ["p_ana", "u1", "anon-1"] {
        let person = s.get_person(&ws, id).await.unwrap().unwrap_or_else(|| panic!("person by {id}"));
        assert_eq!(person.person_id, p);
        assert_eq!(person.user_ids, ["u1"]);
        assert_eq!(person.anonymous_ids, ["anon-1"]);
        assert_eq!(person.account_ids, [acct("acme")]);
        assert_eq!(person.traits, json!({"email": "ana@acme.test"}));
        assert_eq!((person.first_seen_at, person.last_seen_at), (Some(t(1, 9)), Some(t(2, 10))));
    }
    let account = s.get_account(&ws, &acct("acme")).await.unwrap().unwrap();
    assert_eq!(account.name.as_deref(), Some("Acme"));
    assert_eq!(account.traits, json!({"name": "Acme", "plan": "enterprise"}));
    assert_eq!(account.people_count, 1);
    assert_eq!((account.first_seen_at, account.last_seen_at), (Some(t(1, 9)), Some(t(2, 10))));
    let people = s.account_people(&ws, &acct("acme"), &PageRequest::first(10)).await.unwrap();
    assert_eq!(people.items.iter().map(|p| p.person_id.as_str()).collect::<Vec<_>>(), ["p_ana"]);

    let timeline = s.account_timeline(&ws, &acct("acme"), &PageRequest::first(10)).await.unwrap();
    let ids: Vec<_> = timeline.items.iter().map(|e| e.message_id.as_str()).collect();
    assert_eq!(ids, ["e1", "g1", "i1"], "newest first; the person's events count for the account");
    assert!(timeline.items.iter().all(|e| e.account_ids == [acct("acme")] && e.person_id.as_deref() == Some("p_ana")));

    let history = s.trait_history(&ws, &TraitSubject::Account(acct("acme"))).await.unwrap();
    let plan: Vec<_> = history.iter().filter(|c| c.key == "plan").map(|c| (c.value.clone(), c.at)).collect();
    assert_eq!(plan, [(json!("pro"), t(1, 9)), (json!("enterprise"), t(3, 9))]);
    assert_eq!(s.log_status(&ws).await.unwrap().pending_events, 0);
}

pub async fn apply_changes_is_compare_and_set<S: Store>(s: &S) {
    let ws = workspace(s, "Cas").await;
    s.append_events(&ws, &events(json!([track("a", "u", "x", 1)]))).await.unwrap();
    let to = s.read_log(&ws, LogPosition::ZERO, 10).await.unwrap()[0].position;
    let changes = Changes { ops: person_ops("p_1", "u", t(1, 1)), event_people: vec![], ..Default::default() };
    assert!(s.apply_changes(&ws, LogPosition::ZERO, to, &changes).await.unwrap());
    let again = Changes { ops: person_ops("p_2", "u2", t(1, 1)), event_people: vec![], ..Default::default() };
    assert!(!s.apply_changes(&ws, LogPosition::ZERO, to, &again).await.unwrap(), "a stale cursor applies nothing");
    assert!(s.get_person(&ws, "p_2").await.unwrap().is_none());
    assert_eq!(s.log_status(&ws).await.unwrap().cursor, to);
}

pub async fn merging_people_moves_everything<S: Store>(s: &S) {
    let ws = workspace(s, "Merge").await;
    s.append_events(&ws, &events(json!([
        {"type": "track", "messageId": "anon-ev", "anonymousId": "a1", "event": "Visited", "timestamp": t(1, 8).to_rfc3339()},
        track("user-ev", "u1", "Signed In", 2),
    ]))).await.unwrap();
    let log = s.read_log(&ws, LogPosition::ZERO, 10).await.unwrap();
    let mut ops = vec![
        Op::CreatePerson { person_id: "p_anon".into(), user_id: None, at: t(1, 8) },
        Op::LinkIdentity { key: IdentityKey::anonymous("a1"), person_id: "p_anon".into() },
        Op::SetPersonTraits {
            person_id: "p_anon".into(),
            traits: obj(json!({"utm": "ads", "plan": "free"})),
            at: t(1, 8),
        },
        Op::UpsertAccount { account_id: acct("beta"), at: t(1, 8) },
        Op::AddMembership { person_id: "p_anon".into(), account_id: acct("beta"), at: t(1, 8) },
        Op::Seen { person_id: Some("p_anon".into()), account_id: None, first: t(1, 8), last: t(1, 8) },
    ];
    ops.extend(person_ops("p_user", "u1", t(2, 10)));
    ops.push(Op::SetPersonTraits { person_id: "p_user".into(), traits: obj(json!({"plan": "pro"})), at: t(2, 10) });
    let first = Changes {
        ops,
        event_people: vec![EventPerson::of(&log[0], "p_anon"), EventPerson::of(&log[1], "p_user")],
        ..Default::default()
    };
    assert!(s.apply_changes(&ws, LogPosition::ZERO, log[1].position, &first).await.unwrap());

    s.append_events(&ws, &events(json!([{"type": "alias", "messageId": "al", "userId": "u1", "previousId": "a1"}])))
        .await
        .unwrap();
    let alias = s.read_log(&ws, log[1].position, 10).await.unwrap();
    let merge = Changes {
        ops: vec![Op::MergePeople { from: "p_anon".into(), into: "p_user".into(), at: t(3, 1) }],
        event_people: vec![EventPerson::of(&alias[0], "p_user")],
        ..Default::default()
    };
    assert!(s.apply_changes(&ws, log[1].position, alias[0].position, &merge).await.unwrap());

    assert!(s.get_person(&ws, "p_anon").await.unwrap().is_none());
    let p = s.get_person(&ws, "a1").await.unwrap().expect("the anonymous id now names the merged person");
    assert_eq!(p.person_id, "p_user");
    assert_eq!((p.user_ids.as_slice(), p.anonymous_ids.as_slice()), (&["u1".to_string()][..], &["a1".to_string()][..]));
    assert_eq!(p.traits, json!({"plan": "pro", "utm": "ads"}), "the surviving person's traits win");
    assert_eq!(p.account_ids, [acct("beta")]);
    assert_eq!(p.first_seen_at, Some(t(1, 8)));
    let evs = all_events(s, &ws, &EventFilter { account_id: Some(acct("beta")), ..Default::default() }).await;
    let mut ids: Vec<_> = evs.iter().map(|e| e.message_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["al", "anon-ev", "user-ev"]);
    assert!(evs.iter().all(|e| e.person_id.as_deref() == Some("p_user")));
    let known = s.load_identities(&ws, &[IdentityKey::anonymous("a1")]).await.unwrap();
    assert_eq!(known[0].1.person_id, "p_user");
    assert_eq!(s.get_account(&ws, &acct("beta")).await.unwrap().unwrap().people_count, 1);
}

pub async fn reset_processing_rewinds<S: Store>(s: &S) {
    let ws = workspace(s, "Reset").await;
    s.append_events(&ws, &events(json!([track("a", "u", "x", 1)]))).await.unwrap();
    let log = s.read_log(&ws, LogPosition::ZERO, 10).await.unwrap();
    let mut ops = person_ops("p_1", "u", t(1, 1));
    ops.push(Op::UpsertAccount { account_id: acct("acme"), at: t(1, 1) });
    ops.push(Op::AddMembership { person_id: "p_1".into(), account_id: acct("acme"), at: t(1, 1) });
    let changes = Changes { ops, event_people: vec![EventPerson::of(&log[0], "p_1")], ..Default::default() };
    assert!(s.apply_changes(&ws, LogPosition::ZERO, log[0].position, &changes).await.unwrap());
    s.reset_processing(&ws).await.unwrap();
    assert!(s.get_person(&ws, "u").await.unwrap().is_none());
    assert!(s.get_account(&ws, &acct("acme")).await.unwrap().is_none());
    assert!(s.load_identities(&ws, &[IdentityKey::user("u")]).await.unwrap().is_empty());
    let status = s.log_status(&ws).await.unwrap();
    assert_eq!((status.cursor, status.pending_events, status.total_events), (LogPosition::ZERO, 1, 1));
    let evs = all_events(s, &ws, &EventFilter::default()).await;
    assert_eq!((evs.len(), evs[0].person_id.clone()), (1, None), "the log itself is kept");
}

pub async fn event_filters_and_pages<S: Store>(s: &S) {
    let ws = workspace(s, "Filters").await;
    let mut msgs = Vec::new();
    for i in 0..120u32 {
        let user = format!("u{}", i % 3);
        let day = 1 + i % 28;
        msgs.push(match i % 4 {
            0 => json!({"type": "page", "messageId": format!("m{i}"), "userId": user, "name": "Home", "timestamp": t(day, 9).to_rfc3339()}),
            _ => track(&format!("m{i}"), &user, "Clicked", day),
        });
    }
    s.append_events(&ws, &events(Value::Array(msgs))).await.unwrap();

    let mut seen = Vec::new();
    let mut page = PageRequest::first(50);
    let mut pages = 0;
    loop {
        let p = s.list_events(&ws, &EventFilter::default(), &page).await.unwrap();
        pages += 1;
        assert!(p.items.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
        seen.extend(p.items.into_iter().map(|e| e.message_id));
        match p.next {
            Some(c) => page.after = Some(Cursor::decode(&c.encode()).unwrap()),
            None => break,
        }
    }
    assert_eq!((pages, seen.len()), (3, 120));
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 120);

    let ws_ref = &ws;
    let count = |f: EventFilter| async move { all_events(s, ws_ref, &f).await };
    assert_eq!(count(EventFilter { kind: Some(EventType::Page), ..Default::default() }).await.len(), 30);
    assert_eq!(count(EventFilter { user_id: Some("u1".into()), ..Default::default() }).await.len(), 40);
    let one = count(EventFilter { message_id: Some("m7".into()), ..Default::default() }).await;
    assert_eq!((one.len(), one[0].user_id.as_deref()), (1, Some("u1")));
    let ranged = count(EventFilter { since: Some(t(1, 0)), until: Some(t(3, 0)), ..Default::default() }).await;
    assert!(ranged.iter().all(|e| e.timestamp >= t(1, 0) && e.timestamp < t(3, 0)));
    assert_eq!(ranged.len(), 10, "days 1 and 2: i % 28 in {{0, 1}} over 120 messages");
    let bad = PageRequest { limit: 10, after: Some(Cursor(vec!["not-a-number".into()])) };
    assert!(matches!(s.list_events(&ws, &EventFilter::default(), &bad).await, Err(StoreError::InvalidCursor)));
}

/// Filters by type and time over many separate appends (a backend may summarise or index
/// each append; none of them may be missed at a boundary).
pub async fn filters_find_events_of_every_append<S: Store>(s: &S) {
    let ws = workspace(s, "Appends").await;
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let just_before_day_11 = at(t(11, 0) - chrono::Duration::milliseconds(1));
    let appends = [
        json!([{"type": "page", "messageId": "a-page", "userId": "u", "name": "Home", "timestamp": at(t(1, 9))}]),
        json!([track("b-track", "u", "Clicked", 5), track("b-track-2", "u", "Clicked", 6)]),
        json!([{"type": "identify", "messageId": "c-identify", "userId": "u", "timestamp": just_before_day_11}]),
        json!([{"type": "track", "messageId": "d-day-11", "userId": "u", "event": "Opened", "timestamp": at(t(11, 0))}]),
        json!([track("e-track", "u", "Clicked", 20),
               {"type": "alias", "messageId": "e-alias", "userId": "u", "previousId": "old", "timestamp": at(t(21, 9))}]),
    ];
    for messages in appends {
        s.append_events(&ws, &events(messages)).await.unwrap();
    }
    let ids = |f: EventFilter| {
        let ws = &ws;
        async move {
            let mut ids: Vec<String> = all_events(s, ws, &f).await.into_iter().map(|e| e.message_id).collect();
            ids.sort();
            ids
        }
    };
    let kind = |k| EventFilter { kind: Some(k), ..Default::default() };
    assert_eq!(ids(kind(EventType::Page)).await, ["a-page"]);
    assert_eq!(ids(kind(EventType::Identify)).await, ["c-identify"]);
    assert_eq!(ids(kind(EventType::Alias)).await, ["e-alias"]);
    assert_eq!(ids(kind(EventType::Track)).await, ["b-track", "b-track-2", "d-day-11", "e-track"]);
    assert!(ids(kind(EventType::Screen)).await.is_empty());
    let range =
        |since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>| EventFilter { since, until, ..Default::default() };
    assert_eq!(ids(range(Some(t(6, 10)), Some(t(11, 0)))).await, ["b-track-2", "c-identify"]);
    assert_eq!(ids(range(Some(t(11, 0)), Some(t(20, 10)))).await, ["d-day-11"]);
    assert_eq!(ids(range(Some(t(20, 10)), None)).await, ["e-alias", "e-track"]);
    assert_eq!(ids(range(None, Some(t(5, 10)))).await, ["a-page"]);
    let late_tracks = EventFilter { kind: Some(EventType::Track), since: Some(t(10, 0)), ..Default::default() };
    assert_eq!(ids(late_tracks).await, ["d-day-11", "e-track"]);
}

pub async fn explicit_account_wins_over_membership<S: Store>(s: &S) {
    let ws = workspace(s, "Attribution").await;
    s.append_events(&ws, &events(json!([
        {"type": "track", "messageId": "for-a", "userId": "u", "event": "x", "context": {"groupId": "a"}, "timestamp": t(1, 1).to_rfc3339()},
        track("for-both", "u", "y", 2),
    ]))).await.unwrap();
    let log = s.read_log(&ws, LogPosition::ZERO, 10).await.unwrap();
    let mut ops = person_ops("p", "u", t(1, 1));
    for a in ["a", "b"] {
        ops.push(Op::UpsertAccount { account_id: acct(a), at: t(1, 1) });
        ops.push(Op::AddMembership { person_id: "p".into(), account_id: acct(a), at: t(1, 1) });
    }
    let changes =
        Changes { ops, event_people: log.iter().map(|e| EventPerson::of(e, "p")).collect(), ..Default::default() };
    assert!(s.apply_changes(&ws, LogPosition::ZERO, log[1].position, &changes).await.unwrap());
    let ids = |p: Page<StoredEvent>| p.items.into_iter().map(|e| e.message_id).collect::<Vec<_>>();
    assert_eq!(ids(s.account_timeline(&ws, &acct("a"), &PageRequest::first(10)).await.unwrap()), ["for-both", "for-a"]);
    assert_eq!(ids(s.account_timeline(&ws, &acct("b"), &PageRequest::first(10)).await.unwrap()), ["for-both"]);
    let both = all_events(s, &ws, &EventFilter { message_id: Some("for-both".into()), ..Default::default() }).await;
    assert_eq!(both[0].account_ids, [acct("a"), acct("b")]);
    let only_a = all_events(s, &ws, &EventFilter { message_id: Some("for-a".into()), ..Default::default() }).await;
    assert_eq!(only_a[0].account_ids, [acct("a")]);
}

pub async fn billing_and_support_records_keep_the_newest<S: Store>(s: &S) {
    let ws = workspace(s, "Billing").await;
    let usd = Currency::parse("usd").unwrap();
    let sub = Subscription {
        subscription_id: "sub_1".into(),
        account_id: acct("acme"),
        plan: Some("pro".into()),
        status: SubscriptionStatus::Active,
        mrr: Money::new(9_900, usd),
        quantity: 3,
        started_at: t(1, 0),
        ended_at: None,
        current_period_end: Some(t(31, 0)),
        cancel_at_period_end: false,
        updated_at: t(2, 0),
        attributes: json!({"source": "test"}),
    };
    assert!(s.upsert_subscription(&ws, &sub).await.unwrap());
    let newer = Subscription {
        status: SubscriptionStatus::Canceled,
        ended_at: Some(t(5, 0)),
        updated_at: t(5, 0),
        ..sub.clone()
    };
    let stale = Subscription { quantity: 99, updated_at: t(3, 0), ..sub.clone() };
    assert!(s.upsert_subscription(&ws, &newer).await.unwrap());
    assert!(!s.upsert_subscription(&ws, &stale).await.unwrap(), "an older update arriving late is ignored");
    assert_eq!(s.account_subscriptions(&ws, &acct("acme")).await.unwrap(), vec![newer]);

    let ticket = Ticket {
        ticket_id: "t_1".into(),
        account_id: Some(acct("acme")),
        person_id: None,
        subject: "Export fails".into(),
        status: TicketStatus::Open,
        priority: TicketPriority::High,
        opened_at: t(4, 0),
        first_response_at: None,
        resolved_at: None,
        csat: None,
        updated_at: t(4, 0),
        attributes: json!({}),
    };
    assert!(s.upsert_ticket(&ws, &ticket).await.unwrap());
    let solved = Ticket {
        status: TicketStatus::Solved,
        resolved_at: Some(t(6, 0)),
        csat: Some(5),
        updated_at: t(6, 0),
        ..ticket.clone()
    };
    assert!(s.upsert_ticket(&ws, &solved).await.unwrap());
    assert!(!s.upsert_ticket(&ws, &ticket).await.unwrap());
    assert_eq!(s.account_tickets(&ws, &acct("acme")).await.unwrap(), vec![solved]);
    let other = workspace(s, "Other").await;
    assert!(s.account_subscriptions(&other, &acct("acme")).await.unwrap().is_empty());
    assert!(s.account_tickets(&other, &acct("acme")).await.unwrap().is_empty());
}

pub async fn workspaces_are_isolated<S: Store>(s: &S) {
    let a = workspace(s, "A").await;
    let b = workspace(s, "B").await;
    let batch = events(json!([track("same-id", "u", "x", 1)]));
    assert_eq!(s.append_events(&a, &batch).await.unwrap().stored, 1);
    assert_eq!(s.append_events(&b, &batch).await.unwrap().stored, 1, "message ids are unique per workspace");
    let log = s.read_log(&a, LogPosition::ZERO, 10).await.unwrap();
    let mut ops = person_ops("p", "u", t(1, 1));
    ops.push(Op::UpsertAccount { account_id: acct("acme"), at: t(1, 1) });
    ops.push(Op::AddMembership { person_id: "p".into(), account_id: acct("acme"), at: t(1, 1) });
    process(s, &a, Changes { ops, event_people: vec![EventPerson::of(&log[0], "p")], ..Default::default() }).await;

    assert!(s.get_person(&b, "u").await.unwrap().is_none());
    assert!(s.get_person(&b, "p").await.unwrap().is_none());
    assert!(s.get_account(&b, &acct("acme")).await.unwrap().is_none());
    assert!(s.list_accounts(&b, &PageRequest::first(10)).await.unwrap().items.is_empty());
    assert!(s.load_identities(&b, &[IdentityKey::user("u")]).await.unwrap().is_empty());
    assert!(s.account_timeline(&b, &acct("acme"), &PageRequest::first(10)).await.unwrap().items.is_empty());
    assert_eq!(s.read_log(&b, LogPosition::ZERO, 10).await.unwrap().len(), 1);
    assert_eq!(s.log_status(&b).await.unwrap().pending_events, 1);
    assert_eq!(all_events(s, &b, &EventFilter::default()).await[0].person_id, None);
    assert_eq!(s.log_status(&a).await.unwrap().pending_events, 0);
    assert_eq!(s.get_person(&a, "u").await.unwrap().unwrap().person_id, "p");
    let _ = IdKind::User;
}

pub async fn account_list_pages_in_order<S: Store>(s: &S) {
    let ws = workspace(s, "Accounts").await;
    let ops: Vec<Op> = (0..25)
        .map(|i| Op::UpsertAccount { account_id: acct(&format!("acct_{i:02}")), at: t(1, 1) + Duration::hours(i) })
        .collect();
    process(s, &ws, Changes { ops, event_people: vec![], ..Default::default() }).await;
    let mut page = PageRequest::first(10);
    let mut ids = Vec::new();
    loop {
        let p = s.list_accounts(&ws, &page).await.unwrap();
        ids.extend(p.items.into_iter().map(|a| a.account_id.to_string()));
        match p.next {
            Some(c) => page.after = Some(c),
            None => break,
        }
    }
    let expected: Vec<_> = (0..25).map(|i| format!("acct_{i:02}")).collect();
    assert_eq!(ids, expected);

    // Records for conditions: the same accounts in the same pages, with the traits named (and
    // the name) only, and no people counted.
    let traits = obj(json!({"name": "Acme", "plan": "pro", "region": "EMEA", "nested": {"plan": "x"},
        "tags": ["a", "b"], "seats": 12}));
    let ops = vec![
        Op::SetAccountTraits { account_id: acct("acct_03"), traits, at: t(2, 1) },
        Op::AddMembership { person_id: "p_1".into(), account_id: acct("acct_03"), at: t(2, 1) },
    ];
    process(s, &ws, Changes { ops, event_people: vec![], ..Default::default() }).await;
    let full = s.get_account(&ws, &acct("acct_03")).await.unwrap().unwrap();
    assert_eq!(full.people_count, 1);
    let named = ["seats".to_owned(), "plan".to_owned(), "missing".to_owned()];
    let mut page = PageRequest::first(10);
    let mut records = Vec::new();
    loop {
        let p = s.list_account_records(&ws, &page, &named).await.unwrap();
        records.extend(p.items);
        match p.next {
            Some(c) => page.after = Some(c),
            None => break,
        }
    }
    assert_eq!(records.iter().map(|a| a.account_id.to_string()).collect::<Vec<_>>(), expected);
    let acme = &records[3];
    assert_eq!(acme.traits, json!({"name": "Acme", "plan": "pro", "seats": 12}));
    assert_eq!((acme.name.as_deref(), acme.people_count), (Some("Acme"), 0));
    assert_eq!(
        (acme.first_seen_at, acme.last_seen_at, acme.created_at),
        (full.first_seen_at, full.last_seen_at, full.created_at)
    );
    assert_eq!(records[4].traits, json!({}), "an account without traits");
}

/// What the read API shows of a workspace's events: every event with its person and accounts,
/// those of each user and account filter, and each account's timeline.
async fn event_views<S: Store>(s: &S, ws: &WorkspaceId) -> Vec<Vec<(String, Option<String>, Vec<AccountId>)>> {
    let view =
        |evs: Vec<StoredEvent>| evs.into_iter().map(|e| (e.message_id, e.person_id, e.account_ids)).collect::<Vec<_>>();
    let mut views = vec![view(all_events(s, ws, &EventFilter::default()).await)];
    for user in ["u1", "u2"] {
        let filter = EventFilter { user_id: Some(user.into()), ..Default::default() };
        views.push(view(all_events(s, ws, &filter).await));
    }
    for account in ["acme", "beta"] {
        let filter = EventFilter { account_id: Some(acct(account)), ..Default::default() };
        views.push(view(all_events(s, ws, &filter).await));
        let mut timeline = Vec::new();
        let mut page = PageRequest::first(2);
        loop {
            let p = s.account_timeline(ws, &acct(account), &page).await.unwrap();
            timeline.extend(p.items);
            match p.next {
                Some(c) => page.after = Some(c),
                None => break,
            }
        }
        views.push(view(timeline));
    }
    views
}

/// Backends may index processed events later, in bulk ([`Store::maintain`]); the reads are
/// the same before and after, including across a merge of people.
pub async fn reads_agree_before_and_after_maintenance<S: Store>(s: &S) {
    let ws = workspace(s, "Maintain").await;
    let with_group = |id: &str, user: &str, group: &str, day: u32| {
        json!({"type": "track", "messageId": id, "userId": user, "event": "Used",
               "context": {"groupId": group}, "timestamp": t(day, 10).to_rfc3339()})
    };
    s.append_events(&ws, &events(json!([
        with_group("e1", "u1", "acme", 1),
        with_group("e2", "u2", "beta", 2),
        track("e3", "u1", "Plain", 3),
        {"type": "page", "messageId": "e4", "anonymousId": "a1", "name": "Pricing", "timestamp": t(4, 10).to_rfc3339()},
        with_group("e5", "u1", "beta", 5),
        track("e6", "u2", "Plain", 6),
    ]))).await.unwrap();
    let log = s.read_log(&ws, LogPosition::ZERO, 10).await.unwrap();
    let mut ops = person_ops("p1", "u1", t(1, 10));
    ops.extend(person_ops("p2", "u2", t(2, 10)));
    ops.push(Op::CreatePerson { person_id: "p_anon".into(), user_id: None, at: t(4, 10) });
    ops.push(Op::LinkIdentity { key: IdentityKey::anonymous("a1"), person_id: "p_anon".into() });
    for (person, account) in [("p1", "acme"), ("p2", "beta"), ("p1", "beta")] {
        ops.push(Op::UpsertAccount { account_id: acct(account), at: t(1, 10) });
        ops.push(Op::AddMembership { person_id: person.into(), account_id: acct(account), at: t(1, 10) });
    }
    let owners = ["p1", "p2", "p1", "p_anon", "p1", "p2"];
    let event_people = log.iter().zip(owners).map(|(e, p)| EventPerson::of(e, p)).collect();
    process(s, &ws, Changes { ops, event_people, ..Default::default() }).await;

    let before = event_views(s, &ws).await;
    let ids = |v: &Vec<(String, Option<String>, Vec<AccountId>)>| v.iter().map(|e| e.0.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&before[0]), ["e6", "e5", "e4", "e3", "e2", "e1"]);
    assert_eq!(ids(&before[1]), ["e5", "e3", "e1"], "u1's events");
    assert_eq!(ids(&before[3]), ["e3", "e1"], "acme: named, or u1's naming no account");
    assert_eq!(ids(&before[4]), ["e3", "e1"], "acme's timeline");
    assert_eq!(ids(&before[6]), ["e6", "e5", "e3", "e2"], "beta's timeline");
    assert_eq!(before[0][2], ("e4".to_string(), Some("p_anon".to_string()), vec![]));
    while s.maintain(&ws, true).await.unwrap() {}
    assert_eq!(event_views(s, &ws).await, before, "the same after maintenance");

    // The anonymous visitor turns out to be u1: their page view moves to u1's person and
    // accounts, whether or not it was indexed under the person it had.
    s.append_events(
        &ws,
        &events(json!([{"type": "alias", "messageId": "al", "userId": "u1", "previousId": "a1",
                                           "timestamp": t(7, 10).to_rfc3339()}])),
    )
    .await
    .unwrap();
    let alias = s.read_log(&ws, log[5].position, 10).await.unwrap();
    let merge = Changes {
        ops: vec![Op::MergePeople { from: "p_anon".into(), into: "p1".into(), at: t(7, 10) }],
        event_people: vec![EventPerson::of(&alias[0], "p1")],
        ..Default::default()
    };
    process(s, &ws, merge).await;
    let merged = event_views(s, &ws).await;
    let e4 = merged[0].iter().find(|e| e.0 == "e4").unwrap();
    assert_eq!(e4, &("e4".to_string(), Some("p1".to_string()), vec![acct("acme"), acct("beta")]));
    assert_eq!(ids(&merged[4]), ["al", "e4", "e3", "e1"], "acme's timeline has the merged visitor's events");
    while s.maintain(&ws, true).await.unwrap() {}
    assert_eq!(event_views(s, &ws).await, merged, "the same after maintenance");
}

pub async fn usage_rollups_count_events_and_people_per_day<S: Store>(s: &S) {
    use chrono::NaiveDate;
    let ws = workspace(s, "Usage").await;
    let other = workspace(s, "Other").await;
    let day = |m: u32, d: u32| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
    let usage = |person: &str, account: Option<&str>, d: NaiveDate, events: u32| Usage {
        person_id: person.into(),
        day: d,
        metric: "report".into(),
        credit: match account {
            Some(a) => Credit::Named(acct(a)),
            None => Credit::Members { people: vec![person.into()], joined: vec![] },
        },
        events,
    };
    let mut ops = person_ops("p1", "u1", t(1, 1));
    ops.extend(person_ops("p2", "u2", t(1, 1)));
    ops.extend(person_ops("p3", "u3", t(1, 1)));
    ops.push(Op::UpsertAccount { account_id: acct("acme"), at: t(1, 1) });
    for p in ["p1", "p2", "p3"] {
        ops.push(Op::AddMembership { person_id: p.into(), account_id: acct("acme"), at: t(1, 1) });
    }
    process(s, &ws, Changes { ops, ..Default::default() }).await;
    // p1 names no account (so counts for acme, its account before the slice), p2 names acme;
    // p3 is active the next day; a person in no account counts nowhere.
    s.append_events(&ws, &events(json!([track("e0", "u1", "report", 1)]))).await.unwrap();
    let first = vec![
        usage("p1", None, day(10, 31), 2),
        usage("p2", Some("acme"), day(10, 31), 1),
        usage("p3", Some("acme"), day(11, 1), 1),
        usage("nobody", None, day(11, 1), 1),
    ];
    process(s, &ws, Changes { usage: first, ..Default::default() }).await;
    // A later slice: p1 again on the same day, naming acme: more events, no new person.
    s.append_events(&ws, &events(json!([track("e1", "u1", "report", 1)]))).await.unwrap();
    process(s, &ws, Changes { usage: vec![usage("p1", Some("acme"), day(10, 31), 3)], ..Default::default() }).await;

    let days = |v: Vec<DailyUsage>| v.into_iter().map(|d| (d.day, d.events, d.users)).collect::<Vec<_>>();
    let october = s.account_usage(&ws, &acct("acme"), day(10, 1), day(11, 1)).await.unwrap();
    assert!(october.iter().all(|d| d.metric == "report" && d.account_id == acct("acme")));
    assert_eq!(days(october), [(day(10, 31), 6, 2)]);
    let november = s.account_usage(&ws, &acct("acme"), day(11, 1), day(12, 1)).await.unwrap();
    assert_eq!(days(november), [(day(11, 1), 1, 1)], "[from, to) by day, across months");
    let all = s.accounts_usage(&ws, None, day(1, 1), day(12, 31)).await.unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        s.accounts_usage(&other, None, day(1, 1), day(12, 31)).await.unwrap().is_empty(),
        "workspaces are isolated"
    );
    assert_eq!(s.accounts_usage(&ws, Some(&acct("acme")), day(1, 1), day(12, 31)).await.unwrap(), all);
    assert!(s.accounts_usage(&ws, Some(&acct("nobody")), day(1, 1), day(12, 31)).await.unwrap().is_empty());
    assert!(all.iter().all(|r| r.people.is_empty()), "people are kept for the any-metric only");
    // Each account for its own months: acme's October alone, nothing of an unknown account.
    let each = s
        .accounts_usage_each(&ws, &[(acct("nobody"), day(1, 1), day(12, 31)), (acct("acme"), day(10, 5), day(10, 19))])
        .await
        .unwrap();
    assert_eq!(each, all[..1], "{each:?}");
    let november = s.accounts_usage_each(&ws, &[(acct("acme"), day(11, 1), day(11, 15))]).await.unwrap();
    assert_eq!(november, all[1..]);
    assert!(s.accounts_usage_each(&other, &[(acct("acme"), day(1, 1), day(12, 31))]).await.unwrap().is_empty());
    assert!(s.accounts_usage_each(&ws, &[]).await.unwrap().is_empty());
    // p2 turns out to be p1: on the 31st they are one person active.
    process(
        s,
        &ws,
        Changes {
            ops: vec![Op::MergePeople { from: "p2".into(), into: "p1".into(), at: t(2, 1) }],
            ..Default::default()
        },
    )
    .await;
    let october = s.account_usage(&ws, &acct("acme"), day(10, 1), day(11, 1)).await.unwrap();
    assert_eq!(days(october), [(day(10, 31), 6, 1)]);
    // The any-metric's rows keep who was active, for distinct people over any window.
    let any = Usage { metric: usage::ANY.into(), ..usage("p1", Some("acme"), day(11, 2), 1) };
    s.append_events(&ws, &events(json!([track("e-any", "u1", "report", 2)]))).await.unwrap();
    process(s, &ws, Changes { usage: vec![any], ..Default::default() }).await;
    let rows = s.accounts_usage(&ws, Some(&acct("acme")), day(11, 1), day(12, 1)).await.unwrap();
    let any_row = rows.iter().find(|r| r.metric == usage::ANY).unwrap();
    assert_eq!(any_row.people, [(usage::person_key("p1"), 1 << 1)], "p1 on the 2nd");

    s.reset_processing(&ws).await.unwrap();
    assert!(s.accounts_usage(&ws, None, day(1, 1), day(12, 31)).await.unwrap().is_empty(), "a replay starts over");
}

/// A score of `account` on `day`, its band from its health (healthy from 70, at risk below 40),
/// the longer risks and the expansion drawn from `churn`.
pub fn score(account: &str, day: &str, health: f64, churn: Option<f64>, mrr: Option<i64>) -> AccountScore {
    let band = if health >= 70.0 {
        HealthBand::Healthy
    } else if health < 40.0 {
        HealthBand::AtRisk
    } else {
        HealthBand::Neutral
    };
    AccountScore {
        account_id: acct(account),
        day: day.parse().unwrap(),
        health,
        band,
        churn_30d: churn,
        churn_60d: churn.map(|c| (c * 1.5).min(1.0)),
        churn_90d: churn.map(|c| (c * 2.0).min(1.0)),
        expansion: churn.map(|c| 1.0 - c),
        mrr: mrr.map(|m| Money::new(m, Currency::parse("USD").unwrap())),
        components: json!({"usage": health / 2.0, "engagement": health / 2.0}),
        explanation: JsonText::from_value(&json!({"components": [{"component": "usage", "points": health / 2.0}]})),
        scored_at: t(2, 3),
    }
}

async fn accounts_named<S: Store>(s: &S, ws: &WorkspaceId, ids: &[&str]) {
    let ops: Vec<Op> = ids.iter().map(|id| Op::UpsertAccount { account_id: acct(id), at: t(1, 1) }).collect();
    process(s, ws, Changes { ops, event_people: vec![], ..Default::default() }).await;
}

pub async fn scores_keep_the_latest_and_a_daily_history<S: Store>(s: &S) {
    let ws = workspace(s, "Scores").await;
    let other = workspace(s, "Other").await;
    accounts_named(s, &ws, &["a", "b"]).await;
    let first = score("a", "2026-10-01", 80.0, Some(0.1), Some(5000));
    s.put_scores(&ws, &[first.clone(), score("b", "2026-10-01", 30.0, None, None)]).await.unwrap();
    assert_eq!(s.account_score(&ws, &acct("a")).await.unwrap(), Some(first.clone()));
    assert_eq!(s.account_score(&other, &acct("a")).await.unwrap(), None, "workspaces never share scores");
    // A later day replaces the latest and adds to the history; a rerun of a day replaces it.
    let second = score("a", "2026-10-02", 55.0, Some(0.4), Some(5000));
    s.put_scores(&ws, std::slice::from_ref(&second)).await.unwrap();
    let rerun = score("a", "2026-10-02", 50.0, Some(0.5), Some(4000));
    s.put_scores(&ws, std::slice::from_ref(&rerun)).await.unwrap();
    // An earlier day (a backfill) goes to the history only.
    s.put_scores(&ws, &[score("a", "2026-09-30", 90.0, Some(0.05), Some(5000))]).await.unwrap();
    assert_eq!(s.account_score(&ws, &acct("a")).await.unwrap(), Some(rerun.clone()));
    let history =
        s.score_history(&ws, &acct("a"), "2026-09-01".parse().unwrap(), "2026-11-01".parse().unwrap()).await.unwrap();
    let days: Vec<(String, f64)> = history.iter().map(|p| (p.day.to_string(), p.health)).collect();
    assert_eq!(days, [("2026-09-30".into(), 90.0), ("2026-10-01".into(), 80.0), ("2026-10-02".into(), 50.0)]);
    assert_eq!(history[2], rerun.point());
    let window =
        s.score_history(&ws, &acct("a"), "2026-10-01".parse().unwrap(), "2026-10-02".parse().unwrap()).await.unwrap();
    assert_eq!(window.len(), 1, "[from, to)");
    assert!(
        s.score_history(&other, &acct("a"), chrono::NaiveDate::MIN, chrono::NaiveDate::MAX).await.unwrap().is_empty()
    );
}

/// One call may hold several scores of one account (a backfill of days, say): they are
/// stored as if written one after the other.
pub async fn scores_of_one_account_in_one_call<S: Store>(s: &S) {
    let ws = workspace(s, "Backfill").await;
    accounts_named(s, &ws, &["a", "b"]).await;
    let batch = [
        score("a", "2026-10-01", 70.0, Some(0.2), Some(5000)),
        score("a", "2026-10-03", 60.0, Some(0.3), Some(5000)),
        score("b", "2026-10-03", 40.0, None, None),
        score("a", "2026-10-02", 65.0, Some(0.25), Some(5000)),
        score("a", "2026-10-03", 58.0, Some(0.35), Some(4000)),
        score("a", "2026-10-01", 72.0, Some(0.2), Some(5000)),
    ];
    s.put_scores(&ws, &batch).await.unwrap();
    // The latest day's last score is the account's score; each day keeps its last.
    assert_eq!(s.account_score(&ws, &acct("a")).await.unwrap(), Some(batch[4].clone()));
    assert_eq!(s.account_score(&ws, &acct("b")).await.unwrap(), Some(batch[2].clone()));
    let history =
        s.score_history(&ws, &acct("a"), "2026-09-01".parse().unwrap(), "2026-11-01".parse().unwrap()).await.unwrap();
    assert_eq!(history, [batch[5].point(), batch[3].point(), batch[4].point()]);
    // An earlier day in a later call still does not replace the latest.
    s.put_scores(&ws, &[score("a", "2026-10-02", 10.0, Some(0.9), Some(100))]).await.unwrap();
    assert_eq!(s.account_score(&ws, &acct("a")).await.unwrap(), Some(batch[4].clone()));
}

/// Past days scored point-in-time are history only: no latest score, so no band change for
/// journeys to start from, while the trend by day counts them; a day written twice keeps
/// its last.
pub async fn past_days_go_to_the_history_alone<S: Store>(s: &S) {
    let ws = workspace(s, "History").await;
    let other = workspace(s, "Other").await;
    accounts_named(s, &ws, &["a", "b"]).await;
    let day = |d: &str| d.parse::<chrono::NaiveDate>().unwrap();
    let past = [
        score("a", "2026-10-01", 80.0, Some(0.1), Some(5000)),
        score("b", "2026-10-01", 30.0, Some(0.6), Some(2000)),
        score("a", "2026-10-02", 35.0, Some(0.5), Some(5000)),
        score("a", "2026-10-02", 38.0, Some(0.5), Some(5000)),
    ];
    s.put_score_history(&ws, &past).await.unwrap();
    assert_eq!(s.account_score(&ws, &acct("a")).await.unwrap(), None, "no latest score");
    assert!(s.account_changes(&ws, LogPosition::ZERO, 10).await.unwrap().is_empty(), "no band change");
    assert_eq!(s.portfolio(&ws, day("2026-09-01")).await.unwrap().bands.total(), 0);
    let history = s.score_history(&ws, &acct("a"), day("2026-09-01"), day("2026-11-01")).await.unwrap();
    assert_eq!(history, [past[0].point(), past[3].point()]);
    let trend = s.portfolio_trend(&ws, day("2026-10-01"), day("2026-10-03")).await.unwrap();
    assert_eq!(
        trend.iter().map(|d| d.bands.clone()).collect::<Vec<_>>(),
        [BandCounts { healthy: 1, neutral: 0, at_risk: 1 }, BandCounts { healthy: 0, neutral: 0, at_risk: 1 }]
    );
    // Today's run then writes the latest as ever: one first score per account.
    s.put_scores(&ws, &[score("a", "2026-10-03", 75.0, Some(0.1), Some(5000))]).await.unwrap();
    assert_eq!(s.account_changes(&ws, LogPosition::ZERO, 10).await.unwrap().len(), 1);
    let points = s.score_points_as_of(&ws, day("2026-10-02")).await.unwrap();
    assert_eq!(points.len(), 2, "a's 2nd and b's 1st");
    assert!(points.iter().all(|(_, p)| p.components.is_object()), "{points:?}");
    // The headlines: the same points without their components.
    let headlines = s.score_headlines_as_of(&ws, day("2026-10-02")).await.unwrap();
    let stripped: Vec<_> =
        points.into_iter().map(|(id, p)| (id, ScorePoint { components: Value::Null, ..p })).collect();
    assert_eq!(headlines, stripped);
    assert!(s.score_history(&other, &acct("a"), day("2026-09-01"), day("2026-11-01")).await.unwrap().is_empty());
}

/// The headline numbers as of a day are each account's point as of that day, whatever mix of
/// live runs and past days scored into the history alone wrote them: after past days, after
/// a live run, after a past day written on or after an account's latest day, as of a day
/// before some latest score, for an account with no record, and along a random mix.
pub async fn headlines_are_the_points_as_of_whatever_wrote_them<S: Store>(s: &S) {
    let ws = workspace(s, "Headlines").await;
    let other = workspace(s, "Other").await;
    let day = |d: &str| d.parse::<chrono::NaiveDate>().unwrap();
    accounts_named(s, &ws, &["a", "b", "c", "d"]).await;
    let check = async |as_of: &str, when: &str| {
        let as_of = day(as_of);
        let mut points: Vec<_> = s
            .score_points_as_of(&ws, as_of)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, p)| (id, ScorePoint { components: Value::Null, ..p }))
            .collect();
        points.sort_by(|x, y| x.0.cmp(&y.0));
        let mut headlines = s.score_headlines_as_of(&ws, as_of).await.unwrap();
        headlines.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(headlines, points, "{when}, as of {as_of}");
        headlines
    };
    let days: Vec<String> = (1..=9).map(|d| format!("2026-10-0{d}")).collect();
    // Past days for a, b and c, then today's run for a, b and e (no record).
    let past: Vec<AccountScore> = ["a", "b", "c"]
        .iter()
        .flat_map(|a| days[..5].iter().map(move |d| score(a, d, 50.0, Some(0.3), None)))
        .collect();
    s.put_score_history(&ws, &past).await.unwrap();
    s.put_score_history(&other, &[score("a", &days[8], 10.0, None, None)]).await.unwrap();
    let live = ["a", "b", "e"].map(|a| score(a, &days[5], 80.0, Some(0.1), Some(900)));
    s.put_scores(&ws, &live).await.unwrap();
    let now = check(&days[6], "after a live run").await;
    let health: Vec<_> = now.iter().map(|(id, p)| (id.to_string(), p.health, p.day.to_string())).collect();
    assert_eq!(
        health,
        [
            ("a".into(), 80.0, days[5].clone()),
            ("b".into(), 80.0, days[5].clone()),
            ("c".into(), 50.0, days[4].clone()),
            ("e".into(), 80.0, days[5].clone())
        ]
    );
    check(&days[5], "on the live day").await;
    check(&days[3], "before it").await;
    // A past day written on the latest day, and one after it: the history's points.
    s.put_score_history(&ws, &[score("b", &days[5], 20.0, None, None), score("a", &days[6], 30.0, None, None)])
        .await
        .unwrap();
    let now = check(&days[7], "after past days on and after the latest").await;
    assert_eq!(now.iter().map(|(_, p)| p.health).collect::<Vec<_>>(), [30.0, 20.0, 50.0, 80.0]);
    // The next live run is after every past day again.
    s.put_scores(&ws, &["a", "b", "c", "d"].map(|a| score(a, &days[7], 60.0, None, None))).await.unwrap();
    let now = check(&days[8], "after the next live run").await;
    assert_eq!(now.iter().map(|(_, p)| p.health).collect::<Vec<_>>(), [60.0, 60.0, 60.0, 60.0, 80.0]);
    // A random mix of live runs and past days.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n) as usize
    };
    for step in 0..40 {
        let account = ["a", "b", "c", "d", "e", "f"][next(6)];
        let d = &days[next(9)];
        let written = score(account, d, next(100) as f64, Some(next(10) as f64 / 10.0), None);
        if next(2) == 0 {
            s.put_scores(&ws, &[written]).await.unwrap();
        } else {
            s.put_score_history(&ws, &[written]).await.unwrap();
        }
        if step % 4 == 3 {
            for as_of in ["2026-10-03", "2026-10-09", "2026-10-20"] {
                check(as_of, &format!("step {step}")).await;
            }
        }
    }
    s.put_scores(&other, &[score("z", "2026-10-02", 40.0, None, None)]).await.unwrap();
    let others = s.score_headlines_as_of(&other, day("2026-10-20")).await.unwrap();
    assert_eq!(others.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>(), ["z"], "its own workspace's");
}

/// An account's first latest score, written on top of past days scored into the history
/// alone, has the band change those days show, as if each had been scored live: the band
/// before the latest change and that change's day. Journeys still see a first score only.
pub async fn a_first_score_takes_its_band_change_from_the_history<S: Store>(s: &S) {
    let ws = workspace(s, "Past bands").await;
    let other = workspace(s, "Other").await;
    let names = ["fell", "dipped", "steady", "long_ago", "fresh", "batch"];
    accounts_named(s, &ws, &names).await;
    let day = |d: &str| d.parse::<chrono::NaiveDate>().unwrap();
    let past: Vec<AccountScore> = [
        ("fell", "2026-10-01", 80.0),
        ("fell", "2026-10-07", 82.0),
        ("dipped", "2026-10-01", 80.0),
        ("dipped", "2026-10-04", 30.0),
        ("dipped", "2026-10-06", 75.0),
        ("dipped", "2026-10-07", 76.0),
        ("steady", "2026-10-01", 50.0),
        ("steady", "2026-10-07", 52.0),
        // A day after the score's is not before it: it changes nothing.
        ("steady", "2026-10-09", 20.0),
        ("long_ago", "2026-09-01", 20.0),
        ("long_ago", "2026-09-10", 80.0),
        ("long_ago", "2026-10-07", 84.0),
    ]
    .iter()
    .map(|(a, d, h)| score(a, d, *h, None, None))
    .collect();
    s.put_score_history(&ws, &past).await.unwrap();
    // Another workspace's history of an account of the same id is not this one's.
    s.put_score_history(&other, &[score("steady", "2026-10-05", 10.0, None, None)]).await.unwrap();
    let today: Vec<AccountScore> =
        [("fell", 30.0), ("dipped", 78.0), ("steady", 55.0), ("long_ago", 85.0), ("fresh", 20.0)]
            .iter()
            .map(|(a, h)| score(a, "2026-10-08", *h, None, None))
            .collect();
    s.put_scores(&ws, &today).await.unwrap();
    // Two days of a new account in one call: the earlier is its history, the later its score.
    s.put_scores(
        &ws,
        &[score("batch", "2026-10-02", 80.0, None, None), score("batch", "2026-10-07", 45.0, None, None)],
    )
    .await
    .unwrap();
    let ws_ref = &ws;
    let changes = |since: &'static str| async move {
        let p = s.portfolio(ws_ref, day(since)).await.unwrap();
        p.band_changes.iter().map(|c| (c.account_id.to_string(), c.from, c.to, c.health)).collect::<Vec<_>>()
    };
    let this_week = [
        ("fell".to_owned(), HealthBand::Healthy, HealthBand::AtRisk, 30.0),
        ("batch".to_owned(), HealthBand::Healthy, HealthBand::Neutral, 45.0),
        ("dipped".to_owned(), HealthBand::AtRisk, HealthBand::Healthy, 78.0),
    ];
    assert_eq!(changes("2026-10-01").await, this_week);
    // "dipped" recovered on the 6th, "batch" changed on the 7th, "fell" on the 8th.
    assert_eq!(changes("2026-10-06").await, [this_week[0].clone(), this_week[1].clone()]);
    assert_eq!(changes("2026-10-07").await, [this_week[0].clone()]);
    // "long_ago" changed on September 10th.
    let since_september = changes("2026-09-05").await;
    assert_eq!(since_september.len(), 4);
    assert_eq!(since_september[3], ("long_ago".to_owned(), HealthBand::AtRisk, HealthBand::Healthy, 85.0));
    // Rescored in the same band, an account keeps the change it had.
    s.put_scores(&ws, &[score("fell", "2026-10-09", 32.0, None, None)]).await.unwrap();
    assert_eq!(changes("2026-10-01").await[0], ("fell".to_owned(), HealthBand::Healthy, HealthBand::AtRisk, 32.0));
    // What journeys start from: one first score per account, none of the history's changes
    // (SQLite, writing one score after the other, also has batch's of the 7th).
    let bands: Vec<(String, Option<HealthBand>)> = s
        .account_changes(&ws, LogPosition::ZERO, 100)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| match c.what {
            AccountChangeKind::Band { from, .. } => Some((c.account_id.to_string(), from)),
            AccountChangeKind::AlertOpened { .. } => None,
        })
        .collect();
    let firsts = bands.iter().filter(|(_, from)| from.is_none()).count();
    assert_eq!(firsts, names.len(), "{bands:?}");
    assert!(bands.iter().all(|(id, from)| from.is_none() || id == "batch"), "{bands:?}");
    assert!(s.portfolio(&other, day("2026-09-01")).await.unwrap().band_changes.is_empty());
}

/// Every page of a query, as (account, health), checking that its count says as many.
async fn query_all<S: Store>(s: &S, ws: &WorkspaceId, q: &AccountQuery, limit: usize) -> Vec<(String, Option<f64>)> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(limit);
    loop {
        let p = s.query_accounts(ws, q, &page).await.unwrap();
        out.extend(p.items.into_iter().map(|a| (a.account.account_id.to_string(), a.score.map(|s| s.health))));
        match p.next {
            Some(c) => page.after = Some(c),
            None => break,
        }
    }
    // Every list's count is the accounts it lists, page after page.
    assert_eq!(s.count_accounts(ws, q, None).await.unwrap(), out.len() as u64, "the count of {q:?}");
    if !out.is_empty() {
        let fewer = out.len() as u64 - 1;
        assert_eq!(s.count_accounts(ws, q, Some(fewer)).await.unwrap(), fewer, "counted up to {fewer}: {q:?}");
        assert_eq!(s.count_accounts(ws, q, Some(1000)).await.unwrap(), out.len() as u64);
    }
    out
}

pub async fn accounts_sort_and_filter_by_their_scores<S: Store>(s: &S) {
    let ws = workspace(s, "Portfolio").await;
    accounts_named(s, &ws, &["a", "b", "c", "d", "e", "unscored"]).await;
    s.put_scores(
        &ws,
        &[
            score("a", "2026-10-01", 80.0, Some(0.10), Some(9000)),
            score("b", "2026-10-01", 35.0, Some(0.70), Some(2000)),
            score("c", "2026-10-01", 55.0, None, None),
            score("d", "2026-10-01", 35.0, Some(0.55), Some(12000)),
            score("e", "2026-10-01", 92.0, Some(0.02), Some(2000)),
        ],
    )
    .await
    .unwrap();
    let ids = |rows: Vec<(String, Option<f64>)>| rows.into_iter().map(|r| r.0).collect::<Vec<_>>();
    // Unsorted: every account, by id, scored or not.
    let all = query_all(s, &ws, &AccountQuery::default(), 2).await;
    assert_eq!(ids(all.clone()), ["a", "b", "c", "d", "e", "unscored"]);
    assert_eq!(all[5].1, None);
    let by = |sort, descending| AccountQuery { sort, descending, ..Default::default() };
    // Ties on the value keep the id order, across page boundaries.
    assert_eq!(ids(query_all(s, &ws, &by(AccountSort::Health, false), 2).await), ["b", "d", "c", "a", "e"]);
    assert_eq!(ids(query_all(s, &ws, &by(AccountSort::Health, true), 2).await), ["e", "a", "c", "d", "b"]);
    // A missing probability sorts below every value.
    assert_eq!(ids(query_all(s, &ws, &by(AccountSort::ChurnRisk, true), 2).await), ["b", "d", "a", "e", "c"]);
    assert_eq!(ids(query_all(s, &ws, &by(AccountSort::Mrr, true), 3).await), ["d", "a", "e", "b", "c"]);
    let at_risk = AccountQuery { band: Some(HealthBand::AtRisk), ..Default::default() };
    assert_eq!(ids(query_all(s, &ws, &at_risk, 10).await), ["b", "d"]);
    let risky = AccountQuery { churn_min: Some(0.5), sort: AccountSort::Mrr, descending: true, ..Default::default() };
    assert_eq!(ids(query_all(s, &ws, &risky, 1).await), ["d", "b"]);
    let band =
        AccountQuery { health_min: Some(50.0), health_max: Some(85.0), mrr_min: Some(1000), ..Default::default() };
    assert_eq!(ids(query_all(s, &ws, &band, 10).await), ["a"]);
    let other = workspace(s, "Other").await;
    assert!(query_all(s, &other, &by(AccountSort::Health, false), 10).await.is_empty());
}

fn model(id: &str, status: ModelStatus, at: DateTime<Utc>) -> ModelRecord {
    ModelRecord {
        model_id: id.into(),
        kind: ModelKind::Churn,
        status,
        created_at: at,
        card: json!({"horizons": [{"horizon_days": 30, "auc": 0.8}]}),
        reason: format!("{id} reason"),
        model: Some(json!({"weights": [1.0, 2.0], "id": id})),
    }
}

pub async fn one_model_is_active_per_kind<S: Store>(s: &S) {
    let ws = workspace(s, "Models").await;
    assert_eq!(s.active_model(&ws, ModelKind::Churn).await.unwrap(), None);
    s.insert_model(&ws, &model("m1", ModelStatus::Active, t(1, 1))).await.unwrap();
    s.insert_model(&ws, &model("m2", ModelStatus::Rejected, t(2, 1))).await.unwrap();
    assert_eq!(s.active_model(&ws, ModelKind::Churn).await.unwrap().unwrap().model_id, "m1");
    s.insert_model(&ws, &model("m3", ModelStatus::Active, t(3, 1))).await.unwrap();
    let active = s.active_model(&ws, ModelKind::Churn).await.unwrap().unwrap();
    assert_eq!(active, model("m3", ModelStatus::Active, t(3, 1)), "with its parameters");
    assert_eq!(s.active_model(&ws, ModelKind::Expansion).await.unwrap(), None);
    let listed: Vec<(String, ModelStatus, bool)> =
        s.list_models(&ws).await.unwrap().into_iter().map(|m| (m.model_id, m.status, m.model.is_some())).collect();
    assert_eq!(
        listed,
        [
            ("m3".into(), ModelStatus::Active, false),
            ("m2".into(), ModelStatus::Rejected, false),
            ("m1".into(), ModelStatus::Retired, false)
        ]
    );
    let other = workspace(s, "Other").await;
    assert!(s.list_models(&other).await.unwrap().is_empty());
    assert_eq!(s.active_model(&other, ModelKind::Churn).await.unwrap(), None);
}

fn signal(account: &str, reason: &str, severity: Severity, value: f64) -> AlertSignal {
    AlertSignal {
        account_id: acct(account),
        kind: AlertKind::Risk,
        reason: reason.into(),
        severity,
        title: format!("{account}: {reason}"),
        evidence: json!({"value": value}),
    }
}

async fn unresolved<S: Store>(s: &S, ws: &WorkspaceId) -> Vec<Alert> {
    let f = AlertFilter { unresolved: true, ..Default::default() };
    let mut all = s.list_alerts(ws, &f, &PageRequest::first(1000)).await.unwrap().items;
    all.sort_by(|a, b| (a.account_id.as_str(), &a.reason).cmp(&(b.account_id.as_str(), &b.reason)));
    all
}

pub async fn alerts_stay_one_per_account_kind_and_reason<S: Store>(s: &S) {
    let ws = workspace(s, "Alerts").await;
    let of_b = AlertFilter { account_id: Some(acct("b")), ..Default::default() };
    let first = [
        signal("a", "churn_risk", Severity::High, 0.6),
        signal("a", "inactive", Severity::Medium, 30.0),
        signal("b", "churn_risk", Severity::Low, 0.2),
    ];
    let sync = s.sync_alerts(&ws, AlertScope::Workspace, &first, t(1, 1)).await.unwrap();
    assert_eq!(sync, AlertSync { opened: 3, updated: 0, resolved: 0 });
    // The same conditions again change nothing; a worse one updates its alert in place.
    assert_eq!(s.sync_alerts(&ws, AlertScope::Workspace, &first, t(2, 1)).await.unwrap(), AlertSync::default());
    let ids_before: Vec<String> = unresolved(s, &ws).await.into_iter().map(|a| a.alert_id).collect();
    let second = [
        signal("a", "churn_risk", Severity::Critical, 0.9),
        signal("a", "inactive", Severity::Medium, 30.0),
        signal("b", "churn_risk", Severity::Low, 0.2),
    ];
    let sync = s.sync_alerts(&ws, AlertScope::Workspace, &second, t(3, 1)).await.unwrap();
    assert_eq!(sync, AlertSync { opened: 0, updated: 1, resolved: 0 });
    let open = unresolved(s, &ws).await;
    assert_eq!(open.iter().map(|a| a.alert_id.clone()).collect::<Vec<_>>(), ids_before, "updated, not duplicated");
    assert_eq!((open[0].severity, open[0].evidence.clone()), (Severity::Critical, json!({"value": 0.9})));
    assert_eq!((open[0].opened_at, open[0].updated_at), (t(1, 1), t(3, 1)));
    // A run over account b alone resolves b's alert whose condition cleared, and no other.
    let only_b = [acct("b")];
    let sync = s.sync_alerts(&ws, AlertScope::Accounts(&only_b), &[], t(4, 1)).await.unwrap();
    assert_eq!(sync, AlertSync { opened: 0, updated: 0, resolved: 1 });
    let open = unresolved(s, &ws).await;
    assert_eq!(
        open.iter().map(|a| (a.account_id.as_str(), a.reason.as_str())).collect::<Vec<_>>(),
        [("a", "churn_risk"), ("a", "inactive")]
    );
    let b = s.list_alerts(&ws, &of_b, &PageRequest::first(10)).await.unwrap().items;
    assert_eq!(
        (b[0].status, b[0].resolved_by.as_deref(), b[0].resolved_at),
        (AlertStatus::Resolved, Some("steward"), Some(t(4, 1)))
    );
    // When the condition returns, a new alert opens: the old one stays resolved.
    let sync = s.sync_alerts(&ws, AlertScope::Accounts(&only_b), &first[2..], t(5, 1)).await.unwrap();
    assert_eq!(sync.opened, 1);
    assert_eq!(s.list_alerts(&ws, &of_b, &PageRequest::first(10)).await.unwrap().items.len(), 2);
    // Another workspace sees none of it.
    let other = workspace(s, "Other").await;
    assert!(unresolved(s, &other).await.is_empty());
    assert!(s.get_alert(&other, &ids_before[0]).await.unwrap().is_none());
}

/// What journeys start from: each band change (a first score included) and each alert
/// opened, once, in the order written, per workspace.
pub async fn band_changes_and_opened_alerts_are_read_in_order<S: Store>(s: &S) {
    let ws = workspace(s, "Changes").await;
    let other = workspace(s, "Other").await;
    accounts_named(s, &ws, &["a", "b"]).await;
    s.put_scores(&ws, &[score("a", "2026-10-01", 80.0, None, None), score("b", "2026-10-01", 50.0, None, None)])
        .await
        .unwrap();
    // The same band again is no change; a new band is, whichever write makes it.
    s.put_scores(&ws, &[score("a", "2026-10-02", 75.0, None, None)]).await.unwrap();
    s.put_scores(&ws, &[score("a", "2026-10-03", 30.0, None, None)]).await.unwrap();
    let raised = [signal("b", "inactive", Severity::Medium, 30.0)];
    s.put_account_score(&ws, &score("b", "2026-10-03", 45.0, None, None), &raised, t(3, 1)).await.unwrap();
    s.put_account_score(&ws, &score("b", "2026-10-04", 20.0, None, None), &raised, t(4, 1)).await.unwrap();
    let all = s.account_changes(&ws, LogPosition::ZERO, 100).await.unwrap();
    let seen: Vec<(String, String)> = all
        .iter()
        .map(|c| {
            let what = match &c.what {
                AccountChangeKind::Band { from, to, day } => {
                    format!("{} -> {} on {day}", from.map_or("none", |b| b.as_str()), to.as_str())
                }
                AccountChangeKind::AlertOpened { kind, reason, .. } => format!("alert {kind} {reason}"),
            };
            (c.account_id.clone(), what)
        })
        .collect();
    let expected = [
        ("a", "none -> healthy on 2026-10-01"),
        ("b", "none -> neutral on 2026-10-01"),
        ("a", "healthy -> at_risk on 2026-10-03"),
        ("b", "alert risk inactive"),
        ("b", "neutral -> at_risk on 2026-10-04"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(a, w)| (a.to_string(), w.to_string())).collect();
    assert_eq!(seen, expected);
    let AccountChangeKind::AlertOpened { alert_id, .. } = &all[3].what else { panic!("an alert") };
    assert_eq!(s.get_alert(&ws, alert_id).await.unwrap().unwrap().reason, "inactive");
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    let rest = s.account_changes(&ws, all[1].position, 2).await.unwrap();
    assert_eq!(rest, all[2..4].to_vec(), "read after a position, up to a limit");
    assert!(s.account_changes(&ws, all[4].position, 10).await.unwrap().is_empty());
    assert!(s.account_changes(&other, LogPosition::ZERO, 10).await.unwrap().is_empty());

    // Pruned: only what was read (up to a position) and is old enough, of this workspace.
    accounts_named(s, &other, &["a"]).await;
    s.put_scores(&other, &[score("a", "2026-10-01", 80.0, None, None)]).await.unwrap();
    let early = all[0].at.min(all[1].at);
    assert_eq!(s.prune_account_changes(&ws, all[1].position, early).await.unwrap(), 0, "none that old");
    let later = all.iter().map(|c| c.at).max().unwrap() + chrono::Duration::days(1);
    assert_eq!(s.prune_account_changes(&ws, all[1].position, later).await.unwrap(), 2);
    assert_eq!(s.account_changes(&ws, LogPosition::ZERO, 100).await.unwrap(), all[2..].to_vec());
    assert_eq!(s.prune_account_changes(&ws, all[1].position, later).await.unwrap(), 0, "done already");
    assert_eq!(s.account_changes(&other, LogPosition::ZERO, 10).await.unwrap().len(), 1, "another workspace's stay");
}

pub async fn operators_act_on_alerts_and_their_feedback_is_kept<S: Store>(s: &S) {
    let ws = workspace(s, "Triage").await;
    let signals = [signal("a", "churn_risk", Severity::High, 0.6), signal("b", "inactive", Severity::Medium, 40.0)];
    s.sync_alerts(&ws, AlertScope::Workspace, &signals, t(1, 1)).await.unwrap();
    let open = unresolved(s, &ws).await;
    let (a, b) = (&open[0].alert_id, &open[1].alert_id);
    let acked = s.update_alert(&ws, a, &AlertAction::Acknowledge, "op_1", t(2, 1)).await.unwrap().unwrap();
    assert_eq!(
        (acked.status, acked.acknowledged_by.as_deref(), acked.acknowledged_at),
        (AlertStatus::Acknowledged, Some("op_1"), Some(t(2, 1)))
    );
    let feedback = AlertAction::Feedback { useful: true, note: Some("called them".into()) };
    let rated = s.update_alert(&ws, a, &feedback, "op_2", t(2, 2)).await.unwrap().unwrap();
    assert_eq!(
        (rated.useful, rated.feedback.as_deref(), rated.feedback_by.as_deref()),
        (Some(true), Some("called them"), Some("op_2"))
    );
    assert_eq!(rated.status, AlertStatus::Acknowledged, "feedback leaves the state");
    // An acknowledged alert is still the one a worse signal updates.
    let worse = [signal("a", "churn_risk", Severity::Critical, 0.8), signals[1].clone()];
    assert_eq!(s.sync_alerts(&ws, AlertScope::Workspace, &worse, t(3, 1)).await.unwrap().updated, 1);
    assert_eq!(s.get_alert(&ws, a).await.unwrap().unwrap().status, AlertStatus::Acknowledged);
    // An operator resolves b: while its condition holds at that severity, it stays quiet.
    let resolved = s.update_alert(&ws, b, &AlertAction::Resolve, "op_1", t(4, 1)).await.unwrap().unwrap();
    assert_eq!((resolved.status, resolved.resolved_by.as_deref()), (AlertStatus::Resolved, Some("op_1")));
    assert_eq!(
        s.update_alert(&ws, b, &AlertAction::Acknowledge, "op_1", t(4, 2)).await.unwrap().unwrap().status,
        AlertStatus::Resolved
    );
    assert_eq!(s.sync_alerts(&ws, AlertScope::Workspace, &worse, t(5, 1)).await.unwrap(), AlertSync::default());
    // Worse than when it was resolved: it opens again.
    let escalated = [worse[0].clone(), signal("b", "inactive", Severity::High, 60.0)];
    assert_eq!(s.sync_alerts(&ws, AlertScope::Workspace, &escalated, t(6, 1)).await.unwrap().opened, 1);
    assert!(s.update_alert(&ws, "alr_missing", &AlertAction::Resolve, "op_1", t(6, 2)).await.unwrap().is_none());
    let other = workspace(s, "Other").await;
    assert!(s.update_alert(&other, a, &AlertAction::Resolve, "op_1", t(6, 2)).await.unwrap().is_none());
    assert_eq!(
        s.get_alert(&ws, a).await.unwrap().unwrap().status,
        AlertStatus::Acknowledged,
        "untouched by another workspace"
    );
    // Filters and pages, newest first.
    let critical = AlertFilter { severity: Some(Severity::Critical), ..Default::default() };
    assert_eq!(s.list_alerts(&ws, &critical, &PageRequest::first(10)).await.unwrap().items.len(), 1);
    let mut page = PageRequest::first(1);
    let mut opened = Vec::new();
    loop {
        let p = s.list_alerts(&ws, &AlertFilter::default(), &page).await.unwrap();
        opened.extend(p.items.iter().map(|a| a.opened_at));
        match p.next {
            Some(c) => page.after = Some(c),
            None => break,
        }
    }
    assert_eq!(opened, [t(6, 1), t(1, 1), t(1, 1)]);
}

pub async fn whole_workspace_reads_for_scoring<S: Store>(s: &S) {
    let ws = workspace(s, "Billing").await;
    let usd = Currency::parse("USD").unwrap();
    let sub = |id: &str, account: &str, day: u32| Subscription {
        subscription_id: id.into(),
        account_id: acct(account),
        plan: Some("pro".into()),
        status: SubscriptionStatus::Active,
        mrr: Money::new(4900, usd),
        quantity: 5,
        started_at: t(day, 0),
        ended_at: None,
        current_period_end: None,
        cancel_at_period_end: false,
        updated_at: t(day, 0),
        attributes: json!({}),
    };
    for (id, account, day) in [("s3", "b", 1), ("s1", "a", 5), ("s2", "a", 2)] {
        s.upsert_subscription(&ws, &sub(id, account, day)).await.unwrap();
    }
    let ids: Vec<String> = s.list_subscriptions(&ws).await.unwrap().into_iter().map(|s| s.subscription_id).collect();
    assert_eq!(ids, ["s2", "s1", "s3"], "by account, then start");
    let ticket = |id: &str, day: u32| Ticket {
        ticket_id: id.into(),
        account_id: Some(acct("a")),
        person_id: None,
        subject: "help".into(),
        status: TicketStatus::Open,
        priority: TicketPriority::High,
        opened_at: t(day, 0),
        first_response_at: None,
        resolved_at: None,
        csat: None,
        updated_at: t(day, 0),
        attributes: json!({}),
    };
    for (id, day) in [("t1", 1), ("t2", 9)] {
        s.upsert_ticket(&ws, &ticket(id, day)).await.unwrap();
    }
    let recent: Vec<String> = s.list_tickets(&ws, t(5, 0)).await.unwrap().into_iter().map(|t| t.ticket_id).collect();
    assert_eq!(recent, ["t2"]);
    let other = workspace(s, "Other").await;
    assert!(s.list_subscriptions(&other).await.unwrap().is_empty());
    assert!(s.list_tickets(&other, t(1, 0)).await.unwrap().is_empty());
}

pub async fn one_account_is_read_and_written_at_once<S: Store>(s: &S) {
    use chrono::NaiveDate;
    let ws = workspace(s, "Rescore").await;
    let other = workspace(s, "Other").await;
    let day = |m: u32, d: u32| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
    // acme: a member who used the product in September and October, a subscription, a
    // ticket and scores of three days; beta: a subscription only.
    let mut ops = person_ops("p1", "u1", t(1, 1));
    ops.push(Op::UpsertAccount { account_id: acct("acme"), at: t(1, 1) });
    ops.push(Op::AddMembership { person_id: "p1".into(), account_id: acct("acme"), at: t(1, 1) });
    process(s, &ws, Changes { ops, ..Default::default() }).await;
    s.append_events(&ws, &events(json!([track("e0", "u1", "report", 1)]))).await.unwrap();
    let used = |d: NaiveDate, events: u32| Usage {
        person_id: "p1".into(),
        day: d,
        metric: "report".into(),
        credit: Credit::Named(acct("acme")),
        events,
    };
    process(s, &ws, Changes { usage: vec![used(day(9, 20), 2), used(day(10, 2), 3)], ..Default::default() }).await;
    let usd = Currency::parse("USD").unwrap();
    for (id, account) in [("s1", "acme"), ("s2", "beta")] {
        let sub = Subscription {
            subscription_id: id.into(),
            account_id: acct(account),
            plan: None,
            status: SubscriptionStatus::Active,
            mrr: Money::new(4900, usd),
            quantity: 5,
            started_at: t(1, 0),
            ended_at: None,
            current_period_end: None,
            cancel_at_period_end: false,
            updated_at: t(1, 0),
            attributes: json!({}),
        };
        s.upsert_subscription(&ws, &sub).await.unwrap();
    }
    let ticket = Ticket {
        ticket_id: "t1".into(),
        account_id: Some(acct("acme")),
        person_id: None,
        subject: "help".into(),
        status: TicketStatus::Open,
        priority: TicketPriority::Normal,
        opened_at: t(3, 0),
        first_response_at: None,
        resolved_at: None,
        csat: None,
        updated_at: t(3, 0),
        attributes: json!({}),
    };
    s.upsert_ticket(&ws, &ticket).await.unwrap();
    let days = ["2026-10-01", "2026-10-02", "2026-10-03"];
    for d in days {
        s.put_scores(&ws, &[score("acme", d, 60.0, Some(0.2), Some(4900))]).await.unwrap();
    }

    // One read gives what the reads of each kind give.
    let (usage, points) = ((day(10, 1), day(10, 31)), (day(10, 2), day(10, 4)));
    let acme = s.account_records(&ws, &acct("acme"), usage, points).await.unwrap();
    assert_eq!(acme.account, s.get_account(&ws, &acct("acme")).await.unwrap());
    assert!(acme.account.is_some());
    assert_eq!(acme.subscriptions, s.account_subscriptions(&ws, &acct("acme")).await.unwrap());
    assert_eq!(acme.tickets, [ticket]);
    let rows = s.accounts_usage(&ws, Some(&acct("acme")), usage.0, usage.1).await.unwrap();
    assert_eq!(acme.usage, rows);
    assert_eq!(acme.usage.iter().map(|r| r.month).collect::<Vec<_>>(), [day(10, 1)], "October's months only");
    assert_eq!(acme.scores.iter().map(|p| p.day.to_string()).collect::<Vec<_>>(), ["2026-10-02", "2026-10-03"]);
    let beta = s.account_records(&ws, &acct("beta"), usage, points).await.unwrap();
    assert_eq!((beta.account, beta.subscriptions.len()), (None, 1), "known from billing alone");
    assert_eq!(s.account_records(&other, &acct("acme"), usage, points).await.unwrap(), AccountRecords::default());

    // One write stores the score and syncs the account's alerts, and no other account's.
    s.sync_alerts(&ws, AlertScope::Workspace, &[signal("beta", "inactive", Severity::Medium, 20.0)], t(4, 1))
        .await
        .unwrap();
    let newer = score("acme", "2026-10-04", 35.0, Some(0.6), Some(4900));
    let raised =
        [signal("acme", "churn_risk", Severity::High, 0.6), signal("acme", "inactive", Severity::Medium, 30.0)];
    let sync = s.put_account_score(&ws, &newer, &raised, t(5, 1)).await.unwrap();
    assert_eq!(sync, AlertSync { opened: 2, updated: 0, resolved: 0 });
    assert_eq!(s.account_score(&ws, &acct("acme")).await.unwrap(), Some(newer.clone()));
    let history = s.score_history(&ws, &acct("acme"), day(10, 4), day(10, 5)).await.unwrap();
    assert_eq!(history.iter().map(|p| p.health).collect::<Vec<_>>(), [35.0]);
    // Again with one condition cleared and the other worse: resolved and updated in place.
    let later = score("acme", "2026-10-05", 30.0, Some(0.8), Some(4900));
    let sync = s
        .put_account_score(&ws, &later, &[signal("acme", "churn_risk", Severity::Critical, 0.8)], t(6, 1))
        .await
        .unwrap();
    assert_eq!(sync, AlertSync { opened: 0, updated: 1, resolved: 1 });
    let open = unresolved(s, &ws).await;
    assert_eq!(
        open.iter().map(|a| (a.account_id.as_str(), a.reason.as_str(), a.severity)).collect::<Vec<_>>(),
        [("acme", "churn_risk", Severity::Critical), ("beta", "inactive", Severity::Medium)]
    );
    assert_eq!(s.account_score(&other, &acct("acme")).await.unwrap(), None);
    assert!(unresolved(s, &other).await.is_empty());
}

pub async fn settings_are_kept_per_workspace<S: Store>(s: &S) {
    let ws = workspace(s, "Settings").await;
    let other = workspace(s, "Other").await;
    assert_eq!(s.get_setting(&ws, "scoring").await.unwrap(), None);
    s.put_setting(&ws, "scoring", &json!({"key_events": ["a"]}), t(1, 1)).await.unwrap();
    s.put_setting(&ws, "scoring", &json!({"key_events": ["b", "c"]}), t(2, 1)).await.unwrap();
    assert_eq!(s.get_setting(&ws, "scoring").await.unwrap(), Some(json!({"key_events": ["b", "c"]})));
    assert_eq!(s.get_setting(&other, "scoring").await.unwrap(), None);

    // Entries of an object-valued setting, written at once by several: none is lost.
    let put = |name: &'static str| {
        let value = json!({"subject": name});
        let ws = ws.clone();
        async move { s.put_setting_entry(&ws, "templates", name, Some(&value), t(3, 1)).await.unwrap() }
    };
    let added = tokio::join!(put("a"), put("b"), put("c"), put("d"), put("e"), put("f"), put("g"), put("h"));
    assert_eq!(added, (false, false, false, false, false, false, false, false), "each new");
    let names = |v: Option<Value>| v.unwrap().as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(s.get_setting(&ws, "templates").await.unwrap()), ["a", "b", "c", "d", "e", "f", "g", "h"]);
    assert!(s.put_setting_entry(&ws, "templates", "a", Some(&json!({"subject": "A"})), t(3, 2)).await.unwrap());
    assert!(s.put_setting_entry(&ws, "templates", "b", None, t(3, 2)).await.unwrap(), "removed");
    assert!(!s.put_setting_entry(&ws, "templates", "b", None, t(3, 2)).await.unwrap(), "gone already");
    let templates = s.get_setting(&ws, "templates").await.unwrap().unwrap();
    assert_eq!(templates["a"], json!({"subject": "A"}));
    assert_eq!(names(Some(templates)), ["a", "c", "d", "e", "f", "g", "h"]);
    // A setting that is not an object becomes one.
    s.put_setting(&ws, "sender", &json!("cs@steward.test"), t(4, 1)).await.unwrap();
    assert!(!s.put_setting_entry(&ws, "sender", "x", Some(&json!(1)), t(4, 1)).await.unwrap());
    assert_eq!(s.get_setting(&ws, "sender").await.unwrap(), Some(json!({"x": 1})));
    assert_eq!(s.get_setting(&other, "templates").await.unwrap(), None);
    // Removing what is not there writes nothing.
    assert!(!s.put_setting_entry(&other, "templates", "a", None, t(4, 1)).await.unwrap());
    assert_eq!(s.get_setting(&other, "templates").await.unwrap(), None);
}

fn segment(name: &str, condition: &str) -> SegmentRecord {
    SegmentRecord {
        segment_id: segments::new_segment_id(),
        name: name.into(),
        kind: SubjectKind::Accounts,
        condition: condition.into(),
        description: Some(format!("{name}, for the tests")),
        created_at: t(2, 9),
        updated_at: t(2, 9),
    }
}

pub async fn segments_are_named_uniquely_within_a_workspace<S: Store>(s: &S) {
    let ws = workspace(s, "Segments").await;
    let other = workspace(s, "Other").await;
    let risky = segment("At risk", "health < 40");
    let big = SegmentRecord { kind: SubjectKind::People, description: None, ..segment("Big", "mrr > 1000") };
    s.insert_segment(&ws, &risky).await.unwrap();
    s.insert_segment(&ws, &big).await.unwrap();
    assert_eq!(s.get_segment(&ws, &risky.segment_id).await.unwrap(), Some(risky.clone()));
    let names = |list: Vec<SegmentRecord>| list.into_iter().map(|x| x.name).collect::<Vec<_>>();
    assert_eq!(names(s.list_segments(&ws).await.unwrap()), ["At risk", "Big"]);
    // Names are unique per workspace, and only there.
    let again = segment("At risk", "health < 30");
    assert!(matches!(s.insert_segment(&ws, &again).await, Err(StoreError::Conflict(_))));
    s.insert_segment(&other, &again).await.unwrap();
    assert_eq!(s.get_segment(&other, &risky.segment_id).await.unwrap(), None, "workspaces never share segments");
    assert_eq!(names(s.list_segments(&other).await.unwrap()), ["At risk"]);
    // An update replaces the definition, but not with another segment's name.
    let renamed = SegmentRecord { name: "Big".into(), ..risky.clone() };
    assert!(matches!(s.update_segment(&ws, &renamed).await, Err(StoreError::Conflict(_))));
    let edited = SegmentRecord {
        name: "Critical".into(),
        condition: "health < 20".into(),
        updated_at: t(3, 9),
        ..risky.clone()
    };
    assert!(s.update_segment(&ws, &edited).await.unwrap());
    assert_eq!(s.get_segment(&ws, &risky.segment_id).await.unwrap(), Some(edited.clone()));
    assert!(!s.update_segment(&other, &edited).await.unwrap(), "not the other workspace's to change");
    assert!(!s.update_segment(&ws, &segment("Nope", "health < 1")).await.unwrap());
    assert!(s.delete_segment(&ws, &big.segment_id).await.unwrap());
    assert!(!s.delete_segment(&ws, &big.segment_id).await.unwrap());
    assert_eq!(names(s.list_segments(&ws).await.unwrap()), ["Critical"]);
}

fn update(subject: &str, member: bool, next_check: Option<DateTime<Utc>>) -> MembershipUpdate {
    MembershipUpdate { subject_id: subject.into(), member, next_check }
}

async fn all_members<S: Store>(s: &S, ws: &WorkspaceId, segment_id: &str) -> Vec<(String, DateTime<Utc>)> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let p = s.segment_members(ws, segment_id, &page).await.unwrap();
        out.extend(p.items.into_iter().map(|m| (m.subject_id, m.since)));
        match p.next {
            Some(c) => page.after = Some(c),
            None => return out,
        }
    }
}

async fn due<S: Store>(s: &S, ws: &WorkspaceId, now: DateTime<Utc>) -> Vec<(String, DateTime<Utc>)> {
    s.due_checks(ws, now, 10).await.unwrap().into_iter().map(|d| (d.subject_id, d.at)).collect()
}

pub async fn memberships_record_entries_exits_and_next_checks<S: Store>(s: &S) {
    let ws = workspace(s, "Members").await;
    let other = workspace(s, "Other").await;
    let quiet = segment("Quiet", "days_since(last_seen) > 14");
    let rich = segment("Rich", "mrr > 1000");
    s.insert_segment(&ws, &quiet).await.unwrap();
    s.insert_segment(&ws, &rich).await.unwrap();
    let changes = s
        .update_memberships(
            &ws,
            &quiet.segment_id,
            &[update("a", true, None), update("b", true, Some(t(9, 0))), update("c", false, Some(t(5, 12)))],
            t(4, 0),
        )
        .await
        .unwrap();
    let seen = |c: &[SegmentChange]| c.iter().map(|c| (c.subject_id.clone(), c.entered, c.at)).collect::<Vec<_>>();
    assert_eq!(seen(&changes), [("a".into(), true, t(4, 0)), ("b".into(), true, t(4, 0))]);
    assert!(changes[0].seq < changes[1].seq);
    s.update_memberships(&ws, &rich.segment_id, &[update("a", true, None)], t(4, 1)).await.unwrap();
    assert_eq!(s.segment_size(&ws, &quiet.segment_id).await.unwrap(), 2);
    assert_eq!(all_members(s, &ws, &quiet.segment_id).await, [("a".into(), t(4, 0)), ("b".into(), t(4, 0))]);
    let mut of_a: Vec<String> = s.memberships_of(&ws, "a").await.unwrap().into_iter().map(|m| m.segment_id).collect();
    of_a.sort();
    let since: std::collections::HashMap<String, DateTime<Utc>> =
        s.memberships_of(&ws, "a").await.unwrap().into_iter().map(|m| (m.segment_id, m.since)).collect();
    assert_eq!((since[&quiet.segment_id], since[&rich.segment_id]), (t(4, 0), t(4, 1)));
    let mut both = vec![quiet.segment_id.clone(), rich.segment_id.clone()];
    both.sort();
    assert_eq!(of_a, both);

    // Due: what is at or before now, earliest first.
    assert_eq!(due(s, &ws, t(5, 11)).await, []);
    assert_eq!(due(s, &ws, t(5, 12)).await, [("c".to_owned(), t(5, 12))]);
    assert_eq!(due(s, &ws, t(10, 0)).await, [("c".to_owned(), t(5, 12)), ("b".to_owned(), t(9, 0))]);

    // Evaluated again: a stays (and keeps its since), b leaves, c enters with nothing left to wait for.
    let changes = s
        .update_memberships(
            &ws,
            &quiet.segment_id,
            &[update("a", true, None), update("b", false, None), update("c", true, None)],
            t(5, 12),
        )
        .await
        .unwrap();
    assert_eq!(seen(&changes), [("b".into(), false, t(5, 12)), ("c".into(), true, t(5, 12))]);
    assert_eq!(all_members(s, &ws, &quiet.segment_id).await, [("a".into(), t(4, 0)), ("c".into(), t(5, 12))]);
    assert_eq!(due(s, &ws, t(30, 0)).await, []);

    // The stream of changes, in order, from any point.
    let stream = s.segment_changes(&ws, 0, 100).await.unwrap();
    let kinds: Vec<(String, bool)> = stream.iter().map(|c| (c.subject_id.clone(), c.entered)).collect();
    assert_eq!(
        kinds,
        [("a".into(), true), ("b".into(), true), ("a".into(), true), ("b".into(), false), ("c".into(), true)]
    );
    assert!(stream.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(stream[2].segment_id, rich.segment_id);
    let rest = s.segment_changes(&ws, stream[2].seq, 2).await.unwrap();
    assert_eq!(rest, stream[3..5]);
    assert!(s.segment_changes(&ws, stream[4].seq, 10).await.unwrap().is_empty());

    // Nothing of it reaches another workspace, and a segment it does not have takes nothing.
    assert!(s.segment_changes(&other, 0, 100).await.unwrap().is_empty());
    assert!(s.due_checks(&other, t(30, 0), 10).await.unwrap().is_empty());
    assert!(s.memberships_of(&other, "a").await.unwrap().is_empty());
    assert_eq!(s.segment_size(&other, &quiet.segment_id).await.unwrap(), 0);
    let ignored = s.update_memberships(&other, &quiet.segment_id, &[update("z", true, None)], t(6, 0)).await.unwrap();
    assert!(ignored.is_empty());
    assert_eq!(s.segment_size(&other, &quiet.segment_id).await.unwrap(), 0);

    // Deleting a segment takes its members and changes with it.
    assert!(s.delete_segment(&ws, &quiet.segment_id).await.unwrap());
    assert_eq!(
        s.memberships_of(&ws, "a").await.unwrap(),
        [Membership { segment_id: rich.segment_id.clone(), since: t(4, 1) }]
    );
    let left = s.segment_changes(&ws, 0, 100).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].segment_id, rich.segment_id);
}

pub async fn the_vocabulary_is_what_the_data_names<S: Store>(s: &S) {
    let ws = workspace(s, "Words").await;
    let other = workspace(s, "Other").await;
    let traits = |v: Value| v.as_object().unwrap().clone();
    let mut ops = person_ops("p1", "u1", t(1, 1));
    ops.push(Op::UpsertAccount { account_id: acct("acme"), at: t(1, 1) });
    ops.push(Op::SetPersonTraits {
        person_id: "p1".into(),
        traits: traits(json!({"role": "admin", "email": "a@acme.test"})),
        at: t(1, 1),
    });
    ops.push(Op::SetAccountTraits {
        account_id: acct("acme"),
        traits: traits(json!({"region": "EMEA", "plan": "pro"})),
        at: t(1, 1),
    });
    ops.push(Op::SetAccountTraits { account_id: acct("acme"), traits: traits(json!({"plan": "team"})), at: t(2, 1) });
    s.append_events(&ws, &events(json!([track("w0", "u1", "login", 1)]))).await.unwrap();
    let used = |metric: &str, events| Usage {
        person_id: "p1".into(),
        day: chrono::NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
        metric: metric.into(),
        credit: Credit::Named(acct("acme")),
        events,
    };
    let usage = vec![used("login", 2), used("Report Created", 1), used(usage::PAGE, 3), used(usage::ANY, 6)];
    process(s, &ws, Changes { ops, usage, ..Default::default() }).await;
    let v = s.vocabulary(&ws).await.unwrap();
    assert_eq!(v.account_traits, ["plan", "region"]);
    assert_eq!(v.person_traits, ["email", "role"]);
    assert_eq!(v.events, ["Report Created", "login"]);
    assert_eq!(s.vocabulary(&other).await.unwrap(), Vocabulary::default());
    // Another workspace's words are its own, and a key before and after this one's.
    let ops = vec![
        Op::UpsertAccount { account_id: acct("initech"), at: t(1, 1) },
        Op::SetAccountTraits {
            account_id: acct("initech"),
            traits: traits(json!({"a_first": 1, "tier": "gold", "plan": "x"})),
            at: t(1, 1),
        },
    ];
    process(s, &other, Changes { ops, ..Default::default() }).await;
    assert_eq!(s.vocabulary(&other).await.unwrap().account_traits, ["a_first", "plan", "tier"]);
    assert_eq!(s.vocabulary(&ws).await.unwrap(), v);
}

pub async fn people_list_in_pages_by_id<S: Store>(s: &S) {
    let ws = workspace(s, "People").await;
    let other = workspace(s, "Other").await;
    let mut ops = Vec::new();
    for i in 0..5 {
        ops.extend(person_ops(&format!("p{i}"), &format!("u{i}"), t(1, i + 1)));
    }
    let traits = json!({"email": "p3@acme.test"}).as_object().unwrap().clone();
    ops.push(Op::SetPersonTraits { person_id: "p3".into(), traits, at: t(2, 1) });
    ops.push(Op::PersonSeen { person_id: "p3".into(), first: t(3, 1), last: t(4, 1) });
    process(s, &ws, Changes { ops, ..Default::default() }).await;
    let mut all = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let p = s.list_people(&ws, &page).await.unwrap();
        all.extend(p.items);
        match p.next {
            Some(c) => page.after = Some(c),
            None => break,
        }
    }
    let ids: Vec<&str> = all.iter().map(|p| p.person_id.as_str()).collect();
    assert_eq!(ids, ["p0", "p1", "p2", "p3", "p4"]);
    assert_eq!(all[3].user_id.as_deref(), Some("u3"));
    assert_eq!(all[3].traits, json!({"email": "p3@acme.test"}));
    assert_eq!(all[3].last_seen_at, Some(t(4, 1)));
    assert!(all[3].first_seen_at.is_some_and(|f| f <= t(3, 1)));
    assert!(s.list_people(&other, &PageRequest::first(10)).await.unwrap().items.is_empty());
}

// Journeys, runs, the outbox and tasks.

fn draft(name: &str, steps: Value) -> JourneyDraft {
    JourneyDraft {
        journey_id: journeys::new_journey_id(),
        name: name.into(),
        kind: SubjectKind::Accounts,
        enabled: true,
        definition: json!({"name": name, "trigger": "manual", "steps": steps}),
    }
}

fn run(journey: &JourneyRecord, subject: &str, at: DateTime<Utc>) -> Run {
    Run {
        run_id: journeys::new_run_id(),
        journey_id: journey.journey_id.clone(),
        version: journey.version,
        subject_id: subject.into(),
        account_id: Some(subject.into()),
        status: RunStatus::Active,
        step: Some("welcome".into()),
        seq: 0,
        wake_at: Some(at),
        waiting: None,
        context: json!({"trigger": "manual"}),
        started_at: at,
        updated_at: at,
        ended_at: None,
    }
}

fn start(run: &Run, reentry: Reentry, key: &str) -> RunStart {
    RunStart { run: run.clone(), reentry, trigger_key: key.into() }
}

fn email(run: &Run, step: &str, at: DateTime<Utc>) -> OutboxMessage {
    OutboxMessage {
        message_id: format!("{}:{step}:{}", run.run_id, run.seq),
        channel: Channel::Email,
        endpoint: format!("owner@{}.example", run.subject_id),
        payload: json!({"subject": "Welcome", "text": "Hello"}),
        journey_id: Some(run.journey_id.clone()),
        run_id: Some(run.run_id.clone()),
        step_id: Some(step.into()),
        account_id: run.account_id.clone(),
        person_id: Some(format!("p-{}", run.subject_id)),
        status: MessageStatus::Pending,
        attempts: 0,
        retry_base: 0,
        next_attempt_at: Some(at),
        lease_until: None,
        last_error: None,
        created_at: at,
        updated_at: at,
        delivered_at: None,
    }
}

fn task(id: &str, title: &str, due: Option<DateTime<Utc>>, created: DateTime<Utc>) -> Task {
    Task {
        task_id: id.into(),
        title: title.into(),
        body: None,
        assignee: "csm@example.com".into(),
        priority: "high".into(),
        due_at: due,
        status: TaskStatus::Open,
        account_id: Some("acme".into()),
        person_id: None,
        journey_id: None,
        run_id: None,
        created_at: created,
        updated_at: created,
        closed_by: None,
    }
}

/// Moves a run to its next step with the given effects.
fn step(r: &Run, to: Option<&str>, at: DateTime<Utc>, messages: Vec<OutboxMessage>, tasks: Vec<Task>) -> RunUpdate {
    let mut next = r.clone();
    next.seq += 1;
    next.step = to.map(str::to_owned);
    next.updated_at = at;
    next.wake_at = to.map(|_| at + Duration::days(2));
    if to.is_none() {
        next.status = RunStatus::Completed;
        next.ended_at = Some(at);
    }
    RunUpdate {
        steps: vec![StepRecord {
            run_id: r.run_id.clone(),
            journey_id: r.journey_id.clone(),
            seq: r.seq,
            step_id: r.step.clone().unwrap(),
            at,
            outcome: if messages.is_empty() { "waited".into() } else { "sent".into() },
        }],
        run: next,
        expected_seq: r.seq,
        messages,
        tasks,
    }
}

pub async fn journeys_are_versioned_and_named_uniquely<S: Store>(s: &S) {
    let ws = workspace(s, "acme").await;
    let other = workspace(s, "globex").await;
    let d = draft("Onboarding", json!([{"id": "welcome", "wait": "1d"}]));
    let stored = s.put_journey(&ws, &d, t(1, 9)).await.unwrap();
    assert_eq!((stored.version, stored.enabled, stored.kind), (1, true, SubjectKind::Accounts));
    assert_eq!(stored.definition, d.definition);
    // The same definition again is the same version; another is the next one.
    assert_eq!(s.put_journey(&ws, &d, t(1, 10)).await.unwrap().version, 1);
    let changed = JourneyDraft { definition: json!({"name": "Onboarding", "steps": []}), ..d.clone() };
    let v2 = s.put_journey(&ws, &changed, t(2, 9)).await.unwrap();
    assert_eq!((v2.version, v2.created_at, v2.updated_at), (2, t(1, 9), t(2, 9)));
    assert_eq!(s.journey_version(&ws, &d.journey_id, 1).await.unwrap(), Some(d.definition.clone()));
    assert_eq!(s.journey_version(&ws, &d.journey_id, 2).await.unwrap(), Some(changed.definition.clone()));
    assert_eq!(s.journey_version(&ws, &d.journey_id, 3).await.unwrap(), None);
    // Names are unique within a workspace, not across workspaces.
    let clash = draft("Onboarding", json!([]));
    assert!(matches!(s.put_journey(&ws, &clash, t(2, 9)).await, Err(StoreError::Conflict(_))));
    s.put_journey(&other, &clash, t(2, 9)).await.unwrap();
    assert_eq!(s.get_journey(&other, &d.journey_id).await.unwrap(), None, "workspaces never share journeys");
    assert!(!s.set_journey_enabled(&other, &d.journey_id, false, t(3, 9)).await.unwrap());
    assert!(s.set_journey_enabled(&ws, &d.journey_id, false, t(3, 9)).await.unwrap());
    let off = s.get_journey(&ws, &d.journey_id).await.unwrap().unwrap();
    assert_eq!((off.enabled, off.version), (false, 2));
    s.put_journey(&ws, &draft("Churn save", json!([])), t(3, 9)).await.unwrap();
    let names: Vec<String> = s.list_journeys(&ws).await.unwrap().into_iter().map(|j| j.name).collect();
    assert_eq!(names, ["Churn save", "Onboarding"]);
}

pub async fn runs_start_once_per_trigger_and_by_their_reentry_rule<S: Store>(s: &S) {
    let ws = workspace(s, "acme").await;
    let other = workspace(s, "globex").await;
    let once = s.put_journey(&ws, &draft("Once", json!([])), t(1, 0)).await.unwrap();
    let again = s.put_journey(&ws, &draft("Again", json!([])), t(1, 0)).await.unwrap();
    let later = s.put_journey(&ws, &draft("Later", json!([])), t(1, 0)).await.unwrap();
    let first = run(&once, "acme", t(1, 9));
    assert_eq!(s.start_runs(&ws, &[start(&first, Reentry::Never, "seg:1")]).await.unwrap(), [true]);
    // The same trigger never starts a second run, whatever the rule.
    let dup = run(&again, "acme", t(1, 9));
    let starts =
        [start(&dup, Reentry::Always, "seg:1"), start(&run(&again, "acme", t(1, 9)), Reentry::Always, "seg:1")];
    assert_eq!(s.start_runs(&ws, &starts).await.unwrap(), [true, false]);
    // Never: not while one is active, nor after it ended.
    assert_eq!(
        s.start_runs(&ws, &[start(&run(&once, "acme", t(2, 9)), Reentry::Never, "seg:2")]).await.unwrap(),
        [false]
    );
    s.advance_runs(&ws, &[step(&first, None, t(2, 9), vec![], vec![])]).await.unwrap();
    assert_eq!(
        s.start_runs(&ws, &[start(&run(&once, "acme", t(3, 9)), Reentry::Never, "seg:3")]).await.unwrap(),
        [false]
    );
    // Always: not while one is active; once it ended, yes.
    assert_eq!(
        s.start_runs(&ws, &[start(&run(&again, "acme", t(2, 9)), Reentry::Always, "seg:2")]).await.unwrap(),
        [false]
    );
    s.advance_runs(&ws, &[step(&dup, None, t(2, 10), vec![], vec![])]).await.unwrap();
    assert_eq!(
        s.start_runs(&ws, &[start(&run(&again, "acme", t(2, 11)), Reentry::Always, "seg:3")]).await.unwrap(),
        [true]
    );
    // After a cooldown: only once the last run ended that long before.
    let l1 = run(&later, "acme", t(1, 9));
    s.start_runs(&ws, &[start(&l1, Reentry::After(86_400), "a")]).await.unwrap();
    s.advance_runs(&ws, &[step(&l1, None, t(1, 12), vec![], vec![])]).await.unwrap();
    let early = start(&run(&later, "acme", t(2, 11)), Reentry::After(86_400), "b");
    assert_eq!(s.start_runs(&ws, &[early]).await.unwrap(), [false]);
    let late = start(&run(&later, "acme", t(2, 12)), Reentry::After(86_400), "c");
    assert_eq!(s.start_runs(&ws, &[late]).await.unwrap(), [true]);
    // Other subjects and workspaces are apart.
    assert_eq!(
        s.start_runs(&ws, &[start(&run(&once, "globex", t(2, 9)), Reentry::Never, "seg:9")]).await.unwrap(),
        [true]
    );
    assert_eq!(s.list_runs(&other, &RunFilter::default(), &PageRequest::first(10)).await.unwrap().items, []);
    assert_eq!(s.get_run(&other, &first.run_id).await.unwrap(), None);
}

pub async fn runs_advance_once_with_their_effects<S: Store>(s: &S) {
    let ws = workspace(s, "acme").await;
    let other = workspace(s, "globex").await;
    let j = s.put_journey(&ws, &draft("Onboarding", json!([])), t(1, 0)).await.unwrap();
    let runs: Vec<Run> = (0..5).map(|i| run(&j, &format!("acct-{i}"), t(1, 9 + i))).collect();
    let starts: Vec<RunStart> = runs.iter().map(|r| start(r, Reentry::Never, &r.subject_id)).collect();
    assert_eq!(s.start_runs(&ws, &starts).await.unwrap(), [true; 5]);
    // Due runs, earliest first.
    let due = s.due_runs(&ws, t(1, 11), 10).await.unwrap();
    assert_eq!(due.iter().map(|r| r.subject_id.as_str()).collect::<Vec<_>>(), ["acct-0", "acct-1", "acct-2"]);
    assert_eq!(due[0], runs[0]);
    assert_eq!(s.due_runs(&ws, t(1, 11), 2).await.unwrap().len(), 2);
    assert_eq!(s.due_runs(&other, t(9, 0), 10).await.unwrap(), []);
    // A step with its effects applies once: a second attempt of the same transition does not.
    let r = &runs[0];
    let update = step(
        r,
        Some("pause"),
        t(1, 12),
        vec![email(r, "welcome", t(1, 12))],
        vec![task("task-1", "Call", None, t(1, 12))],
    );
    assert_eq!(s.advance_runs(&ws, &[update.clone(), update.clone()]).await.unwrap(), [true, false]);
    assert_eq!(s.advance_runs(&ws, std::slice::from_ref(&update)).await.unwrap(), [false]);
    let stored = s.get_run(&ws, &r.run_id).await.unwrap().unwrap();
    assert_eq!(stored, update.run);
    let page = s.list_messages(&ws, &MessageFilter::default(), &PageRequest::first(10)).await.unwrap();
    assert_eq!(page.items, [email(r, "welcome", t(1, 12))]);
    assert_eq!(s.get_task(&ws, "task-1").await.unwrap().unwrap().title, "Call");
    assert_eq!(s.get_task(&other, "task-1").await.unwrap(), None);
    // A message keyed like one stored is left as it was.
    let mut later = update.run.clone();
    let mut same_key = email(r, "welcome", t(1, 13));
    same_key.payload = json!({"subject": "changed"});
    later.seq += 1;
    let again = RunUpdate { run: later, expected_seq: 1, steps: vec![], messages: vec![same_key], tasks: vec![] };
    assert_eq!(s.advance_runs(&ws, &[again]).await.unwrap(), [true]);
    let m = s.get_message(&ws, &format!("{}:welcome:0", r.run_id)).await.unwrap().unwrap();
    assert_eq!(m.payload, json!({"subject": "Welcome", "text": "Hello"}));
    // Waiting runs are found by their key.
    let mut waiting = runs[1].clone();
    waiting.seq = 1;
    waiting.wake_at = Some(t(5, 9));
    waiting.waiting = Some(journeys::wait_key("Report Created", "acct-1", None));
    let wait = RunUpdate { run: waiting.clone(), expected_seq: 0, steps: vec![], messages: vec![], tasks: vec![] };
    s.advance_runs(&ws, &[wait]).await.unwrap();
    let key = journeys::wait_key("report_created", "acct-1", None);
    assert_eq!(s.waiting_runs(&ws, &[key.clone(), "nothing".into()]).await.unwrap(), [waiting.clone()]);
    assert_eq!(s.waiting_runs(&other, &[key]).await.unwrap(), []);
    // Steps, stats and lists.
    assert_eq!(s.run_steps(&ws, &r.run_id).await.unwrap(), update.steps);
    s.advance_runs(&ws, &[step(&runs[2], None, t(1, 12), vec![], vec![])]).await.unwrap();
    let stats = s.journey_stats(&ws, &j.journey_id).await.unwrap();
    assert_eq!((stats.entered, stats.active, stats.completed, stats.converted), (5, 4, 1, 0));
    assert_eq!(
        stats.steps,
        [StepCount { step_id: "welcome".into(), taken: 2, outcomes: vec![("sent".into(), 1), ("waited".into(), 1)] }]
    );
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let p = s
            .list_runs(&ws, &RunFilter { journey_id: Some(j.journey_id.clone()), ..RunFilter::default() }, &page)
            .await
            .unwrap();
        seen.extend(p.items.into_iter().map(|r| r.subject_id));
        match p.next {
            Some(c) => page.after = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ["acct-4", "acct-3", "acct-2", "acct-1", "acct-0"], "newest start first, in pages");
    let done = RunFilter { status: Some(RunStatus::Completed), ..RunFilter::default() };
    let p = s.list_runs(&ws, &done, &PageRequest::first(10)).await.unwrap();
    assert_eq!(p.items.iter().map(|r| r.subject_id.as_str()).collect::<Vec<_>>(), ["acct-2"]);
    let of = RunFilter { account_id: Some("acct-3".into()), ..RunFilter::default() };
    assert_eq!(s.list_runs(&ws, &of, &PageRequest::first(10)).await.unwrap().items, [runs[3].clone()]);
}

pub async fn the_outbox_leases_retries_and_replays<S: Store>(s: &S) {
    let ws = workspace(s, "acme").await;
    let other = workspace(s, "globex").await;
    let j = s.put_journey(&ws, &draft("Onboarding", json!([])), t(1, 0)).await.unwrap();
    let runs: Vec<Run> = (0..3).map(|i| run(&j, &format!("acct-{i}"), t(1, 9))).collect();
    let starts: Vec<RunStart> = runs.iter().map(|r| start(r, Reentry::Never, &r.subject_id)).collect();
    s.start_runs(&ws, &starts).await.unwrap();
    let updates: Vec<RunUpdate> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| step(r, Some("pause"), t(1, 9), vec![email(r, "welcome", t(1, 10 + i as u32))], vec![]))
        .collect();
    s.advance_runs(&ws, &updates).await.unwrap();
    // Only due messages are taken, earliest first, and once taken not again until the lease ends.
    let taken = s.claim_messages(&ws, t(1, 11), t(1, 11) + Duration::minutes(5), 10).await.unwrap();
    assert_eq!(taken.iter().map(|m| m.account_id.as_deref().unwrap()).collect::<Vec<_>>(), ["acct-0", "acct-1"]);
    assert!(taken.iter().all(|m| m.status == MessageStatus::Sending && m.attempts == 1));
    assert_eq!(s.claim_messages(&other, t(9, 0), t(9, 1), 10).await.unwrap(), []);
    assert_eq!(s.claim_messages(&ws, t(1, 11), t(1, 12), 10).await.unwrap(), []);
    // The first is delivered; the second fails and is tried again later.
    let (a, b) = (&taken[0], &taken[1]);
    let attempt = |m: &OutboxMessage, outcome: &str| Attempt {
        message_id: m.message_id.clone(),
        attempt: m.attempts,
        at: t(1, 11),
        outcome: outcome.into(),
        status: Some(250),
        detail: "250 OK".into(),
        duration_ms: 12,
    };
    let delivered = MessageUpdate {
        message_id: a.message_id.clone(),
        status: MessageStatus::Delivered,
        attempts: a.attempts,
        next_attempt_at: None,
        last_error: None,
        delivered_at: Some(t(1, 11)),
        attempt: Some(attempt(a, "delivered")),
    };
    let retry = MessageUpdate {
        message_id: b.message_id.clone(),
        status: MessageStatus::Pending,
        attempts: b.attempts,
        next_attempt_at: Some(t(1, 13)),
        last_error: Some("451 try later".into()),
        delivered_at: None,
        attempt: Some(Attempt { status: Some(451), detail: "451 try later".into(), ..attempt(b, "retry") }),
    };
    s.update_messages(&ws, &[delivered, retry], t(1, 11)).await.unwrap();
    let stored = s.get_message(&ws, &a.message_id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.delivered_at, stored.lease_until),
        (MessageStatus::Delivered, Some(t(1, 11)), None)
    );
    assert_eq!(s.message_attempts(&ws, &a.message_id).await.unwrap(), [attempt(a, "delivered")]);
    // At 12:00 the third is due; the second waits for 13:00.
    let next = s.claim_messages(&ws, t(1, 12), t(1, 12) + Duration::minutes(5), 10).await.unwrap();
    assert_eq!(next.iter().map(|m| m.account_id.as_deref().unwrap()).collect::<Vec<_>>(), ["acct-2"]);
    // Its deliverer stops: once the lease ends another takes it, and the attempt is recorded
    // as interrupted.
    let again = s.claim_messages(&ws, t(1, 12) + Duration::minutes(6), t(1, 13), 10).await.unwrap();
    assert_eq!(
        again.iter().map(|m| (m.account_id.as_deref().unwrap(), m.attempts)).collect::<Vec<_>>(),
        [("acct-2", 2)]
    );
    let attempts = s.message_attempts(&ws, &next[0].message_id).await.unwrap();
    assert_eq!(attempts.iter().map(|a| (a.attempt, a.outcome.as_str())).collect::<Vec<_>>(), [(1, "interrupted")]);
    // A dead letter is replayed from its first attempt.
    let dead = MessageUpdate {
        message_id: b.message_id.clone(),
        status: MessageStatus::Dead,
        attempts: 12,
        next_attempt_at: None,
        last_error: Some("550 no such user".into()),
        delivered_at: None,
        attempt: None,
    };
    s.update_messages(&ws, &[dead], t(1, 14)).await.unwrap();
    let dead_letters = MessageFilter { status: Some(MessageStatus::Dead), ..MessageFilter::default() };
    let listed = s.list_messages(&ws, &dead_letters, &PageRequest::first(10)).await.unwrap().items;
    assert_eq!(listed.iter().map(|m| m.message_id.as_str()).collect::<Vec<_>>(), [b.message_id.as_str()]);
    assert_eq!(s.replay_message(&other, &b.message_id, t(2, 9)).await.unwrap(), None);
    let replayed = s.replay_message(&ws, &b.message_id, t(2, 9)).await.unwrap().unwrap();
    assert_eq!(
        (replayed.status, replayed.next_attempt_at, replayed.last_error),
        (MessageStatus::Pending, Some(t(2, 9)), None)
    );
    assert_eq!((replayed.attempts, replayed.retry_base), (12, 12), "attempts go on counting; the schedule starts over");
    let delivered_one = s.replay_message(&ws, &a.message_id, t(2, 9)).await.unwrap().unwrap();
    assert_eq!(delivered_one.status, MessageStatus::Delivered, "only dead or suppressed messages are replayed");
    // Per account and journey, and per person for frequency caps.
    let of = MessageFilter { account_id: Some("acct-1".into()), ..MessageFilter::default() };
    assert_eq!(s.list_messages(&ws, &of, &PageRequest::first(10)).await.unwrap().items.len(), 1);
    assert_eq!(s.messages_to(&ws, "p-acct-1", Channel::Email, t(1, 0)).await.unwrap(), 1);
    assert_eq!(s.messages_to(&ws, "p-acct-1", Channel::Email, t(1, 12)).await.unwrap(), 0);
    assert_eq!(s.messages_to(&ws, "p-acct-1", Channel::Slack, t(1, 0)).await.unwrap(), 0);
    assert_eq!(s.messages_to(&other, "p-acct-1", Channel::Email, t(1, 0)).await.unwrap(), 0);
    // Blocked endpoints.
    s.block_endpoint(&ws, "https://hooks.example/x", "410 Gone", t(1, 9)).await.unwrap();
    s.block_endpoint(&ws, "https://hooks.example/x", "again", t(1, 10)).await.unwrap();
    assert_eq!(
        s.blocked_endpoints(&ws).await.unwrap(),
        [("https://hooks.example/x".into(), "410 Gone".into(), t(1, 9))]
    );
    assert_eq!(s.blocked_endpoints(&other).await.unwrap(), []);
    assert!(s.unblock_endpoint(&ws, "https://hooks.example/x").await.unwrap());
    assert!(!s.unblock_endpoint(&ws, "https://hooks.example/x").await.unwrap());
}

pub async fn tasks_list_open_ones_by_due_date_and_are_closed_by_operators<S: Store>(s: &S) {
    let ws = workspace(s, "acme").await;
    let other = workspace(s, "globex").await;
    s.insert_task(&ws, &task("t1", "Later", Some(t(9, 9)), t(1, 9))).await.unwrap();
    s.insert_task(&ws, &task("t2", "Soon", Some(t(3, 9)), t(1, 9))).await.unwrap();
    s.insert_task(&ws, &task("t3", "Whenever, new", None, t(2, 9))).await.unwrap();
    s.insert_task(&ws, &task("t4", "Whenever, old", None, t(1, 9))).await.unwrap();
    s.insert_task(&ws, &task("t2", "Duplicate", None, t(1, 9))).await.unwrap();
    assert_eq!(s.get_task(&ws, "t2").await.unwrap().unwrap().title, "Soon", "a stored task is left as it is");
    let closed = s.update_task(&ws, "t2", TaskStatus::Done, "ann@example.com", t(4, 9)).await.unwrap().unwrap();
    assert_eq!(
        (closed.status, closed.closed_by.as_deref(), closed.updated_at),
        (TaskStatus::Done, Some("ann@example.com"), t(4, 9))
    );
    assert_eq!(s.update_task(&other, "t1", TaskStatus::Done, "x", t(4, 9)).await.unwrap(), None);
    assert_eq!(s.update_task(&ws, "nope", TaskStatus::Done, "x", t(4, 9)).await.unwrap(), None);
    let mut ids = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let p = s.list_tasks(&ws, &TaskFilter::default(), &page).await.unwrap();
        ids.extend(p.items.into_iter().map(|t| t.task_id));
        match p.next {
            Some(c) => page.after = Some(c),
            None => break,
        }
    }
    assert_eq!(ids, ["t1", "t3", "t4", "t2"], "open by due date, undated newest first, then closed");
    let open = TaskFilter { status: Some(TaskStatus::Open), ..TaskFilter::default() };
    assert_eq!(s.list_tasks(&ws, &open, &PageRequest::first(10)).await.unwrap().items.len(), 3);
    let theirs = TaskFilter { assignee: Some("someone@else".into()), ..TaskFilter::default() };
    assert_eq!(s.list_tasks(&ws, &theirs, &PageRequest::first(10)).await.unwrap().items, []);
    assert_eq!(s.list_tasks(&other, &TaskFilter::default(), &PageRequest::first(10)).await.unwrap().items, []);
    let reopened = s.update_task(&ws, "t2", TaskStatus::Open, "ann@example.com", t(5, 9)).await.unwrap().unwrap();
    assert_eq!((reopened.status, reopened.closed_by), (TaskStatus::Open, None));
}

fn connector(provider: &str, at: DateTime<Utc>) -> ConnectorRecord {
    ConnectorRecord {
        provider: provider.into(),
        config: json!({"base_url": format!("https://api.{provider}.example"), "match": ["external_id"]}),
        secrets: "sealed:v1:abc".into(),
        enabled: true,
        created_at: at,
        updated_at: at,
        sync: json!({}),
        last_sync_at: None,
        records_synced: 0,
        webhooks_received: 0,
        errors: 0,
    }
}

fn provider_object(kind: &str, id: &str, parent: Option<&str>, version: i64) -> ProviderObject {
    ProviderObject {
        kind: kind.into(),
        object_id: id.into(),
        parent_id: parent.map(Into::into),
        version,
        account_id: None,
        matched_by: None,
        label: format!("{kind} {id}"),
        payload: json!({"id": id, "version": version}),
        updated_at: t(1, 9),
    }
}

fn matched(mut o: ProviderObject, account: &str, by: &str) -> ProviderObject {
    o.account_id = Some(acct(account));
    o.matched_by = Some(by.into());
    o
}

fn ids(objects: &[ProviderObject]) -> Vec<String> {
    objects.iter().map(|o| format!("{}/{}", o.kind, o.object_id)).collect()
}

fn connector_error(i: usize, at: DateTime<Utc>) -> ConnectorError {
    ConnectorError {
        at,
        stage: "webhook".into(),
        object_kind: Some("customer".into()),
        object_id: Some(format!("cus_{i}")),
        message: format!("error {i}"),
        record: Some(json!({"n": i})),
    }
}

pub async fn connectors_are_one_per_provider_and_keep_their_state<S: Store>(s: &S) {
    let ws = workspace(s, "acme").await;
    let stripe = connector("stripe", t(1, 9));
    s.create_connector(&ws, &stripe).await.unwrap();
    s.create_connector(&ws, &connector("hubspot", t(1, 10))).await.unwrap();
    assert!(matches!(s.create_connector(&ws, &connector("stripe", t(2, 9))).await, Err(StoreError::Conflict(_))));
    assert_eq!(s.get_connector(&ws, "stripe").await.unwrap(), Some(stripe.clone()));
    assert_eq!(s.get_connector(&ws, "zendesk").await.unwrap(), None);
    let listed = s.list_connectors(&ws).await.unwrap();
    assert_eq!(listed.iter().map(|c| c.provider.as_str()).collect::<Vec<_>>(), ["hubspot", "stripe"]);

    // An update replaces the settings and keeps the state.
    let progress = ConnectorProgress { sync: Some(json!({"phase": "backfill"})), records: 3, ..Default::default() };
    assert!(s.record_connector_progress(&ws, "stripe", &progress, t(1, 11)).await.unwrap());
    let changed = ConnectorRecord {
        config: json!({"base_url": "https://eu.stripe.example"}),
        secrets: "sealed:v1:def".into(),
        enabled: false,
        updated_at: t(2, 9),
        sync: json!({"ignored": true}),
        records_synced: 99,
        ..stripe.clone()
    };
    assert!(s.update_connector(&ws, &changed).await.unwrap());
    let stored = s.get_connector(&ws, "stripe").await.unwrap().unwrap();
    assert_eq!(
        (&stored.config, stored.secrets.as_str(), stored.enabled, stored.updated_at, stored.created_at),
        (&changed.config, "sealed:v1:def", false, t(2, 9), t(1, 9))
    );
    assert_eq!((stored.sync, stored.records_synced), (json!({"phase": "backfill"}), 3), "the state is kept");
    assert!(!s.update_connector(&ws, &connector("zendesk", t(2, 9))).await.unwrap());

    // Deleting one takes its objects and errors with it.
    s.put_provider_objects(&ws, "stripe", &[provider_object("customer", "cus_1", None, 1)]).await.unwrap();
    s.add_connector_error(&ws, "stripe", &connector_error(1, t(2, 10))).await.unwrap();
    assert!(s.delete_connector(&ws, "stripe").await.unwrap());
    assert!(!s.delete_connector(&ws, "stripe").await.unwrap());
    assert_eq!(s.get_connector(&ws, "stripe").await.unwrap(), None);
    let listed = s.list_connectors(&ws).await.unwrap();
    assert_eq!(listed.iter().map(|c| c.provider.as_str()).collect::<Vec<_>>(), ["hubspot"]);
    s.create_connector(&ws, &connector("stripe", t(3, 9))).await.unwrap();
    assert_eq!(s.provider_objects(&ws, "stripe", &ObjectQuery::default()).await.unwrap(), [], "objects went with it");
    assert_eq!(s.connector_errors(&ws, "stripe", 10).await.unwrap(), [], "errors went with it");
    assert_eq!(s.get_connector(&ws, "stripe").await.unwrap().unwrap().errors, 0);
}

pub async fn connector_progress_adds_up<S: Store>(s: &S) {
    let ws = workspace(s, "acme").await;
    s.create_connector(&ws, &connector("stripe", t(1, 9))).await.unwrap();
    let page = ConnectorProgress {
        sync: Some(json!({"phase": "backfill", "cursor": "cus_100"})),
        records: 100,
        ..Default::default()
    };
    assert!(s.record_connector_progress(&ws, "stripe", &page, t(1, 10)).await.unwrap());
    let webhooks = ConnectorProgress { records: 2, webhooks: 3, ..Default::default() };
    assert!(s.record_connector_progress(&ws, "stripe", &webhooks, t(1, 11)).await.unwrap());
    let c = s.get_connector(&ws, "stripe").await.unwrap().unwrap();
    assert_eq!(c.sync, json!({"phase": "backfill", "cursor": "cus_100"}), "the sync state is kept when none is given");
    assert_eq!((c.records_synced, c.webhooks_received, c.last_sync_at, c.updated_at), (102, 3, None, t(1, 11)));
    let done =
        ConnectorProgress { sync: Some(json!({"phase": "live"})), synced_at: Some(t(1, 12)), records: 5, webhooks: 0 };
    assert!(s.record_connector_progress(&ws, "stripe", &done, t(1, 12)).await.unwrap());
    let c = s.get_connector(&ws, "stripe").await.unwrap().unwrap();
    assert_eq!((c.sync, c.records_synced, c.last_sync_at), (json!({"phase": "live"}), 107, Some(t(1, 12))));
    let nothing = ConnectorProgress::default();
    assert!(s.record_connector_progress(&ws, "stripe", &nothing, t(1, 13)).await.unwrap());
    assert_eq!(s.get_connector(&ws, "stripe").await.unwrap().unwrap().last_sync_at, Some(t(1, 12)));
    assert!(!s.record_connector_progress(&ws, "hubspot", &page, t(1, 13)).await.unwrap());
}

pub async fn a_sync_is_marked_again_alone<S: Store>(s: &S) {
    let ws = workspace(s, "acme").await;
    s.create_connector(&ws, &connector("hubspot", t(1, 9))).await.unwrap();
    // No sync requested: nothing to mark, the caller requests one.
    assert!(!s.mark_connector_sync_again(&ws, "hubspot", t(1, 10)).await.unwrap());
    assert_eq!(s.get_connector(&ws, "hubspot").await.unwrap().unwrap().sync, json!({}));
    let under_way = json!({"requested": true, "resource": 2, "cursor": "200", "pages": 7, "again": false});
    let progress = ConnectorProgress { sync: Some(under_way.clone()), ..Default::default() };
    assert!(s.record_connector_progress(&ws, "hubspot", &progress, t(1, 11)).await.unwrap());
    assert!(s.mark_connector_sync_again(&ws, "hubspot", t(1, 12)).await.unwrap());
    let c = s.get_connector(&ws, "hubspot").await.unwrap().unwrap();
    let mut expected = under_way.clone();
    expected["again"] = json!(true);
    assert_eq!((c.sync, c.updated_at), (expected, t(1, 12)), "only the flag changed");
    // The sync saves its cursor after: the mark stays if it keeps it, as the backfill does.
    let next = json!({"requested": true, "resource": 2, "cursor": "300", "pages": 8, "again": true});
    let progress = ConnectorProgress { sync: Some(next.clone()), ..Default::default() };
    assert!(s.record_connector_progress(&ws, "hubspot", &progress, t(1, 13)).await.unwrap());
    assert_eq!(s.get_connector(&ws, "hubspot").await.unwrap().unwrap().sync, next);
    assert!(!s.mark_connector_sync_again(&ws, "stripe", t(1, 14)).await.unwrap(), "no such connector");
    let other = workspace(s, "globex").await;
    assert!(!s.mark_connector_sync_again(&other, "hubspot", t(1, 14)).await.unwrap(), "another workspace's");
}

pub async fn secrets_are_replaced_only_if_unchanged<S: Store>(s: &S) {
    let ws = workspace(s, "acme").await;
    let c = connector("salesforce", t(1, 9));
    s.create_connector(&ws, &c).await.unwrap();
    assert!(!s.replace_connector_secrets(&ws, "salesforce", "v1.other", "v1.new").await.unwrap());
    assert_eq!(s.get_connector(&ws, "salesforce").await.unwrap().unwrap().secrets, c.secrets);
    assert!(s.replace_connector_secrets(&ws, "salesforce", &c.secrets, "v1.new").await.unwrap());
    let stored = s.get_connector(&ws, "salesforce").await.unwrap().unwrap();
    assert_eq!((stored.secrets.as_str(), stored.config, stored.sync), ("v1.new", c.config, c.sync));
    // A second refresh from the same old secrets (raced by the first) changes nothing.
    assert!(!s.replace_connector_secrets(&ws, "salesforce", &c.secrets, "v1.newer").await.unwrap());
    let other = workspace(s, "globex").await;
    assert!(!s.replace_connector_secrets(&other, "salesforce", "v1.new", "v1.x").await.unwrap());
    assert_eq!(s.get_connector(&ws, "salesforce").await.unwrap().unwrap().secrets, "v1.new");
}

pub async fn provider_objects_keep_the_newest_version<S: Store>(s: &S) {
    let ws = workspace(s, "acme").await;
    s.create_connector(&ws, &connector("stripe", t(1, 9))).await.unwrap();
    let v5 = matched(provider_object("customer", "cus_1", None, 5), "acct-1", "external_id");
    let other = provider_object("customer", "cus_2", None, 1);
    assert_eq!(s.put_provider_objects(&ws, "stripe", &[v5.clone(), other.clone()]).await.unwrap(), [true, true]);
    let one = ObjectQuery { object_id: Some("cus_1".into()), ..Default::default() };
    let (wsr, one) = (&ws, &one);
    let stored = move || async move { s.provider_objects(wsr, "stripe", one).await.unwrap() };
    assert_eq!(stored().await, std::slice::from_ref(&v5));

    // An older version is left out; an equal one replaces, keeping the account it was
    // matched to when it comes without one.
    let v4 = ProviderObject { label: "older".into(), ..provider_object("customer", "cus_1", None, 4) };
    assert_eq!(s.put_provider_objects(&ws, "stripe", &[v4]).await.unwrap(), [false]);
    assert_eq!(stored().await, std::slice::from_ref(&v5));
    let v5_again = ProviderObject { label: "corrected".into(), ..provider_object("customer", "cus_1", None, 5) };
    assert_eq!(s.put_provider_objects(&ws, "stripe", std::slice::from_ref(&v5_again)).await.unwrap(), [true]);
    let kept = ProviderObject { account_id: Some(acct("acct-1")), matched_by: Some("external_id".into()), ..v5_again };
    assert_eq!(stored().await, [kept]);

    // A newer one replaces, its own account winning when it has one.
    let v7 = ProviderObject { updated_at: t(2, 9), ..provider_object("customer", "cus_1", Some("org_1"), 7) };
    let v8 = matched(provider_object("customer", "cus_1", None, 8), "acct-2", "domain");
    let v6 = provider_object("customer", "cus_1", None, 6);
    assert_eq!(s.put_provider_objects(&ws, "stripe", std::slice::from_ref(&v7)).await.unwrap(), [true]);
    let kept = ProviderObject { account_id: Some(acct("acct-1")), matched_by: Some("external_id".into()), ..v7 };
    assert_eq!(stored().await, [kept]);
    // In one slice each is weighed against what the ones before it wrote.
    assert_eq!(s.put_provider_objects(&ws, "stripe", &[v8.clone(), v6]).await.unwrap(), [true, false]);
    assert_eq!(stored().await, [v8]);
    let older_other = provider_object("customer", "cus_2", None, 0);
    let v9 = matched(provider_object("customer", "cus_1", None, 9), "acct-3", "email");
    let v9_again = provider_object("customer", "cus_1", None, 9);
    let slice = [older_other, v9, v9_again.clone()];
    assert_eq!(s.put_provider_objects(&ws, "stripe", &slice).await.unwrap(), [false, true, true]);
    let kept = ProviderObject { account_id: Some(acct("acct-3")), matched_by: Some("email".into()), ..v9_again };
    assert_eq!(stored().await, [kept]);
    assert_eq!(s.provider_objects(&ws, "stripe", &ObjectQuery::default()).await.unwrap().len(), 2);

    // The same id under another kind or provider is another object; a provider without a
    // connector stores nothing.
    let invoice = provider_object("invoice", "cus_1", None, 1);
    assert_eq!(s.put_provider_objects(&ws, "stripe", std::slice::from_ref(&invoice)).await.unwrap(), [true]);
    assert_eq!(s.put_provider_objects(&ws, "hubspot", &[invoice.clone(), other]).await.unwrap(), [false, false]);
    assert_eq!(s.provider_objects(&ws, "hubspot", &ObjectQuery::default()).await.unwrap(), []);
    assert_eq!(s.put_provider_objects(&ws, "stripe", &[]).await.unwrap(), Vec::<bool>::new());
}

pub async fn provider_objects_are_found_by_each_field_and_in_pages<S: Store>(s: &S) {
    let ws = workspace(s, "acme").await;
    s.create_connector(&ws, &connector("stripe", t(1, 9))).await.unwrap();
    let objects = [
        matched(provider_object("customer", "cus_1", None, 1), "acct-1", "external_id"),
        provider_object("customer", "cus_2", None, 1),
        matched(provider_object("customer", "cus_3", None, 1), "acct-2", "domain"),
        matched(provider_object("subscription", "sub_1", Some("cus_1"), 1), "acct-1", "external_id"),
        provider_object("subscription", "sub_2", Some("cus_2"), 1),
        provider_object("invoice", "in_1", Some("cus_2"), 1),
        provider_object("invoice", "in_2", Some("cus_1"), 1),
    ];
    assert_eq!(s.put_provider_objects(&ws, "stripe", &objects).await.unwrap(), [true; 7]);
    let wsr = &ws;
    let find = move |q: ObjectQuery| async move { ids(&s.provider_objects(wsr, "stripe", &q).await.unwrap()) };

    let all = find(ObjectQuery::default()).await;
    assert_eq!(
        all,
        [
            "customer/cus_1",
            "customer/cus_2",
            "customer/cus_3",
            "invoice/in_1",
            "invoice/in_2",
            "subscription/sub_1",
            "subscription/sub_2"
        ],
        "by kind, then id"
    );
    let q = ObjectQuery { kind: Some("invoice".into()), ..Default::default() };
    assert_eq!(find(q).await, ["invoice/in_1", "invoice/in_2"]);
    let q = ObjectQuery { object_id: Some("sub_2".into()), ..Default::default() };
    assert_eq!(find(q).await, ["subscription/sub_2"]);
    let q = ObjectQuery { parent_id: Some("cus_2".into()), ..Default::default() };
    assert_eq!(find(q).await, ["invoice/in_1", "subscription/sub_2"]);
    let q = ObjectQuery { account_id: Some(acct("acct-1")), ..Default::default() };
    assert_eq!(find(q).await, ["customer/cus_1", "subscription/sub_1"]);
    let q = ObjectQuery { unmatched: true, ..Default::default() };
    assert_eq!(find(q).await, ["customer/cus_2", "invoice/in_1", "invoice/in_2", "subscription/sub_2"]);
    let q = ObjectQuery { kind: Some("customer".into()), unmatched: true, ..Default::default() };
    assert_eq!(find(q).await, ["customer/cus_2"]);
    let q = ObjectQuery { kind: Some("invoice".into()), parent_id: Some("cus_1".into()), ..Default::default() };
    assert_eq!(find(q).await, ["invoice/in_2"]);
    let q = ObjectQuery { kind: Some("customer".into()), object_id: Some("sub_1".into()), ..Default::default() };
    assert_eq!(find(q).await, Vec::<String>::new(), "every condition given must hold");
    let q = ObjectQuery { limit: 2, ..Default::default() };
    assert_eq!(find(q).await, ["customer/cus_1", "customer/cus_2"]);

    // Paging by (kind, id): each page starts after the last one read.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let q = ObjectQuery { after: after.clone(), limit: 3, ..Default::default() };
        let page = s.provider_objects(&ws, "stripe", &q).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.kind.clone(), last.object_id.clone()));
        seen.extend(ids(&page));
    }
    assert_eq!(seen, all);
    let q = ObjectQuery {
        unmatched: true,
        after: Some(("customer".into(), "cus_3".into())),
        limit: 2,
        ..Default::default()
    };
    assert_eq!(find(q).await, ["invoice/in_1", "invoice/in_2"]);
    // With the kind given, paging goes on within it.
    let invoices_after = |kind: &str, id: &str| ObjectQuery {
        kind: Some("invoice".into()),
        after: Some((kind.into(), id.into())),
        ..Default::default()
    };
    assert_eq!(find(invoices_after("invoice", "in_1")).await, ["invoice/in_2"]);
    assert_eq!(find(invoices_after("customer", "cus_9")).await, ["invoice/in_1", "invoice/in_2"]);
    assert_eq!(find(invoices_after("subscription", "")).await, Vec::<String>::new());
}

pub async fn linking_an_object_links_its_unmatched_children<S: Store>(s: &S) {
    let ws = workspace(s, "acme").await;
    s.create_connector(&ws, &connector("stripe", t(1, 9))).await.unwrap();
    let objects = [
        provider_object("customer", "cus_1", None, 1),
        provider_object("customer", "cus_2", None, 1),
        provider_object("subscription", "sub_1", Some("cus_1"), 1),
        matched(provider_object("subscription", "sub_2", Some("cus_1"), 1), "acct-9", "external_id"),
        provider_object("invoice", "in_1", Some("cus_1"), 1),
        provider_object("invoice", "in_2", Some("cus_2"), 1),
    ];
    s.put_provider_objects(&ws, "stripe", &objects).await.unwrap();
    assert!(s.link_provider_object(&ws, "stripe", "customer", "cus_1", &acct("acct-1"), "manual").await.unwrap());
    let all = s.provider_objects(&ws, "stripe", &ObjectQuery::default()).await.unwrap();
    let links: Vec<(String, Option<&str>, Option<&str>)> = all
        .iter()
        .map(|o| (o.object_id.clone(), o.account_id.as_ref().map(AccountId::as_str), o.matched_by.as_deref()))
        .collect();
    assert_eq!(
        links,
        [
            ("cus_1".into(), Some("acct-1"), Some("manual")),
            ("cus_2".into(), None, None),
            ("in_1".into(), Some("acct-1"), Some("manual")),
            ("in_2".into(), None, None),
            ("sub_1".into(), Some("acct-1"), Some("manual")),
            ("sub_2".into(), Some("acct-9"), Some("external_id")),
        ],
        "the object and its children without an account"
    );
    // Linking again moves the object itself, not children that have an account now.
    assert!(s.link_provider_object(&ws, "stripe", "customer", "cus_1", &acct("acct-2"), "manual").await.unwrap());
    let q = ObjectQuery { account_id: Some(acct("acct-2")), ..Default::default() };
    assert_eq!(ids(&s.provider_objects(&ws, "stripe", &q).await.unwrap()), ["customer/cus_1"]);
    assert!(!s.link_provider_object(&ws, "stripe", "customer", "cus_404", &acct("acct-1"), "manual").await.unwrap());
    assert!(!s.link_provider_object(&ws, "stripe", "invoice", "cus_2", &acct("acct-1"), "manual").await.unwrap());
    assert!(!s.link_provider_object(&ws, "hubspot", "customer", "cus_2", &acct("acct-1"), "manual").await.unwrap());
    let q = ObjectQuery { parent_id: Some("cus_2".into()), unmatched: true, ..Default::default() };
    assert_eq!(ids(&s.provider_objects(&ws, "stripe", &q).await.unwrap()), ["invoice/in_2"], "nothing else moved");
}

pub async fn connector_errors_are_counted_and_the_newest_kept<S: Store>(s: &S) {
    let ws = workspace(s, "acme").await;
    s.create_connector(&ws, &connector("stripe", t(1, 9))).await.unwrap();
    s.create_connector(&ws, &connector("hubspot", t(1, 9))).await.unwrap();
    let first = ConnectorError {
        at: t(1, 10),
        stage: "backfill".into(),
        object_kind: None,
        object_id: None,
        message: "401 Unauthorized".into(),
        record: None,
    };
    s.add_connector_error(&ws, "hubspot", &first).await.unwrap();
    assert_eq!(s.connector_errors(&ws, "hubspot", 10).await.unwrap(), std::slice::from_ref(&first));
    assert_eq!(s.get_connector(&ws, "hubspot").await.unwrap().unwrap().errors, 1);

    let total = connectors::ERRORS_KEPT as usize + 5;
    for i in 0..total {
        s.add_connector_error(&ws, "stripe", &connector_error(i, t(2, 9) + Duration::seconds(i as i64))).await.unwrap();
    }
    let kept = s.connector_errors(&ws, "stripe", 2 * total).await.unwrap();
    assert_eq!(kept.len(), connectors::ERRORS_KEPT as usize);
    assert_eq!(kept[0], connector_error(total - 1, t(2, 9) + Duration::seconds(total as i64 - 1)), "newest first");
    assert_eq!(kept.last().unwrap().message, "error 5", "the oldest went first");
    assert!(kept.windows(2).all(|w| w[0].at > w[1].at));
    assert_eq!(s.get_connector(&ws, "stripe").await.unwrap().unwrap().errors, total as i64, "every one is counted");
    let newest = s.connector_errors(&ws, "stripe", 2).await.unwrap();
    assert_eq!(newest.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(), ["error 1004", "error 1003"]);
    assert_eq!(
        s.connector_errors(&ws, "hubspot", 10).await.unwrap(),
        std::slice::from_ref(&first),
        "each connector keeps its own"
    );

    // A provider without a connector records nothing.
    s.add_connector_error(&ws, "zendesk", &first).await.unwrap();
    assert_eq!(s.connector_errors(&ws, "zendesk", 10).await.unwrap(), []);
}

pub async fn connectors_are_isolated_by_workspace<S: Store>(s: &S) {
    let ws = workspace(s, "acme").await;
    let other = workspace(s, "globex").await;
    s.create_connector(&ws, &connector("stripe", t(1, 9))).await.unwrap();
    let customer = provider_object("customer", "cus_1", None, 5);
    let child = provider_object("invoice", "in_1", Some("cus_1"), 5);
    s.put_provider_objects(&ws, "stripe", &[customer.clone(), child.clone()]).await.unwrap();
    s.add_connector_error(&ws, "stripe", &connector_error(1, t(1, 10))).await.unwrap();

    // The other workspace sees none of it, and what it does touches nothing of the first.
    assert_eq!(s.get_connector(&other, "stripe").await.unwrap(), None);
    assert_eq!(s.list_connectors(&other).await.unwrap(), []);
    assert_eq!(s.provider_objects(&other, "stripe", &ObjectQuery::default()).await.unwrap(), []);
    assert_eq!(s.connector_errors(&other, "stripe", 10).await.unwrap(), []);
    assert!(!s.update_connector(&other, &connector("stripe", t(2, 9))).await.unwrap());
    let progress = ConnectorProgress { records: 1, webhooks: 1, ..Default::default() };
    assert!(!s.record_connector_progress(&other, "stripe", &progress, t(2, 9)).await.unwrap());
    assert!(!s.link_provider_object(&other, "stripe", "customer", "cus_1", &acct("acct-1"), "manual").await.unwrap());

    // Its own connector for the same provider keeps its own objects, errors and counters.
    s.create_connector(&other, &connector("stripe", t(2, 9))).await.unwrap();
    let theirs = matched(provider_object("customer", "cus_1", None, 1), "acct-7", "domain");
    assert_eq!(s.put_provider_objects(&other, "stripe", std::slice::from_ref(&theirs)).await.unwrap(), [true]);
    assert!(s.link_provider_object(&other, "stripe", "customer", "cus_1", &acct("acct-8"), "manual").await.unwrap());
    s.add_connector_error(&other, "stripe", &connector_error(2, t(2, 10))).await.unwrap();
    assert!(s.delete_connector(&other, "stripe").await.unwrap());
    assert_eq!(s.provider_objects(&ws, "stripe", &ObjectQuery::default()).await.unwrap(), [customer, child]);
    assert_eq!(s.connector_errors(&ws, "stripe", 10).await.unwrap(), [connector_error(1, t(1, 10))]);
    let c = s.get_connector(&ws, "stripe").await.unwrap().unwrap();
    assert_eq!((c.records_synced, c.webhooks_received, c.errors, c.updated_at), (0, 0, 1, t(1, 9)));
}
