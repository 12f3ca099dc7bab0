//! A run folder's events file (`events.ndjson`, the `--events` stream as every run writes it
//! beside its logs), read in pages from a byte offset so that another process can follow a run
//! as it goes: a line is taken only once its newline is there.
//!
//! It never writes the file (the NDJSON reporter does) and never holds a whole file in memory:
//! each read stops after about `max_bytes`.

use std::io::{BufRead, Seek};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{History, HistoryError, RunEntry};

/// The events file's name inside a run folder.
pub const EVENTS_FILE: &str = "events.ndjson";

/// What a page of reading gives: the whole events that were there, and where to go on.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EventsPage {
    /// Each event as its JSON object (`{"v":1,"event":"step_started",...}`).
    pub events: Vec<serde_json::Value>,
    /// The byte offset after the last whole line read: where the next read starts.
    pub next_offset: u64,
    /// Lines that were not JSON objects (a file cut by a full disk), skipped.
    pub unreadable: u32,
    /// Whether `run_finished` was among the events read.
    pub finished: bool,
}

/// Where a run folder's events file is.
pub fn path(run_dir: &Path) -> PathBuf {
    run_dir.join(EVENTS_FILE)
}

/// The whole lines of `file` from `offset`, until about `max_bytes` are read (at least one
/// line, however long, when one is there). A file that does not exist yet reads as empty.
pub fn read(file: &Path, offset: u64, max_bytes: usize) -> std::io::Result<EventsPage> {
    let mut page = EventsPage {
        next_offset: offset,
        ..EventsPage::default()
    };
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(page),
        Err(e) => return Err(e),
    };
    let mut reader = std::io::BufReader::new(f);
    reader.seek(std::io::SeekFrom::Start(offset))?;
    let mut line = Vec::new();
    let mut read = 0usize;
    while read < max_bytes.max(1) {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        // End of the file, or a line still being written: taken next time.
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        read += n;
        page.next_offset += n as u64;
        match serde_json::from_slice::<serde_json::Value>(&line) {
            Ok(event) if event.is_object() => {
                page.finished |= event["event"] == "run_finished";
                page.events.push(event);
            }
            _ => page.unreadable += 1,
        }
    }
    Ok(page)
}

impl History {
    /// A page of a run's events from `offset` (see [`read`]).
    pub fn events(
        &self,
        run: &RunEntry,
        offset: u64,
        max_bytes: usize,
    ) -> Result<EventsPage, HistoryError> {
        let file = self.confine(&path(&run.run_dir))?;
        read(&file, offset, max_bytes).map_err(|source| HistoryError::Io { path: file, source })
    }

    /// The run's plan as its first event, `run_started`, lists it: empty for a run without an
    /// events file or from before the plan was recorded there.
    pub fn graph(&self, run: &RunEntry) -> Vec<crate::events::GraphStep> {
        let first = self
            .events(run, 0, 1)
            .ok()
            .and_then(|page| page.events.into_iter().next());
        first
            .filter(|e| e["event"] == "run_started")
            .and_then(|mut e| serde_json::from_value(e["graph"].take()).ok())
            .unwrap_or_default()
    }
}
