//! Identity resolution, as a pure function of a slice of the log.
//!
//! The rules, following Segment's identity model:
//! - a `userId` names one person; an `anonymousId` names one person until it is linked;
//! - an identify (or any message) carrying both links the anonymous id to the user: an
//!   anonymous-only person is merged into the user's person, or takes the user id if the user
//!   is new; an anonymous id already on another *identified* person is moved to this user
//!   (a shared device), without merging two identified people;
//! - an alias merges the person of `previousId` into the person of `userId`;
//! - a group call, or `context.groupId` on any message, makes the person a member of the
//!   account; identify traits go to the person, group traits to the account.

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use domain::{AccountId, EventType, IdKind, IdentityKey, WorkspaceId, person_id_for};
use foldhash::{HashMap, HashMapExt, HashSet};
use serde_json::{Map, Value};
use store::{Changes, Credit, EventPerson, KnownPerson, LoggedEvent, Op, Usage, usage};

/// The changes that processing `events` (in log order) makes, given what the store knows of
/// the identities they mention.
pub fn resolve(ws: &WorkspaceId, events: &[LoggedEvent], known: Vec<(IdentityKey, KnownPerson)>) -> Changes {
    let mut base = Identities::default();
    for (key, person) in known {
        base.learn_stored(key, person);
    }
    resolve_with(ws, events.iter().map(EventView::of), events.len(), &base).0
}

/// What resolution reads of an event, borrowed from wherever it is held.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EventView<'a> {
    pub seq: i64,
    pub kind: EventType,
    pub name: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub anonymous_id: Option<&'a str>,
    pub group_id: Option<&'a str>,
    pub previous_id: Option<&'a str>,
    pub timestamp: DateTime<Utc>,
    /// Read for identify and group calls only.
    pub payload: &'a str,
}

impl<'a> EventView<'a> {
    pub(crate) fn of(logged: &'a LoggedEvent) -> EventView<'a> {
        let e = &logged.event;
        EventView {
            seq: logged.position.seq,
            kind: e.kind,
            name: e.name.as_deref(),
            user_id: e.user_id.as_deref(),
            anonymous_id: e.anonymous_id.as_deref(),
            group_id: e.group_id.as_deref(),
            previous_id: e.previous_id.as_deref(),
            timestamp: e.timestamp,
            payload: &e.payload,
        }
    }

    /// A track call given in columns, at `seq`.
    pub(crate) fn of_track(seq: i64, t: domain::Activity<'a>, days: &mut domain::Days) -> EventView<'a> {
        EventView {
            seq,
            kind: EventType::Track,
            name: Some(t.event),
            user_id: t.user_id,
            anonymous_id: t.anonymous_id,
            group_id: t.group_id,
            previous_id: None,
            timestamp: t.timestamp_in(days),
            payload: "",
        }
    }
}

/// Like [`resolve`], given the identities as of the slice's start (which must hold every key
/// the slice names that the store knows) and the slice's `len` events; also returns what the
/// slice changed in them.
pub(crate) fn resolve_with<'a>(
    ws: &'a WorkspaceId,
    events: impl Iterator<Item = EventView<'a>>,
    len: usize,
    base: &'a Identities,
) -> (Changes, Identities) {
    let mut state = State::new(ws, base);
    // Every event has its person, most are usage: sized once rather than grown.
    state.event_people.reserve(len);
    state.metrics.events.reserve(len);
    for e in events {
        state.event(e);
    }
    state.finish()
}

/// Identity keys to a value, looked up by kind and text without building a key.
pub(crate) struct Keys<V> {
    user: HashMap<String, V>,
    anonymous: HashMap<String, V>,
}

impl<V> Default for Keys<V> {
    fn default() -> Self {
        Keys { user: HashMap::new(), anonymous: HashMap::new() }
    }
}

impl<V> Keys<V> {
    pub(crate) fn get(&self, kind: IdKind, value: &str) -> Option<&V> {
        match kind {
            IdKind::User => self.user.get(value),
            IdKind::Anonymous => self.anonymous.get(value),
        }
    }

    pub(crate) fn insert(&mut self, key: IdentityKey, v: V) {
        match key.kind {
            IdKind::User => self.user.insert(key.value, v),
            IdKind::Anonymous => self.anonymous.insert(key.value, v),
        };
    }

    pub(crate) fn len(&self) -> usize {
        self.user.len() + self.anonymous.len()
    }

    fn extend(&mut self, other: Keys<V>) {
        self.user.extend(other.user);
        self.anonymous.extend(other.anonymous);
    }
}

/// Identities as of a point of the log: each key's person, the user id of each person, and
/// the people merged into others. A key may name a person merged since; it is followed
/// through `merged`.
#[derive(Default)]
pub(crate) struct Identities {
    pub(crate) person_of: Keys<String>,
    pub(crate) user_of: HashMap<String, Option<String>>,
    pub(crate) merged: HashMap<String, String>,
}

impl Identities {
    /// Adds what the store says of a key.
    pub(crate) fn learn_stored(&mut self, key: IdentityKey, person: KnownPerson) {
        self.user_of.insert(person.person_id.clone(), person.user_id);
        self.person_of.insert(key, person.person_id);
    }

    /// Adds what a slice changed, once it is applied.
    pub(crate) fn extend(&mut self, slice: Identities) {
        for from in slice.merged.keys() {
            self.user_of.remove(from);
        }
        self.person_of.extend(slice.person_of);
        self.user_of.extend(slice.user_of);
        self.merged.extend(slice.merged);
    }

    pub(crate) fn len(&self) -> usize {
        self.person_of.len() + self.user_of.len() + self.merged.len()
    }
}

struct State<'a> {
    ws: &'a WorkspaceId,
    /// The identities as of the slice's start, and what the slice changed.
    base: &'a Identities,
    own: Identities,
    ops: Vec<Op>,
    event_people: Vec<EventPerson>,
    /// First and last activity per person, and whether any of it named no account.
    seen: HashMap<String, Activity>,
    /// First and last activity per account its events named.
    account_seen: HashMap<AccountId, Span>,
    /// The accounts the slice named and the people it made members of each.
    members: HashMap<AccountId, HashSet<String>>,
    /// Each event that is usage, and the accounts it counts for when it named none.
    metrics: Metrics<'a>,
    /// Accounts each person joined in the slice so far, and the people merged into each in
    /// the slice so far: with what the store knew before the slice, a person's accounts at
    /// any event.
    joined: HashMap<String, Vec<AccountId>>,
    absorbed: HashMap<String, Vec<String>>,
    /// Usage events of an account with no person (a billing system's `Payment Failed`):
    /// counted for the account they name, no one active.
    account_usage: Vec<(AccountId, NaiveDate, &'a str)>,
    /// The ids the last event named (user, anonymous, group; not an alias's) and the person
    /// and account they resolved to: a log is mostly runs of one person's events, and
    /// resolving the same ids again right after changes nothing and names the same two.
    last: Option<(Ids<'a>, Option<Arc<str>>, Option<AccountId>)>,
    /// The activity of the last events, all of one person and one account (or of none): put
    /// in `seen` and `account_seen` once an event of another comes, not looked up for each.
    run: Option<SeenRun>,
}

struct SeenRun {
    person: Arc<str>,
    account: Option<AccountId>,
    activity: Activity,
    account_span: Span,
}

/// A slice's events that are usage, in order: each one's index in the slice's event people
/// and its metric, and for those that named no account, the accounts they count for as of the
/// event (an event that named one counts for it). Credits are kept apart: most events name an
/// account, and room for a credit beside each would be tens of megabytes in an import.
#[derive(Default)]
struct Metrics<'a> {
    events: Vec<(u32, &'a str)>,
    /// The place in `events` of each event that named no account, with its credit; in order.
    credits: Vec<(usize, Credit)>,
}

impl<'a> Metrics<'a> {
    /// Each event's index in the event people, metric and credit (none when it named an
    /// account).
    fn iter(&self) -> impl Iterator<Item = (usize, &'a str, Option<&Credit>)> + '_ {
        let mut credits = self.credits.iter().peekable();
        self.events.iter().enumerate().map(move |(k, &(i, metric))| {
            let credit = credits.next_if(|(at, _)| *at == k).map(|(_, c)| c);
            (i as usize, metric, credit)
        })
    }
}

/// An event's user id, anonymous id and group id.
type Ids<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

/// Whether two events name the same ids (found by where the strings are when the events share
/// them, as a run of imported rows does).
fn same_ids(a: Ids<'_>, b: Ids<'_>) -> bool {
    domain::same_opt(a.0, b.0) && domain::same_opt(a.1, b.1) && domain::same_opt(a.2, b.2)
}

impl<'a> State<'a> {
    fn new(ws: &'a WorkspaceId, base: &'a Identities) -> Self {
        State {
            ws,
            base,
            own: Identities::default(),
            ops: Vec::new(),
            event_people: Vec::new(),
            seen: HashMap::new(),
            account_seen: HashMap::new(),
            members: HashMap::new(),
            metrics: Metrics::default(),
            joined: HashMap::new(),
            absorbed: HashMap::new(),
            account_usage: Vec::new(),
            last: None,
            run: None,
        }
    }

    /// Adds the run of one person's and account's activity to what the slice saw.
    fn end_run(&mut self) {
        let Some(run) = self.run.take() else { return };
        match self.seen.get_mut(&*run.person) {
            Some(activity) => activity.add(&run.activity),
            None => self.seen.entry(run.person.to_string()).or_default().add(&run.activity),
        }
        if let Some(account) = run.account {
            self.account_seen.entry(account).or_default().join(run.account_span);
        }
    }

    fn event(&mut self, e: EventView<'a>) {
        let at = e.timestamp;
        let ids = (e.user_id, e.anonymous_id, e.group_id);
        let (person, account) = match &self.last {
            Some((last, person, account)) if same_ids(*last, ids) && e.kind != EventType::Alias => {
                (person.clone(), account.clone())
            }
            _ => {
                let person = match (e.kind, e.user_id, e.previous_id) {
                    (EventType::Alias, Some(user), Some(previous)) => self.alias(user, previous, at),
                    _ => self.person(e.user_id, e.anonymous_id, at),
                };
                let person: Option<Arc<str>> = person.map(Arc::from);
                let account = e.group_id.and_then(|g| AccountId::parse(g).ok());
                if let (Some(person), Some(account)) = (&person, &account) {
                    self.membership(person, account, at);
                }
                self.last = (e.kind != EventType::Alias).then(|| (ids, person.clone(), account.clone()));
                (person, account)
            }
        };
        let Some(person) = person else {
            // An account's record with no person (`steward import accounts` and connectors
            // write these): the account and its traits; or something that happened to the
            // account (a connector's `Payment Failed`), counted in its usage with no one
            // active, and not as its activity.
            if let Some(account) = &account {
                if e.kind == EventType::Group {
                    self.account(account, at);
                    if let Some(traits) = traits_of(e.payload) {
                        self.ops.push(Op::SetAccountTraits { account_id: account.clone(), traits, at });
                    }
                } else if let Some(metric) = usage::metric_of(e.kind, e.name) {
                    self.account(account, at);
                    self.account_usage.push((account.clone(), at.date_naive(), metric));
                }
                // The account's own event, of no one: on its timeline like any other.
                self.event_people.push(EventPerson {
                    seq: e.seq,
                    person_id: Arc::from(""),
                    account_id: Some(account.clone()),
                    timestamp: at,
                });
            }
            return;
        };
        match e.kind {
            EventType::Identify => {
                if let Some(traits) = traits_of(e.payload) {
                    self.ops.push(Op::SetPersonTraits { person_id: person.to_string(), traits, at });
                }
            }
            EventType::Group => {
                if let (Some(account), Some(traits)) = (&account, traits_of(e.payload)) {
                    self.ops.push(Op::SetAccountTraits { account_id: account.clone(), traits, at });
                }
            }
            _ => {}
        }
        // Most events continue a run of one person's in one account.
        let same_run = self.run.as_ref().is_some_and(|r| Arc::ptr_eq(&r.person, &person) && r.account == account);
        if !same_run {
            self.end_run();
            let (activity, account_span) = (Activity::default(), Span::default());
            self.run = Some(SeenRun { person: person.clone(), account: account.clone(), activity, account_span });
        }
        let run = self.run.as_mut().expect("a run is under way");
        run.activity.all.widen(at);
        match &account {
            Some(_) => run.account_span.widen(at),
            None => run.activity.unnamed.widen(at),
        }
        if let Some(metric) = usage::metric_of(e.kind, e.name) {
            if account.is_none() {
                let credit = Credit::Members {
                    people: std::iter::once(person.to_string())
                        .chain(self.absorbed.get(&*person).into_iter().flatten().cloned())
                        .collect(),
                    joined: self.joined.get(&*person).cloned().unwrap_or_default(),
                };
                self.metrics.credits.push((self.metrics.events.len(), credit));
            }
            self.metrics.events.push((self.event_people.len() as u32, metric));
        }
        self.event_people.push(EventPerson { seq: e.seq, person_id: person, account_id: account, timestamp: at });
    }

    /// The person a key names now (following merges).
    fn lookup(&self, kind: IdKind, value: &str) -> Option<String> {
        let person = self.own.person_of.get(kind, value).or_else(|| self.base.person_of.get(kind, value))?;
        Some(self.final_id(person).to_owned())
    }

    fn link(&mut self, kind: IdKind, value: &str, person: &str) {
        if self.lookup(kind, value).as_deref() != Some(person) {
            let key = IdentityKey { kind, value: value.to_owned() };
            self.ops.push(Op::LinkIdentity { key: key.clone(), person_id: person.to_owned() });
            self.own.person_of.insert(key, person.to_owned());
        }
    }

    fn create(&mut self, kind: IdKind, value: &str, user_id: Option<&str>, at: DateTime<Utc>) -> String {
        let person = person_id_for(self.ws, &IdentityKey { kind, value: value.to_owned() });
        self.ops.push(Op::CreatePerson { person_id: person.clone(), user_id: user_id.map(str::to_owned), at });
        self.own.user_of.insert(person.clone(), user_id.map(str::to_owned));
        self.link(kind, value, &person);
        person
    }

    fn user_of(&self, person: &str) -> Option<&Option<String>> {
        self.own.user_of.get(person).or_else(|| self.base.user_of.get(person))
    }

    fn is_identified(&self, person: &str) -> bool {
        self.user_of(person).is_some_and(Option::is_some)
    }

    fn set_user_id(&mut self, person: &str, user: &str) {
        self.ops.push(Op::SetUserId { person_id: person.to_owned(), user_id: user.to_owned() });
        self.own.user_of.insert(person.to_owned(), Some(user.to_owned()));
    }

    fn merge(&mut self, from: &str, into: &str, at: DateTime<Utc>) {
        self.ops.push(Op::MergePeople { from: from.to_owned(), into: into.to_owned(), at });
        if !self.is_identified(into) {
            let user = self.user_of(from).cloned().flatten();
            self.own.user_of.insert(into.to_owned(), user);
        }
        self.own.user_of.remove(from);
        self.own.merged.insert(from.to_owned(), into.to_owned());
        // From now on the survivor's accounts include those of the merged person.
        let mut absorbed = self.absorbed.remove(from).unwrap_or_default();
        absorbed.push(from.to_owned());
        self.absorbed.entry(into.to_owned()).or_default().extend(absorbed);
        if let Some(joined) = self.joined.remove(from) {
            self.joined.entry(into.to_owned()).or_default().extend(joined);
        }
    }

    /// The person a message from `user_id` / `anonymous_id` belongs to, creating or linking
    /// as the rules say.
    fn person(&mut self, user_id: Option<&str>, anonymous_id: Option<&str>, at: DateTime<Utc>) -> Option<String> {
        use IdKind::{Anonymous, User};
        let by_anon = anonymous_id.and_then(|a| self.lookup(Anonymous, a));
        let Some(user) = user_id else {
            let anon = anonymous_id?;
            return Some(by_anon.unwrap_or_else(|| self.create(Anonymous, anon, None, at)));
        };
        match (self.lookup(User, user), by_anon) {
            (Some(p), None) => {
                if let Some(a) = anonymous_id {
                    self.link(Anonymous, a, &p);
                }
                Some(p)
            }
            (Some(p), Some(a)) if p == a => Some(p),
            (Some(p), Some(a)) => {
                if self.is_identified(&a) {
                    // A device shared by two users: the anonymous id follows the latest user.
                    self.link(Anonymous, anonymous_id.expect("looked up by it"), &p);
                } else {
                    self.merge(&a, &p, at);
                }
                Some(p)
            }
            (None, Some(a)) if !self.is_identified(&a) => {
                self.set_user_id(&a, user);
                self.link(User, user, &a);
                Some(a)
            }
            (None, _) => {
                // A new user; an anonymous id on another identified person moves to them.
                let p = self.create(User, user, Some(user), at);
                if let Some(a) = anonymous_id {
                    self.link(Anonymous, a, &p);
                }
                Some(p)
            }
        }
    }

    /// `alias(userId, previousId)`: the person known by `previous` (a user id or an anonymous
    /// id) is the person `user`.
    fn alias(&mut self, user: &str, previous: &str, at: DateTime<Utc>) -> Option<String> {
        use IdKind::{Anonymous, User};
        let old = self.lookup(User, previous).or_else(|| self.lookup(Anonymous, previous));
        let person = match (self.lookup(User, user), old) {
            (Some(n), Some(o)) if n != o => {
                self.merge(&o, &n, at);
                n
            }
            (Some(n), _) => n,
            (None, Some(o)) => {
                if !self.is_identified(&o) {
                    self.set_user_id(&o, user);
                }
                self.link(User, user, &o);
                o
            }
            (None, None) => {
                let p = self.create(User, user, Some(user), at);
                self.link(Anonymous, previous, &p);
                p
            }
        };
        // Later messages may name the person by either kind of previous id.
        if self.lookup(User, previous).is_none() && self.lookup(Anonymous, previous).is_none() {
            self.link(Anonymous, previous, &person);
        }
        Some(person)
    }

    /// The account, created first if the slice has not named it yet; its members in the slice.
    fn account(&mut self, account: &AccountId, at: DateTime<Utc>) -> &mut HashSet<String> {
        // Most events name an account the slice named before: its id is copied only the first
        // time (an entry by key would copy it for every event).
        if !self.members.contains_key(account) {
            self.ops.push(Op::UpsertAccount { account_id: account.clone(), at });
            self.members.insert(account.clone(), HashSet::default());
        }
        self.members.get_mut(account).expect("inserted above if it was missing")
    }

    fn membership(&mut self, person: &str, account: &AccountId, at: DateTime<Utc>) {
        let members = self.account(account, at);
        if !members.contains(person) {
            members.insert(person.to_owned());
            self.joined.entry(person.to_owned()).or_default().push(account.clone());
            self.ops.push(Op::AddMembership { person_id: person.to_owned(), account_id: account.clone(), at });
        }
    }

    /// The person `person` is now, following merges.
    fn final_id<'s>(&'s self, person: &'s str) -> &'s str {
        let mut p = person;
        while let Some(next) = self.own.merged.get(p).or_else(|| self.base.merged.get(p)) {
            p = next;
        }
        p
    }

    /// The slice's changes, with one first/last-seen update per person and per account it
    /// touched (not one per event or per pair).
    fn finish(mut self) -> (Changes, Identities) {
        self.end_run();
        let mut event_people = std::mem::take(&mut self.event_people);
        // People merged: each event names the person it ended as (most slices merge no one).
        if !self.own.merged.is_empty() || !self.base.merged.is_empty() {
            for e in &mut event_people {
                if self.final_id(&e.person_id) != &*e.person_id {
                    e.person_id = Arc::from(self.final_id(&e.person_id));
                }
            }
        }
        let mut people: HashMap<String, Activity> = HashMap::new();
        for (p, activity) in std::mem::take(&mut self.seen) {
            people.entry(self.final_id(&p).to_owned()).or_default().add(&activity);
        }
        // Deterministic order, so that the same log always yields the same changes.
        let mut accounts: Vec<_> = std::mem::take(&mut self.account_seen).into_iter().collect();
        accounts.sort_by(|a, b| a.0.cmp(&b.0));
        for (account, span) in accounts {
            let (first, last) = span.bounds();
            self.ops.push(Op::Seen { person_id: None, account_id: Some(account), first, last });
        }
        let mut people: Vec<_> = people.into_iter().collect();
        people.sort_by(|a, b| a.0.cmp(&b.0));
        for (person, activity) in people {
            // Events that named no account count towards every account of the person.
            let covered = match activity.unnamed.0 {
                Some((first, last)) => {
                    self.ops.push(Op::Seen { person_id: Some(person.clone()), account_id: None, first, last });
                    activity.all.0 == activity.unnamed.0
                }
                None => false,
            };
            if !covered {
                let (first, last) = activity.all.bounds();
                self.ops.push(Op::PersonSeen { person_id: person, first, last });
            }
        }
        let mut usage = usage_of(&event_people, self.metrics.iter(), self.metrics.events.len());
        if !self.account_usage.is_empty() {
            usage.extend(account_usage_of(std::mem::take(&mut self.account_usage)));
            usage.sort_unstable();
        }
        (Changes { ops: self.ops, event_people, usage }, self.own)
    }
}

/// The slice's events that are usage, counted per person (as the slice ended), day, metric
/// and credit, also under [`usage::ANY`]; sorted.
///
/// A slice has nearly as many counts as usage events, so they are not kept in maps keyed by
/// text: each person, metric and credit gets a number where first met (looked up once per
/// run of events of one person, day and credit, a log being mostly each account's activity
/// in turn), the counts are listed as numbers, the numbers are turned into ranks in the
/// values' order, and the list is sorted as integers and summed where keys are equal.
fn usage_of<'a>(
    event_people: &'a [EventPerson],
    metrics: impl Iterator<Item = (usize, &'a str, Option<&'a Credit>)>,
    len: usize,
) -> Vec<Usage> {
    /// A credit by reference, so that counting allocates per distinct key, not per event.
    /// Ordered as [`Credit`] is (`Named` first, then by what each holds).
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    enum CreditRef<'c> {
        Named(&'c AccountId),
        Members(&'c Credit),
    }
    type Key<'r> = (&'r Arc<str>, NaiveDate, CreditRef<'r>);
    let mut persons: Numbered<&Arc<str>> = Numbered::default();
    let mut credits: Numbered<CreditRef> = Numbered::default();
    let mut names: Numbered<&str> = Numbered::default();
    let any = names.number(usage::ANY);
    // (person, day, metric, credit) by number, and the events counted.
    let mut counts: Vec<([u32; 4], u32)> = Vec::with_capacity(len);
    let mut run: Option<Key> = None;
    let mut run_metrics: Vec<(&str, u32)> = Vec::new();
    let mut days = Days::default();
    let mut add_run = |(person, day, credit): Key<'a>, run_metrics: &mut Vec<(&'a str, u32)>| {
        let (person, credit) = (persons.number(person), credits.number(credit));
        let day = day_number(day);
        let mut total = 0;
        for (metric, n) in run_metrics.drain(..) {
            counts.push(([person, day, names.number(metric), credit], n));
            total += n;
        }
        counts.push(([person, day, any, credit], total));
    };
    for (i, metric, credit) in metrics {
        let e = &event_people[i];
        let credit = match (credit, &e.account_id) {
            (Some(c), _) => CreditRef::Members(c),
            (None, Some(a)) => CreditRef::Named(a),
            (None, None) => continue,
        };
        let key = (&e.person_id, days.of(e.timestamp), credit);
        // A run's events share their person and account: equal by where they are.
        let same_run = run.is_some_and(|(person, day, c)| {
            day == key.1
                && domain::same_str(person, key.0)
                && match (c, credit) {
                    (CreditRef::Named(a), CreditRef::Named(b)) => domain::same_str(a.as_str(), b.as_str()),
                    (a, b) => a == b,
                }
        });
        if !same_run && let Some(done) = run.replace(key) {
            add_run(done, &mut run_metrics);
        }
        match run_metrics.iter_mut().find(|(m, _)| *m == metric) {
            Some((_, n)) => *n += 1,
            None => run_metrics.push((metric, 1)),
        }
    }
    if let Some(done) = run {
        add_run(done, &mut run_metrics);
    }
    // Numbers to ranks, then one integer per key, in the order of the values it stands for.
    let (person_rank, persons) = persons.ranked();
    let (credit_rank, credits) = credits.ranked();
    let (name_rank, names) = names.ranked();
    let names: Vec<Arc<str>> = names.into_iter().map(Arc::from).collect();
    let mut keyed: Vec<(u128, u32)> = counts
        .into_iter()
        .map(|([person, day, metric, credit], n)| {
            let key = u128::from(person_rank[person as usize]) << 96
                | u128::from(day) << 64
                | u128::from(name_rank[metric as usize]) << 32
                | u128::from(credit_rank[credit as usize]);
            (key, n)
        })
        .collect();
    keyed.sort_unstable_by_key(|k| k.0);
    let mut usage: Vec<Usage> = Vec::with_capacity(keyed.len());
    let mut last = None;
    for (key, n) in keyed {
        if last == Some(key) {
            usage.last_mut().expect("a row for the key before").events += n;
            continue;
        }
        last = Some(key);
        let part = |shift: u32| (key >> shift) as u32 as usize;
        usage.push(Usage {
            person_id: Arc::clone(persons[part(96)]),
            day: day_of(part(64) as u32),
            metric: Arc::clone(&names[part(32)]),
            credit: match credits[part(0)] {
                CreditRef::Named(a) => Credit::Named(a.clone()),
                CreditRef::Members(c) => c.clone(),
            },
            events: n,
        });
    }
    usage
}

/// The days of moments that come mostly in runs of one day: a moment within the day of the
/// one before is that day, found by two comparisons rather than made a date.
#[derive(Default)]
struct Days(Option<(DateTime<Utc>, DateTime<Utc>, NaiveDate)>);

impl Days {
    fn of(&mut self, at: DateTime<Utc>) -> NaiveDate {
        match self.0 {
            Some((start, end, day)) if start <= at && at < end => day,
            _ => {
                let day = at.date_naive();
                let start = day.and_time(chrono::NaiveTime::MIN).and_utc();
                self.0 = Some((start, start + chrono::TimeDelta::days(1), day));
                day
            }
        }
    }
}

/// A day as a number that sorts as the day does.
fn day_number(day: NaiveDate) -> u32 {
    (i64::from(day.num_days_from_ce()) - i64::from(i32::MIN)) as u32
}

/// The day of a [`day_number`].
fn day_of(n: u32) -> NaiveDate {
    let days = (i64::from(n) + i64::from(i32::MIN)) as i32;
    NaiveDate::from_num_days_from_ce_opt(days).expect("the number of a day")
}

/// Distinct values numbered as first met.
struct Numbered<K> {
    numbers: HashMap<K, u32>,
    values: Vec<K>,
    /// The value numbered last, looked up first: runs of one person are common.
    last: Option<(K, u32)>,
}

impl<K> Default for Numbered<K> {
    fn default() -> Self {
        Numbered { numbers: HashMap::new(), values: Vec::new(), last: None }
    }
}

impl<K: Copy + Eq + std::hash::Hash + Ord> Numbered<K> {
    fn number(&mut self, k: K) -> u32 {
        if let Some((v, n)) = self.last
            && v == k
        {
            return n;
        }
        let values = &mut self.values;
        let n = *self.numbers.entry(k).or_insert_with(|| {
            values.push(k);
            (values.len() - 1) as u32
        });
        self.last = Some((k, n));
        n
    }

    /// Each number's rank in the values' order, and the values in that order.
    fn ranked(self) -> (Vec<u32>, Vec<K>) {
        let mut order: Vec<u32> = (0..self.values.len() as u32).collect();
        order.sort_unstable_by(|a, b| self.values[*a as usize].cmp(&self.values[*b as usize]));
        let mut rank = vec![0u32; order.len()];
        for (r, &n) in order.iter().enumerate() {
            rank[n as usize] = r as u32;
        }
        let values = order.into_iter().map(|n| self.values[n as usize]).collect();
        (rank, values)
    }
}

/// Usage of accounts by no one, counted per account, day and metric, also under
/// [`usage::ANY`]: rows of no person (an empty `person_id`), which mark no one active.
fn account_usage_of(events: Vec<(AccountId, NaiveDate, &str)>) -> Vec<Usage> {
    let mut counts: HashMap<(AccountId, NaiveDate, &str), u32> = HashMap::default();
    for (account, day, metric) in events {
        *counts.entry((account.clone(), day, metric)).or_default() += 1;
        *counts.entry((account, day, usage::ANY)).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((account, day, metric), events)| Usage {
            person_id: Arc::from(""),
            day,
            metric: Arc::from(metric),
            credit: Credit::Named(account),
            events,
        })
        .collect()
}

/// The first and last of some moments; empty until one is added.
#[derive(Clone, Copy, Default)]
struct Span(Option<(DateTime<Utc>, DateTime<Utc>)>);

impl Span {
    /// Takes in `at`. A log's events mostly come in time order, so `at` is mostly the last:
    /// one comparison and one time written, where both ends were compared and written again
    /// (a fifth of resolving an event).
    fn widen(&mut self, at: DateTime<Utc>) {
        match &mut self.0 {
            Some((first, last)) => {
                if at > *last {
                    *last = at;
                } else if at < *first {
                    *first = at;
                }
            }
            None => self.0 = Some((at, at)),
        }
    }

    fn join(&mut self, other: Span) {
        if let Some((first, last)) = other.0 {
            self.widen(first);
            self.widen(last);
        }
    }

    /// Only called on spans that something was added to.
    fn bounds(self) -> (DateTime<Utc>, DateTime<Utc>) {
        self.0.expect("a span with a moment in it")
    }
}

/// A person's activity in a slice: all of it, and that of events naming no account.
#[derive(Default)]
struct Activity {
    all: Span,
    unnamed: Span,
}

impl Activity {
    fn add(&mut self, other: &Activity) {
        self.all.join(other.all);
        self.unnamed.join(other.unnamed);
    }
}

fn traits_of(payload: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Value>(payload).ok()?.get_mut("traits")?.take() {
        Value::Object(m) if !m.is_empty() => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod usage_tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The counts as plainly as they can be made: every event added to its key in an ordered
    /// map, and again under `$any`.
    fn counted_plainly(event_people: &[EventPerson], metrics: &[(usize, &str, Option<Credit>)]) -> Vec<Usage> {
        let mut counts: BTreeMap<(String, NaiveDate, String, Credit), u32> = BTreeMap::new();
        for (i, metric, credit) in metrics {
            let e = &event_people[*i];
            let credit = match (credit, &e.account_id) {
                (Some(c), _) => c.clone(),
                (None, Some(a)) => Credit::Named(a.clone()),
                (None, None) => continue,
            };
            let day = e.timestamp.date_naive();
            for m in [*metric, usage::ANY] {
                *counts.entry((e.person_id.to_string(), day, m.to_owned(), credit.clone())).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .map(|((person_id, day, metric, credit), events)| Usage {
                person_id: person_id.into(),
                day,
                metric: metric.into(),
                credit,
                events,
            })
            .collect()
    }

    #[test]
    fn a_moment_is_on_the_day_a_date_says() {
        let mut days = Days::default();
        let start = DateTime::parse_from_rfc3339("1999-12-31T22:00:00Z").unwrap().with_timezone(&Utc);
        // Back and forth over midnight, to the nanosecond either side of it.
        let steps = [0, 3_599, 7_199, 7_200, 7_201, 7_199, 100_000, -100_000, 86_400 * 400];
        for s in steps {
            for ns in [0, 1, 999_999_999] {
                let at = start + chrono::TimeDelta::seconds(s) + chrono::TimeDelta::nanoseconds(ns);
                assert_eq!(days.of(at), at.date_naive(), "{at}");
            }
        }
        let midnight = DateTime::parse_from_rfc3339("2000-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(days.of(midnight - chrono::TimeDelta::nanoseconds(1)).to_string(), "1999-12-31");
        assert_eq!(days.of(midnight).to_string(), "2000-01-01");
    }

    #[test]
    fn usage_is_counted_and_sorted_as_plain_counting_does() {
        // A seeded mix: runs of one person, the same keys again later, people in several
        // accounts, credits of members, days far apart, events of no account.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let people: Vec<Arc<str>> =
            ["", "u/1", "u/10", "u/2", "acme/ann", "zed"].iter().map(|p| Arc::from(*p)).collect();
        let accounts: Vec<AccountId> = ["acme", "globex", "a"].iter().map(|a| AccountId::parse(a).unwrap()).collect();
        let members = [
            Credit::Members { people: vec!["u/1".into()], joined: vec![] },
            Credit::Members { people: vec!["u/1".into(), "u/2".into()], joined: vec![accounts[1].clone()] },
        ];
        let names = ["Report Created", "$any", "a", "Zeta", "login"];
        let start = DateTime::parse_from_rfc3339("1999-12-30T23:00:00Z").unwrap().with_timezone(&Utc);
        let mut event_people = Vec::new();
        let mut metrics = Vec::new();
        let (mut person, mut account, mut day) = (0, 0, 0);
        for i in 0..5_000 {
            // Mostly the same person, account and day as the event before.
            if next(5) == 0 {
                person = next(people.len() as u64) as usize;
                account = next(accounts.len() as u64 + 1) as usize;
                day = if next(10) == 0 { next(20_000) } else { next(4) };
            }
            event_people.push(EventPerson {
                seq: i,
                person_id: people[person].clone(),
                account_id: accounts.get(account).cloned(),
                timestamp: start + chrono::Duration::days(day as i64) + chrono::Duration::minutes(next(60 * 30) as i64),
            });
            let credit = (next(6) == 0).then(|| members[next(2) as usize].clone());
            metrics.push((i as usize, names[next(names.len() as u64) as usize], credit));
        }
        let expected = counted_plainly(&event_people, &metrics);
        assert!(expected.len() > 500, "a mix with many keys: {}", expected.len());
        let given = metrics.iter().map(|(i, m, c)| (*i, *m, c.as_ref()));
        assert_eq!(usage_of(&event_people, given, metrics.len()), expected);
        assert!(usage_of(&[], std::iter::empty(), 0).is_empty());
    }
}

#[cfg(test)]
mod span_tests {
    use super::Span;
    use chrono::{DateTime, TimeZone, Utc};

    #[test]
    fn a_span_is_the_first_and_last_of_its_times_in_any_order() {
        let at = |s: i64| -> DateTime<Utc> { Utc.timestamp_opt(s, 7).unwrap() };
        for order in [[1, 2, 3, 4, 5], [5, 4, 3, 2, 1], [3, 1, 5, 2, 4], [2, 2, 5, 1, 5], [4, 4, 4, 4, 4]] {
            let mut span = Span::default();
            assert!(span.0.is_none());
            for s in order {
                span.widen(at(s));
            }
            let (min, max) = (*order.iter().min().unwrap(), *order.iter().max().unwrap());
            assert_eq!(span.0, Some((at(min), at(max))), "{order:?}");
        }
    }
}
