//! `steward import`: files as exports have them (CSV or JSON lines), checked before anything
//! is stored, the same file twice changing nothing, and rollups kept as events arrive.

mod common;

use common::{create_workspace, steward};
use domain::{AccountId, WorkspaceId};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use store::{PageRequest, Store};

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

    let store = open_store(dir.path());
    let ws_id = WorkspaceId::parse(&ws.id).unwrap();
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
    assert_eq!(person.account_ids, std::slice::from_ref(&seven));
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

    // An account id too long, after a blank line: the line is the file's.
    let long = "a".repeat(257);
    std::fs::write(
        &file,
        format!("ts,name,user,account_id\n2020-01-03 10:00:00,like,u1,acme\n\n2020-01-03 10:00:01,like,u1,{long}\n"),
    )
    .unwrap();
    let (ok, _, err) = import(dir.path(), &ws.id, &args);
    assert!(!ok);
    assert!(err.contains("line 4") && err.contains("account_id") && err.contains("longer than 256 bytes"), "{err}");
    // The same with a quoted field, which the CSV reader reads: the same line.
    std::fs::write(
        &file,
        format!(
            "ts,name,user,account_id\n2020-01-03 10:00:00,\"like\",u1,acme\n\n2020-01-03 10:00:01,like,u1,{long}\n"
        ),
    )
    .unwrap();
    let (ok, _, err) = import(dir.path(), &ws.id, &args);
    assert!(!ok);
    assert!(err.contains("line 4") && err.contains("longer than 256 bytes"), "{err}");

    // Fixed, it imports: the failed attempts stored nothing (the first good row is new now).
    std::fs::write(&file, "ts,name,user\n2020-01-03 10:00:00,like,u1\n").unwrap();
    let (ok, out, err) = import(dir.path(), &ws.id, &args);
    assert!(ok, "{err}");
    assert_eq!(out["stored"].as_u64(), Some(1));
}

/// Opens the test's database once the CLI is done with it.
fn open_store(dir: &Path) -> store_sqlite::SqliteStore {
    store_sqlite::SqliteStore::open_in_dir(dir).unwrap()
}

fn ids(ws: &str, account: &str) -> (WorkspaceId, AccountId) {
    (WorkspaceId::parse(ws).unwrap(), AccountId::parse(account).unwrap())
}

/// An account's people as `(user id, traits)`, by user id.
async fn people_of(store: &dyn Store, ws: &WorkspaceId, account: &AccountId) -> Vec<(String, Value)> {
    let page = store.account_people(ws, account, &PageRequest::first(100)).await.unwrap();
    let mut people: Vec<_> = page.items.into_iter().map(|p| (p.user_id.unwrap_or_default(), p.traits)).collect();
    people.sort_by(|a, b| a.0.cmp(&b.0));
    people
}

#[tokio::test]
async fn people_become_members_of_their_accounts_and_a_second_import_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "People");
    let files = tempfile::tempdir().unwrap();
    let accounts = files.path().join("accounts.csv");
    std::fs::write(&accounts, "account_id,plan\nacme,team\nglobex,free\n").unwrap();
    let people = files.path().join("people.csv");
    std::fs::write(
        &people,
        "uid,account_id,email,name,created_at,role\n\
         ana,acme,ana@acme.test,Ana,2025-03-01,admin\n\
         bob,acme,bob@acme.test,Bob,,\n\
         cy,globex,,Cy,2025-04-02 10:30:00,viewer\n\
         dee,,dee@example.test,,,\n",
    )
    .unwrap();
    let people_args = ["--column", "user_id=uid", "people", people.to_str().unwrap()];
    let (ok, _, err) = import(dir.path(), &ws.id, &["accounts", accounts.to_str().unwrap()]);
    assert!(ok, "{err}");
    for round in 0..2 {
        let (ok, out, err) = import(dir.path(), &ws.id, &people_args);
        assert!(ok, "{err}");
        // An identify per person and a group call per person with an account.
        let stored = if round == 0 { 7 } else { 0 };
        assert_eq!((out["rows"].as_u64(), out["stored"].as_u64()), (Some(4), Some(stored)), "round {round}");
        assert!(err.contains("imported 4 rows of people"), "a summary line: {err}");
    }

    let store = open_store(dir.path());
    let (ws_id, acme) = ids(&ws.id, "acme");
    assert_eq!(
        people_of(&store, &ws_id, &acme).await,
        [
            (
                "ana".to_owned(),
                json!({"email": "ana@acme.test", "name": "Ana", "role": "admin", "created_at": "2025-03-01T00:00:00Z"})
            ),
            ("bob".to_owned(), json!({"email": "bob@acme.test", "name": "Bob"})),
        ]
    );
    let account = store.get_account(&ws_id, &acme).await.unwrap().unwrap();
    assert_eq!((account.people_count, &account.traits), (2, &json!({"plan": "team"})), "the account's own traits stay");
    let cy = store.get_person(&ws_id, "cy").await.unwrap().unwrap();
    assert_eq!(cy.account_ids, [AccountId::parse("globex").unwrap()]);
    assert_eq!(
        cy.first_seen_at.map(|t| t.to_rfc3339()).as_deref(),
        Some("2025-04-02T10:30:00+00:00"),
        "signed up then"
    );
    let dee = store.get_person(&ws_id, "dee").await.unwrap().unwrap();
    assert!(dee.account_ids.is_empty());
    store.close();

    // A changed row updates the person; the others stay as they were.
    std::fs::write(&people, "uid,account_id,email\nana,acme,ana@new.test\n").unwrap();
    let (ok, out, err) = import(dir.path(), &ws.id, &people_args);
    assert!(ok, "{err}");
    assert_eq!(out["stored"].as_u64(), Some(1), "a new identify; the membership is known");
    let store = open_store(dir.path());
    let ana = store.get_person(&ws_id, "ana").await.unwrap().unwrap();
    assert_eq!(ana.traits["email"], "ana@new.test");
    assert_eq!(ana.traits["role"], "admin");
    store.close();

    // Numbered within their accounts, user 1 of acme is not user 1 of globex.
    std::fs::write(&people, "account_id,user_id,email\nacme,1,one@acme.test\nglobex,1,one@globex.test\n").unwrap();
    let scoped = ["--user-scope", "account", "people", people.to_str().unwrap()];
    let (ok, _, err) = import(dir.path(), &ws.id, &scoped);
    assert!(ok, "{err}");
    let store = open_store(dir.path());
    let one = store.get_person(&ws_id, "globex/1").await.unwrap().unwrap();
    assert_eq!(
        (one.account_ids.as_slice(), &one.traits["email"]),
        (&[AccountId::parse("globex").unwrap()][..], &json!("one@globex.test"))
    );
    store.close();
    std::fs::write(&people, "account_id,user_id\n,1\n").unwrap();
    let (ok, _, err) = import(dir.path(), &ws.id, &scoped);
    assert!(!ok && err.contains("line 2") && err.contains("account_id is missing"), "{err}");
}

#[tokio::test]
async fn imported_tickets_count_in_the_accounts_support_measures_and_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "Support");
    let files = tempfile::tempdir().unwrap();
    let p = |name: &str| files.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(p("accounts.csv"), "account_id\nacme\nglobex\n").unwrap();
    std::fs::write(p("people.csv"), "user_id,account_id,email\nana,acme,ana@acme.test\n").unwrap();
    // A Zendesk-like export: its own column names, mapped; `created_at` is the opening.
    std::fs::write(
        p("tickets.csv"),
        "id,organization,requester,subject,status,priority,created_at,first_response_at,resolved_at,satisfaction,channel\n\
         101,acme,ana,Export fails,open,urgent,2026-01-05 09:00:00,2026-01-05 10:00:00,,,email\n\
         102,acme,,Slow reports,hold,high,2026-01-06 09:00:00,,,,web\n\
         103,acme,,Invoice question,solved,low,2026-01-07 09:00:00,2026-01-07 09:30:00,2026-01-07 12:00:00,2,email\n\
         104,,ana,Cannot log in,Open,Normal,2026-01-08 09:00:00,,,,chat\n\
         201,globex,,Thanks,closed,low,2026-01-02 09:00:00,,2026-01-02 10:00:00,5,email\n\
         105,acme,,Open again,open,low,2026-01-02 09:00:00,,2026-01-02 12:00:00,,web\n",
    )
    .unwrap();
    let mapped = [
        "--column",
        "ticket_id=id",
        "--column",
        "account_id=organization",
        "--column",
        "user_id=requester",
        "--column",
        "csat=satisfaction",
        "tickets",
    ];
    for (kind, file) in [("accounts", "accounts.csv"), ("people", "people.csv")] {
        let (ok, _, err) = import(dir.path(), &ws.id, &[kind, &p(file)]);
        assert!(ok, "{err}");
    }
    let tickets_args = |file: &str| mapped.iter().copied().map(str::to_owned).chain([p(file)]).collect::<Vec<_>>();
    let args = tickets_args("tickets.csv");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = import(dir.path(), &ws.id, &args);
    assert!(ok, "{err}");
    assert_eq!(out["rows"].as_u64(), Some(6));

    let (ws_id, acme) = ids(&ws.id, "acme");
    let store = open_store(dir.path());
    let tickets = store.account_tickets(&ws_id, &acme).await.unwrap();
    let ana = store.get_person(&ws_id, "ana").await.unwrap().unwrap();
    let summary: Vec<_> = tickets
        .iter()
        .map(|t| (t.ticket_id.as_str(), t.status.as_str(), t.priority.as_str(), t.csat, t.person_id.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            // Open again: the status decides, the earlier resolution is kept as an attribute.
            ("105", "open", "low", None, None),
            ("101", "open", "urgent", None, Some(ana.person_id.clone())),
            ("102", "pending", "high", None, None),
            ("103", "solved", "low", Some(2), None),
            // No account in the file: the requester's only account.
            ("104", "open", "normal", None, Some(ana.person_id.clone())),
        ]
    );
    assert_eq!(tickets[1].attributes, json!({"channel": "email", "user_id": "ana"}));
    assert_eq!(tickets[1].first_response_at.map(|t| t.to_rfc3339()).as_deref(), Some("2026-01-05T10:00:00+00:00"));
    assert_eq!((tickets[0].resolved_at, &tickets[0].attributes["resolved_at"]), (None, &json!("2026-01-02T12:00:00Z")));
    store.close();

    // Importing it again changes nothing.
    let (ok, _, err) = import(dir.path(), &ws.id, &args);
    assert!(ok, "{err}");
    let store = open_store(dir.path());
    assert_eq!(store.account_tickets(&ws_id, &acme).await.unwrap(), tickets);
    store.close();

    // Scored on the 10th: four tickets in a week, two of them escalated and open, and two
    // others open.
    let out =
        steward(&["score", "--workspace", &ws.id, "--day", "2026-01-10", "--data-dir", dir.path().to_str().unwrap()])
            .output()
            .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let store = open_store(dir.path());
    let score = store.account_score(&ws_id, &acme).await.unwrap().expect("acme is scored");
    let signals = score.explanation.to_value()["signals"].clone();
    assert_eq!(
        (&signals["open_tickets"], &signals["escalated_open_tickets"], &signals["tickets_7d"], &signals["csat_90d"]),
        (&json!(2), &json!(2), &json!(4), &json!(2.0)),
        "{signals}"
    );
    // The open tickets are a health measure of acme's, and globex's none are too.
    let open_tickets = |score: &store::AccountScore| {
        score.explanation.to_value()["health"]["components"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["measures"].as_array().unwrap().clone())
            .find(|m| m["name"] == "open tickets (escalated count twice)")
            .and_then(|m| m["value"].as_f64())
    };
    assert!(open_tickets(&score).is_some_and(|v| v >= 4.0), "{}", score.explanation.as_str());
    let filter = store::AlertFilter { account_id: Some(acme.clone()), ..Default::default() };
    let alerts = store.list_alerts(&ws_id, &filter, &PageRequest::first(100)).await.unwrap().items;
    let surge = alerts.iter().find(|a| a.reason == "ticket_surge").expect("a ticket surge alert");
    assert_eq!(surge.severity, store::Severity::High, "escalated tickets are open");
    let globex = AccountId::parse("globex").unwrap();
    let filter = store::AlertFilter { account_id: Some(globex.clone()), ..Default::default() };
    let alerts = store.list_alerts(&ws_id, &filter, &PageRequest::first(100)).await.unwrap().items;
    assert!(alerts.iter().all(|a| a.reason != "ticket_surge"), "one closed ticket is no surge");
    let globex = store.account_score(&ws_id, &globex).await.unwrap().unwrap();
    assert_eq!(open_tickets(&globex), Some(0.0));
    let globex_signals = globex.explanation.to_value()["signals"].clone();
    assert_eq!((&globex_signals["open_tickets"], &globex_signals["csat_90d"]), (&json!(0), &json!(5.0)));
    store.close();
}

#[tokio::test]
async fn a_bad_ticket_is_named_by_line_and_column_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "Bad tickets");
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("tickets.csv");
    let f = file.to_str().unwrap();
    let good = "ticket_id,account_id,status,priority,opened_at,resolved_at,csat\n1,acme,open,high,2026-01-05,,\n";
    for (bad, expected) in [
        ("2,acme,wip,low,2026-01-05,,", ["line 3", "status", "\"wip\"", "ticket status"]),
        ("2,acme,open,p1,2026-01-05,,", ["line 3", "priority", "\"p1\"", "ticket priority"]),
        ("2,acme,solved,low,2026-01-05,2026-01-06,9", ["line 3", "csat", "\"9\"", "1 to 5"]),
        ("2,acme,solved,low,2026-01-05,2026-01-04,", ["line 3", "resolved_at", "before", "opened"]),
        ("2,acme,open,low,,,", ["line 3", "opened_at is missing", "created_at", "--column opened_at="]),
    ] {
        std::fs::write(&file, format!("{good}{bad}\n")).unwrap();
        let (ok, _, err) = import(dir.path(), &ws.id, &["tickets", f]);
        assert!(!ok);
        assert!(expected.iter().all(|e| err.contains(e)), "{expected:?} in {err}");
    }
    let store = open_store(dir.path());
    let (ws_id, acme) = ids(&ws.id, "acme");
    assert!(store.account_tickets(&ws_id, &acme).await.unwrap().is_empty());
    store.close();
    std::fs::write(&file, good).unwrap();
    let (ok, out, err) = import(dir.path(), &ws.id, &["tickets", f]);
    assert!(ok, "{err}");
    assert_eq!(out["stored"].as_u64(), Some(1), "the failed attempts stored nothing");
}

/// What a workspace holds after importing one data set, to compare two imports of it.
async fn state(dir: &Path, ws: &str) -> Value {
    let store = open_store(dir);
    let ws = WorkspaceId::parse(ws).unwrap();
    let mut accounts = Vec::new();
    for id in ["7", "8"] {
        let account = AccountId::parse(id).unwrap();
        let a = store.get_account(&ws, &account).await.unwrap().unwrap();
        let people = people_of(&store, &ws, &account).await;
        let (from, to) = ("2020-01-01".parse().unwrap(), "2020-03-01".parse().unwrap());
        let usage: Vec<_> = store
            .account_usage(&ws, &account, from, to)
            .await
            .unwrap()
            .into_iter()
            .map(|d| json!([d.metric, d.day.to_string(), d.events, d.users]))
            .collect();
        let mut subs: Vec<_> = store
            .account_subscriptions(&ws, &account)
            .await
            .unwrap()
            .into_iter()
            .map(|s| json!([s.subscription_id, s.plan, s.mrr.minor, s.started_at, s.ended_at, s.attributes]))
            .collect();
        subs.sort_by_key(|s| s.to_string());
        let tickets: Vec<_> = store
            .account_tickets(&ws, &account)
            .await
            .unwrap()
            .into_iter()
            .map(|t| json!([t.ticket_id, t.status.as_str(), t.priority.as_str(), t.csat, t.opened_at, t.attributes]))
            .collect();
        accounts.push(
            json!({"traits": a.traits, "people": people, "usage": usage, "subscriptions": subs, "tickets": tickets}),
        );
    }
    store.close();
    Value::Array(accounts)
}

#[tokio::test]
async fn json_lines_import_as_the_same_csv_does() {
    let files = tempfile::tempdir().unwrap();
    let p = |name: &str| files.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(p("accounts.csv"), "account_id,channel,seats\n7,web,12\n8,appstore,3\n").unwrap();
    std::fs::write(p("people.csv"), "account_id,user_id,email\n7,0,zero@seven.test\n8,0,zero@eight.test\n").unwrap();
    std::fs::write(
        p("subscriptions.csv"),
        "account_id,product,start_date,end_date,mrr,discount\n7,basic,2020-01-01,2020-02-01,9.99,0\n8,pro,2020-01-15,,20,0.5\n",
    )
    .unwrap();
    std::fs::write(
        p("events.csv"),
        "account_id,ts,event_type,user_id,event_value\n\
         7,2020-01-03 10:00:00,like,0,\n7,2020-01-03 10:00:00,like,0,\n7,2020-01-03 11:00:00,post,0,2.5\n\
         8,2020-01-04 09:00:00,like,0,\n",
    )
    .unwrap();
    std::fs::write(
        p("tickets.csv"),
        "ticket_id,account_id,user_id,status,priority,created_at,resolved_at,csat,tier\n\
         t1,7,0,solved,high,2020-01-05,2020-01-06,4,gold\n",
    )
    .unwrap();
    // The same rows as JSON lines: numbers as numbers, blank lines, fields in any order, and
    // one file gzipped with nothing in its name to say so.
    std::fs::write(
        p("accounts.jsonl"),
        "{\"account_id\": 7, \"channel\": \"web\", \"seats\": 12}\n\n{\"seats\": 3, \"account_id\": \"8\", \"channel\": \"appstore\"}\n",
    )
    .unwrap();
    std::fs::write(
        p("people.ndjson"),
        "{\"account_id\": 7, \"user_id\": 0, \"email\": \"zero@seven.test\"}\n{\"account_id\": 8, \"user_id\": \"0\", \"email\": \"zero@eight.test\", \"name\": null}\n",
    )
    .unwrap();
    std::fs::write(
        p("subscriptions.jsonl"),
        "{\"account_id\": 7, \"product\": \"basic\", \"start_date\": \"2020-01-01\", \"end_date\": \"2020-02-01\", \"mrr\": 9.99, \"discount\": 0}\n\
         {\"account_id\": 8, \"product\": \"pro\", \"start_date\": \"2020-01-15\", \"mrr\": 20, \"discount\": 0.5}\n",
    )
    .unwrap();
    gzip(
        &files.path().join("events.data"),
        "{\"account_id\": 7, \"ts\": \"2020-01-03 10:00:00\", \"event_type\": \"like\", \"user_id\": 0}\n\
         {\"account_id\": 7, \"ts\": \"2020-01-03 10:00:00\", \"event_type\": \"like\", \"user_id\": 0}\n\
         {\"account_id\": 7, \"ts\": \"2020-01-03 11:00:00\", \"event_type\": \"post\", \"user_id\": 0, \"event_value\": 2.5}\n\
         {\"account_id\": 8, \"ts\": \"2020-01-04 09:00:00\", \"event_type\": \"like\", \"user_id\": 0}\n",
    );
    std::fs::write(
        p("tickets.jsonl"),
        "{\"ticket_id\": \"t1\", \"account_id\": 7, \"user_id\": 0, \"status\": \"solved\", \"priority\": \"high\", \"created_at\": \"2020-01-05\", \"resolved_at\": \"2020-01-06\", \"csat\": 4, \"tier\": \"gold\"}\n",
    )
    .unwrap();

    let mut states = Vec::new();
    for (format, names) in [
        ("csv", ["accounts.csv", "people.csv", "subscriptions.csv", "events.csv", "tickets.csv"]),
        ("json", ["accounts.jsonl", "people.ndjson", "subscriptions.jsonl", "events.data", "tickets.jsonl"]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ws = create_workspace(dir.path(), format);
        for round in 0..2 {
            for (kind, name) in ["accounts", "people", "subscriptions", "events", "tickets"].into_iter().zip(names) {
                let mut args = vec!["--user-scope", "account", "--column", "event_time=ts", kind];
                let path = p(name);
                args.push(&path);
                if kind != "events" {
                    args.drain(2..4);
                }
                let (ok, out, err) = import(dir.path(), &ws.id, &args);
                assert!(ok, "{format} {kind}: {err}");
                if round == 1 && kind != "subscriptions" && kind != "tickets" {
                    assert_eq!(out["stored"].as_u64(), Some(0), "{format} {kind} again");
                }
            }
        }
        states.push(state(dir.path(), &ws.id).await);
    }
    assert_eq!(states[0], states[1]);
    // And what the CSV says, so that the two are not equal by being empty.
    let seven = &states[0][0];
    assert_eq!(seven["traits"], json!({"channel": "web", "seats": 12}));
    assert_eq!(seven["people"], json!([["7/0", {"email": "zero@seven.test"}]]));
    assert_eq!(seven["usage"].as_array().unwrap().len(), 3, "like, post and $any on one day: {seven}");
    assert_eq!(seven["tickets"][0][5], json!({"tier": "gold", "user_id": "7/0"}));

    // Fields Steward does not know keep their JSON types.
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "Types");
    std::fs::write(
        p("typed.jsonl"),
        "{\"account_id\": \"9\", \"zip\": \"01234\", \"tags\": [\"a\", \"b\"], \"beta\": true}\n",
    )
    .unwrap();
    let (ok, _, err) = import(dir.path(), &ws.id, &["accounts", &p("typed.jsonl")]);
    assert!(ok, "{err}");
    let store = open_store(dir.path());
    let (ws_id, nine) = ids(&ws.id, "9");
    let account = store.get_account(&ws_id, &nine).await.unwrap().unwrap();
    assert_eq!(account.traits, json!({"zip": "01234", "tags": ["a", "b"], "beta": true}));
    store.close();
}

#[tokio::test]
async fn a_bad_json_line_is_named_with_its_field_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "Bad JSON");
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("events.jsonl");
    let f = file.to_str().unwrap();
    let good = "{\"event_time\": \"2020-01-03 10:00:00\", \"event_type\": \"like\", \"user_id\": \"u1\"}\n\n";
    for (bad, expected) in [
        (
            "{\"event_time\": \"2020-01-3x\", \"event_type\": \"like\", \"user_id\": \"u2\"}",
            vec!["line 3", "event_time", "2020-01-3x"],
        ),
        (
            "{\"event_time\": \"2020-01-03\", \"event_type\": \"like\", \"user_id\": \"u2\"",
            vec!["line 3", "not valid JSON"],
        ),
        ("[\"2020-01-03\", \"like\"]", vec!["line 3", "an array where an object was expected"]),
        (
            "{\"event_time\": \"2020-01-03\", \"event_type\": {\"name\": \"like\"}, \"user_id\": \"u2\"}",
            vec!["line 3", "event_type", "an object"],
        ),
        ("{\"event_time\": \"2020-01-03\", \"user_id\": \"u2\"}", vec!["line 3", "event_type is missing"]),
    ] {
        std::fs::write(&file, format!("{good}{bad}\n")).unwrap();
        let (ok, _, err) = import(dir.path(), &ws.id, &["events", f]);
        assert!(!ok, "{bad}");
        assert!(expected.iter().all(|e| err.contains(e)), "{expected:?} in {err}");
    }
    let store = open_store(dir.path());
    let ws_id = WorkspaceId::parse(&ws.id).unwrap();
    let events = store.list_events(&ws_id, &Default::default(), &PageRequest::first(10)).await.unwrap();
    assert!(events.items.is_empty(), "nothing stored: {:?}", events.items);
    store.close();
    std::fs::write(&file, good).unwrap();
    let (ok, out, err) = import(dir.path(), &ws.id, &["events", f]);
    assert!(ok, "{err}");
    assert_eq!(out["stored"].as_u64(), Some(1));
}

/// 240 monthly customers signing up from January to August; a quarter of those who came through `partner` leave in
/// their fourth month, the others stay. Every account's `status` column says how it ended.
fn attribute_story(dir: &Path) -> [String; 3] {
    let (mut accounts, mut subs, mut events) = (
        String::from("account_id,channel,status,name\n"),
        String::from("account_id,start_date,end_date,mrr\n"),
        String::from("account_id,event_time,event_type,user_id\n"),
    );
    for i in 0..240u32 {
        let channel = ["partner", "web", "sales"][i as usize % 3];
        let leaves = channel == "partner" && i % 4 != 3;
        let start = chrono::NaiveDate::from_ymd_opt(2020, 1 + i % 8, 1).unwrap();
        let months = if leaves { 3 } else { 12 - i % 8 };
        let status = if leaves { "cancelled" } else { "active" };
        accounts.push_str(&format!("{i},{channel},{status},Company {i}\n"));
        for m in 0..months {
            let from = start + chrono::Months::new(m);
            subs.push_str(&format!("{i},{from},{},10\n", from + chrono::Months::new(1)));
            for d in [2, 9, 16, 23] {
                events.push_str(&format!("{i},{} 10:00:00,login,0\n", from + chrono::Days::new(d)));
            }
        }
    }
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    [write("accounts.csv", &accounts), write("subscriptions.csv", &subs), write("events.csv", &events)]
}

#[test]
fn imported_account_columns_are_features_and_an_outcome_column_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "Attributes");
    let files = tempfile::tempdir().unwrap();
    let [accounts, subs, events] = attribute_story(files.path());
    for (kind, file) in [("accounts", &accounts), ("subscriptions", &subs), ("events", &events)] {
        let (ok, _, err) = import(dir.path(), &ws.id, &["--user-scope", "account", kind, file]);
        assert!(ok, "{err}");
    }
    let out = steward(&[
        "evaluate",
        "--workspace",
        &ws.id,
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--test-from",
        "2020-09-01",
        "--json",
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let card: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The channel is what the account is; the status says how it ended, which no forecast may
    // know; the name is one per account.
    assert_eq!(card["features"]["attributes"], json!([{"key": "channel", "values": ["partner", "sales", "web"]}]));
    let auc = card["horizons"][0]["auc"].as_f64().unwrap_or_else(|| panic!("{card}"));
    assert!(auc > 0.6, "the channel tells partner accounts apart: {card}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluate_and_predict_count_the_workspaces_key_events() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "Key events");
    let files = tempfile::tempdir().unwrap();
    let [accounts, subs, events] = attribute_story(files.path());
    // A rarer event beside the logins: never among the default key events while logins are
    // the most frequent, so only the setting can make it one.
    let exports = files.path().join("exports.csv");
    let mut text = String::from("account_id,event_time,event_type,user_id\n");
    for i in (0..240u32).step_by(2) {
        text.push_str(&format!("{i},2020-{:02}-20 10:00:00,Report Exported,0\n", 1 + i % 8));
    }
    std::fs::write(&exports, text).unwrap();
    for (kind, file) in [
        ("accounts", accounts.as_str()),
        ("subscriptions", &subs),
        ("events", &events),
        ("events", exports.to_str().unwrap()),
    ] {
        let (ok, _, err) = import(dir.path(), &ws.id, &["--user-scope", "account", kind, file]);
        assert!(ok, "{err}");
    }
    let data_dir = dir.path().to_str().unwrap();
    let card = |dir: &str| -> Value {
        let out =
            steward(&["evaluate", "--workspace", &ws.id, "--data-dir", dir, "--test-from", "2020-09-01", "--json"])
                .output()
                .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(card(data_dir)["features"]["metrics"], json!(["login", "Report Exported"]), "the default: by frequency");

    // Configured with the event spelled another way, the models count that event alone.
    {
        let store = open_store(dir.path());
        let (id, _) = ids(&ws.id, "0");
        store
            .put_setting(&id, "scoring", &json!({"key_events": ["report_exported"]}), chrono::Utc::now())
            .await
            .unwrap();
        store.close();
    }
    assert_eq!(card(data_dir)["features"]["metrics"], json!(["Report Exported"]));
    let out_file = files.path().join("forecasts.csv");
    let out = steward(&[
        "predict",
        "--workspace",
        &ws.id,
        "--data-dir",
        data_dir,
        "--at",
        "2020-10-01",
        "--out",
        out_file.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written = std::fs::read_to_string(&out_file).unwrap();
    let rows: Vec<&str> = written.lines().collect();
    assert_eq!(rows[0], "account_id,observation_date,horizon_days,churn_probability");
    // Every account still paying on 2020-10-01, at each of three horizons.
    let eligible = rows[1..].iter().filter(|r| r.contains(",30,")).count();
    assert!(eligible > 100, "{written}");
    assert_eq!(rows.len() - 1, eligible * 3);
}

/// Row `i` of a large events file: account, time, user and note (rows 5 and 25,000 are the same;
/// every thousandth note holds a line end).
fn large_row(i: usize) -> (usize, String, String, String) {
    let i = if i == 25_000 { 5 } else { i };
    let note = if i % 1000 == 7 { format!("a note\non two lines, \"{i}\"") } else { format!("n{i}") };
    (i % 50, format!("2020-01-{:02} 10:{:02}:{:02}", 1 + i % 28, i % 60, i / 60 % 60), format!("u{}", i % 7), note)
}

/// Row `i` as CSV: a note with a line end is quoted.
fn large_csv_row(i: usize) -> String {
    let (account, time, user, note) = large_row(i);
    let note = if note.contains('\n') { format!("\"{}\"", note.replace('"', "\"\"")) } else { note };
    format!("{account},{time},like,{user},{note}\n")
}

/// Row `i` as a JSON line: the line end in a note is escaped, and a blank line follows it.
fn large_json_row(i: usize) -> String {
    let (account, time, user, note) = large_row(i);
    let blank = if note.contains('\n') { "\n" } else { "" };
    let object =
        json!({"account_id": account, "event_time": time, "event_type": "like", "user_id": user, "note": note});
    format!("{object}\n{blank}")
}

/// A file of many chunks (it is read on several threads), as CSV and as JSON lines: rows come
/// back in file order, copies of a row far apart are two events, a line end in a field is part
/// of it, and a bad line late in the file is named by its line (counting the quoted line ends
/// or blank lines before it).
#[tokio::test]
async fn a_large_file_imports_in_order_once_and_names_a_late_bad_line() {
    let rows = 30_000;
    let bad_row = 28_123;
    for (ext, header, row, bad_text, first_line) in [
        (
            "csv",
            "account_id,event_time,event_type,user_id,note\n",
            large_csv_row as fn(usize) -> String,
            "1,2020-13-01 10:00:00,like,u1,x\n",
            2,
        ),
        (
            "jsonl",
            "",
            large_json_row,
            "{\"event_time\": \"2020-13-01 10:00:00\", \"event_type\": \"like\", \"user_id\": \"u1\"}\n",
            1,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ws = create_workspace(dir.path(), "Large");
        let files = tempfile::tempdir().unwrap();
        let text: String = std::iter::once(header.to_owned()).chain((0..rows).map(row)).collect();
        assert!(text.len() > 3 * (256 << 10), "several chunks");
        let file = files.path().join(format!("events.{ext}.gz"));
        gzip(&file, &text);
        let f = file.to_str().unwrap();
        for round in 0..2 {
            let (ok, out, err) = import(dir.path(), &ws.id, &["--user-scope", "account", "events", f]);
            assert!(ok, "{ext}: {err}");
            let stored = if round == 0 { rows as u64 } else { 0 };
            assert_eq!((out["rows"].as_u64(), out["stored"].as_u64()), (Some(rows as u64), Some(stored)), "{ext}");
        }
        let store = open_store(dir.path());
        let ws_id = WorkspaceId::parse(&ws.id).unwrap();
        let log = store.read_log(&ws_id, store::LogPosition::ZERO, rows + 10).await.unwrap();
        assert_eq!(log.len(), rows);
        // In file order: the n-th event is the n-th row.
        for i in [0, 1, 7, 4_999, 17_007, 29_999] {
            let payload: Value = serde_json::from_str(&log[i].event.payload).unwrap();
            assert_eq!(payload["properties"]["note"], json!(large_row(i).3), "{ext} row {i}");
        }
        let (copy, original) = (&log[25_000].event, &log[5].event);
        assert_eq!((copy.timestamp, &copy.user_id), (original.timestamp, &original.user_id));
        assert_ne!(copy.message_id, original.message_id, "copies are told apart");
        assert_eq!(copy.message_id.strip_suffix("_2"), original.message_id.strip_suffix("_1"));
        store.close();
        drop(store);

        // A bad time late in the file.
        let bad: String = std::iter::once(header.to_owned())
            .chain((0..rows).map(|i| if i == bad_row { bad_text.to_owned() } else { row(i) }))
            .collect();
        let bad_file = files.path().join(format!("bad.{ext}"));
        std::fs::write(&bad_file, &bad).unwrap();
        let line = first_line + bad_row + (0..bad_row).filter(|i| i % 1000 == 7).count();
        let args = ["--user-scope", "account", "events", bad_file.to_str().unwrap()];
        let (ok, _, err) = import(dir.path(), &ws.id, &args);
        assert!(!ok);
        assert!(err.contains(&format!("line {line}:")) && err.contains("2020-13-01"), "{ext}: {err}");
    }
}

/// Everything processing derived for the accounts of [`large_row`]: each account, its people
/// and its daily rollups.
async fn derived(dir: &Path, ws: &str) -> Vec<Value> {
    let store = open_store(dir);
    let ws = WorkspaceId::parse(ws).unwrap();
    let mut out = Vec::new();
    for id in 0..50 {
        let account = AccountId::parse(&id.to_string()).unwrap();
        let a = store.get_account(&ws, &account).await.unwrap().unwrap();
        let page = store.account_people(&ws, &account, &PageRequest::first(100)).await.unwrap();
        let mut people: Vec<Value> = page.items.into_iter().map(|p| serde_json::to_value(p).unwrap()).collect();
        people.sort_by_key(|p| p["user_id"].to_string());
        let (from, to) = ("2020-01-01".parse().unwrap(), "2020-02-01".parse().unwrap());
        let usage: Vec<Value> = store
            .account_usage(&ws, &account, from, to)
            .await
            .unwrap()
            .into_iter()
            .map(|d| json!([d.metric, d.day.to_string(), d.events, d.users]))
            .collect();
        assert!(!usage.is_empty(), "account {id} has rollups");
        out.push(json!({"account": serde_json::to_value(a).unwrap(), "people": people, "usage": usage}));
    }
    store.close();
    out
}

/// Processing beside an import works from the events it appended, in memory; what it derives
/// is what processing the log from the start derives (a replay), whether processing was up to
/// date when the import began or had events of the workspace still to process.
#[tokio::test]
async fn an_imports_processing_derives_what_processing_the_log_does() {
    let rows = 60_000;
    let files = tempfile::tempdir().unwrap();
    let text: String = std::iter::once("account_id,event_time,event_type,user_id,note\n".to_owned())
        .chain((0..rows).map(large_csv_row))
        .collect();
    let file = files.path().join("events.csv");
    std::fs::write(&file, &text).unwrap();
    for behind in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let ws = create_workspace(dir.path(), "Processed");
        if behind {
            // Events of the workspace appended but not processed yet: an account's traits and
            // a person seen before the import.
            let store = open_store(dir.path());
            let ws_id = WorkspaceId::parse(&ws.id).unwrap();
            let earlier = |id: &str, payload: Value| domain::NewEvent {
                message_id: id.into(),
                kind: if payload["type"] == "group" { domain::EventType::Group } else { domain::EventType::Track },
                name: payload["event"].as_str().map(str::to_owned),
                user_id: payload["userId"].as_str().map(str::to_owned),
                anonymous_id: None,
                group_id: payload["groupId"].as_str().or(payload["context"]["groupId"].as_str()).map(str::to_owned),
                previous_id: None,
                timestamp: "2020-01-02T00:00:00Z".parse().unwrap(),
                received_at: "2020-01-02T00:00:00Z".parse().unwrap(),
                payload: payload.to_string(),
            };
            let events = [
                earlier("early-1", json!({"type": "group", "groupId": "3", "traits": {"plan": "pro"}})),
                earlier(
                    "early-2",
                    json!({"type": "track", "event": "like", "userId": "3/u1", "context": {"groupId": "3"}}),
                ),
            ];
            assert_eq!(store.append_events(&ws_id, &events).await.unwrap().stored, 2);
            store.close();
        }
        let (ok, out, err) = import(dir.path(), &ws.id, &["--user-scope", "account", "events", file.to_str().unwrap()]);
        assert!(ok, "{err}");
        assert_eq!(out["stored"].as_u64(), Some(rows as u64));
        let imported = derived(dir.path(), &ws.id).await;
        if behind {
            assert_eq!(imported[3]["account"]["traits"], json!({"plan": "pro"}), "the earlier events were processed");
        }
        let replay =
            steward(&["replay", "--workspace", &ws.id, "--data-dir", dir.path().to_str().unwrap()]).output().unwrap();
        assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
        let mut replayed = derived(dir.path(), &ws.id).await;
        for (i, (mut a, b)) in imported.into_iter().zip(&mut replayed).enumerate() {
            // First and last seen are kept to the minute, so they may differ by less than one
            // with the slicing; everything else is exactly the same.
            let seen = |x: &mut Value, y: &mut Value| {
                for key in ["first_seen_at", "last_seen_at"] {
                    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
                    let gap = (at(&x[key]) - at(&y[key])).num_milliseconds().abs();
                    assert!(gap < processor::SEEN_RESOLUTION_MS, "account {i} {key}: {} and {}", x[key], y[key]);
                    x[key] = Value::Null;
                    y[key] = Value::Null;
                }
            };
            seen(&mut a["account"], &mut b["account"]);
            let people = a["people"].as_array_mut().unwrap().iter_mut().zip(b["people"].as_array_mut().unwrap());
            for (x, y) in people {
                seen(x, y);
            }
            assert_eq!(&a, b, "account {i} (behind: {behind})");
        }
    }
}
