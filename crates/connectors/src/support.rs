//! What support tools share: a ticket's changes told as the account's events, each with a
//! message id of its own so that a webhook and a backfill tell it once.

use domain::Timestamp;
use serde_json::json;
use store::{Ticket, TicketStatus};

use crate::Output;

/// Whether a ticket is done with (solved, or closed after).
pub(crate) fn resolved(status: TicketStatus) -> bool {
    matches!(status, TicketStatus::Solved | TicketStatus::Closed)
}

/// `Ticket Opened` the first time a ticket is seen (at its opening), `Ticket Solved` each
/// time it becomes resolved (at its resolution, an id per resolution), `CSAT Rated` each
/// time its rating changes (`rating` names the rating, so a new rating is a new event; it is
/// told at `rated_at`, by default when the ticket was last updated).
pub(crate) fn ticket_events(
    provider: &str,
    ticket: &Ticket,
    before: Option<&Ticket>,
    rating: &str,
    rated_at: Option<Timestamp>,
) -> Vec<Output> {
    let id = &ticket.ticket_id;
    let props = || {
        json!({"ticket_id": id, "provider": provider, "subject": ticket.subject, "status": ticket.status.as_str(),
            "priority": ticket.priority.as_str()})
    };
    let mut out = Vec::new();
    if before.is_none() {
        out.push(Output::Event {
            message_id: format!("{provider}:{id}:opened"),
            name: "Ticket Opened".into(),
            properties: props(),
            at: ticket.opened_at,
        });
    }
    if resolved(ticket.status)
        && before.is_none_or(|b| !resolved(b.status))
        && let Some(at) = ticket.resolved_at
    {
        let mut p = props();
        p["resolution_minutes"] = json!((at - ticket.opened_at).num_minutes());
        if let Some(first) = ticket.first_response_at {
            p["first_response_minutes"] = json!((first - ticket.opened_at).num_minutes());
        }
        out.push(Output::Event {
            message_id: format!("{provider}:{id}:solved:{}", at.timestamp()),
            name: "Ticket Solved".into(),
            properties: p,
            at,
        });
    }
    if let Some(score) = ticket.csat
        && before.is_none_or(|b| b.csat != Some(score))
    {
        let mut p = props();
        p["score"] = json!(score);
        out.push(Output::Event {
            message_id: format!("{provider}:{id}:csat:{rating}:{score}"),
            name: "CSAT Rated".into(),
            properties: p,
            at: rated_at.unwrap_or(ticket.updated_at),
        });
    }
    out
}

/// A cursor as a query parameter's value: every byte but the unreserved ones escaped.
pub(crate) fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
