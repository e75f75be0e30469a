//! Exactly-once by message id holds whether an id is still in the writer's memory, half-way
//! written out in runs, or only on disk after a restart.

mod common;

use domain::{NewEvent, WorkspaceId};
use store::{EventFilter, PageRequest, Store};
use store_sqlite::SqliteStore;

fn batch(from: i64, to: i64) -> Vec<NewEvent> {
    (from..to).map(|i| common::track(&format!("m-{i}"), &format!("user-{}", i % 50), 0)).collect()
}

async fn append_all(s: &SqliteStore, ws: &WorkspaceId, from: i64, to: i64) -> (i64, i64) {
    let (mut stored, mut duplicates) = (0, 0);
    for start in (from..to).step_by(2_500) {
        let r = s.append_events(ws, &batch(start, (start + 2_500).min(to))).await.unwrap();
        stored += r.stored as i64;
        duplicates += r.duplicates as i64;
    }
    (stored, duplicates)
}

async fn find(s: &SqliteStore, ws: &WorkspaceId, id: &str) -> usize {
    let filter = EventFilter { message_id: Some(id.into()), ..Default::default() };
    s.list_events(ws, &filter, &PageRequest::first(10)).await.unwrap().items.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_found_in_memory_in_the_index_and_after_restarts() {
    let dir = tempfile::tempdir().unwrap();
    // A workspace with ids in the index already, so that the writer holds only recent ones.
    let ws = {
        let s = SqliteStore::open_in_dir(dir.path()).unwrap();
        let ws = s.create_workspace("acme").await.unwrap().workspace_id;
        assert_eq!(s.append_events(&ws, &batch(-10, 0)).await.unwrap().stored, 10);
        s.close();
        ws
    };
    // More ids than the writer keeps in memory, so at least one flush to the index happens
    // while ingest goes on.
    let n = 70_000;
    let ws = {
        let s = SqliteStore::open_in_dir(dir.path()).unwrap();
        assert_eq!(append_all(&s, &ws, 0, n).await, (n, 0));
        // Again at once: some ids are in memory, some in the index, some half-way.
        assert_eq!(append_all(&s, &ws, 0, n).await, (0, n));
        // Within one batch, and mixed with new ones.
        let mut mixed = batch(n - 10, n + 10);
        mixed.extend(batch(n, n + 10));
        let r = s.append_events(&ws, &mixed).await.unwrap();
        assert_eq!((r.stored, r.duplicates), (10, 20));
        assert_eq!(find(&s, &ws, "m-0").await, 1);
        assert_eq!(find(&s, &ws, &format!("m-{}", n + 5)).await, 1);
        assert_eq!(find(&s, &ws, "m-unknown").await, 0);
        s.close();
        ws
    };
    // After a clean stop everything is in the index.
    {
        let s = SqliteStore::open_in_dir(dir.path()).unwrap();
        assert_eq!(append_all(&s, &ws, 0, n + 10).await, (0, n + 10));
        assert_eq!(append_all(&s, &ws, n + 10, n + 20).await, (10, 0));
        s.close();
    }
    // As if the process had died before any id reached the index: the ids are rebuilt from
    // the log at the next start.
    {
        let conn = rusqlite::Connection::open(dir.path().join("steward.db")).unwrap();
        conn.execute_batch(
            "DELETE FROM id_pages; DELETE FROM id_runs; DELETE FROM store_meta WHERE key = 'event_ids_through';",
        )
        .unwrap();
    }
    let s = SqliteStore::open_in_dir(dir.path()).unwrap();
    assert_eq!(append_all(&s, &ws, 0, n + 20).await, (0, n + 20));
    assert_eq!(s.log_status(&ws).await.unwrap().total_events, n + 30);
    assert_eq!(find(&s, &ws, &format!("m-{}", n + 15)).await, 1);

    // Another workspace may use the same ids.
    let other = s.create_workspace("globex").await.unwrap().workspace_id;
    assert_eq!(append_all(&s, &other, 0, 100).await, (100, 0));
}

/// The live runs of the index: how many ids each holds.
fn runs(dir: &std::path::Path) -> Vec<i64> {
    let conn = rusqlite::Connection::open(dir.join("steward.db")).unwrap();
    let mut stmt = conn.prepare("SELECT ids FROM id_runs WHERE state = 'live' ORDER BY run").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<rusqlite::Result<_>>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_workspaces_ids_stay_in_memory_and_are_written_as_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let n = 70_000;
    let ws = {
        let s = SqliteStore::open_in_dir(dir.path()).unwrap();
        let ws = s.create_workspace("acme").await.unwrap().workspace_id;
        assert_eq!(append_all(&s, &ws, 0, n).await, (n, 0));
        assert_eq!(runs(dir.path()), Vec::<i64>::new(), "more than a run's worth, none written yet");
        assert_eq!(append_all(&s, &ws, 0, n).await, (0, n));
        assert_eq!(find(&s, &ws, "m-69999").await, 1);
        s.close();
        ws
    };
    assert_eq!(runs(dir.path()), vec![n], "one run, not one per 65,536 ids merged");
    let s = SqliteStore::open_in_dir(dir.path()).unwrap();
    assert_eq!(append_all(&s, &ws, 0, n + 10).await, (10, n));
    assert_eq!(find(&s, &ws, "m-0").await, 1);
    s.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_process_appends_to_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let first = SqliteStore::open_in_dir(dir.path()).unwrap();
    let ws = first.create_workspace("acme").await.unwrap().workspace_id;
    assert_eq!(first.append_events(&ws, &batch(0, 10)).await.unwrap().stored, 10);
    // A second opener (the CLI creating a key while a server runs) may do everything else.
    let second = SqliteStore::open_in_dir(dir.path()).unwrap();
    assert!(second.list_keys(&ws).await.is_ok());
    let refused = second.append_events(&ws, &batch(10, 20)).await.unwrap_err();
    assert!(refused.to_string().contains("another process is appending events"), "{refused}");
    assert_eq!(second.log_status(&ws).await.unwrap().total_events, 10);
    // Once the first is gone, the second takes over and knows the first's ids.
    first.close();
    let r = second.append_events(&ws, &batch(5, 15)).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (5, 5));
}

/// An import's derived ids hash by the database's own key when its log was empty as the key
/// was made; a database whose log already held ids when it was upgraded hashes every id by
/// SHA-256 as before, and finds its ids in memory, in the index and by message id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_ids_hash_by_the_databases_key_unless_its_log_is_older() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> =
        (1..=40).map(|n| domain::DerivedId { key: 0xfeed_beef_0000_1111_2222_3333_4444_5555, n }.to_string()).collect();
    let events: Vec<NewEvent> = ids.iter().map(|id| common::track(id, "user-1", 0)).collect();
    let keys = |dir: &std::path::Path| -> i64 {
        let conn = rusqlite::Connection::open(dir.join("steward.db")).unwrap();
        conn.query_row("SELECT count(*) FROM store_meta WHERE key LIKE 'derived_id_key_%'", [], |r| r.get(0)).unwrap()
    };
    let ws = {
        let s = SqliteStore::open_in_dir(dir.path()).unwrap();
        let ws = s.create_workspace("acme").await.unwrap().workspace_id;
        assert_eq!(s.append_events(&ws, &events).await.unwrap().stored, 40);
        assert_eq!(s.append_events(&ws, &events).await.unwrap().duplicates, 40);
        assert_eq!(find(&s, &ws, &ids[7]).await, 1);
        s.close();
        ws
    };
    assert_eq!(keys(dir.path()), 2, "a new database has a key");
    {
        let s = SqliteStore::open_in_dir(dir.path()).unwrap();
        assert_eq!(s.append_events(&ws, &events).await.unwrap().duplicates, 40, "found in the index");
        s.close();
    }
    // The same log as a database made before the key: its index gone (rebuilt from the log at
    // the next start), no key, and the migration that makes one still to run.
    {
        let conn = rusqlite::Connection::open(dir.path().join("steward.db")).unwrap();
        conn.execute_batch(
            "DELETE FROM id_pages; DELETE FROM id_runs;
             DELETE FROM store_meta WHERE key = 'event_ids_through' OR key LIKE 'derived_id_key_%';
             PRAGMA user_version = 13;",
        )
        .unwrap();
    }
    {
        let s = SqliteStore::open_in_dir(dir.path()).unwrap();
        assert_eq!(keys(dir.path()), 0, "a log with ids keeps hashing them as it did");
        assert_eq!(s.append_events(&ws, &events).await.unwrap().duplicates, 40, "found in memory");
        assert_eq!(find(&s, &ws, &ids[7]).await, 1);
        s.close();
    }
    let s = SqliteStore::open_in_dir(dir.path()).unwrap();
    let more: Vec<NewEvent> =
        ids.iter().chain(["m-new".to_owned()].iter()).map(|id| common::track(id, "user-1", 0)).collect();
    let r = s.append_events(&ws, &more).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (1, 40), "found in the index written at the last close");
    assert_eq!(find(&s, &ws, &ids[39]).await, 1);
    s.close();
}
