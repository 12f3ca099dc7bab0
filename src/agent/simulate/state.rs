//! The simulated agent's per-session memory: cumulative totals kept in a small JSON file per
//! session id, so `--resume` chains report cumulative figures like Claude Code does.
//!
//! Owns the file format and its location; it must never be read by orch itself (orch learns
//! totals only from the stream, as it does with the real CLI).

use crate::agent::stream::ModelUsage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Cumulative figures of one simulated session.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SessionState {
    /// API responses so far over the whole session (drives message ids and cache growth).
    pub responses: u64,
    /// Tokens written to the cache so far; later responses read them back.
    pub context_tokens: u64,
    /// Cumulative cost in US dollars.
    pub cost_usd: f64,
    /// Cumulative usage per model.
    pub models: BTreeMap<String, ModelUsage>,
}

fn state_path(dir: &Path, session_id: &str) -> PathBuf {
    dir.join(format!("{session_id}.json"))
}

/// Loads a session; `Ok(None)` when it does not exist.
pub fn load(dir: &Path, session_id: &str) -> std::io::Result<Option<SessionState>> {
    match std::fs::read(state_path(dir, session_id)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Saves a session atomically (write to a temporary file, then rename over).
pub fn save(dir: &Path, session_id: &str, state: &SessionState) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = state_path(dir, session_id);
    let tmp = dir.join(format!(".{session_id}.{}.tmp", std::process::id()));
    std::fs::write(
        &tmp,
        serde_json::to_vec(state).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

/// Counts one more invocation of a session; returns the count, this one included. Kept in
/// `<dir>/invocations/<session>` so that consecutive processes see it (a retry of orch is a new
/// process).
pub fn count_invocation(dir: &Path, session_id: &str) -> std::io::Result<u64> {
    let dir = dir.join("invocations");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(session_id);
    let n = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().unwrap_or(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    } + 1;
    let tmp = dir.join(format!(".{session_id}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, n.to_string())?;
    std::fs::rename(tmp, path)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_by_session_id() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), "s1").unwrap(), None);
        let state = SessionState {
            responses: 3,
            cost_usd: 0.5,
            ..SessionState::default()
        };
        save(dir.path(), "s1", &state).unwrap();
        assert_eq!(load(dir.path(), "s1").unwrap(), Some(state));
        assert_eq!(load(dir.path(), "s2").unwrap(), None);
    }
}
