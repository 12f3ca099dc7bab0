//! Which reporters a run gets: the live view on a terminal, plain lines elsewhere or with
//! `--no-progress`, only errors and the summary with `--quiet`, the NDJSON stream with
//! `--events`, and always each run's events into its run folder. Owns the colour decision (`NO_COLOR`, non-terminals get none).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::live::Shape;
use super::ndjson::{Ndjson, RunFolder};
use super::plain::Plain;
use super::screen::Screen;
use super::terminal::Terminal;
use super::{Reporter, results::Results};
use crate::events::Event;

/// What the human reporters show, from the command line.
#[derive(Clone, Debug)]
pub struct Options {
    /// Errors and the final summary only.
    pub quiet: bool,
    /// Output lines kept per job for the status table; 0 hides output lines.
    pub max_console_lines: usize,
    /// Longest output line shown, in characters.
    pub max_line_length: usize,
    /// Time between zen's status tables in plain output; zero for none.
    pub status_report_interval: Duration,
    pub disable_budget_visuals: bool,
    /// ANSI colours allowed.
    pub color: bool,
}

/// How the reporters were asked for.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// `--no-progress`: plain lines even on a terminal.
    pub no_progress: bool,
    /// `--events FILE`, `-` for stdout.
    pub events: Option<PathBuf>,
}

/// Every reporter of a run, fed the same events.
pub struct Fanout {
    reporters: Vec<Box<dyn Reporter>>,
}

impl Fanout {
    pub fn new(reporters: Vec<Box<dyn Reporter>>) -> Fanout {
        Fanout { reporters }
    }
}

impl Reporter for Fanout {
    fn report(&mut self, event: &Event, now: Instant) {
        for r in &mut self.reporters {
            r.report(event, now);
        }
    }

    fn tick(&mut self, now: Instant) {
        for r in &mut self.reporters {
            r.tick(now);
        }
    }

    fn tick_every(&self) -> Option<Duration> {
        self.reporters.iter().filter_map(|r| r.tick_every()).min()
    }

    fn finish(&mut self, results: &Results, path: &Path) {
        for r in &mut self.reporters {
            r.finish(results, path);
        }
    }

    fn flush(&mut self) {
        for r in &mut self.reporters {
            r.flush();
        }
    }
}

/// Whether colours are allowed on a stream: a terminal, and `NO_COLOR` unset or empty.
pub fn color_allowed(is_terminal: bool) -> bool {
    is_terminal
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// The reporters for a run. With `--events -`, stdout is the machines' and the human reporter
/// moves to stderr.
pub fn select(shape: &Shape, mut opts: Options, sel: &Selection) -> std::io::Result<Fanout> {
    let events_on_stdout = sel.events.as_deref() == Some(Path::new("-"));
    let (tty, out): (bool, Box<dyn Write + Send>) = if events_on_stdout {
        (std::io::stderr().is_terminal(), Box::new(std::io::stderr()))
    } else {
        (std::io::stdout().is_terminal(), Box::new(std::io::stdout()))
    };
    opts.color = color_allowed(tty);
    console::set_colors_enabled(opts.color);
    console::set_colors_enabled_stderr(opts.color);
    let live = tty && !opts.quiet && !sel.no_progress;
    tracing::debug!(
        live,
        quiet = opts.quiet,
        color = opts.color,
        events = ?sel.events,
        "reporters selected"
    );
    let term = if events_on_stdout {
        console::Term::buffered_stderr()
    } else {
        console::Term::buffered_stdout()
    };
    let (rows, cols) = term.size();
    let human: Box<dyn Reporter> = if live {
        // Buffered: each frame leaves in one write, inside one synchronized update.
        let screen = Screen::new(Box::new(term));
        let target = indicatif::ProgressDrawTarget::term_like_with_hz(Box::new(screen.clone()), 10);
        Box::new(Terminal::new(
            target,
            (usize::from(rows), usize::from(cols)),
            Some(screen),
            out,
            shape,
            opts,
        ))
    } else {
        let width = tty.then_some(usize::from(cols));
        Box::new(Plain::new(out, shape, opts).with_width(width))
    };
    let mut reporters: Vec<Box<dyn Reporter>> = vec![human, Box::new(RunFolder::default())];
    match sel.events.as_deref() {
        None => {}
        Some(p) if p == Path::new("-") => {
            reporters.push(Box::new(Ndjson::new(std::io::BufWriter::new(
                std::io::stdout(),
            ))));
        }
        Some(p) => {
            let file = std::fs::File::create(p)?;
            reporters.push(Box::new(Ndjson::new(std::io::BufWriter::new(file))));
        }
    }
    Ok(Fanout::new(reporters))
}
