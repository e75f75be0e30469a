//! What a segment condition reads of an account or a person, from the store's records.

use chrono::{Datelike, Days, NaiveDate};
use domain::Timestamp;
use segments::{Facts, Field, Val};
use std::collections::HashSet;
use store::usage::ANY;
use store::{
    Account, PersonSummary, ScorePoint, Subscription, SubscriptionStatus, Ticket, TicketPriority, TicketStatus,
    UsageRow,
};

/// Days over which `active_users` counts people.
pub(crate) const ACTIVE_USERS_DAYS: u64 = segments::ACTIVE_USERS_DAYS as u64;

/// An account's records as of `now`.
pub(crate) struct AccountFacts<'a> {
    pub id: &'a str,
    pub account: Option<&'a Account>,
    pub score: Option<&'a ScorePoint>,
    pub subscriptions: &'a [Subscription],
    /// Its support tickets (read only when a condition counts them).
    pub tickets: &'a [Ticket],
    /// Its usage rows, by metric and month.
    pub usage: &'a [UsageRow],
    /// The segments it is a member of, by name, as this evaluation has them so far.
    pub segments: &'a HashSet<String>,
    pub now: Timestamp,
}

/// Subscriptions that are paying or about to (trials and unpaid invoices included) at `now`.
fn current(subscriptions: &[Subscription], now: Timestamp) -> impl Iterator<Item = &Subscription> {
    subscriptions.iter().filter(move |s| {
        matches!(s.status, SubscriptionStatus::Active | SubscriptionStatus::Trialing | SubscriptionStatus::PastDue)
            && s.started_at <= now
            && s.ended_at.is_none_or(|e| e > now)
    })
}

/// When an account's current paid period or contract ends (what `renews_at` reads): the
/// latest end of its subscriptions active (or past due) at `now`.
pub fn renews_at(subscriptions: &[Subscription], now: Timestamp) -> Option<Timestamp> {
    current(subscriptions, now)
        .filter(|s| matches!(s.status, SubscriptionStatus::Active | SubscriptionStatus::PastDue))
        .filter_map(|s| s.current_period_end.max(s.ended_at))
        .max()
}

impl AccountFacts<'_> {
    fn current(&self) -> impl Iterator<Item = &Subscription> {
        current(self.subscriptions, self.now)
    }

    fn renews_at(&self) -> Option<Timestamp> {
        renews_at(self.subscriptions, self.now)
    }

    /// Tickets not solved or closed, and those of them marked high or urgent.
    fn open_tickets(&self) -> (usize, usize) {
        let open = self.tickets.iter().filter(|t| !matches!(t.status, TicketStatus::Solved | TicketStatus::Closed));
        open.fold((0, 0), |(all, urgent), t| {
            (all + 1, urgent + usize::from(matches!(t.priority, TicketPriority::High | TicketPriority::Urgent)))
        })
    }

    fn traits(&self, key: &str) -> Val {
        self.account.and_then(|a| a.traits.get(key)).map_or(Val::Missing, Val::from_json)
    }

    fn rows<'b>(&'b self, events: Option<&'b [String]>) -> impl Iterator<Item = &'b UsageRow> + 'b {
        self.usage.iter().filter(move |r| match events {
            Some(names) => names.contains(&r.metric),
            None => r.metric == ANY,
        })
    }

    /// People active in the last [`ACTIVE_USERS_DAYS`] days, today included.
    fn active_users(&self) -> usize {
        let today = self.now.date_naive();
        let from = today - Days::new(ACTIVE_USERS_DAYS - 1);
        let mut people = HashSet::new();
        for row in self.rows(None) {
            let mask = window_mask(row.month, from, today);
            people.extend(row.people.iter().filter(|(_, days)| days & mask != 0).map(|(key, _)| *key));
        }
        people.len()
    }
}

/// The bits of a row's day slots that fall in `[from, to]`.
fn window_mask(month: NaiveDate, from: NaiveDate, to: NaiveDate) -> u32 {
    let mut mask = 0u32;
    for slot in 0..31u32 {
        let Some(d) = month.with_day(slot + 1) else { break };
        if d >= from && d <= to {
            mask |= 1 << slot;
        }
    }
    mask
}

fn days_with_events(row: &UsageRow) -> impl Iterator<Item = (NaiveDate, u32)> + '_ {
    row.events
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .filter_map(|(slot, n)| Some((row.month.with_day(slot as u32 + 1)?, *n)))
}

impl Facts for AccountFacts<'_> {
    fn field(&self, field: Field) -> Val {
        let score = self.score;
        let num = |v: Option<f64>| v.map_or(Val::Missing, Val::Num);
        match field {
            Field::Id => Val::Text(self.id.to_owned()),
            Field::Name => self.account.and_then(|a| a.name.clone()).map_or(Val::Missing, Val::Text),
            Field::Domain => match self.traits("domain") {
                Val::Missing => self.traits("website"),
                v => v,
            },
            Field::Plan => {
                let largest = self.current().filter(|s| s.plan.is_some()).max_by_key(|s| s.mrr.minor);
                match largest.and_then(|s| s.plan.clone()) {
                    Some(plan) => Val::Text(plan),
                    None => self.traits("plan"),
                }
            }
            Field::Health => num(score.map(|s| s.health)),
            Field::Band => score.map_or(Val::Missing, |s| Val::Text(s.band.as_str().to_owned())),
            Field::ChurnRisk30 => num(score.and_then(|s| s.churn_30d)),
            Field::ChurnRisk60 => num(score.and_then(|s| s.churn_60d)),
            Field::ChurnRisk90 => num(score.and_then(|s| s.churn_90d)),
            Field::Expansion => num(score.and_then(|s| s.expansion)),
            Field::Mrr => {
                let current: Vec<&Subscription> = self.current().collect();
                if current.is_empty() {
                    num(score.and_then(|s| s.mrr).map(|m| m.major()))
                } else {
                    Val::Num(current.iter().map(|s| s.mrr.major()).sum())
                }
            }
            Field::Seats => {
                let seats: i64 = self.current().map(|s| s.quantity).sum();
                if seats > 0 { Val::Num(seats as f64) } else { self.traits("seats") }
            }
            Field::ActiveUsers => Val::Num(self.active_users() as f64),
            Field::CreatedAt => {
                self.account.map(|a| a.first_seen_at.unwrap_or(a.created_at)).map_or(Val::Missing, Val::Time)
            }
            Field::LastSeen => self.account.and_then(|a| a.last_seen_at).map_or(Val::Missing, Val::Time),
            Field::RenewsAt => self.renews_at().map_or(Val::Missing, Val::Time),
            Field::OpenTickets => Val::Num(self.open_tickets().0 as f64),
            Field::UrgentTickets => Val::Num(self.open_tickets().1 as f64),
            Field::Email => Val::Missing,
        }
    }

    fn trait_value(&self, key: &str) -> Val {
        self.traits(key)
    }

    fn daily(&self, events: Option<&[String]>, from: NaiveDate, to: NaiveDate) -> Vec<(NaiveDate, u32)> {
        let mut out = Vec::new();
        for row in self.rows(events) {
            out.extend(days_with_events(row).filter(|(d, _)| *d >= from && *d <= to));
        }
        out
    }

    fn first_day(&self, events: &[String]) -> Option<NaiveDate> {
        self.rows(Some(events)).filter_map(|r| days_with_events(r).next().map(|(d, _)| d)).min()
    }

    fn last_day(&self, events: &[String]) -> Option<NaiveDate> {
        self.rows(Some(events)).filter_map(|r| days_with_events(r).last().map(|(d, _)| d)).max()
    }

    fn in_segment(&self, name: &str) -> bool {
        self.segments.contains(name)
    }
}

/// A person's record. A person's events are counted per account, so a people segment takes
/// fields, traits, times and other segments; the checker refuses event functions for it.
pub(crate) struct PersonFacts<'a> {
    pub person: Option<&'a PersonSummary>,
    pub segments: &'a HashSet<String>,
}

impl Facts for PersonFacts<'_> {
    fn field(&self, field: Field) -> Val {
        let Some(p) = self.person else { return Val::Missing };
        let text = |v: Option<&str>| v.map_or(Val::Missing, |s| Val::Text(s.to_owned()));
        match field {
            Field::Id => text(p.user_id.as_deref().or(Some(&p.person_id))),
            Field::Email => text(p.traits.get("email").and_then(|v| v.as_str())),
            Field::Name => text(p.traits.get("name").and_then(|v| v.as_str())),
            Field::CreatedAt => p.first_seen_at.map_or(Val::Missing, Val::Time),
            Field::LastSeen => p.last_seen_at.map_or(Val::Missing, Val::Time),
            _ => Val::Missing,
        }
    }

    fn trait_value(&self, key: &str) -> Val {
        self.person.and_then(|p| p.traits.get(key)).map_or(Val::Missing, Val::from_json)
    }

    fn daily(&self, _: Option<&[String]>, _: NaiveDate, _: NaiveDate) -> Vec<(NaiveDate, u32)> {
        Vec::new()
    }

    fn first_day(&self, _: &[String]) -> Option<NaiveDate> {
        None
    }

    fn last_day(&self, _: &[String]) -> Option<NaiveDate> {
        None
    }

    fn in_segment(&self, name: &str) -> bool {
        self.segments.contains(name)
    }
}
