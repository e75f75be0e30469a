//! One SMTP conversation over TCP or TLS: replies read with their codes, every step under
//! the timeout, and what each failure means for the delivery.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{Security, SmtpConfig};
use crate::Outcome;
use crate::outcome::shorten;

/// A reply line longer than this is not SMTP (RFC 5321 allows 512 octets).
const MAX_LINE: u64 = 4096;
/// Nor is a reply of more lines than this.
const MAX_LINES: usize = 100;

/// The connection, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Where in the conversation a reply came: what a refusal there means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::StartTls => "STARTTLS",
            Stage::Auth => "AUTH",
            Stage::MailFrom => "MAIL FROM",
            Stage::RcptTo => "RCPT TO",
            Stage::Data => "DATA",
        }
    }

    /// A 5xx here is about the message (sender, recipient, content): final. Elsewhere it is
    /// about us and the relay, which an operator can fix.
    fn is_about_the_message(self) -> bool {
        matches!(self, Stage::MailFrom | Stage::RcptTo | Stage::Data)
    }
}

/// A server's reply: its code and its lines' text.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub code: u16,
    lines: Vec<String>,
}

impl Reply {
    /// The reply's text, lines joined.
    pub fn text(&self) -> String {
        shorten(&self.lines.join(" "), crate::http::MAX_DETAIL)
    }

    /// A refusal as an outcome: 5xx final if `about_the_message`, otherwise retried.
    pub fn into_outcome(self, about_the_message: bool) -> Outcome {
        let reason = format!("SMTP {} {}", self.code, self.text());
        if self.code >= 500 && about_the_message {
            Outcome::Rejected { status: Some(self.code), reason }
        } else {
            Outcome::Retry { status: Some(self.code), retry_after: None, reason }
        }
    }
}

/// What ended a conversation early.
#[derive(Debug)]
pub(super) enum SmtpError {
    /// The network, TLS, a timeout or a server not speaking SMTP: try again later.
    Connection(String),
    /// The server refused a step.
    Refused(Stage, Reply),
}

impl SmtpError {
    pub fn into_outcome(self) -> Outcome {
        match self {
            SmtpError::Connection(reason) => Outcome::retry(reason),
            SmtpError::Refused(stage, reply) => {
                let about_the_message = stage.is_about_the_message();
                match reply.into_outcome(about_the_message) {
                    Outcome::Rejected { status, reason } => {
                        Outcome::Rejected { status, reason: format!("{}: {reason}", stage.name()) }
                    }
                    Outcome::Retry { status, retry_after, reason } => {
                        Outcome::Retry { status, retry_after, reason: format!("{}: {reason}", stage.name()) }
                    }
                    other => other,
                }
            }
        }
    }
}

fn connection(what: &str, e: impl std::fmt::Display) -> SmtpError {
    SmtpError::Connection(shorten(&format!("{what}: {e}"), crate::http::MAX_DETAIL))
}

/// An open SMTP conversation.
pub(super) struct Session {
    io: BufReader<Stream>,
    timeout: Duration,
    /// EHLO keywords (upper case) with their parameters.
    extensions: Vec<(String, String)>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tls = matches!(self.io.get_ref(), Stream::Tls(_));
        f.debug_struct("Session").field("tls", &tls).field("extensions", &self.extensions).finish()
    }
}

async fn within<T>(limit: Duration, what: &str, step: impl Future<Output = io::Result<T>>) -> Result<T, SmtpError> {
    match tokio::time::timeout(limit, step).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(connection(what, e)),
        Err(_) => Err(SmtpError::Connection(format!("{what}: no progress within {limit:?}"))),
    }
}

async fn handshake(
    tls: &Arc<rustls::ClientConfig>,
    host: &str,
    tcp: TcpStream,
    limit: Duration,
) -> Result<Stream, SmtpError> {
    let name = ServerName::try_from(host.to_string()).map_err(|e| connection("TLS server name", e))?;
    let stream = within(limit, "TLS handshake", TlsConnector::from(tls.clone()).connect(name, tcp)).await?;
    Ok(Stream::Tls(Box::new(stream)))
}

impl Session {
    /// Connects, reads the greeting, says EHLO, secures the connection and authenticates as
    /// configured.
    pub async fn open(config: &SmtpConfig, tls: &Arc<rustls::ClientConfig>) -> Result<Session, SmtpError> {
        let limit = config.timeout;
        let address = format!("{}:{}", config.host, config.port);
        let tcp =
            within(limit, &format!("connect to {address}"), TcpStream::connect((config.host.as_str(), config.port)))
                .await?;
        let _ = tcp.set_nodelay(true);
        let stream = match config.security {
            Security::Tls => handshake(tls, &config.host, tcp, limit).await?,
            Security::None | Security::StartTls => Stream::Plain(tcp),
        };
        let mut session = Session { io: BufReader::new(stream), timeout: limit, extensions: Vec::new() };
        session.expect(Stage::Greeting, &[220]).await?;
        session.ehlo(&config.helo).await?;
        if config.security == Security::StartTls {
            if !session.offers("STARTTLS") {
                return Err(SmtpError::Connection(format!(
                    "{address} does not offer STARTTLS; not sending in clear text"
                )));
            }
            session.command("STARTTLS").await?;
            session.expect(Stage::StartTls, &[220]).await?;
            // Anything already buffered was sent before TLS and could be an injected reply.
            if !session.io.buffer().is_empty() {
                return Err(SmtpError::Connection("STARTTLS: the server sent data before the handshake".into()));
            }
            let Stream::Plain(tcp) = session.io.into_inner() else {
                return Err(SmtpError::Connection("STARTTLS on a connection already secured".into()));
            };
            session.io = BufReader::new(handshake(tls, &config.host, tcp, limit).await?);
            // RFC 3207: forget what was said in clear text, ask again.
            session.ehlo(&config.helo).await?;
        }
        if let Some(user) = &config.username {
            session.authenticate(user, config.password.as_deref().unwrap_or("")).await?;
        }
        Ok(session)
    }

    fn offers(&self, keyword: &str) -> bool {
        self.extensions.iter().any(|(k, _)| k == keyword)
    }

    async fn ehlo(&mut self, helo: &str) -> Result<(), SmtpError> {
        self.command(&format!("EHLO {helo}")).await?;
        let reply = self.read_reply().await?;
        if reply.code == 250 {
            self.extensions = reply
                .lines
                .iter()
                .skip(1)
                .map(|line| {
                    let (keyword, params) = line.split_once(' ').unwrap_or((line, ""));
                    (keyword.to_ascii_uppercase(), params.to_string())
                })
                .collect();
            return Ok(());
        }
        if reply.code >= 500 {
            // An old server without ESMTP: HELO, and no extensions.
            self.command(&format!("HELO {helo}")).await?;
            self.expect(Stage::Ehlo, &[250]).await?;
            self.extensions.clear();
            return Ok(());
        }
        Err(SmtpError::Refused(Stage::Ehlo, reply))
    }

    async fn authenticate(&mut self, user: &str, password: &str) -> Result<(), SmtpError> {
        let mechanisms: Vec<String> = self
            .extensions
            .iter()
            .filter(|(k, _)| k == "AUTH")
            .flat_map(|(_, params)| params.split_whitespace().map(str::to_ascii_uppercase))
            .collect();
        if mechanisms.iter().any(|m| m == "PLAIN") {
            let token = STANDARD.encode(format!("\0{user}\0{password}"));
            self.command(&format!("AUTH PLAIN {token}")).await?;
        } else if mechanisms.iter().any(|m| m == "LOGIN") {
            self.command("AUTH LOGIN").await?;
            self.expect(Stage::Auth, &[334]).await?;
            self.command(&STANDARD.encode(user)).await?;
            self.expect(Stage::Auth, &[334]).await?;
            self.command(&STANDARD.encode(password)).await?;
        } else {
            return Err(SmtpError::Connection(format!(
                "AUTH: the server offers {mechanisms:?}, neither PLAIN nor LOGIN (over TLS, servers often offer AUTH only after STARTTLS)"
            )));
        }
        self.expect(Stage::Auth, &[235]).await.map(|_| ())
    }

    /// MAIL FROM, RCPT TO, DATA, and the dot-stuffed message up to its final `.`.
    pub async fn send_envelope_and_data(&mut self, from: &str, to: &str, data: &[u8]) -> Result<(), SmtpError> {
        self.command(&format!("MAIL FROM:<{from}>")).await?;
        self.expect(Stage::MailFrom, &[250]).await?;
        self.command(&format!("RCPT TO:<{to}>")).await?;
        self.expect(Stage::RcptTo, &[250, 251]).await?;
        self.command("DATA").await?;
        self.expect(Stage::Data, &[354]).await?;
        self.write(data).await
    }

    async fn command(&mut self, line: &str) -> Result<(), SmtpError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write(&bytes).await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SmtpError> {
        let stream = self.io.get_mut();
        within(self.timeout, "write", async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await
    }

    async fn expect(&mut self, stage: Stage, codes: &[u16]) -> Result<Reply, SmtpError> {
        let reply = self.read_reply().await?;
        if codes.contains(&reply.code) { Ok(reply) } else { Err(SmtpError::Refused(stage, reply)) }
    }

    /// Reads one reply, all its lines (`250-...` continues, `250 ...` ends it).
    pub async fn read_reply(&mut self) -> Result<Reply, SmtpError> {
        let mut lines = Vec::new();
        loop {
            let mut raw = Vec::new();
            let io = &mut self.io;
            let n = within(self.timeout, "read reply", async {
                (&mut *io).take(MAX_LINE).read_until(b'\n', &mut raw).await
            })
            .await?;
            if n == 0 {
                return Err(SmtpError::Connection("the server closed the connection".into()));
            }
            if !raw.ends_with(b"\n") {
                return Err(SmtpError::Connection("reply line too long".into()));
            }
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\r', '\n']);
            let code = line.get(..3).and_then(|c| c.parse::<u16>().ok()).filter(|c| (200..600).contains(c));
            let Some(code) = code else {
                return Err(SmtpError::Connection(format!("not an SMTP reply: {}", shorten(line, 100))));
            };
            let separator = line.as_bytes().get(3).copied();
            lines.push(line.get(4..).unwrap_or("").to_string());
            match separator {
                Some(b'-') if lines.len() < MAX_LINES => continue,
                Some(b'-') => return Err(SmtpError::Connection("reply with too many lines".into())),
                Some(b' ') | None => return Ok(Reply { code, lines }),
                Some(_) => return Err(SmtpError::Connection(format!("not an SMTP reply: {}", shorten(line, 100)))),
            }
        }
    }

    /// Says goodbye; what the server answers no longer matters.
    pub async fn quit(&mut self) {
        let limit = self.timeout;
        let quit = async {
            self.command("QUIT").await?;
            self.read_reply().await?;
            let _ = self.io.get_mut().shutdown().await;
            Ok::<_, SmtpError>(())
        };
        let _ = tokio::time::timeout(limit, quit).await;
    }
}
