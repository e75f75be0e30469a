//! Ticket rows become the store's support tickets, which scoring reads (open and escalated
//! tickets, tickets opened, CSAT). A ticket keeps the support system's id, or gets one from
//! its account, requester, subject and opening; its requester is matched to a person by user
//! id (or by an email used as the user id) when stored, and a ticket naming no account counts
//! for the requester's account when they have exactly one.

use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use domain::WorkspaceId;
use serde_json::Value;
use store::{Store, Ticket, TicketPriority, TicketStatus};

use super::{Parser, Record, Row, UserScope, content_id};

pub(super) const COLUMNS: &[(&str, bool)] = &[
    ("ticket_id", false),
    ("account_id", false),
    ("user_id", false),
    ("email", false),
    ("subject", false),
    ("status", false),
    ("priority", false),
    ("opened_at", false),
    // What most exports call the opening; `opened_at` wins when a file has both.
    ("created_at", false),
    ("first_response_at", false),
    ("resolved_at", false),
    ("csat", false),
    ("updated_at", false),
];

/// A checked ticket, and who asked, to be matched to a person when it is stored.
pub(super) struct Pending {
    ticket: Ticket,
    requester: Option<String>,
}

pub(super) fn parse(p: &Parser, row: &impl Row, line: u64) -> Result<Record> {
    let account = p.account(row, line)?;
    let opened = match p.time(row, line, "opened_at")? {
        Some(t) => t,
        None => p.time(row, line, "created_at")?.ok_or_else(|| {
            anyhow!("{} line {line}: opened_at is missing (a column opened_at or created_at, or --column opened_at=<column>)", p.file)
        })?,
    };
    let after_opening = |name: &str| -> Result<Option<DateTime<Utc>>> {
        match p.time(row, line, name)? {
            Some(t) if t < opened => bail!("{} line {line}: {name} is before the ticket was opened", p.file),
            t => Ok(t),
        }
    };
    let first_response = after_opening("first_response_at")?;
    let resolved = after_opening("resolved_at")?;
    let updated = after_opening("updated_at")?;
    let status =
        row.get("status").map(|v| status(v).ok_or_else(|| p.error(line, "status", v, STATUSES))).transpose()?;
    let priority = row
        .get("priority")
        .map(|v| priority(v).ok_or_else(|| p.error(line, "priority", v, PRIORITIES)))
        .transpose()?
        .unwrap_or(TicketPriority::Normal);
    let csat =
        row.get("csat").map(|v| csat(v).ok_or_else(|| p.error(line, "csat", v, "a rating from 1 to 5"))).transpose()?;
    let latest = [Some(opened), first_response, resolved].into_iter().flatten().max().expect("opened");
    // Scoring counts a ticket open until it is resolved, so the status decides: a closed
    // ticket without the time was resolved when it last changed, and a ticket open again
    // keeps its earlier resolution as an attribute only.
    let (status, resolved, reopened) = match (status, resolved) {
        (None, None) => (TicketStatus::Open, None, None),
        (None, Some(r)) => (TicketStatus::Solved, Some(r), None),
        (Some(s @ (TicketStatus::Solved | TicketStatus::Closed)), r) => {
            (s, Some(r.unwrap_or(updated.unwrap_or(latest))), None)
        }
        (Some(s), r) => (s, None, r),
    };
    let user = row.get("user_id").map(|u| match (p.options.user_scope, &account) {
        (UserScope::Account, Some(a)) => format!("{a}/{u}"),
        _ => u.to_owned(),
    });
    let email = row.get("email");
    let mut attributes = row.extra();
    if let Some(u) = &user {
        attributes.insert("user_id".into(), u.as_str().into());
    }
    if let Some(e) = email {
        attributes.insert("email".into(), e.into());
    }
    if let Some(r) = reopened {
        attributes.insert("resolved_at".into(), r.to_rfc3339_opts(SecondsFormat::Secs, true).into());
    }
    let subject = row.get("subject").unwrap_or_default().to_owned();
    let ticket_id = match row.get("ticket_id") {
        Some(id) => id.to_owned(),
        None => content_id(
            "import_",
            &[
                account.as_ref().map_or("", |a| a.as_str()),
                user.as_deref().or(email).unwrap_or(""),
                &subject,
                &opened.to_rfc3339_opts(SecondsFormat::Millis, true),
            ],
        ),
    };
    if p.check_only {
        return Ok(Record::Checked);
    }
    let requester = user.or(email.map(str::to_owned));
    Ok(Record::Ticket(Box::new(Pending {
        ticket: Ticket {
            ticket_id,
            account_id: account,
            person_id: None,
            subject,
            status,
            priority,
            opened_at: opened,
            first_response_at: first_response,
            resolved_at: resolved,
            csat,
            // The same row always carries the same time, so importing it again changes nothing.
            updated_at: updated.unwrap_or(latest).max(resolved.unwrap_or(latest)),
            attributes: Value::Object(attributes),
        },
        requester,
    })))
}

const STATUSES: &str = "a ticket status (new, open, pending, hold, solved, resolved, closed)";
const PRIORITIES: &str = "a ticket priority (low, normal, medium, high, urgent)";

fn status(v: &str) -> Option<TicketStatus> {
    match v.to_ascii_lowercase().as_str() {
        "hold" | "on-hold" | "on_hold" => Some(TicketStatus::Pending),
        "resolved" => Some(TicketStatus::Solved),
        s => s.parse().ok(),
    }
}

fn priority(v: &str) -> Option<TicketPriority> {
    match v.to_ascii_lowercase().as_str() {
        "medium" => Some(TicketPriority::Normal),
        s => s.parse().ok(),
    }
}

/// A rating from 1 to 5, written as a whole number (`4`, `4.0`).
fn csat(v: &str) -> Option<i16> {
    let n: f64 = v.parse().ok()?;
    (n.fract() == 0.0 && (1.0..=5.0).contains(&n)).then_some(n as i16)
}

/// Stores a ticket, with its requester's person (and account, if the ticket names none)
/// as processing knows them now. Returns whether the store applied it.
pub(super) async fn store(store: Arc<dyn Store>, ws: WorkspaceId, pending: Pending) -> store::Result<bool> {
    let Pending { mut ticket, requester } = pending;
    if let Some(requester) = requester
        && let Some(person) = store.get_person(&ws, &requester).await?
    {
        if ticket.account_id.is_none() && person.account_ids.len() == 1 {
            ticket.account_id = person.account_ids.first().cloned();
        }
        ticket.person_id = Some(person.person_id);
    }
    store.upsert_ticket(&ws, &ticket).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_support_systems_write_them() {
        assert_eq!(status("Open"), Some(TicketStatus::Open));
        assert_eq!(status("hold"), Some(TicketStatus::Pending));
        assert_eq!(status("resolved"), Some(TicketStatus::Solved));
        assert_eq!(status("wip"), None);
        assert_eq!(priority("URGENT"), Some(TicketPriority::Urgent));
        assert_eq!(priority("medium"), Some(TicketPriority::Normal));
        assert_eq!(priority("p1"), None);
        assert_eq!(csat("4"), Some(4));
        assert_eq!(csat("5.0"), Some(5));
        for bad in ["0", "6", "4.5", "good", ""] {
            assert_eq!(csat(bad), None, "{bad:?}");
        }
    }
}
