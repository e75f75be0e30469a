//! Cron expressions of five fields (minute hour day-of-month month day-of-week), read into
//! the set of values each field allows. Matching is on a local calendar date and time; which
//! time zone they are in is the caller's business.

/// A cron expression read. Each field is a bit set of the values it allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    /// Bits 1 to 31.
    days_of_month: u32,
    /// Bits 1 to 12.
    months: u16,
    /// Bits 0 (Sunday) to 6; a 7 is Sunday too.
    days_of_week: u8,
    /// As cron has it: when both day fields are restricted (neither starts with `*`), a day
    /// matches if either does; otherwise both must.
    either_day: bool,
}

const FIELDS: [(&str, u32, u32, &[&str]); 5] = [
    ("minute", 0, 59, &[]),
    ("hour", 0, 23, &[]),
    ("day of month", 1, 31, &[]),
    ("month", 1, 12, &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]),
    ("day of week", 0, 7, &["sun", "mon", "tue", "wed", "thu", "fri", "sat"]),
];

impl Cron {
    /// Reads an expression: each field `*`, a value, a range or a list of them, each with an
    /// optional `/step`; months and days of the week also by their three-letter names.
    pub fn parse(s: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "a schedule has five fields (minute hour day-of-month month day-of-week), not {}",
                parts.len()
            ));
        }
        let mut sets = [0u64; 5];
        for (i, (part, (name, lo, hi, names))) in parts.iter().zip(FIELDS).enumerate() {
            sets[i] = field(part, name, lo, hi, names)?;
        }
        let dow = sets[4] as u8;
        Ok(Cron {
            minutes: sets[0],
            hours: sets[1] as u32,
            days_of_month: sets[2] as u32,
            months: sets[3] as u16,
            days_of_week: (dow | (dow >> 7)) & 0x7f,
            either_day: !parts[2].starts_with('*') && !parts[4].starts_with('*'),
        })
    }

    /// Whether the expression names this day: `month` 1 to 12, `day` 1 to 31, `weekday` 0
    /// (Sunday) to 6.
    pub fn matches_day(&self, month: u32, day: u32, weekday: u32) -> bool {
        if self.months & (1 << month) == 0 {
            return false;
        }
        let by_month = self.days_of_month & (1 << day) != 0;
        let by_week = self.days_of_week & (1 << weekday) != 0;
        if self.either_day { by_month || by_week } else { by_month && by_week }
    }

    /// The hours (0 to 23) it names, in order.
    pub fn hours(&self) -> impl Iterator<Item = u32> + '_ {
        (0..24).filter(|h| self.hours & (1 << h) != 0)
    }

    /// The minutes (0 to 59) it names, in order.
    pub fn minutes(&self) -> impl Iterator<Item = u32> + '_ {
        (0..60).filter(|m| self.minutes & (1 << m) != 0)
    }
}

fn field(part: &str, name: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, String> {
    let value = |v: &str| -> Option<u32> {
        let v = v.to_ascii_lowercase();
        let base = if name == "month" { 1 } else { 0 };
        names.iter().position(|n| *n == v).map(|i| i as u32 + base).or_else(|| v.parse().ok())
    };
    let mut set = 0u64;
    for item in part.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let step = match step {
            None => 1,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("{name}: the step {s:?} is not a positive number")),
            },
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else {
            let (a, b) = match range.split_once('-') {
                Some((a, b)) => (value(a), value(b)),
                None => match value(range) {
                    // `5/15` runs from 5 to the end, as cron reads it.
                    Some(a) if step > 1 => (Some(a), Some(hi)),
                    v => (v, v),
                },
            };
            match (a, b) {
                (Some(a), Some(b)) if lo <= a && a <= b && b <= hi => (a, b),
                _ => return Err(format!("{name}: {item:?} is not a value from {lo} to {hi}, a range or `*`")),
            }
        };
        for v in (a..=b).step_by(step as usize) {
            set |= 1 << v;
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_into_the_values_they_allow() {
        let c = Cron::parse("*/15 9-17 * * mon-fri").unwrap();
        assert_eq!(c.minutes().collect::<Vec<_>>(), [0, 15, 30, 45]);
        assert_eq!(c.hours().collect::<Vec<_>>(), (9..=17).collect::<Vec<_>>());
        // 2026-12-07 is a Monday, 2026-12-06 a Sunday.
        assert!(c.matches_day(12, 7, 1));
        assert!(!c.matches_day(12, 6, 0));
        let sunday = Cron::parse("0 0 * * 7").unwrap();
        assert!(sunday.matches_day(1, 4, 0), "7 is Sunday too");
        assert!(Cron::parse("0 0 * JAN,mar *").unwrap().matches_day(3, 1, 3));
        assert_eq!(Cron::parse("5/20 * * * *").unwrap().minutes().collect::<Vec<_>>(), [5, 25, 45]);
    }

    #[test]
    fn both_day_fields_restricted_match_either_as_cron_does() {
        // The 1st of the month or any Friday.
        let c = Cron::parse("0 8 1 * fri").unwrap();
        assert!(c.matches_day(5, 1, 3));
        assert!(c.matches_day(5, 8, 5));
        assert!(!c.matches_day(5, 9, 6));
        // One of them `*`: both must hold (the `*` always does).
        let c = Cron::parse("0 8 * * fri").unwrap();
        assert!(!c.matches_day(5, 1, 3));
        assert!(c.matches_day(5, 8, 5));
        let c = Cron::parse("0 8 */2 * fri").unwrap();
        assert!(!c.matches_day(5, 8, 5), "a stepped `*` still restricts by both");
        assert!(c.matches_day(5, 1, 5));
    }

    #[test]
    fn mistakes_say_which_field() {
        assert!(Cron::parse("0 8 * *").unwrap_err().contains("five fields"));
        assert!(Cron::parse("60 8 * * *").unwrap_err().starts_with("minute"));
        assert!(Cron::parse("0 8 * * mon/0").unwrap_err().contains("step"));
        assert!(Cron::parse("0 8 * 13 *").unwrap_err().starts_with("month"));
    }
}
