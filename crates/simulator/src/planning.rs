//! Planning the customers up front: who they are, when they signed up, who works in them, how
//! their subscription changes, and what their fate holds. Everything planned is small (people
//! and milestones, not events), so it is kept whole; events are generated day by day from it.

use std::collections::HashSet;
use std::f64::consts::TAU;

use crate::Fate;
use crate::catalog::{
    CHURN_REASONS, COMPANY_KINDS, COMPANY_STEMS, FEATURES, FIRST_NAMES, INTEGRATION_NAMES, LAST_NAMES, OWNER, PLANS,
    ROLES, SIGN_IN_METHODS, TIME_ZONES, may_administer,
};
use crate::rng::Rng;
use crate::world::{Customer, DAY, HOUR, MINUTE, Member, Milestone, Ms, SECOND, Subscription, Window, streams};

/// Fates in the proportions the simulated market has, dealt at random: exact counts rather than
/// independent draws, so that even a small run has some of each.
pub(crate) fn deal_fates(seed: u64, accounts: usize) -> Vec<Fate> {
    let share = |p: f64| (accounts as f64 * p).round() as usize;
    let mut fates = vec![Fate::Healthy; accounts];
    let mut next = 0;
    for (fate, count) in [(Fate::Churned, share(0.10)), (Fate::Growing, share(0.15)), (Fate::Declining, share(0.15))] {
        for slot in fates.iter_mut().skip(next).take(count) {
            *slot = fate;
        }
        next += count;
    }
    Rng::stream(seed, &[streams::FATES]).shuffle(&mut fates);
    fates
}

/// Company names, all different: stems and kinds combined in a shuffled order, numbered once
/// every combination is taken.
pub(crate) fn company_names(seed: u64, accounts: usize) -> Vec<(String, String, &'static str)> {
    let combinations = COMPANY_STEMS.len() * COMPANY_KINDS.len();
    let mut order: Vec<usize> = (0..combinations).collect();
    Rng::stream(seed, &[streams::NAMES]).shuffle(&mut order);
    (0..accounts)
        .map(|i| {
            let c = order[i % combinations];
            let (stem, (kind, industry)) =
                (COMPANY_STEMS[c / COMPANY_KINDS.len()], COMPANY_KINDS[c % COMPANY_KINDS.len()]);
            let round = i / combinations;
            let suffix = if round == 0 { String::new() } else { format!(" {}", round + 1) };
            let name = format!("{stem} {kind}{suffix}");
            // `.example` is reserved (RFC 2606): a demo can never email a real mailbox.
            let slug: String =
                name.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_ascii_lowercase();
            (name, format!("{slug}.example"), industry)
        })
        .collect()
}

/// How far before the window's end a customer of each fate must have signed up to live out its
/// fate inside the window, the odds that it predates the window altogether, and then how long
/// before it at least (accounts that fade have had their prime first).
fn signup_rules(fate: Fate) -> (Ms, f64, Ms) {
    match fate {
        Fate::Healthy => (5 * DAY, 0.45, 14 * DAY),
        Fate::Growing => (90 * DAY, 0.45, 14 * DAY),
        Fate::Declining => (110 * DAY, 0.55, 60 * DAY),
        Fate::Churned => (60 * DAY, 0.5, 60 * DAY),
    }
}

pub(crate) fn plan_customer(
    seed: u64,
    index: usize,
    fate: Fate,
    company: (String, String, &'static str),
    window: &Window,
) -> Customer {
    let mut rng = Rng::stream(seed, &[streams::PLANNING, index as u64]);
    let plan = rng.weighted(&PLANS, |p| p.share);
    let seats = rng.between(PLANS[plan].seats.0, PLANS[plan].seats.1) as u32;
    let employees = rng.between(PLANS[plan].employees.0, PLANS[plan].employees.1).max(3 * i64::from(seats));
    let utc_offset = Ms::from(TIME_ZONES[rng.weighted(&TIME_ZONES, |z| z.1)].0) * MINUTE;
    let (name, domain, industry) = company;
    let mut c = Customer {
        index,
        account_id: format!("acct_{:04}", index + 1),
        name,
        domain,
        industry,
        employees,
        utc_offset,
        signup: 0,
        fate,
        fate_start: None,
        horizon: window.end,
        churn: None,
        growth_gain: rng.uniform(1.0, 2.0),
        decline_floor: rng.uniform(0.12, 0.3),
        engagement: rng.log_normal(0.3),
        season: (rng.uniform(0.04, 0.12), rng.uniform(45.0, 120.0), rng.uniform(0.0, TAU)),
        members: Vec::new(),
        subscriptions: Vec::new(),
        milestones: Vec::new(),
        adoption: [None; FEATURES.len()],
    };

    let (lead, older_odds, min_age) = signup_rules(fate);
    let latest_signup = window.end - lead;
    c.signup = if latest_signup > window.start + DAY && !rng.chance(older_odds) {
        let t = window.start + rng.between(0, latest_signup - window.start);
        c.working_time(t, &mut rng)
    } else {
        // Older customers: a long tail of ages, up to a few years before the window.
        let age = min_age + (rng.exponential(250.0).min(1_500.0) * DAY as f64) as Ms;
        c.working_time(window.start - age, &mut rng)
    };
    plan_fate(&mut c, window, &mut rng);

    plan_members(&mut c, plan, seats, window, &mut rng);
    plan_subscriptions(&mut c, plan, seats, window, &mut rng);
    for (slot, f) in c.adoption.iter_mut().zip(FEATURES.iter()) {
        // Savvier customers (more engaged) adopt more of the product, and sooner.
        let odds = (f.adoption_odds * c.engagement.sqrt()).min(1.0);
        if rng.chance(odds) {
            let lag = rng.between(f.adoption_days.0, f.adoption_days.1) as f64 / c.engagement.sqrt();
            *slot = Some(c.signup + (lag * DAY as f64) as Ms);
        }
    }
    plan_milestones(&mut c, plan, window, &mut rng);
    c
}

/// When growth or decline sets in, and when a churning customer leaves.
fn plan_fate(c: &mut Customer, window: &Window, rng: &mut Rng) {
    let w = window.length();
    match c.fate {
        Fate::Healthy => {}
        Fate::Growing => {
            let from = (c.signup + 21 * DAY).max(window.start - rng.between(0, 20 * DAY));
            c.fate_start = Some(from.min(window.end - w / 2));
        }
        Fate::Declining => {
            // A peak to decline from first: some weeks of the account's prime inside the window.
            let earliest = (c.signup + 45 * DAY).max(window.start + w / 6);
            let latest = (window.end - w / 4).max(earliest);
            let mut from = window.end - rng.between(50 * DAY, 110 * DAY);
            if from < earliest {
                from = rng.between(earliest, (earliest + w / 6).min(latest));
            }
            c.fate_start = Some(from.min(latest));
        }
        Fate::Churned => {
            let (lo, hi) = if c.signup < window.start {
                // Late enough for the account to be seen well before it starts to fade.
                (window.start + w * 7 / 20, window.end - 2 * DAY)
            } else {
                (c.signup + 45 * DAY, (c.signup + 150 * DAY).min(window.end - 2 * DAY))
            };
            let t = rng.between(lo, hi.max(lo));
            let mut at = c.working_time(t, rng);
            if at > window.end - HOUR {
                // Only in windows too short for a churn to play out: keep it inside anyway.
                at = t.min(window.end - HOUR).max(window.start);
            }
            let reason = CHURN_REASONS[rng.weighted(&CHURN_REASONS, |r| r.1)].0;
            c.churn = Some((at, reason));
            c.horizon = at;
            let from = (at - rng.between(30 * DAY, 70 * DAY))
                .max(c.signup + rng.between(21 * DAY, 28 * DAY))
                .max(window.start + (at - window.start) * 3 / 10);
            c.fate_start = Some(from.min(at - 14 * DAY));
        }
    }
}

fn plan_members(c: &mut Customer, plan: usize, seats: u32, window: &Window, rng: &mut Rng) {
    let initial = ((f64::from(seats) * rng.uniform(0.45, 0.85)).round() as usize).max(1);
    let mut joins = vec![c.signup];
    for _ in 1..initial {
        let t = if c.signup >= window.start {
            // The first team arrives over the first days, invited by whoever signed up.
            c.signup + 10 * MINUTE + (rng.exponential(3.0).min(21.0) * DAY as f64) as Ms
        } else {
            c.signup + rng.between(0, (window.start - c.signup) / 2)
        };
        joins.push(c.working_time(t, rng));
    }
    let until = c.until(window);
    joins.retain(|&t| t == c.signup || t < until - HOUR);
    let settled = (c.signup + 14 * DAY).max(window.start);
    let (expected, from, to) = match (c.fate, c.fate_start) {
        (Fate::Growing, Some(from)) => (initial as f64 * rng.uniform(0.5, 1.2), from.max(settled), window.end),
        (Fate::Declining | Fate::Churned, Some(from)) => (initial as f64 * rng.uniform(0.0, 0.15), settled, from),
        _ => (initial as f64 * rng.uniform(0.0, 0.3), settled, window.end),
    };
    if to > from {
        // Growth shows in headcount too: a growing account always brings in a few more people.
        let floor = if c.fate == Fate::Growing { 2 } else { 0 };
        for _ in 0..floor + rng.poisson(expected) {
            let t = c.working_time(rng.between(from, to), rng);
            if t < until - HOUR {
                joins.push(t);
            }
        }
    }
    joins[1..].sort_unstable();

    let mut emails = HashSet::new();
    for (j, &joined) in joins.iter().enumerate() {
        let role = if j == 0 { OWNER } else { ROLES[rng.weighted(&ROLES, |r| r.1)].0 };
        let (first, last) = (*rng.pick(&FIRST_NAMES), *rng.pick(&LAST_NAMES));
        let local = format!("{}.{}", first.to_ascii_lowercase(), last.to_ascii_lowercase());
        let mut email = format!("{local}@{}", c.domain);
        let mut n = 2;
        while !emails.insert(email.clone()) {
            email = format!("{local}{n}@{}", c.domain);
            n += 1;
        }
        // Power users, regulars and occasional visitors; whoever signed up is never occasional.
        let personas: &[(f64, f64)] =
            if j == 0 { &[(0.55, 0.8), (0.45, 0.22)] } else { &[(0.15, 0.8), (0.45, 0.22), (0.4, 0.06)] };
        let propensity = personas[rng.weighted(personas, |p| p.0)].1 * rng.log_normal(0.25);
        let sso_odds = if plan == PLANS.len() - 1 { 0.8 } else { 0.15 };
        let sign_in_method = if rng.chance(sso_odds) { SIGN_IN_METHODS[2] } else { *rng.pick(&SIGN_IN_METHODS[..2]) };
        let in_window = joined >= window.start;
        let invitation = if j > 0 && in_window {
            let inviters: Vec<usize> =
                (0..j).filter(|&k| may_administer(c.members[k].role) && c.members[k].joined < joined - HOUR).collect();
            let by = if inviters.is_empty() { 0 } else { *rng.pick(&inviters) };
            let opens = c.day_start(c.local_day(joined)) + 7 * HOUR;
            let at = (joined - rng.between(10 * MINUTE, 3 * HOUR)).max(opens).max(c.members[by].joined + MINUTE);
            Some((by, at.min(joined - MINUTE)))
        } else {
            None
        };
        let dormant_odds = match c.fate {
            Fate::Declining => 0.6,
            Fate::Churned => 0.7,
            _ => 0.0,
        };
        let dormant_from = match c.fate_start {
            Some(from) if rng.chance(dormant_odds) => Some(rng.between(from.max(joined), c.horizon)),
            _ => None,
        };
        c.members.push(Member {
            user_id: format!("usr_{:04}_{:03}", c.index + 1, j + 1),
            name: format!("{first} {last}"),
            email,
            role,
            joined,
            invitation,
            anonymous_id: (in_window && rng.chance(0.4)).then(|| rng.uuid()),
            propensity,
            diligence: rng.log_normal(0.4),
            sign_in_method,
            dormant_from,
        });
    }
}

/// The subscription over time. Seats are added when an invitee accepts and the account has none
/// free (a true-up, as most per-seat products do); growing customers also upgrade their plan.
fn plan_subscriptions(c: &mut Customer, plan: usize, seats: u32, window: &Window, rng: &mut Rng) {
    let mut current = Subscription { from: c.signup, plan, seats };
    c.subscriptions.push(current);
    let mut upgrade = match (c.fate, c.fate_start) {
        (Fate::Growing, Some(from)) => {
            let from = from.max(window.start);
            let t = c.working_time(from + ((window.end - from) as f64 * rng.uniform(0.2, 0.8)) as Ms, rng);
            (t < window.end - HOUR).then_some(t)
        }
        _ => None,
    };
    let joins: Vec<Ms> = c.members.iter().map(|m| m.joined).collect();
    for (headcount, joined) in joins.into_iter().enumerate().map(|(j, t)| (j as u32 + 1, t)) {
        if let Some(at) = upgrade.filter(|&at| at < joined) {
            current = upgraded(current, at);
            c.subscriptions.push(current);
            upgrade = None;
        }
        if headcount > current.seats {
            let slack = rng.between(0, i64::from(current.seats / 5).max(1)) as u32;
            let from = (joined - SECOND).max(current.from + 1);
            current = Subscription { from, plan: current.plan, seats: headcount + slack };
            c.subscriptions.push(current);
        }
    }
    if let Some(at) = upgrade {
        c.subscriptions.push(upgraded(current, at));
    }
}

/// A growing customer's upgrade: the next plan up (with at least its smallest size) and a fifth
/// more seats; an enterprise customer only buys seats.
fn upgraded(current: Subscription, at: Ms) -> Subscription {
    let plan = (current.plan + 1).min(PLANS.len() - 1);
    let more = current.seats + current.seats.div_ceil(5);
    Subscription { from: at, plan, seats: more.max(PLANS[plan].seats.0 as u32) }
}

fn plan_milestones(c: &mut Customer, plan: usize, window: &Window, rng: &mut Rng) {
    let until = c.until(window);
    let mut milestones = Vec::new();
    if c.signup < window.start {
        milestones.push((window.start, Milestone::Backfill));
    } else {
        milestones.push((c.signup, Milestone::SignUp));
    }
    for (j, m) in c.members.iter().enumerate().skip(1) {
        if let Some((_, at)) = m.invitation {
            milestones.push((at, Milestone::Invite { member: j }));
            milestones.push((m.joined, Milestone::Join { member: j }));
        }
    }
    for (index, s) in c.subscriptions.iter().enumerate().skip(1) {
        if s.from >= window.start {
            milestones.push((s.from, Milestone::SubscriptionChange { index }));
        }
    }
    let mut integrations = INTEGRATION_NAMES;
    rng.shuffle(&mut integrations);
    let count = (rng.poisson(PLANS[plan].integrations) as usize).min(integrations.len());
    for &integration in &integrations[..count] {
        let at = c.working_time(c.signup + rng.between(7 * DAY, 150 * DAY), rng);
        if at >= window.start && at < until - HOUR {
            let admins: Vec<usize> = (0..c.members.len())
                .filter(|&k| may_administer(c.members[k].role) && c.members[k].joined < at)
                .collect();
            let by = if admins.is_empty() { 0 } else { *rng.pick(&admins) };
            milestones.push((at, Milestone::IntegrationConnected { by, integration }));
        }
    }
    if let Some((at, _)) = c.churn {
        milestones.push((at, Milestone::Cancellation));
    }
    milestones.sort_by_key(|m| m.0);
    c.milestones = milestones;
}
