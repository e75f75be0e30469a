//! Evaluation: whether a subject is a member now, and the next moment that can change if
//! nothing new arrives. Time moves a result in two ways only: a window slides past days with
//! events (`count`, `active_days`), and whole days pass since or until a time (`days_since`,
//! `days_until`). Each
//! value knows how it moves, so a test finds the moment it flips instead of being asked again
//! every day.

use chrono::{DateTime, Days, NaiveDate, Utc};
use std::cmp::Ordering;

use crate::Segment;
use crate::check::{Cond, Field, Term, Test, parse_time};

/// A value of a subject, as [`Facts`] gives it.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Missing,
    Num(f64),
    Text(String),
    Bool(bool),
    Time(DateTime<Utc>),
    /// A calendar day (UTC), for what is known by the day.
    Day(NaiveDate),
}

impl Val {
    /// A trait's value: numbers, texts and yes/no as they are; anything else is missing.
    pub fn from_json(v: &serde_json::Value) -> Val {
        match v {
            serde_json::Value::Number(n) => n.as_f64().map_or(Val::Missing, Val::Num),
            serde_json::Value::String(s) => Val::Text(s.clone()),
            serde_json::Value::Bool(b) => Val::Bool(*b),
            _ => Val::Missing,
        }
    }

    /// The moment a time-like value stands for: a day's start.
    fn instant(&self) -> Option<DateTime<Utc>> {
        match self {
            Val::Time(t) => Some(*t),
            Val::Day(d) => Some(midnight(*d)),
            Val::Text(s) => parse_time(s),
            _ => None,
        }
    }
}

/// What evaluation needs to know of one subject (an account or a person).
pub trait Facts {
    fn field(&self, field: Field) -> Val;
    fn trait_value(&self, key: &str) -> Val;
    /// Events per day from `from` to `to` (both included) of any of `events`, or of any
    /// usage for `None`. Days without events may be left out.
    fn daily(&self, events: Option<&[String]>, from: NaiveDate, to: NaiveDate) -> Vec<(NaiveDate, u32)>;
    /// The first and the last day with any of `events`.
    fn first_day(&self, events: &[String]) -> Option<NaiveDate>;
    fn last_day(&self, events: &[String]) -> Option<NaiveDate>;
    /// Whether the subject is a member of the segment named `name` now.
    fn in_segment(&self, name: &str) -> bool;
}

/// Whether a subject is a member, and when that can next change with no new data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub member: bool,
    /// `None`: only new data (an event, a trait, a score, another segment's change) can.
    pub next_change: Option<DateTime<Utc>>,
}

/// How a value moves as time passes, with no new data.
#[derive(Clone, Debug)]
enum Path {
    Fixed,
    /// Whole days since `origin`: `k` from `origin + k days` on.
    Days {
        origin: DateTime<Utc>,
    },
    /// Whole days left until `target`: `k` from `target - (k + 1) days` until `target - k
    /// days` (so `-1` from `target` on).
    DaysLeft {
        target: DateTime<Utc>,
    },
    /// The value from each moment on, in time order.
    Changes(Vec<(DateTime<Utc>, f64)>),
}

impl Path {
    fn first_change(&self, now: DateTime<Utc>, value: f64) -> Option<DateTime<Utc>> {
        match self {
            Path::Fixed => None,
            Path::Days { origin } => Some(*origin + chrono::Duration::days(value as i64 + 1)).filter(|t| *t > now),
            Path::DaysLeft { target } => Some(*target - chrono::Duration::days(value as i64)).filter(|t| *t > now),
            Path::Changes(c) => c.first().map(|(t, _)| *t),
        }
    }
}

impl Segment {
    /// Evaluates the segment for the subject `facts` describes, at `now`.
    pub fn evaluate(&self, facts: &dyn Facts, now: DateTime<Utc>) -> Verdict {
        cond(&self.cond, facts, now)
    }
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn cond(c: &Cond, facts: &dyn Facts, now: DateTime<Utc>) -> Verdict {
    match c {
        Cond::Not(inner) => {
            let v = cond(inner, facts, now);
            Verdict { member: !v.member, next_change: v.next_change }
        }
        Cond::All(parts) => combine(parts, facts, now, true),
        Cond::Any(parts) => combine(parts, facts, now, false),
        Cond::InSegment(name) => Verdict { member: facts.in_segment(name), next_change: None },
        Cond::Within(a, b, seconds) => {
            let (a, _) = term(a, facts, now);
            let (b, _) = term(b, facts, now);
            let member = match (a.instant(), b.instant()) {
                (Some(x), Some(y)) if matches!(a, Val::Day(_)) || matches!(b, Val::Day(_)) => {
                    let apart = (x.date_naive() - y.date_naive()).num_days().abs();
                    apart * 86_400 <= *seconds
                }
                (Some(x), Some(y)) => (x - y).num_seconds().abs() <= *seconds,
                _ => false,
            };
            Verdict { member, next_change: None }
        }
        Cond::Test(t, test) => {
            let (v, path) = term(t, facts, now);
            match test {
                Test::IsSet(negated) => Verdict { member: (v != Val::Missing) != *negated, next_change: None },
                Test::Truth => Verdict { member: v == Val::Bool(true), next_change: None },
                Test::In(list, negated) => {
                    let holds = |x: &Val| list.iter().any(|item| compare(x, item) == Some(Ordering::Equal)) != *negated;
                    let member = v != Val::Missing && holds(&v);
                    let critical: Vec<f64> =
                        list.iter().filter_map(|i| if let Val::Num(n) = i { Some(*n) } else { None }).collect();
                    let next = flip(&v, &path, now, &critical, |x| holds(&Val::Num(x)));
                    Verdict { member, next_change: next }
                }
                Test::Cmp(op, right) => {
                    let (r, rpath) = term(right, facts, now);
                    let holds = |a: &Val, b: &Val| compare(a, b).is_some_and(|o| op.holds(o));
                    let member = holds(&v, &r);
                    let next = match (&path, &rpath, &v, &r) {
                        (Path::Fixed, Path::Fixed, _, _) => None,
                        (_, Path::Fixed, _, Val::Num(c)) => flip(&v, &path, now, &[*c], |x| holds(&Val::Num(x), &r)),
                        (Path::Fixed, _, Val::Num(c), _) => flip(&r, &rpath, now, &[*c], |x| holds(&v, &Val::Num(x))),
                        // Both move: ask again when either does.
                        (_, _, Val::Num(a), Val::Num(b)) => {
                            earliest(path.first_change(now, *a), rpath.first_change(now, *b))
                        }
                        _ => None,
                    };
                    Verdict { member, next_change: next }
                }
            }
        }
    }
}

/// `and` (`all`) or `or` of the parts. It cannot change before the parts that decide it do:
/// for a false `and`, its false parts (and never, if one of them never changes); for a
/// true `or`, its true parts likewise; otherwise any part.
fn combine(parts: &[Cond], facts: &dyn Facts, now: DateTime<Utc>, all: bool) -> Verdict {
    let verdicts: Vec<Verdict> = parts.iter().map(|p| cond(p, facts, now)).collect();
    let member = if all { verdicts.iter().all(|v| v.member) } else { verdicts.iter().any(|v| v.member) };
    // The parts whose value is the opposite of the neutral one decide the result.
    let deciding: Vec<&Verdict> = verdicts.iter().filter(|v| v.member != all).collect();
    let next_change = if deciding.is_empty() {
        verdicts.iter().fold(None, |n, v| earliest(n, v.next_change))
    } else if deciding.iter().any(|v| v.next_change.is_none()) {
        None
    } else {
        deciding.iter().fold(None, |n, v| earliest(n, v.next_change))
    };
    Verdict { member, next_change }
}

/// The first moment after `now` at which `holds` of the moving value differs from now.
/// `critical` holds the constants it is tested against: between them a whole-day count
/// cannot change the result.
fn flip(
    v: &Val,
    path: &Path,
    now: DateTime<Utc>,
    critical: &[f64],
    holds: impl Fn(f64) -> bool,
) -> Option<DateTime<Utc>> {
    let Val::Num(v0) = *v else { return None };
    let was = holds(v0);
    match path {
        Path::Fixed => None,
        Path::Changes(changes) => changes.iter().find(|(_, x)| holds(*x) != was).map(|(t, _)| *t),
        Path::Days { origin } => {
            let mut candidates: Vec<f64> = vec![v0 + 1.0];
            for c in critical {
                candidates.push(c.ceil());
                candidates.push(c.floor() + 1.0);
            }
            candidates.retain(|k| *k > v0);
            candidates.sort_by(f64::total_cmp);
            let k = candidates.into_iter().find(|k| holds(*k) != was)?;
            let at = *origin + chrono::Duration::days(k as i64);
            (at > now).then_some(at)
        }
        Path::DaysLeft { target } => {
            // The count only falls: the next value, and those on either side of each bound.
            let mut candidates: Vec<f64> = vec![v0 - 1.0];
            for c in critical {
                candidates.push(c.floor());
                candidates.push(c.ceil() - 1.0);
            }
            candidates.retain(|k| *k < v0);
            candidates.sort_by(|a, b| b.total_cmp(a));
            let k = candidates.into_iter().find(|k| holds(*k) != was)?;
            let at = *target - chrono::Duration::days(k as i64 + 1);
            (at > now).then_some(at)
        }
    }
}

fn compare(a: &Val, b: &Val) -> Option<Ordering> {
    match (a, b) {
        (Val::Missing, _) | (_, Val::Missing) => None,
        (Val::Num(x), Val::Num(y)) => x.partial_cmp(y),
        (Val::Text(x), Val::Text(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        (Val::Time(_) | Val::Day(_), _) | (_, Val::Time(_) | Val::Day(_)) => {
            let (x, y) = (a.instant()?, b.instant()?);
            match (a, b) {
                // A day against a time compares by calendar day.
                (Val::Day(d), _) => Some(d.cmp(&y.date_naive())),
                (_, Val::Day(d)) => Some(x.date_naive().cmp(d)),
                _ => Some(x.cmp(&y)),
            }
        }
        _ => None,
    }
}

fn term(t: &Term, facts: &dyn Facts, now: DateTime<Utc>) -> (Val, Path) {
    match t {
        Term::Const(v) => (v.clone(), Path::Fixed),
        Term::Field(f) => (facts.field(*f), Path::Fixed),
        Term::Trait(k) => (facts.trait_value(k), Path::Fixed),
        Term::First(events) => (facts.first_day(events).map_or(Val::Missing, Val::Day), Path::Fixed),
        Term::Last(events) => (facts.last_day(events).map_or(Val::Missing, Val::Day), Path::Fixed),
        Term::DaysSince(inner) => {
            let (v, _) = term(inner, facts, now);
            let Some(origin) = v.instant() else { return (Val::Missing, Path::Fixed) };
            let days = whole_days(now - origin);
            (Val::Num(days as f64), Path::Days { origin })
        }
        Term::DaysUntil(inner) => {
            let (v, _) = term(inner, facts, now);
            let Some(target) = v.instant() else { return (Val::Missing, Path::Fixed) };
            // Whole days left, counted so that each value starts at an exact moment: 0 in
            // the last day before `target`, -1 from `target` on.
            let days = -whole_days(now - target) - 1;
            (Val::Num(days as f64), Path::DaysLeft { target })
        }
        Term::Count(events, days) => window(facts, Some(events), *days, now, |n| n as f64),
        Term::ActiveDays(events, days) => window(facts, events.as_deref(), *days, now, |n| f64::from(u8::from(n > 0))),
    }
}

/// Whole days in `d`, rounded down (so a moment before a time is day -1 of it).
fn whole_days(d: chrono::Duration) -> i64 {
    let seconds = d.num_seconds();
    // `num_seconds` rounds toward zero; a part of a second before counts as a whole one.
    let seconds = if d < chrono::Duration::seconds(seconds) { seconds - 1 } else { seconds };
    seconds.div_euclid(86_400)
}

/// A sum per day over the last `days` days (today included), and how it falls as the
/// window slides past the days it holds.
fn window(
    facts: &dyn Facts,
    events: Option<&[String]>,
    days: u32,
    now: DateTime<Utc>,
    per_day: impl Fn(u32) -> f64,
) -> (Val, Path) {
    let today = now.date_naive();
    let from = today - Days::new(u64::from(days) - 1);
    let mut daily = facts.daily(events, from, today);
    daily.retain(|(d, n)| *d >= from && *d <= today && *n > 0);
    daily.sort_by_key(|(d, _)| *d);
    let current: f64 = daily.iter().map(|(_, n)| per_day(*n)).sum();
    let mut left = current;
    let mut changes = Vec::with_capacity(daily.len());
    // A day is in the window until midnight of the day `days` days after it.
    for (d, n) in daily {
        left -= per_day(n);
        changes.push((midnight(d + Days::new(u64::from(days))), left));
    }
    (Val::Num(current), Path::Changes(changes))
}
