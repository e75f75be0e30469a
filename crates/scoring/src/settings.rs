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
