//! `--start-at` and `[schedule] start_at`: zen's forms plus ISO 8601, parsed once and resolved
//! against a `now` that is always a parameter.
//!
//! Parsing only checks the text (so a manifest is validated when it loads); resolving turns it
//! into an instant, rolling a time of day that has passed to tomorrow. Nothing here reads a clock.

use std::time::Duration;

use chrono::{
    DateTime, Days, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike,
};

use super::fires::local_instant;

/// Every accepted form, for error messages and help.
pub const START_AT_FORMS: &str = "a delay (\"2h\", \"30m\", \"45s\", \"1h30m\"), a time of day \
    (\"14:30\", \"2am\", \"10:30pm\"; tomorrow if it has passed today), \"tomorrow 9am\", \
    an ISO 8601 date or date-time (\"2026-11-26\", \"2026-11-26T02:00\", \
    \"2026-11-26T02:00:00+01:00\"), or \"now\"";

/// A parsed start time, not yet tied to a day.
#[derive(Clone, Debug, PartialEq)]
pub enum StartAt {
    Now,
    /// A delay from now: "2h", "1h30m".
    In(Duration),
    /// A time of day: today, or tomorrow when it has passed (or when written "tomorrow ...").
    TimeOfDay {
        time: NaiveTime,
        tomorrow: bool,
    },
    /// A local date and time ("2026-11-26" is its midnight).
    Local(NaiveDateTime),
    /// A date-time with its own UTC offset.
    Absolute(DateTime<FixedOffset>),
}

/// Parses a start time; the error says what is wrong (the caller adds [`START_AT_FORMS`]).
pub fn parse_start_at(text: &str) -> Result<StartAt, String> {
    let t = text.trim().to_ascii_lowercase();
    if t.is_empty() {
        return Err("it is empty".into());
    }
    if t == "now" {
        return Ok(StartAt::Now);
    }
    if let Some(rest) = t.strip_prefix("tomorrow") {
        let rest = rest.trim();
        if rest.is_empty() {
            return Err("\"tomorrow\" needs a time, e.g. \"tomorrow 9am\"".into());
        }
        let time = time_of_day(rest)?.ok_or_else(|| format!("{rest:?} is not a time of day"))?;
        return Ok(StartAt::TimeOfDay {
            time,
            tomorrow: true,
        });
    }
    if t.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        if let Some(d) = delay(&t)? {
            return Ok(StartAt::In(d));
        }
        if let Some(time) = time_of_day(&t)? {
            return Ok(StartAt::TimeOfDay {
                time,
                tomorrow: false,
            });
        }
        if let Some(at) = iso(text.trim()) {
            return Ok(at);
        }
    }
    Err(format!(
        "{:?} is not a delay, a time of day or a date",
        text.trim()
    ))
}

/// The instant a start time means at `now`, in `now`'s zone. A date or date-time in the past is
/// an error; a time of day that has passed means tomorrow.
pub fn resolve_start_at<Z: TimeZone>(
    spec: &StartAt,
    now: &DateTime<Z>,
) -> Result<DateTime<Z>, String> {
    let tz = now.timezone();
    let local = |n: NaiveDateTime| {
        local_instant(&tz, &n).ok_or_else(|| format!("{n} does not exist in this time zone"))
    };
    let at = match spec {
        StartAt::Now => return Ok(now.clone()),
        StartAt::In(d) => {
            return chrono::Duration::from_std(*d)
                .ok()
                .and_then(|d| now.clone().checked_add_signed(d))
                .ok_or_else(|| "the delay is too long".to_string());
        }
        StartAt::TimeOfDay { time, tomorrow } => {
            let today = now.naive_local().date();
            let tomorrow_date = today + Days::new(1);
            if *tomorrow {
                return local(tomorrow_date.and_time(*time));
            }
            let at = local(today.and_time(*time))?;
            return if at > *now {
                Ok(at)
            } else {
                local(tomorrow_date.and_time(*time))
            };
        }
        StartAt::Local(n) => local(*n)?,
        StartAt::Absolute(t) => t.with_timezone(&tz),
    };
    if at <= *now {
        return Err(format!("{} is in the past", at.naive_local()));
    }
    Ok(at)
}

/// "2h", "30m", "45s", "1h30m", "1.5h", "2d": units in decreasing order, each at most once.
fn delay(t: &str) -> Result<Option<Duration>, String> {
    let units = [('d', 86_400.0), ('h', 3_600.0), ('m', 60.0), ('s', 1.0)];
    let mut rest = t;
    let mut total = 0.0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(end);
        let after = after.trim_start();
        let Some(unit) = after.chars().next() else {
            return Ok(None);
        };
        let Some(i) = units.iter().position(|(u, _)| *u == unit) else {
            return Ok(None);
        };
        let Ok(n) = number.parse::<f64>() else {
            return Ok(None);
        };
        if i < next_unit {
            return Err(format!("{t:?} repeats a unit or has them out of order"));
        }
        next_unit = i + 1;
        total += n * units[i].1;
        rest = after[1..].trim_start();
    }
    // Capped like every duration, so that `now + delay` always fits.
    match crate::duration::seconds_to_duration(total) {
        Ok(d) => Ok(Some(d)),
        Err(e) => Err(format!("the delay {t:?}: {e}")),
    }
}

/// "14:30", "14:30:15", "2am", "2 am", "10:30pm"; `Ok(None)` when it is not shaped like a time.
fn time_of_day(t: &str) -> Result<Option<NaiveTime>, String> {
    let (clock, meridiem) = if let Some(c) = t.strip_suffix("am") {
        (c.trim_end(), Some(false))
    } else if let Some(c) = t.strip_suffix("pm") {
        (c.trim_end(), Some(true))
    } else {
        (t, None)
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let all_numbers = parts
        .iter()
        .all(|p| !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()));
    if !all_numbers || parts.len() > 3 || (meridiem.is_none() && parts.len() == 1) {
        return Ok(None);
    }
    let n: Vec<u32> = parts.iter().map(|p| p.parse().unwrap_or(99)).collect();
    let hour = match meridiem {
        None if n[0] > 23 => return Err(format!("{} is not an hour (0-23)", n[0])),
        None => n[0],
        Some(_) if !(1..=12).contains(&n[0]) => {
            return Err(format!(
                "{} is not an hour on a 12-hour clock (1-12 with am or pm)",
                n[0]
            ));
        }
        Some(pm) => n[0] % 12 + if pm { 12 } else { 0 },
    };
    let minute = n.get(1).copied().unwrap_or(0);
    let second = n.get(2).copied().unwrap_or(0);
    if minute > 59 || second > 59 {
        return Err(format!("{clock:?} has minutes or seconds above 59"));
    }
    Ok(NaiveTime::from_hms_opt(hour, minute, second))
}

/// ISO 8601 / RFC 3339: a date, a local date-time, or a date-time with an offset or `Z`.
fn iso(t: &str) -> Option<StartAt> {
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Some(StartAt::Local(d.and_time(NaiveTime::MIN)));
    }
    let t = t.replacen(' ', "T", 1);
    let zoned = if let Some(s) = t.strip_suffix(['Z', 'z']) {
        format!("{s}+00:00")
    } else {
        t.clone()
    };
    for f in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M%:z"] {
        if let Ok(d) = DateTime::parse_from_str(&zoned, f) {
            return Some(StartAt::Absolute(d));
        }
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(&t, f) {
            return Some(StartAt::Local(d.with_nanosecond(0).unwrap_or(d)));
        }
    }
    None
}
