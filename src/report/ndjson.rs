//! The NDJSON reporter (`--events FILE`, `-` for stdout): every event as one JSON object per
//! line, `{"v":1,"event":"step_started",...}`, following `schemas/orch-events.schema.json`.
//!
//! Every run also writes the same stream, through the same code, to its own folder
//! ([`RunFolder`]: `<state>/runs/<id>/events.ndjson`), each batch flushed once reported, so that
//! `orch show`, `orch logs -f` and the dashboard can follow a run another orch process runs.
//!
//! Owns the wire format's version. It never filters or reorders events; a write error is
//! reported once on stderr and the run goes on without the stream.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::Reporter;
use crate::events::Event;

/// The version of the event stream's format: fields may be added within a version; renaming or
/// removing one, or changing its meaning, makes a new version.
pub const VERSION: u32 = 1;

pub struct Ndjson<W: Write> {
    out: W,
    failed: bool,
    /// An event that is to be seen at once waits in the buffer: flush at the batch's end.
    urgent: bool,
}

impl<W: Write> Ndjson<W> {
    pub fn new(out: W) -> Self {
        Ndjson {
            out,
            failed: false,
            urgent: false,
        }
    }

    /// Buffers one event; `urgent` ones are written out at the end of their batch
    /// ([`Reporter::flush`]), the others by the tick.
    fn write(&mut self, event: &Event, urgent: bool) {
        if self.failed {
            return;
        }
        let result = line(event).and_then(|l| self.out.write_all(l.as_bytes()));
        self.urgent |= urgent;
        self.fail_on(result);
    }

    /// Writes out what is buffered.
    fn write_out(&mut self) {
        self.urgent = false;
        if !self.failed {
            let result = self.out.flush();
            self.fail_on(result);
        }
    }

    fn fail_on(&mut self, result: std::io::Result<()>) {
        if let Err(e) = result {
            self.failed = true;
            eprintln!("orch: writing the event stream failed ({e}); the run goes on without it");
        }
    }
}

/// One event as a line of the stream, newline included.
pub fn line(event: &Event) -> std::io::Result<String> {
    let json = serde_json::to_string(event)?;
    // Events serialize as objects tagged with "event": put the version first.
    let body = json.strip_prefix('{').ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "an event is not an object")
    })?;
    // Secret values are masked in the text, JSON-escaped forms included.
    Ok(crate::secrets::mask_owned(format!(
        "{{\"v\":{VERSION},{body}\n"
    )))
}

impl<W: Write + Send> Reporter for Ndjson<W> {
    fn report(&mut self, event: &Event, _now: Instant) {
        // The chatty kinds are flushed by the tick; the rest at the end of their batch, so a
        // reader that follows the file sees starts and ends at once.
        let chatty = matches!(
            event,
            Event::StepOutput { .. } | Event::UsageRecorded { .. } | Event::BudgetUpdated { .. }
        );
        self.write(event, !chatty);
    }

    fn flush(&mut self) {
        if self.urgent {
            self.write_out();
        }
    }

    fn tick(&mut self, _now: Instant) {
        self.write_out();
    }

    fn tick_every(&self) -> Option<Duration> {
        Some(Duration::from_millis(250))
    }

    fn finish(&mut self, _results: &super::results::Results, _path: &Path) {
        self.write_out();
    }
}

/// The events of each run into its run folder's events file, from `run_started` to
/// `run_finished` (a service's runs each get their own). Every batch of events the reporter task
/// takes is one write, made once the batch is reported, so a reader in another process sees each
/// event as soon as orch has caught up with its queue.
#[derive(Default)]
pub struct RunFolder {
    current: Option<Ndjson<std::io::BufWriter<std::fs::File>>>,
}

impl Reporter for RunFolder {
    fn report(&mut self, event: &Event, _now: Instant) {
        if let Event::RunStarted { run_dir, .. } = event {
            let path = crate::history::events::path(run_dir);
            self.current = match std::fs::File::create(&path) {
                Ok(file) => Some(Ndjson::new(std::io::BufWriter::new(file))),
                Err(e) => {
                    eprintln!(
                        "orch: cannot write the run's events to {} ({e}); the run goes on without them",
                        path.display()
                    );
                    None
                }
            };
        }
        if let Some(out) = &mut self.current {
            out.write(event, true);
        }
        if matches!(event, Event::RunFinished { .. }) {
            if let Some(mut out) = self.current.take() {
                out.write_out();
            }
        }
    }

    fn flush(&mut self) {
        if let Some(out) = &mut self.current {
            out.write_out();
        }
    }

    fn finish(&mut self, _results: &super::results::Results, _path: &Path) {}
}
