//! The terminal reporter: a calm live view on indicatif's `MultiProgress`, fitted to the
//! terminal's width and height. On top, the progress line (a bar over all steps and the run's
//! counts); under it the budget bars (run, commands, window: from the start, green under 70 %,
//! yellow under 90 %, red above); then one line per running step (spinner, label, elapsed,
//! tokens, dollars, its job's budget, and its latest output: `--max-console-lines` of them);
//! then how many more run unseen and the waiting jobs, counted and the next ones named.
//! Log lines go above the view through `println`, never through it.
//!
//! Events only update the [`Board`]; the view is redrawn on `tick` (10 per second, from
//! outside) as one multi-line bar, each frame a synchronized update with the cursor hidden
//! ([`Screen`](super::screen::Screen)). Every line is cut to the width by display width, so
//! nothing wraps and no fragment is left behind. It never decides anything about the run; the
//! wall clock only labels log lines.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Local;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::live::{Board, BudgetView, Shape};
use super::plain::{event_line, is_error};
use super::screen::Screen;
use super::status::{budget_bar, duration, tokens, usd, usd_or_unknown};
use super::summary::{self, Paint};
use super::width::{clip, fit_parts, left, width, wrap_all};
use super::{Options, Reporter};
use crate::events::{Event, StopCause};
use crate::plan::StepId;

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
/// How often the view is refreshed.
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
    /// The whole view, one line of the message per screen line.
    view: ProgressBar,
    board: Board,
    opts: Options,
    rows: usize,
    cols: usize,
    frame: usize,
    /// Log lines waiting for the next frame.
    pending: Vec<String>,
    /// The screen under the view, to show the cursor again at the end.
    screen: Option<Screen>,
    /// Where the summary goes: the same stream as the view.
    out: Box<dyn Write + Send>,
}

impl Terminal {
    /// A view drawing on `target`, a terminal of `rows` lines and `cols` columns; the summary
    /// goes to `out`. `screen` is the [`Screen`] inside `target`, if any, whose cursor is shown
    /// again when the view ends.
    pub fn new(
        target: ProgressDrawTarget,
        (rows, cols): (usize, usize),
        screen: Option<Screen>,
        out: Box<dyn Write + Send>,
        shape: &Shape,
        opts: Options,
    ) -> Terminal {
        let multi = MultiProgress::with_draw_target(target);
        let view = multi.add(ProgressBar::new_spinner());
        view.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
        Terminal {
            multi,
            view,
            board: Board::new(shape, opts.max_console_lines.max(1)),
            opts,
            rows: rows.max(8),
            cols: cols.max(40),
            frame: 0,
            pending: Vec::new(),
            screen,
            out,
        }
    }

    /// The progress line: a bar over all steps, then the run's counts, leaving out whole counts
    /// (never cutting one) from the first that does not fit.
    fn progress_line(&self, now: Instant) -> String {
        let jobs = self.board.job_views(now);
        let (running, completed, failed, waiting, not_run) = Board::job_counts(&jobs);
        let (t, c, e) = jobs.iter().fold((0, 0.0, false), |(t, c, e), j| {
            (t + j.tokens.total(), c + j.cost_usd, e | j.is_estimate)
        });
        let elapsed = self
            .board
            .started
            .map(|s| now.saturating_duration_since(s))
            .unwrap_or_default();
        let total = self.board.steps.len();
        let bar_w = (self.cols / 8).clamp(10, 30);
        let cells = (self.board.done * bar_w * 2)
            .checked_div(total)
            .unwrap_or(0)
            .min(bar_w * 2);
        // Half cells: `▌` for an odd count.
        let mut bar = "█".repeat(cells / 2);
        if cells % 2 == 1 {
            bar.push('▌');
        }
        bar.push_str(&"░".repeat(bar_w - cells / 2 - cells % 2));
        let head = format!("{bar} {}/{total} steps", self.board.done);
        // In the order they are given up when the line is too long: the last first.
        let mut parts = vec![duration(elapsed), format!("{running} running")];
        if waiting > 0 {
            parts.push(format!("{waiting} waiting"));
        }
        if failed > 0 {
            parts.push(format!("{failed} failed"));
        }
        if not_run > 0 {
            parts.push(format!("{not_run} not run"));
        }
        parts.push(format!("{} tokens", tokens(t)));
        parts.push(usd(c, e));
        parts.push(format!("{completed} done"));
        let room = self.cols.saturating_sub(width(&head) + 2);
        format!("{head}  {}", fit_parts(&parts, " · ", room))
    }

    fn budget_line(&self, b: &BudgetView) -> String {
        let style = match Level::of(b.fill()) {
            Level::Green => console::Style::new().green(),
            Level::Yellow => console::Style::new().yellow(),
            Level::Red => console::Style::new().red(),
        };
        let bar = if self.cols >= 100 { 20 } else { 10 };
        let text = format!("budget {} {}", left(&b.scope, 14), budget_bar(b, bar));
        // Cut before colouring, so escape codes never count as columns.
        style
            .force_styling(self.opts.color)
            .apply_to(clip(&text, self.cols))
            .to_string()
    }

    /// The label column: as wide as the longest running label, at most a quarter of the
    /// width, so that the output column keeps the rest.
    fn label_width(&self, running: &[StepId]) -> usize {
        running
            .iter()
            .map(|&id| width(&self.board.steps[id].label))
            .max()
            .unwrap_or(8)
            .clamp(8, (self.cols / 4).max(8))
    }

    /// A running step's line, then `extra` of its latest output lines under it; with `extra`
    /// of 0 and `inline`, its latest line goes at the end of its own line.
    fn step_lines(
        &self,
        id: StepId,
        now: Instant,
        label_w: usize,
        extra: usize,
        inline: bool,
    ) -> Vec<String> {
        let s = &self.board.steps[id];
        let spin = SPINNER[(self.frame + id) % SPINNER.len()];
        let mut line = format!(
            "{spin} {} {:>6} {:>6} tok {:>9}",
            left(&s.label, label_w),
            duration(s.elapsed(now)),
            tokens(s.tokens.total()),
            usd_or_unknown(s.cost_usd, s.is_estimate, s.price_unknown),
        );
        if let Some(node) = &s.node {
            line.push_str(&format!(" @{node}"));
        }
        if let Some(b) = self.board.job_budget(s.job) {
            let fill = b.fill();
            let cells = ((fill.min(1.0) * 6.0).round() as usize).min(6);
            line.push_str(&format!(
                " [{}{}]{:>4.0}%",
                "█".repeat(cells),
                "░".repeat(6 - cells),
                fill * 100.0
            ));
        }
        let cut = |l: &str, room: usize| clip(l, room.min(self.opts.max_line_length.max(20)));
        if inline {
            if let Some(last) = &s.last_line {
                let room = self.cols.saturating_sub(width(&line) + 4);
                if room >= 8 {
                    line.push_str("  │ ");
                    line.push_str(&cut(last, room));
                }
            }
        }
        let mut lines = vec![clip(&line, self.cols)];
        for l in s.tail.iter().rev().take(extra).rev() {
            lines.push(format!("    │ {}", cut(l, self.cols.saturating_sub(6))));
        }
        lines
    }

    /// Every line of the view at `now`, each cut to the width, at most `rows - 1` of them.
    fn frame(&self, now: Instant) -> Vec<String> {
        let mut lines = vec![clip(&self.progress_line(now), self.cols)];
        if !self.opts.disable_budget_visuals {
            for b in self.board.budgets.iter().filter(|b| b.is_shown()) {
                lines.push(self.budget_line(b));
            }
        }
        lines.extend(self.board.pause_line(chrono::Utc::now()));
        lines.extend(self.board.limit_line());
        let running = self.board.running();
        let waiting = self.board.waiting();
        // One row stays free for the cursor; one each for the "more" and "waiting" lines.
        let room = self
            .rows
            .saturating_sub(1 + lines.len() + usize::from(!waiting.is_empty()))
            .max(2);
        let shown = if running.len() <= room {
            running.len()
        } else {
            room - 1
        };
        let n = self.opts.max_console_lines;
        // Output lines per shown step: as many as asked while the screen has room for them;
        // one (inline) or none when it has not.
        let extra = if n >= 2 && shown > 0 {
            ((room - shown) / shown).min(n)
        } else {
            0
        };
        let inline = n >= 1 && extra < 2;
        let extra = if extra < 2 { 0 } else { extra };
        let label_w = self.label_width(&running[..shown]);
        for &id in &running[..shown] {
            lines.extend(self.step_lines(id, now, label_w, extra, inline));
        }
        if shown < running.len() {
            lines.push(format!("  … and {} more running", running.len() - shown));
        }
        if !waiting.is_empty() {
            let head = format!("  ⧗ {} waiting", waiting.len());
            let names: Vec<String> = waiting.iter().map(|s| s.to_string()).collect();
            let room = self.cols.saturating_sub(width(&head) + 8);
            let mut next = fit_parts(&names, ", ", room.saturating_sub(3));
            if !next.is_empty() && next.matches(", ").count() + 1 < names.len() {
                next.push_str(", …");
            }
            lines.push(if next.is_empty() {
                head
            } else {
                clip(&format!("{head}, next: {next}"), self.cols)
            });
        }
        lines.truncate(self.rows.saturating_sub(1).max(1));
        lines
    }

    /// Redraws the view from the board.
    fn refresh(&mut self, now: Instant) {
        self.view.set_message(self.frame(now).join("\n"));
    }

    /// Queues a log line for above the view; `flush_log` prints the queue in one redraw. A line
    /// wider than the terminal is wrapped (under its text, past the time), not cut: it scrolls
    /// away with what it says whole.
    fn log(&mut self, line: &str) {
        let line = format!("{} {line}", Local::now().format("%H:%M:%S"));
        self.pending.extend(wrap_all(&line, self.cols, 9));
    }

    /// Prints the queued log lines above the view: one forced redraw for all of them, however
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
        // Starts, output and usage live in the view; everything else is a log line.
        let line = match event {
            Event::StepStarted { .. } | Event::StepOutput { .. } => None,
            _ if self.opts.quiet && !is_error(event) => None,
            _ => event_line(event, self.opts.max_line_length, false),
        };
        if let Some(line) = line {
            self.log(&line);
        }
        if let Event::StopRequested {
            cause: StopCause::Interrupted,
            ..
        } = event
        {
            // Ctrl-C: the terminal echoed `^C` where the cursor was, which indicatif does not
            // know of. Print now and redraw the view whole under it, so nothing stale stays.
            self.flush_log();
            self.refresh(now);
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
        self.view.finish_and_clear();
        let _ = self.multi.clear();
        if let Some(screen) = &self.screen {
            screen.restore();
        }
        let text = summary::render(results, path, Paint(self.opts.color), Some(self.cols));
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(screen) = &self.screen {
            screen.restore();
        }
    }
}
