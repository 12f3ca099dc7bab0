//! Cron expressions and their fire times in a time zone, across DST changes.
//!
//! The `cron` crate walks calendar fields in the schedule's zone, but it skips a fire time that
//! falls in a spring-forward gap (a nightly 02:30 job would not run that night) and can yield a
//! time twice, or out of order, in a fall-back hour. So fire times are found here in *local wall
//! time* and mapped to instants with the rule classic cron uses:
//! - a schedule that names its hours (`30 2 * * *`) fires once per wall-clock time: a time in a
//!   gap fires when the gap ends, a time that occurs twice fires the first time only;
//! - a schedule that runs every hour (`*/15 * * * *`) follows real time: a gap has no fire
//!   times, and a repeated hour fires in both of its passes.
//!
//! Pure: `now` is always a parameter; nothing here reads a clock or sleeps.

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use cron::TimeUnitSpec;

/// Parses a cron expression: 5 fields (minute first), 6 with seconds first, or an @-shortcut.
/// Numeric weekdays mean what they mean to classic cron: 0 and 7 are Sunday, 1 is Monday.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let expr = expr.trim();
    if expr.starts_with('@') {
        return cron::Schedule::from_str(expr).map_err(|e| e.to_string());
    }
    let mut fields: Vec<String> = expr.split_whitespace().map(str::to_string).collect();
    match fields.len() {
        5 => fields.insert(0, "0".into()),
        6 => {}
        n => return Err(format!("it has {n} fields; expected 5 or 6")),
    }
    fields[5] = classic_weekdays(&fields[5])?;
    cron::Schedule::from_str(&fields.join(" ")).map_err(|e| e.to_string())
}

/// Rewrites a weekday field from classic cron's numbers (0-7, Sunday = 0 or 7) to the `cron`
/// crate's (1-7, Sunday = 1) as an explicit list. Names and `*` pass through unchanged.
fn classic_weekdays(field: &str) -> Result<String, String> {
    if field.bytes().any(|b| b.is_ascii_alphabetic() || b == b'?') || field == "*" {
        return Ok(field.to_string());
    }
    let mut days = std::collections::BTreeSet::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<usize>()
                    .map_err(|_| format!("bad step in {item:?}"))?,
            ),
            None => (item, 1),
        };
        let num = |t: &str| match t.parse::<u32>() {
            Ok(n) if n <= 7 => Ok(n),
            _ => Err(format!("{t:?} is not a weekday (0-7, Sunday is 0 or 7)")),
        };
        let (from, to) = match range.split_once('-') {
            _ if range == "*" => (0, 6),
            Some((a, b)) => (num(a)?, num(b)?),
            None if step > 1 => (num(range)?, 7),
            None => (num(range)?, num(range)?),
        };
        if step == 0 || from > to {
            return Err(format!("{item:?} is not a weekday range"));
        }
        days.extend((from..=to).step_by(step).map(|d| d % 7 + 1));
    }
    Ok(days
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(","))
}

/// The first fire time strictly after `after`, in `after`'s zone.
pub fn next_fire<Z: TimeZone>(
    schedule: &cron::Schedule,
    after: &DateTime<Z>,
) -> Option<DateTime<Z>> {
    let tz = after.timezone();
    let every_hour = schedule.hours().is_all();
    // Offsets around `after` bound which local wall times can map to an instant after it.
    let offsets: Vec<i64> = [-1, 0, 1]
        .iter()
        .map(|d| offset_secs(&tz, &(after.clone() + Duration::days(*d))))
        .collect();
    let (lo, hi) = (
        *offsets.iter().min().expect("three offsets"),
        *offsets.iter().max().expect("three offsets"),
    );
    let utc = after.naive_utc();
    // Walk local wall times as if they were UTC instants: UTC has no gaps and no repeats.
    let start = Utc.from_utc_datetime(&(utc + Duration::seconds(lo) - Duration::seconds(1)));
    let mut best: Option<DateTime<Z>> = None;
    for naive in schedule.after(&start).map(|t| t.naive_utc()) {
        if let Some(b) = &best {
            // Every later wall time maps to an instant at least `naive - hi`.
            if naive - Duration::seconds(hi) > b.naive_utc() {
                break;
            }
        }
        let found = match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => vec![t],
            LocalResult::Ambiguous(first, second) if every_hour => vec![first, second],
            LocalResult::Ambiguous(first, _) => vec![first],
            LocalResult::None if every_hour => vec![],
            LocalResult::None => gap_end(&tz, &naive).into_iter().collect(),
        };
        for t in found {
            // A repeated wall time whose first pass is over has fired already.
            if t > *after && best.as_ref().is_none_or(|b| t < *b) {
                best = Some(t);
            }
        }
    }
    best
}

/// The next `n` fire times of a schedule after `now`.
pub fn next_fires<Z: TimeZone>(
    schedule: &cron::Schedule,
    now: &DateTime<Z>,
    n: usize,
) -> Vec<DateTime<Z>> {
    let mut out: Vec<DateTime<Z>> = Vec::with_capacity(n);
    let mut at = now.clone();
    while out.len() < n {
        match next_fire(schedule, &at) {
            Some(t) => {
                at = t.clone();
                out.push(t);
            }
            None => break,
        }
    }
    out
}

/// How many fire times lie in `(from, to]`, counting at most `cap`.
pub fn fires_between<Z: TimeZone>(
    schedule: &cron::Schedule,
    from: &DateTime<Z>,
    to: &DateTime<Z>,
    cap: usize,
) -> usize {
    let mut n = 0;
    let mut at = from.clone();
    while n < cap {
        match next_fire(schedule, &at) {
            Some(t) if t <= *to => {
                n += 1;
                at = t;
            }
            _ => break,
        }
    }
    n
}

/// A local wall time as an instant: the first of a repeated time, the end of a gap for a time
/// the clocks skipped.
pub fn local_instant<Z: TimeZone>(tz: &Z, naive: &NaiveDateTime) -> Option<DateTime<Z>> {
    match tz.from_local_datetime(naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t),
        LocalResult::None => gap_end(tz, naive),
    }
}

/// The first instant after the DST gap that swallowed `naive`: the moment the clocks jumped.
fn gap_end<Z: TimeZone>(tz: &Z, naive: &NaiveDateTime) -> Option<DateTime<Z>> {
    let minute = naive.with_second(0)?.with_nanosecond(0)?;
    // Gaps end on a whole minute and last at most a day (Samoa skipped 30 December 2011).
    (1..=2 * 24 * 60).find_map(
        |m| match tz.from_local_datetime(&(minute + Duration::minutes(m))) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t),
            LocalResult::None => None,
        },
    )
}

fn offset_secs<Z: TimeZone>(tz: &Z, t: &DateTime<Z>) -> i64 {
    use chrono::Offset;
    i64::from(
        tz.offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc(),
    )
}
