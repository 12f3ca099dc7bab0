//! A builder that runs the real `orch` binary in a temporary folder, with a cleared environment
//! (an explicit allow-list, `HOME` inside the folder), declarative expectations, and checks after
//! every invocation that hold for every test: no process of the test survives, every results
//! file is valid, and the ledger's totals equal the results' totals. Plus a redactor that makes
//! output stable for snapshots.
//!
//! A test that breaks one of those on purpose opts out of that check alone, with a reason
//! (`.allow_dead_run("SIGKILLed on purpose")`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The project's root folder.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn orch_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_orch"))
}

/// The variable every process of a test inherits, set to the test's own mark: after orch has
/// exited, a live process that has it is a survivor.
pub const MARK_VAR: &str = "ORCH_TEST_MARK";

/// The only variables of the developer's environment an invocation of orch gets; everything
/// else (`ORCH_*` knobs, `CLAUDE_CONFIG_DIR`, `ANTHROPIC_*`, `RUST_LOG`, `NO_COLOR`, ...) would
/// change what orch does. `HOME`, `NO_COLOR`, `COLUMNS` and `LANG` are set by the harness.
const INHERITED: &[&str] = &["PATH", "TMPDIR"];

/// One invocation of orch.
pub struct Test {
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
    mark: String,
    expect: Expect,
    allow: Allow,
}

/// What the test declared the invocation must do ([`Test::run`] checks it).
#[derive(Default)]
struct Expect {
    status: Option<i32>,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

/// The post-test checks a test opted out of, each with its reason.
#[derive(Default)]
struct Allow {
    dead_run: Option<&'static str>,
    survivors: Option<&'static str>,
    unreadable_ledger: Option<&'static str>,
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
        let mark = dir
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| format!("{n}-{}", std::process::id()))
            .expect("a temp dir name");
        Test {
            dir,
            args: Vec::new(),
            env: Vec::new(),
            mark,
            expect: Expect::default(),
            allow: Allow::default(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The value of [`MARK_VAR`] in every process this test starts.
    pub fn mark(&self) -> &str {
        &self.mark
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

    /// [`Test::run`] asserts orch exits with `code`.
    pub fn status(mut self, code: i32) -> Test {
        self.expect.status = Some(code);
        self
    }

    /// [`Test::run`] asserts orch's stdout contains `text`.
    pub fn stdout_contains(mut self, text: &str) -> Test {
        self.expect.stdout.push(text.into());
        self
    }

    /// [`Test::run`] asserts orch's stderr contains `text`.
    pub fn stderr_contains(mut self, text: &str) -> Test {
        self.expect.stderr.push(text.into());
        self
    }

    /// Allows runs that never finished (no results file, `running` or `dead` in the ledger):
    /// the test kills orch on purpose. Their usage is then not compared with a results file.
    pub fn allow_dead_run(mut self, reason: &'static str) -> Test {
        self.allow.dead_run = Some(reason);
        self
    }

    /// Allows a ledger file that is not a database (a test that plants a broken one).
    pub fn allow_unreadable_ledger(mut self, reason: &'static str) -> Test {
        self.allow.unreadable_ledger = Some(reason);
        self
    }

    /// Allows processes of the test to outlive orch (none of today's tests needs it).
    pub fn allow_survivors(mut self, reason: &'static str) -> Test {
        self.allow.survivors = Some(reason);
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
        cmd.current_dir(self.dir.path()).env_clear();
        for key in INHERITED {
            if let Some(value) = std::env::var_os(key) {
                cmd.env(key, value);
            }
        }
        cmd.env("HOME", self.dir.path().join("home"))
            .env("LANG", "C.UTF-8")
            .env("NO_COLOR", "1")
            .env("COLUMNS", "100")
            .env(MARK_VAR, &self.mark);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs orch to the end, asserts what the test declared, then runs the post-test checks.
    pub fn run(&self) -> Outcome {
        let Output {
            status,
            stdout,
            stderr,
        } = self.command().output().expect("orch runs");
        let out = Outcome {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        };
        if let Some(code) = self.expect.status {
            assert_eq!(
                out.code, code,
                "exit code\nstdout:\n{}\nstderr:\n{}",
                out.stdout, out.stderr
            );
        }
        for text in &self.expect.stdout {
            assert!(
                out.stdout.contains(text.as_str()),
                "stdout lacks {text:?}:\n{}",
                out.stdout
            );
        }
        for text in &self.expect.stderr {
            assert!(
                out.stderr.contains(text.as_str()),
                "stderr lacks {text:?}:\n{}",
                out.stderr
            );
        }
        self.check();
        out
    }

    /// The post-test checks; panics with every problem found. [`Test::run`] calls it after each
    /// invocation and dropping the test calls it once more, so tests that spawn orch themselves
    /// (`command()`, `with_args()`) are checked too.
    pub fn check(&self) {
        let mut problems = Vec::new();
        if self.allow.survivors.is_none() {
            let left = self.survivors(Duration::from_secs(5));
            if !left.is_empty() {
                problems.push(format!(
                    "processes of this test survived orch:\n{}",
                    left.join("\n")
                ));
            }
        }
        problems.extend(self.results_problems());
        assert!(
            problems.is_empty(),
            "post-test checks failed:\n{}",
            problems.join("\n")
        );
    }

    /// Processes of this test still alive after `deadline` (those just exiting get that long):
    /// any that inherited the test's mark, or whose working folder is inside the test's folder.
    pub fn survivors(&self, deadline: Duration) -> Vec<String> {
        let marker = format!("{MARK_VAR}={}", self.mark);
        let me = std::process::id();
        let ours = |pid: u32| {
            pid != me
                && pid_alive(pid)
                && (std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()))
                    || std::fs::read_link(format!("/proc/{pid}/cwd"))
                        .is_ok_and(|cwd| cwd.starts_with(self.path())))
        };
        let end = Instant::now() + deadline;
        loop {
            let left: Vec<String> = all_pids()
                .into_iter()
                .filter(|&pid| ours(pid))
                .map(|pid| {
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    format!(
                        "{pid}: {}",
                        String::from_utf8_lossy(&cmd).replace('\0', " ")
                    )
                })
                .collect();
            if left.is_empty() || Instant::now() >= end {
                return left;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What is wrong with the results files and ledgers under the test's folder: a results file
    /// that does not match `results.schema.json` or does not add up, a run whose ledger rows do
    /// not sum to its results' totals, a run that never finished (unless allowed).
    pub fn results_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut finished = BTreeSet::new();
        for file in files_named(self.path(), "results.json") {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let v: Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!("{}: not JSON ({e})", file.display()));
                    continue;
                }
            };
            let at = file.display();
            problems.extend(
                results_schema()
                    .iter_errors(&v)
                    .map(|e| format!("{at}: {e} at {}", e.instance_path)),
            );
            problems.extend(sums_problems(&v).into_iter().map(|p| format!("{at}: {p}")));
            let Some(run) = v["metadata"]["run_id"].as_str() else {
                continue;
            };
            finished.insert(run.to_string());
            // <state>/runs/<run-id>/results.json, and <state>/ledger.sqlite.
            let Some(ledger) = file.ancestors().nth(3).map(|s| s.join("ledger.sqlite")) else {
                continue;
            };
            if ledger.exists() {
                problems.extend(ledger_vs_results(&ledger, run, &v).map(|p| format!("{at}: {p}")));
            }
        }
        if self.allow.dead_run.is_none() {
            for ledger in files_named(self.path(), "ledger.sqlite") {
                let runs = match ledger_runs(&ledger) {
                    Ok(runs) => runs,
                    Err(_) if self.allow.unreadable_ledger.is_some() => continue,
                    Err(e) => {
                        problems.push(format!("{}: cannot be read: {e}", ledger.display()));
                        continue;
                    }
                };
                for (run, status) in runs {
                    if status == "running" || status == "dead" || !finished.contains(&run) {
                        problems.push(format!(
                            "{}: run {run} is {status} and wrote no results file (a test that \
                             kills orch on purpose says so with .allow_dead_run(reason))",
                            ledger.display()
                        ));
                    }
                }
            }
        }
        problems
    }
}

impl Drop for Test {
    fn drop(&mut self) {
        // After a failed assertion the test has failed already; a second panic would abort.
        if !std::thread::panicking() {
            self.check();
        }
    }
}

/// The validator of `tests/cli/results.schema.json`, built once.
fn results_schema() -> &'static jsonschema::Validator {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let schema: Value =
            serde_json::from_str(include_str!("results.schema.json")).expect("the schema is JSON");
        jsonschema::validator_for(&schema).expect("a valid schema")
    })
}

/// What does not add up inside one results file: job counts, and the run's token and dollar
/// totals against its jobs'.
fn sums_problems(v: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(instances) = v["instances"].as_object() else {
        return problems;
    };
    let count = |k: &str| v[k].as_u64().unwrap_or(0);
    if count("total_instances") != instances.len() as u64 {
        problems.push(format!(
            "total_instances {} but {} jobs",
            count("total_instances"),
            instances.len()
        ));
    }
    if count("completed") + count("failed") + count("skipped") > count("total_instances") {
        problems.push("completed + failed + skipped > total_instances".into());
    }
    let usage = &v["metadata"]["token_usage"];
    for (key, of_job) in [
        ("total_tokens", "total_tokens"),
        ("input_tokens", "input_tokens"),
        ("output_tokens", "output_tokens"),
        ("cache_read_tokens", "cache_read_tokens"),
        ("cache_creation_tokens", "cache_creation_tokens"),
    ] {
        let jobs: u64 = instances
            .values()
            .map(|i| i[of_job].as_u64().unwrap_or(0))
            .sum();
        if usage[key].as_u64() != Some(jobs) {
            problems.push(format!(
                "metadata.token_usage.{key} is {} but the jobs' add up to {jobs}",
                usage[key]
            ));
        }
    }
    // zen's identity: total = input + output + cached, for every job and for the run.
    for (what, u) in instances
        .iter()
        .map(|(name, i)| (format!("instances.{name}"), i))
        .chain([("metadata.token_usage".to_string(), usage)])
    {
        let n = |k: &str| u[k].as_u64().unwrap_or(0);
        if n("total_tokens") != n("input_tokens") + n("output_tokens") + n("cached_tokens") {
            problems.push(format!(
                "{what}: total_tokens {} is not input + output + cached_tokens ({} + {} + {})",
                n("total_tokens"),
                n("input_tokens"),
                n("output_tokens"),
                n("cached_tokens")
            ));
        }
    }
    let usd: f64 = instances
        .values()
        .filter_map(|i| i["total_cost_usd"].as_f64())
        .sum();
    let total = usage["total_cost_usd"].as_f64().unwrap_or(f64::NAN);
    if !close(usd, total) {
        problems.push(format!(
            "metadata.token_usage.total_cost_usd is {total} but the jobs' add up to {usd}"
        ));
    }
    problems
}

/// The run's usage rows in `ledger` against its results file's totals.
fn ledger_vs_results<'a>(
    ledger: &Path,
    run: &str,
    v: &'a Value,
) -> impl Iterator<Item = String> + 'a {
    let db =
        rusqlite::Connection::open_with_flags(ledger, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the ledger opens");
    let (tokens, usd): (i64, f64) = db
        .query_row(
            "SELECT COALESCE(SUM(input + output + cache_read + cache_creation), 0), COALESCE(SUM(usd), 0.0)
             FROM usage WHERE run_id = ?1",
            [run],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the ledger has a usage table");
    let usage = &v["metadata"]["token_usage"];
    let mut problems = Vec::new();
    if usage["total_tokens"].as_u64() != Some(tokens as u64) {
        problems.push(format!(
            "run {run}: the ledger holds {tokens} tokens, the results {}",
            usage["total_tokens"]
        ));
    }
    let total = usage["total_cost_usd"].as_f64().unwrap_or(f64::NAN);
    if !close(usd, total) {
        problems.push(format!(
            "run {run}: the ledger holds ${usd}, the results ${total}"
        ));
    }
    problems.into_iter()
}

/// Every run in a ledger with its status.
fn ledger_runs(ledger: &Path) -> rusqlite::Result<Vec<(String, String)>> {
    let db =
        rusqlite::Connection::open_with_flags(ledger, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = db.prepare("SELECT id, status FROM runs")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Equal up to float rounding (a sum of many charges).
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Every file called `name` under `dir`.
fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => todo.push(path),
                Ok(t) if t.is_file() && entry.file_name() == name => out.push(path),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// Every pid in /proc.
fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
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
