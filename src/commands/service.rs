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

use crate::cli::RunArgs;
use crate::errors::{Error, ExitCode};
use crate::events::Event;
use crate::manifest::Manifest;
use crate::schedule::{self, StartAt, Zone};

/// Most missed fire times counted after a clock jump.
const MISSED_CAP: usize = 10_000;

/// When to run: the start time, the cron schedule and their zone, from the flags and manifest.
pub struct Timing {
    /// The start time as written, and where ("--start-at" or "schedule.start_at").
    start: Option<(String, &'static str, StartAt)>,
    cron: Option<(String, cron::Schedule)>,
    zone: Zone,
    once: bool,
}

impl Timing {
    /// `None` when nothing is scheduled: run at once. Flags win over the manifest.
    pub fn new(args: &RunArgs, m: &Manifest) -> Result<Option<Timing>, Error> {
        let bad = |flag, value: &str, reason: String| Error::BadFlag {
            flag,
            value: value.to_string(),
            reason,
            help: format!("write {}", schedule::START_AT_FORMS),
        };
        let start = match (&args.start_at, &m.schedule.start_at) {
            (Some(s), _) => Some((s.clone(), "--start-at")),
            (None, Some(s)) => Some((s.clone(), "schedule.start_at")),
            (None, None) => None,
        };
        let start = match start {
            Some((text, from)) => {
                let spec = schedule::parse_start_at(&text).map_err(|r| bad(from, &text, r))?;
                Some((text, from, spec))
            }
            None => None,
        };
        let cron = match args.schedule.as_ref().or(m.schedule.cron.as_ref()) {
            Some(expr) => {
                let s = schedule::parse_cron(expr).map_err(|reason| Error::BadFlag {
                    flag: "--schedule",
                    value: expr.clone(),
                    reason,
                    help: "write 5 fields (\"0 2 * * *\"), 6 with seconds first, or @hourly, \
                           @daily, @weekly"
                        .into(),
                })?;
                Some((expr.clone(), s))
            }
            None => None,
        };
        let zone =
            Zone::parse(m.schedule.timezone.as_deref()).map_err(|reason| Error::BadFlag {
                flag: "schedule.timezone",
                value: m.schedule.timezone.clone().unwrap_or_default(),
                reason,
                help: "use an IANA zone name such as \"Europe/Berlin\"".into(),
            })?;
        if start.is_none() && cron.is_none() {
            return Ok(None);
        }
        Ok(Some(Timing {
            start,
            cron,
            zone,
            once: args.once,
        }))
    }
}

/// Waits and runs as `t` says, calling `run_once` for each run; returns the exit code.
pub async fn serve(
    t: &Timing,
    sink: &crate::report::Sink,
    mut run_once: impl AsyncFnMut() -> Result<ExitCode, Error>,
) -> Result<ExitCode, Error> {
    let report = |e: Event| sink.event(e);
    let listen = |kind| signal(kind).map_err(|e| Error::io("cannot listen for signals", e));
    let mut signals = Signals {
        int: listen(SignalKind::interrupt())?,
        term: listen(SignalKind::terminate())?,
        hup: listen(SignalKind::hangup())?,
    };
    if let Some((text, from, spec)) = &t.start {
        let at = t
            .zone
            .start_at(spec, Utc::now())
            .map_err(|reason| Error::BadFlag {
                flag: from,
                value: text.clone(),
                reason,
                help: "give a time that is still to come".into(),
            })?;
        if let Some(sig) = wait(at, None, t.zone, &mut signals, &report).await {
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
    let skipped = |at: DateTime<Utc>, reason: String| {
        report(Event::FireSkipped {
            at: t.zone.fixed(at),
            reason,
        })
    };
    let mut target = t.zone.next_fire(cron, Utc::now()).ok_or_else(never)?;
    let mut runs = 0;
    loop {
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
                        skipped(d, format!("run {runs} was still going"));
                        next = t.zone.next_fire(cron, d).ok_or_else(never);
                    }
                }
            }
        };
        if stopping || code == ExitCode::Interrupted || t.once {
            return Ok(code);
        }
        let mut next = next?;
        while next <= Utc::now() {
            skipped(next, format!("run {runs} was still going"));
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
