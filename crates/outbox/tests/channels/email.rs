//! Email: a real SMTP server (aiosmtpd, crates/testkit/scripts/smtp_server.py) records what it
//! receives; the tests read it back through Python's own MIME parser.

use std::path::{Path, PathBuf};
use std::time::Duration;

use outbox::Outcome;
use outbox::email::{Email, Mailbox, Security, Smtp, SmtpConfig, message_id};

use crate::python::{self, Receiver};

struct Relay {
    _receiver: Receiver,
    _dir: tempfile::TempDir,
    port: u16,
    record: PathBuf,
    ca_pem: Option<String>,
}

impl Relay {
    fn records(&self) -> Vec<serde_json::Value> {
        python::records(&self.record)
    }

    fn config(&self, security: Security, auth: Option<(&str, &str)>) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            security,
            username: auth.map(|(u, _)| u.to_string()),
            password: auth.map(|(_, p)| p.to_string()),
            helo: "steward.test".into(),
            timeout: Duration::from_secs(10),
            extra_root_pem: self.ca_pem.clone(),
        }
    }
}

async fn relay(python: &Path, security: &str, args: &[&str]) -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("received.jsonl");
    let ca = dir.path().join("ca.pem");
    let mut all = vec!["--record".to_string(), record.display().to_string(), "--security".into(), security.into()];
    all.extend(["--ca-out".to_string(), ca.display().to_string()]);
    all.extend(args.iter().map(|a| a.to_string()));
    let receiver = python::start(python, &python::script("smtp_server.py"), &all).await;
    let ca_pem = std::fs::read_to_string(&ca).ok();
    Relay { port: receiver.port, _receiver: receiver, _dir: dir, record, ca_pem }
}

fn email(to: &str) -> Email {
    Email {
        message_id: message_id("run_7f3a:welcome:1", "steward.test"),
        from: Mailbox::new(Some("Steward at Acme"), "success@acme.test").unwrap(),
        to: Mailbox::new(Some("Zoë Ångström"), to).unwrap(),
        subject: "Bienvenue, Zoë — your first report ✓".into(),
        html: Some("<p>Hello <b>Zoë</b>,</p>\n<p>.starts with a dot</p>\n".into()),
        text: "Hello Zoë,\n.hidden line starting with a dot\n.\n..two dots\nA line long enough to need a soft break in quoted-printable, which allows 76 characters.\nBye\n".into(),
        list_unsubscribe: Some("https://steward.test/u/ws_1/zoe%40example.test/tok".into()),
        headers: vec![("X-Steward-Run".into(), "run_7f3a".into())],
    }
}

/// A relay on this machine's `port`, plain SMTP, no AUTH.
fn plain_local(port: u16, timeout: Duration) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        username: None,
        password: None,
        helo: "steward.test".into(),
        timeout,
        extra_root_pem: None,
    }
}

fn needs_python(test: &str) -> Option<PathBuf> {
    python::python(&["aiosmtpd", "trustme"], test)
}

async fn send(smtp: &Smtp, email: &Email) -> Outcome {
    match smtp.hand_over(email).await {
        Ok(handed) => handed.confirm().await,
        Err(outcome) => outcome,
    }
}

#[tokio::test]
async fn sends_a_whole_message_over_starttls_with_auth_plain() {
    let Some(python) = needs_python("sends_a_whole_message_over_starttls_with_auth_plain") else { return };
    let relay = relay(&python, "starttls", &["--auth", "steward:s3cret pass"]).await;
    let smtp = Smtp::new(relay.config(Security::StartTls, Some(("steward", "s3cret pass")))).unwrap();
    let sent = email("zoe@example.test");

    let handed = smtp.hand_over(&sent).await.expect("handed over");
    let outcome = handed.confirm().await;
    assert_eq!(outcome, Outcome::Delivered { status: Some(250), detail: "OK queued as test-1".into() });

    let records = relay.records();
    assert_eq!(records.len(), 1);
    let got = &records[0];
    assert_eq!(got["mail_from"], "success@acme.test");
    assert_eq!(got["rcpt_tos"], serde_json::json!(["zoe@example.test"]));
    assert_eq!(got["helo"], "steward.test");
    assert_eq!(got["tls"], true);
    assert_eq!(got["auth_login"], "steward");
    assert_eq!(got["auth_mechanism"], "PLAIN");
    assert_eq!(got["defects"], serde_json::json!([]), "the parser found the message malformed");
    let headers = &got["headers"];
    assert_eq!(headers["subject"], "Bienvenue, Zoë — your first report ✓");
    assert_eq!(headers["from"], "Steward at Acme <success@acme.test>");
    assert_eq!(headers["to"], "Zoë Ångström <zoe@example.test>");
    assert_eq!(headers["message-id"], "<run_7f3a=3Awelcome=3A1@steward.test>");
    assert_eq!(headers["list-unsubscribe"], "<https://steward.test/u/ws_1/zoe%40example.test/tok>");
    assert_eq!(headers["list-unsubscribe-post"], "List-Unsubscribe=One-Click");
    assert_eq!(headers["x-steward-run"], "run_7f3a");
    assert_eq!(headers["mime-version"], "1.0");
    let date = chrono::DateTime::parse_from_rfc2822(headers["date"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now() - date.to_utc()).num_seconds().abs() < 60, "{date}");
    assert_eq!(got["content_type"], "multipart/alternative");
    // Both bodies arrive exactly, lines starting with dots included: had the dots not been
    // stuffed, the line "." would have ended the message early.
    // MIME text is CRLF on the wire, and Python's parser keeps it so.
    assert_eq!(got["text"], sent.text.replace('\n', "\r\n"));
    assert_eq!(got["html"], sent.html.as_deref().unwrap().replace('\n', "\r\n"));
    let raw = got["raw"].as_str().unwrap();
    assert!(raw.contains("\r\n.hidden line starting with a dot\r\n.\r\n..two dots\r\n"), "{raw}");
    assert!(raw.lines().all(|l| l.len() <= 78), "a line is too long:\n{raw}");
}

#[tokio::test]
async fn sends_over_implicit_tls_with_auth_login() {
    let Some(python) = needs_python("sends_over_implicit_tls_with_auth_login") else { return };
    let relay = relay(&python, "tls", &["--auth", "mailer:pw", "--mechanisms", "LOGIN"]).await;
    let smtp = Smtp::new(relay.config(Security::Tls, Some(("mailer", "pw")))).unwrap();
    let sent = Email {
        html: None,
        list_unsubscribe: None,
        headers: vec![],
        subject: "Plain".into(),
        ..email("ada@example.test")
    };
    assert_eq!(send(&smtp, &sent).await.kind(), "delivered");
    let records = relay.records();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (&records[0]["tls"], &records[0]["auth_mechanism"], &records[0]["auth_login"]),
        (&true.into(), &"LOGIN".into(), &"mailer".into())
    );
    assert_eq!(records[0]["content_type"], "text/plain");
    assert_eq!(records[0]["text"], sent.text.replace('\n', "\r\n"));
    assert_eq!(records[0]["headers"]["subject"], "Plain");
    assert!(records[0]["headers"].get("list-unsubscribe").is_none());

    // The same relay, not trusted: nothing is sent and the attempt is retried.
    let untrusting =
        Smtp::new(SmtpConfig { extra_root_pem: None, ..relay.config(Security::Tls, Some(("mailer", "pw"))) }).unwrap();
    match send(&untrusting, &sent).await {
        Outcome::Retry { status: None, reason, .. } => assert!(reason.contains("TLS handshake"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // A wrong password is the relay's configuration: retried, with the server's answer.
    let wrong = Smtp::new(relay.config(Security::Tls, Some(("mailer", "nope")))).unwrap();
    match send(&wrong, &sent).await {
        Outcome::Retry { status: Some(535), reason, .. } => assert!(reason.starts_with("AUTH: SMTP 535"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(relay.records().len(), 1);
}

#[tokio::test]
async fn reads_refusals_as_retry_or_rejected() {
    let Some(python) = needs_python("reads_refusals_as_retry_or_rejected") else { return };
    let relay = relay(
        &python,
        "none",
        &[
            "--refuse-rcpt",
            "full@example.test=452 4.2.2 Mailbox full",
            "--refuse-rcpt",
            "nobody@example.test=550 5.1.1 No such user",
            "--refuse-data",
            "spam@example.test=554 5.7.1 Looks like spam",
            "--refuse-data",
            "busy@example.test=451 4.3.0 Try again later",
            "--stall-data",
            "slow@example.test",
        ],
    )
    .await;
    let smtp = Smtp::new(SmtpConfig { timeout: Duration::from_secs(2), ..relay.config(Security::None, None) }).unwrap();

    match smtp.hand_over(&email("full@example.test")).await {
        Err(Outcome::Retry { status: Some(452), reason, .. }) => {
            assert_eq!(reason, "RCPT TO: SMTP 452 4.2.2 Mailbox full")
        }
        other => panic!("{other:?}"),
    }
    match smtp.hand_over(&email("nobody@example.test")).await {
        Err(Outcome::Rejected { status: Some(550), reason }) => {
            assert_eq!(reason, "RCPT TO: SMTP 550 5.1.1 No such user")
        }
        other => panic!("{other:?}"),
    }
    // Refused after the final dot: the hand-over succeeded, the confirmation says no.
    let handed = smtp.hand_over(&email("spam@example.test")).await.expect("handed over");
    assert_eq!(
        handed.confirm().await,
        Outcome::Rejected { status: Some(554), reason: "SMTP 554 5.7.1 Looks like spam".into() }
    );
    let handed = smtp.hand_over(&email("busy@example.test")).await.expect("handed over");
    assert_eq!(
        handed.confirm().await,
        Outcome::Retry { status: Some(451), retry_after: None, reason: "SMTP 451 4.3.0 Try again later".into() }
    );
    assert!(relay.records().is_empty());

    // The server has the message but never answers the final dot: the window RFC 1047
    // describes. The hand-over succeeded; the confirmation times out and says retry.
    let handed = smtp.hand_over(&email("slow@example.test")).await.expect("handed over");
    match handed.confirm().await {
        Outcome::Retry { status: None, reason, .. } => assert!(reason.contains("no progress within 2s"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(relay.records().len(), 1, "the stalled message did arrive");

    assert_eq!(send(&smtp, &email("ok@example.test")).await.kind(), "delivered");
    let records: Vec<_> = relay.records().into_iter().skip(1).collect();
    assert_eq!(records.len(), 1);
    assert_eq!((&records[0]["tls"], &records[0]["auth_login"]), (&false.into(), &serde_json::Value::Null));
    assert_eq!(records[0]["rcpt_tos"], serde_json::json!(["ok@example.test"]));

    // STARTTLS required but not offered: never sent in clear text.
    let strict = Smtp::new(relay.config(Security::StartTls, None)).unwrap();
    match send(&strict, &email("ok@example.test")).await {
        Outcome::Retry { status: None, reason, .. } => assert!(reason.contains("does not offer STARTTLS"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(relay.records().len(), 2);
}

#[tokio::test]
async fn a_server_that_never_greets_is_retried_after_the_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts connections and says nothing.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let smtp = Smtp::new(plain_local(port, Duration::from_millis(300))).unwrap();
    let started = std::time::Instant::now();
    match smtp.hand_over(&email("zoe@example.test")).await {
        Err(Outcome::Retry { status: None, reason, .. }) => assert_eq!(reason, "read reply: no progress within 300ms"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    silent.abort();
}

#[tokio::test]
async fn refuses_what_cannot_be_sent_before_connecting() {
    // Nothing listens there: a message refused before connecting never notices.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = plain_local(port, Duration::from_secs(5));
    let smtp = Smtp::new(config.clone()).unwrap();
    let mut bad = email("zoe@example.test");
    bad.headers.push(("Bcc".into(), "eve@example.test".into()));
    assert_eq!(
        smtp.hand_over(&bad).await.unwrap_err(),
        Outcome::Rejected { status: None, reason: "header \"Bcc\": set by the message itself".into() }
    );
    let bad = Email { list_unsubscribe: Some("http://insecure.test/u".into()), ..email("zoe@example.test") };
    assert_eq!(smtp.hand_over(&bad).await.unwrap_err().kind(), "rejected");
    // A good message to a relay that is not there: retried.
    match smtp.hand_over(&email("zoe@example.test")).await {
        Err(Outcome::Retry { status: None, reason, .. }) => {
            assert!(reason.starts_with("connect to 127.0.0.1"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(Mailbox::new(None, "not an address").is_err());
    assert!(Smtp::new(SmtpConfig { helo: String::new(), ..config.clone() }).is_err());
    let clear = SmtpConfig { username: Some("u".into()), password: Some("p".into()), ..config.clone() };
    assert!(Smtp::new(clear).unwrap_err().to_string().contains("clear text"));
    assert!(Smtp::new(SmtpConfig { extra_root_pem: Some("junk".into()), ..config.clone() }).is_err());
    assert!(
        !format!("{:?}", SmtpConfig { password: Some("hunter2".into()), username: Some("u".into()), ..config })
            .contains("hunter2")
    );
}
