//! What scoring writes and the API reads: each account's latest scores and their daily
//! history, the models a workspace has trained, and alerts.
//!
//! Alerts are kept one open per account, kind and reason: [`plan_alerts`] decides, from the
//! alerts a workspace has and the signals a scoring run raised, which to open, update and
//! resolve. It is shared by the backends so that they agree; each applies the plan in one
//! transaction.

use chrono::NaiveDate;
use domain::{AccountId, Money, Timestamp};
use serde::Serialize;
use serde_json::Value;

use crate::Account;

string_enum!(
    /// Where a health score falls.
    HealthBand { Healthy = "healthy", Neutral = "neutral", AtRisk = "at_risk" }
);

/// One account's scores as of a day, with what explains them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AccountScore {
    pub account_id: AccountId,
    /// The day scored: what was known by its end.
    pub day: NaiveDate,
    /// 0 to 100.
    pub health: f64,
    pub band: HealthBand,
    /// Probability of churning within 30, 60 and 90 days; none for an account without a paid
    /// subscription.
    pub churn_30d: Option<f64>,
    pub churn_60d: Option<f64>,
    pub churn_90d: Option<f64>,
    /// Probability of expanding within 90 days.
    pub expansion: Option<f64>,
    pub mrr: Option<Money>,
    /// Each component's points, by name: what the history keeps of the explanation.
    pub components: Value,
    /// The whole explanation: components and their measures, drivers of each probability,
    /// what moved. Kept for the latest score only.
    pub explanation: JsonText,
    pub scored_at: Timestamp,
}

/// A JSON document kept as its text: what scoring writes for every account, where building
/// a tree of values would cost more than the scoring. Equal when the documents are (however
/// their keys are ordered or spaced).
#[derive(Clone, Debug)]
pub struct JsonText(String);

impl JsonText {
    /// From text that is JSON (as `serde_json::to_string` makes it).
    pub fn new(json: String) -> JsonText {
        JsonText(json)
    }

    pub fn from_value(v: &Value) -> JsonText {
        JsonText(v.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

impl PartialEq for JsonText {
    fn eq(&self, other: &JsonText) -> bool {
        self.0 == other.0 || self.to_value() == other.to_value()
    }
}

impl Serialize for JsonText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match serde_json::value::RawValue::from_string(self.0.clone()) {
            Ok(raw) => raw.serialize(s),
            Err(_) => Value::Null.serialize(s),
        }
    }
}

/// What rescoring one account reads of it, in one call: one round trip to the store where
/// reading each kind of row on its own took five.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccountRecords {
    /// None when the account is known from billing records only, or not at all.
    pub account: Option<Account>,
    /// As [`crate::Store::account_subscriptions`] lists them.
    pub subscriptions: Vec<crate::Subscription>,
    /// As [`crate::Store::account_tickets`] lists them.
    pub tickets: Vec<crate::Ticket>,
    /// As [`crate::Store::accounts_usage`] reads them for the account.
    pub usage: Vec<crate::UsageRow>,
    /// As [`crate::Store::score_history`] reads them.
    pub scores: Vec<ScorePoint>,
}

/// A day of an account's score history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScorePoint {
    pub day: NaiveDate,
    pub health: f64,
    pub band: HealthBand,
    pub churn_30d: Option<f64>,
    pub churn_60d: Option<f64>,
    pub churn_90d: Option<f64>,
    pub expansion: Option<f64>,
    pub mrr: Option<Money>,
    pub components: Value,
}

impl AccountScore {
    pub fn point(&self) -> ScorePoint {
        ScorePoint {
            day: self.day,
            health: self.health,
            band: self.band,
            churn_30d: self.churn_30d,
            churn_60d: self.churn_60d,
            churn_90d: self.churn_90d,
            expansion: self.expansion,
            mrr: self.mrr,
            components: self.components.clone(),
        }
    }
}

/// An account with the headline of its latest score, as the accounts list shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScoredAccount {
    #[serde(flatten)]
    pub account: Account,
    pub score: Option<ScoreSummary>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScoreSummary {
    pub day: NaiveDate,
    pub health: f64,
    pub band: HealthBand,
    pub churn_30d: Option<f64>,
    pub expansion: Option<f64>,
    pub mrr: Option<Money>,
}

string_enum!(
    /// What the accounts list is ordered by.
    AccountSort { Id = "account_id", Health = "health", ChurnRisk = "churn_risk", Expansion = "expansion", Mrr = "mrr" }
);

/// Which accounts a list holds, and in which order. Sorting or filtering by a score lists
/// scored accounts only; an account without a churn probability, expansion or MRR sorts as
/// if it were below every value.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountQuery {
    pub sort: AccountSort,
    pub descending: bool,
    pub band: Option<HealthBand>,
    pub health_min: Option<f64>,
    pub health_max: Option<f64>,
    /// Churn probability within 30 days, at least.
    pub churn_min: Option<f64>,
    pub mrr_min: Option<i64>,
    pub mrr_max: Option<i64>,
    /// Accounts whose id starts with it or whose name contains it, ignoring ASCII case.
    pub search: Option<String>,
    /// The `plan` trait equals it.
    pub plan: Option<String>,
    /// The owner: the `csm_email` trait equals it.
    pub owner: Option<String>,
    /// Members of this account segment (by id) only.
    pub segment: Option<String>,
}

impl Default for AccountQuery {
    fn default() -> Self {
        AccountQuery {
            sort: AccountSort::Id,
            descending: false,
            band: None,
            health_min: None,
            health_max: None,
            churn_min: None,
            mrr_min: None,
            mrr_max: None,
            search: None,
            plan: None,
            owner: None,
            segment: None,
        }
    }
}

impl AccountQuery {
    /// `search` as a `LIKE` pattern matching anywhere (`%` and `_` escaped with `\\`), and
    /// as one matching at the start.
    pub fn search_patterns(&self) -> Option<(String, String)> {
        let s = self.search.as_deref().map(str::trim).filter(|s| !s.is_empty())?;
        let escaped: String = s
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        Some((format!("%{escaped}%"), format!("{escaped}%")))
    }

    /// Whether it filters by the account itself (its id or name, a trait, a segment).
    pub fn filters_accounts(&self) -> bool {
        self.reads_traits() || self.segment.is_some()
    }

    /// Whether it filters by the account's record: its id or name, a trait.
    pub fn reads_traits(&self) -> bool {
        self.search.is_some() || self.plan.is_some() || self.owner.is_some()
    }

    /// Whether the list is of scored accounts only.
    pub fn needs_score(&self) -> bool {
        self.sort != AccountSort::Id
            || self.band.is_some()
            || self.health_min.is_some()
            || self.health_max.is_some()
            || self.churn_min.is_some()
            || self.mrr_min.is_some()
            || self.mrr_max.is_some()
    }

    /// The value an account sorts by (never missing: see [`AccountQuery`]).
    pub fn sort_value(&self, s: &ScoreSummary) -> f64 {
        match self.sort {
            AccountSort::Id | AccountSort::Health => s.health,
            AccountSort::ChurnRisk => s.churn_30d.unwrap_or(-1.0),
            AccountSort::Expansion => s.expansion.unwrap_or(-1.0),
            AccountSort::Mrr => s.mrr.map_or(-1.0, |m| m.minor as f64),
        }
    }
}

string_enum!(ModelKind { Churn = "churn", Expansion = "expansion" });
string_enum!(
    /// `active` scores the workspace; a newer model that did better on the holdout retires it;
    /// one that did not is kept as `rejected`, with its card, so the decision can be read.
    ModelStatus { Active = "active", Retired = "retired", Rejected = "rejected" }
);

/// A trained model and its card.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelRecord {
    pub model_id: String,
    pub kind: ModelKind,
    pub status: ModelStatus,
    pub created_at: Timestamp,
    /// How it did on the time-based holdout, per horizon, with the sizes of train and test.
    pub card: Value,
    /// Why it is active or was rejected.
    pub reason: String,
    /// The trained parameters; left out of lists.
    #[serde(skip)]
    pub model: Option<Value>,
}

string_enum!(AlertKind { Risk = "risk", Opportunity = "opportunity" });
string_enum!(Severity { Critical = "critical", High = "high", Medium = "medium", Low = "low" });
string_enum!(AlertStatus { Open = "open", Acknowledged = "acknowledged", Resolved = "resolved" });

impl Severity {
    /// Higher is more severe.
    pub fn rank(self) -> u8 {
        match self {
            Severity::Critical => 3,
            Severity::High => 2,
            Severity::Medium => 1,
            Severity::Low => 0,
        }
    }
}

/// What a scoring run found about an account: an alert to open or keep open.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertSignal {
    pub account_id: AccountId,
    pub kind: AlertKind,
    /// A stable key for the condition (`churn_risk`, `inactive`, `seats_nearly_full`): an
    /// account has at most one unresolved alert per kind and reason.
    pub reason: String,
    pub severity: Severity,
    /// One line for a person.
    pub title: String,
    /// The numbers behind it.
    pub evidence: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub alert_id: String,
    pub account_id: AccountId,
    pub kind: AlertKind,
    pub reason: String,
    pub severity: Severity,
    pub title: String,
    pub evidence: Value,
    pub status: AlertStatus,
    pub opened_at: Timestamp,
    pub updated_at: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<Timestamp>,
    /// Who resolved it; [`SYSTEM`] when its condition cleared.
    pub resolved_by: Option<String>,
    /// The operator's verdict, kept for learning which alerts help.
    pub useful: Option<bool>,
    pub feedback: Option<String>,
    pub feedback_by: Option<String>,
}

/// The actor of what scoring does by itself.
pub const SYSTEM: &str = "steward";

/// How long an alert an operator resolved keeps its condition from opening a new one at the
/// same severity or lower.
pub const RESOLVED_QUIET_DAYS: i64 = 14;

#[derive(Clone, Debug, PartialEq)]
pub enum AlertAction {
    Acknowledge,
    Resolve,
    Feedback { useful: bool, note: Option<String> },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertFilter {
    pub status: Option<AlertStatus>,
    /// Open or acknowledged.
    pub unresolved: bool,
    pub account_id: Option<AccountId>,
    pub kind: Option<AlertKind>,
    pub severity: Option<Severity>,
}

/// Which accounts a scoring run looked at: their unresolved alerts without a signal now are
/// resolved.
#[derive(Clone, Copy, Debug)]
pub enum AlertScope<'a> {
    Workspace,
    Accounts(&'a [AccountId]),
}

impl AlertScope<'_> {
    pub fn holds(&self, account: &AccountId) -> bool {
        match self {
            AlertScope::Workspace => true,
            AlertScope::Accounts(ids) => ids.contains(account),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AlertSync {
    pub opened: usize,
    pub updated: usize,
    pub resolved: usize,
}

/// A write that [`plan_alerts`] decided on.
#[derive(Clone, Debug, PartialEq)]
pub enum AlertWrite {
    Open(Alert),
    /// New severity, title and evidence for an unresolved alert.
    Update {
        alert_id: String,
        severity: Severity,
        title: String,
        evidence: Value,
    },
    Resolve {
        alert_id: String,
    },
}

/// Decides what a scoring run changes. `existing`: the scope's unresolved alerts and those
/// resolved by an operator in the last [`RESOLVED_QUIET_DAYS`].
///
/// - A signal with an unresolved alert of its key updates it (when anything changed).
/// - A signal whose key an operator resolved recently opens nothing, unless it is more severe.
/// - Any other signal opens an alert.
/// - An unresolved alert in scope without a signal is resolved: its condition cleared.
pub fn plan_alerts(
    existing: &[Alert],
    signals: &[AlertSignal],
    scope: AlertScope<'_>,
    at: Timestamp,
    new_id: &mut dyn FnMut() -> String,
) -> (Vec<AlertWrite>, AlertSync) {
    use std::collections::{HashMap, HashSet};
    type Key<'k> = (&'k str, AlertKind, &'k str);
    let key = |a: &'_ Alert| (a.account_id.as_str().to_owned(), a.kind, a.reason.clone());
    let unresolved: HashMap<(String, AlertKind, String), &Alert> =
        existing.iter().filter(|a| a.status != AlertStatus::Resolved).map(|a| (key(a), a)).collect();
    let quiet_since = at - chrono::Duration::days(RESOLVED_QUIET_DAYS);
    let mut quiet: HashMap<(String, AlertKind, String), Severity> = HashMap::new();
    for a in existing {
        let by_operator = a.resolved_by.as_deref().is_some_and(|b| b != SYSTEM);
        if a.status == AlertStatus::Resolved && by_operator && a.resolved_at.is_some_and(|r| r >= quiet_since) {
            let s = quiet.entry(key(a)).or_insert(a.severity);
            if a.severity.rank() > s.rank() {
                *s = a.severity;
            }
        }
    }
    let mut writes = Vec::new();
    let mut sync = AlertSync::default();
    let mut seen: HashSet<Key<'_>> = HashSet::new();
    for s in signals {
        if !seen.insert((s.account_id.as_str(), s.kind, s.reason.as_str())) {
            continue;
        }
        let k = (s.account_id.as_str().to_owned(), s.kind, s.reason.clone());
        if let Some(a) = unresolved.get(&k) {
            if a.severity != s.severity || a.title != s.title || a.evidence != s.evidence {
                writes.push(AlertWrite::Update {
                    alert_id: a.alert_id.clone(),
                    severity: s.severity,
                    title: s.title.clone(),
                    evidence: s.evidence.clone(),
                });
                sync.updated += 1;
            }
            continue;
        }
        if quiet.get(&k).is_some_and(|q| s.severity.rank() <= q.rank()) {
            continue;
        }
        writes.push(AlertWrite::Open(Alert {
            alert_id: new_id(),
            account_id: s.account_id.clone(),
            kind: s.kind,
            reason: s.reason.clone(),
            severity: s.severity,
            title: s.title.clone(),
            evidence: s.evidence.clone(),
            status: AlertStatus::Open,
            opened_at: at,
            updated_at: at,
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: None,
            resolved_by: None,
            useful: None,
            feedback: None,
            feedback_by: None,
        }));
        sync.opened += 1;
    }
    for a in existing.iter().filter(|a| a.status != AlertStatus::Resolved && scope.holds(&a.account_id)) {
        if !seen.contains(&(a.account_id.as_str(), a.kind, a.reason.as_str())) {
            writes.push(AlertWrite::Resolve { alert_id: a.alert_id.clone() });
            sync.resolved += 1;
        }
    }
    (writes, sync)
}

/// A new alert id.
pub fn new_alert_id() -> String {
    format!("alr_{}", domain::random_token(16))
}

/// A new model id.
pub fn new_model_id() -> String {
    format!("mdl_{}", domain::random_token(16))
}

/// Something scoring did to an account that journeys start runs from, in the order written
/// (read after a position, as the event log is).
#[derive(Clone, Debug, PartialEq)]
pub struct AccountChange {
    pub position: crate::LogPosition,
    pub account_id: String,
    /// When it was scored, or when the alert opened.
    pub at: Timestamp,
    pub what: AccountChangeKind,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountChangeKind {
    /// The account's health band became `to` (from `from`; none for its first score).
    Band {
        from: Option<HealthBand>,
        to: HealthBand,
        day: NaiveDate,
    },
    AlertOpened {
        alert_id: String,
        kind: String,
        reason: String,
    },
}
