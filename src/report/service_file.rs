//! The cron service's own record, `<state>/services/<pid>.json`: its schedule, its next fire
//! times and its last results, rewritten (atomically, through a rename) when they change and
//! removed when the service ends. `orch serve` reads these files for its schedule page.
//!
//! Owns that file's format and its place. It never decides anything about the schedule: the
//! service in `commands::service` hands it what happened. A failure to write is ignored (the
//! record is for people watching, and the run must not stop for it).

use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

/// The most recent results kept in the record.
const KEPT: usize = 20;

/// What a running cron service knows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub pid: u32,
    pub name: String,
    pub manifest: PathBuf,
    pub cron: String,
    /// "local time" or an IANA zone.
    pub zone: String,
    pub started_at: DateTime<Utc>,
    /// The next fire times, in the schedule's zone.
    pub next: Vec<DateTime<FixedOffset>>,
    /// The latest results, newest first.
    pub last: Vec<Outcome>,
}

/// One fire time's outcome: a run and its exit code, or a skip and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome {
    pub at: DateTime<Utc>,
    /// The run's exit code; `None` when the fire time was skipped.
    pub exit_code: Option<u8>,
    /// Seconds the run took.
    pub seconds: Option<f64>,
    /// Why a fire time was skipped.
    pub skipped: Option<String>,
}

/// The folder of the records in a state folder.
pub fn folder(state_dir: &Path) -> PathBuf {
    state_dir.join("services")
}

/// The record file of this process, kept up to date and removed on drop.
pub struct ServiceFile {
    path: PathBuf,
    pub record: ServiceRecord,
}

impl ServiceFile {
    pub fn new(state_dir: &Path, name: &str, manifest: &Path, cron: &str, zone: String) -> Self {
        let pid = std::process::id();
        ServiceFile {
            path: folder(state_dir).join(format!("{pid}.json")),
            record: ServiceRecord {
                pid,
                name: name.to_string(),
                manifest: manifest.to_path_buf(),
                cron: cron.to_string(),
                zone,
                started_at: Utc::now(),
                next: Vec::new(),
                last: Vec::new(),
            },
        }
    }

    /// Adds an outcome (newest first, the oldest dropped past [`KEPT`]) and rewrites the file.
    pub fn push(&mut self, outcome: Outcome) {
        self.record.last.insert(0, outcome);
        self.record.last.truncate(KEPT);
        self.write();
    }

    /// Writes the record (to a temporary file renamed over the old one).
    pub fn write(&self) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(&self.record).unwrap_or_default();
        let _ = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, body))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
    }
}

impl Drop for ServiceFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Every record in a state folder, with whether its process still runs (a service killed with
/// SIGKILL leaves its record behind), by pid.
pub fn read_all(state_dir: &Path) -> Vec<(ServiceRecord, bool)> {
    let Ok(entries) = std::fs::read_dir(folder(state_dir)) else {
        return Vec::new();
    };
    let mut found: Vec<(ServiceRecord, bool)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| {
            // Only regular files: a symlink placed there is not followed out of the folder.
            let meta = std::fs::symlink_metadata(e.path()).ok()?;
            if !meta.is_file() || meta.len() > 1 << 20 {
                return None;
            }
            let record: ServiceRecord =
                serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            let alive = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(record.pid).ok()?),
                None,
            )
            .is_ok();
            Some((record, alive))
        })
        .collect();
    found.sort_by_key(|r| r.0.pid);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_read_and_removed() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut f = ServiceFile::new(
            dir.path(),
            "n",
            Path::new("m.toml"),
            "0 2 * * *",
            "UTC".into(),
        );
        f.push(Outcome {
            at: Utc::now(),
            exit_code: Some(0),
            seconds: Some(1.5),
            skipped: None,
        });
        let all = read_all(dir.path());
        assert_eq!(all.len(), 1);
        assert!(all[0].1, "this process runs");
        assert_eq!(all[0].0.last.len(), 1);
        drop(f);
        assert!(read_all(dir.path()).is_empty());
    }
}
