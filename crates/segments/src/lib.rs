//! The segment filter language: a segment is a condition on an account (or a person), and its
//! members are those for which it holds now.
//!
//! ```text
//! health < 40 and churn_risk_30d > 0.6
//! plan in ("pro", "team") and not in segment "Onboarding"
//! count(event "Report Created", 14d) == 0 and days_since(last_seen) > 14
//! first(event "Project Created") within 7d of signup
//! traits.region == "EMEA" or mrr >= 1000    # comments run to the end of the line
//! days_until(renews_at) < 90 and urgent_tickets == 0
//! ```
//!
//! - **Values**: numbers (`40`, `0.6`), texts in double or single quotes, `true`, `false`,
//!   durations (`30m`, `12h`, `14d`, `2w`); the subject's fields ([`Field`]: scores, money,
//!   seats, plan, times; an account's `renews_at`, when its current paid period or contract
//!   ends, the latest end of its active subscriptions; `open_tickets`, its support tickets
//!   not solved or closed, and `urgent_tickets`, those of them of priority high or urgent),
//!   its traits (by name when the workspace has that trait, or `traits.name` always), and
//!   functions:
//!   - `count(event "E", 14d)`: events named E in the last 14 days (today and the 13 before);
//!   - `active_days(14d)`, `active_days(event "E", 14d)`: days with any usage, or with E;
//!   - `first(event "E")`, `last(event "E")`: the day E was first or last seen;
//!   - `days_since(T)`: whole days from the time T to now (`days_since(last_seen)`);
//!   - `days_until(T)`: whole days left from now to T, negative once T is past: 90 from 91
//!     days before T until 90 days before, 0 in the last day, -1 from T on; so
//!     `days_until(renews_at) < 90` holds from exactly 90 days before the renewal.
//!
//!   Windows are whole days (events are counted per day, UTC); event names match as the
//!   workspace's events do: case, spaces, `_` and `-` aside (`report_created` is `Report Created`).
//! - **Tests**: `==`, `!=`, `<`, `<=`, `>`, `>=`; `v in (a, b)` and `v not in (...)`;
//!   `v is set`, `v is not set`; `T within 7d of U` (at most 7 days apart; by calendar day
//!   when either is a day); `in segment "Name"`; a yes/no value alone (`traits.beta`).
//!   A time compares with a date or time in quotes: `signup >= "2026-01-01"`.
//! - **Logic**: `and`, `or`, `not`, parentheses; `and` binds tighter than `or`. Keywords
//!   are case-insensitive.
//! - **Missing values**: a test of a value the subject does not have is false (so
//!   `health < 40` leaves out accounts not scored yet, and `not (health < 40)` takes them in).
//!
//! [`compile`] parses and checks a condition against a [`Schema`] (what the workspace has),
//! with errors that give the line and column and say what was expected. [`Segment::evaluate`]
//! tells whether a subject is a member now and the next moment that can change with no new
//! data ([`Verdict::next_change`]): when a window slides past the subject's last events or a
//! `days_since` or `days_until` crosses its bound, so time-based conditions flip when their
//! time comes.

mod check;
mod eval;
mod lex;
mod parse;

pub use check::{ACTIVE_USERS_DAYS, Field, Kind, Schema, Warning};
pub use eval::{Facts, Val, Verdict};
pub use lex::Cmp;

use serde::Serialize;

/// A stretch of the condition's text, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    fn to(self, end: Span) -> Span {
        Span { start: self.start, end: end.end.max(self.end) }
    }
}

/// Why a condition is not valid, and where: line and column (from 1, in characters) of the
/// first character at fault and how many characters it spans.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Error {
    pub line: usize,
    pub column: usize,
    pub length: usize,
    pub message: String,
}

impl Error {
    pub(crate) fn at(text: &str, span: Span, message: impl Into<String>) -> Error {
        let (line, column) = position(text, span.start);
        let end = span.end.min(text.len()).max(span.start);
        let length = text.get(span.start..end).map_or(0, |s| s.chars().count());
        Error { line, column, length, message: message.into() }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for Error {}

/// Line and column, from 1, of byte `offset` of `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A checked condition, ready to evaluate.
#[derive(Clone, Debug)]
pub struct Segment {
    pub(crate) cond: check::Cond,
    /// Other segments it tests membership of, by name.
    pub depends_on: Vec<String>,
    /// The events it counts or looks up, as written.
    pub events: Vec<String>,
    /// How many days of usage it reads, today included: `Some(0)` when none, `None` when all
    /// of it (`first` and `last` look at every day).
    pub usage_days: Option<u32>,
    /// Whether it reads the account's support tickets (`open_tickets`, `urgent_tickets`).
    pub tickets: bool,
    /// Whether it reads the account's latest score (`health`, `band`, the risks, `expansion`,
    /// `mrr`).
    pub scores: bool,
    /// Whether it reads the account's subscriptions (`plan`, `mrr`, `seats`, `renews_at`).
    pub subscriptions: bool,
    /// The traits it reads, by key, sorted: those it names, and those its fields are read
    /// from or fall back on (`domain` and `website`, `plan`, `seats`, `name`, `email`).
    pub traits: Vec<String>,
    /// What is valid but probably not what was meant.
    pub warnings: Vec<Warning>,
}

/// Parses and checks `text` against what the workspace has.
pub fn compile(text: &str, schema: &Schema) -> Result<Segment, Error> {
    let expr = parse::parse(text)?;
    check::check(text, &expr, schema)
}

/// The names a condition's text uses, lowercased, in order and each once: its fields,
/// traits, functions and keywords, without checking it (none when it does not read as
/// tokens). What tells what a condition is about without the workspace's schema.
pub fn names(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (tok, _) in lex::tokens(text).unwrap_or_default() {
        if let lex::Tok::Ident(name) = tok {
            let name = name.to_lowercase();
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// The first cycle among segments that test each other's membership, as the names along it
/// (the first repeated at the end), if there is one. `segments` lists each segment's name
/// and the names it depends on.
pub fn cycle(segments: &[(String, Vec<String>)]) -> Option<Vec<String>> {
    use std::collections::HashMap;
    let index: HashMap<&str, usize> = segments.iter().enumerate().map(|(i, (n, _))| (n.as_str(), i)).collect();
    // 0: not seen, 1: on the current path, 2: done.
    let mut state = vec![0u8; segments.len()];
    fn visit(
        i: usize,
        segments: &[(String, Vec<String>)],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        state[i] = 1;
        path.push(i);
        for dep in &segments[i].1 {
            let Some(&j) = index.get(dep.as_str()) else { continue };
            if state[j] == 1 {
                let from = path.iter().position(|&k| k == j).expect("on the path");
                let mut names: Vec<String> = path[from..].iter().map(|&k| segments[k].0.clone()).collect();
                names.push(segments[j].0.clone());
                return Some(names);
            }
            if state[j] == 0
                && let Some(c) = visit(j, segments, index, state, path)
            {
                return Some(c);
            }
        }
        path.pop();
        state[i] = 2;
        None
    }
    for i in 0..segments.len() {
        if state[i] == 0
            && let Some(c) = visit(i, segments, &index, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests;
