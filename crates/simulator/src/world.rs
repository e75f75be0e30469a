//! The simulated world's model: its clock, the customers, their people, subscriptions and
//! milestones, and how much each customer uses the product at any moment.

use std::f64::consts::TAU;

use crate::Fate;
use crate::catalog::{FEATURES, mrr_cents};
use crate::rng::Rng;

/// Milliseconds since the Unix epoch: the simulator's clock.
pub(crate) type Ms = i64;
pub(crate) const SECOND: Ms = 1_000;
pub(crate) const MINUTE: Ms = 60 * SECOND;
pub(crate) const HOUR: Ms = 60 * MINUTE;
pub(crate) const DAY: Ms = 24 * HOUR;

/// Keys of the generator's independent random streams.
pub(crate) mod streams {
    pub const FATES: u64 = 1;
    pub const NAMES: u64 = 2;
    pub const PLANNING: u64 = 3;
    pub const USAGE: u64 = 4;
    pub const MILESTONES: u64 = 5;
    pub const SUPPORT: u64 = 6;
    pub const BILLING: u64 = 7;
}

/// The simulated stretch of time, both ends included.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub start: Ms,
    pub end: Ms,
}

impl Window {
    pub fn length(&self) -> Ms {
        self.end - self.start
    }
}

/// Day of the week of a day number (days since the epoch), Monday being 0.
pub(crate) fn weekday(day: i64) -> i64 {
    // 1970-01-01 was a Thursday.
    (day + 3).rem_euclid(7)
}

pub(crate) fn is_weekend(day: i64) -> bool {
    weekday(day) >= 5
}

/// A person working in a customer account, using the product.
pub(crate) struct Member {
    pub user_id: String,
    pub name: String,
    pub email: String,
    pub role: &'static str,
    pub joined: Ms,
    /// Who invited them (a member index) and when; none for the owner and for people who
    /// joined before the window.
    pub invitation: Option<(usize, Ms)>,
    /// Set for people whose first visit was anonymous, linked by their identify call.
    pub anonymous_id: Option<String>,
    /// How readily they use the product on a given day, before the account's own rhythm.
    pub propensity: f64,
    /// How much they do in a session, relative to others.
    pub diligence: f64,
    pub sign_in_method: &'static str,
    /// From when they stopped using the product (in declining and churning accounts).
    pub dormant_from: Option<Ms>,
}

/// The subscription from a moment on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Subscription {
    pub from: Ms,
    pub plan: usize,
    pub seats: u32,
}

impl Subscription {
    pub fn mrr_cents(&self) -> i64 {
        mrr_cents(self.plan, self.seats)
    }
}

/// Something that happens once in an account's life.
pub(crate) enum Milestone {
    /// The account and its people as they stand at the start of the window, for accounts
    /// older than it: their history before it is not replayed.
    Backfill,
    SignUp,
    Invite {
        member: usize,
    },
    Join {
        member: usize,
    },
    SubscriptionChange {
        index: usize,
    },
    IntegrationConnected {
        by: usize,
        integration: &'static str,
    },
    Cancellation,
}

pub(crate) struct Customer {
    pub index: usize,
    pub account_id: String,
    pub name: String,
    pub domain: String,
    pub industry: &'static str,
    pub employees: i64,
    /// Offset of the customer's time zone from UTC.
    pub utc_offset: Ms,
    pub signup: Ms,
    pub fate: Fate,
    /// When growth or decline sets in.
    pub fate_start: Option<Ms>,
    /// The end of the customer's trajectory: the churn date, or the end of the window.
    pub horizon: Ms,
    pub churn: Option<(Ms, &'static str)>,
    /// How much more a growing customer uses the product by the end of its growth.
    pub growth_gain: f64,
    /// Where a fading customer's usage settles, relative to its prime.
    pub decline_floor: f64,
    /// How intensely this customer uses the product, relative to others of its size.
    pub engagement: f64,
    /// A slow business cycle: amplitude, period in days, phase.
    pub season: (f64, f64, f64),
    pub members: Vec<Member>,
    /// Sorted by `from`; the first is the subscription at signup.
    pub subscriptions: Vec<Subscription>,
    /// Sorted by time.
    pub milestones: Vec<(Ms, Milestone)>,
    /// When the customer adopted each of `FEATURES`, if it ever did.
    pub adoption: [Option<Ms>; FEATURES.len()],
}

impl Customer {
    /// The customer's local day number (days since the epoch, in its time zone) of a moment.
    pub fn local_day(&self, t: Ms) -> i64 {
        (t + self.utc_offset).div_euclid(DAY)
    }

    /// When the customer's local day begins, in UTC.
    pub fn day_start(&self, day: i64) -> Ms {
        day * DAY - self.utc_offset
    }

    /// The last moment anything happens in the account.
    pub fn until(&self, window: &Window) -> Ms {
        self.churn.map_or(window.end, |(t, _)| t.min(window.end))
    }

    pub fn subscription_at(&self, t: Ms) -> &Subscription {
        let i = self.subscriptions.partition_point(|s| s.from <= t);
        &self.subscriptions[i.saturating_sub(1)]
    }

    /// How much the account uses the product at a moment, relative to a typical settled account:
    /// its own intensity, a slow business cycle, the adoption ramp of its first weeks, and the
    /// trend its fate sets.
    pub fn vitality(&self, t: Ms) -> f64 {
        let days = |ms: Ms| ms as f64 / DAY as f64;
        let (amplitude, period, phase) = self.season;
        let season = 1.0 + amplitude * (days(t) * TAU / period + phase).sin();
        let age = days(t - self.signup).max(0.0);
        let ramp = 0.2 + 0.8 * (1.0 - (-age / 14.0).exp());
        let trend = self.trend(t);
        self.engagement * season * ramp * trend
    }

    /// Where the account's fate has taken its usage by `t`, relative to its prime: rising for a
    /// growing account, fading towards its floor for a declining or churning one.
    pub fn trend(&self, t: Ms) -> f64 {
        match (self.fate, self.fate_start) {
            (Fate::Growing, Some(from)) => {
                let progress = (t - from) as f64 / (self.horizon - from).max(DAY) as f64;
                1.0 + self.growth_gain * progress.clamp(0.0, 1.0)
            }
            (Fate::Declining | Fate::Churned, Some(from)) if t > from => {
                let tau = (self.horizon - from).max(DAY) as f64 / 2.5;
                self.decline_floor + (1.0 - self.decline_floor) * (-((t - from) as f64) / tau).exp()
            }
            _ => 1.0,
        }
    }

    /// How far a fading account has gone towards its floor at `t`, from 0 (not at all, or not
    /// fading) to 1: the trouble that shows in its support tickets, payments and survey answers.
    pub fn strain(&self, t: Ms) -> f64 {
        match self.fate {
            Fate::Declining | Fate::Churned => ((1.0 - self.trend(t)) / (1.0 - self.decline_floor)).clamp(0.0, 1.0),
            _ => 0.0,
        }
    }

    /// Members who had joined by `t` and still come by.
    pub fn active_members(&self, t: Ms) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(move |m| m.joined <= t && m.dormant_from.is_none_or(|d| d > t))
    }

    /// A working-hours moment (a weekday, 9:30 to 17:00 local) at or after `t`: when people
    /// sign up, join and buy.
    pub fn working_time(&self, t: Ms, rng: &mut Rng) -> Ms {
        let opens = 9 * HOUR + 30 * MINUTE;
        let closes = 17 * HOUR;
        let mut day = self.local_day(t);
        loop {
            if !is_weekend(day) {
                let start = self.day_start(day);
                let earliest = (t - start).max(opens);
                if earliest < closes {
                    return start + rng.between(earliest, closes);
                }
            }
            day += 1;
        }
    }
}
