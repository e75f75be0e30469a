//! What an account looks like at a date, beyond the churn model's features: usage, breadth,
//! people against seats, money, support and feedback. Each value is computed from what was
//! known at the date (days before it), and becomes a health measure.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::churn::{ANY, AccountHistory};
use crate::health::{Component, Direction, HealthConfig, Measure, Measures, Profile};

/// A support ticket, as scoring sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct TicketFact {
    pub opened: NaiveDate,
    pub resolved: Option<NaiveDate>,
    /// High or urgent priority.
    pub escalated: bool,
    /// 1 to 5.
    pub csat: Option<f64>,
}

/// Which events mean what, per workspace. Key events default to the most frequent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignalConfig {
    /// Events counting as a failed payment.
    pub payment_failure_events: Vec<String>,
    /// Events counting as the account hitting a limit of its plan.
    pub limit_events: Vec<String>,
    /// Seats used from this share on count as nearly full.
    pub seats_nearly_full: f64,
}

impl Default for SignalConfig {
    fn default() -> Self {
        SignalConfig {
            payment_failure_events: ["payment_failed", "invoice_payment_failed", "charge_failed"]
                .map(String::from)
                .to_vec(),
            limit_events: ["plan_limit_reached", "limit_reached", "quota_exceeded"].map(String::from).to_vec(),
            seats_nearly_full: 0.9,
        }
    }
}

/// What the workspace has data for: a measure without a source is missing for every account
/// (its weight goes to the others), not zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sources {
    pub subscriptions: bool,
    pub tickets: bool,
    pub payment_events: bool,
}

/// One account at one date (read back from a stored explanation with what it has).
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Snapshot {
    pub events_7d: u64,
    pub events_28d: u64,
    pub events_prev_28d: u64,
    pub events_90d: u64,
    /// Distinct events (feature use) in the last 28 days.
    pub breadth_28d: u64,
    pub active_days_28d: u64,
    pub days_since_active: Option<i64>,
    pub active_users_28d: u64,
    pub seats: Option<i64>,
    pub tenure_days: i64,
    /// Minor units.
    pub mrr: i64,
    pub mrr_90d_ago: i64,
    pub payment_failures_90d: u64,
    pub limit_hits_28d: u64,
    pub open_tickets: u64,
    pub escalated_open_tickets: u64,
    pub tickets_7d: u64,
    pub tickets_28d: u64,
    pub tickets_prev_28d: u64,
    pub csat_90d: Option<f64>,
    pub nps: Option<f64>,
}

impl Snapshot {
    /// Usage change, last 28 days against the 28 before, in percent; none without earlier use.
    pub fn usage_trend(&self) -> Option<f64> {
        (self.events_prev_28d > 0)
            .then(|| (self.events_28d as f64 - self.events_prev_28d as f64) / self.events_prev_28d as f64 * 100.0)
    }

    /// Active users per seat, in percent.
    pub fn seat_utilisation(&self) -> Option<f64> {
        self.seats.filter(|&s| s > 0).map(|s| self.active_users_28d as f64 / s as f64 * 100.0)
    }

    /// The configuration's health measures, in its order; `None` where the account or the
    /// workspace has no data, or for a name that is no measure.
    pub fn measures(&self, config: &HealthConfig, sources: Sources) -> Measures {
        Measures::new(config.measures.iter().map(|m| self.measure(&m.name, sources)).collect())
    }

    /// The health measure called `name`.
    pub fn measure(&self, name: &str, sources: Sources) -> Option<f64> {
        let n = |v: u64| Some(v as f64);
        match name {
            EVENTS => n(self.events_28d),
            TREND => self.usage_trend(),
            BREADTH => n(self.breadth_28d),
            ACTIVE_DAYS => n(self.active_days_28d),
            SINCE_ACTIVE => Some(self.days_since_active.map_or(self.tenure_days.max(1), |d| d) as f64),
            USERS => (self.active_users_28d > 0 || self.seats.is_some()).then_some(self.active_users_28d as f64),
            SEATS => self.seat_utilisation(),
            OPEN_TICKETS if sources.tickets => n(self.open_tickets + 2 * self.escalated_open_tickets),
            TICKETS if sources.tickets => n(self.tickets_28d),
            CSAT => self.csat_90d,
            MRR_CHANGE if sources.subscriptions && self.tenure_days >= 90 => {
                Some((self.mrr - self.mrr_90d_ago) as f64 / 100.0)
            }
            PAYMENT_FAILURES if sources.payment_events => n(self.payment_failures_90d),
            NPS => self.nps,
            _ => None,
        }
    }
}

pub const EVENTS: &str = "events (28 days)";
pub const TREND: &str = "usage trend (%, 28 days vs the 28 before)";
pub const BREADTH: &str = "features used (28 days)";
pub const ACTIVE_DAYS: &str = "active days (28 days)";
pub const SINCE_ACTIVE: &str = "days since last activity";
pub const USERS: &str = "active users (28 days)";
pub const SEATS: &str = "seat utilisation (%)";
pub const OPEN_TICKETS: &str = "open tickets (escalated count twice)";
pub const TICKETS: &str = "tickets opened (28 days)";
pub const CSAT: &str = "CSAT (90 days)";
pub const MRR_CHANGE: &str = "MRR change (90 days)";
pub const PAYMENT_FAILURES: &str = "payment failures (90 days)";
pub const NPS: &str = "NPS";

/// The health score Steward starts every workspace with.
pub fn default_health_config() -> HealthConfig {
    use Component::*;
    use Direction::*;
    let m = |name: &str, component, direction| Measure { name: name.into(), component, direction };
    HealthConfig {
        measures: vec![
            m(EVENTS, Usage, HigherIsBetter),
            m(TREND, Usage, HigherIsBetter),
            m(BREADTH, Usage, HigherIsBetter),
            m(ACTIVE_DAYS, Engagement, HigherIsBetter),
            m(SINCE_ACTIVE, Engagement, LowerIsBetter),
            m(USERS, Engagement, HigherIsBetter),
            m(SEATS, Engagement, HigherIsBetter),
            m(OPEN_TICKETS, Support, LowerIsBetter),
            m(TICKETS, Support, LowerIsBetter),
            m(CSAT, Support, HigherIsBetter),
            m(MRR_CHANGE, Financial, HigherIsBetter),
            m(PAYMENT_FAILURES, Financial, LowerIsBetter),
            m(NPS, Relationship, HigherIsBetter),
        ],
        profiles: vec![
            Profile {
                name: "onboarding".into(),
                below_tenure_days: Some(90.0),
                weights: vec![
                    (Engagement, 0.40),
                    (Usage, 0.35),
                    (Support, 0.15),
                    (Financial, 0.05),
                    (Relationship, 0.05),
                ],
            },
            Profile {
                name: "mature".into(),
                below_tenure_days: None,
                weights: vec![
                    (Usage, 0.30),
                    (Engagement, 0.25),
                    (Support, 0.15),
                    (Financial, 0.20),
                    (Relationship, 0.10),
                ],
            },
        ],
        healthy_from: 70.0,
        at_risk_below: 40.0,
    }
}

/// The account at `d`, from what was known at `d`.
pub fn snapshot(a: &AccountHistory, d: NaiveDate, config: &SignalConfig) -> Snapshot {
    let ago = |n: u64| d - chrono::Days::new(n);
    let any = a.series(ANY);
    let sum = |names: &[String], from: NaiveDate| names.iter().map(|m| a.series(m).window(from, d)).sum::<u64>();
    let breadth = a.usage.iter().filter(|(m, s)| !m.starts_with('$') && s.window(ago(28), d) > 0).count() as u64;
    let tickets_in =
        |from: NaiveDate, to: NaiveDate| a.tickets.iter().filter(|t| t.opened >= from && t.opened < to).count() as u64;
    let open: Vec<&TicketFact> =
        a.tickets.iter().filter(|t| t.opened < d && t.resolved.is_none_or(|r| r >= d)).collect();
    let rated: Vec<f64> =
        a.tickets.iter().filter(|t| t.opened >= ago(90) && t.opened < d).filter_map(|t| t.csat).collect();
    let seats = a.seats_at(d);
    Snapshot {
        events_7d: any.window(ago(7), d),
        events_28d: any.window(ago(28), d),
        events_prev_28d: any.window(ago(56), ago(28)),
        events_90d: any.window(ago(90), d),
        breadth_28d: breadth,
        active_days_28d: any.active_days(ago(28), d),
        days_since_active: any.last_day_before(d).map(|l| (d - l).num_days()),
        active_users_28d: a.active_people(ago(28), d),
        seats: (seats > 0).then_some(seats),
        tenure_days: a.tenure_days(d),
        mrr: a.mrr_at(d),
        mrr_90d_ago: a.mrr_at(ago(90)),
        payment_failures_90d: sum(&config.payment_failure_events, ago(90)),
        limit_hits_28d: sum(&config.limit_events, ago(28)),
        open_tickets: open.iter().filter(|t| !t.escalated).count() as u64,
        escalated_open_tickets: open.iter().filter(|t| t.escalated).count() as u64,
        tickets_7d: tickets_in(ago(7), d),
        tickets_28d: tickets_in(ago(28), d),
        tickets_prev_28d: tickets_in(ago(56), ago(28)),
        csat_90d: (!rated.is_empty()).then(|| rated.iter().sum::<f64>() / rated.len() as f64),
        nps: a.traits.get("nps").copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_escalated_ticket_weighs_twice_an_ordinary_one() {
        let snap = Snapshot { open_tickets: 1, escalated_open_tickets: 2, tenure_days: 30, ..Default::default() };
        assert_eq!(snap.measure(OPEN_TICKETS, Sources { tickets: true, ..Default::default() }), Some(5.0));
        assert_eq!(snap.measure(OPEN_TICKETS, Sources::default()), None, "no ticket source, no measure");
    }
}
