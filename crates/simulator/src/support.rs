//! The customers' support tickets, as a help desk would hold them: a few questions a month from
//! a settled team, more at the start (onboarding) and many more, more urgent and less kindly
//! rated, from an account whose usage is fading.

use chrono::{DateTime, Utc};

use crate::Fate;
use crate::rng::Rng;
use crate::world::{Customer, DAY, HOUR, MINUTE, Ms, Window, streams};

/// A support ticket. Times after the window's end have not happened yet: such a ticket is
/// still waiting for its answer or its resolution.
#[derive(Clone, Debug, PartialEq)]
pub struct SimTicket {
    pub ticket_id: String,
    pub account_id: String,
    /// Who asked: a user id of the account.
    pub requester: String,
    pub requester_email: String,
    pub subject: String,
    /// `low`, `normal`, `high` or `urgent`.
    pub priority: &'static str,
    pub opened_at: DateTime<Utc>,
    pub first_response_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// The requester's rating of a resolved ticket, 1 to 5, when they gave one.
    pub csat: Option<u8>,
}

/// What customers write in about, by what troubles them.
const QUESTIONS: [&str; 8] = [
    "How do I set up recurring tasks?",
    "Can we change the owner of a project?",
    "Question about exporting reports to Excel",
    "How do permissions work for viewers?",
    "Setting up the Slack integration",
    "Can we get an invoice with our VAT number?",
    "Is there a keyboard shortcut for search?",
    "Adding a second workspace for another team",
];
const PROBLEMS: [&str; 8] = [
    "Dashboard takes forever to load",
    "Automations stopped running",
    "Exports fail with an error",
    "Notifications are not arriving",
    "Sync with Jira keeps breaking",
    "We were charged twice this month",
    "Data missing from the workload report",
    "Users locked out after password reset",
];
const ONBOARDING: [&str; 4] = [
    "Importing our projects from spreadsheets",
    "Best way to invite the whole team?",
    "Help choosing between Team and Business",
    "Can someone walk us through setup?",
];

/// Every ticket `c` opened in the window, in order.
pub(crate) fn tickets(c: &Customer, window: &Window, seed: u64) -> Vec<SimTicket> {
    let mut rng = Rng::stream(seed, &[streams::SUPPORT, c.index as u64]);
    let until = c.until(window);
    let mut out = Vec::new();
    let mut week = window.start.max(c.signup);
    while week < until {
        let strain = c.strain(week);
        let onboarding = week - c.signup < 30 * DAY;
        let team = c.members.iter().filter(|m| m.joined <= week).count().max(1) as f64;
        // A settled team of five asks about one question a month; a strained one several.
        let mut rate = 0.08 * team.sqrt() * (1.0 + 5.0 * strain);
        if onboarding {
            rate += 0.3;
        }
        if c.fate == Fate::Growing && c.fate_start.is_some_and(|f| week >= f) {
            rate *= 1.3;
        }
        for _ in 0..rng.poisson(rate) {
            let opened = c.working_time(week + rng.between(0, 7 * DAY - 1), &mut rng);
            if opened >= until {
                continue;
            }
            let Some(requester) = pick_requester(c, opened, &mut rng) else { continue };
            let (subject, priority) = if onboarding && rng.chance(0.6) {
                (*rng.pick(&ONBOARDING), if rng.chance(0.2) { "high" } else { "normal" })
            } else if rng.chance(0.25 + 0.6 * strain) {
                let urgent = rng.chance(0.15 + 0.45 * strain);
                (*rng.pick(&PROBLEMS), if urgent { *rng.pick(&["high", "urgent"]) } else { "normal" })
            } else {
                (*rng.pick(&QUESTIONS), if rng.chance(0.3) { "low" } else { "normal" })
            };
            let slow = 1.0 + 2.0 * strain;
            let answered = opened + MINUTE * 10 + (rng.exponential(3.0 * slow) * HOUR as f64) as Ms;
            let resolved = answered + (rng.exponential(1.5 * slow) * DAY as f64) as Ms;
            let rated = resolved <= window.end && rng.chance(0.45);
            // A settled customer mostly rates 4 or 5; a strained one 1 to 3.
            let csat = rated.then(|| (4.6 - 3.0 * strain + 0.7 * rng.normal()).round().clamp(1.0, 5.0) as u8);
            out.push(SimTicket {
                ticket_id: String::new(),
                account_id: c.account_id.clone(),
                requester: requester.0,
                requester_email: requester.1,
                subject: subject.to_owned(),
                priority,
                opened_at: crate::datetime(opened),
                first_response_at: (answered <= window.end).then(|| crate::datetime(answered)),
                resolved_at: (resolved <= window.end).then(|| crate::datetime(resolved)),
                csat,
            });
        }
        week += 7 * DAY;
    }
    out.sort_by_key(|t| t.opened_at);
    for (n, t) in out.iter_mut().enumerate() {
        t.ticket_id = format!("tkt_{}_{:03}", c.account_id, n + 1);
    }
    out
}

/// Someone still using the product at `t`, admins more often (they are the ones who write in).
fn pick_requester(c: &Customer, t: Ms, rng: &mut Rng) -> Option<(String, String)> {
    let people: Vec<_> = c.active_members(t).collect();
    if people.is_empty() {
        return None;
    }
    let m = people[rng.weighted(&people, |m| if crate::catalog::may_administer(m.role) { 3.0 } else { 1.0 })];
    Some((m.user_id.clone(), m.email.clone()))
}
