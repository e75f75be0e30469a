//! A workspace's history out of the store, as the intelligence crate takes it: every
//! account's billing periods, daily usage, people, tickets and numeric traits.

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use domain::{AccountId, Currency, WorkspaceId};
use intelligence::attributes::ValueHistory;
use intelligence::churn::{AccountHistory, Period, Series};
use intelligence::signals::{Sources, TicketFact};
use std::collections::{HashMap, HashSet};
use store::{PageRequest, Store, TicketPriority, TraitSubject};

use crate::Result;
use crate::settings::{ScoringSettings, same_event};

/// A workspace's accounts, in one order across the fields.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub ids: Vec<AccountId>,
    pub histories: Vec<AccountHistory>,
    /// The currency of each account's subscriptions, if it has any.
    pub currencies: Vec<Option<Currency>>,
    pub sources: Sources,
    /// The day after the last day with usage.
    pub end: Option<NaiveDate>,
    /// The names of the events in the usage read, sorted.
    pub metrics: Vec<String>,
}

/// Loads the workspace with usage of days from `usage_from` on (scoring needs about four
/// months; training needs everything, and then reads each account's attributes as they
/// changed rather than as they are). Accounts are ordered by id, numerically when every id
/// is a number, so that ties in a ranking are broken the same way every time.
pub async fn load(
    store: &dyn Store,
    ws: &WorkspaceId,
    usage_from: NaiveDate,
    settings: &ScoringSettings,
) -> Result<Loaded> {
    let mut index: HashMap<AccountId, usize> = HashMap::new();
    let mut loaded = Loaded::default();
    let mut add = |loaded: &mut Loaded, id: &AccountId| -> usize {
        *index.entry(id.clone()).or_insert_with(|| {
            loaded.ids.push(id.clone());
            loaded.histories.push(AccountHistory { account_id: id.to_string(), ..Default::default() });
            loaded.currencies.push(None);
            loaded.ids.len() - 1
        })
    };
    let mut page = PageRequest::first(store::MAX_LIMIT);
    loop {
        let p = store.list_accounts(ws, &page).await?;
        for a in &p.items {
            let i = add(&mut loaded, &a.account_id);
            take_traits(&mut loaded.histories[i], &a.traits);
            loaded.histories[i].first_seen = a.first_seen_at.map(|t| t.date_naive());
        }
        match p.next {
            Some(c) => page.after = Some(c),
            None => break,
        }
    }
    for s in store.list_subscriptions(ws).await? {
        let i = add(&mut loaded, &s.account_id);
        loaded.sources.subscriptions = true;
        loaded.currencies[i] = Some(s.mrr.currency);
        loaded.histories[i].periods.push(period(&s));
    }
    let since = Utc.from_utc_datetime(&usage_from.and_hms_opt(0, 0, 0).expect("midnight"));
    for t in store.list_tickets(ws, since).await? {
        let Some(account) = &t.account_id else { continue };
        let i = add(&mut loaded, account);
        loaded.sources.tickets = true;
        loaded.histories[i].tickets.push(ticket(&t));
    }
    // Per account and feature: the days of its events.
    let mut days: HashMap<(usize, String), Vec<(NaiveDate, u32)>> = HashMap::new();
    let mut metrics = std::collections::BTreeSet::new();
    for row in store.accounts_usage(ws, None, usage_from, NaiveDate::MAX).await? {
        let i = add(&mut loaded, &row.account_id);
        metrics.insert(row.metric.clone());
        let entry = days.entry((i, settings.feature_of(&row.metric).to_owned())).or_default();
        for (slot, &n) in row.events.iter().enumerate() {
            let day = row.month + chrono::Days::new(slot as u64);
            if n > 0 && day.month() == row.month.month() && day >= usage_from {
                entry.push((day, n));
                loaded.end = loaded.end.max(day.succ_opt());
            }
        }
        if settings.signals.payment_failure_events.iter().any(|e| same_event(e, &row.metric)) {
            loaded.sources.payment_events = true;
        }
        let h = &mut loaded.histories[i];
        h.people.extend(row.people.iter().map(|&(key, bits)| (key, row.month, bits)));
    }
    for ((i, metric), d) in days {
        let h = &mut loaded.histories[i];
        if settings.churn_events.iter().any(|e| same_event(e, &metric)) {
            h.churned.extend(d.iter().map(|(day, _)| *day));
        }
        h.usage.insert(metric, Series::new(d));
    }
    if usage_from == NaiveDate::MIN {
        attribute_histories(store, ws, &mut loaded).await?;
    }
    let mut order: Vec<usize> = (0..loaded.ids.len()).collect();
    let numeric: Option<Vec<i64>> = loaded.ids.iter().map(|id| id.as_str().parse::<i64>().ok()).collect();
    match numeric {
        Some(n) => order.sort_by_key(|&i| n[i]),
        None => order.sort_by(|&a, &b| loaded.ids[a].cmp(&loaded.ids[b])),
    }
    Ok(Loaded {
        ids: reorder(loaded.ids, &order),
        histories: reorder(loaded.histories, &order),
        currencies: reorder(loaded.currencies, &order),
        sources: loaded.sources,
        end: loaded.end,
        metrics: metrics.into_iter().collect(),
    })
}

/// An account's traits as they are now: the numeric ones (`nps`, ...) and the categorical
/// ones as attributes known all along.
pub(crate) fn take_traits(h: &mut AccountHistory, traits: &serde_json::Value) {
    let Some(traits) = traits.as_object() else { return };
    h.traits = traits.iter().filter_map(|(k, v)| Some((k.clone(), v.as_f64()?))).collect();
    h.attributes = traits.iter().filter_map(|(k, v)| Some((k.clone(), vec![(NaiveDate::MIN, category(v)?)]))).collect();
}

/// A trait value that can be a category: text or a yes/no.
fn category(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Every account's attributes as they changed, for training: an attribute that never changed
/// for any account of the workspace (an imported account column, an industry) is static and
/// known all along; one that changes (a plan, a status) is known from each change on.
async fn attribute_histories(store: &dyn Store, ws: &WorkspaceId, loaded: &mut Loaded) -> Result<()> {
    let mut changes: Vec<HashMap<String, ValueHistory>> = Vec::with_capacity(loaded.ids.len());
    let mut changing: HashSet<String> = HashSet::new();
    for id in &loaded.ids {
        let mut of: HashMap<String, ValueHistory> = HashMap::new();
        let mut history = store.trait_history(ws, &TraitSubject::Account(id.clone())).await?;
        history.sort_by_key(|c| c.at);
        for c in history {
            let Some(value) = category(&c.value) else { continue };
            let h = of.entry(c.key).or_default();
            if h.last().is_none_or(|(_, last)| *last != value) {
                h.push((c.at.date_naive(), value));
            }
        }
        changing.extend(of.iter().filter(|(_, h)| h.len() > 1).map(|(k, _)| k.clone()));
        changes.push(of);
    }
    for (h, mut of) in loaded.histories.iter_mut().zip(changes) {
        for (key, values) in of.iter_mut() {
            if !changing.contains(key) {
                values[0].0 = NaiveDate::MIN;
            }
        }
        h.attributes = of;
    }
    Ok(())
}

fn reorder<T>(v: Vec<T>, order: &[usize]) -> Vec<T> {
    let mut old: Vec<Option<T>> = v.into_iter().map(Some).collect();
    order.iter().map(|&i| old[i].take().expect("each index once")).collect()
}

/// A subscription as a billing period.
pub(crate) fn period(s: &store::Subscription) -> Period {
    Period {
        start: s.started_at.date_naive(),
        end: s.ended_at.map(|e| e.date_naive()),
        mrr: s.mrr.minor,
        seats: s.quantity,
        term_months: term_months(&s.attributes),
    }
}

/// The billing term in months, from a subscription attribute that names it (the billing
/// export's own column: `bill_period_months`, `billing_period_months` or `term_months`).
fn term_months(attributes: &serde_json::Value) -> Option<u32> {
    ["bill_period_months", "billing_period_months", "term_months"].iter().find_map(|k| match attributes.get(k)? {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A ticket as scoring sees it.
pub(crate) fn ticket(t: &store::Ticket) -> TicketFact {
    TicketFact {
        opened: t.opened_at.date_naive(),
        resolved: t.resolved_at.map(|r| r.date_naive()),
        escalated: matches!(t.priority, TicketPriority::High | TicketPriority::Urgent),
        csat: t.csat.map(f64::from),
    }
}
