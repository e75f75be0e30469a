//! The simulated product's vocabulary: its plans, features, pages and events, and the names
//! its customers and their people are made of.

/// A price plan. MRR is a platform fee plus a price per seat, as B2B SaaS pricing usually is.
pub(crate) struct Plan {
    pub name: &'static str,
    pub platform_fee_cents: i64,
    pub seat_price_cents: i64,
    pub seats: (i64, i64),
    pub employees: (i64, i64),
    /// Share of new customers starting on this plan.
    pub share: f64,
    /// How many integrations a customer of this size connects, on average.
    pub integrations: f64,
}

pub(crate) const PLANS: [Plan; 4] = [
    Plan {
        name: "starter",
        platform_fee_cents: 0,
        seat_price_cents: 1_500,
        seats: (2, 5),
        employees: (3, 40),
        share: 0.45,
        integrations: 0.8,
    },
    Plan {
        name: "team",
        platform_fee_cents: 0,
        seat_price_cents: 2_500,
        seats: (5, 14),
        employees: (15, 250),
        share: 0.32,
        integrations: 1.5,
    },
    Plan {
        name: "business",
        platform_fee_cents: 20_000,
        seat_price_cents: 4_000,
        seats: (14, 36),
        employees: (100, 2_000),
        share: 0.17,
        integrations: 2.5,
    },
    Plan {
        name: "enterprise",
        platform_fee_cents: 100_000,
        seat_price_cents: 6_000,
        seats: (36, 100),
        employees: (1_000, 25_000),
        share: 0.06,
        integrations: 3.5,
    },
];

pub(crate) fn mrr_cents(plan: usize, seats: u32) -> i64 {
    PLANS[plan].platform_fee_cents + PLANS[plan].seat_price_cents * i64::from(seats)
}

/// A page of the product's web app.
pub(crate) struct Page {
    pub name: &'static str,
    pub path: &'static str,
}

pub(crate) const APP_URL: &str = "https://app.example.com";
/// The marketing site, where anonymous visitors look before signing up.
pub(crate) const SITE_URL: &str = "https://www.example.com";

pub(crate) const DASHBOARD: Page = Page { name: "Dashboard", path: "/dashboard" };
pub(crate) const INTEGRATIONS: Page = Page { name: "Integrations", path: "/settings/integrations" };
pub(crate) const PRICING: Page = Page { name: "Pricing", path: "/pricing" };
pub(crate) const SIGN_UP: Page = Page { name: "Sign Up", path: "/signup" };
pub(crate) const ACCEPT_INVITE: Page = Page { name: "Accept Invite", path: "/invite/accept" };

/// Something people do in the product. Authoring features (creating things) are rarer than
/// reading ones, and are adopted later; some advanced ones never are by many customers.
pub(crate) struct Feature {
    /// The track event it sends; none for pages visited without a tracked action.
    pub event: Option<&'static str>,
    pub page: Page,
    /// Relative frequency among the actions of a session.
    pub weight: f64,
    /// Days after signup over which a customer adopts it.
    pub adoption_days: (i64, i64),
    /// Share of customers that adopt it at all.
    pub adoption_odds: f64,
    /// Creating rather than consuming: viewers seldom do it.
    pub authoring: bool,
}

const fn feature(
    event: Option<&'static str>,
    page: Page,
    weight: f64,
    adoption_days: (i64, i64),
    adoption_odds: f64,
    authoring: bool,
) -> Feature {
    Feature { event, page, weight, adoption_days, adoption_odds, authoring }
}

pub(crate) const FEATURES: [Feature; 15] = [
    feature(Some("Dashboard Viewed"), DASHBOARD, 2.6, (0, 0), 1.0, false),
    feature(Some("Task Created"), Page { name: "Tasks", path: "/tasks" }, 1.5, (0, 2), 1.0, true),
    feature(Some("Task Completed"), Page { name: "Tasks", path: "/tasks" }, 1.8, (0, 5), 1.0, false),
    feature(Some("Project Created"), Page { name: "Projects", path: "/projects" }, 0.22, (0, 1), 1.0, true),
    feature(None, Page { name: "Projects", path: "/projects" }, 0.9, (0, 0), 1.0, false),
    feature(Some("Search Performed"), Page { name: "Search", path: "/search" }, 0.7, (0, 7), 0.9, false),
    feature(Some("Comment Added"), Page { name: "Tasks", path: "/tasks" }, 1.1, (2, 14), 0.95, true),
    feature(Some("File Uploaded"), Page { name: "Files", path: "/files" }, 0.35, (3, 21), 0.8, true),
    feature(Some("Report Viewed"), Page { name: "Reports", path: "/reports" }, 0.55, (7, 30), 0.8, false),
    feature(Some("Report Created"), Page { name: "Reports", path: "/reports" }, 0.15, (10, 45), 0.7, true),
    feature(Some("Export Downloaded"), Page { name: "Reports", path: "/reports" }, 0.1, (14, 60), 0.6, false),
    feature(Some("Automation Created"), Page { name: "Automations", path: "/automations" }, 0.05, (30, 90), 0.35, true),
    feature(None, Page { name: "Settings", path: "/settings" }, 0.12, (0, 3), 1.0, false),
    feature(None, Page { name: "Team", path: "/settings/team" }, 0.08, (1, 10), 1.0, false),
    feature(None, Page { name: "Billing", path: "/settings/billing" }, 0.03, (5, 30), 0.9, false),
];

/// Who a person is in their account. The owner signed the account up.
pub(crate) const OWNER: &str = "owner";
/// Roles of the people who join later, with their odds and how much they author.
pub(crate) const ROLES: [(&str, f64, f64); 4] =
    [("admin", 0.1, 1.3), ("manager", 0.2, 1.5), ("member", 0.55, 1.0), ("viewer", 0.15, 0.15)];

pub(crate) fn authoring_factor(role: &str) -> f64 {
    if role == OWNER {
        return 1.2;
    }
    ROLES.iter().find(|r| r.0 == role).map_or(1.0, |r| r.2)
}

pub(crate) fn may_administer(role: &str) -> bool {
    role == OWNER || role == "admin"
}

pub(crate) const SIGN_IN_METHODS: [&str; 3] = ["password", "google", "sso"];

pub(crate) const INTEGRATION_NAMES: [&str; 8] =
    ["Slack", "Google Drive", "GitHub", "Jira", "Salesforce", "HubSpot", "Zoom", "Microsoft Teams"];

/// Why customers leave, with their odds.
pub(crate) const CHURN_REASONS: [(&str, f64); 6] = [
    ("too_expensive", 0.25),
    ("low_adoption", 0.25),
    ("switched_to_competitor", 0.2),
    ("missing_features", 0.15),
    ("budget_cuts", 0.1),
    ("company_acquired", 0.05),
];

/// Where customers work, as fixed offsets from UTC in minutes (daylight saving is ignored), with
/// the odds of a customer being there: mostly the Americas and Europe.
pub(crate) const TIME_ZONES: [(i32, f64); 9] = [
    (-480, 0.14),
    (-420, 0.05),
    (-360, 0.1),
    (-300, 0.26),
    (0, 0.12),
    (60, 0.18),
    (120, 0.06),
    (330, 0.05),
    (600, 0.04),
];

/// Local hours at which sessions start, by weight: the working day, with a dip at lunch.
pub(crate) const SESSION_HOURS: [f64; 24] = [
    0.02, 0.01, 0.01, 0.01, 0.01, 0.03, 0.1, 0.35, 0.9, 1.4, 1.5, 1.35, 0.85, 1.1, 1.3, 1.25, 1.05, 0.7, 0.4, 0.3,
    0.25, 0.2, 0.1, 0.05,
];

#[rustfmt::skip]
pub(crate) const COMPANY_STEMS: [&str; 48] = [
    "Northwind", "Bluepeak", "Ironbridge", "Silverline", "Redwood", "Brightwater", "Stonegate", "Clearview",
    "Highland", "Oakridge", "Summit", "Evergreen", "Harbor", "Pinecrest", "Granite", "Riverstone",
    "Lakeshore", "Copperfield", "Westbrook", "Sunrise", "Meridian", "Keystone", "Fairview", "Cedar", "Falcon",
    "Beacon", "Horizon", "Maple", "Atlas", "Orion", "Vantage", "Juniper", "Crescent", "Sterling", "Aurora",
    "Pioneer", "Cobalt", "Lumen", "Quarry", "Willow", "Bramble", "Tidewater", "Foxglove", "Larkspur",
    "Kestrel", "Marigold", "Thistle", "Wrenfield",
];

/// Company name endings and the industry they suggest.
pub(crate) const COMPANY_KINDS: [(&str, &str); 25] = [
    ("Logistics", "Logistics"),
    ("Freight", "Logistics"),
    ("Health", "Healthcare"),
    ("Clinics", "Healthcare"),
    ("Analytics", "Software"),
    ("Labs", "Software"),
    ("Systems", "Software"),
    ("Software", "Software"),
    ("Capital", "Financial Services"),
    ("Insurance", "Financial Services"),
    ("Foods", "Food & Beverage"),
    ("Brewing", "Food & Beverage"),
    ("Studios", "Media"),
    ("Media", "Media"),
    ("Realty", "Real Estate"),
    ("Properties", "Real Estate"),
    ("Learning", "Education"),
    ("Academy", "Education"),
    ("Manufacturing", "Manufacturing"),
    ("Industries", "Manufacturing"),
    ("Consulting", "Professional Services"),
    ("Partners", "Professional Services"),
    ("Retail", "Retail"),
    ("Energy", "Energy"),
    ("Biotech", "Biotechnology"),
];

#[rustfmt::skip]
pub(crate) const FIRST_NAMES: [&str; 64] = [
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
    "Daniel", "Lisa", "Matthew", "Nancy", "Anthony", "Sandra", "Mark", "Ashley", "Steven", "Emily", "Andrew",
    "Michelle", "Joshua", "Amanda", "Kevin", "Melissa", "Brian", "Laura", "Priya", "Aisha", "Wei", "Mei",
    "Carlos", "Sofia", "Lucas", "Camille", "Jonas", "Ingrid", "Mateo", "Lucia", "Arjun", "Ananya", "Kenji",
    "Yuki", "Omar", "Leila", "Noah", "Emma", "Liam", "Olivia", "Hugo", "Chloe", "Felix", "Nora",
];

#[rustfmt::skip]
pub(crate) const LAST_NAMES: [&str; 64] = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green",
    "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Patel",
    "Chen", "Kim", "Singh", "Muller", "Schmidt", "Dubois", "Rossi", "Jansen", "Larsen", "Tanaka", "Sato",
    "Okafor", "Haddad",
];
