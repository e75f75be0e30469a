//! The reading pages: sign-in, the overview, the accounts table and an account's page.

use std::collections::{HashMap, HashSet};

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use chrono::{Days, NaiveDate, Utc};
use domain::{AccountId, KeyRole, WorkspaceId};
use minijinja::{Value, context};
use serde_json::json;
use store::{
    AccountQuery, AccountSort, AlertFilter, HealthBand, MessageFilter, PageRequest, PortfolioDay, RunFilter, RunStatus,
    TaskFilter, TaskStatus,
};

use super::chart::{self, Series};
use super::next;
use super::session::Signed;
use super::{UiError, money, render, ser};
use crate::AppState;

/// What every page's layout shows: who is signed in, where, what they may do.
pub(crate) fn layout(signed: &Signed, active: &str, q: &HashMap<String, String>) -> Value {
    ser(json!({
        "workspace": signed.workspace_name,
        "workspace_id": signed.operator.workspace_id,
        "operator": {"name": signed.operator.name, "email": signed.operator.email, "role": signed.operator.role.as_str()},
        "csrf": signed.session.csrf_token,
        "active": active,
        "can_act": signed.can(KeyRole::Member),
        "is_admin": signed.can(KeyRole::Admin),
        "done": q.get("done"),
    }))
}

pub(crate) fn login(
    email: &str,
    workspace: &str,
    next: &str,
    error: &str,
    csrf: &str,
) -> Result<Html<String>, UiError> {
    render("login.html", context! { email, workspace, next, error, csrf })
}

fn svg(s: String) -> Value {
    Value::from_safe_string(s)
}

fn money_list(list: &[domain::Money]) -> String {
    if list.is_empty() {
        return money(0, "");
    }
    list.iter().map(|m| money(m.minor, m.currency.as_str())).collect::<Vec<_>>().join(" + ")
}

const TREND_DAYS: u64 = 90;

/// The last [`TREND_DAYS`] days of the portfolio, from the sums kept by day as scores are
/// written (a few hundred rows whatever the number of accounts).
async fn trend(s: &AppState, ws: &WorkspaceId, today: NaiveDate) -> Result<Vec<PortfolioDay>, UiError> {
    let to = today + Days::new(1);
    Ok(s.store().portfolio_trend(ws, to - Days::new(TREND_DAYS), to).await?)
}

/// `GET /overview`.
pub(crate) async fn overview(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let ws = &signed.operator.workspace_id;
    let today = Utc::now().date_naive();
    let portfolio = s.store().portfolio(ws, today - Days::new(7)).await?;
    let days = trend(&s, ws, today).await?;
    let labels: Vec<String> =
        (0..10).map(|i| format!("{}–{}", i * 10, if i == 9 { 100 } else { i * 10 + 9 })).collect();
    let histogram = chart::bars(
        "Accounts by health score",
        &labels,
        &portfolio.histogram.map(|n| n as f64),
        &["risk", "risk", "risk", "risk", "neutral", "neutral", "neutral", "healthy", "healthy", "healthy"],
    );
    let day_labels: Vec<String> = days.iter().map(|d| d.day.to_string()).collect();
    let bands = chart::line(
        "Accounts per band by day",
        &day_labels,
        &[
            Series { name: "healthy", class: "healthy", values: days.iter().map(|d| d.bands.healthy as f64).collect() },
            Series { name: "neutral", class: "neutral", values: days.iter().map(|d| d.bands.neutral as f64).collect() },
            Series { name: "at risk", class: "risk", values: days.iter().map(|d| d.bands.at_risk as f64).collect() },
        ],
        None,
    );
    // Trends in the workspace's main currency (the one most of its MRR is in).
    let currency = portfolio.mrr.iter().max_by_key(|m| m.minor).map(|m| m.currency);
    let in_currency = |list: &[domain::Money]| {
        list.iter().filter(|m| Some(m.currency) == currency).map(|m| m.minor as f64 / 100.0).sum::<f64>()
    };
    let cur = currency.map(|c| c.as_str().to_owned()).unwrap_or_default();
    let at_risk_trend = chart::line(
        &format!("MRR at risk by day ({cur})"),
        &day_labels,
        &[Series {
            name: "MRR at risk",
            class: "risk",
            values: days.iter().map(|d| in_currency(&d.mrr_at_risk)).collect(),
        }],
        None,
    );
    let pipeline_trend = chart::line(
        &format!("Expansion pipeline by day ({cur})"),
        &day_labels,
        &[Series {
            name: "expansion pipeline",
            class: "healthy",
            values: days.iter().map(|d| in_currency(&d.expansion_pipeline)).collect(),
        }],
        None,
    );
    let kpis = kpi_section(&s, ws).await?;
    let scored = portfolio.bands.total();
    let html = render(
        "overview.html",
        context! {
            layout => layout(&signed, "overview", &q),
            scored,
            bands => ser(&portfolio.bands),
            mrr => money_list(&portfolio.mrr),
            mrr_at_risk => money_list(&portfolio.mrr_at_risk),
            expansion_pipeline => money_list(&portfolio.expansion_pipeline),
            open_alerts => portfolio.open_alerts,
            open_tasks => portfolio.open_tasks,
            band_changes => ser(&portfolio.band_changes),
            histogram => svg(histogram),
            bands_chart => svg(bands),
            at_risk_chart => svg(at_risk_trend),
            pipeline_chart => svg(pipeline_trend),
            days => days.len(),
            kpis => kpis,
        },
    )?;
    Ok(html.into_response())
}

/// The CS KPIs as the last scoring run computed them: each one's latest month as a card, and
/// its months as a line chart (months with nothing measured left out).
async fn kpi_section(s: &AppState, ws: &WorkspaceId) -> Result<Value, UiError> {
    use store::Kpi;
    let Some(report) = s.store().kpis(ws).await? else { return Ok(Value::from(())) };
    let month_label = |m: NaiveDate| m.format("%b %Y").to_string();
    let points = |kpi: Kpi| -> Vec<(NaiveDate, f64)> {
        report.series(kpi).filter_map(|m| Some((m.month, m.value()? * 100.0))).collect()
    };
    let chart_of = |title: &str, series: &[(Kpi, &'static str, &'static str)]| {
        // The months every series has a value for.
        let mut months: Vec<NaiveDate> = points(series[0].0).into_iter().map(|p| p.0).collect();
        for (kpi, _, _) in &series[1..] {
            let have: Vec<NaiveDate> = points(*kpi).into_iter().map(|p| p.0).collect();
            months.retain(|m| have.contains(m));
        }
        let labels: Vec<String> = months.iter().map(|m| month_label(*m)).collect();
        let lines: Vec<Series> = series
            .iter()
            .map(|(kpi, name, class)| Series {
                name,
                class,
                values: points(*kpi).into_iter().filter(|p| months.contains(&p.0)).map(|p| p.1).collect(),
            })
            .collect();
        svg(chart::line(title, &labels, &lines, None))
    };
    let cur = report.currency.map(|c| c.as_str().to_owned()).unwrap_or_default();
    let card = |kpi: Kpi, label: &str, class: &str| {
        let latest = report.series(kpi).filter(|m| m.value().is_some()).last();
        json!({
            "kpi": kpi.as_str(),
            "label": label,
            "class": class,
            "value": latest.and_then(|m| m.value()).map(|v| format!("{:.1}%", v * 100.0)),
            "month": latest.map(|m| month_label(m.month)),
            "detail": latest.map(|m| match kpi {
                // MRR, in the currency's minor units.
                Kpi::GrossMrrChurn | Kpi::Nrr | Kpi::NrrYear => format!(
                    "{} of {}",
                    money(m.numerator as i64, "").trim_end(),
                    money(m.denominator as i64, &cur)
                ),
                Kpi::LogoChurn | Kpi::Activation => {
                    format!("{} of {} accounts", trim_number(m.numerator), trim_number(m.denominator))
                }
            }),
        })
    };
    let cards = vec![
        card(Kpi::Activation, "Activation", "healthy"),
        card(Kpi::GrossMrrChurn, "Gross MRR churn", "risk"),
        card(Kpi::LogoChurn, "Logo churn", "risk"),
        card(Kpi::Nrr, "NRR (month)", ""),
        card(Kpi::NrrYear, "NRR (12 months)", ""),
    ];
    Ok(context! {
        cards => ser(&cards),
        currency => cur,
        computed_at => report.computed_at.to_rfc3339(),
        activation_chart => chart_of("Activation rate by month of first activity (%)", &[(Kpi::Activation, "activation", "healthy")]),
        churn_chart => chart_of(
            "Churn by month (%)",
            &[(Kpi::GrossMrrChurn, "gross MRR churn", "risk"), (Kpi::LogoChurn, "logo churn", "neutral")],
        ),
        nrr_chart => chart_of(
            "Net revenue retention (%)",
            &[(Kpi::Nrr, "NRR of the month", "s1"), (Kpi::NrrYear, "NRR over 12 months", "healthy")],
        ),
    })
}

/// A count or an amount in minor units, without a fraction when it has none.
fn trim_number(v: f64) -> String {
    if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.2}") }
}

fn param<'a>(q: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The accounts table's query from its form, with what was wrong in it.
fn account_query(q: &HashMap<String, String>) -> Result<AccountQuery, UiError> {
    let sort = match param(q, "sort") {
        None => AccountSort::Id,
        Some(s) => s.parse().map_err(|_| UiError::bad("Sort by account, health, churn risk, expansion or MRR."))?,
    };
    let descending = match param(q, "order") {
        Some("desc") => true,
        Some("asc") => false,
        None => matches!(sort, AccountSort::ChurnRisk | AccountSort::Mrr | AccountSort::Expansion),
        Some(_) => return Err(UiError::bad("Order is asc or desc.")),
    };
    let band = param(q, "band")
        .map(|b| b.parse::<HealthBand>().map_err(|_| UiError::bad("Band is healthy, neutral or at_risk.")))
        .transpose()?;
    let churn_min = param(q, "risk")
        .map(|r| match r.parse::<f64>() {
            Ok(v) if (0.0..=100.0).contains(&v) => Ok(v / 100.0),
            _ => Err(UiError::bad("Churn risk is a percentage from 0 to 100.")),
        })
        .transpose()?;
    Ok(AccountQuery {
        sort,
        descending,
        band,
        churn_min,
        search: param(q, "q").map(str::to_owned),
        plan: param(q, "plan").map(str::to_owned),
        owner: param(q, "owner").map(str::to_owned),
        segment: param(q, "segment").map(str::to_owned),
        ..Default::default()
    })
}

const PAGE_SIZE: usize = 50;
/// How far a search's matches are counted ("1,000 or more").
const SEARCH_COUNTED: u64 = 1_000;

/// `GET /accounts`: `q`, `band`, `risk` (minimum churn risk in %), `plan`, `owner`,
/// `segment`, `sort`, `order`, `after` (the next page's cursor).
pub(crate) async fn accounts(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let ws = &signed.operator.workspace_id;
    let query = account_query(&q)?;
    let after = param(&q, "after")
        .map(|c| store::Cursor::decode(c).map_err(|_| UiError::bad("That page link is no longer valid.")))
        .transpose()?;
    // The page and the count side by side (each on a reader of its own).
    let request = PageRequest { limit: PAGE_SIZE, after };
    // A free-text search reads every account's name: it is counted up to a thousand.
    let at_most = query.search.is_some().then_some(SEARCH_COUNTED);
    let (page, total) =
        tokio::join!(s.store().query_accounts(ws, &query, &request), s.store().count_accounts(ws, &query, at_most));
    let (page, total) = (page?, total?);
    let more = at_most == Some(total);
    let segments: Vec<_> = s
        .store()
        .list_segments(ws)
        .await?
        .into_iter()
        .filter(|seg| seg.kind == store::SubjectKind::Accounts)
        .map(|seg| json!({"id": seg.segment_id, "name": seg.name}))
        .collect();
    let operators: Vec<_> =
        s.store().list_operators(ws).await?.into_iter().map(|o| json!({"email": o.email, "name": o.name})).collect();
    let rows: Vec<_> = page
        .items
        .iter()
        .map(|a| {
            let traits = &a.account.traits;
            json!({
                "id": a.account.account_id,
                "name": a.account.name,
                "plan": traits.get("plan"),
                "owner": traits.get("csm_name").or(traits.get("csm_email")),
                "people": a.account.people_count,
                "health": a.score.as_ref().map(|s| s.health),
                "band": a.score.as_ref().map(|s| s.band.as_str()),
                "churn": a.score.as_ref().and_then(|s| s.churn_30d),
                "expansion": a.score.as_ref().and_then(|s| s.expansion),
                "mrr": a.score.as_ref().and_then(|s| s.mrr).map(|m| money(m.minor, m.currency.as_str())),
                "last_seen": a.account.last_seen_at,
            })
        })
        .collect();
    // The same filters, from the start and with the next page's cursor.
    let mut kept: Vec<(String, String)> = q
        .iter()
        .filter(|(k, v)| *k != "after" && *k != "done" && !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    kept.sort();
    let first = format!("/accounts?{}", serde_urlencoded::to_string(&kept).unwrap_or_default());
    let next = page.next.map(|c| {
        let mut with = kept.clone();
        with.push(("after".into(), c.encode()));
        format!("/accounts?{}", serde_urlencoded::to_string(with).unwrap_or_default())
    });
    let html = render(
        "accounts.html",
        context! {
            layout => layout(&signed, "accounts", &q),
            rows => ser(&rows),
            f => ser(&q),
            segments => ser(&segments),
            operators => ser(&operators),
            next,
            first,
            paged => q.contains_key("after"),
            total,
            more,
        },
    )?;
    Ok(html.into_response())
}

/// `GET /accounts/{id}`.
pub(crate) async fn account(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let ws = &signed.operator.workspace_id;
    let account_id = AccountId::parse(&id).map_err(|_| UiError::not_found("account"))?;
    let store = s.store();
    let account = store.get_account(ws, &account_id).await?.ok_or_else(|| UiError::not_found("account"))?;
    let score = store.account_score(ws, &account_id).await?;
    let (history, mut explanation) = match &score {
        Some(sc) => {
            let to = sc.day + Days::new(1);
            (store.score_history(ws, &account_id, to - Days::new(90), to).await?, sc.explanation.to_value())
        }
        None => (Vec::new(), serde_json::Value::Null),
    };
    // A forecast of the rule-based prior says how it came about, and why there is no model.
    scoring::read_priors(&mut explanation);
    let models = store.list_models(ws).await?;
    let why_no_model = |kind: store::ModelKind| match models.iter().find(|m| m.kind == kind) {
        Some(m) if m.status != store::ModelStatus::Active => m.reason.clone(),
        Some(_) => "the active model could not be read when this score was made".to_owned(),
        None => "no model has been trained yet".to_owned(),
    };
    let no_model = json!({
        "churn": explanation["models"]["churn"].is_null().then(|| why_no_model(store::ModelKind::Churn)),
        "expansion": explanation["models"]["expansion"].is_null().then(|| why_no_model(store::ModelKind::Expansion)),
    });
    let labels: Vec<String> = history.iter().map(|p| p.day.to_string()).collect();
    let health_chart = chart::line(
        "Health score by day",
        &labels,
        &[Series { name: "health", class: "s1", values: history.iter().map(|p| p.health).collect() }],
        Some((0.0, 100.0)),
    );
    let mrr_chart = chart::line(
        "MRR by day",
        &labels,
        &[Series {
            name: "MRR",
            class: "healthy",
            values: history.iter().map(|p| p.mrr.map_or(0.0, |m| m.minor as f64 / 100.0)).collect(),
        }],
        None,
    );
    let people = store.account_people(ws, &account_id, &PageRequest::first(25)).await?;
    let subscriptions = store.account_subscriptions(ws, &account_id).await?;
    let tickets = store.account_tickets(ws, &account_id).await?;
    let events = store.account_timeline(ws, &account_id, &PageRequest::first(30)).await?.items;
    let alerts = store
        .list_alerts(
            ws,
            &AlertFilter { account_id: Some(account_id.clone()), ..Default::default() },
            &PageRequest::first(50),
        )
        .await?
        .items;
    let tasks = store
        .list_tasks(ws, &TaskFilter { account_id: Some(id.clone()), ..Default::default() }, &PageRequest::first(50))
        .await?
        .items;
    let messages = store
        .list_messages(
            ws,
            &MessageFilter { account_id: Some(id.clone()), ..Default::default() },
            &PageRequest::first(30),
        )
        .await?
        .items;
    let runs = store
        .list_runs(ws, &RunFilter { account_id: Some(id.clone()), ..Default::default() }, &PageRequest::first(30))
        .await?
        .items;
    let journey_records = store.list_journeys(ws).await?;
    let journeys: HashMap<String, String> =
        journey_records.iter().map(|j| (j.journey_id.clone(), j.name.clone())).collect();
    let mut segments = Vec::new();
    let segment_records = store.list_segments(ws).await?;
    let names: HashMap<&str, &str> =
        segment_records.iter().map(|seg| (seg.segment_id.as_str(), seg.name.as_str())).collect();
    let memberships = store.memberships_of(ws, account_id.as_str()).await?;
    for m in &memberships {
        if let Some(name) = names.get(m.segment_id.as_str()) {
            segments.push(json!({"id": m.segment_id, "name": name, "since": m.since}));
        }
    }
    let member_of: HashSet<String> = memberships.into_iter().map(|m| m.segment_id).collect();
    let recommended = match &score {
        Some(sc) => {
            let records = next::Records {
                band: Some(sc.band),
                subscriptions: &subscriptions,
                member_of: &member_of,
                segments: &segment_records,
                journeys: &journey_records,
                runs: &runs,
                alerts: &alerts,
            };
            next::shown(&next::recommendations(&explanation, &records, Utc::now()), &tasks)
        }
        None => Vec::new(),
    };

    // One timeline, newest first: product events, messages sent, tickets, tasks, alerts and
    // journey runs.
    let mut timeline: Vec<(chrono::DateTime<Utc>, serde_json::Value)> = Vec::new();
    for e in &events {
        let what = e.name.clone().unwrap_or_else(|| e.kind.as_str().to_owned());
        timeline.push((e.timestamp, json!({"kind": "event", "text": what, "who": e.user_id})));
    }
    for m in &messages {
        let subject = m.payload.get("subject").and_then(|v| v.as_str()).unwrap_or("");
        timeline.push((
            m.created_at,
            json!({"kind": "message", "text": format!("{} to {} {}", m.channel.as_str(), m.endpoint, subject).trim_end().to_owned(), "who": m.status.as_str()}),
        ));
    }
    for t in &tickets {
        timeline.push((t.opened_at, json!({"kind": "ticket", "text": if t.subject.is_empty() { t.ticket_id.clone() } else { t.subject.clone() }, "who": t.status.as_str()})));
    }
    for t in &tasks {
        timeline.push((t.created_at, json!({"kind": "task", "text": t.title, "who": t.status.as_str()})));
    }
    for a in &alerts {
        timeline.push((a.opened_at, json!({"kind": "alert", "text": a.title, "who": a.status.as_str()})));
    }
    for r in &runs {
        let name = journeys.get(&r.journey_id).cloned().unwrap_or_else(|| r.journey_id.clone());
        timeline.push((
            r.started_at,
            json!({"kind": "journey", "text": format!("entered {name}"), "who": r.status.as_str()}),
        ));
    }
    timeline.sort_by_key(|t| std::cmp::Reverse(t.0));
    timeline.truncate(60);
    let timeline: Vec<_> = timeline
        .into_iter()
        .map(|(at, mut v)| {
            v["at"] = json!(at);
            v
        })
        .collect();

    // What to do next: open tasks first, then unresolved alerts.
    let mut next_actions = Vec::new();
    for t in tasks.iter().filter(|t| t.status == TaskStatus::Open) {
        next_actions.push(json!({"kind": "task", "text": t.title, "due": t.due_at, "priority": t.priority}));
    }
    for a in alerts.iter().filter(|a| a.status != store::AlertStatus::Resolved) {
        next_actions.push(json!({"kind": "alert", "text": a.title, "severity": a.severity.as_str(), "id": a.alert_id}));
    }
    let in_progress: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Active)
        .map(|r| json!({"journey": journeys.get(&r.journey_id).cloned().unwrap_or_else(|| r.journey_id.clone()), "journey_id": r.journey_id, "step": r.step, "since": r.started_at}))
        .collect();
    let subs: Vec<_> = subscriptions
        .iter()
        .map(|sub| json!({"id": sub.subscription_id, "plan": sub.plan, "status": sub.status.as_str(), "mrr": money(sub.mrr.minor, sub.mrr.currency.as_str()), "seats": sub.quantity, "started": sub.started_at, "ended": sub.ended_at}))
        .collect();
    let people: Vec<_> = people
        .items
        .iter()
        .map(|p| json!({"id": p.user_id.clone().unwrap_or_else(|| p.person_id.clone()), "email": p.traits.get("email"), "name": p.traits.get("name"), "last_seen": p.last_seen_at}))
        .collect();
    let html = render(
        "account.html",
        context! {
            layout => layout(&signed, "accounts", &q),
            account => ser(&account),
            score => ser(score.as_ref().map(|sc| json!({
                "health": sc.health, "band": sc.band.as_str(), "day": sc.day,
                "churn_30d": sc.churn_30d, "expansion": sc.expansion,
                "mrr": sc.mrr.map(|m| money(m.minor, m.currency.as_str())),
            }))),
            explanation => ser(&explanation),
            no_model => ser(&no_model),
            health_chart => svg(health_chart),
            mrr_chart => svg(mrr_chart),
            people => ser(&people),
            subscriptions => ser(&subs),
            timeline => ser(&timeline),
            next_actions => ser(&next_actions),
            recommended => ser(&recommended),
            account_segment => super::url_encode(account_id.as_str()),
            in_progress => ser(&in_progress),
            segments => ser(&segments),
        },
    )?;
    Ok(html.into_response())
}
