//! Nothing acknowledged is lost: the server is killed with SIGKILL in the middle of a
//! concurrent ingest, restarted, and every acknowledged messageId is there exactly once.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use common::{Http, Server, create_workspace};
use serde_json::json;

const CLIENTS: usize = 6;
const BATCH: usize = 40;

/// Sends batches until the server goes away; returns the ids of acknowledged batches' messages.
async fn ingest_until_killed(
    http: Http,
    base: String,
    key: String,
    client: usize,
    round: usize,
    acked: Arc<Mutex<HashSet<String>>>,
) -> Vec<Vec<String>> {
    let mut unacked = Vec::new();
    for seq in 0.. {
        let ids: Vec<String> = (0..BATCH).map(|i| format!("crash-r{round}-c{client}-b{seq}-m{i}")).collect();
        let batch: Vec<_> = ids.iter().enumerate().map(|(i, id)| json!({"type": "track", "messageId": id, "userId": format!("u{}", i % 7), "event": "Clicked"})).collect();
        match http.post(&format!("{base}/v1/batch"), &key, json!({"batch": batch}).to_string()).await {
            Some((200, _)) => acked.lock().unwrap().extend(ids),
            Some((status, body)) => panic!("unexpected answer {status}: {body}"),
            None => {
                unacked.push(ids);
                return unacked;
            }
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_events_survive_sigkill_and_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "crash");
    let http = Http::new();
    let acked = Arc::new(Mutex::new(HashSet::new()));

    for round in 0..3 {
        let mut server = Server::start(dir.path()).await;
        let before = acked.lock().unwrap().len();
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| {
                tokio::spawn(ingest_until_killed(
                    http.clone(),
                    server.base.clone(),
                    ws.write_key.clone(),
                    c,
                    round,
                    acked.clone(),
                ))
            })
            .collect();
        // Kill once a fair amount was acknowledged in this round: mid-ingest, whatever the speed.
        while acked.lock().unwrap().len() < before + 3_000 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        server.kill9();
        for t in tasks {
            t.await.unwrap();
        }
    }

    let server = Server::start(dir.path()).await;
    let stored = http.all_events(&server.base, &ws.admin_key).await;
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 9_000);
    let missing: Vec<_> = acked.iter().filter(|id| !stored.contains_key(*id)).take(5).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let doubled: Vec<_> = stored.iter().filter(|(_, (n, _))| *n != 1).take(5).collect();
    assert!(doubled.is_empty(), "stored more than once: {doubled:?}");

    // A client retrying everything after the crash changes nothing.
    let retry: Vec<_> = acked
        .iter()
        .take(500)
        .map(|id| json!({"type": "track", "messageId": id, "userId": "u", "event": "Clicked"}))
        .collect();
    let (status, body) = http
        .post(&format!("{}/v1/batch", server.base), &ws.write_key, json!({"batch": retry}).to_string())
        .await
        .unwrap();
    assert_eq!((status, body["stored"].as_u64(), body["duplicates"].as_u64()), (200, Some(0), Some(500)));
}
