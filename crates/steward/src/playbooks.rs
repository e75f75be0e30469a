//! The playbooks that ship with Steward: journeys for the lifecycle a customer success team
//! runs (onboarding, activation, retention, renewal, support follow-up), the segments they
//! start from and the email templates they send. They live in `playbooks/` at the
//! repository's root and are built into the binary, so a clone or a release has them.
//!
//! `steward playbooks install` saves them into a workspace through the API's own handlers,
//! so they pass the checks anything saved through the API does: segments and templates by
//! name unless one of that name exists, journeys (disabled unless asked) unless one of that
//! name exists. Running it again changes nothing.
//!
//! Journeys start runs when an account enters a segment. A new segment is first saved
//! matching no one, and given its condition only once the journeys exist, so that the
//! accounts already in it enter with the journeys listening.

use anyhow::{Context, Result, bail};
use http_body_util::BodyExt;
use hyper::Method;
use hyper::body::Bytes;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use crate::client::Client;
use crate::config::Config;
use crate::run::Backend;

const SEGMENTS: &str = include_str!("../../../playbooks/segments.yaml");
const TEMPLATES: &str = include_str!("../../../playbooks/templates.yaml");
/// The journeys, by file, in the lifecycle's order.
const JOURNEYS: [(&str, &str); 11] = [
    ("onboarding.yaml", include_str!("../../../playbooks/onboarding.yaml")),
    ("activation-tier-1.yaml", include_str!("../../../playbooks/activation-tier-1.yaml")),
    ("activation-tier-2.yaml", include_str!("../../../playbooks/activation-tier-2.yaml")),
    ("activation-tier-3.yaml", include_str!("../../../playbooks/activation-tier-3.yaml")),
    ("retention-high-risk.yaml", include_str!("../../../playbooks/retention-high-risk.yaml")),
    ("retention-medium-risk.yaml", include_str!("../../../playbooks/retention-medium-risk.yaml")),
    ("retention-growth.yaml", include_str!("../../../playbooks/retention-growth.yaml")),
    ("renewal-90.yaml", include_str!("../../../playbooks/renewal-90.yaml")),
    ("renewal-60.yaml", include_str!("../../../playbooks/renewal-60.yaml")),
    ("renewal-30.yaml", include_str!("../../../playbooks/renewal-30.yaml")),
    ("support-follow-up.yaml", include_str!("../../../playbooks/support-follow-up.yaml")),
];

/// A segment a playbook starts from, as `segments.yaml` gives it.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentDefinition {
    pub name: String,
    pub condition: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// Everything that ships: segments in the order they must be saved (each after those it
/// tests), templates by name, and journeys as definitions with the file each came from.
#[derive(Clone, Debug)]
pub struct Playbooks {
    pub segments: Vec<SegmentDefinition>,
    pub templates: Map<String, Value>,
    pub journeys: Vec<(&'static str, Value)>,
}

/// The playbooks built into this binary.
pub fn shipped() -> Result<Playbooks> {
    let segments: Vec<SegmentDefinition> =
        serde_saphyr::from_str(SEGMENTS).context("reading playbooks/segments.yaml")?;
    let templates: Map<String, Value> =
        serde_saphyr::from_str(TEMPLATES).context("reading playbooks/templates.yaml")?;
    let mut journeys = Vec::new();
    for (file, text) in JOURNEYS {
        let doc: Value = serde_saphyr::from_str(text).with_context(|| format!("reading playbooks/{file}"))?;
        journeys.push((file, doc));
    }
    Ok(Playbooks { segments, templates, journeys })
}

/// What answers the API: a server over HTTP, or the server's router in this process.
pub enum Api {
    Http(Client),
    InProcess { router: axum::Router, key: String },
}

impl Api {
    /// Sends a request; returns the status and the JSON answer (`null` when there is none).
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let body = body.map(|b| Bytes::from(b.to_string()));
        let (status, reply) = match self {
            Api::Http(client) => client.request(method, path, body).await?,
            Api::InProcess { router, key } => {
                let req = axum::http::Request::builder()
                    .method(method)
                    .uri(path)
                    .header("content-type", "application/json")
                    .header("authorization", format!("Bearer {key}"))
                    .body(axum::body::Body::from(body.unwrap_or_default()))?;
                let resp = router.clone().oneshot(req).await?;
                let status = resp.status().as_u16();
                (status, resp.into_body().collect().await?.to_bytes())
            }
        };
        let value = if reply.is_empty() { Value::Null } else { serde_json::from_slice(&reply)? };
        Ok((status, value))
    }

    /// As [`Api::call`], for a request that must succeed.
    pub(crate) async fn ok(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let (status, reply) = self.call(method.clone(), path, body).await?;
        if !(200..300).contains(&status) {
            bail!("{method} {path}: {status} {}", refusal(&reply));
        }
        Ok(reply)
    }
}

/// What the API said when it refused: its message, and each problem of a journey.
fn refusal(reply: &Value) -> String {
    let mut out = reply["error"]["message"].as_str().map_or_else(|| reply.to_string(), str::to_owned);
    for p in reply["problems"].as_array().into_iter().flatten() {
        out.push_str(&format!("\n    {}: {}", p["path"].as_str().unwrap_or(""), p["message"].as_str().unwrap_or("")));
    }
    out
}

/// What an install did.
#[derive(Debug, Default)]
pub struct Installed {
    /// One line per segment, template and journey: what happened to it.
    pub lines: Vec<String>,
    pub segments: Counts,
    pub templates: Counts,
    pub journeys: Counts,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub created: usize,
    pub existed: usize,
}

impl Installed {
    pub fn summary(&self, enabled: bool) -> String {
        let count = |c: Counts, what: &str| format!("{} {what} ({} new)", c.created + c.existed, c.created);
        format!(
            "Playbooks: {}, {}, {}{}.",
            count(self.segments, "segments"),
            count(self.templates, "email templates"),
            count(self.journeys, "journeys"),
            if self.journeys.created == 0 {
                ""
            } else if enabled {
                ", the new ones enabled"
            } else {
                ", the new ones disabled (POST /api/v1/journeys/{id}/enable to enable one)"
            }
        )
    }
}

/// Saves `playbooks` into the workspace `api` acts in; journeys enabled when `enable`.
pub async fn install(api: &Api, playbooks: &Playbooks, enable: bool) -> Result<Installed> {
    let mut done = Installed::default();
    let existing = api.ok(Method::GET, "/api/v1/segments", None).await?;
    let existing: Vec<&str> =
        existing["data"].as_array().into_iter().flatten().filter_map(|s| s["segment"]["name"].as_str()).collect();
    // New segments match no one until the journeys exist (see the module's documentation).
    let mut placeholders: Vec<(String, &SegmentDefinition)> = Vec::new();
    let mut lines = Vec::new();
    for s in &playbooks.segments {
        if existing.contains(&s.name.as_str()) {
            done.segments.existed += 1;
            lines.push(format!("segment {:?}: exists, left as it is", s.name));
            continue;
        }
        let body = json!({"name": s.name, "kind": "accounts", "condition": "false", "description": s.description});
        let saved = api.ok(Method::POST, "/api/v1/segments", Some(&body)).await?;
        let id = saved["segment"]["segment_id"].as_str().context("a saved segment has an id")?.to_owned();
        placeholders.push((id, s));
    }
    // Whatever happens to the templates and journeys, the new segments get their conditions
    // (or go, if one is refused, so that running the install again saves them).
    let rest = templates_and_journeys(api, playbooks, enable, &mut done).await;
    for (id, s) in placeholders {
        let body = json!({"name": s.name, "kind": "accounts", "condition": s.condition, "description": s.description});
        let path = format!("/api/v1/segments/{id}");
        match api.ok(Method::PUT, &path, Some(&body)).await {
            Ok(saved) => {
                done.segments.created += 1;
                let warnings: Vec<&str> =
                    saved["warnings"].as_array().into_iter().flatten().filter_map(|w| w["message"].as_str()).collect();
                let warned = if warnings.is_empty() { String::new() } else { format!(" ({})", warnings.join("; ")) };
                lines.push(format!("segment {:?}: saved, {} members{warned}", s.name, saved["size"]));
            }
            Err(e) => {
                api.call(Method::DELETE, &path, None).await?;
                return Err(e.context(format!("segment {:?}", s.name)));
            }
        }
    }
    done.lines.splice(0..0, lines);
    rest?;
    Ok(done)
}

async fn templates_and_journeys(api: &Api, playbooks: &Playbooks, enable: bool, done: &mut Installed) -> Result<()> {
    let existing = api.ok(Method::GET, "/api/v1/templates", None).await?;
    let existing: Vec<&str> =
        existing["data"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
    for (name, template) in &playbooks.templates {
        if existing.contains(&name.as_str()) {
            done.templates.existed += 1;
            done.lines.push(format!("template {name}: exists, left as it is"));
            continue;
        }
        api.ok(Method::PUT, &format!("/api/v1/templates/{name}"), Some(template))
            .await
            .with_context(|| format!("template {name}"))?;
        done.templates.created += 1;
        done.lines.push(format!("template {name}: saved"));
    }
    let existing = api.ok(Method::GET, "/api/v1/journeys", None).await?;
    let existing: Vec<&str> =
        existing["data"].as_array().into_iter().flatten().filter_map(|j| j["journey"]["name"].as_str()).collect();
    let mut refused = Vec::new();
    for (file, doc) in &playbooks.journeys {
        let name = doc["name"].as_str().unwrap_or(file);
        if existing.contains(&name) {
            done.journeys.existed += 1;
            done.lines.push(format!("journey {name:?}: exists, left as it is"));
            continue;
        }
        let mut body = doc.clone();
        body["enabled"] = json!(enable);
        match api.ok(Method::POST, "/api/v1/journeys", Some(&body)).await {
            Ok(saved) => {
                done.journeys.created += 1;
                let id = saved["journey"]["journey_id"].as_str().unwrap_or("?");
                let state = if enable { "enabled" } else { "disabled" };
                done.lines.push(format!("journey {name:?}: saved as {id}, {state}"));
            }
            // The others are still saved; the refusals are told together.
            Err(e) => refused.push(format!("playbooks/{file}: {e:#}")),
        }
    }
    if !refused.is_empty() {
        bail!("{} journey(s) refused:\n  {}", refused.len(), refused.join("\n  "));
    }
    Ok(())
}

/// `steward playbooks install --workspace W [--enable]`: through the API's handlers in this
/// process, as an admin key made for the install and revoked at its end.
pub async fn install_command(config: Config, workspace: &str, enable: bool) -> Result<()> {
    let backend = Backend::open(&config).await?;
    let store = backend.store();
    let ws = crate::admin::existing(store.as_ref(), workspace).await?;
    let key = domain::NewApiKey::generate(&ws, domain::KeyRole::Admin, chrono::Utc::now());
    store.insert_key(&key.key).await?;
    let state = server::AppState::new(store.clone(), None, config.server_config(false));
    let api = Api::InProcess { router: server::router(state), key: key.secret.clone() };
    let result = async { install(&api, &shipped()?, enable).await }.await;
    let revoked = store.revoke_key(&ws, &key.key.key_id, chrono::Utc::now()).await;
    backend.close().await;
    let installed = result?;
    revoked.context("revoking the install's key")?;
    for line in &installed.lines {
        println!("{line}");
    }
    println!("{}", installed.summary(enable));
    Ok(())
}

#[cfg(test)]
mod tests;
