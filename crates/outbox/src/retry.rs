//! When to try again: the backoff schedule over about three days, `Retry-After` (RFC 9110
//! §10.2.3) and a per-channel token bucket. Pure: the caller passes the jitter and the time.

use std::time::{Duration, SystemTime};

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;

/// The wait before each retry, in seconds: the first retry comes 30 s after the first
/// attempt, the last about 2.7 days after it. Each wait is jittered by ±20%.
pub const SCHEDULE_SECS: [u64; 12] = [
    30,
    2 * MINUTE,
    10 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    4 * HOUR,
    8 * HOUR,
    12 * HOUR,
    12 * HOUR,
    12 * HOUR,
    12 * HOUR,
];

/// Attempts a row gets in all: the first and one per entry of [`SCHEDULE_SECS`].
pub const MAX_ATTEMPTS: u32 = SCHEDULE_SECS.len() as u32 + 1;

/// The longest `Retry-After` honoured; a receiver asking for more is retried after a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * HOUR);

/// How far the jitter moves a wait: ±20%.
const JITTER: f64 = 0.2;

/// How long to wait before the next attempt of a row that has had `attempts_made` attempts
/// (the failed one included), or `None` when that was the last: the row is a dead letter.
///
/// `jitter` is a uniform random number in `0..=1` from the caller (0.5 is no jitter); the
/// wait is the schedule's ±20%. A `retry_after` from the receiver is honoured: the wait is
/// at least that, capped at [`MAX_RETRY_AFTER`]. It does not add attempts.
/// `attempts_made == 0` (nothing tried yet) is due now.
pub fn next_delay(attempts_made: u32, retry_after: Option<Duration>, jitter: f64) -> Option<Duration> {
    if attempts_made == 0 {
        return Some(Duration::ZERO);
    }
    let base = *SCHEDULE_SECS.get(usize::try_from(attempts_made - 1).ok()?)?;
    let jitter = if jitter.is_finite() { jitter.clamp(0.0, 1.0) } else { 0.5 };
    let factor = 1.0 + JITTER * (2.0 * jitter - 1.0);
    // Whole milliseconds, so that no float noise reaches the stored due time.
    let scheduled = Duration::from_millis((base as f64 * 1000.0 * factor).round() as u64);
    Some(match retry_after {
        Some(asked) => scheduled.max(asked.min(MAX_RETRY_AFTER)),
        None => scheduled,
    })
}

/// Parses a `Retry-After` value: delay seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, and the two obsolete forms RFC 9110 asks recipients
/// to accept), as a wait from `now` (zero for a date in the past). `None` when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // An absurdly long number is still "a long time": the cap applies later.
        return Some(Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A token bucket: `burst` tokens at most, refilled at `per_second`. Time is the caller's
/// (milliseconds from any fixed origin), so tests and the delivery loop control it.
#[derive(Debug, Clone)]
pub struct RateLimit {
    per_ms: f64,
    burst: f64,
    tokens: f64,
    last_ms: u64,
}

/// A rate limit that cannot work as asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rate limit: {0}")]
pub struct RateLimitError(&'static str);

impl RateLimit {
    /// A full bucket of `burst` tokens at `now_ms`, refilled at `per_second` tokens a second.
    pub fn new(per_second: f64, burst: u32, now_ms: u64) -> Result<RateLimit, RateLimitError> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(RateLimitError("the rate must be a positive number of tokens per second"));
        }
        if burst == 0 {
            return Err(RateLimitError("the burst must be at least one token"));
        }
        let burst = f64::from(burst);
        Ok(RateLimit { per_ms: per_second / 1000.0, burst, tokens: burst, last_ms: now_ms })
    }

    fn refill(&mut self, now_ms: u64) {
        // Time going backwards (another clock, a restart) refills nothing.
        if now_ms > self.last_ms {
            self.tokens = (self.tokens + (now_ms - self.last_ms) as f64 * self.per_ms).min(self.burst);
            self.last_ms = now_ms;
        }
    }

    /// Takes a token if there is one (`Ok`), or says how long until there is (`Err`, nothing
    /// taken).
    pub fn try_acquire(&mut self, now_ms: u64) -> Result<(), Duration> {
        self.refill(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait(now_ms))
        }
    }

    /// How long from `now_ms` until a token is there (zero if one is), taking nothing.
    pub fn wait(&mut self, now_ms: u64) -> Duration {
        self.refill(now_ms);
        if self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        // Rounded to a microsecond first so float noise does not add a millisecond.
        let ms = (((1.0 - self.tokens) / self.per_ms * 1e3).round() / 1e3).ceil();
        Duration::from_millis(ms as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_spans_about_three_days_and_then_stops() {
        let total: u64 = SCHEDULE_SECS.iter().sum();
        assert!((2.5 * 86_400.0..3.0 * 86_400.0).contains(&(total as f64)), "{total}");
        assert_eq!(next_delay(0, None, 0.5), Some(Duration::ZERO));
        assert_eq!(next_delay(1, None, 0.5), Some(Duration::from_secs(30)));
        assert_eq!(next_delay(2, None, 0.5), Some(Duration::from_secs(120)));
        assert_eq!(next_delay(12, None, 0.5), Some(Duration::from_secs(12 * HOUR)));
        assert_eq!(next_delay(MAX_ATTEMPTS - 1, None, 0.5), Some(Duration::from_secs(12 * HOUR)));
        assert_eq!(next_delay(MAX_ATTEMPTS, None, 0.5), None);
        assert_eq!(next_delay(u32::MAX, None, 0.5), None);
        // Each wait grows or stays, never shrinks.
        for n in 1..MAX_ATTEMPTS - 1 {
            assert!(next_delay(n, None, 0.5) <= next_delay(n + 1, None, 0.5));
        }
    }

    #[test]
    fn jitter_moves_a_wait_by_twenty_percent_at_most() {
        assert_eq!(next_delay(5, None, 0.0), Some(Duration::from_secs(48 * MINUTE)));
        assert_eq!(next_delay(5, None, 1.0), Some(Duration::from_secs(72 * MINUTE)));
        // Out of range or not a number: clamped, or no jitter.
        assert_eq!(next_delay(5, None, 7.0), Some(Duration::from_secs(72 * MINUTE)));
        assert_eq!(next_delay(5, None, f64::NAN), Some(Duration::from_secs(HOUR)));
        assert_eq!(next_delay(1, None, 0.25), Some(Duration::from_secs(27)));
    }

    #[test]
    fn retry_after_is_a_floor_capped_at_a_day() {
        assert_eq!(next_delay(1, Some(Duration::from_secs(600)), 0.5), Some(Duration::from_secs(600)));
        // Shorter than the schedule: the schedule wins.
        assert_eq!(next_delay(3, Some(Duration::from_secs(1)), 0.5), Some(Duration::from_secs(600)));
        assert_eq!(next_delay(1, Some(Duration::from_secs(10 * 86_400)), 0.5), Some(MAX_RETRY_AFTER));
        // It adds no attempt.
        assert_eq!(next_delay(MAX_ATTEMPTS, Some(Duration::from_secs(5)), 0.5), None);
    }

    #[test]
    fn parses_retry_after_as_seconds_or_a_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:51:37 GMT", now), Some(Duration::from_secs(120)));
        // The obsolete RFC 850 and asctime forms.
        assert_eq!(parse_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", now), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("Sun Nov  6 08:49:47 1994", now), Some(Duration::from_secs(10)));
        // In the past: now.
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("99999999999999999999999", now), Some(Duration::from_secs(u64::MAX)));
        for bad in ["", "-5", "1.5", "soon", "Sun, 06 Nov 1994"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn the_bucket_spends_its_burst_then_paces() {
        let mut limit = RateLimit::new(2.0, 3, 1_000).unwrap();
        for _ in 0..3 {
            assert_eq!(limit.try_acquire(1_000), Ok(()));
        }
        assert_eq!(limit.try_acquire(1_000), Err(Duration::from_millis(500)));
        assert_eq!(limit.wait(1_200), Duration::from_millis(300));
        assert_eq!(limit.try_acquire(1_500), Ok(()));
        assert_eq!(limit.try_acquire(1_500), Err(Duration::from_millis(500)));
        // A long pause refills up to the burst, no more.
        for _ in 0..3 {
            assert_eq!(limit.try_acquire(60_000), Ok(()));
        }
        assert!(limit.try_acquire(60_000).is_err());
        // A clock going backwards refills nothing and does not panic.
        assert!(limit.try_acquire(10).is_err());
    }

    #[test]
    fn a_bucket_must_be_able_to_give_tokens() {
        assert!(RateLimit::new(0.0, 1, 0).is_err());
        assert!(RateLimit::new(f64::INFINITY, 1, 0).is_err());
        assert!(RateLimit::new(1.0, 0, 0).is_err());
        let mut slow = RateLimit::new(1.0 / 60.0, 1, 0).unwrap();
        assert_eq!(slow.try_acquire(0), Ok(()));
        assert_eq!(slow.try_acquire(0), Err(Duration::from_secs(60)));
    }
}
