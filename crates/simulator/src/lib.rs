//! A deterministic simulator of a B2B SaaS product's customers, producing their history as
//! Segment `/v1/batch` bodies (for `steward demo`) together with the ground truth of each
//! account's fate (for evaluating what Steward makes of it).
//!
//! The simulated product is a project-management app sold per seat on four plans. Its customers
//! sign up over the window (or predate it), bring their team, adopt features progressively,
//! work on weekdays in their own time zone, and then thrive, grow, decline or churn.
//!
//! Pure and deterministic: no IO, no threads, no clock (the end of the window is an input), and
//! its own random generator, so that one seed always tells the same story. Customers are planned
//! up front (a few thousand people and milestones); their events are generated day by day as the
//! batches are consumed, never all held at once.

mod activity;
mod catalog;
mod planning;
mod rng;
mod stream;
mod support;
mod world;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};

pub use stream::{MAX_BATCH_BYTES, MAX_BATCH_MESSAGES, Messages};
pub use support::SimTicket;

use world::{Customer, DAY, Window};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    pub seed: u64,
    pub accounts: usize,
    /// Length of the simulated window, ending at `end`.
    pub days: u32,
    pub end: DateTime<Utc>,
}

impl SimConfig {
    /// What `steward demo` loads: half a year of 300 customers, a few hundred thousand messages.
    pub fn demo(end: DateTime<Utc>) -> Self {
        SimConfig { seed: 42, accounts: 300, days: 180, end }
    }
}

/// Where an account is heading: the ground truth a customer success tool should uncover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fate {
    /// Steady usage, with the odd busy or quiet spell.
    Healthy,
    /// More people, more usage, a plan or seat upgrade.
    Growing,
    /// Usage fading over the last months as people stop coming back.
    Declining,
    /// Usage fading, then a cancellation; nothing after it.
    Churned,
}

impl Fate {
    pub fn as_str(&self) -> &'static str {
        match self {
            Fate::Healthy => "healthy",
            Fate::Growing => "growing",
            Fate::Declining => "declining",
            Fate::Churned => "churned",
        }
    }
}

/// One customer account as the simulation made it. Plan, seats and MRR are those at the end of
/// the window (or at the churn date).
#[derive(Clone, Debug, PartialEq)]
pub struct SimAccount {
    /// The `groupId` of its group calls.
    pub account_id: String,
    pub name: String,
    pub plan: String,
    pub seats: u32,
    pub mrr_cents: i64,
    /// When it signed up; before the window for accounts older than it.
    pub signup: DateTime<Utc>,
    pub fate: Fate,
    pub churn_date: Option<DateTime<Utc>>,
    /// How many people have joined it in all.
    pub users: u32,
    pub churn_reason: Option<String>,
    /// When growth or decline set in (growing, declining and churned accounts).
    pub fate_start: Option<DateTime<Utc>>,
    /// Its people's email domain.
    pub domain: String,
    pub industry: String,
    pub employees: u32,
    /// Its people's time zone, which sets their working hours and weekends.
    pub utc_offset_minutes: i32,
}

pub struct Simulation {
    config: SimConfig,
    window: Window,
    customers: Vec<Customer>,
    accounts: Vec<SimAccount>,
    /// The easternmost customer's offset: how early, in UTC, a local day can begin.
    max_utc_offset: i64,
}

pub(crate) fn datetime(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t).expect("simulated times are within chrono's range")
}

impl Simulation {
    pub fn new(config: SimConfig) -> Self {
        // Whole milliseconds, as the messages carry; the start rounds up to stay inside the window
        // (which leaves a zero-day window ending between two milliseconds empty).
        let end = config.end.timestamp_millis();
        let exact = config.end.timestamp_subsec_nanos().is_multiple_of(1_000_000);
        let start = end - i64::from(config.days) * DAY + i64::from(!exact);
        let window = Window { start, end };

        let fates = planning::deal_fates(config.seed, config.accounts);
        let names = planning::company_names(config.seed, config.accounts);
        let customers: Vec<Customer> = fates
            .into_iter()
            .zip(names)
            .enumerate()
            .map(|(i, (fate, company))| planning::plan_customer(config.seed, i, fate, company, &window))
            .collect();
        let accounts = customers.iter().map(|c| ground_truth(c, &window)).collect();
        let max_utc_offset = customers.iter().map(|c| c.utc_offset).max().unwrap_or(0);
        Simulation { config, window, customers, accounts, max_utc_offset }
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Segment `/v1/batch` request bodies, each `{"batch": [...], "sentAt": "..."}` with at most
    /// `max_messages` messages (clamped to 1..=2500) and under [`MAX_BATCH_BYTES`] of JSON, in
    /// chronological order. Generated day by day as they are consumed.
    ///
    /// `sentAt` is the window's end, for every batch: Segment corrects a client's clock skew as
    /// `timestamp = receivedAt - (sentAt - timestamp)`, so sending the batches shortly after
    /// `end` keeps the history where it was simulated, shifted by the delay since `end`.
    pub fn batches(&self, max_messages: usize) -> impl Iterator<Item = serde_json::Value> + '_ {
        let sent_at = activity::timestamp(self.window.end);
        stream::Batches::new(self.messages(), max_messages, sent_at)
    }

    /// The messages of [`Simulation::batches`], one by one.
    pub fn messages(&self) -> Messages<'_> {
        Messages::new(self)
    }

    /// Ground truth for later evaluation: one entry per account.
    pub fn accounts(&self) -> &[SimAccount] {
        &self.accounts
    }

    /// Every account's billing history as a billing system would hold it: one period per
    /// plan and seat count, the last ending at the cancellation (if any), in account order.
    pub fn billing(&self) -> Vec<BillingPeriod> {
        let mut out = Vec::new();
        for c in &self.customers {
            let end = c.churn.map(|(t, _)| t);
            for (n, s) in c.subscriptions.iter().enumerate() {
                if s.from >= self.window.end || end.is_some_and(|e| s.from >= e) {
                    break;
                }
                let next = c.subscriptions.get(n + 1).map(|x| x.from).filter(|&t| t < self.window.end);
                let until = match (next, end) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b).filter(|&t| t <= self.window.end),
                };
                out.push(BillingPeriod {
                    subscription_id: format!("sub_{}_{n}", c.account_id),
                    account_id: c.account_id.clone(),
                    plan: catalog::PLANS[s.plan].name.to_owned(),
                    seats: s.seats,
                    mrr_cents: s.mrr_cents(),
                    start: datetime(s.from),
                    end: until.map(datetime),
                    canceled: until.is_some() && until == end,
                });
            }
        }
        out
    }

    /// Every account's support tickets as a help desk would hold them, in account order and
    /// by opening time within each account.
    pub fn tickets(&self) -> Vec<SimTicket> {
        self.customers.iter().flat_map(|c| support::tickets(c, &self.window, self.config.seed)).collect()
    }
}

/// A period of an account's subscription at one plan and seat count.
#[derive(Clone, Debug, PartialEq)]
pub struct BillingPeriod {
    pub subscription_id: String,
    pub account_id: String,
    pub plan: String,
    pub seats: u32,
    pub mrr_cents: i64,
    pub start: DateTime<Utc>,
    /// When the next period took over or the customer cancelled; none while it runs.
    pub end: Option<DateTime<Utc>>,
    /// Whether it ended with a cancellation.
    pub canceled: bool,
}

fn ground_truth(c: &Customer, window: &Window) -> SimAccount {
    let last = c.subscription_at(c.until(window));
    SimAccount {
        account_id: c.account_id.clone(),
        name: c.name.clone(),
        plan: catalog::PLANS[last.plan].name.to_owned(),
        seats: last.seats,
        mrr_cents: last.mrr_cents(),
        signup: datetime(c.signup),
        fate: c.fate,
        churn_date: c.churn.map(|(t, _)| datetime(t)),
        users: c.members.len() as u32,
        churn_reason: c.churn.map(|(_, reason)| reason.to_owned()),
        fate_start: c.fate_start.map(datetime),
        domain: c.domain.clone(),
        industry: c.industry.to_owned(),
        employees: c.employees as u32,
        utc_offset_minutes: (c.utc_offset / world::MINUTE) as i32,
    }
}
