//! The plain reporter: one timestamped line per event, for logs, CI and pipes, and a summary
//! table at the end. `--quiet` keeps only failures and the summary.

use std::io::Write;

use chrono::Local;

use crate::events::{Event, StopCause};
use crate::plan::Status;

pub struct Plain<W: Write> {
    out: W,
    quiet: bool,
    max_line_length: usize,
}

impl<W: Write> Plain<W> {
    pub fn new(out: W, quiet: bool, max_line_length: usize) -> Self {
        Plain {
            out,
            quiet,
            max_line_length: max_line_length.max(20),
        }
    }

    pub fn report(&mut self, event: &Event) {
        let line = match event {
            Event::RunStarted {
                run_id,
                name,
                run_dir,
                jobs,
                steps,
                ..
            } => Some(format!(
                "run {name} {run_id}: {jobs} jobs, {steps} steps; logs in {}",
                crate::commands::display_path(run_dir)
            )),
            Event::StepStarted { label, pid, .. } => Some(format!("▶ {label} started (pid {pid})")),
            Event::StepOutput { label, line, .. } => {
                Some(format!("│ {label}: {}", clip(line, self.max_line_length)))
            }
            Event::UsageRecorded { .. } | Event::BudgetUpdated { .. } => None,
            Event::BudgetWarning { message, .. } => Some(format!("⚠ budget: {message}")),
            Event::LaunchesPaused { until, reason } => Some(format!(
                "⏸ {reason}: no agent step starts before {}",
                until.with_timezone(&Local).format("%H:%M:%S")
            )),
            Event::LaunchesResumed => {
                Some("▶ the rate limit has reset: agent steps start again".into())
            }
            Event::DeadRunsReconciled { runs } => Some(format!(
                "⚠ runs left unfinished by a killed orch were reconciled from their logs and marked dead: {}",
                runs.join(", ")
            )),
            Event::LedgerFailed { error } => Some(format!(
                "⚠ could not write the ledger ({error}); the step logs keep the usage"
            )),
            Event::RateLimited { label, record, .. } => Some(format!(
                "⚠ {label}: rate limit {}{}",
                record.status,
                record
                    .resets_at
                    .map(|t| format!(", resets at epoch {t}"))
                    .unwrap_or_default()
            )),
            Event::StopRequested { cause, signals } => Some(match (cause, signals) {
                (StopCause::Interrupted, 1) => {
                    "■ interrupted: stopping every step (SIGINT, then SIGTERM, then SIGKILL); \
                     interrupt again to kill them at once"
                        .to_string()
                }
                (StopCause::Interrupted, _) => {
                    "■ interrupted again: killing every step".to_string()
                }
                (StopCause::FailFast, _) => {
                    "■ a step failed and fail_fast is on: stopping the run".to_string()
                }
            }),
            Event::StepFinished {
                label,
                status,
                duration,
                usage,
                reason,
                log,
                leaked,
                ..
            } => {
                let spend = usage
                    .as_ref()
                    .map(|u| {
                        format!(
                            ", {} tokens, ${:.4}{}",
                            u.total_tokens(),
                            u.cost_usd,
                            if u.is_estimate { " (estimate)" } else { "" }
                        )
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
                    line.push_str(&format!(" (log: {})", crate::commands::display_path(log)));
                }
                if !leaked.is_empty() {
                    line.push_str(&format!("; killed leftover processes {leaked:?}"));
                }
                Some(line)
            }
            Event::StepSkipped {
                label,
                status,
                reason,
                ..
            } => Some(format!("{} {label} {}", symbol(*status), reason)),
            Event::RunFinished { .. } => None,
            Event::RunScheduled { .. }
            | Event::WaitUpdated { .. }
            | Event::FireSkipped { .. }
            | Event::ScheduleStopped { .. } => schedule_line(event),
        };
        let Some(line) = line else { return };
        let important = matches!(
            event,
            Event::StepFinished { status, .. } if *status != Status::Completed
        ) || matches!(
            event,
            Event::StopRequested { .. }
                | Event::StepSkipped { .. }
                | Event::FireSkipped { .. }
                | Event::ScheduleStopped { .. }
        );
        if self.quiet && !important {
            return;
        }
        let _ = writeln!(self.out, "{} {line}", Local::now().format("%H:%M:%S"));
    }

    /// The closing table: one row per job.
    pub fn summary(&mut self, results: &super::results::Results, path: &std::path::Path) {
        let width = results
            .instances
            .0
            .iter()
            .map(|(n, _)| n.chars().count())
            .max()
            .unwrap_or(3)
            .clamp(3, 40);
        let mut o = String::new();
        o.push_str(&format!(
            "\n  {:<16} {:<width$} {:>10} {:>10} {:>10}\n",
            "status", "job", "duration", "tokens", "cost"
        ));
        for (name, i) in &results.instances.0 {
            let cost = match i.total_cost_usd {
                Some(c) => format!("${c:.4}{}", if i.cost_is_estimate { "~" } else { "" }),
                None => "-".into(),
            };
            o.push_str(&format!(
                "  {:<16} {:<width$} {:>10} {:>10} {:>10}\n",
                format!("{} {}", symbol(i.status), i.status.as_str()),
                clip(name, width),
                i.duration,
                i.total_tokens,
                cost
            ));
        }
        for b in &results.budgets {
            let mut parts = Vec::new();
            if let Some(l) = b.tokens_limit {
                parts.push(format!("{}/{l} tokens", b.tokens_used));
            }
            if let Some(l) = b.usd_limit {
                parts.push(format!("${:.4}/${l:.2}", b.usd_used));
            }
            let over = if b.overshoot_tokens > 0 || b.overshoot_usd > 0.0 {
                format!(
                    "  over by {} tokens, ${:.4}",
                    b.overshoot_tokens, b.overshoot_usd
                )
            } else {
                String::new()
            };
            o.push_str(&format!(
                "  budget {:<20} {}{over}\n",
                b.scope,
                parts.join(", ")
            ));
        }
        let t = &results.metadata.token_usage;
        o.push_str(&format!(
            "\n{} completed, {} failed, {} not run of {} jobs; {} tokens ({:.1}% cache hits), ${:.4}{}\nresults: {}\n",
            results.completed,
            results.failed,
            results.skipped,
            results.total_instances,
            t.total_tokens,
            t.cache_hit_rate,
            t.total_cost_usd,
            if t.cost_is_estimate { " (includes estimates)" } else { "" },
            crate::commands::display_path(path)
        ));
        let _ = self.out.write_all(o.as_bytes());
        let _ = self.out.flush();
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

fn symbol(status: Status) -> &'static str {
    match status {
        Status::Completed => "✔",
        Status::Failed | Status::TimedOut | Status::BudgetExceeded => "✘",
        Status::Skipped | Status::Blocked | Status::Cancelled => "↷",
        Status::Pending | Status::Running => "…",
    }
}

/// Cuts a line to `max` characters, marking the cut.
fn clip(line: &str, max: usize) -> String {
    if line.chars().count() <= max {
        line.to_string()
    } else {
        let mut s: String = line.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}
