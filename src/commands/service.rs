//! `orch run` on a schedule: wait for a start time, then run once; or run the graph at every
//! fire time of a cron expression, as a long-running service.
//!
//! Owns the waiting between runs and the signals that arrive then: SIGINT, SIGTERM or SIGHUP
//! between runs exits 0 at once. During a run the dispatcher handles signals as usual (stops the run)
//! and the service exits after it. Never two runs at once: a fire time that comes while a run
//! is going is skipped and reported. All time arithmetic is in `crate::schedule`; this file
//! only sleeps, listens and reports. It never prints: every line is an [`Event`].

use chrono::{DateTime, Utc};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::config::When;
use crate::errors::{Error, ExitCode};
use crate::events::Event;
use crate::manifest::Manifest;
use crate::report::service_file::{Outcome, ServiceFile};
use crate::schedule::{self, Zone};

/// Most missed fire times counted after a clock jump.
const MISSED_CAP: usize = 10_000;

/// When to run: the start instant, the cron schedule and their zone, from the Config's flags and
/// the manifest, resolved once when the run is set up. Nothing here parses text.
pub struct Timing {
    /// The start time as written, where it came from ("--start-at" or "schedule.start_at"),
    /// and the instant it names.
    pub start: Option<(String, &'static str, DateTime<Utc>)>,
    pub cron: Option<(String, cron::Schedule)>,
    pub zone: Zone,
    pub once: bool,
}

impl Timing {
    /// `None` when nothing is scheduled: run at once. Flags win over the manifest; the start
    /// time is tied to a day at `now`, and one that has passed is an error.
    pub fn new(when: &When, m: &Manifest, now: DateTime<Utc>) -> Result<Option<Timing>, Error> {
        let chosen = when.choose(&m.schedule)?;
        let start = match (&chosen.start, chosen.start_instant(now)) {
            (Some((text, from, _)), Some(at)) => {
                let at = at.map_err(|reason| Error::BadFlag {
                    flag: from,
                    value: text.clone(),
                    reason,
                    help: "give a time that is still to come".into(),
                })?;
                Some((text.clone(), *from, at))
            }
            _ => None,
        };
        if start.is_none() && chosen.cron.is_none() {
            return Ok(None);
        }
        Ok(Some(Timing {
            start,
            cron: chosen.cron,
            zone: chosen.zone,
            once: when.once,
        }))
    }
}

/// How many next fire times the service's record shows.
const NEXT_SHOWN: usize = 5;

/// Waits and runs as `t` says, calling `run_once` for each run; returns the exit code. With a
/// cron schedule, `record` (the service's file for `orch serve`) is kept up to date.
pub async fn serve(
    t: &Timing,
    sink: &crate::report::Sink,
    mut record: Option<ServiceFile>,
    mut run_once: impl AsyncFnMut() -> Result<ExitCode, Error>,
) -> Result<ExitCode, Error> {
    let report = |e: Event| sink.event(e);
    let listen = |kind| signal(kind).map_err(|e| Error::io("cannot listen for signals", e));
    let mut signals = Signals {
        int: listen(SignalKind::interrupt())?,
        term: listen(SignalKind::terminate())?,
        hup: listen(SignalKind::hangup())?,
    };
    if let Some((_, _, at)) = &t.start {
        if let Some(sig) = wait(*at, None, t.zone, &mut signals, &report).await {
            report(Event::ScheduleStopped {
                signal: sig,
                runs: 0,
            });
            return Ok(ExitCode::Ok);
        }
        if t.cron.is_none() {
            return run_once().await;
        }
    }
    let Some((expr, cron)) = &t.cron else {
        return run_once().await;
    };
    let never = || Error::BadFlag {
        flag: "--schedule",
        value: expr.clone(),
        reason: "it has no fire time to come".into(),
        help: "check the day and month fields (\"0 0 30 2 *\" never fires)".into(),
    };
    let skipped = |record: &mut Option<ServiceFile>, at: DateTime<Utc>, reason: String| {
        if let Some(r) = record {
            r.push(Outcome {
                at,
                exit_code: None,
                seconds: None,
                skipped: Some(reason.clone()),
            });
        }
        report(Event::FireSkipped {
            at: t.zone.fixed(at),
            reason,
        })
    };
    let mut target = t.zone.next_fire(cron, Utc::now()).ok_or_else(never)?;
    let mut runs = 0;
    loop {
        if let Some(r) = &mut record {
            r.record.next =
                t.zone
                    .next_fires(cron, target - chrono::Duration::seconds(1), NEXT_SHOWN);
            r.write();
        }
        if let Some(sig) = wait(target, Some(expr), t.zone, &mut signals, &report).await {
            report(Event::ScheduleStopped { signal: sig, runs });
            return Ok(ExitCode::Ok);
        }
        // Woken late (a suspend, an NTP step): run the fire time due, skip the ones after it.
        let now = Utc::now();
        let missed = t.zone.fires_between(cron, target, now, MISSED_CAP);
        if missed > 0 {
            let first = t.zone.next_fire(cron, target).unwrap_or(now);
            skipped(
                &mut record,
                first,
                format!(
                    "{missed} fire time{} passed while the machine slept or the clock jumped; \
                     the one due at {} runs now",
                    if missed == 1 { "" } else { "s" },
                    t.zone.fixed(target).format("%H:%M:%S")
                ),
            );
        }
        runs += 1;
        let mut next = t.zone.next_fire(cron, now).ok_or_else(never);
        let mut stopping = false;
        let began = Utc::now();
        let run = run_once();
        tokio::pin!(run);
        let code = loop {
            let due = next.as_ref().ok().copied();
            let nap = due.and_then(|d| schedule::next_sleep(Utc::now(), d));
            tokio::select! {
                code = &mut run => break code?,
                // The dispatcher got the signal too and is stopping the run; exit after it.
                _ = signals.int.recv() => stopping = true,
                _ = signals.term.recv() => stopping = true,
                _ = signals.hup.recv() => stopping = true,
                _ = tokio::time::sleep(nap.unwrap_or(schedule::SLICE)), if due.is_some() => {
                    if let Some(d) = due.filter(|d| *d <= Utc::now()) {
                        skipped(&mut record, d, format!("run {runs} was still going"));
                        next = t.zone.next_fire(cron, d).ok_or_else(never);
                    }
                }
            }
        };
        if let Some(r) = &mut record {
            r.push(Outcome {
                at: began,
                exit_code: Some(code as u8),
                seconds: Some((Utc::now() - began).num_milliseconds() as f64 / 1000.0),
                skipped: None,
            });
        }
        if stopping || code == ExitCode::Interrupted || t.once {
            return Ok(code);
        }
        let mut next = next?;
        while next <= Utc::now() {
            skipped(&mut record, next, format!("run {runs} was still going"));
            next = t.zone.next_fire(cron, next).ok_or_else(never)?;
        }
        target = next;
    }
}

struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

/// Waits until `at`, reporting when the wait starts and as it passes milestones; returns the
/// signal's name if SIGINT, SIGTERM or SIGHUP came first.
async fn wait(
    at: DateTime<Utc>,
    cron: Option<&String>,
    zone: Zone,
    signals: &mut Signals,
    report: &impl Fn(Event),
) -> Option<String> {
    let left = |now: DateTime<Utc>| (at - now).to_std().unwrap_or_default();
    let mut before = left(Utc::now());
    report(Event::RunScheduled {
        at: zone.fixed(at),
        left: before,
        cron: cron.cloned(),
    });
    let sleep = schedule::sleep_until(at, |now| {
        let l = left(now);
        if let Some(mark) = schedule::crossed_mark(before, l) {
            report(Event::WaitUpdated {
                at: zone.fixed(at),
                left: mark,
            });
        }
        before = l;
    });
    tokio::select! {
        _ = sleep => None,
        _ = signals.int.recv() => Some("SIGINT".into()),
        _ = signals.term.recv() => Some("SIGTERM".into()),
        _ = signals.hup.recv() => Some("SIGHUP".into()),
    }
}
