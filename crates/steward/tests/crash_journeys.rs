//! Effects happen once: with a thousand journey runs starting and their emails due, the server
//! is killed with SIGKILL at random moments and restarted; afterwards every run exists once,
//! in the state its journey says, and every due email reached a real SMTP server (aiosmtpd)
//! once. Attempts a kill interrupts before the relay took the message are sent again; an email
//! the relay took is in the hand-over journal before the process can be killed (no await
//! between the data's end and its line), and is not sent again. The one window left, the
//! microseconds between the data's final `.` leaving and that line, would show as a second
//! copy; the test allows one only of an email whose attempt the store recorded as
//! interrupted, and prints how the kills landed.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{Http, Server, create_workspace};
use serde_json::{Value, json};

const ACCOUNTS: usize = 1_000;
const KILLS: usize = 5;

/// A small deterministic generator for the kill moments (the seed is printed).
struct Moments(u64);

impl Moments {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo)
    }
}

async fn server(dir: &std::path::Path, smtp_port: u16) -> Server {
    let env = [
        ("STEWARD_EMAIL__HOST", "127.0.0.1".to_string()),
        ("STEWARD_EMAIL__PORT", smtp_port.to_string()),
        ("STEWARD_EMAIL__SECURITY", "none".to_string()),
        ("STEWARD_EMAIL__TIMEOUT_MS", "5000".to_string()),
        ("STEWARD_OUTBOX__TICK_MS", "20".to_string()),
        ("STEWARD_OUTBOX__LEASE_SECONDS", "2".to_string()),
        ("STEWARD_OUTBOX__EMAIL_PER_SECOND", "2000".to_string()),
        ("STEWARD_JOURNEYS__TICK_MS", "50".to_string()),
        ("STEWARD_SCORING__ENABLED", "false".to_string()),
    ];
    Server::start_with(dir, &env).await
}

async fn paged(http: &Http, url: &str, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if url.contains('?') { '&' } else { '?' };
        let page = match &cursor {
            Some(c) => format!("{url}{sep}limit=1000&after={c}"),
            None => format!("{url}{sep}limit=1000"),
        };
        let (status, body) = http.get(&page, Some(key)).await.expect("the server answers");
        assert_eq!(status, 200, "{page}: {body}");
        out.extend(body["data"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// Starts a run for every account not started yet, until the server goes away or all are.
async fn start_runs(http: Http, base: String, key: String, journey: String, todo: Vec<String>) -> Vec<String> {
    let mut started = Vec::new();
    for account in todo {
        let url = format!("{base}/api/v1/journeys/{journey}/runs");
        match http.send("POST", &url, &key, json!({"subject_id": account})).await {
            // 409: the run exists (started before a crash whose answer was lost).
            Some((201 | 409, _)) => started.push(account),
            Some((status, body)) => panic!("starting a run for {account}: {status} {body}"),
            None => return started,
        }
    }
    started
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_due_email_arrives_once_across_sigkills() {
    let Some(python) = testkit::python(&["aiosmtpd", "trustme"], "every_due_email_arrives_once_across_sigkills") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let record = tmp.path().join("received.jsonl");
    let args = vec!["--record".to_string(), record.display().to_string(), "--security".into(), "none".into()];
    let smtp = testkit::start(&python, &testkit::script("smtp_server.py"), &args).await;
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let ws = create_workspace(&dir, "crash journeys");
    let http = Http::new();
    let mut srv = server(&dir, smtp.port).await;
    let base = srv.base.clone();

    // A thousand accounts, each with its owner.
    let accounts: Vec<String> = (0..ACCOUNTS).map(|i| format!("acct_{i:04}")).collect();
    for chunk in accounts.chunks(250) {
        let mut batch = Vec::new();
        for a in chunk {
            batch.push(json!({"type": "identify", "messageId": format!("i-{a}"), "userId": format!("owner-{a}"),
                "traits": {"email": format!("owner@{}.example", a.replace('_', "-")), "role": "owner"}}));
            batch.push(json!({"type": "group", "messageId": format!("g-{a}"), "userId": format!("owner-{a}"),
                "groupId": a, "traits": {"name": format!("Account {a}")}}));
        }
        let (status, body) =
            http.post(&format!("{base}/v1/batch"), &ws.write_key, json!({"batch": batch}).to_string()).await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while paged(&http, &format!("{base}/api/v1/accounts"), &ws.admin_key).await.len() < ACCOUNTS {
        assert!(Instant::now() < deadline, "the accounts were not processed in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let put = |url: String, body: Value| {
        let (http, key) = (http.clone(), ws.admin_key.clone());
        async move { http.send("PUT", &url, &key, body).await.unwrap() }
    };
    let (status, body) = put(
        format!("{base}/api/v1/templates/welcome"),
        json!({"subject": "Welcome, {{ account.name }}", "text": "Hello from {{ journey.name }}."}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = put(
        format!("{base}/api/v1/settings/messaging"),
        json!({"email_from": {"name": "CS", "address": "cs@steward.example"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let journey = json!({
        "name": "Welcome", "enabled": true, "trigger": "manual", "reentry": "never",
        "steps": [
            {"id": "welcome", "email": {"template": "welcome", "to": "account_owner"}},
            {"id": "pause", "wait": "1d"},
            {"id": "followup", "email": {"template": "welcome", "to": "account_owner"}}
        ]
    });
    let (status, body) = http.send("POST", &format!("{base}/api/v1/journeys"), &ws.admin_key, journey).await.unwrap();
    assert_eq!(status, 201, "{body}");
    let journey_id = body["journey"]["journey_id"].as_str().unwrap().to_owned();

    // Runs start (four clients) and their emails go out while the server is killed.
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("kill moments seed: {seed}");
    let mut moments = Moments(seed);
    let mut started: HashSet<String> = HashSet::new();
    for kill in 0..=KILLS {
        let todo: Vec<String> = accounts.iter().filter(|a| !started.contains(*a)).cloned().collect();
        let clients: Vec<_> = todo
            .chunks(todo.len().div_ceil(4).max(1))
            .map(|part| {
                tokio::spawn(start_runs(
                    http.clone(),
                    srv.base.clone(),
                    ws.admin_key.clone(),
                    journey_id.clone(),
                    part.to_vec(),
                ))
            })
            .collect();
        if kill == KILLS {
            for c in clients {
                started.extend(c.await.unwrap());
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(moments.next_ms(150, 900))).await;
        srv.kill9();
        for c in clients {
            started.extend(c.await.unwrap());
        }
        srv = server(&dir, smtp.port).await;
    }
    assert_eq!(started.len(), ACCOUNTS);
    let base = srv.base.clone();

    // Every run once, where the journey says it is: welcomed, waiting a day for the follow-up.
    let runs = paged(&http, &format!("{base}/api/v1/journeys/{journey_id}/runs"), &ws.admin_key).await;
    let mut per_account: HashMap<String, usize> = HashMap::new();
    for r in &runs {
        *per_account.entry(r["subject_id"].as_str().unwrap().to_owned()).or_default() += 1;
        assert_eq!(
            (r["status"].as_str(), r["step"].as_str(), r["seq"].as_i64()),
            (Some("active"), Some("followup"), Some(2)),
            "{r}"
        );
    }
    assert_eq!(per_account.len(), ACCOUNTS);
    assert!(per_account.values().all(|n| *n == 1), "a subject has more than one run");

    // Every welcome is delivered (or handed over) once the deliveries settle.
    let deadline = Instant::now() + Duration::from_secs(90);
    let deliveries = loop {
        let d = paged(&http, &format!("{base}/api/v1/deliveries?journey_id={journey_id}"), &ws.admin_key).await;
        let open = d.iter().filter(|m| matches!(m["status"].as_str(), Some("pending" | "sending"))).count();
        if open == 0 && d.len() == ACCOUNTS {
            break d;
        }
        assert!(Instant::now() < deadline, "{open} of {} deliveries still open", d.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut expected: HashMap<String, String> = HashMap::new();
    for m in &deliveries {
        assert!(matches!(m["status"].as_str(), Some("delivered" | "handed")), "{m}");
        let key = m["message_id"].as_str().unwrap();
        expected.insert(format!("<{}>", outbox::email::message_id(key, "steward.example")), key.to_owned());
    }
    // What the SMTP server received, by Message-ID.
    let mut received: HashMap<String, usize> = HashMap::new();
    for r in testkit::records(&record) {
        *received.entry(r["headers"]["message-id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    let missing: Vec<&String> = expected.keys().filter(|id| !received.contains_key(*id)).take(5).collect();
    assert!(missing.is_empty(), "due but never received: {missing:?}");
    let strangers: Vec<&String> = received.keys().filter(|id| !expected.contains_key(*id)).take(5).collect();
    assert!(strangers.is_empty(), "received but never decided: {strangers:?}");
    // How the kills landed: attempts the store found interrupted (taken again after their
    // lease), and emails the hand-over journal marked after a restart.
    let (mut interrupted, mut recovered) = (0, 0);
    for m in &deliveries {
        let key = m["message_id"].as_str().unwrap();
        let (_, body) = http.get(&format!("{base}/api/v1/deliveries/{key}"), Some(&ws.admin_key)).await.unwrap();
        for a in body["attempts"].as_array().unwrap() {
            interrupted += usize::from(a["outcome"] == "interrupted");
            recovered += usize::from(a["outcome"] == "unconfirmed");
        }
    }
    let mut doubled = 0;
    for (id, n) in &received {
        if *n > 1 {
            doubled += 1;
            let key = &expected[id];
            let (status, body) =
                http.get(&format!("{base}/api/v1/deliveries/{key}"), Some(&ws.admin_key)).await.unwrap();
            assert_eq!(status, 200);
            let interrupted =
                body["attempts"].as_array().unwrap().iter().filter(|a| a["outcome"] == "interrupted").count();
            assert!(*n <= 1 + interrupted, "{id} arrived {n} times with {interrupted} interrupted attempts: {body}");
        }
    }
    eprintln!(
        "{} emails due, {} received, {doubled} received twice; {KILLS} kills interrupted {interrupted} attempts \
         (sent again) and left {recovered} hand-overs for the journal (not sent again)",
        expected.len(),
        received.values().sum::<usize>()
    );
}
