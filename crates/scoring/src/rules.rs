//! Alerts: the conditions a CSM wants to hear about, from an account's scores and signals.
//! Each names its reason (the key an open alert is kept under), a severity and the numbers
//! behind it. Risk severities go up a level for the accounts worth the most.

use domain::AccountId;
use intelligence::health::Health;
use intelligence::signals::Snapshot;
use serde_json::json;
use store::{AlertKind, AlertSignal, ScorePoint, Severity};

/// What an account is compared with.
#[derive(Clone, Copy, Debug, Default)]
pub struct Baseline {
    /// The workspace's mean probability of churning within 30 days.
    pub churn_30d: f64,
    /// The workspace's mean expansion probability.
    pub expansion: f64,
    /// MRR (minor units) from which an account is in the top quarter.
    pub top_quarter_mrr: i64,
}

/// Health points lost in a week that make an alert.
pub const HEALTH_DROP: f64 = 15.0;

fn raise(s: Severity) -> Severity {
    match s {
        Severity::Low => Severity::Medium,
        Severity::Medium => Severity::High,
        Severity::High | Severity::Critical => Severity::Critical,
    }
}

fn pct(p: f64) -> String {
    format!("{:.0}%", p * 100.0)
}

/// What raises a probability, with its contribution to the log-odds.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Driver<'a> {
    pub name: &'a str,
    pub contribution: f64,
}

/// A forecast as alerts read it.
#[derive(Clone, Copy, Debug)]
pub struct Odds<'a> {
    pub probability: f64,
    /// Whether the workspace's model made it (rather than the rule-based prior).
    pub from_model: bool,
    pub drivers: &'a [Driver<'a>],
}

fn drivers(f: Odds) -> serde_json::Value {
    f.drivers.iter().map(|d| json!({"name": d.name, "contribution": d.contribution})).collect()
}

/// The alerts `account` raises now.
pub fn alerts(
    account: &AccountId,
    snap: &Snapshot,
    health: &Health,
    churn_30d: Option<Odds>,
    expansion: Option<Odds>,
    week_ago: Option<&ScorePoint>,
    base: &Baseline,
) -> Vec<AlertSignal> {
    let mut out = Vec::new();
    let valuable = snap.mrr > 0 && snap.mrr >= base.top_quarter_mrr;
    let mut risk = |reason: &str, severity: Severity, title: String, evidence: serde_json::Value| {
        let severity = if valuable { raise(severity) } else { severity };
        let mut evidence = evidence;
        evidence["mrr_minor"] = json!(snap.mrr);
        out.push(AlertSignal {
            account_id: account.clone(),
            kind: AlertKind::Risk,
            reason: reason.into(),
            severity,
            title,
            evidence,
        });
    };
    if let Some(f) = churn_30d {
        let lift = if base.churn_30d > 0.0 { f.probability / base.churn_30d } else { 0.0 };
        let severity = match lift {
            l if l >= 5.0 => Some(Severity::High),
            l if l >= 3.0 => Some(Severity::Medium),
            l if l >= 2.0 => Some(Severity::Low),
            _ => None,
        };
        if let Some(severity) = severity.filter(|_| f.probability >= 0.05) {
            risk(
                "churn_risk",
                severity,
                format!("{} risk of churning within 30 days, {lift:.1}x the workspace's rate", pct(f.probability)),
                json!({"probability": f.probability, "workspace_rate": base.churn_30d, "lift": lift,
                       "drivers": drivers(f), "from_model": f.from_model}),
            );
        }
    }
    if let Some(before) = week_ago {
        let drop = before.health - health.score;
        if drop >= HEALTH_DROP {
            let severity = if drop >= 2.0 * HEALTH_DROP { Severity::High } else { Severity::Medium };
            risk(
                "health_drop",
                severity,
                format!("Health fell {drop:.0} points in a week, from {:.0} to {:.0}", before.health, health.score),
                json!({"from": before.health, "to": health.score, "since": before.day,
                       "components_before": before.components}),
            );
        }
    }
    let paying = snap.mrr > 0 || snap.seats.is_some();
    let quiet = snap.days_since_active.unwrap_or(snap.tenure_days);
    if paying && snap.tenure_days >= 14 && quiet >= 14 {
        let severity = if quiet >= 30 { Severity::High } else { Severity::Medium };
        risk(
            "inactive",
            severity,
            format!("No activity for {quiet} days"),
            json!({"days_since_active": snap.days_since_active, "events_90d": snap.events_90d}),
        );
    }
    let weekly_before = snap.tickets_prev_28d as f64 / 4.0;
    if snap.tickets_7d >= 3 && snap.tickets_7d as f64 > 2.0 * weekly_before {
        let severity = if snap.escalated_open_tickets > 0 { Severity::High } else { Severity::Medium };
        risk(
            "ticket_surge",
            severity,
            format!("{} tickets in 7 days, against {weekly_before:.1} a week before", snap.tickets_7d),
            json!({"tickets_7d": snap.tickets_7d, "weekly_before": weekly_before,
                   "escalated_open": snap.escalated_open_tickets}),
        );
    }
    if snap.payment_failures_90d > 0 {
        risk(
            "payment_failed",
            Severity::High,
            format!("{} failed payments in 90 days", snap.payment_failures_90d),
            json!({"payment_failures_90d": snap.payment_failures_90d}),
        );
    }
    let mut opportunity = |reason: &str, severity: Severity, title: String, evidence: serde_json::Value| {
        out.push(AlertSignal {
            account_id: account.clone(),
            kind: AlertKind::Opportunity,
            reason: reason.into(),
            severity,
            title,
            evidence,
        });
    };
    if let Some(f) = expansion {
        let lift = if base.expansion > 0.0 { f.probability / base.expansion } else { 0.0 };
        let severity = match lift {
            l if l >= 4.0 => Some(Severity::High),
            l if l >= 2.5 => Some(Severity::Medium),
            _ => None,
        };
        if let Some(severity) = severity.filter(|_| f.probability >= 0.1) {
            opportunity(
                "expansion",
                severity,
                format!("{} likely to expand within 90 days, {lift:.1}x the workspace's rate", pct(f.probability)),
                json!({"probability": f.probability, "workspace_rate": base.expansion, "lift": lift,
                       "drivers": drivers(f), "from_model": f.from_model}),
            );
        }
    }
    if let Some(u) = snap.seat_utilisation().filter(|&u| u >= 90.0) {
        let severity = if u > 100.0 { Severity::High } else { Severity::Medium };
        opportunity(
            "seats_nearly_full",
            severity,
            format!("{} active people on {} seats ({u:.0}%)", snap.active_users_28d, snap.seats.unwrap_or(0)),
            json!({"active_users_28d": snap.active_users_28d, "seats": snap.seats, "utilisation_pct": u}),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use intelligence::health::Band;

    fn health(score: f64) -> Health {
        Health { score, band: Band::Neutral, profile: "mature".into(), components: Vec::new() }
    }

    const QUIET: [Driver; 1] = [Driver { name: "no activity for 30 days", contribution: 1.6 }];

    fn forecast(p: f64) -> Odds<'static> {
        Odds { probability: p, from_model: false, drivers: &QUIET }
    }

    fn reasons(v: &[AlertSignal]) -> Vec<(&str, Severity)> {
        v.iter().map(|a| (a.reason.as_str(), a.severity)).collect()
    }

    const BASE: Baseline = Baseline { churn_30d: 0.04, expansion: 0.05, top_quarter_mrr: 100_000 };

    #[test]
    fn a_quiet_paying_account_raises_risk_alerts_in_proportion() {
        let id = AccountId::parse("a").unwrap();
        let snap = Snapshot { mrr: 20_000, tenure_days: 200, days_since_active: Some(35), ..Default::default() };
        let risky = alerts(&id, &snap, &health(30.0), Some(forecast(0.25)), None, None, &BASE);
        assert_eq!(reasons(&risky), [("churn_risk", Severity::High), ("inactive", Severity::High)]);
        assert_eq!(risky[0].evidence["drivers"][0]["name"], "no activity for 30 days");
        // Twice the workspace's rate is worth a low alert; the same at the base rate is none.
        let mild = alerts(
            &id,
            &Snapshot { days_since_active: Some(2), ..snap.clone() },
            &health(60.0),
            Some(forecast(0.09)),
            None,
            None,
            &BASE,
        );
        assert_eq!(reasons(&mild), [("churn_risk", Severity::Low)]);
        let calm = alerts(
            &id,
            &Snapshot { days_since_active: Some(2), ..snap.clone() },
            &health(60.0),
            Some(forecast(0.04)),
            None,
            None,
            &BASE,
        );
        assert!(calm.is_empty());
        // The same signs on one of the most valuable accounts are one level more severe.
        let big = Snapshot { mrr: 150_000, ..snap };
        let valuable = alerts(&id, &big, &health(30.0), Some(forecast(0.25)), None, None, &BASE);
        assert_eq!(reasons(&valuable), [("churn_risk", Severity::Critical), ("inactive", Severity::Critical)]);
    }

    #[test]
    fn drops_surges_failures_and_opportunities_each_have_their_reason() {
        let id = AccountId::parse("a").unwrap();
        let week_ago = ScorePoint {
            day: "2026-01-01".parse().unwrap(),
            health: 80.0,
            band: store::HealthBand::Healthy,
            churn_30d: None,
            churn_60d: None,
            churn_90d: None,
            expansion: None,
            mrr: None,
            components: json!({"usage": 40.0}),
        };
        let snap = Snapshot {
            mrr: 10_000,
            tenure_days: 400,
            days_since_active: Some(0),
            tickets_7d: 4,
            tickets_prev_28d: 2,
            escalated_open_tickets: 1,
            payment_failures_90d: 1,
            seats: Some(10),
            active_users_28d: 10,
            ..Default::default()
        };
        let out = alerts(&id, &snap, &health(45.0), None, Some(forecast(0.3)), Some(&week_ago), &BASE);
        assert_eq!(
            reasons(&out),
            [
                ("health_drop", Severity::High),
                ("ticket_surge", Severity::High),
                ("payment_failed", Severity::High),
                ("expansion", Severity::High),
                ("seats_nearly_full", Severity::Medium),
            ]
        );
        assert_eq!(out[0].evidence["from"], 80.0);
        assert!(out[3].kind == AlertKind::Opportunity && out[4].kind == AlertKind::Opportunity);
        // A smaller drop and a usual week of tickets raise nothing.
        let quiet = Snapshot { tickets_7d: 1, payment_failures_90d: 0, seats: Some(20), ..snap };
        assert!(alerts(&id, &quiet, &health(70.0), None, None, Some(&week_ago), &BASE).is_empty());
    }
}
