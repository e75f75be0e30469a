//! A workspace's scoring configuration, stored as its `scoring` setting. Every part has a
//! default, so a workspace that never set one is scored sensibly.

use intelligence::health::HealthConfig;
use intelligence::signals::{SignalConfig, default_health_config};
use serde::{Deserialize, Serialize};

/// The setting's key.
pub const KEY: &str = "scoring";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringSettings {
    /// The events the churn and expansion models count; none: the ten most frequent.
    pub key_events: Option<Vec<String>>,
    /// Events that mark an explicit churn.
    pub churn_events: Vec<String>,
    pub signals: SignalConfig,
    pub health: HealthConfig,
}

impl Default for ScoringSettings {
    fn default() -> Self {
        ScoringSettings {
            key_events: None,
            churn_events: ["account_churned", "subscription_cancelled"].map(String::from).to_vec(),
            signals: SignalConfig::default(),
            health: default_health_config(),
        }
    }
}

impl ScoringSettings {
    /// These settings with every event name they list spelled as the workspace's events are:
    /// each name stands for all the workspace's events that are the same event
    /// ([`same_event`]), and stays as it is when none is.
    pub fn matched_to(&self, metrics: &[String]) -> ScoringSettings {
        let spell = |names: &[String]| -> Vec<String> {
            let mut out: Vec<String> = Vec::new();
            for name in names {
                let mut found = false;
                for m in metrics.iter().filter(|m| same_event(name, m)) {
                    found = true;
                    if !out.contains(m) {
                        out.push(m.clone());
                    }
                }
                if !found && !out.contains(name) {
                    out.push(name.clone());
                }
            }
            out
        };
        let mut s = self.clone();
        s.key_events = self.key_events.as_deref().map(spell);
        s.churn_events = spell(&self.churn_events);
        s.signals.payment_failure_events = spell(&self.signals.payment_failure_events);
        s.signals.limit_events = spell(&self.signals.limit_events);
        s
    }

    /// Parses a stored or submitted document, saying what is wrong with it.
    pub fn parse(v: &serde_json::Value) -> Result<ScoringSettings, String> {
        let s: ScoringSettings = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), String> {
        let h = &self.health;
        if h.profiles.is_empty() {
            return Err("health.profiles: at least one profile is needed".into());
        }
        if !(0.0..=100.0).contains(&h.at_risk_below) || h.at_risk_below > h.healthy_from || h.healthy_from > 100.0 {
            return Err("health: at_risk_below must be at most healthy_from, both from 0 to 100".into());
        }
        for p in &h.profiles {
            if p.weights.iter().any(|(_, w)| !(w.is_finite() && *w >= 0.0)) {
                return Err(format!("health.profiles[{}]: weights must be zero or more", p.name));
            }
        }
        if let Some(k) = &self.key_events
            && k.iter().any(|e| e.is_empty())
        {
            return Err("key_events: an event name is empty".into());
        }
        Ok(())
    }
}

/// Whether two event names are one event as people write them: `Payment Failed`,
/// `payment_failed`, `payment-failed`, `payment.failed` and `paymentFailed` are. Steward's own
/// metrics (`$any`, `$page`, `$screen`) match only themselves.
pub fn same_event(a: &str, b: &str) -> bool {
    if a.starts_with('$') || b.starts_with('$') {
        return a == b;
    }
    words(a).eq(words(b))
}

/// The lower-cased letters and digits of an event name, with one `' '` wherever a word ends:
/// at a run of other characters or where a lower-case letter or digit meets a capital.
fn words(name: &str) -> impl Iterator<Item = char> + '_ {
    let mut gap = false;
    let mut after_lower = false;
    let mut started = false;
    name.chars().flat_map(move |ch| {
        let mut out = [None, None];
        if ch.is_alphanumeric() {
            let boundary = gap || (ch.is_uppercase() && after_lower);
            if boundary && started {
                out[0] = Some(' ');
            }
            out[1] = ch.to_lowercase().next();
            after_lower = ch.is_lowercase() || ch.is_numeric();
            gap = false;
            started = true;
        } else {
            gap = true;
            after_lower = false;
        }
        out.into_iter().flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_match_across_the_ways_people_write_them() {
        for spelling in [
            "Payment Failed",
            "payment_failed",
            "payment-failed",
            "paymentFailed",
            "PAYMENT.FAILED ",
            " payment  failed",
        ] {
            assert!(same_event("payment_failed", spelling), "{spelling}");
        }
        for other in ["payments failed", "payment_failed_twice", "paymentfailed", "Payment", "$any"] {
            assert!(!same_event("payment_failed", other), "{other}");
        }
        assert!(same_event("$any", "$any") && !same_event("any", "$any"));
    }

    #[test]
    fn settings_take_the_workspace_spelling_of_their_events() {
        let metrics: Vec<String> =
            ["$any", "Payment Failed", "Subscription Cancelled", "subscription_cancelled", "Report Created"]
                .map(String::from)
                .to_vec();
        let mut s = ScoringSettings {
            key_events: Some(vec!["report_created".into(), "Never Sent".into()]),
            ..Default::default()
        };
        s.signals.limit_events = vec!["plan_limit_reached".into()];
        let m = s.matched_to(&metrics);
        assert_eq!(m.key_events, Some(vec!["Report Created".to_owned(), "Never Sent".to_owned()]));
        assert_eq!(m.churn_events, ["account_churned", "Subscription Cancelled", "subscription_cancelled"]);
        assert_eq!(m.signals.payment_failure_events, ["Payment Failed", "invoice_payment_failed", "charge_failed"]);
        assert_eq!(m.signals.limit_events, ["plan_limit_reached"]);
    }
}
