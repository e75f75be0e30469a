//! Processing: reads each workspace's event log from its cursor and resolves who did what for
//! which account (people, anonymous ids, aliases, accounts, memberships, traits).
//!
//! [`resolve`] is pure: events and what the store knows of their identities in, changes out.
//! [`Processor`] is the IO around it: read a slice of the log, load identities, resolve, and
//! apply the changes together with the cursor move in one transaction, so that a slice is
//! processed exactly once however often the process crashes (at-least-once reading,
//! exactly-once effects).

mod resolve;
mod worker;

pub use resolve::resolve;
pub use worker::{Appended, Processor, ProcessorConfig, SEEN_RESOLUTION_MS, Touched};

#[cfg(test)]
mod tests;
