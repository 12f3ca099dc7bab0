//! The terminal reporter: a calm live view on indicatif's `MultiProgress`. On top, a bar over
//! all steps; under it the budget bars (run, commands, window), green under 70 %, yellow under
//! 90 %, red above; then one line per running step (spinner, label, elapsed, tokens, dollars,
//! latest output). Log lines go above the bars through `println`, never through them.
//!
//! Events only update the [`Board`]; the bars and the queued log lines are redrawn on `tick` (10
//! per second, from outside) and indicatif rate-limits the screen, so a hundred busy agents cost a
//! few hundred short string formats a second whatever their event rate. It never decides anything
//! about the run; the wall clock only labels log lines.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Local;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::live::{Board, BudgetView, Shape};
use super::plain::{event_line, is_error};
use super::status::{budget_bar, clip, duration, tokens, usd};
use super::summary::{self, Paint};
use super::{Options, Reporter};
use crate::events::Event;
use crate::plan::StepId;

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
/// How often the bars are refreshed.
pub const FRAME: Duration = Duration::from_millis(100);

/// A budget bar's colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Under 70 %.
    Green,
    /// Under 90 %.
    Yellow,
    /// 90 % and above.
    Red,
}

impl Level {
    /// The colour of a scope filled to `fill` (a fraction).
    pub fn of(fill: f64) -> Level {
        if fill < 0.7 {
            Level::Green
        } else if fill < 0.9 {
            Level::Yellow
        } else {
            Level::Red
        }
    }
}

pub struct Terminal {
    multi: MultiProgress,
    progress: ProgressBar,
    /// One bar per shown budget scope, by scope name, in the order they appeared.
    budgets: Vec<(String, ProgressBar)>,
    /// The running steps that have a line; the others are counted on the `more` line.
    lines: HashMap<StepId, ProgressBar>,
    more: Option<ProgressBar>,
    board: Board,
    opts: Options,
    rows: usize,
    label_width: usize,
    frame: usize,
    /// Log lines waiting for the next frame.
    pending: Vec<String>,
    /// Where the summary goes: the same stream as the bars.
    out: Box<dyn Write + Send>,
}

impl Terminal {
    /// A view drawing on `target`, a terminal of `rows` lines; the summary goes to `out`.
    pub fn new(
        target: ProgressDrawTarget,
        rows: usize,
        out: Box<dyn Write + Send>,
        shape: &Shape,
        opts: Options,
    ) -> Terminal {
        let multi = MultiProgress::with_draw_target(target);
        let progress = multi.add(ProgressBar::new(shape.steps.len() as u64));
        progress.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {wide_msg}")
                .expect("a valid template")
                .progress_chars("█▌░"),
        );
        let label_width = shape
            .steps
            .iter()
            .map(|(_, l, _)| l.chars().count())
            .max()
            .unwrap_or(8)
            .clamp(8, 32);
        Terminal {
            multi,
            progress,
            budgets: Vec::new(),
            lines: HashMap::new(),
            more: None,
            board: Board::new(shape, opts.max_console_lines.max(1)),
            opts,
            rows: rows.max(8),
            label_width,
            frame: 0,
            pending: Vec::new(),
            out,
        }
    }

    fn line_bar(&self) -> ProgressBar {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{wide_msg}").expect("a valid template"));
        match &self.more {
            Some(more) => self.multi.insert_before(more, bar),
            None => self.multi.add(bar),
        }
    }

    /// Gives lines to running steps that lack one, oldest first, while the screen has room.
    fn fill_lines(&mut self) {
        let room = self.rows.saturating_sub(3 + self.budgets.len()).max(3);
        for id in self.board.running() {
            if self.lines.len() >= room {
                break;
            }
            if !self.lines.contains_key(&id) {
                let bar = self.line_bar();
                self.lines.insert(id, bar);
            }
        }
        let hidden = self.board.running().len().saturating_sub(self.lines.len());
        match (&self.more, hidden) {
            (Some(more), 0) => {
                more.finish_and_clear();
                self.multi.remove(more);
                self.more = None;
            }
            (None, n) if n > 0 => {
                let more = self.multi.add(ProgressBar::new_spinner());
                more.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
                self.more = Some(more);
            }
            _ => {}
        }
    }

    fn drop_line(&mut self, step: StepId) {
        if let Some(bar) = self.lines.remove(&step) {
            // Removed first, the bar's drop finishes it on a hidden target: no forced redraw.
            self.multi.remove(&bar);
        }
    }

    fn budget_line(&self, b: &BudgetView) -> String {
        let style = match Level::of(b.fill()) {
            Level::Green => console::Style::new().green(),
            Level::Yellow => console::Style::new().yellow(),
            Level::Red => console::Style::new().red(),
        };
        let text = format!("budget {:<14} {}", clip(&b.scope, 14), budget_bar(b, 20));
        style
            .force_styling(self.opts.color)
            .apply_to(text)
            .to_string()
    }

    fn step_line(&self, id: StepId, now: Instant) -> String {
        let s = &self.board.steps[id];
        let spin = SPINNER[(self.frame + id) % SPINNER.len()];
        let mut line = format!(
            "{spin} {:<w$} {:>7} {:>7} tok {:>10}",
            clip(&s.label, self.label_width),
            duration(s.elapsed(now)),
            tokens(s.tokens.total()),
            usd(s.cost_usd, s.is_estimate),
            w = self.label_width
        );
        if let Some(last) = &s.last_line {
            line.push_str("  │ ");
            line.push_str(&clip(last, self.opts.max_line_length.max(20)));
        }
        line
    }

    /// Redraws every bar from the board.
    fn refresh(&mut self, now: Instant) {
        self.fill_lines();
        let jobs = self.board.job_views(now);
        let (running, completed, failed, _, not_run) = Board::job_counts(&jobs);
        let (t, c, e) = jobs.iter().fold((0, 0.0, false), |(t, c, e), j| {
            (t + j.tokens.total(), c + j.cost_usd, e | j.is_estimate)
        });
        let elapsed = self
            .board
            .started
            .map(|s| now.saturating_duration_since(s))
            .unwrap_or_default();
        self.progress.set_position(self.board.done as u64);
        let mut msg = format!(
            "{} · {running} running · {completed} done",
            duration(elapsed)
        );
        if failed > 0 {
            msg.push_str(&format!(" · {failed} failed"));
        }
        if not_run > 0 {
            msg.push_str(&format!(" · {not_run} not run"));
        }
        msg.push_str(&format!(" · {} tokens · {}", tokens(t), usd(c, e)));
        self.progress.set_message(msg);
        for (scope, bar) in &self.budgets {
            if let Some(b) = self.board.budgets.iter().find(|b| &b.scope == scope) {
                bar.set_message(self.budget_line(b));
            }
        }
        for (&id, bar) in &self.lines {
            bar.set_message(self.step_line(id, now));
        }
        if let Some(more) = &self.more {
            let hidden = self.board.running().len().saturating_sub(self.lines.len());
            more.set_message(format!("  … and {hidden} more running"));
        }
    }

    /// Queues a log line for above the bars; `flush_log` prints the queue in one redraw.
    fn log(&mut self, line: &str) {
        self.pending
            .push(format!("{} {line}", Local::now().format("%H:%M:%S")));
    }

    /// Prints the queued log lines above the bars: one forced redraw for all of them, however
    /// many steps ended since the last frame.
    fn flush_log(&mut self) {
        if !self.pending.is_empty() {
            let _ = self.multi.println(self.pending.join("\n"));
            self.pending.clear();
        }
    }
}

impl Reporter for Terminal {
    fn report(&mut self, event: &Event, now: Instant) {
        self.board.apply(event, now);
        match event {
            Event::StepFinished { step, .. } | Event::StepSkipped { step, .. } => {
                self.drop_line(*step);
            }
            Event::BudgetUpdated { scope, .. } if !self.opts.disable_budget_visuals => {
                let shown = self
                    .board
                    .budgets
                    .iter()
                    .any(|b| &b.scope == scope && b.is_shown());
                if shown && !self.budgets.iter().any(|(s, _)| s == scope) {
                    let bar = ProgressBar::new_spinner();
                    bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
                    let bar = self.multi.insert(1 + self.budgets.len(), bar);
                    self.budgets.push((scope.clone(), bar));
                }
            }
            _ => {}
        }
        // Starts, output and usage live in the bars; everything else is a log line.
        let line = match event {
            Event::StepStarted { .. } | Event::StepOutput { .. } => None,
            _ if self.opts.quiet && !is_error(event) => None,
            _ => event_line(event, self.opts.max_line_length, false),
        };
        if let Some(line) = line {
            self.log(&line);
        }
    }

    fn tick(&mut self, now: Instant) {
        self.frame = self.frame.wrapping_add(1);
        self.flush_log();
        self.refresh(now);
    }

    fn tick_every(&self) -> Option<Duration> {
        Some(FRAME)
    }

    fn finish(&mut self, results: &super::results::Results, path: &Path) {
        self.flush_log();
        let _ = self.multi.clear();
        let text = summary::render(results, path, Paint(self.opts.color));
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }
}
