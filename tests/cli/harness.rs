//! A builder that runs the real `orch` binary in a temporary folder, with `HOME` inside it and
//! `NO_COLOR=1`, and a redactor that makes its output stable for snapshots.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The project's root folder.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn orch_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_orch"))
}

/// One invocation of orch.
pub struct Test {
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// What an invocation did.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Test {
    pub fn new() -> Test {
        let dir = tempfile::Builder::new()
            .prefix("orch-test-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home");
        Test {
            dir,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file under the test folder.
    pub fn file(self, name: &str, text: &str) -> Test {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("parent dir");
        }
        std::fs::write(path, text).expect("write file");
        self
    }

    pub fn args(mut self, args: &[&str]) -> Test {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Test {
        self.env.push((key.into(), value.into()));
        self
    }

    /// orch with the test's arguments.
    pub fn command(&self) -> Command {
        let mut cmd = self.bare();
        cmd.args(&self.args);
        cmd
    }

    /// orch with other arguments, in the same folder and environment.
    pub fn with_args(&self, args: &[&str]) -> Command {
        let mut cmd = self.bare();
        cmd.args(args);
        cmd
    }

    fn bare(&self) -> Command {
        let mut cmd = Command::new(orch_bin());
        cmd.current_dir(self.dir.path())
            .env("HOME", self.dir.path().join("home"))
            .env("NO_COLOR", "1")
            .env_remove("ORCH_CLAUDE_PATH")
            .env_remove("CLICOLOR_FORCE")
            .env("COLUMNS", "100");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self) -> Outcome {
        let Output {
            status,
            stdout,
            stderr,
        } = self.command().output().expect("orch runs");
        Outcome {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

/// Replaces what changes between runs (UUIDs, the binary's and the temp folder's paths).
pub fn redact(text: &str, test: &Test) -> String {
    let mut out = text.replace(&orch_bin().display().to_string(), "[orch]");
    out = out.replace(&test.path().display().to_string(), "[tmp]");
    let mut redacted = String::with_capacity(out.len());
    let bytes = out.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if out.get(i..i + 36).is_some_and(is_uuid) {
            redacted.push_str("[uuid]");
            i += 36;
        } else {
            let c = out[i..].chars().next().expect("in bounds");
            redacted.push(c);
            i += c.len_utf8();
        }
    }
    redacted
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Whether `pid` is a live process (a zombie is not).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie is dead; it only waits for its parent to reap it.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Every process whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.to_string().as_str()) {
            out.push(pid);
        }
    }
    out
}

/// Polls `ok` until it holds; panics naming `what` after `deadline`.
pub fn wait_until(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that no process of any step's group survived.
pub fn assert_no_survivors(pids: &[u32]) {
    for &pid in pids {
        wait_until(
            &format!("group {pid} to die"),
            Duration::from_secs(5),
            || group_members(pid).is_empty() && !pid_alive(pid),
        );
    }
}

/// [`redact`], plus what changes between runs of `orch run`: wall-clock times (`12:34:56`),
/// durations (`3.21s`), pids and run ids.
pub fn redact_run(text: &str, test: &Test) -> String {
    let text = redact(text, test);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(c) = rest.chars().next() {
        let prev_is_word = out
            .chars()
            .last()
            .is_some_and(|p| p.is_ascii_alphanumeric() || p == '.');
        let skip = if prev_is_word {
            None
        } else {
            run_id(rest)
                .map(|n| (n, "[run-id]"))
                .or_else(|| clock(rest).map(|n| (n, "[time]")))
                .or_else(|| seconds(rest).map(|n| (n, "[dur]")))
                .or_else(|| {
                    rest.starts_with("pid ")
                        .then(|| digits(&rest[4..]))
                        .and_then(|n| (n > 0).then_some((4 + n, "pid [pid]")))
                })
        };
        match skip {
            Some((n, with)) => {
                out.push_str(with);
                rest = &rest[n..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

fn digits(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

/// `12:34:56`
fn clock(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (b.len() >= 8
        && digits(s) == 2
        && b[2] == b':'
        && digits(&s[3..]) == 2
        && b[5] == b':'
        && digits(&s[6..]) == 2)
        .then_some(8)
}

/// `3.21s`, `0.0s`
fn seconds(s: &str) -> Option<usize> {
    let whole = digits(s);
    if whole == 0 || s.as_bytes().get(whole) != Some(&b'.') {
        return None;
    }
    let frac = digits(&s[whole + 1..]);
    let end = whole + 1 + frac;
    let after = s[end..].chars().nth(1);
    (frac > 0 && s.as_bytes().get(end) == Some(&b's') && !after.is_some_and(char::is_alphanumeric))
        .then_some(end + 1)
}

/// `20260101T120000.123Z-1a2b3c4d`
fn run_id(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (b.len() >= 29
        && digits(s) == 8
        && b[8] == b'T'
        && digits(&s[9..]) == 6
        && b[15] == b'.'
        && digits(&s[16..]) == 3
        && b[19] == b'Z'
        && b[20] == b'-'
        && b[21..29].iter().all(u8::is_ascii_hexdigit))
    .then_some(29)
}
