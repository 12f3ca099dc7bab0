//! Scheduling: `--start-at` times, cron fire times in a time zone, and how long to sleep next.
//!
//! Owns all time logic of `orch run`'s waiting and service loop, as pure functions of `now`
//! (unit-tested across midnight, month ends, leap years and DST). The only impure piece is
//! [`sleep_until`], a small loop that sleeps in bounded slices and re-reads the wall clock, so
//! a suspend or an NTP step is noticed instead of overslept. Never runs, spawns or prints.

mod fires;
mod start_at;
#[cfg(test)]
mod tests;

use std::time::Duration;

use chrono::{DateTime, FixedOffset, Local, Utc};

pub use fires::{fires_between, local_instant, next_fire, next_fires, parse_cron};
pub use start_at::{START_AT_FORMS, StartAt, parse_start_at, resolve_start_at};

/// Evaluates `$body` with `$t` (a `DateTime<Utc>`) as `$z` in the zone's own type: chrono's
/// zones are distinct types, and a closure cannot be generic over them.
macro_rules! in_zone {
    ($zone:expr, $t:expr, |$z:ident| $body:expr) => {
        match $zone {
            Zone::Local => {
                let $z = &$t.with_timezone(&Local);
                $body
            }
            Zone::Named(tz) => {
                let $z = &$t.with_timezone(tz);
                $body
            }
        }
    };
}

/// The longest single sleep: a wall-clock jump is noticed at most this late.
pub const SLICE: Duration = Duration::from_secs(1);

/// The zone a schedule's times are read in: the machine's local time, or a named IANA zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    Local,
    Named(chrono_tz::Tz),
}

impl Zone {
    /// `None` is local time; otherwise an IANA name ("Europe/Berlin", "UTC").
    pub fn parse(name: Option<&str>) -> Result<Zone, String> {
        match name.map(str::trim) {
            None => Ok(Zone::Local),
            Some(n) if n.eq_ignore_ascii_case("local") => Ok(Zone::Local),
            Some(n) => n
                .parse::<chrono_tz::Tz>()
                .map(Zone::Named)
                .map_err(|_| format!("{n:?} is not an IANA time zone")),
        }
    }

    /// Every IANA zone name, for "did you mean".
    pub fn names() -> impl Iterator<Item = &'static str> {
        chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
    }

    /// "local time" or the zone's name.
    pub fn name(&self) -> String {
        match self {
            Zone::Local => "local time".into(),
            Zone::Named(tz) => tz.name().into(),
        }
    }

    /// The first fire time of `schedule` strictly after `after`.
    pub fn next_fire(
        &self,
        schedule: &cron::Schedule,
        after: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        in_zone!(self, after, |t| next_fire(schedule, t)
            .map(|t| t.with_timezone(&Utc)))
    }

    /// The next `n` fire times after `now`, with this zone's offset (for showing them).
    pub fn next_fires(
        &self,
        schedule: &cron::Schedule,
        now: DateTime<Utc>,
        n: usize,
    ) -> Vec<DateTime<FixedOffset>> {
        in_zone!(self, now, |t| next_fires(schedule, t, n)
            .into_iter()
            .map(|t| t.fixed_offset())
            .collect())
    }

    /// How many fire times lie in `(from, to]`, counting at most `cap`.
    pub fn fires_between(
        &self,
        schedule: &cron::Schedule,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cap: usize,
    ) -> usize {
        in_zone!(self, from, |f| fires_between(
            schedule,
            f,
            &to.with_timezone(&f.timezone()),
            cap
        ))
    }

    /// The instant a start time means at `now`, with times of day read in this zone.
    pub fn start_at(&self, spec: &StartAt, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
        in_zone!(self, now, |t| resolve_start_at(spec, t)
            .map(|t| t.with_timezone(&Utc)))
    }

    /// An instant with this zone's offset.
    pub fn fixed(&self, t: DateTime<Utc>) -> DateTime<FixedOffset> {
        in_zone!(self, t, |z| z.fixed_offset())
    }
}

/// How long to sleep before looking at the clock again, or `None` when `target` has come.
pub fn next_sleep(now: DateTime<Utc>, target: DateTime<Utc>) -> Option<Duration> {
    let left = (target - now).to_std().ok().filter(|d| !d.is_zero())?;
    Some(left.min(SLICE))
}

/// The waiting milestone ("1h left") passed between two looks at the time left, if any: the
/// smallest mark in `[left, before)`, so a jump past several announces only the latest.
pub fn crossed_mark(before: Duration, left: Duration) -> Option<Duration> {
    const MARKS: [u64; 9] = [60, 300, 600, 1_800, 3_600, 10_800, 21_600, 43_200, 86_400];
    MARKS
        .iter()
        .map(|s| Duration::from_secs(*s))
        .find(|m| left <= *m && *m < before)
}

/// Sleeps until the wall clock reads `target`, in slices of at most [`SLICE`], calling `tick`
/// with the wall-clock time before each slice.
pub async fn sleep_until(target: DateTime<Utc>, tick: impl FnMut(DateTime<Utc>)) {
    sleep_until_by(target, Utc::now, tick).await
}

/// [`sleep_until`] with the wall clock as a parameter, so a test can make it jump.
async fn sleep_until_by(
    target: DateTime<Utc>,
    clock: impl Fn() -> DateTime<Utc>,
    mut tick: impl FnMut(DateTime<Utc>),
) {
    loop {
        let now = clock();
        let Some(d) = next_sleep(now, target) else {
            return;
        };
        tick(now);
        tokio::time::sleep(d).await;
    }
}
