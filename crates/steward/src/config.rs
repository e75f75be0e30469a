//! Configuration: one typed struct, layered from defaults, `steward.toml`, `STEWARD_*`
//! environment variables (`__` separates nested keys) and command-line flags, in that order.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::cli::{Cli, Command, KeysCommand, Location, PlaybooksCommand, WorkspaceCommand};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `postgres://...` selects PostgreSQL instead of the embedded database.
    pub database_url: Option<DatabaseUrl>,
    /// `text` or `json`.
    pub log_format: String,
    pub ingest: IngestConfig,
    pub processor: ProcessorSettings,
    pub scoring: ScoringConfig,
    pub segments: SegmentsConfig,
    pub journeys: JourneysConfig,
    pub email: EmailConfig,
    pub outbox: OutboxConfig,
    pub connectors: ConnectorsConfig,
    pub dashboard: DashboardConfig,
}

/// The web dashboard's sessions.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    /// Mark the session cookie `Secure`: set it when Steward is reached over HTTPS (directly
    /// or through a proxy that terminates TLS).
    pub secure_cookies: bool,
    /// Hours a session lasts after sign-in.
    pub session_hours: u64,
    /// Minutes a session may go unused before it ends.
    pub idle_minutes: u64,
}

/// Connectors to billing, CRM and support providers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorsConfig {
    /// The key connectors' secrets are sealed with: 32 bytes in base64 (`openssl rand -base64
    /// 32`). Unset, a key is made once and kept in `connectors.key` in the data directory;
    /// processes sharing one PostgreSQL database must share one key, so set it there.
    pub secrets_key: Option<Secret>,
    /// Milliseconds between looking for backfills that are due.
    pub tick_ms: u64,
}

/// A setting that is a secret: read from the configuration, never printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentsConfig {
    /// Milliseconds between looking for memberships due to change by time.
    pub tick_ms: u64,
    /// Minutes between evaluating every account for every segment again.
    pub recompute_minutes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JourneysConfig {
    /// Milliseconds between looking for journey steps that are due.
    pub tick_ms: u64,
}

/// The mail relay emails go through. Without a host, emails wait (pending) until one is set.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub host: Option<String>,
    pub port: u16,
    /// `starttls` (port 587), `tls` (port 465) or `none` (a relay on this host or network).
    pub security: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The longest each step of a delivery may wait for the relay.
    pub timeout_ms: u64,
    /// A PEM file of extra trusted roots, for a relay behind a private CA.
    pub ca_file: Option<PathBuf>,
    /// The name Steward gives itself in EHLO.
    pub helo: String,
    /// The sender of workspaces that set none (`email.from`).
    pub from: Option<String>,
}

impl fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Milliseconds between looking for messages due.
    pub tick_ms: u64,
    /// How long a deliverer holds a message it took before another may take it.
    pub lease_seconds: u64,
    /// Where Steward is reached from outside (`https://cs.example.com`), for unsubscribe links.
    pub public_url: Option<String>,
    /// Emails sent per second at most, per workspace (and as many at once after a pause).
    pub email_per_second: f64,
    /// Webhook calls per second at most, per workspace.
    pub webhook_per_second: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoringConfig {
    /// Whether the server scores workspaces on its own (off: only on demand).
    pub enabled: bool,
    /// Minutes between rescoring every account of a workspace (and at each new day).
    pub rescore_minutes: u64,
    /// Hours between retraining a workspace's models.
    pub retrain_hours: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    pub max_inflight_events: usize,
    pub key_cache_ttl_secs: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorSettings {
    /// Events per processing transaction while processing keeps up.
    pub batch: usize,
    /// The largest slice while working off a backlog.
    pub max_batch: usize,
    /// Milliseconds events gather between slices once processing has caught up.
    pub gather_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("a valid address"),
            data_dir: PathBuf::from("./steward-data"),
            database_url: None,
            log_format: "text".into(),
            ingest: IngestConfig { max_inflight_events: 200_000, key_cache_ttl_secs: 5 },
            dashboard: DashboardConfig { secure_cookies: false, session_hours: 12, idle_minutes: 120 },
            processor: ProcessorSettings { batch: 2_000, max_batch: 8_000, gather_ms: 100 },
            scoring: ScoringConfig { enabled: true, rescore_minutes: 60, retrain_hours: 7 * 24 },
            segments: SegmentsConfig { tick_ms: 1_000, recompute_minutes: 5 },
            journeys: JourneysConfig { tick_ms: 500 },
            email: EmailConfig {
                host: None,
                port: 587,
                security: "starttls".into(),
                username: None,
                password: None,
                timeout_ms: 30_000,
                ca_file: None,
                helo: "steward.localdomain".into(),
                from: None,
            },
            outbox: OutboxConfig {
                tick_ms: 500,
                lease_seconds: 60,
                public_url: None,
                email_per_second: 50.0,
                webhook_per_second: 50.0,
            },
            connectors: ConnectorsConfig { secrets_key: None, tick_ms: 1_000 },
        }
    }
}

/// A database URL whose password never prints.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(pub String);

impl DatabaseUrl {
    pub fn redacted(&self) -> String {
        // postgres://user:password@host/db -> postgres://user:***@host/db
        let s = &self.0;
        if let (Some(scheme_end), Some(at)) = (s.find("://"), s.rfind('@')) {
            let userinfo = &s[scheme_end + 3..at];
            if let Some(colon) = userinfo.find(':') {
                return format!("{}{}:***{}", &s[..scheme_end + 3], &userinfo[..colon], &s[at..]);
            }
        }
        s.clone()
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl Config {
    pub fn load(cli: &Cli) -> Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        let file = cli.config.clone().or_else(|| Path::new("steward.toml").exists().then(|| "steward.toml".into()));
        if let Some(file) = &file {
            anyhow::ensure!(file.exists(), "configuration file {} does not exist", file.display());
            figment = figment.merge(Toml::file(file));
        }
        // STEWARD_CONFIG names the file and STEWARD_LOG the log filter; STEWARD_TEST_* belong
        // to the test suite. None of them is a setting.
        let env = Env::prefixed("STEWARD_")
            .filter(|k| k != "config" && k != "log" && !k.as_str().starts_with("test_"))
            .split("__");
        figment = figment.merge(env);
        let mut config: Config = figment.extract().context("invalid configuration")?;
        if let Some(url) = &config.database_url
            && url.0.is_empty()
        {
            config.database_url = None;
        }
        config.apply_flags(&cli.command);
        if let Some(url) = &config.database_url {
            anyhow::ensure!(
                url.0.starts_with("postgres://") || url.0.starts_with("postgresql://"),
                "database_url must be a postgres:// URL (leave it unset for the embedded database)"
            );
        }
        anyhow::ensure!(
            matches!(config.log_format.as_str(), "text" | "json"),
            "log_format must be \"text\" or \"json\""
        );
        Ok(config)
    }

    fn apply_flags(&mut self, command: &Command) {
        let location = |l: &Location| l.data_dir.clone();
        let (listen, dir) = match command {
            Command::Serve { listen, location: l, .. } => (*listen, location(l)),
            Command::Demo { listen, data_dir, .. } => (*listen, data_dir.clone()),
            Command::Config { location: l }
            | Command::Replay { location: l, .. }
            | Command::Import { location: l, .. }
            | Command::Evaluate { location: l, .. }
            | Command::Train { location: l, .. }
            | Command::Score { location: l, .. }
            | Command::Predict { location: l, .. } => (None, location(l)),
            Command::Workspace {
                command: WorkspaceCommand::Create { location: l, .. } | WorkspaceCommand::List { location: l },
            } => (None, location(l)),
            Command::Keys {
                command:
                    KeysCommand::Create { location: l, .. }
                    | KeysCommand::List { location: l, .. }
                    | KeysCommand::Revoke { location: l, .. },
            } => (None, location(l)),
            Command::Operator {
                command:
                    crate::cli::OperatorCommand::Add { location: l, .. }
                    | crate::cli::OperatorCommand::List { location: l, .. },
            } => (None, location(l)),
            Command::Playbooks { command: PlaybooksCommand::Install { location: l, .. } } => (None, location(l)),
            Command::Bench { .. } => (None, None),
        };
        if let Some(l) = listen {
            self.listen = l;
        }
        if let Some(d) = dir {
            self.data_dir = d;
        }
    }

    pub fn to_redacted_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// The key connectors' secrets are sealed with: `[connectors] secrets_key`, else the one
    /// kept in the data directory (made on first use, readable by its owner only).
    pub fn connectors_key(&self) -> Result<connectors::SealingKey> {
        if let Some(k) = &self.connectors.secrets_key {
            return connectors::SealingKey::from_base64(&k.0).context("connectors.secrets_key");
        }
        let path = self.data_dir.join("connectors.key");
        if !path.exists() {
            std::fs::create_dir_all(&self.data_dir).with_context(|| format!("creating {}", self.data_dir.display()))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            // Another process may have made it first: then its key is the one.
            if let Ok(mut file) = options.open(&path) {
                use std::io::Write;
                file.write_all(connectors::SealingKey::generate().as_bytes())?;
                file.sync_all()?;
            }
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        connectors::SealingKey::from_base64(&text).with_context(|| format!("the key in {}", path.display()))
    }

    /// How messages leave, from `[email]` and `[outbox]`.
    pub fn delivery_config(&self) -> Result<runner::deliver::DeliveryConfig> {
        use outbox::email::{Security, SmtpConfig};
        let e = &self.email;
        let smtp = match &e.host {
            None => None,
            Some(host) => {
                let security = match e.security.as_str() {
                    "starttls" => Security::StartTls,
                    "tls" => Security::Tls,
                    "none" => Security::None,
                    other => anyhow::bail!("email.security: {other:?} is not one of starttls, tls, none"),
                };
                let extra_root_pem = match &e.ca_file {
                    Some(path) => Some(
                        std::fs::read_to_string(path)
                            .with_context(|| format!("email.ca_file: reading {}", path.display()))?,
                    ),
                    None => None,
                };
                Some(SmtpConfig {
                    host: host.clone(),
                    port: e.port,
                    security,
                    username: e.username.clone(),
                    password: e.password.as_ref().map(|p| p.0.clone()),
                    helo: e.helo.clone(),
                    timeout: std::time::Duration::from_millis(e.timeout_ms.max(100)),
                    extra_root_pem,
                })
            }
        };
        Ok(runner::deliver::DeliveryConfig {
            smtp,
            from: e.from.clone(),
            public_url: self.outbox.public_url.clone().or_else(|| Some(format!("http://{}", self.listen))),
            lease: std::time::Duration::from_secs(self.outbox.lease_seconds.max(1)),
            journal: Some(self.data_dir.join("outbox-handed.journal")),
            email_rate: rate("outbox.email_per_second", self.outbox.email_per_second)?,
            webhook_rate: rate("outbox.webhook_per_second", self.outbox.webhook_per_second)?,
            ..Default::default()
        })
    }

    pub fn server_config(&self, discard_events: bool) -> server::ServerConfig {
        server::ServerConfig {
            max_inflight_events: self.ingest.max_inflight_events,
            key_cache_ttl: std::time::Duration::from_secs(self.ingest.key_cache_ttl_secs),
            discard_events,
            ui: server::ui::UiConfig {
                secure_cookies: self.dashboard.secure_cookies,
                session_ttl: std::time::Duration::from_secs(self.dashboard.session_hours.max(1) * 3600),
                idle_timeout: std::time::Duration::from_secs(self.dashboard.idle_minutes.max(1) * 60),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// A rate and its burst (a second's worth, at least one).
fn rate(name: &str, per_second: f64) -> Result<(f64, u32)> {
    if !(per_second.is_finite() && per_second > 0.0) {
        anyhow::bail!("{name}: expected a positive number, not {per_second}");
    }
    Ok((per_second, per_second.ceil().clamp(1.0, 100_000.0) as u32))
}

pub fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("STEWARD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_print() {
        let url = DatabaseUrl("postgres://steward:hunter2@db.internal:5432/steward".into());
        assert_eq!(url.redacted(), "postgres://steward:***@db.internal:5432/steward");
        assert!(!format!("{url:?}").contains("hunter2"));
        let mut config = Config { database_url: Some(url), ..Config::default() };
        config.email.password = Some(Secret("smtp-pass-1".into()));
        config.connectors.secrets_key = Some(Secret("c2VjcmV0LWtleS0x".into()));
        let text = config.to_redacted_toml().unwrap();
        assert!(text.contains("postgres://steward:***@db.internal"), "{text}");
        for secret in ["hunter2", "smtp-pass-1", "c2VjcmV0LWtleS0x"] {
            assert!(!text.contains(secret) && !format!("{config:?}").contains(secret), "{secret}");
        }
        assert_eq!(DatabaseUrl("postgres://localhost/db".into()).redacted(), "postgres://localhost/db");
    }
}
