//! Putting the days' messages in order and cutting them into `/v1/batch` bodies, one day at a
//! time, so that only a couple of days of messages are ever held.

use std::collections::VecDeque;
use std::io;

use serde_json::{Map, Value};

use crate::Simulation;
use crate::activity::{Draft, simulate_day, timestamp};
use crate::world::{DAY, Ms};

/// Segment accepts 500 KB per batch; staying well under leaves room for what a sender adds
/// (a write key, a batch-level context).
pub const MAX_BATCH_BYTES: usize = 450_000;
/// Segment's limit on messages per batch.
pub const MAX_BATCH_MESSAGES: usize = 2_500;

/// Every message of a simulation, in chronological order, with its `messageId` and `timestamp`.
pub struct Messages<'a> {
    sim: &'a Simulation,
    /// The next day number to generate, and the last one (customers' local days).
    next_day: i64,
    last_day: i64,
    /// Generated but not yet known to be next: a later day may still add earlier messages.
    pending: Vec<(Ms, u64, Map<String, Value>)>,
    ready: VecDeque<(Ms, Map<String, Value>)>,
    drafts: Vec<Draft>,
    generated: u64,
    emitted: u64,
}

impl<'a> Messages<'a> {
    pub(crate) fn new(sim: &'a Simulation) -> Self {
        let w = sim.window;
        Messages {
            sim,
            // Local days of customers east or west of UTC reach a day beyond UTC's either way.
            next_day: w.start.div_euclid(DAY) - 1,
            last_day: w.end.div_euclid(DAY) + 1,
            pending: Vec::new(),
            ready: VecDeque::new(),
            drafts: Vec::new(),
            generated: 0,
            emitted: 0,
        }
    }

    /// Generates the next day of every customer and releases what can no longer be preceded.
    fn advance(&mut self) {
        let day = self.next_day;
        self.next_day += 1;
        for c in &self.sim.customers {
            simulate_day(c, &self.sim.window, self.sim.config.seed, day, &mut self.drafts);
        }
        for (at, body) in self.drafts.drain(..) {
            self.pending.push((at, self.generated, body));
            self.generated += 1;
        }
        // Generation order breaks ties, so a flow's steps at the same millisecond keep their order.
        self.pending.sort_unstable_by_key(|p| (p.0, p.1));
        let settled = if self.next_day > self.last_day {
            Ms::MAX
        } else {
            // The earliest any customer's next local day can begin.
            self.next_day * DAY - self.sim.max_utc_offset
        };
        let n = self.pending.partition_point(|p| p.0 < settled);
        self.ready.extend(self.pending.drain(..n).map(|(at, _, body)| (at, body)));
    }
}

impl Iterator for Messages<'_> {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        while self.ready.is_empty() {
            if self.next_day > self.last_day {
                return None;
            }
            self.advance();
        }
        let (at, mut body) = self.ready.pop_front()?;
        body.insert("messageId".into(), format!("sim-{}-{}", self.sim.config.seed, self.emitted).into());
        body.insert("timestamp".into(), timestamp(at).into());
        self.emitted += 1;
        Some(Value::Object(body))
    }
}

/// Counts what serializing would write, without keeping it.
struct ByteCount(usize);

impl io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(crate) fn json_len(v: &Value) -> usize {
    let mut count = ByteCount(0);
    serde_json::to_writer(&mut count, v).expect("a JSON value always serializes");
    count.0
}

/// `/v1/batch` bodies cut from the messages.
pub(crate) struct Batches<'a> {
    messages: Messages<'a>,
    held: Option<(Value, usize)>,
    max_messages: usize,
    sent_at: String,
}

impl<'a> Batches<'a> {
    pub(crate) fn new(messages: Messages<'a>, max_messages: usize, sent_at: String) -> Self {
        Batches { messages, held: None, max_messages: max_messages.clamp(1, MAX_BATCH_MESSAGES), sent_at }
    }
}

impl Iterator for Batches<'_> {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        // `{"batch":[],"sentAt":"…"}`: the envelope around the messages and their commas.
        let envelope = json_len(&serde_json::json!({ "batch": [], "sentAt": self.sent_at }));
        let mut batch = Vec::new();
        let mut bytes = envelope;
        loop {
            let (message, size) = match self.held.take() {
                Some(held) => held,
                None => match self.messages.next() {
                    Some(m) => {
                        let size = json_len(&m);
                        (m, size)
                    }
                    None => break,
                },
            };
            let comma = usize::from(!batch.is_empty());
            if !batch.is_empty() && (batch.len() == self.max_messages || bytes + comma + size >= MAX_BATCH_BYTES) {
                self.held = Some((message, size));
                break;
            }
            bytes += comma + size;
            batch.push(message);
        }
        if batch.is_empty() {
            return None;
        }
        let mut body = Map::new();
        body.insert("batch".into(), Value::Array(batch));
        body.insert("sentAt".into(), self.sent_at.clone().into());
        Some(Value::Object(body))
    }
}
