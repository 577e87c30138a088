//! Cron expressions in UTC: parsing and the tick after (or the latest tick
//! before) a time. Five fields, `minute hour day-of-month month
//! day-of-week`, or six with a leading `second` field; each field takes
//! `*`, `N`, `A-B`, `*/S`, `A-B/S`, `N/S` and lists of them (`1,15,30-40`);
//! months and weekdays also by name (`JAN`, `MON`; Sunday is 0 or 7).
//! As in Vixie cron, when both day fields are restricted a day matches
//! either. `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly` are
//! shorthands.
//!
//! Written here rather than taken from a crate: UTC only, no calendar
//! library needed (the date arithmetic is Howard Hinnant's civil-days
//! algorithm), and the node needs one thing from it, the next tick.

use crate::job::UnixMs;

/// A parsed expression: one bit per allowed value of each field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Both day fields restricted: a day matches either (Vixie cron).
    either_day: bool,
    /// A seconds field was given (ticks may fall on any second).
    with_seconds: bool,
}

/// How far [`Cron::next_after`] looks before it gives up (an expression
/// such as `0 0 30 2 *` never matches).
const HORIZON_YEARS: i64 = 5;

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Cron {
    /// Parses an expression; the error names the field at fault.
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let expr = expr.trim();
        let expanded = match expr.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@hourly" => "0 * * * *".to_string(),
            s if s.starts_with('@') => {
                return Err(format!(
                    "unknown cron shorthand {expr:?}: use @yearly, @monthly, @weekly, @daily or @hourly"
                ));
            }
            _ => expr.to_string(),
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(format!(
                    "cron expression {expr:?} has {n} fields: give five (minute hour day-of-month month day-of-week, UTC) or six with a leading seconds field"
                ));
            }
        };
        let seconds = field(sec, "second", 0, 59, &[])?;
        let minutes = field(rest[0], "minute", 0, 59, &[])?;
        let hours = field(rest[1], "hour", 0, 23, &[])? as u32;
        let days = field(rest[2], "day-of-month", 1, 31, &[])? as u32;
        let months = (field(rest[3], "month", 1, 12, &MONTHS)? >> 1) as u16;
        let mut weekdays = field(rest[4], "day-of-week", 0, 7, &WEEKDAYS)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1; // 7 is Sunday too
        }
        Ok(Cron {
            seconds,
            minutes,
            hours,
            days,
            months,
            weekdays: (weekdays & 0x7f) as u8,
            either_day: !is_star(rest[2]) && !is_star(rest[4]),
            with_seconds: fields.len() == 6,
        })
    }

    /// Whether ticks may fall on any second (a seconds field was given).
    pub fn with_seconds(&self) -> bool {
        self.with_seconds
    }

    fn day_matches(&self, day: u32, month: u32, weekday: u32) -> bool {
        if self.months & (1 << (month - 1)) == 0 {
            return false;
        }
        let dom = self.days & (1 << day) != 0;
        let dow = self.weekdays & (1 << weekday) != 0;
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The first tick strictly after `after` (unix ms), or `None` if there
    /// is none within five years.
    pub fn next_after(&self, after: UnixMs) -> Option<UnixMs> {
        // Ticks fall on whole seconds: start at the next one.
        let mut t = (after / 1000) as i64 + 1;
        let limit = t + HORIZON_YEARS * 366 * 86_400;
        while t <= limit {
            let days = t.div_euclid(86_400);
            let secs = t.rem_euclid(86_400) as u32;
            let (_, month, day) = civil_from_days(days);
            let weekday = (days + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday
            if !self.day_matches(day, month, weekday) {
                t = (days + 1) * 86_400;
                continue;
            }
            let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
            if self.hours & (1 << h) == 0 {
                t = days * 86_400 + i64::from(h + 1) * 3600;
                continue;
            }
            if self.minutes & (1 << m) == 0 {
                t = days * 86_400 + i64::from(h) * 3600 + i64::from(m + 1) * 60;
                continue;
            }
            if self.seconds & (1 << s) == 0 {
                t += 1;
                continue;
            }
            return Some(t as u64 * 1000);
        }
        None
    }

    /// The latest tick in `(floor, upto]`, if any. Searches back from
    /// `upto` over a span doubled until it holds a tick or reaches
    /// `floor`, then walks forward through that span.
    pub fn latest_in(&self, floor: UnixMs, upto: UnixMs) -> Option<UnixMs> {
        if upto <= floor {
            return None;
        }
        let mut span: u64 = 60_000;
        loop {
            let start = upto.saturating_sub(span).max(floor);
            match self.next_after(start) {
                Some(first) if first <= upto => {
                    let mut t = first;
                    while let Some(n) = self.next_after(t).filter(|n| *n <= upto) {
                        t = n;
                    }
                    return Some(t);
                }
                _ if start == floor => return None,
                _ => span = span.saturating_mul(2),
            }
        }
    }
}

fn is_star(f: &str) -> bool {
    f == "*" || f == "?"
}

/// One field as a bit set of its allowed values (`lo..=hi`).
fn field(text: &str, what: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, String> {
    let bad = |why: String| format!("cron {what} field {text:?}: {why}");
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            // Months are 1-based, weekdays 0-based.
            return Ok(i as u32 + lo);
        }
        let n: u32 = s
            .parse()
            .map_err(|_| bad(format!("{s:?} is not a number")))?;
        if n < lo || n > hi {
            return Err(bad(format!("{n} is outside {lo}-{hi}")));
        }
        Ok(n)
    };
    let mut set = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad(format!("step {s:?} is not a number > 0")))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (from, to) = if is_star(range) {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(bad(format!("range {a}-{b} runs backwards")));
            }
            (a, b)
        } else {
            let a = value(range)?;
            // `N/S`: from N to the end, every S.
            (
                a,
                if step > 1 || part.contains('/') {
                    hi
                } else {
                    a
                },
            )
        };
        let mut v = from;
        while v <= to {
            set |= 1 << v;
            v += step;
        }
    }
    if set == 0 {
        return Err(bad("allows no value".into()));
    }
    Ok(set)
}

/// `(year, month 1-12, day 1-31)` of a count of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC date and time (the inverse of `civil_from_days`).
    fn at(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> UnixMs {
        let y = if mo <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let mp = i64::from(if mo > 2 { mo - 3 } else { mo + 9 });
        let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        ((days * 86_400 + i64::from(h * 3600 + mi * 60 + s)) * 1000) as u64
    }

    #[test]
    fn the_calendar_agrees_with_known_dates() {
        assert_eq!(at(1970, 1, 1, 0, 0, 0), 0);
        assert_eq!(at(2000, 3, 1, 0, 0, 0), 951_868_800_000);
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        // 2026-12-05 is a Saturday.
        let days = (at(2026, 12, 5, 0, 0, 0) / 86_400_000) as i64;
        assert_eq!((days + 4).rem_euclid(7), 6);
    }

    #[test]
    fn next_ticks_of_common_expressions() {
        let c = Cron::parse("*/5 * * * *").unwrap();
        let t = at(2026, 12, 5, 13, 7, 30);
        assert_eq!(c.next_after(t), Some(at(2026, 12, 5, 13, 10, 0)));
        // Strictly after: a tick is not its own next.
        let tick = at(2026, 12, 5, 13, 10, 0);
        assert_eq!(c.next_after(tick), Some(at(2026, 12, 5, 13, 15, 0)));
        assert_eq!(
            Cron::parse("0 3 * * *")
                .unwrap()
                .next_after(at(2026, 12, 31, 4, 0, 0)),
            Some(at(2027, 1, 1, 3, 0, 0))
        );
        // Monday to Friday at 09:30: from Saturday, the Monday.
        assert_eq!(
            Cron::parse("30 9 * * MON-FRI")
                .unwrap()
                .next_after(at(2026, 12, 5, 10, 0, 0)),
            Some(at(2026, 12, 7, 9, 30, 0))
        );
        // Leap day.
        assert_eq!(
            Cron::parse("0 0 29 2 *")
                .unwrap()
                .next_after(at(2026, 1, 1, 0, 0, 0)),
            Some(at(2028, 2, 29, 0, 0, 0))
        );
        // Both day fields restricted: either matches (the 1st, or a Sunday).
        assert_eq!(
            Cron::parse("0 0 1 * 0")
                .unwrap()
                .next_after(at(2026, 12, 5, 0, 0, 0)),
            Some(at(2026, 12, 6, 0, 0, 0))
        );
        assert_eq!(
            Cron::parse("@hourly")
                .unwrap()
                .next_after(at(2026, 12, 5, 13, 0, 0)),
            Some(at(2026, 12, 5, 14, 0, 0))
        );
        // Never: February 30th.
        assert_eq!(Cron::parse("0 0 30 2 *").unwrap().next_after(0), None);
    }

    #[test]
    fn a_seconds_field_ticks_within_minutes() {
        let c = Cron::parse("*/2 * * * * *").unwrap();
        assert!(c.with_seconds());
        assert!(!Cron::parse("* * * * *").unwrap().with_seconds());
        let t = at(2026, 12, 5, 13, 0, 1) + 500;
        assert_eq!(c.next_after(t), Some(at(2026, 12, 5, 13, 0, 2)));
        let every = Cron::parse("* * * * * *").unwrap();
        assert_eq!(every.next_after(t), Some(at(2026, 12, 5, 13, 0, 2)));
        assert_eq!(
            every.next_after(at(2026, 12, 5, 13, 0, 2)),
            Some(at(2026, 12, 5, 13, 0, 3))
        );
    }

    #[test]
    fn latest_tick_in_a_range() {
        let c = Cron::parse("*/5 * * * *").unwrap();
        let now = at(2026, 12, 5, 13, 7, 30);
        assert_eq!(c.latest_in(0, now), Some(at(2026, 12, 5, 13, 5, 0)));
        // None above the floor.
        assert_eq!(c.latest_in(at(2026, 12, 5, 13, 5, 0), now), None);
        // A sparse expression: the search widens its span.
        let yearly = Cron::parse("@yearly").unwrap();
        assert_eq!(yearly.latest_in(0, now), Some(at(2026, 1, 1, 0, 0, 0)));
        let daily = Cron::parse("0 0 * * * *").unwrap();
        assert_eq!(
            daily.latest_in(at(2026, 12, 5, 12, 59, 59), now),
            Some(at(2026, 12, 5, 13, 0, 0))
        );
    }

    #[test]
    fn mistakes_name_their_field() {
        let err = |e: &str| Cron::parse(e).unwrap_err();
        assert!(err("* * * *").contains("4 fields"));
        assert!(err("60 * * * *").contains("minute field"));
        assert!(err("* 24 * * *").contains("hour"));
        assert!(err("* * 0 * *").contains("day-of-month"));
        assert!(err("* * * 13 *").contains("month"));
        assert!(err("* * * * 8").contains("day-of-week"));
        assert!(err("*/0 * * * *").contains("step"));
        assert!(err("5-1 * * * *").contains("backwards"));
        assert!(err("x * * * *").contains("not a number"));
        assert!(err("@sometimes").contains("shorthand"));
        assert!(Cron::parse("0 0 * JAN,jul sun,7").is_ok());
        assert!(Cron::parse("1,2,3-9/2 * * * *").is_ok());
    }
}
