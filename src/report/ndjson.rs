//! The NDJSON reporter (`--events FILE`, `-` for stdout): every event as one JSON object per
//! line, `{"v":1,"event":"step_started",...}`, following `schemas/orch-events.schema.json`.
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
}

impl<W: Write> Ndjson<W> {
    pub fn new(out: W) -> Self {
        Ndjson { out, failed: false }
    }

    fn write(&mut self, event: &Event, flush: bool) {
        if self.failed {
            return;
        }
        let result = line(event).and_then(|l| {
            self.out.write_all(l.as_bytes())?;
            if flush {
                self.out.flush()?;
            }
            Ok(())
        });
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
        // The chatty kinds are flushed by the tick; the rest as they come, so a reader that
        // follows the file sees starts and ends at once.
        let chatty = matches!(
            event,
            Event::StepOutput { .. } | Event::UsageRecorded { .. } | Event::BudgetUpdated { .. }
        );
        self.write(event, !chatty);
    }

    fn tick(&mut self, _now: Instant) {
        if !self.failed && self.out.flush().is_err() {
            self.failed = true;
        }
    }

    fn tick_every(&self) -> Option<Duration> {
        Some(Duration::from_millis(250))
    }

    fn finish(&mut self, _results: &super::results::Results, _path: &Path) {
        let _ = self.out.flush();
    }
}
