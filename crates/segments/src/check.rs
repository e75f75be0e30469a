//! Resolves names against what the workspace has and checks that every test compares values
//! of one type, so that a condition that compiles evaluates without surprises.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::eval::Val;
use crate::lex::Cmp;
use crate::parse::{Arg, Expr, Literal, Value, ValueKind};
use crate::{Error, Segment, Span};

/// What a segment's members are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Accounts,
    People,
}

/// What a condition may name: the kind of its members and what the workspace has.
#[derive(Clone, Debug)]
pub struct Schema {
    pub kind: Kind,
    /// The traits the workspace's subjects of this kind have.
    pub traits: Vec<String>,
    /// The events that have arrived, as named.
    pub events: Vec<String>,
    /// The workspace's other segments of this kind, by name.
    pub segments: Vec<String>,
    /// This segment's own name, if it has one yet.
    pub name: Option<String>,
}

/// The subject's own fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    Id,
    Name,
    Email,
    Domain,
    Plan,
    Health,
    Band,
    ChurnRisk30,
    ChurnRisk60,
    ChurnRisk90,
    Expansion,
    /// Monthly recurring revenue in the currency's major unit (dollars, not cents).
    Mrr,
    Seats,
    /// People active in the last [`ACTIVE_USERS_DAYS`] days, today included.
    ActiveUsers,
    CreatedAt,
    LastSeen,
    /// When the account's current paid period or contract ends: the latest end of its
    /// active subscriptions.
    RenewsAt,
    /// Support tickets not solved or closed.
    OpenTickets,
    /// Open tickets of priority high or urgent.
    UrgentTickets,
}

/// Days over which `active_users` counts people, today included.
pub const ACTIVE_USERS_DAYS: u32 = 28;

impl Field {
    /// Days of usage the field reads, today included: none but for `active_users`.
    pub fn usage_days(self) -> u32 {
        if self == Field::ActiveUsers { ACTIVE_USERS_DAYS } else { 0 }
    }

    /// Whether the field is read from the account's support tickets.
    pub fn reads_tickets(self) -> bool {
        matches!(self, Field::OpenTickets | Field::UrgentTickets)
    }

    /// Whether the field is read from the account's latest score (`mrr` falls back on it).
    pub fn reads_score(self) -> bool {
        matches!(
            self,
            Field::Health
                | Field::Band
                | Field::ChurnRisk30
                | Field::ChurnRisk60
                | Field::ChurnRisk90
                | Field::Expansion
                | Field::Mrr
        )
    }

    /// Whether the field is read from the account's subscriptions.
    pub fn reads_subscriptions(self) -> bool {
        matches!(self, Field::Plan | Field::Mrr | Field::Seats | Field::RenewsAt)
    }

    /// The traits the field is read from, or falls back on.
    pub fn trait_keys(self) -> &'static [&'static str] {
        match self {
            Field::Name => &["name"],
            Field::Email => &["email"],
            Field::Domain => &["domain", "website"],
            Field::Plan => &["plan"],
            Field::Seats => &["seats"],
            _ => &[],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    Num,
    Text,
    Bool,
    Time,
    /// A trait: whatever the subject holds.
    Any,
    Duration,
}

impl Type {
    fn describe(self) -> &'static str {
        match self {
            Type::Num => "a number",
            Type::Text => "a text",
            Type::Bool => "yes or no",
            Type::Time => "a time",
            Type::Any => "a trait",
            Type::Duration => "a duration",
        }
    }
}

/// Fields by name, for each kind: (name, field, type).
const ACCOUNT_FIELDS: &[(&str, Field, Type)] = &[
    ("account_id", Field::Id, Type::Text),
    ("name", Field::Name, Type::Text),
    ("domain", Field::Domain, Type::Text),
    ("plan", Field::Plan, Type::Text),
    ("health", Field::Health, Type::Num),
    ("band", Field::Band, Type::Text),
    ("churn_risk_30d", Field::ChurnRisk30, Type::Num),
    ("churn_risk_60d", Field::ChurnRisk60, Type::Num),
    ("churn_risk_90d", Field::ChurnRisk90, Type::Num),
    ("expansion", Field::Expansion, Type::Num),
    ("mrr", Field::Mrr, Type::Num),
    ("seats", Field::Seats, Type::Num),
    ("active_users", Field::ActiveUsers, Type::Num),
    ("created_at", Field::CreatedAt, Type::Time),
    ("signup", Field::CreatedAt, Type::Time),
    ("last_seen", Field::LastSeen, Type::Time),
    ("renews_at", Field::RenewsAt, Type::Time),
    ("open_tickets", Field::OpenTickets, Type::Num),
    ("urgent_tickets", Field::UrgentTickets, Type::Num),
];

const PERSON_FIELDS: &[(&str, Field, Type)] = &[
    ("user_id", Field::Id, Type::Text),
    ("name", Field::Name, Type::Text),
    ("email", Field::Email, Type::Text),
    ("created_at", Field::CreatedAt, Type::Time),
    ("signup", Field::CreatedAt, Type::Time),
    ("last_seen", Field::LastSeen, Type::Time),
];

const FUNCTIONS: &[&str] = &["count", "active_days", "first", "last", "days_since", "days_until"];

/// The longest window a count may take, in days.
const MAX_WINDOW_DAYS: i64 = 366;

/// Something valid that is probably not what was meant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A checked condition.
#[derive(Clone, Debug)]
pub(crate) enum Cond {
    Any(Vec<Cond>),
    All(Vec<Cond>),
    Not(Box<Cond>),
    Test(Term, Test),
    /// At most `seconds` apart (by calendar day when either is a day).
    Within(Term, Term, i64),
    InSegment(String),
}

#[derive(Clone, Debug)]
pub(crate) enum Test {
    Cmp(Cmp, Term),
    In(Vec<Val>, bool),
    IsSet(bool),
    Truth,
}

#[derive(Clone, Debug)]
pub(crate) enum Term {
    Const(Val),
    Field(Field),
    Trait(String),
    /// Events with any of these names over the last `days` days.
    Count(Vec<String>, u32),
    /// Days with usage (of these events, or any) over the last `days` days.
    ActiveDays(Option<Vec<String>>, u32),
    First(Vec<String>),
    Last(Vec<String>),
    DaysSince(Box<Term>),
    DaysUntil(Box<Term>),
}

struct Checker<'a> {
    text: &'a str,
    schema: &'a Schema,
    depends_on: Vec<String>,
    events: Vec<String>,
    window_days: u32,
    all_usage: bool,
    tickets: bool,
    scores: bool,
    subscriptions: bool,
    traits: Vec<String>,
    warnings: Vec<Warning>,
}

pub(crate) fn check(text: &str, expr: &Expr, schema: &Schema) -> Result<Segment, Error> {
    let mut c = Checker {
        text,
        schema,
        depends_on: Vec::new(),
        events: Vec::new(),
        window_days: 0,
        all_usage: false,
        tickets: false,
        scores: false,
        subscriptions: false,
        traits: Vec::new(),
        warnings: Vec::new(),
    };
    let cond = c.cond(expr)?;
    let usage_days = (!c.all_usage).then_some(c.window_days);
    Ok(Segment {
        cond,
        depends_on: c.depends_on,
        events: c.events,
        usage_days,
        tickets: c.tickets,
        scores: c.scores,
        subscriptions: c.subscriptions,
        traits: {
            let mut traits = c.traits;
            traits.sort_unstable();
            traits.dedup();
            traits
        },
        warnings: c.warnings,
    })
}

impl Checker<'_> {
    fn error(&self, span: Span, message: impl Into<String>) -> Error {
        Error::at(self.text, span, message)
    }

    fn warn(&mut self, span: Span, message: String) {
        let e = Error::at(self.text, span, message);
        self.warnings.push(Warning { line: e.line, column: e.column, message: e.message });
    }

    fn cond(&mut self, expr: &Expr) -> Result<Cond, Error> {
        Ok(match expr {
            Expr::Any(parts) => Cond::Any(parts.iter().map(|p| self.cond(p)).collect::<Result<_, _>>()?),
            Expr::All(parts) => Cond::All(parts.iter().map(|p| self.cond(p)).collect::<Result<_, _>>()?),
            Expr::Not(inner) => Cond::Not(Box::new(self.cond(inner)?)),
            Expr::InSegment { name, span } => {
                if self.schema.name.as_deref() == Some(name.as_str()) {
                    return Err(self.error(*span, "a segment cannot test its own membership"));
                }
                if !self.schema.segments.contains(name) {
                    let known = if self.schema.segments.is_empty() {
                        "there are none yet".to_owned()
                    } else {
                        format!("there are {}", quoted_list(&self.schema.segments))
                    };
                    return Err(self.error(*span, format!("no segment is named {name:?}; {known}")));
                }
                if !self.depends_on.contains(name) {
                    self.depends_on.push(name.clone());
                }
                Cond::InSegment(name.clone())
            }
            Expr::Compare { left, op, right } => {
                let (l, lt) = self.term(left)?;
                let (r, rt) = self.term(right)?;
                let (l, lt, r, rt) = self.unify(l, lt, left, r, rt, right)?;
                if lt != Type::Any && rt != Type::Any && lt != rt {
                    return Err(self.error(
                        left.span.to(right.span),
                        format!(
                            "{} is {} and {} is {}: they cannot be compared",
                            self.snippet(left.span),
                            lt.describe(),
                            self.snippet(right.span),
                            rt.describe()
                        ),
                    ));
                }
                let ty = if lt == Type::Any { rt } else { lt };
                if matches!(ty, Type::Text | Type::Bool) && !matches!(op, Cmp::Eq | Cmp::Ne) {
                    return Err(self.error(
                        left.span.to(right.span),
                        format!("{} compares with == and != only (or `in` for several)", ty.describe()),
                    ));
                }
                Cond::Test(l, Test::Cmp(*op, r))
            }
            Expr::In { value, list, negated } => {
                let (t, ty) = self.term(value)?;
                let mut vals = Vec::new();
                for (lit, span) in list {
                    let lty = literal_type(lit);
                    let val = match (ty, lit) {
                        (Type::Time, Literal::Text(s)) => Val::Time(self.time(s, *span)?),
                        _ if ty == Type::Any || ty == lty => literal_val(lit),
                        _ => {
                            return Err(self.error(
                                *span,
                                format!(
                                    "{} is {}, and this is {}",
                                    self.snippet(value.span),
                                    ty.describe(),
                                    lty.describe()
                                ),
                            ));
                        }
                    };
                    if lty == Type::Duration {
                        return Err(self.error(*span, "a duration is only a window or a `within` distance"));
                    }
                    vals.push(val);
                }
                Cond::Test(t, Test::In(vals, *negated))
            }
            Expr::IsSet { value, negated } => {
                let (t, _) = self.term(value)?;
                Cond::Test(t, Test::IsSet(*negated))
            }
            Expr::Truth(value) => {
                let (t, ty) = self.term(value)?;
                if !matches!(ty, Type::Bool | Type::Any) {
                    let raw = &self.text[value.span.start..value.span.end];
                    let hint = match ty {
                        Type::Num => format!("; compare it, as in {raw} > 0"),
                        Type::Text => format!("; compare it, as in {raw} == \"...\""),
                        Type::Time => format!("; test it, as in {raw} is set"),
                        _ => String::new(),
                    };
                    return Err(self.error(
                        value.span,
                        format!("{} is {}, not yes or no{hint}", self.snippet(value.span), ty.describe()),
                    ));
                }
                Cond::Test(t, Test::Truth)
            }
            Expr::Within { time, seconds, of, span } => {
                let (a, at) = self.term(time)?;
                let (b, bt) = self.term(of)?;
                let (a, at, b, bt) = self.unify(a, at, time, b, bt, of)?;
                for (v, ty) in [(time, at), (of, bt)] {
                    if !matches!(ty, Type::Time | Type::Any) {
                        return Err(self.error(
                            v.span,
                            format!("`within` takes two times, and {} is {}", self.snippet(v.span), ty.describe()),
                        ));
                    }
                }
                let _ = span;
                Cond::Within(a, b, *seconds)
            }
        })
    }

    /// Turns a text literal compared with a time into that time.
    #[allow(clippy::type_complexity)]
    fn unify(
        &self,
        l: Term,
        lt: Type,
        left: &Value,
        r: Term,
        rt: Type,
        right: &Value,
    ) -> Result<(Term, Type, Term, Type), Error> {
        let convert = |t: Term, other: Type, v: &Value| -> Result<(Term, Option<Type>), Error> {
            match (&t, other) {
                (Term::Const(Val::Text(s)), Type::Time) => {
                    Ok((Term::Const(Val::Time(self.time(s, v.span)?)), Some(Type::Time)))
                }
                _ => Ok((t, None)),
            }
        };
        let (l, lt2) = convert(l, rt, left)?;
        let (r, rt2) = convert(r, lt, right)?;
        for (ty, v) in [(lt, left), (rt, right)] {
            if ty == Type::Duration {
                return Err(self.error(
                    v.span,
                    "a duration is only a window or a `within` distance; days_since(...) and days_until(...) count days: write 14, not 14d",
                ));
            }
        }
        Ok((l, lt2.unwrap_or(lt), r, rt2.unwrap_or(rt)))
    }

    fn time(&self, s: &str, span: Span) -> Result<DateTime<Utc>, Error> {
        parse_time(s).ok_or_else(|| {
            self.error(span, format!("{s:?} is not a date or time; write \"2026-01-31\" or \"2026-01-31T09:00:00Z\""))
        })
    }

    fn snippet(&self, span: Span) -> String {
        format!("`{}`", &self.text[span.start..span.end.min(self.text.len())])
    }

    fn term(&mut self, v: &Value) -> Result<(Term, Type), Error> {
        match &v.kind {
            ValueKind::Literal(lit) => Ok((Term::Const(literal_val(lit)), literal_type(lit))),
            ValueKind::Name(path) => self.name(path, v.span),
            ValueKind::Call { name, args } => self.call(name, args, v.span),
        }
    }

    fn name(&mut self, path: &[String], span: Span) -> Result<(Term, Type), Error> {
        let fields = match self.schema.kind {
            Kind::Accounts => ACCOUNT_FIELDS,
            Kind::People => PERSON_FIELDS,
        };
        if path.len() == 1 {
            let name = &path[0];
            if let Some((_, f, ty)) = fields.iter().find(|(n, _, _)| n == name) {
                self.tickets |= f.reads_tickets();
                self.scores |= f.reads_score();
                self.subscriptions |= f.reads_subscriptions();
                self.traits.extend(f.trait_keys().iter().map(|k| (*k).to_owned()));
                self.window_days = self.window_days.max(f.usage_days());
                return Ok((Term::Field(*f), *ty));
            }
            if self.schema.traits.contains(name) {
                self.traits.push(name.clone());
                return Ok((Term::Trait(name.clone()), Type::Any));
            }
            let mut known: Vec<&str> = fields.iter().map(|(n, _, _)| *n).collect();
            known.extend(self.schema.traits.iter().map(String::as_str));
            let hint = match closest(name, &known) {
                Some(k) => format!("; did you mean `{k}`?"),
                None => String::new(),
            };
            let what = match self.schema.kind {
                Kind::Accounts => "an account",
                Kind::People => "a person",
            };
            return Err(self.error(
                span,
                format!(
                    "`{name}` is not a field of {what} nor one of its traits{hint} (a trait no one has yet is written traits.{name})"
                ),
            ));
        }
        if path[0] == "traits" {
            let key = path[1..].join(".");
            if !self.schema.traits.contains(&key) {
                self.warn(span, format!("no one has the trait {key:?} yet"));
            }
            self.traits.push(key.clone());
            return Ok((Term::Trait(key), Type::Any));
        }
        Err(self.error(span, format!("`{}` has no fields; only traits.<name> does", path[0])))
    }

    fn call(&mut self, name: &str, args: &[Arg], span: Span) -> Result<(Term, Type), Error> {
        let usage = |s: &str| format!("{name} takes {s}");
        if self.schema.kind == Kind::People && matches!(name, "count" | "active_days" | "first" | "last") {
            return Err(self.error(
                span,
                format!(
                    "{name} counts an account's events, which a people segment cannot yet; use it in an accounts \
                     segment, and days_since(last_seen) for a person's activity"
                ),
            ));
        }
        match (name, args) {
            ("count", [Arg::Event(e, es), Arg::Value(w)]) => {
                let events = self.event(e, *es);
                let days = self.window(w)?;
                Ok((Term::Count(events, days), Type::Num))
            }
            ("count", _) => Err(self.error(span, usage("an event and a window, as in count(event \"Login\", 14d)"))),
            ("active_days", [Arg::Value(w)]) => Ok((Term::ActiveDays(None, self.window(w)?), Type::Num)),
            ("active_days", [Arg::Event(e, es), Arg::Value(w)]) => {
                let events = self.event(e, *es);
                Ok((Term::ActiveDays(Some(events), self.window(w)?), Type::Num))
            }
            ("active_days", _) => Err(self.error(
                span,
                usage("a window, and before it an event if only that event counts: active_days(event \"Login\", 28d)"),
            )),
            ("first" | "last", [Arg::Event(e, es)]) => {
                let events = self.event(e, *es);
                self.all_usage = true;
                Ok((if name == "first" { Term::First(events) } else { Term::Last(events) }, Type::Time))
            }
            ("first" | "last", _) => {
                Err(self.error(span, usage(&format!("one event, as in {name}(event \"Project Created\")"))))
            }
            ("days_since" | "days_until", [Arg::Value(v)]) => {
                let (t, ty) = self.term(v)?;
                let t = match (t, ty) {
                    (Term::Const(Val::Text(s)), _) => Term::Const(Val::Time(self.time(&s, v.span)?)),
                    (t, Type::Time | Type::Any) => t,
                    (_, ty) => {
                        return Err(self.error(
                            v.span,
                            format!("{name} takes a time, and {} is {}", self.snippet(v.span), ty.describe()),
                        ));
                    }
                };
                let t = Box::new(t);
                Ok((if name == "days_since" { Term::DaysSince(t) } else { Term::DaysUntil(t) }, Type::Num))
            }
            ("days_since", _) => Err(self.error(span, usage("one time, as in days_since(last_seen)"))),
            ("days_until", _) => Err(self.error(span, usage("one time, as in days_until(renews_at)"))),
            _ => {
                let hint = match closest(name, FUNCTIONS) {
                    Some(f) => format!("did you mean `{f}`? "),
                    None => String::new(),
                };
                let last = FUNCTIONS.len() - 1;
                let all = format!("{} and {}", FUNCTIONS[..last].join(", "), FUNCTIONS[last]);
                Err(self.error(span, format!("there is no function `{name}`; {hint}there are {all}")))
            }
        }
    }

    /// The workspace's events that are `written`, as they are named (or `written` itself
    /// when none has arrived yet, with a warning).
    fn event(&mut self, written: &str, span: Span) -> Vec<String> {
        if !self.events.iter().any(|e| e == written) {
            self.events.push(written.to_owned());
        }
        let found: Vec<String> =
            self.schema.events.iter().filter(|e| domain::same_event(written, e)).cloned().collect();
        if found.is_empty() {
            self.warn(span, format!("no event named {written:?} has arrived yet"));
            return vec![written.to_owned()];
        }
        found
    }

    fn window(&mut self, v: &Value) -> Result<u32, Error> {
        let ValueKind::Literal(Literal::Duration(seconds)) = v.kind else {
            return Err(self.error(v.span, "expected a window in days, as in 14d"));
        };
        if seconds % 86_400 != 0 || seconds == 0 {
            return Err(
                self.error(v.span, "a window is a whole number of days (events are counted per day), as in 14d")
            );
        }
        let days = seconds / 86_400;
        if days > MAX_WINDOW_DAYS {
            return Err(self.error(v.span, format!("a window is at most {MAX_WINDOW_DAYS} days")));
        }
        self.window_days = self.window_days.max(days as u32);
        Ok(days as u32)
    }
}

fn literal_type(lit: &Literal) -> Type {
    match lit {
        Literal::Num(_) => Type::Num,
        Literal::Text(_) => Type::Text,
        Literal::Bool(_) => Type::Bool,
        Literal::Duration(_) => Type::Duration,
    }
}

fn literal_val(lit: &Literal) -> Val {
    match lit {
        Literal::Num(n) => Val::Num(*n),
        Literal::Text(s) => Val::Text(s.clone()),
        Literal::Bool(b) => Val::Bool(*b),
        Literal::Duration(s) => Val::Num(*s as f64),
    }
}

/// A date (`2026-01-31`, midnight UTC) or an RFC 3339 time.
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let d: NaiveDate = s.parse().ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc())
}

fn quoted_list(names: &[String]) -> String {
    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

/// The known name nearest `name` by edit distance, if near enough to be a typo.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let best = known.iter().map(|k| (edit_distance(name, k), *k)).min()?;
    (best.0 <= 2.max(name.len() / 4)).then_some(best.1)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}
