//! `steward import`: files as exports have them, checked before anything is stored, the same
//! file twice changing nothing, and rollups kept as events arrive.

mod common;

use common::{create_workspace, steward};
use serde_json::Value;
use std::io::Write;
use std::path::Path;

fn import(dir: &Path, ws: &str, args: &[&str]) -> (bool, Value, String) {
    let mut all = vec!["import", "--workspace", ws, "--data-dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = steward(&all).output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), json, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn gzip(path: &Path, text: &str) {
    let file = std::fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap();
}

#[tokio::test]
async fn a_churn_simulation_export_imports_once_with_its_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "Sim");
    let files = tempfile::tempdir().unwrap();
    let p = |name: &str| files.path().join(name);
    std::fs::write(p("accounts.csv"), "account_id,channel,country\n7,web,FR\n8,appstore1,\n").unwrap();
    std::fs::write(
        p("subscriptions.csv"),
        "account_id,product,start_date,end_date,mrr,quantity,units,bill_period_months,discount\n\
         7,basic,2020-01-01,2020-02-01,10,,,1,0\n7,basic,2020-02-01,2020-03-01,9.99,,,1,0\n8,basic,2020-01-15,2020-02-15,10,,,1,0\n",
    )
    .unwrap();
    // Two identical rows (two likes in one second) are two events; user 0 of account 7 is not
    // user 0 of account 8.
    gzip(
        &p("events.csv.gz"),
        "account_id,event_time,event_type,user_id,event_value\n\
         7,2020-01-03 10:00:00,like,0,\n7,2020-01-03 10:00:00,like,0,\n7,2020-01-03 11:00:00,post,0,2.5\n\
         8,2020-01-03 12:00:00,like,0,\n8,2020-01-04 09:00:00,like,0,\n",
    );
    let path = |name: &str| p(name).to_str().unwrap().to_owned();
    for round in 0..2 {
        let (ok, out, err) = import(dir.path(), &ws.id, &["accounts", &path("accounts.csv")]);
        assert!(ok, "{err}");
        assert_eq!((out["rows"].as_u64(), out["stored"].as_u64()), (Some(2), Some(if round == 0 { 2 } else { 0 })));
        let (ok, out, err) = import(dir.path(), &ws.id, &["subscriptions", &path("subscriptions.csv")]);
        assert!(ok, "{err}");
        assert_eq!(out["rows"].as_u64(), Some(3));
        let (ok, out, err) = import(dir.path(), &ws.id, &["--user-scope", "account", "events", &path("events.csv.gz")]);
        assert!(ok, "{err}");
        assert_eq!((out["rows"].as_u64(), out["stored"].as_u64()), (Some(5), Some(if round == 0 { 5 } else { 0 })));
    }

    let store = store_sqlite::SqliteStore::open_in_dir(dir.path()).unwrap();
    use store::Store;
    let ws_id = domain::WorkspaceId::parse(&ws.id).unwrap();
    let seven = domain::AccountId::parse("7").unwrap();
    let account = store.get_account(&ws_id, &seven).await.unwrap().unwrap();
    assert_eq!(account.traits, serde_json::json!({"channel": "web", "country": "FR"}));
    let subs = store.account_subscriptions(&ws_id, &seven).await.unwrap();
    assert_eq!(subs.len(), 2, "one per billing period, not doubled by the second import");
    let mut mrr: Vec<i64> = subs.iter().map(|s| s.mrr.minor).collect();
    mrr.sort();
    assert_eq!(mrr, [999, 1000], "amounts in cents, exactly");
    let (from, to) = ("2020-01-01".parse().unwrap(), "2020-02-01".parse().unwrap());
    let usage = store.account_usage(&ws_id, &seven, from, to).await.unwrap();
    let of = |metric: &str| usage.iter().find(|d| d.metric == metric).map(|d| (d.day.to_string(), d.events, d.users));
    assert_eq!(of("like"), Some(("2020-01-03".into(), 2, 1)));
    assert_eq!(of("$any"), Some(("2020-01-03".into(), 3, 1)));
    let person = store.get_person(&ws_id, "7/0").await.unwrap().expect("users are scoped by account");
    assert_eq!(person.account_ids, [seven.clone()]);
    assert!(store.get_person(&ws_id, "8/0").await.unwrap().is_some());
    store.close();
}

#[test]
fn a_bad_line_is_named_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "Bad");
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("events.csv");
    std::fs::write(&file, "ts,name,user\n2020-01-03 10:00:00,like,u1\n2020-01-3x,like,u2\n").unwrap();
    let f = file.to_str().unwrap();
    let mapped = ["--column", "event_time=ts", "--column", "event_type=name", "--column", "user_id=user"];
    let mut args: Vec<&str> = mapped.to_vec();
    args.extend(["events", f]);
    let (ok, _, err) = import(dir.path(), &ws.id, &args);
    assert!(!ok);
    assert!(err.contains("line 3") && err.contains("event_time") && err.contains("2020-01-3x"), "{err}");

    // Without the mapping the required columns are missing, and the error says how to map them.
    let (ok, _, err) = import(dir.path(), &ws.id, &["events", f]);
    assert!(!ok);
    assert!(err.contains("no column \"event_time\"") && err.contains("--column event_time="), "{err}");

    // A row with too few fields.
    std::fs::write(&file, "ts,name,user\n2020-01-03 10:00:00,like\n").unwrap();
    let (ok, _, err) = import(dir.path(), &ws.id, &args);
    assert!(!ok);
    assert!(err.contains("line 2") && err.contains("2 fields where the header has 3"), "{err}");

    // Fixed, it imports: the failed attempts stored nothing (the first good row is new now).
    std::fs::write(&file, "ts,name,user\n2020-01-03 10:00:00,like,u1\n").unwrap();
    let (ok, out, err) = import(dir.path(), &ws.id, &args);
    assert!(ok, "{err}");
    assert_eq!(out["stored"].as_u64(), Some(1));
}

/// A file of many chunks (it is read on several threads): rows come back in file order, copies
/// of a row far apart are two events, a quoted line end is part of its field, and a bad line
/// late in the file is named by its line.
#[tokio::test]
async fn a_large_file_imports_in_order_once_and_names_a_late_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "Large");
    let files = tempfile::tempdir().unwrap();
    let rows = 30_000;
    let row = |i: usize| {
        // Row 5 and row 25,000 are the same; some notes hold a line end.
        let i = if i == 25_000 { 5 } else { i };
        let note = if i % 1000 == 7 { format!("\"a note\non two lines, \"\"{i}\"\"\"") } else { format!("n{i}") };
        format!("{},2020-01-{:02} 10:{:02}:{:02},like,u{},{note}\n", i % 50, 1 + i % 28, i % 60, i / 60 % 60, i % 7)
    };
    let mut text = String::from("account_id,event_time,event_type,user_id,note\n");
    for i in 0..rows {
        text.push_str(&row(i));
    }
    assert!(text.len() > 3 * (256 << 10), "several chunks");
    let file = files.path().join("events.csv.gz");
    gzip(&file, &text);
    let f = file.to_str().unwrap();
    for round in 0..2 {
        let (ok, out, err) = import(dir.path(), &ws.id, &["--user-scope", "account", "events", f]);
        assert!(ok, "{err}");
        let stored = if round == 0 { rows as u64 } else { 0 };
        assert_eq!((out["rows"].as_u64(), out["stored"].as_u64()), (Some(rows as u64), Some(stored)));
    }
    let store = store_sqlite::SqliteStore::open_in_dir(dir.path()).unwrap();
    use store::Store;
    let ws_id = domain::WorkspaceId::parse(&ws.id).unwrap();
    let log = store.read_log(&ws_id, store::LogPosition::ZERO, rows + 10).await.unwrap();
    assert_eq!(log.len(), rows);
    // In file order: the n-th event is the n-th row.
    for i in [0, 1, 7, 4_999, 17_007, 29_999] {
        let e = &log[i].event;
        let payload: Value = serde_json::from_str(&e.payload).unwrap();
        let note = payload["properties"]["note"].as_str().unwrap().to_owned();
        let expected = if i % 1000 == 7 { format!("a note\non two lines, \"{i}\"") } else { format!("n{i}") };
        assert_eq!(note, expected, "row {i}");
    }
    let (copy, original) = (&log[25_000].event, &log[5].event);
    assert_eq!((copy.timestamp, &copy.user_id), (original.timestamp, &original.user_id));
    assert_ne!(copy.message_id, original.message_id, "copies are told apart");
    assert_eq!(copy.message_id.strip_suffix("_2"), original.message_id.strip_suffix("_1"));
    store.close();
    drop(store);

    // A bad time late in the file: the line counts the quoted line ends before it.
    let bad_row = 28_123;
    let mut bad = String::from("account_id,event_time,event_type,user_id,note\n");
    for i in 0..rows {
        bad.push_str(&if i == bad_row { "1,2020-13-01 10:00:00,like,u1,x\n".to_owned() } else { row(i) });
    }
    let bad_file = files.path().join("bad.csv");
    std::fs::write(&bad_file, &bad).unwrap();
    let line = 2 + bad_row + (0..bad_row).filter(|i| i % 1000 == 7).count();
    let (ok, _, err) = import(dir.path(), &ws.id, &["--user-scope", "account", "events", bad_file.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains(&format!("line {line}:")) && err.contains("2020-13-01"), "{err}");
}
