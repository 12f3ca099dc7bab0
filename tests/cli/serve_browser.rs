//! `orch serve` in a real browser: Debian's `chromium`, headless, driven over WebDriver by
//! fantoccini through `chromedriver` on a free loopback port. Every process a test starts (the
//! driver and its browser, the server, a held `orch run`) is stopped by a guard when dropped,
//! so a failed assertion ends the test instead of hanging it. Without chromium the tests fail
//! (`apt-get install chromium chromium-driver`; `.ci/run` installs them).
//!
//! With `ORCH_SCREENSHOTS=DIR` the tests also save the book's screenshots of each page there
//! (`ORCH_SCREENSHOTS=book/src/images cargo test --test cli serve_browser`).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::harness::{Test, wait_until};
use super::serve::{MANIFEST, Server, run_simulated, seed_days, windowed, with_runs};

/// How long a page may take to show what a test waits for.
const DEADLINE: Duration = Duration::from_secs(60);

/// chromedriver and the headless chromium it starts, in a process group of their own that is
/// killed when this is dropped (after the WebDriver session is closed, which quits chromium).
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A fresh browser (its own profile folder), with or without JavaScript.
    pub fn start(javascript: bool) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("orch-chromium-")
            .tempdir()
            .expect("profile dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(profile.path().join("chromedriver.log")).expect("log");
        let driver = {
            use std::os::unix::process::CommandExt;
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .process_group(0)
                .spawn()
                .expect("chromedriver runs (apt-get install chromium chromium-driver)")
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let mut b = Browser {
            rt,
            client: None,
            driver,
            _profile: profile,
        };
        let addr = format!("127.0.0.1:{port}");
        wait_until("chromedriver to listen", DEADLINE, || {
            TcpStream::connect(&addr).is_ok()
        });
        let mut args = vec![
            "--headless".to_string(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--window-size=1280,900".into(),
            format!(
                "--user-data-dir={}",
                b._profile.path().join("data").display()
            ),
        ];
        if nix::unistd::geteuid().is_root() {
            args.push("--no-sandbox".into());
        }
        let mut options = json!({ "binary": "/usr/bin/chromium", "args": args });
        if !javascript {
            options["prefs"] = json!({ "profile.managed_default_content_settings.javascript": 2 });
        }
        let caps = json!({ "browserName": "chrome", "goog:chromeOptions": options });
        let Value::Object(caps) = caps else {
            unreachable!("an object")
        };
        let client =
            b.rt.block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&format!("http://{addr}")),
            )
            .unwrap_or_else(|e| {
                let log = std::fs::read_to_string(b._profile.path().join("chromedriver.log"));
                panic!("chromium starts: {e}\n{}", log.unwrap_or_default())
            });
        b.client = Some(client);
        b
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    pub fn goto(&self, url: &str) {
        self.rt
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }

    /// The text of every element `css` selects.
    pub fn texts(&self, css: &str) -> Vec<String> {
        self.read_texts(css)
            .unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    /// The text of every element `css` selects, or the driver's error: an
    /// element found on one page goes stale when the next one loads before
    /// its text is read.
    fn read_texts(&self, css: &str) -> Result<Vec<String>, fantoccini::error::CmdError> {
        self.rt.block_on(async {
            let mut out = Vec::new();
            for e in self.client().find_all(Locator::Css(css)).await? {
                out.push(e.text().await?);
            }
            Ok(out)
        })
    }

    /// The text of the first element `css` selects.
    pub fn text(&self, css: &str) -> String {
        self.texts(css)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("nothing matches {css}"))
    }

    /// Attribute `name` of every element `css` selects.
    pub fn attrs(&self, css: &str, name: &str) -> Vec<Option<String>> {
        self.rt.block_on(async {
            let mut out = Vec::new();
            for e in self.client().find_all(Locator::Css(css)).await.expect(css) {
                out.push(e.attr(name).await.expect("attr"));
            }
            out
        })
    }

    /// How many elements `css` selects.
    pub fn count(&self, css: &str) -> usize {
        self.rt
            .block_on(self.client().find_all(Locator::Css(css)))
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .len()
    }

    pub fn click(&self, css: &str) {
        self.rt.block_on(async {
            let e = self.client().find(Locator::Css(css)).await.expect(css);
            e.click().await.expect("click");
        })
    }

    pub fn js(&self, script: &str) -> Result<Value, fantoccini::error::CmdError> {
        self.rt.block_on(self.client().execute(script, vec![]))
    }

    /// Waits until `ok` holds for the text of `css`, reading it again and again.
    pub fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) {
        let end = Instant::now() + DEADLINE;
        loop {
            // A page still loading is read again, like one that does not
            // show `what` yet.
            let now = match self.read_texts(css) {
                Err(e) if e.is_stale_element_reference() => vec![e.to_string()],
                read => read.unwrap_or_else(|e| panic!("{css}: {e}")),
            };
            if now.first().is_some_and(|t| ok(t)) {
                return;
            }
            assert!(Instant::now() < end, "{css} never showed {what}: {now:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// With `ORCH_SCREENSHOTS=DIR`, saves the window as `DIR/serve-NAME.png`.
    pub fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("ORCH_SCREENSHOTS") else {
            return;
        };
        let png = self
            .rt
            .block_on(self.client().screenshot())
            .expect("screenshot");
        std::fs::write(Path::new(&dir).join(format!("serve-{name}.png")), png).expect("saved");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), c.close()).await });
        }
        let group = nix::unistd::Pid::from_raw(-(self.driver.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.driver.wait();
    }
}

/// An `orch` started in the background (a held run, a service), its output to null, stopped
/// when dropped: the file its steps wait for is written, then SIGTERM, then waited for.
struct Held {
    child: Child,
    go: PathBuf,
    exited: bool,
}

impl Held {
    fn start(t: &Test, args: &[&str]) -> Held {
        Held::spawn(t, t.with_args(args))
    }

    /// `orch`, its arguments and environment as `cmd` has them, held as [`Held::start`] does.
    fn spawn(t: &Test, mut cmd: Command) -> Held {
        let go = t.path().join("go");
        let child = cmd
            .env("ORCH_SIM_WAIT_FOR", &go)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("orch starts");
        Held {
            child,
            go,
            exited: false,
        }
    }

    /// Waits for orch to exit by itself (its run ended).
    fn wait_exit(&mut self) {
        let status = self.child.wait().expect("orch exits");
        assert!(status.success(), "orch: {status}");
        self.exited = true;
    }

    fn release(&self) {
        std::fs::write(&self.go, "").expect("go");
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.exited {
            return;
        }
        self.release();
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// Waits for the first whole line of log `name` in a run folder under `runs`: the run's id and
/// the line.
fn first_line_of(runs: &Path, name: &str) -> (String, String) {
    let mut found = (String::new(), String::new());
    wait_until(&format!("the first line of {name}"), DEADLINE, || {
        for d in std::fs::read_dir(runs).into_iter().flatten().flatten() {
            if let Ok(log) = std::fs::read_to_string(d.path().join("logs").join(name))
                && let Some(line) = log.lines().next()
            {
                found = (
                    d.file_name().to_string_lossy().into_owned(),
                    line.to_string(),
                );
                return true;
            }
        }
        false
    });
    found
}

fn serve(t: &Test) -> Server {
    let state = t.path().join(".orch");
    Server::start(
        t,
        &[
            "--bind",
            "127.0.0.1:0",
            "--state-dir",
            &state.to_string_lossy(),
        ],
    )
}

#[test]
fn the_runs_page_lists_simulated_runs_in_a_browser() {
    let (t, ids) = with_runs(3);
    let s = serve(&t);
    let b = Browser::start(true);
    b.goto(&format!("http://{}/runs", s.addr));
    let shown = b.texts("#runs tbody tr td:first-child");
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(shown, newest_first, "the runs, newest first");
    assert!(b.text("main").contains("3 runs"));
    b.screenshot("runs");
    // A run's link opens its page: its steps and their graph.
    b.click(&format!("a[href=\"/runs/{}\"]", ids[0]));
    b.wait_text("h1", "the run's id", |h| h.contains(&ids[0]));
    assert_eq!(
        b.texts("#steps tbody tr td:first-child"),
        ["first", "second"]
    );
    assert_eq!(b.texts("#steps .status"), ["completed", "completed"]);
    assert_eq!(b.texts("#graph g.step.completed").len(), 2);
    b.screenshot("run");
}

#[test]
fn a_running_pipelines_page_updates_its_statuses_and_log_tail_without_a_reload() {
    let t = Test::new().file("orch.toml", MANIFEST);
    let mut run = Held::start(&t, &["run", "--simulate", "--quiet"]);
    // The first step runs, held after its first log line.
    let runs = t.path().join(".orch/runs");
    let (id, first_line) = first_line_of(&runs, "001-first.log");
    let s = serve(&t);
    let b = Browser::start(true);
    b.goto(&format!("http://{}/runs/{id}", s.addr));
    // A mark on this page: gone if the page were loaded again.
    b.js("window.orchMark = 'this page'; return null;")
        .expect("js");
    assert_eq!(b.texts("#steps .status")[0], "running");
    // The graph is the plan's: the second step waits, pending, below the first.
    assert_eq!(
        b.attrs("#graph g.step.pending", "data-label"),
        [Some("second".to_string())]
    );
    assert_eq!(b.count("#graph path.need"), 1);
    // The tail is condensed as `orch logs` shows it: the first line is the session's start.
    let tail = b.text("#log-0");
    let first_shown = condensed(&first_line);
    assert!(
        first_shown.starts_with("· session ") && tail.contains(first_shown.trim()),
        "{tail:?} lacks {first_shown:?}"
    );
    assert!(!tail.contains("= result"), "{tail}");
    b.screenshot("run-live");
    run.release();
    b.wait_text("#log-0", "the step's last line", |t| t.contains("= result"));
    b.wait_text("#steps tbody tr:first-child .status", "completed", |s| {
        s == "completed"
    });
    b.wait_text("#steps tbody tr:nth-child(2) .status", "completed", |s| {
        s == "completed"
    });
    // Every line of the log, once, in order: none lost between the page and the stream.
    let log = std::fs::read_to_string(runs.join(&id).join("logs/001-first.log")).expect("log");
    let shown = b.text("#log-0");
    assert_eq!(
        shown.lines().collect::<Vec<_>>(),
        condensed(&log).lines().collect::<Vec<_>>()
    );
    // The second step started after the page was drawn: a row and a log tail of its own.
    assert_eq!(
        b.texts("#steps tbody tr td:first-child"),
        ["first", "second"]
    );
    b.wait_text("#log-1", "the second step's log", |t| {
        t.contains("= result")
    });
    // Its box was in the graph from the start (the plan's), pending, and turns completed.
    wait_until("both boxes completed", DEADLINE, || {
        b.count("#graph g.step.completed") == 2
    });
    b.wait_text("#run-status", "the run's end", |s| s != "running");
    assert_eq!(
        b.js("return window.orchMark;").expect("js"),
        json!("this page"),
        "the page was reloaded"
    );
    // The tokens and dollars the events brought are those the ended run's page shows.
    run.wait_exit();
    let spend = || {
        let mut shown = b.texts("#steps tbody td:nth-child(5), #steps tbody td:nth-child(6)");
        shown.extend([b.text("#run-tokens"), b.text("#run-usd")]);
        shown
    };
    let live = spend();
    assert!(live[0] != "0" && live[1].starts_with('$'), "{live:?}");
    b.goto(&format!("http://{}/runs/{id}", s.addr));
    assert_eq!(live, spend());
}

#[test]
fn a_live_page_shows_the_runs_end_also_when_its_run_finished_comes_late() {
    // The ledger records the run's end before orch writes the results file and then
    // `run_finished`. A results file that cannot be written (its name taken by a folder) is
    // tried three times, 200 ms apart, before it goes to TMPDIR: the stream looks (every 200 ms)
    // while the run has ended and `run_finished` is not there yet, as under a slow fsync.
    let t = Test::new()
        .file("orch.toml", MANIFEST)
        .allow_dead_run("its results file is a folder on purpose: the results go to TMPDIR");
    let tmp = t.path().join("tmp");
    std::fs::create_dir(&tmp).expect("tmp");
    let mut cmd = t.with_args(&["run", "--simulate", "--quiet"]);
    cmd.env("TMPDIR", &tmp);
    let mut run = Held::spawn(&t, cmd);
    let runs = t.path().join(".orch/runs");
    let (id, _) = first_line_of(&runs, "001-first.log");
    std::fs::create_dir_all(runs.join(&id).join("results.json/taken")).expect("a folder");
    let s = serve(&t);
    let b = Browser::start(true);
    b.goto(&format!("http://{}/runs/{id}", s.addr));
    assert_eq!(b.text("#run-status"), "running");
    run.release();
    b.wait_text("#run-status", "the run's end", |s| s == "completed");
    run.wait_exit();
    assert!(
        tmp.join(format!("orch-results-{id}.json")).exists(),
        "the results went to TMPDIR, after their three tries"
    );
}

/// A plan step whose tasks fan out into instances, then a review of them all.
const FAN_OUT: &str = r#"
name = "fanned"
[settings]
startup_delay = "0s"
[jobs.plan]
prompt = "split the work"
[jobs.plan.output_schema]
type = "object"
required = ["tasks"]
[jobs.plan.output_schema.properties.tasks]
type = "array"
[jobs.plan.output_schema.properties.tasks.items]
type = "object"
properties = { id = { type = "string" }, title = { type = "string" } }
[jobs.implement]
needs = ["plan"]
for_each = "${{ jobs.plan.outputs.structured.tasks }}"
prompt = "do ${{ item.title }}"
[jobs.review]
needs = ["implement"]
prompt = "review"
"#;

#[test]
fn a_fan_outs_instances_join_the_graph_as_they_start() {
    let t = Test::new().file("orch.toml", FAN_OUT);
    let run = Held::start(&t, &["run", "--simulate", "--quiet"]);
    let (id, _) = first_line_of(&t.path().join(".orch/runs"), "001-plan.log");
    let s = serve(&t);
    let b = Browser::start(true);
    b.goto(&format!("http://{}/runs/{id}", s.addr));
    b.js("window.orchMark = 'this page'; return null;")
        .expect("js");
    // Before the fan-out: a box per job of the plan, in layers, an arrow for each need.
    let jobs = || b.attrs("#graph g.job", "data-job");
    let names = |v: Vec<Option<String>>| v.into_iter().flatten().collect::<Vec<_>>();
    assert_eq!(names(jobs()), ["plan", "implement", "review"]);
    assert_eq!(b.count("#graph path.need"), 2);
    assert_eq!(b.count("#graph g.step.pending"), 2);
    run.release();
    // The plan's three tasks start as instances: the graph is drawn again with them, in the
    // fan-out's box, without a reload.
    wait_until("three instances in the graph", DEADLINE, || {
        b.count("#graph g[data-job=implement] g.step") == 3
    });
    b.wait_text("#run-status", "the run's end", |s| s != "running");
    wait_until("every box completed", DEADLINE, || {
        b.count("#graph g.step.completed") == 5
    });
    let labels = names(b.attrs("#graph g[data-job=implement] g.step", "data-label"));
    assert_eq!(
        labels,
        [
            "implement[task-1]",
            "implement[task-2]",
            "implement[task-3]"
        ]
    );
    assert_eq!(
        b.js("return window.orchMark;").expect("js"),
        json!("this page"),
        "the page was reloaded"
    );
    b.screenshot("run-fan-out");
    // Each row's log link, taken on the live page, opens that step's log, also now the run
    // ended and its table is the results file's (in another order).
    let rows = b
        .js(
            "return [...document.querySelectorAll('#steps tbody tr')].map(r => \
             [r.cells[0].textContent, r.cells[7].querySelector('a')?.getAttribute('href')]);",
        )
        .expect("js");
    let rows: Vec<(String, Option<String>)> = serde_json::from_value(rows).expect("rows");
    // The fan-out's expansion step ran nothing: no log; the five others have one.
    let linked: Vec<&(String, Option<String>)> = rows.iter().filter(|r| r.1.is_some()).collect();
    assert_eq!(linked.len(), 5, "{rows:?}");
    assert!(rows.contains(&("implement".to_string(), None)), "{rows:?}");
    b.goto(&format!("http://{}/runs/{id}", s.addr));
    assert!(b.text("#outputs-0").contains("task-3"));
    for (label, link) in linked {
        let link = link.as_deref().expect("a link");
        b.goto(&format!("http://{}{link}", s.addr));
        assert_eq!(b.text("h1"), format!("Log of {label}"), "{link}");
    }
}

#[test]
fn the_spend_chart_has_a_point_per_day_in_a_browser() {
    let t = Test::new()
        .file("orch.toml", &windowed())
        .allow_dead_run("the seeded runs are written through the ledger's API: none wrote results");
    seed_days(&t.path().join(".orch"), 10);
    // A run held to a window budget, which the page then draws.
    run_simulated(&t);
    let s = serve(&t);
    let b = Browser::start(true);
    b.goto(&format!("http://{}/spend?since=20d", s.addr));
    let xs = b.attrs("#chart-usd circle", "cx");
    assert_eq!(xs.len(), 10, "one point per day: {xs:?}");
    let mut distinct: Vec<_> = xs.into_iter().flatten().collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10, "ten days, ten places on the axis");
    assert_eq!(b.texts("#chart-tokens circle").len(), 10);
    assert!(b.text("#by-model").contains("claude-sonnet-4-5"));
    // The bar charts name their bars.
    for (chart, name) in [("by-model", "claude-sonnet-4-5"), ("by-command", "/review")] {
        let labels = b.texts(&format!("#{chart} svg text"));
        assert!(labels.iter().any(|l| l == name), "{chart}: {labels:?}");
    }
    assert_eq!(b.text("#window-budgets h2"), "Window budget: 5h, $0.50");
    assert_eq!(b.texts("#chart-window-0-usd svg").len(), 1);
    b.rt.block_on(b.client().set_window_size(1280, 2300))
        .expect("a taller window");
    b.screenshot("spend");
}

#[test]
fn the_table_pages_work_without_javascript() {
    let (t, ids) = with_runs(2);
    let s = serve(&t);
    let b = Browser::start(false);
    b.goto(&format!("http://{}/runs", s.addr));
    assert_eq!(b.texts("#runs tbody tr").len(), 2);
    // The filter form submits without a script.
    b.rt.block_on(async {
        let form = b
            .client()
            .form(Locator::Css("form.filters"))
            .await
            .expect("form");
        form.set_by_name("status", "failed").await.expect("status");
        form.submit().await.expect("submit");
    });
    b.wait_text("main", "no failed run", |m| m.contains("0 runs"));
    b.goto(&format!("http://{}/runs/{}", s.addr, ids[1]));
    assert_eq!(b.texts("#steps .status"), ["completed", "completed"]);
    b.goto(&format!(
        "http://{}/runs/{}/steps/first/log",
        s.addr, ids[1]
    ));
    assert!(b.text("body").contains("\"type\":\"result\""));
}

/// Log lines as `orch logs` shows them, the page's tails too.
fn condensed(log: &str) -> String {
    let mut seen = std::collections::HashSet::new();
    log.lines()
        .filter_map(|l| orch::report::history::render_log_line(l, &mut seen))
        .map(|l| l + "\n")
        .collect()
}

#[test]
fn the_schedule_page_shows_a_running_cron_service_and_its_results() {
    let t = Test::new().file("orch.toml", MANIFEST);
    let _service = Held::start(
        &t,
        &[
            "run",
            "--simulate",
            "--quiet",
            "--schedule",
            "*/2 * * * * *",
        ],
    );
    std::fs::write(t.path().join("go"), "").expect("go");
    let services = t.path().join(".orch/services");
    wait_until("the service's first result", DEADLINE, || {
        std::fs::read_dir(&services)
            .into_iter()
            .flatten()
            .flatten()
            .any(|f| {
                std::fs::read_to_string(f.path()).is_ok_and(|s| s.contains("\"exit_code\": 0"))
            })
    });
    let s = serve(&t);
    let b = Browser::start(true);
    b.goto(&format!("http://{}/schedule", s.addr));
    assert_eq!(b.text("section.service h2 .status"), "running");
    assert!(b.text("section.service").contains("*/2 * * * * *"));
    assert_eq!(b.texts("ul.fires li").len(), 5);
    assert!(
        b.texts("section.service tbody tr")
            .iter()
            .any(|r| r.contains("exit 0"))
    );
    b.screenshot("schedule");
}
