//! Recommended next actions from an account's stored score: its explanation (as
//! [`crate::score_workspace`] writes it) read back into what [`intelligence::actions`] ranks.

use intelligence::actions::{Odds, Playbook, Recommendation, Situation, recommend};
use intelligence::health::Component;
use serde_json::Value;

/// A forecast of the explanation (`churn[i]` or `expansion`) as recommendations read it.
fn odds(v: &Value) -> Option<Odds> {
    let probability = v.get("probability")?.as_f64()?;
    let drivers = v
        .get("drivers")
        .and_then(Value::as_array)
        .map(|ds| {
            ds.iter()
                .filter_map(|d| Some((d.get("name")?.as_str()?.to_owned(), d.get("contribution")?.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    Some(Odds { probability, from_model: v.get("source").and_then(Value::as_str) == Some("model"), drivers })
}

/// What the account's latest score (its `explanation`) calls for, most urgent first;
/// `renews_in_days` from its subscriptions, `playbooks` the workspace's as they stand for it.
/// Nothing for an explanation that is not one.
pub fn recommendations(
    explanation: &Value,
    renews_in_days: Option<i64>,
    playbooks: &[Playbook],
) -> Vec<Recommendation> {
    let Some(signals) = explanation.get("signals").and_then(|s| serde_json::from_value(s.clone()).ok()) else {
        return Vec::new();
    };
    let health = &explanation["health"];
    let components = health["components"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| {
                    let component: Component = serde_json::from_value(c.get("component")?.clone()).ok()?;
                    Some((component, c.get("score")?.as_f64()?))
                })
                .collect()
        })
        .unwrap_or_default();
    let churn_30d =
        explanation["churn"].as_array().and_then(|fs| fs.iter().find(|f| f["horizon_days"] == 30)).and_then(odds);
    recommend(&Situation {
        signals,
        health: health["score"].as_f64(),
        at_risk: health["band"] == "at_risk",
        components,
        churn_30d,
        expansion: odds(&explanation["expansion"]),
        renews_in_days,
        playbooks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use intelligence::actions::{Kind, Need, Source};
    use serde_json::json;

    #[test]
    fn a_stored_explanation_reads_back_into_its_recommendations() {
        let explanation = json!({
            "health": {"score": 31.5, "band": "at_risk", "profile": "mature", "components": [
                {"component": "usage", "score": 12.0, "weight": 0.5, "points": 6.0, "measures": []},
                {"component": "support", "score": 90.0, "weight": 0.5, "points": 45.0, "measures": []}
            ]},
            "churn": [
                {"horizon_days": 30, "probability": 0.4, "source": "prior",
                 "drivers": [{"name": "no activity for 30 days", "contribution": 1.6}]},
                {"horizon_days": 60, "probability": 0.6, "source": "prior", "drivers": []}
            ],
            "expansion": null,
            "signals": {"days_since_active": 33, "tenure_days": 200, "mrr": 9900, "events_90d": 12, "csat_90d": null},
            "models": {"churn": null, "expansion": null}
        });
        let playbooks = [Playbook {
            journey_id: "jrn_1".into(),
            name: "Retention: high risk".into(),
            needs: vec![Need::Retention],
            applies: true,
            running: false,
        }];
        let ranked = recommendations(&explanation, Some(45), &playbooks);
        assert_eq!(ranked.iter().map(|r| r.kind).collect::<Vec<_>>(), [Kind::GoneQuiet, Kind::Renewal]);
        let quiet = &ranked[0];
        assert_eq!(quiet.title, "No activity for 33 days: call to re-engage");
        assert_eq!(quiet.playbook.as_ref().map(|p| p.name.as_str()), Some("Retention: high risk"));
        assert!(
            quiet.evidence.iter().any(|e| e.source == Source::Churn
                && e.text == "churn driver (rule-based prior): no activity for 30 days, +1.60 to the log-odds of 40%"),
            "{:?}",
            quiet.evidence
        );
        assert!(recommendations(&json!({"health": {}}), None, &[]).is_empty(), "no signals, nothing to go on");
    }
}
