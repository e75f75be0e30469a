use super::*;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use std::collections::HashMap;

fn schema(kind: Kind) -> Schema {
    Schema {
        kind,
        traits: vec!["region".into(), "beta".into(), "employees".into(), "renewal".into()],
        events: vec!["Report Created".into(), "Project Created".into(), "login".into()],
        segments: vec!["Onboarding".into(), "Champions".into()],
        name: Some("At risk".into()),
    }
}

fn accounts() -> Schema {
    schema(Kind::Accounts)
}

fn err(text: &str) -> Error {
    compile(text, &accounts()).expect_err(text)
}

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

#[derive(Default)]
struct Subject {
    fields: HashMap<Field, Val>,
    traits: HashMap<String, Val>,
    /// (day, event, count)
    events: Vec<(NaiveDate, String, u32)>,
    segments: Vec<String>,
}

impl Facts for Subject {
    fn field(&self, field: Field) -> Val {
        self.fields.get(&field).cloned().unwrap_or(Val::Missing)
    }
    fn trait_value(&self, key: &str) -> Val {
        self.traits.get(key).cloned().unwrap_or(Val::Missing)
    }
    fn daily(&self, events: Option<&[String]>, from: NaiveDate, to: NaiveDate) -> Vec<(NaiveDate, u32)> {
        let mut by_day: HashMap<NaiveDate, u32> = HashMap::new();
        for (d, e, n) in &self.events {
            if (from..=to).contains(d) && events.is_none_or(|es| es.contains(e)) {
                *by_day.entry(*d).or_default() += n;
            }
        }
        by_day.into_iter().collect()
    }
    fn first_day(&self, events: &[String]) -> Option<NaiveDate> {
        self.events.iter().filter(|(_, e, _)| events.contains(e)).map(|(d, _, _)| *d).min()
    }
    fn last_day(&self, events: &[String]) -> Option<NaiveDate> {
        self.events.iter().filter(|(_, e, _)| events.contains(e)).map(|(d, _, _)| *d).max()
    }
    fn in_segment(&self, name: &str) -> bool {
        self.segments.iter().any(|s| s == name)
    }
}

fn account(health: Option<f64>, plan: &str) -> Subject {
    let mut s = Subject::default();
    if let Some(h) = health {
        s.fields.insert(Field::Health, Val::Num(h));
    }
    s.fields.insert(Field::Plan, Val::Text(plan.into()));
    s
}

fn member(text: &str, s: &Subject, now: DateTime<Utc>) -> bool {
    compile(text, &accounts()).unwrap().evaluate(s, now).member
}

#[test]
fn parse_errors_give_the_line_and_column_and_say_what_was_expected() {
    let e = err("health < 40 and\n  plan in (\"pro\" \"team\")");
    assert_eq!((e.line, e.column, e.length), (2, 18, 6), "{e}");
    assert_eq!(e.message, "expected `,` or `)` to end the list, found the text \"team\"");

    let e = err("health <");
    assert_eq!((e.line, e.column), (1, 9));
    assert!(e.message.starts_with("expected a value"), "{e}");
    assert!(e.message.ends_with("found the end of the text"), "{e}");

    let e = err("(health < 40 or mrr > 10");
    assert_eq!((e.line, e.column), (1, 25));
    assert_eq!(e.message, "expected `)` to close the `(`, found the end of the text");

    let e = err("health = 40");
    assert_eq!((e.line, e.column, e.length), (1, 8, 1));
    assert_eq!(e.message, "`=` is not an operator; use `==`");

    let e = err("plan == \"pro");
    assert_eq!((e.line, e.column), (1, 9));
    assert_eq!(e.message, "this text has no closing quote");

    let e = err("health < 40 plan == \"pro\"");
    assert_eq!((e.line, e.column), (1, 13));
    assert_eq!(e.message, "expected `and`, `or` or the end of the condition, found `plan`");

    let e = err("# only a comment\n");
    assert_eq!(e.line, 2);
    assert!(e.message.starts_with("expected a condition"), "{e}");

    let e = err("count(event report, 14d) > 0");
    assert_eq!((e.line, e.column), (1, 13));
    assert!(e.message.starts_with("expected the event's name in quotes"), "{e}");

    let e = err("in segment Onboarding");
    assert_eq!((e.line, e.column), (1, 12));

    let e = err("health < 40 and mrr ~ 10");
    assert_eq!((e.line, e.column), (1, 21));
    assert_eq!(e.message, "unexpected character '~'");

    // Columns count characters, not bytes.
    let e = err("traits.region == \"Zürich\" and  = 1");
    assert_eq!((e.line, e.column), (1, 32));
}

#[test]
fn names_and_types_are_checked_with_suggestions() {
    let e = err("helth < 40");
    assert_eq!((e.line, e.column, e.length), (1, 1, 5));
    assert!(e.message.contains("did you mean `health`?"), "{e}");

    let e = err("health < \"high\"");
    assert_eq!(e.message, "`health` is a number and `\"high\"` is a text: they cannot be compared");

    let e = err("plan > \"pro\"");
    assert!(e.message.starts_with("a text compares with == and != only"), "{e}");

    let e = err("days_since(last_seen) > 14d");
    assert_eq!((e.line, e.column), (1, 25));
    assert!(e.message.contains("write 14, not 14d"), "{e}");

    let e = err("count(event \"login\", 12h) > 0");
    assert_eq!((e.line, e.column), (1, 22));
    assert!(e.message.starts_with("a window is a whole number of days"), "{e}");

    let e = err("health");
    assert_eq!(e.message, "`health` is a number, not yes or no; compare it, as in health > 0");

    let e = err("in segment \"Churned\"");
    assert_eq!(e.message, "no segment is named \"Churned\"; there are \"Onboarding\", \"Champions\"");

    let e = err("in segment \"At risk\"");
    assert_eq!(e.message, "a segment cannot test its own membership");

    let e = err("average(health) > 3");
    assert!(e.message.starts_with("there is no function `average`"), "{e}");
    assert!(e.message.ends_with("last, days_since and days_until"), "{e}");
    let e = err("days_untl(renews_at) < 30");
    assert!(e.message.contains("did you mean `days_until`?"), "{e}");
    let e = err("days_until(open_tickets) < 30");
    assert_eq!(e.message, "days_until takes a time, and `open_tickets` is a number");
    let e = err("renew_at is set");
    assert!(e.message.contains("did you mean `renews_at`?"), "{e}");
    let e = err("urgent_tickets");
    assert!(e.message.ends_with("compare it, as in urgent_tickets > 0"), "{e}");

    let e = err("signup > \"last tuesday\"");
    assert!(e.message.starts_with("\"last tuesday\" is not a date or time"), "{e}");

    // People have their own fields.
    let e = compile("health < 40", &schema(Kind::People)).unwrap_err();
    assert!(e.message.starts_with("`health` is not a field of a person"), "{e}");
    assert!(compile("email == \"a@b.co\" and days_since(last_seen) > 3", &schema(Kind::People)).is_ok());
    let e = compile("count(event \"login\", 7d) > 0", &schema(Kind::People)).unwrap_err();
    assert_eq!((e.line, e.column, e.length), (1, 1, 24));
    assert!(e.message.starts_with("count counts an account's events"), "{e}");
}

#[test]
fn what_is_valid_but_unknown_is_a_warning() {
    let s = compile("count(event \"Invoice Paid\", 30d) > 0 and traits.tier == \"gold\"", &accounts()).unwrap();
    let messages: Vec<&str> = s.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(messages, ["no event named \"Invoice Paid\" has arrived yet", "no one has the trait \"tier\" yet"]);
    assert_eq!((s.warnings[1].line, s.warnings[1].column), (1, 42));
    assert_eq!(s.usage_days, Some(30));
    assert_eq!(s.events, ["Invoice Paid"]);
}

#[test]
fn fields_traits_lists_and_missing_values() {
    let now = at(2026, 12, 1, 12);
    let mut a = account(Some(35.0), "pro");
    a.traits.insert("region".into(), Val::Text("EMEA".into()));
    a.traits.insert("beta".into(), Val::Bool(true));
    a.traits.insert("employees".into(), Val::Num(120.0));
    let unscored = account(None, "free");

    assert!(member("health < 40", &a, now));
    assert!(!member("health < 40", &unscored, now), "a missing value fails every test");
    assert!(member("not (health < 40)", &unscored, now));
    assert!(member("plan in (\"pro\", \"team\",)", &a, now));
    assert!(!member("plan not in (\"pro\", \"team\")", &a, now));
    assert!(member("plan not in ('pro', 'team')", &unscored, now));
    assert!(member("region == \"EMEA\" and beta and employees >= 100", &a, now));
    assert!(!member("region == \"EMEA\" and beta and employees >= 100", &unscored, now));
    assert!(member("health is set", &a, now) && member("health is not set", &unscored, now));
    assert!(member("HEALTH < 40 AND NOT plan == \"free\" OR mrr > 1".to_lowercase().as_str(), &a, now));
    // `and` binds tighter than `or`.
    assert!(member("plan == \"free\" and health < 40 or plan == \"pro\"", &a, now));
    assert!(!member("plan == \"free\" and (health < 40 or plan == \"pro\")", &a, now));
    // A trait of another type than the test's fails it rather than matching by accident.
    assert!(!member("region > 3", &a, now));
    assert!(member(
        "in segment \"Onboarding\" or health < 10",
        &Subject { segments: vec!["Onboarding".into()], ..a },
        now
    ));
}

#[test]
fn events_match_however_they_are_spelled() {
    let now = at(2026, 12, 1, 12);
    let s = compile("count(event \"report_created\", 7d) >= 2", &accounts()).unwrap();
    assert_eq!(s.warnings, []);
    let mut a = account(Some(50.0), "pro");
    a.events = vec![(day("2026-11-30"), "Report Created".into(), 1), (day("2026-12-01"), "Report Created".into(), 1)];
    assert!(s.evaluate(&a, now).member);
}

#[test]
fn days_since_flips_at_the_moment_its_bound_is_crossed() {
    let seen = at(2026, 11, 10, 9);
    let mut a = account(Some(50.0), "pro");
    a.fields.insert(Field::LastSeen, Val::Time(seen));
    let s = compile("days_since(last_seen) > 14 and plan == \"pro\"", &accounts()).unwrap();

    let now = at(2026, 11, 20, 12);
    let v = s.evaluate(&a, now);
    assert!(!v.member);
    // 15 whole days after the last visit.
    let flips = seen + chrono::Duration::days(15);
    assert_eq!(v.next_change, Some(flips));
    assert!(!s.evaluate(&a, flips - chrono::Duration::seconds(1)).member);
    let after = s.evaluate(&a, flips);
    assert!(after.member);
    assert_eq!(after.next_change, None, "it stays true until something new arrives");

    // `==` is true for one day: it flips on and then off.
    let s = compile("days_since(last_seen) == 3", &accounts()).unwrap();
    let v = s.evaluate(&a, at(2026, 11, 11, 0));
    assert_eq!(v.next_change, Some(seen + chrono::Duration::days(3)));
    let v = s.evaluate(&a, seen + chrono::Duration::days(3));
    assert!(v.member);
    assert_eq!(v.next_change, Some(seen + chrono::Duration::days(4)));

    // A date given as text is a time too.
    let s = compile("days_since(\"2026-11-01\") >= 30", &accounts()).unwrap();
    assert_eq!(s.evaluate(&a, at(2026, 11, 5, 0)).next_change, Some(at(2026, 12, 1, 0)));
}

#[test]
fn days_until_a_renewal_enters_its_segments_at_their_moments() {
    let renews = at(2027, 3, 1, 10);
    let mut a = account(Some(70.0), "pro");
    a.fields.insert(Field::RenewsAt, Val::Time(renews));
    let day = chrono::Duration::days(1);

    // Whole days left: 100 days and 2 hours before is 100; the last day is 0; -1 from the time on.
    let left = compile("days_until(renews_at) == 100", &accounts()).unwrap();
    assert!(left.evaluate(&a, renews - day * 100 - chrono::Duration::hours(2)).member);
    for (now, days) in [(renews - chrono::Duration::hours(1), 0), (renews, -1), (renews + day * 3, -4)] {
        let s = compile(&format!("days_until(renews_at) == {days}"), &accounts()).unwrap();
        assert!(s.evaluate(&a, now).member, "{days} days left at {now}");
    }

    // Fewer than 90 days left: from exactly 90 days before, not a second earlier.
    let s = compile("days_until(renews_at) < 90", &accounts()).unwrap();
    let v = s.evaluate(&a, at(2026, 11, 1, 0));
    assert!(!v.member);
    assert_eq!(v.next_change, Some(renews - day * 90));
    assert!(!s.evaluate(&a, renews - day * 90 - chrono::Duration::seconds(1)).member);
    let v = s.evaluate(&a, renews - day * 90);
    assert!(v.member);
    assert_eq!(v.next_change, None, "it holds from then on");
    // At most 90 whole days left: once fewer than 91 days are.
    let s = compile("days_until(renews_at) <= 90", &accounts()).unwrap();
    assert_eq!(s.evaluate(&a, at(2026, 11, 1, 0)).next_change, Some(renews - day * 91));

    // A band of days enters at its start and leaves at its end.
    let band = compile("days_until(renews_at) < 60 and days_until(renews_at) >= 30", &accounts()).unwrap();
    let v = band.evaluate(&a, renews - day * 75);
    assert!(!v.member);
    assert_eq!(v.next_change, Some(renews - day * 60));
    let v = band.evaluate(&a, renews - day * 60);
    assert!(v.member);
    assert_eq!(v.next_change, Some(renews - day * 30));
    assert!(!band.evaluate(&a, renews - day * 30).member);

    // No renewal, no member and nothing to wait for; a date in quotes is a time too.
    let none = account(Some(70.0), "pro");
    assert_eq!(s.evaluate(&none, renews).next_change, None);
    assert!(!s.evaluate(&none, renews).member);
    let s = compile("days_until(\"2027-01-01\") < 7", &accounts()).unwrap();
    assert_eq!(s.evaluate(&a, at(2026, 12, 1, 0)).next_change, Some(at(2026, 12, 25, 0)));
}

#[test]
fn ticket_counts_are_numbers_read_from_the_tickets() {
    let now = at(2026, 12, 1, 12);
    let mut a = account(Some(50.0), "pro");
    a.fields.insert(Field::OpenTickets, Val::Num(3.0));
    a.fields.insert(Field::UrgentTickets, Val::Num(1.0));
    assert!(member("urgent_tickets > 0 and open_tickets >= 3", &a, now));
    assert!(!member("urgent_tickets == 0", &a, now));
    assert!(compile("urgent_tickets > 0", &accounts()).unwrap().tickets);
    assert!(!compile("health < 40", &accounts()).unwrap().tickets);
    let e = compile("open_tickets > 0", &schema(Kind::People)).unwrap_err();
    assert!(e.message.starts_with("`open_tickets` is not a field of a person"), "{e}");
}

#[test]
fn a_window_flips_when_its_last_events_slide_out() {
    let mut a = account(Some(50.0), "pro");
    a.events = vec![
        (day("2026-11-01"), "login".into(), 3),
        (day("2026-11-18"), "Report Created".into(), 2),
        (day("2026-11-20"), "Report Created".into(), 1),
        (day("2026-11-25"), "login".into(), 1),
    ];
    let s = compile("count(event \"Report Created\", 14d) == 0", &accounts()).unwrap();
    let now = at(2026, 11, 26, 15);
    let v = s.evaluate(&a, now);
    assert!(!v.member, "three reports in the window");
    // The window is today and the 13 days before; the 20th leaves it at midnight of the 4th.
    assert_eq!(v.next_change, Some(at(2026, 12, 4, 0)));
    assert!(!s.evaluate(&a, at(2026, 12, 3, 23)).member);
    let v = s.evaluate(&a, at(2026, 12, 4, 0));
    assert!(v.member);
    assert_eq!(v.next_change, None);

    // A bound in between: at least 2 reports holds until the 18th's leave (with the 20th's,
    // one would be left), so at midnight of the 2nd.
    let s = compile("count(event \"Report Created\", 14d) >= 2", &accounts()).unwrap();
    let v = s.evaluate(&a, now);
    assert!(v.member);
    assert_eq!(v.next_change, Some(at(2026, 12, 2, 0)));

    // Active days count days, not events, and any usage by default.
    let s = compile("active_days(28d) >= 4", &accounts()).unwrap();
    let v = s.evaluate(&a, now);
    assert!(v.member, "the 1st, 18th, 20th and 25th");
    assert_eq!(v.next_change, Some(at(2026, 11, 29, 0)), "the 1st leaves the 28-day window");
    let s = compile("active_days(event \"login\", 28d) == 2", &accounts()).unwrap();
    assert!(s.evaluate(&a, now).member);
}

#[test]
fn and_or_wait_only_for_the_parts_that_decide_them() {
    let mut a = account(Some(80.0), "pro");
    a.fields.insert(Field::LastSeen, Val::Time(at(2026, 11, 1, 0)));
    let now = at(2026, 11, 5, 0);
    // False for good (the plan) whatever the time does: nothing to wait for.
    let s = compile("plan == \"free\" and days_since(last_seen) > 10", &accounts()).unwrap();
    assert_eq!(s.evaluate(&a, now).next_change, None);
    // True for good through its first part: nothing to wait for.
    let s = compile("plan == \"pro\" or days_since(last_seen) > 10", &accounts()).unwrap();
    let v = s.evaluate(&a, now);
    assert!(v.member);
    assert_eq!(v.next_change, None);
    // Otherwise the time part decides, and `not` flips with it.
    let s = compile("not (plan == \"free\" or days_since(last_seen) > 10)", &accounts()).unwrap();
    let v = s.evaluate(&a, now);
    assert!(v.member);
    assert_eq!(v.next_change, Some(at(2026, 11, 12, 0)));
    assert!(!s.evaluate(&a, at(2026, 11, 12, 0)).member);
}

#[test]
fn first_use_within_days_of_signup() {
    let mut a = account(Some(50.0), "pro");
    a.fields.insert(Field::CreatedAt, Val::Time(at(2026, 11, 1, 15)));
    let s = compile("first(event \"Project Created\") within 7d of signup", &accounts()).unwrap();
    assert_eq!(s.usage_days, None, "first use looks at every day");
    assert_eq!(compile("health < 40", &accounts()).unwrap().usage_days, Some(0));
    let now = at(2026, 12, 1, 0);
    assert!(!s.evaluate(&a, now).member, "never created a project");
    a.events.push((day("2026-11-08"), "Project Created".into(), 1));
    assert!(s.evaluate(&a, now).member, "seven calendar days after signing up");
    a.events[0].0 = day("2026-11-09");
    assert!(!s.evaluate(&a, now).member);
    // On the day of signing up, before the signup's hour, counts as within.
    a.events[0].0 = day("2026-11-01");
    assert!(s.evaluate(&a, now).member);
    // Times compare with dates in quotes.
    assert!(member("signup >= \"2026-11-01\" and signup < \"2026-11-01T16:00:00Z\"", &a, now));
    assert!(member("last(event \"Project Created\") == \"2026-11-01\"", &a, now));
}

#[test]
fn membership_cycles_are_found() {
    let segs = |pairs: &[(&str, &[&str])]| -> Vec<(String, Vec<String>)> {
        pairs.iter().map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect())).collect()
    };
    assert_eq!(cycle(&segs(&[("a", &["b"]), ("b", &["c"]), ("c", &[])])), None);
    assert_eq!(
        cycle(&segs(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(cycle(&segs(&[("x", &[]), ("a", &["b", "x"]), ("b", &["b"])])), Some(vec!["b".into(), "b".into()]));
    let s =
        compile("in segment \"Onboarding\" and not in segment \"Champions\" or in segment \"Onboarding\"", &accounts())
            .unwrap();
    assert_eq!(s.depends_on, ["Onboarding", "Champions"]);
}

#[test]
fn a_condition_s_names_are_listed_without_a_schema() {
    let text = "mrr > 0 and not in segment \"High churn risk\"\n  and (Band == \"neutral\" or churn_risk_30d >= 0.25) # band again: band";
    assert_eq!(names(text), ["mrr", "and", "not", "in", "segment", "band", "or", "churn_risk_30d"]);
    assert_eq!(names("count(event \"Report Created\", 28d) > traits.seats"), ["count", "event", "traits", "seats"]);
    assert!(names("health < \"unterminated").is_empty(), "text that does not read as tokens names nothing");
}

#[test]
fn the_usage_a_condition_reads_is_what_it_names() {
    let days = |c: &str| compile(c, &accounts()).unwrap().usage_days;
    assert_eq!(days("health < 40 and plan == \"pro\""), Some(0), "no events, no usage");
    assert_eq!(days("active_users >= 3"), Some(crate::ACTIVE_USERS_DAYS));
    assert_eq!(days("count(event \"Project Created\", 7d) > 0"), Some(7));
    assert_eq!(days("count(event \"Project Created\", 7d) > 0 and active_users > 1"), Some(28));
    assert_eq!(days("count(event \"Project Created\", 90d) > 0 or active_users > 1"), Some(90));
}

#[test]
fn a_condition_reads_scores_and_subscriptions_when_it_names_their_fields() {
    let reads = |c: &str| {
        let s = compile(c, &accounts()).unwrap();
        (s.scores, s.subscriptions, s.tickets)
    };
    assert_eq!(reads("days_since(last_seen) > 14 and traits.region == \"EMEA\""), (false, false, false));
    assert_eq!(reads("health < 40 or band == \"at_risk\""), (true, false, false));
    assert_eq!(reads("churn_risk_90d > 0.5 or expansion > 0.5"), (true, false, false));
    assert_eq!(reads("plan == \"pro\" or seats > 10 or days_until(renews_at) < 30"), (false, true, false));
    assert_eq!(reads("mrr > 100"), (true, true, false), "mrr is the subscriptions', else the score's");
    assert_eq!(reads("urgent_tickets > 0"), (false, false, true));
}

#[test]
fn a_condition_names_the_traits_it_reads() {
    let traits = |c: &str| compile(c, &accounts()).unwrap().traits;
    assert!(traits("health < 40 and days_since(last_seen) > 14").is_empty());
    assert_eq!(traits("traits.region == \"EMEA\" and traits.region != \"x\""), ["region"]);
    assert_eq!(traits("employees > 50 or traits.tier is not set"), ["employees", "tier"]);
    assert_eq!(traits("domain == \"acme.io\""), ["domain", "website"], "the fallback too");
    assert_eq!(traits("plan == \"pro\" or seats > 10 or name == \"Acme\""), ["name", "plan", "seats"]);
}
