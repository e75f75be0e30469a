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

use foldhash::{HashMap, HashMapExt, HashSet};

use chrono::{DateTime, Utc};
use domain::{AccountId, EventType, IdentityKey, WorkspaceId, person_id_for};
use serde_json::{Map, Value};
use store::{Changes, EventPerson, KnownPerson, LoggedEvent, Op};

/// The changes that processing `events` (in log order) makes, given what the store knows of
/// the identities they mention.
pub fn resolve(ws: &WorkspaceId, events: &[LoggedEvent], known: Vec<(IdentityKey, KnownPerson)>) -> Changes {
    resolve_learning(ws, events, known).0
}

/// Like [`resolve`], also returning what the identities are once the changes are applied.
pub(crate) fn resolve_learning(
    ws: &WorkspaceId,
    events: &[LoggedEvent],
    known: Vec<(IdentityKey, KnownPerson)>,
) -> (Changes, Learned) {
    let mut state = State::new(ws, known);
    for logged in events {
        state.event(logged);
    }
    state.finish()
}

/// The identities a slice looked up or changed, as they are after it: each key's person, the
/// user id of each person, and the people merged into others.
#[derive(Default)]
pub(crate) struct Learned {
    pub identities: HashMap<IdentityKey, String>,
    pub user_of: HashMap<String, Option<String>>,
    pub merged: HashMap<String, String>,
}

struct State<'a> {
    ws: &'a WorkspaceId,
    identities: HashMap<IdentityKey, String>,
    /// The user id of every person this slice knows of.
    user_of: HashMap<String, Option<String>>,
    /// Merged person -> the person it was merged into.
    merged: HashMap<String, String>,
    ops: Vec<Op>,
    event_people: Vec<EventPerson>,
    /// First and last activity per person, and whether any of it named no account.
    seen: HashMap<String, Activity>,
    /// First and last activity per account its events named.
    account_seen: HashMap<AccountId, Span>,
    /// The accounts the slice named and the people it made members of each.
    members: HashMap<AccountId, HashSet<String>>,
}

impl<'a> State<'a> {
    fn new(ws: &'a WorkspaceId, known: Vec<(IdentityKey, KnownPerson)>) -> Self {
        let mut identities = HashMap::new();
        let mut user_of = HashMap::new();
        for (key, person) in known {
            user_of.insert(person.person_id.clone(), person.user_id);
            identities.insert(key, person.person_id);
        }
        State {
            ws,
            identities,
            user_of,
            merged: HashMap::new(),
            ops: Vec::new(),
            event_people: Vec::new(),
            seen: HashMap::new(),
            account_seen: HashMap::new(),
            members: HashMap::new(),
        }
    }

    fn event(&mut self, logged: &LoggedEvent) {
        let e = &logged.event;
        let at = e.timestamp;
        let person = match (e.kind, &e.user_id, &e.previous_id) {
            (EventType::Alias, Some(user), Some(previous)) => self.alias(user, previous, at),
            _ => self.person(e.user_id.as_deref(), e.anonymous_id.as_deref(), at),
        };
        let Some(person) = person else { return };
        let account = e.group_id.as_deref().and_then(|g| AccountId::parse(g).ok());
        if let Some(account) = &account {
            self.membership(&person, account, at);
        }
        match e.kind {
            EventType::Identify => {
                if let Some(traits) = traits_of(&e.payload) {
                    self.ops.push(Op::SetPersonTraits { person_id: person.clone(), traits, at });
                }
            }
            EventType::Group => {
                if let (Some(account), Some(traits)) = (&account, traits_of(&e.payload)) {
                    self.ops.push(Op::SetAccountTraits { account_id: account.clone(), traits, at });
                }
            }
            _ => {}
        }
        // Most events are of a person and account seen before in the slice: look up before
        // copying a key.
        let activity = match self.seen.get_mut(&person) {
            Some(activity) => activity,
            None => self.seen.entry(person.clone()).or_default(),
        };
        activity.all.widen(at);
        match &account {
            Some(account) => match self.account_seen.get_mut(account) {
                Some(span) => span.widen(at),
                None => self.account_seen.entry(account.clone()).or_default().widen(at),
            },
            None => activity.unnamed.widen(at),
        }
        self.event_people.push(EventPerson {
            seq: logged.position.seq,
            person_id: person,
            account_id: account,
            timestamp: at,
        });
    }

    fn lookup(&self, key: &IdentityKey) -> Option<String> {
        self.identities.get(key).cloned()
    }

    fn link(&mut self, key: IdentityKey, person: &str) {
        if self.identities.get(&key).map(String::as_str) != Some(person) {
            self.ops.push(Op::LinkIdentity { key: key.clone(), person_id: person.to_owned() });
            self.identities.insert(key, person.to_owned());
        }
    }

    fn create(&mut self, key: &IdentityKey, user_id: Option<&str>, at: DateTime<Utc>) -> String {
        let person = person_id_for(self.ws, key);
        self.ops.push(Op::CreatePerson { person_id: person.clone(), user_id: user_id.map(str::to_owned), at });
        self.user_of.insert(person.clone(), user_id.map(str::to_owned));
        self.link(key.clone(), &person);
        person
    }

    fn is_identified(&self, person: &str) -> bool {
        self.user_of.get(person).is_some_and(Option::is_some)
    }

    fn merge(&mut self, from: &str, into: &str, at: DateTime<Utc>) {
        self.ops.push(Op::MergePeople { from: from.to_owned(), into: into.to_owned(), at });
        for target in self.identities.values_mut() {
            if target == from {
                *target = into.to_owned();
            }
        }
        if !self.is_identified(into) {
            let user = self.user_of.get(from).cloned().flatten();
            self.user_of.insert(into.to_owned(), user);
        }
        self.user_of.remove(from);
        self.merged.insert(from.to_owned(), into.to_owned());
    }

    /// The person a message from `user_id` / `anonymous_id` belongs to, creating or linking
    /// as the rules say.
    fn person(&mut self, user_id: Option<&str>, anonymous_id: Option<&str>, at: DateTime<Utc>) -> Option<String> {
        let anon_key = anonymous_id.map(IdentityKey::anonymous);
        let by_anon = anon_key.as_ref().and_then(|k| self.lookup(k));
        let Some(user) = user_id else {
            let key = anon_key?;
            return Some(by_anon.unwrap_or_else(|| self.create(&key, None, at)));
        };
        let user_key = IdentityKey::user(user);
        match (self.lookup(&user_key), by_anon) {
            (Some(p), None) => {
                if let Some(k) = anon_key {
                    self.link(k, &p);
                }
                Some(p)
            }
            (Some(p), Some(a)) if p == a => Some(p),
            (Some(p), Some(a)) => {
                if self.is_identified(&a) {
                    // A device shared by two users: the anonymous id follows the latest user.
                    self.link(anon_key.expect("looked up by it"), &p);
                } else {
                    self.merge(&a, &p, at);
                }
                Some(p)
            }
            (None, Some(a)) if !self.is_identified(&a) => {
                self.ops.push(Op::SetUserId { person_id: a.clone(), user_id: user.to_owned() });
                self.user_of.insert(a.clone(), Some(user.to_owned()));
                self.link(user_key, &a);
                Some(a)
            }
            (None, _) => {
                // A new user; an anonymous id on another identified person moves to them.
                let p = self.create(&user_key, Some(user), at);
                if let Some(k) = anon_key {
                    self.link(k, &p);
                }
                Some(p)
            }
        }
    }

    /// `alias(userId, previousId)`: the person known by `previous` (a user id or an anonymous
    /// id) is the person `user`.
    fn alias(&mut self, user: &str, previous: &str, at: DateTime<Utc>) -> Option<String> {
        let user_key = IdentityKey::user(user);
        let prev_user = IdentityKey::user(previous);
        let prev_anon = IdentityKey::anonymous(previous);
        let old = self.lookup(&prev_user).or_else(|| self.lookup(&prev_anon));
        let new = self.lookup(&user_key);
        let person = match (new, old) {
            (Some(n), Some(o)) if n != o => {
                self.merge(&o, &n, at);
                n
            }
            (Some(n), _) => n,
            (None, Some(o)) => {
                if !self.is_identified(&o) {
                    self.ops.push(Op::SetUserId { person_id: o.clone(), user_id: user.to_owned() });
                    self.user_of.insert(o.clone(), Some(user.to_owned()));
                }
                self.link(user_key, &o);
                o
            }
            (None, None) => {
                let p = self.create(&user_key, Some(user), at);
                self.link(prev_anon.clone(), &p);
                p
            }
        };
        // Later messages may name the person by either kind of previous id.
        if self.lookup(&prev_user).is_none() && self.lookup(&prev_anon).is_none() {
            self.link(prev_anon, &person);
        }
        Some(person)
    }

    fn membership(&mut self, person: &str, account: &AccountId, at: DateTime<Utc>) {
        let members = match self.members.get_mut(account) {
            Some(members) => members,
            None => {
                self.ops.push(Op::UpsertAccount { account_id: account.clone(), at });
                self.members.entry(account.clone()).or_default()
            }
        };
        if !members.contains(person) {
            members.insert(person.to_owned());
            self.ops.push(Op::AddMembership { person_id: person.to_owned(), account_id: account.clone(), at });
        }
    }

    fn final_id(&self, person: &str) -> String {
        let mut p = person;
        while let Some(next) = self.merged.get(p) {
            p = next;
        }
        p.to_owned()
    }

    /// The slice's changes, with one first/last-seen update per person and per account it
    /// touched (not one per event or per pair).
    fn finish(mut self) -> (Changes, Learned) {
        let mut event_people = std::mem::take(&mut self.event_people);
        for e in &mut event_people {
            e.person_id = self.final_id(&e.person_id);
        }
        let mut people: HashMap<String, Activity> = HashMap::new();
        for (p, activity) in std::mem::take(&mut self.seen) {
            people.entry(self.final_id(&p)).or_default().add(&activity);
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
        let learned = Learned { identities: self.identities, user_of: self.user_of, merged: self.merged };
        (Changes { ops: self.ops, event_people }, learned)
    }
}

/// The first and last of some moments; empty until one is added.
#[derive(Clone, Copy, Default)]
struct Span(Option<(DateTime<Utc>, DateTime<Utc>)>);

impl Span {
    fn widen(&mut self, at: DateTime<Utc>) {
        self.0 = Some(match self.0 {
            Some((first, last)) => (first.min(at), last.max(at)),
            None => (at, at),
        });
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
