//! The index of events by person and account is built in chunks of background writes: a merge
//! between two chunks moves the lists not yet written, and a build cut short by a restart is
//! redone without leaving duplicates.

mod common;

use domain::{IdentityKey, WorkspaceId};
use store::{Changes, EventFilter, EventPerson, LogPosition, Op, PageRequest, Store};
use store_sqlite::SqliteStore;

/// More people than one chunk of the build writes lists for.
const PEOPLE: usize = 2_500;

/// A workspace where each of `PEOPLE` users sent one event, processed but not yet indexed.
async fn processed(s: &SqliteStore) -> WorkspaceId {
    let ws = s.create_workspace("links").await.unwrap().workspace_id;
    let events: Vec<_> = (0..PEOPLE).map(|i| common::track(&format!("m-{i}"), &format!("u{i}"), i as i64)).collect();
    s.append_events(&ws, &events).await.unwrap();
    let log = s.read_log(&ws, LogPosition::ZERO, PEOPLE).await.unwrap();
    let mut ops = Vec::new();
    for (i, logged) in log.iter().enumerate() {
        let at = logged.event.timestamp;
        ops.push(Op::CreatePerson { person_id: format!("p{i}"), user_id: Some(format!("u{i}")), at });
        ops.push(Op::LinkIdentity { key: IdentityKey::user(format!("u{i}")), person_id: format!("p{i}") });
    }
    let event_people = log.iter().enumerate().map(|(i, e)| EventPerson::of(e, format!("p{i}"))).collect();
    let to = log.last().unwrap().position;
    assert!(
        s.apply_changes(&ws, LogPosition::ZERO, to, &Changes { ops, event_people, ..Default::default() })
            .await
            .unwrap()
    );
    ws
}

async fn events_of(s: &SqliteStore, ws: &WorkspaceId, user: &str) -> Vec<String> {
    let filter = EventFilter { user_id: Some(user.into()), ..Default::default() };
    let page = s.list_events(ws, &filter, &PageRequest::first(100)).await.unwrap();
    page.items.into_iter().map(|e| e.message_id).collect()
}

fn lists(s: &SqliteStore) -> i64 {
    let conn = rusqlite::Connection::open(s.path()).unwrap();
    conn.query_row("SELECT count(*) FROM event_links", [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_between_chunks_moves_the_lists_not_yet_written() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_in_dir(dir.path()).unwrap();
    let ws = processed(&s).await;
    assert!(s.maintain(&ws, true).await.unwrap(), "the first chunk");
    let written = lists(&s);
    assert!(written > 0 && written < PEOPLE as i64, "{written} lists after one chunk");

    // Lists go in subject order, so `p999` is among the last and `p0` among the first.
    s.append_events(&ws, &[common::track("alias", "u0", 10_000)]).await.unwrap();
    let cursor = s.log_status(&ws).await.unwrap().cursor;
    let alias = s.read_log(&ws, cursor, 10).await.unwrap();
    let merge = Changes {
        ops: vec![Op::MergePeople { from: "p999".into(), into: "p0".into(), at: alias[0].event.timestamp }],
        event_people: vec![EventPerson::of(&alias[0], "p0")],
        ..Default::default()
    };
    assert!(s.apply_changes(&ws, cursor, alias[0].position, &merge).await.unwrap());
    while s.maintain(&ws, true).await.unwrap() {}

    // u999 now names p0, whose events are u0's, u999's and the alias.
    let mut found = events_of(&s, &ws, "u999").await;
    found.sort();
    assert_eq!(found, ["m-999"], "u999's event, found through the person it merged into");
    let filter = EventFilter::default();
    let all = s.list_events(&ws, &filter, &PageRequest::first(3)).await.unwrap();
    assert_eq!(all.items[0].person_id.as_deref(), Some("p0"));
    assert_eq!(lists(&s), PEOPLE as i64 + 1, "one list per person, and one for the alias");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_cut_short_is_redone_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SqliteStore::open_in_dir(dir.path()).unwrap();
        let ws = processed(&s).await;
        assert!(s.maintain(&ws, true).await.unwrap());
        assert!(lists(&s) > 0);
        s.close();
    }
    let s = SqliteStore::open_in_dir(dir.path()).unwrap();
    let ws = s.list_workspaces().await.unwrap()[0].workspace_id.clone();
    while s.maintain(&ws, true).await.unwrap() {}
    assert_eq!(lists(&s), PEOPLE as i64);
    for i in [0, 1_234, PEOPLE - 1] {
        assert_eq!(events_of(&s, &ws, &format!("u{i}")).await, [format!("m-{i}")]);
    }
}
