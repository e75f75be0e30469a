//! One customer's day, as Segment messages: its milestones (sign-ups, invitations, upgrades,
//! cancellation) and its people's sessions in the product.

use serde_json::{Map, Value, json};

use crate::catalog::{
    ACCEPT_INVITE, APP_URL, DASHBOARD, FEATURES, INTEGRATIONS, PLANS, PRICING, Page, SESSION_HOURS, SIGN_UP, SITE_URL,
    authoring_factor,
};
use crate::rng::Rng;
use crate::world::{
    Customer, DAY, HOUR, MINUTE, Member, Milestone, Ms, SECOND, Subscription, Window, is_weekend, streams,
};

/// Weekend days see this share of a weekday's visitors (people working through the weekend).
const WEEKEND_VISITS: f64 = 0.15;
/// ...and they do a bit less while there.
const WEEKEND_SESSION_LENGTH: f64 = 0.85;
/// Accounts older than the window are introduced (their traits, their people) in its first
/// minutes; their usage starts after that, so that nobody acts before being identified.
pub(crate) const BACKFILL_SPAN: Ms = 6 * MINUTE;

/// A message without its `messageId` and `timestamp`, which are set once messages are in order.
pub(crate) type Draft = (Ms, Map<String, Value>);

pub(crate) fn timestamp(t: Ms) -> String {
    chrono::DateTime::from_timestamp_millis(t)
        .expect("simulated times are within chrono's range")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Who sends a message: a known user, or a visitor not yet identified.
#[derive(Clone, Copy)]
enum Sender<'a> {
    User(&'a str),
    Visitor(&'a str),
}

/// Collects one day's messages, keeping only those inside the window and the account's life.
struct Day<'a> {
    out: &'a mut Vec<Draft>,
    from: Ms,
    until: Ms,
    account_id: &'a str,
}

impl Day<'_> {
    fn push(&mut self, at: Ms, kind: &str, sender: Sender<'_>, mut fields: Map<String, Value>) {
        if at < self.from || at > self.until {
            return;
        }
        fields.insert("type".into(), kind.into());
        match sender {
            Sender::User(id) => fields.insert("userId".into(), id.into()),
            Sender::Visitor(id) => fields.insert("anonymousId".into(), id.into()),
        };
        self.out.push((at, fields));
    }

    fn track(&mut self, at: Ms, member: &Member, event: &str, properties: Value) {
        let fields = fields([
            ("event", event.into()),
            ("properties", properties),
            ("context", json!({ "groupId": self.account_id })),
        ]);
        self.push(at, "track", Sender::User(&member.user_id), fields);
    }

    fn page(&mut self, at: Ms, sender: Sender<'_>, page: &Page, base_url: &str) {
        let mut fields = fields([
            ("name", page.name.into()),
            ("properties", json!({ "path": page.path, "url": format!("{base_url}{}", page.path), "title": page.name })),
        ]);
        if let Sender::User(_) = sender {
            fields.insert("context".into(), json!({ "groupId": self.account_id }));
        }
        self.push(at, "page", sender, fields);
    }

    fn identify(&mut self, at: Ms, member: &Member) {
        let mut fields = fields([(
            "traits",
            json!({
                "email": member.email,
                "name": member.name,
                "role": member.role,
                "created_at": timestamp(member.joined),
            }),
        )]);
        if let Some(anonymous_id) = &member.anonymous_id {
            fields.insert("anonymousId".into(), anonymous_id.as_str().into());
        }
        self.push(at, "identify", Sender::User(&member.user_id), fields);
    }

    fn group(&mut self, at: Ms, member: &Member, traits: Value) {
        let fields = fields([("groupId", self.account_id.into()), ("traits", traits)]);
        self.push(at, "group", Sender::User(&member.user_id), fields);
    }
}

fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn account_traits(c: &Customer, s: &Subscription) -> Value {
    json!({
        "name": c.name,
        "plan": PLANS[s.plan].name,
        "industry": c.industry,
        "employees": c.employees,
        "seats": s.seats,
        "mrr": s.mrr_cents(),
        "created_at": timestamp(c.signup),
        "status": "active",
    })
}

/// Appends the messages of `c`'s local day number `day` to `out`, in no particular order.
pub(crate) fn simulate_day(c: &Customer, window: &Window, seed: u64, day: i64, out: &mut Vec<Draft>) {
    let opens = c.day_start(day);
    let closes = opens + DAY;
    let until = c.until(window);
    if closes <= window.start || opens > until || closes <= c.signup {
        return;
    }
    let mut today = Day { out, from: window.start, until, account_id: &c.account_id };

    let first = c.milestones.partition_point(|m| m.0 < opens);
    let last = c.milestones.partition_point(|m| m.0 < closes);
    if first < last {
        let mut rng = Rng::stream(seed, &[streams::MILESTONES, c.index as u64, day as u64]);
        for (at, milestone) in &c.milestones[first..last] {
            celebrate(c, *at, milestone, opens, &mut today, &mut rng);
        }
    }

    let mut rng = Rng::stream(seed, &[streams::BILLING, c.index as u64, day as u64]);
    beyond_the_product(c, day, opens, &mut today, &mut rng);

    let mut rng = Rng::stream(seed, &[streams::USAGE, c.index as u64, day as u64]);
    let midday = opens + 13 * HOUR;
    let weekend = is_weekend(day);
    // Busy and quiet days are shared by the whole team.
    let mood = c.vitality(midday) * rng.log_normal(0.25);
    let visits = if weekend { mood * WEEKEND_VISITS } else { mood };
    let length = if weekend { WEEKEND_SESSION_LENGTH } else { 1.0 };
    let workday = Workday {
        customer: c,
        adopted: (0..FEATURES.len()).filter(|&i| c.adoption[i].is_some_and(|t| t <= midday)).collect(),
        until: until.min(closes - 1),
    };
    let earliest = if c.signup < window.start { window.start + BACKFILL_SPAN } else { window.start };

    for member in &c.members {
        if member.joined >= closes {
            continue;
        }
        // Someone who has stopped coming back still drops by once in a long while.
        let dormancy = if member.dormant_from.is_some_and(|t| t <= midday) { 0.01 } else { 1.0 };
        let actions_mean = 1.3 * member.diligence * (mood * dormancy).sqrt().min(3.0) * length;
        if member.joined >= opens {
            // Newcomers look around right after joining.
            let start = member.joined + rng.between(MINUTE, 4 * MINUTE);
            let actions = 1 + rng.poisson(actions_mean);
            workday.session(member, start, actions, &mut today, &mut rng);
            continue;
        }
        let p = 1.0 - (-member.propensity * visits * dormancy).exp();
        if !rng.chance(p) {
            continue;
        }
        let sessions = 1 + rng.poisson(0.2 * mood.min(2.0) * length);
        for _ in 0..sessions {
            let hour = rng.weighted(&SESSION_HOURS, |w| *w) as Ms;
            let start = opens + hour * HOUR + rng.between(0, HOUR - 1);
            if start < earliest {
                continue;
            }
            let actions = 1 + rng.poisson(actions_mean);
            workday.session(member, start, actions, &mut today, &mut rng);
        }
    }
}

/// What the vendor's own systems report about the account on its local day `day`: failed
/// renewal payments (billing runs at night, on the day of the month the account signed up, and
/// retries three days later), the plan's limits being hit, and the owner's answer to the
/// quarterly NPS survey (kept as the account's `nps` trait, 0 to 10). Fading accounts fail to
/// pay and score low; growing ones run into their limits.
fn beyond_the_product(c: &Customer, day: i64, opens: Ms, today: &mut Day<'_>, rng: &mut Rng) {
    let owner = &c.members[0];
    let midday = opens + 13 * HOUR;
    let strain = c.strain(midday);
    let age = day - c.local_day(c.signup);
    if age <= 0 {
        return;
    }
    let mrr = c.subscription_at(midday).mrr_cents();
    // The billing contact is told, and answers the survey: someone still around.
    let billing_contact = c.active_members(midday).next();
    if let Some(contact) = billing_contact.filter(|_| age % 30 == 0 && rng.chance(0.02 + 0.3 * strain)) {
        let at = opens + 2 * HOUR + rng.between(0, HOUR);
        today.track(at, contact, "Payment Failed", json!({ "amount": mrr, "currency": "usd", "attempt": 1 }));
        if rng.chance(0.5) {
            today.track(
                at + 3 * DAY,
                contact,
                "Payment Failed",
                json!({ "amount": mrr, "currency": "usd", "attempt": 2 }),
            );
        }
    }
    let growing = c.fate == crate::Fate::Growing && c.fate_start.is_some_and(|f| midday >= f);
    let p_limit = match c.fate {
        _ if growing => 0.05 + 0.25 * (c.trend(midday) - 1.0) / c.growth_gain,
        crate::Fate::Healthy => 0.003,
        _ => 0.0,
    };
    if !is_weekend(day) && rng.chance(p_limit) {
        let s = c.subscription_at(midday);
        let limit = *rng.pick(&["seats", "projects", "automations", "storage"]);
        let who = c.active_members(midday).last().unwrap_or(owner);
        today.track(
            c.working_time(opens, rng),
            who,
            "Plan Limit Reached",
            json!({ "limit": limit, "plan": PLANS[s.plan].name, "seats": s.seats }),
        );
    }
    if let Some(respondent) = billing_contact.filter(|_| age % 91 == 45 && rng.chance(0.6)) {
        let boost = if growing { 1.0 } else { 0.0 };
        let score = (8.0 + boost - 6.0 * strain + 1.5 * rng.normal()).round().clamp(0.0, 10.0) as i64;
        today.group(c.working_time(opens, rng), respondent, json!({ "nps": score }));
    }
}

/// What a customer's people can do in the product on a given day.
struct Workday<'a> {
    customer: &'a Customer,
    /// The features the customer has adopted by then (indices into `FEATURES`).
    adopted: Vec<usize>,
    /// Sessions stop at the end of the day, or at the churn.
    until: Ms,
}

impl Workday<'_> {
    /// One visit to the product: maybe a sign-in, then pages and the actions done on them.
    fn session(&self, member: &Member, start: Ms, actions: u32, today: &mut Day<'_>, rng: &mut Rng) {
        let (c, adopted, until) = (self.customer, &self.adopted, self.until);
        if adopted.is_empty() {
            return;
        }
        let mut t = start;
        if rng.chance(0.45) {
            today.track(t, member, "Signed In", json!({ "method": member.sign_in_method }));
            t += rng.between(2 * SECOND, 15 * SECOND);
        }
        let authoring = authoring_factor(member.role);
        let mut on_page = None;
        for _ in 0..actions {
            if t > until {
                return;
            }
            let feature = &FEATURES[adopted[rng.weighted(adopted, |&i| {
                let f = &FEATURES[i];
                if f.authoring { f.weight * authoring } else { f.weight }
            })]];
            if on_page != Some(feature.page.name) {
                today.page(t, Sender::User(&member.user_id), &feature.page, APP_URL);
                on_page = Some(feature.page.name);
                t += rng.between(SECOND, 20 * SECOND);
            }
            if let Some(event) = feature.event {
                today.track(t, member, event, properties(c, event, t, rng));
            }
            t += 3 * SECOND + (rng.exponential(75.0) * SECOND as f64) as Ms;
        }
    }
}

/// What an action's `properties` say, in the product's own terms.
fn properties(c: &Customer, event: &str, t: Ms, rng: &mut Rng) -> Value {
    // Older and bigger accounts have more projects to work in.
    let age_days = (t - c.signup) / DAY;
    let projects = (1 + c.members.len() as i64 / 2 + age_days / 14).min(150);
    let project = format!("prj_{:04}_{:03}", c.index + 1, rng.between(1, projects));
    match event {
        "Dashboard Viewed" => json!({ "dashboard": rng.pick(&["Overview", "My Work", "Team Workload", "Portfolio"]) }),
        "Task Created" => json!({
            "project_id": project,
            "priority": rng.pick(&["low", "medium", "medium", "high", "urgent"]),
            "has_due_date": rng.chance(0.6),
        }),
        "Task Completed" => json!({ "project_id": project, "days_open": rng.exponential(4.0).round() as i64 }),
        "Project Created" => json!({
            "project_id": format!("prj_{:04}_{:03}", c.index + 1, projects + 1),
            "template": rng.pick(&["blank", "kanban", "sprint", "roadmap", "launch plan"]),
        }),
        "Search Performed" => json!({ "results": rng.poisson(12.0) }),
        "Comment Added" => json!({
            "project_id": project,
            "characters": rng.between(12, 400),
            "mentions": rng.poisson(0.4),
        }),
        "File Uploaded" => json!({
            "project_id": project,
            "file_type": rng.pick(&["pdf", "png", "docx", "xlsx", "csv"]),
            "size_kb": 5 + rng.exponential(800.0).round() as i64,
        }),
        "Report Viewed" => json!({ "report_type": rng.pick(&["burndown", "workload", "timeline", "status"]) }),
        "Report Created" => json!({
            "report_type": rng.pick(&["burndown", "workload", "timeline", "status"]),
            "shared": rng.chance(0.4),
        }),
        "Export Downloaded" => json!({
            "format": rng.pick(&["csv", "xlsx", "pdf"]),
            "rows": 10 + rng.exponential(400.0).round() as i64,
        }),
        "Automation Created" => json!({
            "trigger": rng.pick(&["task_completed", "due_date", "status_changed", "form_submitted"]),
        }),
        _ => json!({}),
    }
}

/// The messages of a milestone. Steps of one flow are a few hundred milliseconds apart, as an
/// app's calls after one click are.
fn celebrate(c: &Customer, at: Ms, milestone: &Milestone, opens: Ms, today: &mut Day<'_>, rng: &mut Rng) {
    let owner = &c.members[0];
    match *milestone {
        Milestone::Backfill => {
            // Spread over the first minutes so that the accounts are not all stamped alike.
            let base = at + (c.index as Ms * 997) % (BACKFILL_SPAN - MINUTE);
            today.group(base, owner, account_traits(c, c.subscription_at(at)));
            for (j, m) in c.members.iter().enumerate().filter(|(_, m)| m.joined < at) {
                let t = base + 10 + 4 * j as Ms;
                today.identify(t, m);
                today.group(t + 1, m, json!({ "name": c.name }));
            }
        }
        Milestone::SignUp => {
            if let Some(visitor) = &owner.anonymous_id {
                let browsing = (at - rng.between(3 * MINUTE, 12 * MINUTE)).max(opens);
                today.page(browsing, Sender::Visitor(visitor), &PRICING, SITE_URL);
                today.page(
                    (at - rng.between(20 * SECOND, 2 * MINUTE)).max(browsing),
                    Sender::Visitor(visitor),
                    &SIGN_UP,
                    SITE_URL,
                );
            }
            today.identify(at, owner);
            today.track(at + 150, owner, "Signed Up", json!({ "type": "organic" }));
            let s = c.subscription_at(at);
            today.group(at + 300, owner, account_traits(c, s));
            today.track(at + 450, owner, "Account Created", json!({ "plan": PLANS[s.plan].name, "seats": s.seats }));
            today.page(at + 1_500, Sender::User(&owner.user_id), &DASHBOARD, APP_URL);
        }
        Milestone::Invite { member } => {
            let invitee = &c.members[member];
            let (by, _) = invitee.invitation.expect("an invite milestone has an invitation");
            let inviter = &c.members[by];
            today.track(
                at,
                inviter,
                "Invite Sent",
                json!({ "invitee_email": invitee.email, "invitee_role": invitee.role }),
            );
        }
        Milestone::Join { member } => {
            let m = &c.members[member];
            if let Some(visitor) = &m.anonymous_id {
                let t = (at - rng.between(20 * SECOND, 3 * MINUTE)).max(opens);
                today.page(t, Sender::Visitor(visitor), &ACCEPT_INVITE, APP_URL);
            }
            today.identify(at, m);
            today.group(at + 150, m, json!({ "name": c.name }));
            today.track(at + 300, m, "Signed Up", json!({ "type": "invited" }));
        }
        Milestone::SubscriptionChange { index } => {
            let (before, after) = (&c.subscriptions[index - 1], &c.subscriptions[index]);
            today.track(
                at,
                owner,
                "Subscription Upgraded",
                json!({
                    "plan": PLANS[after.plan].name,
                    "seats": after.seats,
                    "mrr": after.mrr_cents(),
                    "previous_plan": PLANS[before.plan].name,
                    "previous_seats": before.seats,
                    "previous_mrr": before.mrr_cents(),
                }),
            );
            today.group(at + 200, owner, account_traits(c, after));
        }
        Milestone::IntegrationConnected { by, integration } => {
            let m = &c.members[by];
            today.page(at, Sender::User(&m.user_id), &INTEGRATIONS, APP_URL);
            today.track(
                at + rng.between(20 * SECOND, 3 * MINUTE),
                m,
                "Integration Connected",
                json!({ "integration": integration }),
            );
        }
        Milestone::Cancellation => {
            let (_, reason) = c.churn.expect("a cancellation milestone has a churn");
            let mrr = c.subscription_at(at).mrr_cents();
            today.track(at, owner, "Subscription Cancelled", json!({ "mrr": mrr, "reason": reason }));
            today.group(at, owner, json!({ "status": "churned" }));
        }
    }
}
