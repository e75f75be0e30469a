//! Local time for journeys: when a cron schedule fires in a time zone, and when quiet hours
//! end for a recipient. Zones are IANA names, read from the system's database where it has
//! one and from the one built in otherwise.

use chrono::{DateTime, Utc};
use domain::{Timestamp, WorkspaceId};
use jiff::civil::Date;
use jiff::tz::{AmbiguousOffset, TimeZone};
use journeys::{Cron, QuietHours};
use store::Store;

/// The setting naming a workspace's time zone (an IANA name); UTC without it.
pub const WORKSPACE_TIMEZONE: &str = "workspace.timezone";
/// How far ahead a schedule is searched: an expression naming no day in five years (the 30th
/// of February) never fires.
const SEARCH_DAYS: usize = 5 * 366 + 1;

/// The zone of an IANA name, if the database knows it.
pub fn named(name: &str) -> Option<TimeZone> {
    jiff::tz::db().get(name.trim()).ok()
}

/// The workspace's zone: its setting, else UTC.
pub async fn of_workspace(store: &dyn Store, ws: &WorkspaceId) -> store::Result<TimeZone> {
    let setting = store.get_setting(ws, WORKSPACE_TIMEZONE).await?;
    Ok(setting.as_ref().and_then(|v| v.as_str()).and_then(named).unwrap_or(TimeZone::UTC))
}

fn to_jiff(t: Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(t.timestamp()).expect("a stored time is within jiff's range")
}

fn from_jiff(t: jiff::Timestamp) -> Timestamp {
    DateTime::<Utc>::from_timestamp(t.as_second(), 0).expect("a time within jiff's range is within chrono's")
}

/// The first time after `after` that `cron` names in `tz`. A local time the zone skips (the
/// hour clocks jump over) is not a fire time; one it has twice fires at its first.
pub fn next_fire(cron: &Cron, tz: &TimeZone, after: Timestamp) -> Option<Timestamp> {
    let after = to_jiff(after);
    let mut day: Date = tz.to_datetime(after).date();
    for _ in 0..SEARCH_DAYS {
        let weekday = day.weekday().to_sunday_zero_offset();
        if cron.matches_day(day.month() as u32, day.day() as u32, weekday as u32) {
            for h in cron.hours() {
                for m in cron.minutes() {
                    let local = day.at(h as i8, m as i8, 0, 0);
                    let ambiguous = tz.to_ambiguous_timestamp(local);
                    let at = match ambiguous.offset() {
                        AmbiguousOffset::Gap { .. } => continue,
                        AmbiguousOffset::Unambiguous { offset } | AmbiguousOffset::Fold { before: offset, .. } => {
                            offset.to_timestamp(local).ok()?
                        }
                    };
                    if at > after {
                        return Some(from_jiff(at));
                    }
                }
            }
        }
        day = day.tomorrow().ok()?;
    }
    None
}

/// When a message decided at `now` may go: at once, or when the quiet hours (minutes after
/// midnight, in `tz`) end.
pub fn quiet_until(now: Timestamp, quiet: Option<QuietHours>, tz: &TimeZone) -> Timestamp {
    let Some(q) = quiet else { return now };
    let local = tz.to_datetime(to_jiff(now));
    let minute = local.hour() as u32 * 60 + local.minute() as u32;
    let inside = if q.from <= q.to { q.from <= minute && minute < q.to } else { minute >= q.from || minute < q.to };
    if !inside {
        return now;
    }
    let day = if q.to > minute { local.date() } else { local.date().tomorrow().unwrap_or(local.date()) };
    let end = day.at((q.to / 60) as i8, (q.to % 60) as i8, 0, 0);
    // An end that falls in a skipped hour is the moment the clocks jump to.
    match tz.to_ambiguous_timestamp(end).compatible() {
        Ok(t) => from_jiff(t).max(now),
        Err(_) => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Timestamp {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn a_daily_time_across_both_changes_of_the_clocks() {
        let ny = named("America/New_York").unwrap();
        // 02:30 does not exist on 2026-03-08 in New York: that day is skipped.
        let c = Cron::parse("30 2 * * *").unwrap();
        assert_eq!(next_fire(&c, &ny, utc(2026, 3, 7, 8, 0)), Some(utc(2026, 3, 9, 6, 30)), "02:30 EDT the day after");
        // 01:30 happens twice on 2026-11-01: it fires at the first, and not again.
        let c = Cron::parse("30 1 * * *").unwrap();
        let first = next_fire(&c, &ny, utc(2026, 11, 1, 0, 0)).unwrap();
        assert_eq!(first, utc(2026, 11, 1, 5, 30), "01:30 EDT");
        assert_eq!(next_fire(&c, &ny, first), Some(utc(2026, 11, 2, 6, 30)), "the next day, 01:30 EST");
    }

    #[test]
    fn an_impossible_date_never_fires() {
        assert_eq!(next_fire(&Cron::parse("0 0 30 2 *").unwrap(), &TimeZone::UTC, utc(2026, 1, 1, 0, 0)), None);
    }

    #[test]
    fn quiet_hours_end_at_the_local_time() {
        let q = Some(QuietHours { from: 20 * 60, to: 8 * 60 });
        let berlin = named("Europe/Berlin").unwrap();
        // 22:00 in Berlin (21:00 UTC) waits until 08:00 Berlin, 07:00 UTC.
        assert_eq!(quiet_until(utc(2026, 12, 3, 21, 0), q, &berlin), utc(2026, 12, 4, 7, 0));
        // 09:00 UTC is 10:00 there: not quiet.
        assert_eq!(quiet_until(utc(2026, 12, 3, 9, 0), q, &berlin), utc(2026, 12, 3, 9, 0));
        // 06:00 UTC is 07:00 in Berlin: quiet for another hour.
        assert_eq!(quiet_until(utc(2026, 12, 3, 6, 0), q, &berlin), utc(2026, 12, 3, 7, 0));
    }
}
