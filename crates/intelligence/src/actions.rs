//! Recommended next actions for an account: what its state says a CS team should do now,
//! ranked, each with the evidence it comes from and the workspace's playbook (journey) that
//! handles that need, when the account is in that playbook's situation.
//!
//! An account's state is its latest score: the signals of its snapshot, its health
//! components, its churn and expansion forecasts with their drivers, and when it renews.
//! Each rule names one thing to do (fix a failed payment, re-engage a quiet account, follow
//! up urgent tickets, ...), how urgent it is (0 to 1) and why; a churn driver that points at
//! the same need adds to its urgency and to its evidence, so that what the forecast says
//! weighs most is done first. Pure: no IO, no clock.

use serde::Serialize;

use crate::health::Component;
use crate::signals::Snapshot;

/// What a recommendation (and a playbook) is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Need {
    /// Keeping an account that may leave: quiet, declining, unhappy, at risk.
    Retention,
    /// Money owed: failed payments.
    Billing,
    /// Open or urgent support tickets.
    Support,
    /// Using more of the product: seats unused, few features.
    Adoption,
    /// Selling more: seats full, limits hit, likely to expand.
    Expansion,
    /// A renewal coming.
    Renewal,
    /// A new account's first weeks.
    Onboarding,
}

impl Need {
    pub fn as_str(self) -> &'static str {
        match self {
            Need::Retention => "retention",
            Need::Billing => "billing",
            Need::Support => "support",
            Need::Adoption => "adoption",
            Need::Expansion => "expansion",
            Need::Renewal => "renewal",
            Need::Onboarding => "onboarding",
        }
    }

    /// The needs a segment condition is about, from the names it uses (its fields and
    /// functions): `band`, `health`, a churn risk or `last_seen`,
    /// retention; `expansion`, `seats` or `active_users`, expansion; `renews_at`, renewal;
    /// tickets, support; `signup`, onboarding; event counts, adoption.
    pub fn of_condition<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<Need> {
        let mut needs: Vec<Need> = names
            .into_iter()
            .filter_map(|n| match n.to_ascii_lowercase().as_str() {
                "band" | "health" | "churn_risk_30d" | "churn_risk_60d" | "churn_risk_90d" | "last_seen" => {
                    Some(Need::Retention)
                }
                "expansion" | "seats" | "active_users" => Some(Need::Expansion),
                "renews_at" => Some(Need::Renewal),
                "open_tickets" | "urgent_tickets" => Some(Need::Support),
                "signup" | "created_at" => Some(Need::Onboarding),
                "count" | "active_days" | "first" | "last" => Some(Need::Adoption),
                _ => None,
            })
            .collect();
        needs.sort();
        needs.dedup();
        needs
    }

    /// The need an alert (its kind's reason, as scoring names it) is about.
    pub fn of_alert(reason: &str) -> Option<Need> {
        match reason {
            "churn_risk" | "health_drop" | "inactive" => Some(Need::Retention),
            "payment_failed" => Some(Need::Billing),
            "ticket_surge" => Some(Need::Support),
            "expansion" | "seats_nearly_full" => Some(Need::Expansion),
            _ => None,
        }
    }
}

/// A forecast as recommendations read it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Odds {
    pub probability: f64,
    /// Whether the workspace's model made it (rather than the rule-based prior).
    pub from_model: bool,
    /// What raises it, with each one's contribution to the log-odds.
    pub drivers: Vec<(String, f64)>,
}

/// A playbook of the workspace, as recommendations point at it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Playbook {
    pub journey_id: String,
    pub name: String,
    /// What it is for (see [`Need::of_condition`], [`Need::of_alert`]).
    pub needs: Vec<Need>,
    /// Whether the account is in the situation that starts it (a member of its trigger
    /// segment, in its health band, with its alert open).
    pub applies: bool,
    /// Whether a run of it is in progress for the account.
    pub running: bool,
}

/// An account's state, as its latest score says.
#[derive(Clone, Debug, Default)]
pub struct Situation<'a> {
    pub signals: Snapshot,
    pub health: Option<f64>,
    pub at_risk: bool,
    /// Each component's score, 0 to 100.
    pub components: Vec<(Component, f64)>,
    pub churn_30d: Option<Odds>,
    pub expansion: Option<Odds>,
    /// Days until its current paid period or contract ends.
    pub renews_in_days: Option<i64>,
    pub playbooks: &'a [Playbook],
}

/// Where a piece of evidence comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A measure of the account's activity, billing or support.
    Signal,
    /// A health component.
    Health,
    /// A driver of the churn forecast.
    Churn,
    /// A driver of the expansion forecast.
    Expansion,
    /// Its subscription's dates.
    Billing,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evidence {
    pub source: Source,
    pub text: String,
}

/// Which rule made a recommendation: one of each at most per account, so it names the
/// recommendation (a task made from it, say).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    PaymentFailed,
    GoneQuiet,
    UsageDown,
    UrgentTickets,
    TicketSurge,
    NegativeFeedback,
    Renewal,
    LowAdoption,
    ReviewRisk,
    SeatsFull,
    LimitsHit,
    LikelyToExpand,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::PaymentFailed,
        Kind::GoneQuiet,
        Kind::UsageDown,
        Kind::UrgentTickets,
        Kind::TicketSurge,
        Kind::NegativeFeedback,
        Kind::Renewal,
        Kind::LowAdoption,
        Kind::ReviewRisk,
        Kind::SeatsFull,
        Kind::LimitsHit,
        Kind::LikelyToExpand,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PaymentFailed => "payment_failed",
            Kind::GoneQuiet => "gone_quiet",
            Kind::UsageDown => "usage_down",
            Kind::UrgentTickets => "urgent_tickets",
            Kind::TicketSurge => "ticket_surge",
            Kind::NegativeFeedback => "negative_feedback",
            Kind::Renewal => "renewal",
            Kind::LowAdoption => "low_adoption",
            Kind::ReviewRisk => "review_risk",
            Kind::SeatsFull => "seats_full",
            Kind::LimitsHit => "limits_hit",
            Kind::LikelyToExpand => "likely_to_expand",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn need(self) -> Need {
        match self {
            Kind::PaymentFailed => Need::Billing,
            Kind::GoneQuiet | Kind::UsageDown | Kind::NegativeFeedback | Kind::ReviewRisk => Need::Retention,
            Kind::UrgentTickets | Kind::TicketSurge => Need::Support,
            Kind::Renewal => Need::Renewal,
            Kind::LowAdoption => Need::Adoption,
            Kind::SeatsFull | Kind::LimitsHit | Kind::LikelyToExpand => Need::Expansion,
        }
    }
}

/// A task's priority, as tasks take it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Urgent,
    High,
    Normal,
    Low,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Urgent => "urgent",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// One thing to do for an account.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recommendation {
    pub kind: Kind,
    pub need: Need,
    /// What was seen, then what to do: "Usage down 60% in 28 days: schedule a check-in".
    pub title: String,
    /// The task it becomes: what to do, then why.
    pub task: String,
    pub priority: Priority,
    /// Days the task is due in.
    pub due_days: u32,
    /// 0 to 1: the order recommendations are shown in, most urgent first.
    pub urgency: f64,
    pub evidence: Vec<Evidence>,
    /// The playbook that handles this need for the account, when it is in its situation.
    pub playbook: Option<Playbook>,
}

/// A component below this score is low.
pub const LOW_COMPONENT: f64 = 35.0;
/// A churn risk from this on calls for a review when no other rule says why.
pub const REVIEW_CHURN: f64 = 0.3;

fn pct(p: f64) -> String {
    format!("{:.0}%", p * 100.0)
}

fn component_need(c: Component) -> Need {
    match c {
        Component::Usage | Component::Engagement => Need::Adoption,
        Component::Support => Need::Support,
        Component::Financial => Need::Billing,
        Component::Relationship => Need::Retention,
    }
}

fn component_name(c: Component) -> &'static str {
    match c {
        Component::Usage => "usage",
        Component::Engagement => "engagement",
        Component::Support => "support",
        Component::Financial => "financial",
        Component::Relationship => "relationship",
    }
}

/// The recommendation a churn driver supports, by its name: the prior's rules name
/// themselves; a model's features are key events over 28 or 90 days (adoption: the account
/// uses them less) and active days (retention).
fn driver_kinds(name: &str) -> &'static [Kind] {
    let n = name.to_ascii_lowercase();
    if n.starts_with("no activity") {
        &[Kind::GoneQuiet, Kind::ReviewRisk]
    } else if n.starts_with("usage down") {
        &[Kind::UsageDown, Kind::ReviewRisk]
    } else if n.starts_with("ticket surge") {
        &[Kind::TicketSurge, Kind::UrgentTickets]
    } else if n.starts_with("payment failed") {
        &[Kind::PaymentFailed]
    } else if n.starts_with("negative feedback") {
        &[Kind::NegativeFeedback]
    } else if n.starts_with("active days") {
        &[Kind::GoneQuiet, Kind::UsageDown, Kind::ReviewRisk]
    } else if n.ends_with("(28 days)") || n.ends_with("(per 28 days over 90)") {
        &[Kind::UsageDown, Kind::LowAdoption, Kind::ReviewRisk]
    } else {
        &[Kind::ReviewRisk]
    }
}

/// What the account's state calls for, most urgent first (ties: in [`Kind::ALL`]'s order).
pub fn recommend(s: &Situation) -> Vec<Recommendation> {
    let sig = &s.signals;
    let mut out: Vec<Recommendation> = Vec::new();
    let mut add = |kind: Kind, title: String, task: String, priority: Priority, due_days: u32, urgency: f64| {
        out.push(Recommendation {
            kind,
            need: kind.need(),
            title,
            task,
            priority,
            due_days,
            urgency,
            evidence: Vec::new(),
            playbook: None,
        });
    };
    let paying = sig.mrr > 0 || sig.seats.is_some();
    if sig.payment_failures_90d > 0 && paying {
        let n = sig.payment_failures_90d;
        add(
            Kind::PaymentFailed,
            format!("{n} failed payment{} in 90 days: confirm the billing details", plural(n)),
            format!("Confirm the billing details: {n} failed payment{} in 90 days", plural(n)),
            Priority::High,
            2,
            0.9,
        );
    }
    let quiet = sig.days_since_active.unwrap_or(sig.tenure_days);
    if sig.tenure_days >= 14 && quiet >= 14 {
        add(
            Kind::GoneQuiet,
            format!("No activity for {quiet} days: call to re-engage"),
            format!("Call to re-engage: no activity for {quiet} days"),
            if quiet >= 30 { Priority::High } else { Priority::Normal },
            2,
            0.6 + (quiet as f64 / 300.0).min(0.3),
        );
    } else if let Some(trend) = sig.usage_trend().filter(|&t| t <= -30.0 && sig.events_prev_28d >= 10) {
        let drop = -trend / 100.0;
        add(
            Kind::UsageDown,
            format!(
                "Usage down {:.0}% in 28 days ({} to {} events): schedule a check-in",
                -trend, sig.events_prev_28d, sig.events_28d
            ),
            format!("Schedule a check-in: usage down {:.0}% in 28 days", -trend),
            if drop >= 0.6 { Priority::High } else { Priority::Normal },
            5,
            0.4 + 0.4 * drop,
        );
    }
    if sig.escalated_open_tickets > 0 {
        let n = sig.escalated_open_tickets;
        add(
            Kind::UrgentTickets,
            format!("{n} urgent ticket{} open: follow up with support", plural(n)),
            format!("Follow up with support: {n} urgent ticket{} open", plural(n)),
            Priority::High,
            1,
            0.7 + (0.05 * (n - 1) as f64).min(0.15),
        );
    }
    let weekly_before = sig.tickets_prev_28d as f64 / 4.0;
    if sig.tickets_7d >= 3 && sig.tickets_7d as f64 > 2.0 * weekly_before {
        add(
            Kind::TicketSurge,
            format!("{} tickets in 7 days (about {weekly_before:.1} a week before): find the cause", sig.tickets_7d),
            format!("Find the cause of {} tickets in 7 days", sig.tickets_7d),
            Priority::Normal,
            3,
            0.55,
        );
    }
    let csat = sig.csat_90d.filter(|c| c.is_finite() && *c <= 2.5);
    let nps = sig.nps.filter(|n| n.is_finite() && *n <= 6.0);
    if csat.is_some() || nps.is_some() {
        let what = match (csat, nps) {
            (Some(c), _) => format!("CSAT {c:.1} of 5 over 90 days"),
            (None, Some(n)) => format!("NPS answer {n:.0} (a detractor)"),
            (None, None) => unreachable!("one of them is set"),
        };
        add(
            Kind::NegativeFeedback,
            format!("{what}: call about their experience"),
            format!("Call about their experience: {what}"),
            Priority::Normal,
            5,
            0.6,
        );
    }
    if let Some(days) = s.renews_in_days.filter(|d| (0..90).contains(d)) {
        let (priority, urgency) = match days {
            0..30 => (Priority::High, 0.8),
            30..60 => (Priority::Normal, 0.6),
            _ => (Priority::Low, 0.45),
        };
        let risky = if s.at_risk { 0.1 } else { 0.0 };
        add(
            Kind::Renewal,
            format!("Renewal in {days} days: confirm it with the account"),
            format!("Confirm the renewal: it is due in {days} days"),
            priority,
            (days as u32 / 3).clamp(1, 14),
            urgency + risky,
        );
    }
    if let Some(seats) = sig.seats.filter(|&n| n >= 3)
        && (sig.active_users_28d as f64) < 0.3 * seats as f64
        && sig.tenure_days >= 30
    {
        add(
            Kind::LowAdoption,
            format!("{} of {seats} seats active in 28 days: plan an adoption session", sig.active_users_28d),
            format!("Plan an adoption session: {} of {seats} seats active", sig.active_users_28d),
            Priority::Normal,
            7,
            0.4,
        );
    }
    if let Some(u) = sig.seat_utilisation().filter(|&u| u >= 90.0) {
        add(
            Kind::SeatsFull,
            format!(
                "{} active people on {} seats ({u:.0}%): offer more seats",
                sig.active_users_28d,
                sig.seats.unwrap_or(0)
            ),
            format!("Offer more seats: {u:.0}% of seats in use"),
            Priority::Normal,
            7,
            0.45,
        );
    }
    if sig.limit_hits_28d > 0 {
        let n = sig.limit_hits_28d;
        add(
            Kind::LimitsHit,
            format!("Plan limits hit {n} time{} in 28 days: propose the next plan", plural(n)),
            format!("Propose the next plan: limits hit {n} time{} in 28 days", plural(n)),
            Priority::Normal,
            7,
            0.45,
        );
    }
    let retention = out.iter().any(|r| r.need == Need::Retention);
    let churn = s.churn_30d.as_ref().map_or(0.0, |c| c.probability);
    if !retention && (churn >= REVIEW_CHURN || s.at_risk) {
        let why = match (churn >= REVIEW_CHURN, s.health) {
            (true, _) => format!("Churn risk {} in 30 days", pct(churn)),
            (false, Some(h)) => format!("Health {h:.0}, at risk"),
            (false, None) => "At risk".to_owned(),
        };
        out.push(Recommendation {
            kind: Kind::ReviewRisk,
            need: Need::Retention,
            title: format!("{why}: review the account with its owner"),
            task: format!("Review the account with its owner: {}", why.to_lowercase()),
            priority: if churn >= 0.5 { Priority::High } else { Priority::Normal },
            due_days: 3,
            urgency: 0.5 + 0.3 * churn,
            evidence: Vec::new(),
            playbook: None,
        });
    }
    let expanding = s.expansion.as_ref().filter(|e| e.probability >= 0.5);
    if let Some(e) = expanding
        && !out.iter().any(|r| r.need == Need::Expansion)
    {
        out.push(Recommendation {
            kind: Kind::LikelyToExpand,
            need: Need::Expansion,
            title: format!("{} likely to expand within 90 days: talk about their plans", pct(e.probability)),
            task: format!("Talk about their plans: {} likely to expand", pct(e.probability)),
            priority: Priority::Low,
            due_days: 14,
            urgency: 0.3 + 0.3 * e.probability,
            evidence: Vec::new(),
            playbook: None,
        });
    }
    for r in &mut out {
        evidence(r, s);
        r.playbook = playbook_for(r.need, s.playbooks);
    }
    out.sort_by(|a, b| {
        b.urgency.total_cmp(&a.urgency).then_with(|| {
            let place = |k: Kind| Kind::ALL.iter().position(|&x| x == k);
            place(a.kind).cmp(&place(b.kind))
        })
    });
    out
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The signals a recommendation rests on, the low health components of its need, and the
/// forecast drivers that point at it (each raising its urgency by a twentieth of its
/// contribution to the log-odds, at most 0.1 in all).
fn evidence(r: &mut Recommendation, s: &Situation) {
    let sig = &s.signals;
    let mut add = |source: Source, text: String| r.evidence.push(Evidence { source, text });
    match r.kind {
        Kind::PaymentFailed => {
            add(Source::Signal, format!("payment failures in 90 days: {}", sig.payment_failures_90d))
        }
        Kind::GoneQuiet => add(
            Source::Signal,
            match sig.days_since_active {
                Some(d) => format!("last active {d} days ago; {} events in 90 days", sig.events_90d),
                None => format!("never active in {} days as a customer", sig.tenure_days),
            },
        ),
        Kind::UsageDown => add(
            Source::Signal,
            format!("events: {} in the last 28 days, {} in the 28 before", sig.events_28d, sig.events_prev_28d),
        ),
        Kind::UrgentTickets => add(
            Source::Signal,
            format!("open tickets: {} urgent, {} others", sig.escalated_open_tickets, sig.open_tickets),
        ),
        Kind::TicketSurge => add(
            Source::Signal,
            format!(
                "tickets: {} in 7 days, {} in the 28 days before the last 28",
                sig.tickets_7d, sig.tickets_prev_28d
            ),
        ),
        Kind::NegativeFeedback => {
            if let Some(c) = sig.csat_90d.filter(|c| c.is_finite()) {
                add(Source::Signal, format!("CSAT over 90 days: {c:.1} of 5"));
            }
            if let Some(n) = sig.nps.filter(|n| n.is_finite()) {
                add(Source::Signal, format!("NPS: {n:.0}"));
            }
        }
        Kind::Renewal => {
            if let Some(d) = s.renews_in_days {
                add(Source::Billing, format!("the current period or contract ends in {d} days"));
            }
        }
        Kind::LowAdoption | Kind::SeatsFull => add(
            Source::Signal,
            format!("{} people active in 28 days on {} seats", sig.active_users_28d, sig.seats.unwrap_or(0)),
        ),
        Kind::LimitsHit => add(Source::Signal, format!("plan limits hit in 28 days: {}", sig.limit_hits_28d)),
        Kind::ReviewRisk => {
            if let Some(h) = s.health {
                add(Source::Health, format!("health {h:.0}{}", if s.at_risk { " (at risk)" } else { "" }));
            }
        }
        Kind::LikelyToExpand => {}
    }
    for &(c, score) in &s.components {
        if score < LOW_COMPONENT && (component_need(c) == r.need || r.kind == Kind::ReviewRisk) {
            add(Source::Health, format!("{} component {score:.0} of 100", component_name(c)));
        }
    }
    let mut boost = 0.0;
    if let Some(churn) = &s.churn_30d {
        let model = if churn.from_model { "model" } else { "rule-based prior" };
        for (name, contribution) in churn.drivers.iter().filter(|(_, c)| *c > 0.0) {
            if driver_kinds(name).contains(&r.kind) {
                add(
                    Source::Churn,
                    format!(
                        "churn driver ({model}): {name}, {contribution:+.2} to the log-odds of {}",
                        pct(churn.probability)
                    ),
                );
                boost += contribution / 20.0;
            }
        }
    }
    if r.need == Need::Expansion
        && let Some(e) = &s.expansion
    {
        for (name, contribution) in e.drivers.iter().filter(|(_, c)| *c > 0.0) {
            add(
                Source::Expansion,
                format!("expansion driver: {name}, {contribution:+.2} (expansion {})", pct(e.probability)),
            );
        }
        if e.drivers.iter().all(|(_, c)| *c <= 0.0) {
            add(Source::Expansion, format!("expansion within 90 days: {}", pct(e.probability)));
        }
    }
    r.urgency = (r.urgency + boost.min(0.1)).min(1.0);
}

/// The playbook for `need`: one the account is in the situation of, a run in progress first.
fn playbook_for(need: Need, playbooks: &[Playbook]) -> Option<Playbook> {
    let fits = |p: &&Playbook| p.applies && p.needs.contains(&need);
    playbooks.iter().filter(fits).find(|p| p.running).or_else(|| playbooks.iter().find(fits)).cloned()
}

#[cfg(test)]
mod tests;
