//! Changes this backend applies in bulk rather than one by one must end as if applied in order.

mod common;

use chrono::{DateTime, TimeZone, Utc};
use domain::AccountId;
use store::{Changes, LogPosition, Op, Store};

fn t(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, day, 12, 0, 0).unwrap()
}

fn acct(s: &str) -> AccountId {
    AccountId::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_seen_ops_widens_as_one_by_one() {
    let Some(s) = common::fresh().await else {
        eprintln!("skipped a_run_of_seen_ops_widens_as_one_by_one: no database configured");
        return;
    };
    let ws = s.create_workspace("Seen").await.unwrap().workspace_id;
    let mut ops = Vec::new();
    for p in ["p", "q"] {
        ops.push(Op::CreatePerson { person_id: p.into(), user_id: None, at: t(1) });
    }
    for a in ["a", "b", "c", "d"] {
        ops.push(Op::UpsertAccount { account_id: acct(a), at: t(1) });
    }
    for a in ["a", "b"] {
        ops.push(Op::AddMembership { person_id: "p".into(), account_id: acct(a), at: t(1) });
    }
    let seen = |p: Option<&str>, a: Option<&str>, first, last| Op::Seen {
        person_id: p.map(str::to_owned),
        account_id: a.map(acct),
        first: t(first),
        last: t(last),
    };
    ops.extend([
        seen(Some("p"), None, 5, 6),
        seen(Some("p"), Some("c"), 10, 12),
        seen(Some("q"), None, 7, 7),
        seen(Some("p"), None, 3, 9),
        seen(None, Some("d"), 2, 4),
        seen(Some("nobody"), Some("c"), 8, 20),
    ]);
    // A membership after the run does not count for it; a later run widens it.
    ops.push(Op::AddMembership { person_id: "q".into(), account_id: acct("d"), at: t(1) });
    ops.push(seen(Some("q"), None, 1, 1));
    assert!(
        s.apply_changes(&ws, LogPosition::ZERO, LogPosition::ZERO, &Changes { ops, ..Default::default() })
            .await
            .unwrap()
    );

    let person = |id: &'static str| {
        let s = &s;
        let ws = &ws;
        async move {
            let p = s.get_person(ws, id).await.unwrap().unwrap();
            (p.first_seen_at, p.last_seen_at)
        }
    };
    let account = |id: &'static str| {
        let s = &s;
        let ws = &ws;
        async move {
            let a = s.get_account(ws, &acct(id)).await.unwrap().unwrap();
            (a.first_seen_at, a.last_seen_at)
        }
    };
    assert_eq!(person("p").await, (Some(t(3)), Some(t(12))));
    assert_eq!(person("q").await, (Some(t(1)), Some(t(7))));
    assert_eq!(account("a").await, (Some(t(3)), Some(t(9))), "the person's accounts, without an explicit one");
    assert_eq!(account("b").await, (Some(t(3)), Some(t(9))));
    assert_eq!(account("c").await, (Some(t(8)), Some(t(20))), "only when explicit");
    assert_eq!(account("d").await, (Some(t(1)), Some(t(4))));
}
