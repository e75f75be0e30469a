//! A workspace's scoring configuration, stored as its `scoring` setting. Every part has a
//! default, so a workspace that never set one is scored sensibly.

use intelligence::health::HealthConfig;
use intelligence::kpis::ActivationRule;
use intelligence::signals::{SignalConfig, default_health_config};
use serde::{Deserialize, Serialize};

/// The setting's key.
pub const KEY: &str = "scoring";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringSettings {
    /// The product's features, each counting several events together; an event no feature
    /// lists is a feature of its own. Usage, breadth and the models' key events are counted
    /// by feature.
    pub features: Vec<FeatureGroup>,
    /// The events (or features) the churn and expansion models count; none: the ten most
    /// frequent.
    pub key_events: Option<Vec<String>>,
    /// Events that mark an explicit churn.
    pub churn_events: Vec<String>,
    pub signals: SignalConfig,
    pub health: HealthConfig,
    /// When a new account counts as activated (key events and people within days of its
    /// first activity), for the activation KPI.
    pub activation: ActivationRule,
}

/// One feature of the product and the events that mean it was used:
/// `{"name": "Reporting", "events": ["Report Created", "Report Viewed", "Export Downloaded"]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureGroup {
    pub name: String,
    pub events: Vec<String>,
}

impl Default for ScoringSettings {
    fn default() -> Self {
        ScoringSettings {
            features: Vec::new(),
            key_events: None,
            churn_events: ["account_churned", "subscription_cancelled"].map(String::from).to_vec(),
            signals: SignalConfig::default(),
            health: default_health_config(),
            activation: ActivationRule::default(),
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

    /// The feature an event counts for: the group that lists it, or the event itself.
    pub fn feature_of<'a>(&'a self, event: &'a str) -> &'a str {
        self.features.iter().find(|g| g.events.iter().any(|e| same_event(e, event))).map_or(event, |g| &g.name)
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
        if !(1..=365).contains(&self.activation.within_days) {
            return Err("activation.within_days: from 1 to 365 days".into());
        }
        if let Some(k) = &self.key_events
            && k.iter().any(|e| e.is_empty())
        {
            return Err("key_events: an event name is empty".into());
        }
        self.check_features()
    }

    /// Features have names of their own and take each event once; the events that mean
    /// churn, failed payments and plan limits are read on their own, so no feature takes them.
    fn check_features(&self) -> Result<(), String> {
        let signals: Vec<&String> = self
            .churn_events
            .iter()
            .chain(&self.signals.payment_failure_events)
            .chain(&self.signals.limit_events)
            .collect();
        for (i, g) in self.features.iter().enumerate() {
            let at = format!("features[{i}]");
            if g.name.trim().is_empty() || g.name.starts_with('$') {
                return Err(format!("{at}.name: a feature needs a name, not starting with '$'"));
            }
            if self.features[..i].iter().any(|o| same_event(&o.name, &g.name)) {
                return Err(format!("{at}.name: {:?} names two features", g.name));
            }
            if g.events.is_empty() || g.events.iter().any(|e| e.is_empty()) {
                return Err(format!("{at}.events: a feature lists one or more event names"));
            }
            for e in g.events.iter().chain([&g.name]) {
                if let Some(s) = signals.iter().find(|s| same_event(s, e)) {
                    return Err(format!("{at}: {e:?} is read as the signal {s:?}, not as a feature's usage"));
                }
                if let Some(o) = self.features[..i].iter().find(|o| o.events.iter().any(|x| same_event(x, e))) {
                    return Err(format!("{at}.events: {e:?} is already counted for {:?}", o.name));
                }
            }
        }
        for k in self.key_events.iter().flatten() {
            let feature = self.feature_of(k);
            if feature != k {
                return Err(format!("key_events: {k:?} is counted for the feature {feature:?}; name the feature"));
            }
        }
        Ok(())
    }
}

pub use domain::same_event;

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
    fn features_group_events_once_each_and_leave_signals_alone() {
        let group = |name: &str, events: &[&str]| FeatureGroup {
            name: name.into(),
            events: events.iter().map(|e| e.to_string()).collect(),
        };
        let mut s = ScoringSettings {
            features: vec![group("Reporting", &["Report Created", "report_viewed"]), group("Tasks", &["Task Created"])],
            key_events: Some(vec!["Reporting".into(), "Signed In".into()]),
            ..Default::default()
        };
        assert_eq!(s.check(), Ok(()));
        assert_eq!(s.feature_of("Report Viewed"), "Reporting");
        assert_eq!(s.feature_of("task_created"), "Tasks");
        assert_eq!(s.feature_of("Signed In"), "Signed In");

        let refused = |s: &ScoringSettings| s.check().expect_err("refused");
        let mut bad = s.clone();
        bad.features[1].events.push("Report Created".into());
        assert_eq!(refused(&bad), "features[1].events: \"Report Created\" is already counted for \"Reporting\"");
        let mut bad = s.clone();
        bad.features[1].events.push("Payment Failed".into());
        assert_eq!(
            refused(&bad),
            "features[1]: \"Payment Failed\" is read as the signal \"payment_failed\", not as a feature's usage"
        );
        let mut bad = s.clone();
        bad.features[1].name = "reporting".into();
        assert_eq!(refused(&bad), "features[1].name: \"reporting\" names two features");
        s.key_events = Some(vec!["Report Created".into()]);
        assert_eq!(
            refused(&s),
            "key_events: \"Report Created\" is counted for the feature \"Reporting\"; name the feature"
        );
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
