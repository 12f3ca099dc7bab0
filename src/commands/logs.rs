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
use crate::history::{History, HistoryError, RunSummary, StepView, events};

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
    let path = history.confine(&log)?;
    let mut reader = LogReader::new(path, args.raw);
    let follow = args.follow && summary.live;
    let mut watch = follow.then(|| EndWatch::new(&history, &summary, step.step));
    loop {
        let ended = match &mut watch {
            Some(w) => w.ended(&history)?,
            None => true,
        };
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

/// `job` of `job [2/3]` or `job[key]`.
fn job_of(label: &str) -> &str {
    label.split([' ', '[']).next().unwrap_or(label)
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

/// Tells from a run's events file when one step (or the whole run) has ended.
struct EndWatch {
    run: crate::history::RunEntry,
    step: Option<usize>,
    offset: u64,
}

impl EndWatch {
    fn new(_history: &History, summary: &RunSummary, step: Option<usize>) -> EndWatch {
        EndWatch {
            run: summary.run.clone(),
            step,
            offset: 0,
        }
    }

    fn ended(&mut self, history: &History) -> Result<bool, HistoryError> {
        let page = history.events(&self.run, self.offset, 1 << 20)?;
        self.offset = page.next_offset;
        let step_ended = page.events.iter().any(|e| {
            matches!(e["event"].as_str(), Some("step_finished" | "step_skipped"))
                && e["step"].as_u64().map(|s| s as usize) == self.step
        });
        if step_ended || page.finished || self.step.is_none() {
            return Ok(true);
        }
        // An orch killed mid-run writes no end: its run is no longer running.
        let now = history.run(&self.run.id)?;
        Ok(!now.is_some_and(|r| r.is_running()) && !events::path(&self.run.run_dir).exists())
    }
}
