//! `orch logs RUN [JOB]`: a step's log rendered for people (or its bytes with `--raw`, its
//! stderr with `--stderr`), and with `-f` followed while the step runs: the log is polled every
//! [`POLL`] and the run's events file tells when the step has ended. A log is read in chunks,
//! never whole. It never writes anything but stdout.

use std::collections::HashSet;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::LogsArgs;
use crate::errors::{Error, ExitCode};
use crate::history::{History, HistoryError, RunSummary, StepView, events, job_of};

/// How often a followed log and the run's events are read again.
pub const POLL: Duration = Duration::from_millis(100);

/// How much of a log is read at once.
const CHUNK: usize = 64 * 1024;

pub fn logs(args: &LogsArgs) -> Result<ExitCode, Error> {
    let history = super::history::open(&args.place)?;
    let run = history.resolve(&args.run)?;
    let summary = history.summary(&run)?;
    let step = pick(&summary, args.job.as_deref())?;
    let log = if args.stderr {
        step.stderr_log
            .clone()
            .or_else(|| step.log.as_deref().map(stderr_of))
    } else {
        step.log.clone()
    };
    let Some(log) = log else {
        return Err(Error::io(
            format!("step {} has no log", step.label),
            std::io::Error::new(std::io::ErrorKind::NotFound, "it never started"),
        ));
    };
    let stream = |log: &Path| {
        if args.stderr {
            stderr_of(log)
        } else {
            log.to_path_buf()
        }
    };
    let mut reader = LogReader::new(history.confine(&log)?, args.raw);
    let follow = args.follow && summary.live;
    let mut watch = follow.then(|| EndWatch::new(&summary, step.step, step.log.clone()));
    loop {
        let ended = match &mut watch {
            Some(w) => w.ended(&history)?,
            None => true,
        };
        // A retry's next attempt writes a log of its own: the last one is shown whole, then
        // the next is followed.
        if let Some((attempt, next)) = watch.as_mut().and_then(EndWatch::next_attempt) {
            reader.read_new(true)?;
            let path = history.confine(&stream(&next))?;
            if !args.raw {
                crate::report::emit(&format!("── attempt {attempt}: {}\n", path.display()));
            }
            reader = LogReader::new(path, args.raw);
            continue;
        }
        // Read after looking at the events: what the step wrote before it ended is all there.
        reader.read_new(ended)?;
        if ended {
            return Ok(ExitCode::Ok);
        }
        std::thread::sleep(POLL);
    }
}

/// The step `wanted` names (its label, else its job's name), or the run's only or last started.
fn pick<'a>(summary: &'a RunSummary, wanted: Option<&str>) -> Result<&'a StepView, Error> {
    let steps = &summary.steps;
    let found = match wanted {
        Some(w) => steps.iter().find(|s| s.label == w).or_else(|| {
            steps
                .iter()
                .rev()
                .filter(|s| s.log.is_some())
                .find(|s| job_of(&s.label) == w)
        }),
        None => steps
            .iter()
            .filter(|s| s.log.is_some())
            .max_by_key(|s| s.started_at),
    };
    found.ok_or_else(|| {
        let labels: Vec<&str> = steps.iter().map(|s| s.label.as_str()).collect();
        Error::BadFlag {
            flag: "JOB",
            value: wanted.unwrap_or_default().to_string(),
            reason: format!("run {} has no such step with a log", summary.run.id),
            help: format!("its steps: {}", labels.join(", ")),
        }
    })
}

/// `logs/001-a.log` → `logs/001-a.stderr.log`.
fn stderr_of(log: &Path) -> PathBuf {
    let stem = log.file_stem().unwrap_or_default().to_string_lossy();
    log.with_file_name(format!("{stem}.stderr.log"))
}

/// Reads a log from where it stopped and shows its whole new lines.
struct LogReader {
    path: PathBuf,
    raw: bool,
    offset: u64,
    partial: Vec<u8>,
    seen: HashSet<String>,
}

impl LogReader {
    fn new(path: PathBuf, raw: bool) -> LogReader {
        LogReader {
            path,
            raw,
            offset: 0,
            partial: Vec::new(),
            seen: HashSet::new(),
        }
    }

    /// Shows what was added since the last read; with `last`, a final line without its newline too.
    fn read_new(&mut self, last: bool) -> Result<(), Error> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            // A log is created at the step's first byte on that stream: none yet reads as empty.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("reading {}", self.path.display()), e)),
        };
        let shown = self.path.display().to_string();
        let io = |e| Error::io(format!("reading {shown}"), e);
        file.seek(std::io::SeekFrom::Start(self.offset))
            .map_err(io)?;
        let mut buf = vec![0; CHUNK];
        loop {
            let n = file.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            self.offset += n as u64;
            self.partial.extend_from_slice(&buf[..n]);
            let cut = self.partial.iter().rposition(|b| *b == b'\n');
            if let Some(cut) = cut {
                let rest = self.partial.split_off(cut + 1);
                let whole = std::mem::replace(&mut self.partial, rest);
                self.show(&whole);
            }
        }
        if last && !self.partial.is_empty() {
            let tail = std::mem::take(&mut self.partial);
            self.show(&tail);
            if !self.raw {
                crate::report::emit("\n");
            }
        }
        Ok(())
    }

    fn show(&mut self, bytes: &[u8]) {
        if self.raw {
            crate::report::emit_bytes(bytes);
            return;
        }
        let text = String::from_utf8_lossy(bytes);
        let mut out = String::new();
        for line in text.lines() {
            if let Some(shown) = crate::report::history::render_log_line(line, &mut self.seen) {
                out.push_str(&shown);
                out.push('\n');
            }
        }
        crate::report::emit(&out);
    }
}

/// Tells from a run's events file when one step (or the whole run) has ended, and which log
/// each of the step's attempts writes.
struct EndWatch {
    run: crate::history::RunEntry,
    step: Option<usize>,
    offset: u64,
    ended: bool,
    /// The log of each attempt that started, in order (`step_started`'s `log`).
    attempts: Vec<PathBuf>,
    /// The log being shown, until the events are first read; then its place in `attempts`.
    showing: Result<usize, Option<PathBuf>>,
}

impl EndWatch {
    fn new(summary: &RunSummary, step: Option<usize>, log: Option<PathBuf>) -> EndWatch {
        EndWatch {
            run: summary.run.clone(),
            step,
            offset: 0,
            ended: false,
            attempts: Vec::new(),
            showing: Err(log),
        }
    }

    fn ended(&mut self, history: &History) -> Result<bool, HistoryError> {
        if self.ended {
            return Ok(true);
        }
        let page = history.events(&self.run, self.offset, 1 << 20)?;
        self.offset = page.next_offset;
        let mine = |e: &&serde_json::Value| e["step"].as_u64().map(|s| s as usize) == self.step;
        let mut step_ended = false;
        for e in page.events.iter().filter(mine) {
            match e["event"].as_str() {
                Some("step_finished" | "step_skipped") => step_ended = true,
                Some("step_started") => self.attempts.extend(e["log"].as_str().map(PathBuf::from)),
                _ => {}
            }
        }
        if let Err(log) = &self.showing {
            // The summary's log is the latest attempt's when it was read.
            let at = log
                .as_ref()
                .and_then(|l| self.attempts.iter().rposition(|a| a == l));
            self.showing = Ok(at.unwrap_or(self.attempts.len().saturating_sub(1)));
        }
        self.ended = step_ended || page.finished || self.step.is_none() || {
            // An orch killed mid-run writes no end: its run is no longer running.
            let now = history.run(&self.run.id)?;
            !now.is_some_and(|r| r.is_running()) && !events::path(&self.run.run_dir).exists()
        };
        Ok(self.ended)
    }

    /// The next attempt's number and log, once it started, if the one shown is not the last.
    fn next_attempt(&mut self) -> Option<(usize, PathBuf)> {
        let shown = self.showing.as_mut().ok()?;
        let next = self.attempts.get(*shown + 1)?.clone();
        *shown += 1;
        Some((*shown + 1, next))
    }
}
