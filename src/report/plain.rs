//! The plain reporter: one timestamped line per event, for logs, CI and pipes; zen's status
//! table every `--status-report-interval` seconds; the final summary. `--quiet` keeps only
//! errors and the summary.
//!
//! It owns the wording of each event's line. It never decides anything about the run and never
//! reads the clock for the periodic table: `tick` is called from outside.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Local;

use super::live::{Board, Shape};
use super::sanitize::sanitize;
use super::status::{self, symbol};
use super::summary::{self, Paint};
use super::width::clip;
use super::{Options, Reporter};
use crate::events::Status;
use crate::events::{Event, StopCause};

pub struct Plain<W: Write> {
    out: W,
    opts: Options,
    board: Board,
    /// When the next status table is due; `None` before the run starts.
    next_table: Option<Instant>,
    /// The terminal's width when the lines go to one (`--no-progress`); `None` elsewhere.
    width: Option<usize>,
    /// When the next countdown line of a rate-limit pause is due.
    next_countdown: Option<Instant>,
}

impl<W: Write> Plain<W> {
    pub fn new(out: W, shape: &Shape, opts: Options) -> Self {
        Plain {
            out,
            board: Board::new(shape, opts.max_console_lines),
            opts,
            next_table: None,
            width: None,
            next_countdown: None,
        }
    }

    /// Lines cut to `width` columns, for a terminal of that width.
    pub fn with_width(mut self, width: Option<usize>) -> Self {
        self.width = width;
        self
    }
}

/// The line an event is shown as, if any; output lines only with `show_output`, cut to `max`
/// characters. Safe for a terminal: what came from outside orch (output, names, reasons) is
/// [`sanitize`]d.
pub fn event_line(event: &Event, max: usize, show_output: bool) -> Option<String> {
    let line = raw_event_line(event, max, show_output)?;
    Some(sanitize(&line).into_owned())
}

fn raw_event_line(event: &Event, max: usize, show_output: bool) -> Option<String> {
    let max = max.max(20);
    Some(match event {
        Event::RunStarted {
            run_id,
            name,
            run_dir,
            jobs,
            steps,
            resumed_from,
            ..
        } => format!(
            "run {name} {run_id}: {jobs} jobs, {steps} steps; logs in {}{}",
            super::display_path(run_dir),
            resumed_from
                .as_ref()
                .map(|from| format!("; resumes {from}"))
                .unwrap_or_default()
        ),
        Event::StepStarted { label, pid, .. } => format!("▶ {label} started (pid {pid})"),
        Event::StepPlaced {
            label,
            node,
            job_step,
            ..
        } => format!("▶ {label} runs on {node} (Slurm step {job_step})"),
        Event::StepOutput { label, line, .. } if show_output => {
            // Sanitized before the cut, so the cut counts what is shown.
            format!("│ {label}: {}", clip(&sanitize(line), max))
        }
        Event::BudgetWarning { message, .. } => format!("⚠ budget: {message}"),
        Event::JobExpanded { job, instances } => {
            let names: Vec<&str> = instances.iter().map(|i| i.name.as_str()).collect();
            match names.len() {
                0 => format!("⑂ {job}: for_each gave no items; nothing to run"),
                n => format!(
                    "⑂ {job} expanded into {n} instance{}: {}",
                    if n == 1 { "" } else { "s" },
                    clip(&names.join(", "), max)
                ),
            }
        }
        Event::JobOutputs {
            job,
            stdout_cut_bytes,
            ..
        } if *stdout_cut_bytes > 0 => format!(
            "⚠ {job}: its stdout output keeps the last `output_limit` bytes; {} were cut",
            super::results::human_bytes(*stdout_cut_bytes)
        ),
        Event::UsageAnomaly { label, what, .. } => format!("⚠ usage anomaly in {label}: {what}"),
        Event::LaunchesPaused { until, reason } => format!(
            "⏸ {reason}: no agent step starts before {}",
            until.with_timezone(&Local).format("%H:%M:%S")
        ),
        Event::LaunchesResumed => "▶ the rate limit has reset: agent steps start again".into(),
        Event::DeadRunsReconciled { runs } => format!(
            "⚠ runs left unfinished by a killed orch were reconciled from their logs and marked dead: {}",
            runs.join(", ")
        ),
        Event::LogWriteFailed {
            label,
            stream,
            path,
            error,
            bytes_lost,
            ..
        } => format!(
            "⚠ {label}: cannot write its {stream} log {} ({error}); {} lost so far, the step goes on",
            super::display_path(path),
            super::results::human_bytes(*bytes_lost)
        ),
        Event::ResultsWriteFailed {
            path,
            error,
            written_to,
        } => match written_to {
            Some(to) => format!(
                "⚠ cannot write the results file {} ({error}); written to {} instead",
                super::display_path(path),
                super::display_path(to)
            ),
            None => format!(
                "⚠ cannot write the results file {} ({error}), nor anywhere else",
                super::display_path(path)
            ),
        },
        Event::LedgerFailed { error } => {
            format!("⚠ could not write the ledger ({error}); the step logs keep the usage")
        }
        Event::LedgerWritesNotLanded { message, error, .. } => match error {
            Some(error) => format!("⚠ {message} (last error: {error})"),
            None => format!("⚠ {message}"),
        },
        Event::RateLimited { label, record, .. } => format!(
            "⚠ {label}: rate limit {}{}",
            record.status,
            record
                .resets_at
                .map(|t| format!(", resets at epoch {t}"))
                .unwrap_or_default()
        ),
        Event::StopRequested { cause, signals } => match (cause, signals) {
            (StopCause::Interrupted, 1) => {
                "■ interrupted: stopping every step (SIGINT, then SIGTERM, then SIGKILL); \
                     interrupt again to kill them at once"
                    .to_string()
            }
            (StopCause::Interrupted, _) => "■ interrupted again: killing every step".into(),
            (StopCause::FailFast, _) => {
                "■ a step failed and fail_fast is on: stopping the run".into()
            }
            (StopCause::RateLimited, _) => {
                "■ rate limited past max_pause: nothing more starts; the run ends when what runs has ended".into()
            }
        },
        Event::StepRetrying { .. } => retrying_line(event)?,
        Event::ConcurrencyChanged { reason, .. } => format!("⇅ {reason}"),
        Event::PauseTooLong { reason, .. } => format!("■ {reason}"),
        Event::StepFinished { .. } => finished_line(event)?,
        Event::StepSkipped {
            label,
            status,
            reason,
            ..
        } => format!("{} {label} {}", symbol(*status), reason),
        Event::RunScheduled { .. }
        | Event::WaitUpdated { .. }
        | Event::FireSkipped { .. }
        | Event::ScheduleStopped { .. } => schedule_line(event)?,
        _ => return None,
    })
}

/// The line of a `StepRetrying` event: what ended, why, and when the next attempt starts.
fn retrying_line(event: &Event) -> Option<String> {
    let Event::StepRetrying {
        label,
        ended,
        status,
        kind,
        reason,
        attempt,
        of,
        delay,
        at,
        resume,
        counted,
        ..
    } = event
    else {
        return None;
    };
    let how = if *resume {
        "continuing its session"
    } else {
        "afresh"
    };
    let which = if *counted {
        format!("attempt {attempt} of {of}")
    } else {
        format!("attempt {attempt} (after the rate limit's reset, not counted)")
    };
    Some(format!(
        "↻ {label} attempt {ended} {} ({}: {reason}); {which} {how} in {} at {}",
        status.as_str(),
        kind.as_str(),
        crate::duration::format(*delay),
        at.with_timezone(&Local).format("%H:%M:%S")
    ))
}

/// The line of a `StepFinished` event.
fn finished_line(event: &Event) -> Option<String> {
    let Event::StepFinished {
        label,
        status,
        duration,
        usage,
        reason,
        log,
        leaked,
        ..
    } = event
    else {
        return None;
    };
    let spend = usage
        .as_ref()
        .map(|u| {
            if u.price_unknown {
                format!(", {} tokens, price unknown", u.total_tokens())
            } else {
                format!(
                    ", {} tokens, ${:.4}{}",
                    u.total_tokens(),
                    u.cost_usd,
                    if u.is_estimate { " (estimate)" } else { "" }
                )
            }
        })
        .unwrap_or_default();
    let mut line = format!(
        "{} {label} {} in {:.2}s{spend}",
        symbol(*status),
        status.as_str(),
        duration.as_secs_f64()
    );
    if let Some(reason) = reason {
        line.push_str(&format!(": {reason}"));
    }
    if *status != Status::Completed && !log.as_os_str().is_empty() {
        line.push_str(&format!(" (log: {})", super::display_path(log)));
    }
    if !leaked.is_empty() {
        line.push_str(&format!("; killed leftover processes {leaked:?}"));
    }
    Some(line)
}

/// Whether `--quiet` shows an event: failures, stops, skips, and what needs a person's attention.
pub fn is_error(event: &Event) -> bool {
    match event {
        Event::StepFinished { status, .. } => *status != Status::Completed,
        Event::BudgetWarning { percent, .. } => *percent >= 100,
        Event::UsageAnomaly { .. } => true,
        Event::StopRequested { .. }
        | Event::StepSkipped { .. }
        | Event::LedgerFailed { .. }
        | Event::LogWriteFailed { .. }
        | Event::ResultsWriteFailed { .. }
        | Event::LedgerWritesNotLanded { .. }
        | Event::DeadRunsReconciled { .. }
        | Event::FireSkipped { .. }
        | Event::ScheduleStopped { .. } => true,
        _ => false,
    }
}

impl<W: Write + Send> Reporter for Plain<W> {
    fn report(&mut self, event: &Event, now: Instant) {
        self.board.apply(event, now);
        if matches!(event, Event::RunStarted { .. }) {
            self.next_table = Some(now + self.interval());
        }
        if self.opts.quiet && !is_error(event) {
            return;
        }
        let Some(line) = event_line(
            event,
            self.opts.max_line_length,
            self.opts.max_console_lines > 0,
        ) else {
            return;
        };
        let line = format!("{} {line}", Local::now().format("%H:%M:%S"));
        let line = match self.width {
            Some(w) => clip(&line, w),
            None => line,
        };
        let _ = writeln!(self.out, "{line}");
    }

    fn tick(&mut self, now: Instant) {
        self.countdown(now);
        let Some(due) = self.next_table else { return };
        if self.opts.quiet || now < due {
            return;
        }
        self.next_table = Some(now + self.interval());
        let table = status::report(
            &self.board,
            now,
            &Local::now().format("%H:%M:%S").to_string(),
            self.opts.max_console_lines,
            !self.opts.disable_budget_visuals,
            self.width.unwrap_or(status::WIDTH),
        );
        let _ = self.out.write_all(table.as_bytes());
        let _ = self.out.flush();
    }

    fn tick_every(&self) -> Option<Duration> {
        (!self.opts.quiet && self.opts.status_report_interval > Duration::ZERO)
            .then(|| self.interval().min(Duration::from_secs(1)))
    }

    fn finish(&mut self, results: &super::results::Results, path: &Path) {
        let text = summary::render(results, path, Paint(self.opts.color), self.width);
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }
}

/// How often the plain reporter repeats a pause's countdown.
const COUNTDOWN_EVERY: Duration = Duration::from_secs(30);

impl<W: Write> Plain<W> {
    /// While a rate limit pauses launches, a countdown line every [`COUNTDOWN_EVERY`].
    fn countdown(&mut self, now: Instant) {
        if self.opts.quiet || self.board.paused_until.is_none() {
            self.next_countdown = None;
            return;
        }
        let due = *self.next_countdown.get_or_insert(now + COUNTDOWN_EVERY);
        if now < due {
            return;
        }
        self.next_countdown = Some(now + COUNTDOWN_EVERY);
        if let Some(line) = self.board.pause_line(chrono::Utc::now()) {
            let _ = writeln!(self.out, "{} {line}", Local::now().format("%H:%M:%S"));
            let _ = self.out.flush();
        }
    }

    fn interval(&self) -> Duration {
        if self.opts.status_report_interval == Duration::ZERO {
            // Never: a day is far enough for any tick to miss.
            Duration::from_secs(86_400 * 365)
        } else {
            self.opts.status_report_interval
        }
    }
}

/// The line of a scheduling event (waiting, skipped fire times, a stop between runs).
fn schedule_line(event: &Event) -> Option<String> {
    let when = |at: &chrono::DateTime<chrono::FixedOffset>| at.format("%a %Y-%m-%d %H:%M:%S %:z");
    let left = |d: &std::time::Duration| {
        // Tenths of a second at most: "in 0.4s", "in 2h59m59s".
        crate::duration::format(std::time::Duration::from_millis(
            (d.as_millis() as u64).div_ceil(100) * 100,
        ))
    };
    Some(match event {
        Event::RunScheduled { at, left: l, cron } => format!(
            "⏰ next run at {} (in {}){}",
            when(at),
            left(l),
            cron.as_ref()
                .map(|c| format!(", cron {c:?}"))
                .unwrap_or_default()
        ),
        Event::WaitUpdated { at, left: l } => {
            format!("⏰ {} left until the run at {}", left(l), when(at))
        }
        Event::FireSkipped { at, reason } => format!("↷ fire time {} skipped: {reason}", when(at)),
        Event::ScheduleStopped { signal, runs: 0 } => {
            format!("■ {signal}: stopped while waiting; nothing ran")
        }
        Event::ScheduleStopped { signal, runs } => format!(
            "■ {signal}: schedule stopped between runs after {runs} run{}; nothing was running",
            if *runs == 1 { "" } else { "s" }
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod retry_lines {
    use super::*;
    use crate::manifest::RetryOn;

    #[test]
    fn a_retry_says_what_ended_why_and_when_the_next_attempt_starts() {
        let at = chrono::Utc::now();
        let event = Event::StepRetrying {
            step: 0,
            label: "build".into(),
            ended: 1,
            status: Status::Failed,
            kind: RetryOn::Overloaded,
            reason: "API Error: 529".into(),
            attempt: 2,
            of: 3,
            delay: Duration::from_secs(30),
            at,
            resume: true,
            counted: true,
        };
        let line = event_line(&event, 200, false).unwrap();
        let when = at.with_timezone(&Local).format("%H:%M:%S").to_string();
        assert_eq!(
            line,
            format!(
                "↻ build attempt 1 failed (overloaded: API Error: 529); attempt 2 of 3 continuing its session in 30s at {when}"
            )
        );
        let limit = Event::ConcurrencyChanged {
            limit: Some(2),
            reason: "the API is throttling (HTTP 529)".into(),
        };
        assert_eq!(
            event_line(&limit, 200, false).unwrap(),
            "⇅ the API is throttling (HTTP 529)"
        );
    }

    #[test]
    fn a_pause_counts_down_in_whole_seconds() {
        let mut board = Board::default();
        let now = chrono::Utc::now();
        assert_eq!(board.pause_line(now), None);
        let until = now + chrono::Duration::milliseconds(83_500);
        board.apply(
            &Event::LaunchesPaused {
                until,
                reason: "x".into(),
            },
            Instant::now(),
        );
        let line = board.pause_line(now).unwrap();
        assert!(
            line.starts_with("⏸ rate limited: agent steps start again in 1m24s"),
            "{line}"
        );
        board.apply(&Event::LaunchesResumed, Instant::now());
        assert_eq!(board.pause_line(now), None);
    }
}
