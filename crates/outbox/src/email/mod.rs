//! Email over SMTP (RFC 5321), written here rather than taken from a mail library because
//! the delivery loop needs a point between writing the final `.` of DATA and reading the
//! server's reply: a crash in that window (RFC 1047) may have delivered the message, so
//! the loop records that the message was handed over before it waits ([`Smtp::hand_over`],
//! then [`Handed::confirm`]). The session: EHLO, STARTTLS or implicit TLS (rustls), AUTH
//! PLAIN or LOGIN, MAIL FROM, RCPT TO, DATA with dot-stuffing, QUIT; every reply checked,
//! every read and write under the configured timeout.

mod message;
mod session;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::Outcome;
pub use message::message_id;
use session::{Session, SmtpError};

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain TCP throughout (a relay on the same host or network).
    None,
    /// Plain TCP, then STARTTLS; a server that does not offer it is not sent to.
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// An SMTP relay. The password never prints with `Debug`.
#[derive(Clone)]
pub struct SmtpConfig {
    /// Host name (or IP address) to connect to; also the name the certificate must carry.
    pub host: String,
    /// Port: 25 or 587 (StartTls), 465 (Tls).
    pub port: u16,
    /// How the connection is protected.
    pub security: Security,
    /// User for AUTH; none means no AUTH. Only over TLS (`StartTls` or `Tls`).
    pub username: Option<String>,
    /// Password for AUTH.
    pub password: Option<String>,
    /// The name this host gives itself in EHLO.
    pub helo: String,
    /// The longest any step may take: connecting, a handshake, each reply (the reply to
    /// DATA's final `.` included: RFC 5321 suggests servers may take up to 10 minutes).
    pub timeout: Duration,
    /// Extra trusted roots (PEM), e.g. a company relay's private CA.
    pub extra_root_pem: Option<String>,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("helo", &self.helo)
            .field("timeout", &self.timeout)
            .field("extra_root_pem", &self.extra_root_pem.as_ref().map(|_| "[PEM]"))
            .finish()
    }
}

/// A name and an address, `Ada Lovelace <ada@example.com>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    name: Option<String>,
    address: String,
}

impl Mailbox {
    /// A mailbox; the address must be ASCII `local@domain` (checked here).
    pub fn new(name: Option<&str>, address: &str) -> Result<Mailbox, MessageError> {
        let address = address.trim();
        message::check_address(address)?;
        Ok(Mailbox { name: name.map(str::to_string), address: address.to_string() })
    }

    /// The address alone.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The display name.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

/// One email, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// `left@right` without brackets; from the outbox row's key, see [`message_id`].
    pub message_id: String,
    /// The sender, also the envelope's MAIL FROM (bounces go there).
    pub from: Mailbox,
    /// The recipient, also the envelope's RCPT TO.
    pub to: Mailbox,
    /// The subject (any Unicode; encoded as needed).
    pub subject: String,
    /// The HTML body; with it the message is multipart/alternative.
    pub html: Option<String>,
    /// The plain-text body.
    pub text: String,
    /// The one-click unsubscribe URL (HTTPS), sent as `List-Unsubscribe` with
    /// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
    pub list_unsubscribe: Option<String>,
    /// More headers (`X-Steward-Run`...): one line of printable ASCII each; the headers the
    /// message sets itself are refused.
    pub headers: Vec<(String, String)>,
}

/// An email that cannot be written as a message: no attempt will change that.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// An address is not one this client can send to.
    #[error("address {address:?}: {reason}")]
    Address {
        /// The address given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The Message-ID is not `left@right` of dot-atoms.
    #[error("message id {0:?}: must be `left@right` of letters, digits and !#$%&'*+-/=?^_`{{|}}~ between dots")]
    MessageId(String),
    /// The unsubscribe URL is not a plain HTTPS URL.
    #[error("List-Unsubscribe {0:?}: must be an https:// URL without spaces or `>`")]
    Unsubscribe(String),
    /// An extra header is malformed or sets a header the message sets itself.
    #[error("header {name:?}: {reason}")]
    Header {
        /// The header's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// A relay's configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SmtpConfigError {
    /// The extra roots or the TLS settings.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A field is missing or malformed.
    #[error("SMTP configuration: {0}")]
    Invalid(String),
}

/// The SMTP channel for one relay.
#[derive(Clone)]
pub struct Smtp {
    config: Arc<SmtpConfig>,
    tls: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for Smtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Smtp").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Smtp {
    /// The channel for `config`, its TLS settings made once.
    pub fn new(config: SmtpConfig) -> Result<Smtp, SmtpConfigError> {
        if config.host.trim().is_empty() {
            return Err(SmtpConfigError::Invalid("host is empty".into()));
        }
        if config.helo.is_empty() || !config.helo.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SmtpConfigError::Invalid(format!("helo {:?} must be a host name", config.helo)));
        }
        if config.password.is_some() && config.username.is_none() {
            return Err(SmtpConfigError::Invalid("a password without a username".into()));
        }
        if config.username.is_some() && config.security == Security::None {
            return Err(SmtpConfigError::Invalid(
                "AUTH without TLS would send the password in clear text: use StartTls or Tls".into(),
            ));
        }
        if config.timeout.is_zero() {
            return Err(SmtpConfigError::Invalid("timeout is zero".into()));
        }
        let tls = crate::tls::client_config(config.extra_root_pem.as_deref())?;
        Ok(Smtp { config: Arc::new(config), tls: Arc::new(tls) })
    }

    /// Everything up to and including writing the final `.` of DATA. Errors before that are
    /// an `Outcome`: `Rejected` for a message that cannot be written and for a 5xx answer
    /// to MAIL, RCPT or DATA; `Retry` for a 4xx, a connection error, a timeout, and a relay
    /// that refuses us (greeting, EHLO, STARTTLS, AUTH: its configuration, not the message,
    /// is at fault, and may be fixed before the retries run out).
    pub async fn hand_over(&self, email: &Email) -> Result<Handed, Outcome> {
        let data = message::build(email, Utc::now()).map_err(|e| Outcome::rejected(e.to_string()))?;
        let data = message::dot_stuff(&data);
        let mut session = Session::open(&self.config, &self.tls).await.map_err(SmtpError::into_outcome)?;
        match session.send_envelope_and_data(&email.from.address, &email.to.address, &data).await {
            Ok(()) => Ok(Handed { session }),
            Err(e) => {
                session.quit().await;
                Err(e.into_outcome())
            }
        }
    }
}

/// A message whose final `.` was written: the server has it, or will have it, unless it
/// answers otherwise. The delivery loop records this state before calling [`Handed::confirm`].
#[derive(Debug)]
pub struct Handed {
    session: Session,
}

impl Handed {
    /// Reads the reply to the `.` and QUITs: 250 is delivered, 4xx retry, 5xx rejected; no
    /// reply (a lost connection, a timeout) is `Retry`, though the message may have arrived.
    pub async fn confirm(mut self) -> Outcome {
        let outcome = match self.session.read_reply().await {
            Ok(reply) if reply.code == 250 => Outcome::Delivered { status: Some(250), detail: reply.text() },
            Ok(reply) => reply.into_outcome(true),
            Err(e) => return e.into_outcome(),
        };
        self.session.quit().await;
        outcome
    }
}
