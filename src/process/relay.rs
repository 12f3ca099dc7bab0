//! What the Slurm step wrapper tells orch through the step's stderr: a placement line when it
//! starts (node, job and step ids) and a trailer when the leader has ended (exit code, signal,
//! leaked pids, or why the step was refused). Both begin with [`MARK`], which no program writes
//! by accident; orch takes them out of the lines and of the stderr log, so a step's output and
//! logs have the same form as a local run's.
//!
//! Owns the wire format and the log clean-up; it must never interpret the step's own output.

use std::io::{self, Read, Write};
use std::path::Path;

/// The start of every wrapper line (ASCII record separator, then a name).
pub const MARK: &[u8] = b"\x1eorch-slurm ";

/// Where the wrapper runs, from the variables slurmstepd sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub node: String,
    pub job: String,
    pub step: String,
}

impl Placement {
    /// The placement of the process reading it (the wrapper, on the node).
    pub fn from_env() -> Placement {
        let var = |k: &str| std::env::var(k).unwrap_or_else(|_| "?".into());
        Placement {
            node: var("SLURMD_NODENAME"),
            job: var("SLURM_JOB_ID"),
            step: var("SLURM_STEP_ID"),
        }
    }

    /// The step as `scancel` names it: `JOB.STEP`.
    pub fn job_step(&self) -> String {
        format!("{}.{}", self.job, self.step)
    }

    pub fn line(&self) -> String {
        format!(
            "{}placed node={} job={} step={}",
            mark(),
            self.node,
            self.job,
            self.step
        )
    }
}

/// How the leader ended, as the wrapper saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trailer {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub leaked: Vec<u32>,
    /// Why the step did not run (a missing working directory), if it did not.
    pub error: Option<String>,
}

impl Trailer {
    pub fn line(&self) -> String {
        let opt = |v: Option<i32>| v.map_or("-".to_string(), |v| v.to_string());
        let leaked: Vec<String> = self.leaked.iter().map(u32::to_string).collect();
        let mut line = format!(
            "{}exit code={} signal={} leaked={}",
            mark(),
            opt(self.code),
            opt(self.signal),
            if leaked.is_empty() {
                "-".into()
            } else {
                leaked.join(",")
            }
        );
        if let Some(error) = &self.error {
            line.push_str(" error=");
            line.push_str(&error.replace('\n', " "));
        }
        line
    }
}

/// One wrapper line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayed {
    Placed(Placement),
    Exited(Trailer),
}

/// The wrapper line in `bytes`, if it is one.
pub fn parse(bytes: &[u8]) -> Option<Relayed> {
    let rest = std::str::from_utf8(bytes.strip_prefix(MARK)?).ok()?;
    let (kind, rest) = rest.split_once(' ')?;
    let (fields, error) = match rest.split_once(" error=") {
        Some((fields, error)) => (fields, Some(error.to_string())),
        None => (rest, None),
    };
    let field = |name: &str| {
        fields
            .split(' ')
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("-")
    };
    match kind {
        "placed" => Some(Relayed::Placed(Placement {
            node: field("node").into(),
            job: field("job").into(),
            step: field("step").into(),
        })),
        "exit" => Some(Relayed::Exited(Trailer {
            code: field("code").parse().ok(),
            signal: field("signal").parse().ok(),
            leaked: field("leaked")
                .split(',')
                .filter_map(|p| p.parse().ok())
                .collect(),
            error,
        })),
        _ => None,
    }
}

fn mark() -> &'static str {
    std::str::from_utf8(MARK).expect("the mark is ASCII")
}

/// Removes the wrapper's lines from a stderr log, leaving every other byte as it was.
pub fn strip_log(path: &Path) -> io::Result<()> {
    let mut bytes = Vec::new();
    match std::fs::File::open(path) {
        Ok(mut file) => file.read_to_end(&mut bytes)?,
        // Created at the first byte: nothing was written, nothing to strip.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if memchr::memmem::find(&bytes, MARK).is_none() {
        return Ok(());
    }
    let mut kept = Vec::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(MARK) {
            kept.extend_from_slice(line);
        }
    }
    std::fs::File::create(path)?.write_all(&kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let p = Placement {
            node: "n3".into(),
            job: "12".into(),
            step: "4".into(),
        };
        assert_eq!(parse(p.line().as_bytes()), Some(Relayed::Placed(p)));
        let t = Trailer {
            code: None,
            signal: Some(9),
            leaked: vec![12, 13],
            error: Some("no such dir: a b".into()),
        };
        assert_eq!(parse(t.line().as_bytes()), Some(Relayed::Exited(t)));
        assert_eq!(parse(b"orch-slurm exit code=0"), None);
    }

    #[test]
    fn strip_keeps_everything_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("err.log");
        let trailer = Trailer::default().line();
        std::fs::write(&log, format!("a\n{trailer}\nb\npartial")).expect("write");
        strip_log(&log).expect("strip");
        assert_eq!(
            std::fs::read_to_string(&log).expect("read"),
            "a\nb\npartial"
        );
    }
}
