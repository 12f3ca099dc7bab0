//! A scenario: the pinned CLI, the sandbox, the mock and a manifest, run through `orch run`; and
//! the comparison of orch's figures (results file and ledger) with the CLI's own `result` lines.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::Test;
use crate::install;
use crate::mock::{MockApi, Reply};
use crate::sandbox;

/// One scenario: a test folder with the manifest, the mock, and the environment of the CLI.
pub struct Scenario {
    pub test: Test,
    pub mock: MockApi,
    claude: PathBuf,
    env: Vec<(String, String)>,
}

/// What one `orch run` did.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub output: String,
}

impl Scenario {
    /// Installs the CLI if needed (before the sandbox: npm needs the network), moves this test's
    /// thread into its own loopback-only network, starts the mock there and writes the manifest.
    pub fn new(manifest: &str, script: Vec<Reply>) -> Scenario {
        let claude = install::claude();
        sandbox::enter();
        let mock = MockApi::start(script);
        let test = Test::new().file("orch.toml", manifest);
        Scenario {
            test,
            mock,
            claude,
            env: Vec::new(),
        }
    }

    /// Adds an environment variable for orch and the CLI.
    pub fn env(mut self, key: &str, value: &str) -> Scenario {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn path(&self) -> &Path {
        self.test.path()
    }

    /// `orch run --claude-path <pinned claude>` with a clean environment: nothing of the
    /// developer's (API keys, OAuth tokens, proxies, `CLAUDE_CODE_*` settings) reaches the CLI.
    pub fn command(&self) -> Command {
        let mut cmd = self.test.with_args(&[]);
        cmd.arg("run").arg("--claude-path").arg(&self.claude);
        self.clean_env(&mut cmd);
        cmd
    }

    /// `orch SUBCOMMAND --claude-path <pinned claude>` (such as `resume`), in the same clean
    /// environment as [`Scenario::command`].
    pub fn orch(&self, subcommand: &str) -> Command {
        let mut cmd = self.test.with_args(&[]);
        cmd.arg(subcommand).arg("--claude-path").arg(&self.claude);
        self.clean_env(&mut cmd);
        cmd
    }

    /// The pinned `claude` itself, with `args`, in the test folder and the same clean
    /// environment as under orch: for tests of the CLI's own behaviour.
    pub fn claude_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.claude);
        cmd.args(args).current_dir(self.path());
        self.clean_env(&mut cmd);
        cmd
    }

    fn clean_env(&self, cmd: &mut Command) {
        let home = self.path().join("home");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("CLAUDE_CONFIG_DIR", home.join(".claude"))
            .env("NO_COLOR", "1")
            .env("COLUMNS", "100")
            .env("ANTHROPIC_BASE_URL", self.mock.base_url())
            .env("ANTHROPIC_API_KEY", "sk-ant-dummy")
            .env("DISABLE_TELEMETRY", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            // As root, the CLI refuses bypassPermissions outside a declared sandbox.
            .env("IS_SANDBOX", "1")
            // The harness's mark: its post-test checks find any process of this test left alive.
            .env(crate::harness::MARK_VAR, self.test.mark());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
    }

    /// Runs orch to the end; checks that it left no process behind.
    pub fn run(&self) -> Outcome {
        let mut child = self.spawn();
        let code = wait_exit(&mut child, Duration::from_secs(120));
        self.assert_no_process_left();
        Outcome {
            code,
            output: self.output(),
        }
    }

    /// Asserts that no process started for this scenario survives, whatever its process group
    /// or session: every one of them (orch, the CLI, its tools) has this test's
    /// `CLAUDE_CONFIG_DIR` in its environment.
    pub fn assert_no_process_left(&self) {
        let marker = format!(
            "CLAUDE_CONFIG_DIR={}",
            self.path().join("home/.claude").display()
        );
        let marked = || -> Vec<String> {
            let Ok(entries) = std::fs::read_dir("/proc") else {
                return Vec::new();
            };
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&pid| crate::harness::pid_alive(pid))
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/environ"))
                        .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()))
                })
                .map(|pid| {
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    format!(
                        "{pid}: {}",
                        String::from_utf8_lossy(&cmd).replace('\0', " ")
                    )
                })
                .collect()
        };
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let left = marked();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < end,
                "processes of this scenario survived:\n{}",
                left.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts orch in the background, its stdout and stderr going to `orch.out` in the folder.
    pub fn spawn(&self) -> Child {
        let out = std::fs::File::create(self.path().join("orch.out")).expect("orch.out");
        let err = out.try_clone().expect("orch.out");
        self.command()
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("orch starts")
    }

    /// Waits until some step's log has a line containing `needle` (what the CLI has written).
    pub fn wait_log(&self, needle: &str, deadline: Duration) {
        let runs = self.path().join(".orch/runs");
        crate::harness::wait_until(&format!("a log line with {needle}"), deadline, || {
            let logs = std::fs::read_dir(&runs)
                .into_iter()
                .flatten()
                .flatten()
                .flat_map(|run| {
                    std::fs::read_dir(run.path().join("logs"))
                        .into_iter()
                        .flatten()
                })
                .flatten();
            logs.into_iter()
                .any(|log| std::fs::read_to_string(log.path()).is_ok_and(|t| t.contains(needle)))
        });
    }

    /// What orch printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.path().join("orch.out")).unwrap_or_default()
    }

    /// The results file of the only run.
    pub fn results(&self) -> Value {
        let runs = self.path().join(".orch/runs");
        let dirs: Vec<_> = std::fs::read_dir(&runs)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", runs.display(), self.output()))
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(dirs.len(), 1, "one run: {dirs:?}");
        let text = std::fs::read_to_string(dirs[0].join("results.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Checks that orch's tokens and dollars for `job` equal the CLI's own `result` figures, in
    /// the results file and in the ledger, prints both, and returns them.
    pub fn assert_figures(&self, name: &str, v: &Value, job: &str) -> Figures {
        let inst = &v["instances"][job];
        let orch = self.orch_figures(v, job);
        for step in steps(v, job) {
            assert_known_format(&step);
        }
        let cli = cli_job_figures(v, job);
        let ledger = self.ledger_figures(v, job);
        eprintln!(
            "[figures] {name}: orch {} tokens ${:.6} (ledger {} tokens ${:.6}); \
             CLI result {} tokens ${:.6}",
            orch.tokens, orch.usd, ledger.tokens, ledger.usd, cli.tokens, cli.usd
        );
        assert_eq!(inst["cost_is_estimate"], false, "{name}: {inst}");
        assert_eq!(orch.tokens, cli.tokens, "{name}: tokens, results vs CLI");
        assert!(close(orch.usd, cli.usd), "{name}: {orch:?} vs CLI {cli:?}");
        assert_eq!(ledger.tokens, cli.tokens, "{name}: tokens, ledger vs CLI");
        assert!(
            close(ledger.usd, cli.usd),
            "{name}: ledger {ledger:?} vs {cli:?}"
        );
        orch
    }

    /// What the results file says `job` used.
    pub fn orch_figures(&self, v: &Value, job: &str) -> Figures {
        let inst = &v["instances"][job];
        Figures {
            tokens: inst["total_tokens"].as_u64().unwrap(),
            usd: inst["total_cost_usd"].as_f64().unwrap(),
        }
    }

    /// The job's spend in the ledger: every usage row of its steps in this run.
    pub fn ledger_figures(&self, v: &Value, job: &str) -> Figures {
        let db = rusqlite::Connection::open_with_flags(
            self.path().join(".orch/ledger.sqlite"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let run_id = v["metadata"]["run_id"].as_str().unwrap();
        db.query_row(
            "SELECT COALESCE(SUM(u.input + u.output + u.cache_read + u.cache_creation), 0),
                    COALESCE(SUM(u.usd), 0.0)
             FROM usage u JOIN steps s ON s.run_id = u.run_id AND s.step = u.step
             WHERE u.run_id = ?1 AND s.job = ?2",
            rusqlite::params![run_id, job],
            |row| {
                Ok(Figures {
                    tokens: row.get::<_, i64>(0)? as u64,
                    usd: row.get(1)?,
                })
            },
        )
        .unwrap()
    }
}

/// Tokens and dollars.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figures {
    pub tokens: u64,
    pub usd: f64,
}

/// Equal up to float rounding (a resumed chain's charges are differences of cumulative totals).
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// The steps of a job in the results file.
pub fn steps(v: &Value, job: &str) -> Vec<Value> {
    v["instances"][job]["steps"].as_array().unwrap().clone()
}

pub fn status(v: &Value, job: &str) -> String {
    v["instances"][job]["status"].as_str().unwrap().to_string()
}

/// The `result` line a step's CLI wrote to its log, if any.
pub fn result_line(step: &Value) -> Option<Value> {
    let log = std::fs::read_to_string(step["log"].as_str()?).ok()?;
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["type"] == "result")
}

/// The figures of one `result` line: `total_cost_usd` and the tokens of every model in
/// `modelUsage` (subagents included), as the CLI reports them (cumulative with `--resume`).
fn result_figures(result: &Value) -> Figures {
    let tokens = result["modelUsage"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| {
            [
                "inputTokens",
                "outputTokens",
                "cacheReadInputTokens",
                "cacheCreationInputTokens",
            ]
            .iter()
            .map(|k| m[k].as_u64().unwrap())
            .sum::<u64>()
        })
        .sum();
    Figures {
        tokens,
        usd: result["total_cost_usd"].as_f64().unwrap(),
    }
}

/// The stream-json lines the pinned CLI writes in these scenarios, as `type` or `type/subtype`.
/// A new release that adds a kind, or drops a field orch reads, fails here first: look at the
/// new lines, teach `src/agent/stream` what they mean, then extend this list.
const KNOWN_LINES: &[&str] = &[
    "system/init",
    "system/api_retry",
    "assistant",
    "user",
    "result/success",
    "result/error_max_turns",
    "result/error_max_budget_usd",
    "result/error_during_execution",
];

/// Fields orch's parser reads, by line kind (a JSON pointer each).
const READ_FIELDS: &[(&str, &[&str])] = &[
    ("system/init", &["/session_id", "/model"]),
    (
        "assistant",
        &[
            "/message/id",
            "/message/model",
            "/message/usage/input_tokens",
        ],
    ),
    (
        "result",
        &[
            "/is_error",
            "/subtype",
            "/total_cost_usd",
            "/modelUsage",
            "/usage/output_tokens",
            "/num_turns",
            "/session_id",
        ],
    ),
];

/// Asserts every line of a step's log is a kind this suite knows, with the fields orch reads.
fn assert_known_format(step: &Value) {
    let Some(log) = step["log"].as_str() else {
        return;
    };
    for line in std::fs::read_to_string(log).unwrap().lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{log}: a line that is not JSON ({e}): {line}"));
        let kind = v["type"].as_str().unwrap_or_default();
        let full = match v["subtype"].as_str() {
            Some(sub) => format!("{kind}/{sub}"),
            None => kind.to_string(),
        };
        assert!(
            KNOWN_LINES.contains(&full.as_str()),
            "{log}: Claude Code {} wrote a line kind this suite has not seen: {full}\n{line}",
            crate::install::VERSION
        );
        for (which, fields) in READ_FIELDS {
            if *which == kind || *which == full {
                for field in *fields {
                    assert!(
                        v.pointer(field).is_some(),
                        "{log}: {full} line without {field}: {line}"
                    );
                }
            }
        }
    }
}

/// What the CLI says the whole job cost: every step of a job shares one session, and the CLI's
/// totals are cumulative over the session, so it is the last `result` line's figures.
fn cli_job_figures(v: &Value, job: &str) -> Figures {
    steps(v, job)
        .iter()
        .rev()
        .find_map(result_line)
        .map(|r| result_figures(&r))
        .unwrap_or_else(|| {
            let last = steps(v, job).pop().unwrap_or_default();
            let log = last["log"].as_str().map(std::fs::read_to_string);
            panic!("no step of {job} wrote a result; last step: {last:#}\nits log: {log:?}")
        })
}

/// Waits for a child to exit; kills it and panics after `deadline`.
pub fn wait_exit(child: &mut Child, deadline: Duration) -> i32 {
    let end = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("orch did not exit within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `sig` to a process.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(pid, sig).unwrap();
}
