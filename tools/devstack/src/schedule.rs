//! EventBridge schedule expressions (`rate(...)`, `cron(...)`) and when they fire next.
//!
//! The cron dialect is EventBridge's six fields (minutes hours day-of-month month
//! day-of-week year, in UTC, day-of-week 1 = Sunday, one of the two day fields `?`), with
//! `*`, `?`, lists, ranges, steps and month/day names. `L`, `W` and `#` are not supported
//! and rejected when the template is read.

use std::time::Duration;

use chrono::{DateTime, Datelike, Duration as ChronoDuration, Timelike, Utc};

/// Why a schedule expression is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Neither `rate(...)` nor `cron(...)`.
    #[error("not a rate(...) or cron(...) expression")]
    Syntax,
    /// A `rate` with a bad value or unit.
    #[error("invalid rate expression")]
    Rate,
    /// A `cron` field devstack cannot read.
    #[error("invalid or unsupported cron field {0:?}")]
    Cron(String),
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleExpr {
    /// Every so often.
    Rate(Duration),
    /// At matching minutes.
    Cron(Box<Cron>),
}

/// The allowed values of each cron field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<u32>,
    hours: Vec<u32>,
    days_of_month: Option<Vec<u32>>,
    months: Vec<u32>,
    days_of_week: Option<Vec<u32>>,
    years: Vec<u32>,
}

impl ScheduleExpr {
    /// Parses `rate(5 minutes)` or `cron(0 12 * * ? *)`.
    ///
    /// # Errors
    /// [`ScheduleError`] for anything else.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let text = text.trim();
        if let Some(inner) = text.strip_prefix("rate(").and_then(|t| t.strip_suffix(')')) {
            let mut parts = inner.split_whitespace();
            let value: u64 = parts
                .next()
                .and_then(|v| v.parse().ok())
                .filter(|v| *v > 0)
                .ok_or(ScheduleError::Rate)?;
            let unit = match parts.next() {
                Some("minute" | "minutes") => 60,
                Some("hour" | "hours") => 3600,
                Some("day" | "days") => 86_400,
                _ => return Err(ScheduleError::Rate),
            };
            if parts.next().is_some() {
                return Err(ScheduleError::Rate);
            }
            return Ok(Self::Rate(Duration::from_secs(value * unit)));
        }
        if let Some(inner) = text.strip_prefix("cron(").and_then(|t| t.strip_suffix(')')) {
            let fields: Vec<&str> = inner.split_whitespace().collect();
            let [minutes, hours, dom, months, dow, years] = fields.as_slice() else {
                return Err(ScheduleError::Cron(inner.to_owned()));
            };
            const MONTHS: [&str; 12] = [
                "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
            ];
            const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
            return Ok(Self::Cron(Box::new(Cron {
                minutes: field(minutes, 0, 59, &[])?,
                hours: field(hours, 0, 23, &[])?,
                days_of_month: optional(dom, 1, 31, &[])?,
                months: field(months, 1, 12, &MONTHS)?,
                days_of_week: optional(dow, 1, 7, &DAYS)?,
                years: field(years, 1970, 2199, &[])?,
            })));
        }
        Err(ScheduleError::Syntax)
    }

    /// How long to wait from `now` until the next firing.
    #[must_use]
    pub fn delay_from(&self, now: DateTime<Utc>) -> Duration {
        match self {
            Self::Rate(every) => *every,
            Self::Cron(cron) => cron
                .next_after(now)
                .and_then(|next| (next - now).to_std().ok())
                // No matching minute within two years: wait a day and look again.
                .unwrap_or(Duration::from_secs(86_400)),
        }
    }
}

impl Cron {
    /// The first matching whole minute strictly after `now`, looking two years ahead.
    #[must_use]
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut t = now.with_second(0)?.with_nanosecond(0)? + ChronoDuration::minutes(1);
        let end = now + ChronoDuration::days(731);
        while t < end {
            if !self.day_matches(t) {
                t = (t + ChronoDuration::days(1)).with_hour(0)?.with_minute(0)?;
                continue;
            }
            if self.hours.contains(&t.hour()) && self.minutes.contains(&t.minute()) {
                return Some(t);
            }
            t += ChronoDuration::minutes(1);
        }
        None
    }

    fn day_matches(&self, t: DateTime<Utc>) -> bool {
        let dom_ok = self
            .days_of_month
            .as_ref()
            .is_none_or(|d| d.contains(&t.day()));
        // EventBridge numbers days of week 1 (Sunday) to 7 (Saturday).
        let dow_ok = self
            .days_of_week
            .as_ref()
            .is_none_or(|d| d.contains(&(t.weekday().num_days_from_sunday() + 1)));
        dom_ok
            && dow_ok
            && self.months.contains(&t.month())
            && u32::try_from(t.year()).is_ok_and(|y| self.years.contains(&y))
    }
}

fn optional(
    text: &str,
    min: u32,
    max: u32,
    names: &[&str],
) -> Result<Option<Vec<u32>>, ScheduleError> {
    if text == "?" {
        Ok(None)
    } else {
        field(text, min, max, names).map(Some)
    }
}

fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<Vec<u32>, ScheduleError> {
    let bad = || ScheduleError::Cron(text.to_owned());
    let value = |t: &str| -> Result<u32, ScheduleError> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(t)) {
            return u32::try_from(i).map(|i| i + min).map_err(|_| bad());
        }
        t.parse::<u32>()
            .ok()
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(bad)
    };
    let mut out = Vec::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(bad)?),
            None => (part, 1),
        };
        let (from, to) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if part.contains('/') { max } else { v })
        };
        if from > to {
            return Err(bad());
        }
        out.extend((from..=to).step_by(usize::try_from(step).map_err(|_| bad())?));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::TimeZone;

    #[test]
    fn rate_expressions_give_their_interval() {
        assert_eq!(
            ScheduleExpr::parse("rate(5 minutes)").unwrap(),
            ScheduleExpr::Rate(Duration::from_secs(300))
        );
        assert_eq!(
            ScheduleExpr::parse("rate(1 hour)").unwrap(),
            ScheduleExpr::Rate(Duration::from_secs(3600))
        );
        assert_eq!(
            ScheduleExpr::parse("rate(0 minutes)"),
            Err(ScheduleError::Rate)
        );
        assert_eq!(
            ScheduleExpr::parse("every 5 minutes"),
            Err(ScheduleError::Syntax)
        );
    }

    #[test]
    fn cron_expressions_fire_at_the_next_matching_minute_in_utc() {
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 15, 7, 30).unwrap();
        let every_15 = ScheduleExpr::parse("cron(0/15 * * * ? *)").unwrap();
        assert_eq!(every_15.delay_from(now), Duration::from_secs(7 * 60 + 30));
        let ScheduleExpr::Cron(noon_weekdays) =
            ScheduleExpr::parse("cron(0 12 ? * MON-FRI *)").unwrap()
        else {
            panic!("cron expected");
        };
        // 2026-11-27 is a Friday; the next weekday noon after 15:07 is Monday the 30th.
        assert_eq!(
            noon_weekdays.next_after(now),
            Some(Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap())
        );
        assert!(ScheduleExpr::parse("cron(0 12 L * ? *)").is_err());
    }
}
