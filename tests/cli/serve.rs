//! `orch serve` over HTTP: the real binary serving a state folder that real simulated runs
//! wrote, asked with a plain HTTP/1.1 client (a TCP stream, so that a request's path reaches
//! the server exactly as written, `..` and `%2e%2e` included).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use chrono::{Duration as Days, Utc};

use super::harness::Test;

/// Two simulated agent steps, the second needing the first (the browser tests use it too).
pub(super) const MANIFEST: &str = r#"
name = "served"
[settings]
startup_delay = "0s"
[jobs.first]
prompt = "hello"
[jobs.second]
prompt = "world"
needs = ["first"]
"#;

/// [`MANIFEST`] held to a rolling window of 5 hours and $0.50.
pub(super) fn windowed() -> String {
    format!("{MANIFEST}[budget.window]\nperiod = \"5h\"\nusd = 0.5\n")
}

/// A running `orch serve`, stopped (SIGTERM, then waited for) when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(t: &Test, args: &[&str]) -> Server {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let mut child = t
            .with_args(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("orch serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("orch serve says where it listens");
        let addr = line
            .trim()
            .strip_prefix("orch serve: listening on http://")
            .and_then(|a| a.strip_suffix('/'))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server { child, addr }
    }

    pub fn get(&self, path: &str) -> Reply {
        get(&self.addr, path, &[])
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// `GET path` with extra header lines, read to the end (the server closes after it).
pub fn get(addr: &str, path: &str, headers: &[&str]) -> Reply {
    let mut s = TcpStream::connect(addr).expect("the dashboard accepts");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("request sent");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("answer read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// A test folder with `n` finished simulated runs; their ids, oldest first.
pub fn with_runs(n: usize) -> (Test, Vec<String>) {
    let t = Test::new().file("orch.toml", MANIFEST);
    for _ in 0..n {
        run_simulated(&t);
    }
    let mut ids: Vec<String> = std::fs::read_dir(t.path().join(".orch/runs"))
        .expect("runs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    (t, ids)
}

/// One run of the test folder's manifest with the simulated agent, which must succeed.
pub fn run_simulated(t: &Test) {
    let out = t
        .with_args(&["run", "--simulate", "--quiet"])
        .output()
        .expect("orch runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn state(t: &Test) -> String {
    t.path().join(".orch").to_string_lossy().into_owned()
}

fn log_of(t: &Test, id: &str, job: &str) -> PathBuf {
    let dir = t.path().join(".orch/runs").join(id).join("logs");
    std::fs::read_dir(&dir)
        .expect("logs")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            name.contains(job) && !name.contains("stderr")
        })
        .unwrap_or_else(|| panic!("no log of {job} in {}", dir.display()))
}

#[test]
fn the_runs_page_lists_simulated_runs_and_each_run_its_steps() {
    let (t, ids) = with_runs(2);
    let s = Server::start(&t, &["--bind", "127.0.0.1:0", "--state-dir", &state(&t)]);
    let runs = s.get("/runs");
    assert_eq!(runs.status, 200, "{runs:?}");
    for id in &ids {
        assert!(
            runs.body.contains(&format!("href=\"/runs/{id}\"")),
            "{id} missing"
        );
    }
    assert!(runs.body.contains("2 runs"));
    // Filters: no run failed.
    assert!(s.get("/runs?status=failed").body.contains("0 runs"));
    assert_eq!(s.get("/runs?since=nonsense").status, 400);
    let run = s.get(&format!("/runs/{}", ids[0]));
    assert_eq!(run.status, 200);
    for text in [
        "data-label=\"first\"",
        "data-label=\"second\"",
        "<svg",
        "status completed",
    ] {
        assert!(run.body.contains(text), "{text} missing from the run page");
    }
    // Each job's outputs, under its step, secrets masked like everything else.
    let outputs = between(&run.body, "id=\"outputs-0\"", "</details>");
    assert!(outputs.contains("&quot;session_id&quot;"), "{outputs}");
    assert!(run.body.contains("href=\"#outputs-1\""));
    // The tails are condensed as `orch logs` shows a log; the whole log is its lines as written.
    let tails = between(&run.body, "<h2>Log tails</h2>", "</main>");
    assert!(tails.contains("= result success: 2 turns"), "{tails}");
    assert!(tails.contains("→ Bash"), "{tails}");
    assert!(!tails.contains("&quot;type&quot;"), "{tails}");
    let log = s.get(&format!("/runs/{}/steps/first/log", ids[0]));
    assert_eq!(log.status, 200);
    assert!(
        log.body.contains("&quot;type&quot;:&quot;result&quot;"),
        "the log's result line"
    );
    // A finished run's event stream sends its events to `run_finished` and ends with `end`, its
    // status (a stream the server only closed, a browser would open again and read it all anew).
    let events = s.get(&format!("/runs/{}/events", ids[0]));
    for e in ["\"run_started\"", "\"step_finished\"", "\"run_finished\""] {
        assert!(events.body.contains(e), "{e} missing from {events:?}");
    }
    let end = events.body.rfind("event: end").expect("an end event");
    assert!(end > events.body.rfind("run_finished").expect("run_finished"));
    assert!(
        events.body[end..].contains(r#"{"status":"completed"}"#),
        "{events:?}"
    );
    assert_eq!(s.get("/runs/nope").status, 404);
}

#[test]
fn paths_from_requests_never_leave_the_state_folder() {
    let (t, ids) = with_runs(1);
    let outside = t.path().join("outside.txt");
    std::fs::write(&outside, "OUTSIDE-SECRET-CONTENT\n").expect("write");
    // The second step's log becomes a link out of the state folder.
    let log = log_of(&t, &ids[0], "second");
    std::fs::remove_file(&log).expect("rm");
    std::os::unix::fs::symlink(&outside, &log).expect("symlink");
    let s = Server::start(&t, &["--bind", "127.0.0.1:0", "--state-dir", &state(&t)]);
    let id = &ids[0];
    for path in [
        "/runs/..%2f..%2f..%2fetc%2fpasswd".to_string(),
        "/runs/%2e%2e/steps/first/log".to_string(),
        "/runs/%2e%2e%2f%2e%2e%2fetc/steps/first/log".to_string(),
        "/runs/../../../etc/passwd".to_string(),
        "//etc/passwd".to_string(),
        "/assets/..%2f..%2fCargo.toml".to_string(),
        "/assets/%2fetc%2fpasswd".to_string(),
        format!("/runs/{id}/steps/first/log/..%2f..%2f..%2f..%2fetc%2fpasswd"),
        format!("/runs/{id}%2f..%2f..%2f/steps/first/log"),
        format!("/runs/{id}/steps/..%2fsecond/log"),
        format!("/runs/{id}/steps/second/log"),
        format!("/runs/{id}"),
        format!("/runs/{id}/steps/second/tail"),
    ] {
        let r = s.get(&path);
        assert!(!r.body.contains("root:x:0"), "{path} read /etc/passwd");
        assert!(
            !r.body.contains("OUTSIDE-SECRET"),
            "{path} followed the link out"
        );
        assert!(!r.body.contains("[package]"), "{path} read the source");
    }
    assert_eq!(s.get(&format!("/runs/{id}/steps/second/log")).status, 403);
    // A 64 KiB label names no step.
    let long = s.get(&format!("/runs/{id}/steps/{}/log", "x".repeat(65_536)));
    assert!([404, 414, 431].contains(&long.status), "{}", long.status);
}

#[test]
fn logs_are_escaped_masked_and_paged() {
    let (t, ids) = with_runs(1);
    let secret = "sk-dashboard-test-0123456789";
    let log = log_of(&t, &ids[0], "first");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("log");
    writeln!(
        f,
        "<script>alert(1)</script> \x1b[31mred\x1b[0m \x1b]0;title\x07 {secret}"
    )
    .expect("w");
    // A huge log: 6 MB of lines after it.
    let line = "x".repeat(99);
    for _ in 0..60_000 {
        writeln!(f, "{line}").expect("w");
    }
    drop(f);
    let s = Server::start_env(&t, secret);
    let page = s.get(&format!("/runs/{}/steps/first/log", ids[0]));
    assert_eq!(page.status, 200);
    assert!(
        page.body.len() < 200_000,
        "a page of a 6 MB log is {} bytes",
        page.body.len()
    );
    assert!(page.body.contains("later →"));
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.body.contains("<script>alert"));
    assert!(
        !page.body.contains('\x1b'),
        "a terminal escape reached the page"
    );
    assert!(!page.body.contains(secret), "the secret was not masked");
    // The run page's tail is the log's end, not all of it.
    let run = s.get(&format!("/runs/{}", ids[0]));
    assert!(
        run.body.len() < 200_000,
        "the run page is {} bytes",
        run.body.len()
    );
    // The last page, by offset.
    let len = std::fs::metadata(&log).expect("len").len();
    let last = s.get(&format!(
        "/runs/{}/steps/first/log?offset={}",
        ids[0],
        len - 1000
    ));
    assert!(last.body.contains(&line) && last.body.len() < 20_000);
}

impl Server {
    /// A server whose environment holds `secret` as a token (masked like every secret).
    fn start_env(t: &Test, secret: &str) -> Server {
        let mut child = t
            .with_args(&["serve", "--bind", "127.0.0.1:0", "--state-dir", &state(t)])
            .env("SOME_SERVICE_TOKEN", secret)
            .stdout(Stdio::piped())
            .spawn()
            .expect("orch serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("first line");
        let addr = line.trim()["orch serve: listening on http://".len()..]
            .trim_end_matches('/')
            .to_string();
        Server { child, addr }
    }
}

#[test]
fn the_spend_chart_has_a_point_per_day_of_a_ledger_seeded_over_ten_days() {
    let t = Test::new()
        .allow_dead_run("the runs are seeded through the ledger's API: none wrote a results file");
    seed_days(&t.path().join(".orch"), 10);
    let s = Server::start(&t, &["--bind", "127.0.0.1:0", "--state-dir", &state(&t)]);
    let page = s.get("/spend?since=20d");
    assert_eq!(page.status, 200);
    let chart = between(&page.body, "id=\"chart-usd\"", "</svg>");
    assert_eq!(chart.matches("<circle").count(), 10, "one point per day");
    let today = Utc::now().date_naive();
    for k in 0..10 {
        let day = (today - Days::days(k)).format("%Y-%m-%d").to_string();
        assert!(
            page.body.contains(&format!("<td>{day}</td>")),
            "{day} missing from the table"
        );
    }
    assert!(page.body.contains("id=\"by-model\"") && page.body.contains("claude-sonnet-4-5"));
    // A shorter period shows fewer days.
    let week = s.get("/spend?since=3d");
    let chart = between(&week.body, "id=\"chart-usd\"", "</svg>");
    assert!(chart.matches("<circle").count() <= 4);
    assert_eq!(s.get("/spend?since=soon").status, 400);
}

#[test]
fn the_spend_page_draws_each_window_budgets_use_against_its_limit() {
    // $0.50 a minute ago, $0.60 a day ago, $0.70 two days ago; then a simulated run held to a
    // 5-hour window of $0.50.
    let t = Test::new()
        .file("orch.toml", &windowed())
        .allow_dead_run("the seeded runs are written through the ledger's API: none wrote results");
    seed_days(&t.path().join(".orch"), 3);
    run_simulated(&t);
    let results = std::fs::read_dir(t.path().join(".orch/runs"))
        .expect("runs")
        .map(|e| e.expect("entry").path().join("results.json"))
        .find(|p| p.exists())
        .expect("the run's results file");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results).expect("read")).expect("json");
    let window = results["budgets"]
        .as_array()
        .expect("budgets")
        .iter()
        .find(|b| b["scope"] == "window 5h")
        .expect("the window scope");
    assert_eq!(window["period_seconds"], 5 * 3600);
    // What the window held at the run's end: the seeded $0.50 and the run's own spend.
    let held = window["usd_used"].as_f64().expect("usd_used");
    assert!(held > 0.5, "{window}");

    let s = Server::start(&t, &["--bind", "127.0.0.1:0", "--state-dir", &state(&t)]);
    let page = s.get("/spend?since=36h");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<h2>Window budget: 5h, $0.50</h2>"),
        "{}",
        page.body
    );
    // A point per hour of the 36 hours (37 when the period starts inside an hour).
    let chart = between(&page.body, "id=\"chart-window-0-usd\"", "</svg>");
    let line = chart
        .split("<polyline")
        .find(|l| l.contains("stroke=\"#2563EB\""))
        .expect("the line of the window's use");
    let points = line
        .split("points=\"")
        .nth(1)
        .and_then(|p| p.split('"').next());
    let points = points
        .expect("the line's points")
        .split_whitespace()
        .count();
    assert!((36..=37).contains(&points), "{points} points: {line}");
    // The limit is drawn, in its own colour.
    assert!(chart.contains("stroke=\"#DC2626\""), "{chart}");
    let cells: Vec<&str> = between(&page.body, "id=\"window-0\"", "</table>")
        .split("<td")
        .skip(1)
        .map(|c| &c[c.find('>').expect("a cell") + 1..c.find("</td>").expect("its end")])
        .collect();
    assert_eq!(cells[0], "$0.50", "{cells:?}");
    // Now: what the run's window held (nothing was spent since).
    assert_eq!(cells[1], format!("${held:.2}"), "{cells:?}");
    // Over the limit: the five hours whose window held yesterday's $0.60, and the last hour,
    // which holds the run; two days ago is more than 5 hours before the period.
    assert_eq!(cells[4], "6h", "{cells:?}");
    // A period before any spend has the budget but nothing over it.
    assert!(s.get("/spend?since=30m").body.contains("Window budget: 5h"));
}

fn between<'a>(text: &'a str, from: &str, to: &str) -> &'a str {
    let start = text.find(from).unwrap_or_else(|| panic!("{from} missing"));
    let rest = &text[start..];
    &rest[..rest.find(to).map_or(rest.len(), |i| i + to.len())]
}

/// A ledger with one run a day for `days` days up to today, written through orch's own ledger
/// functions (no SQL here).
pub fn seed_days(state: &Path, days: i64) {
    use orch::ledger::store::{RunRow, StepRow};
    use orch::ledger::{Delta, Kind, Ledger, Nanos};
    let l = Ledger::open(&orch::ledger::path(state)).expect("ledger");
    for k in 0..days {
        let at = Utc::now() - Days::days(k) - Days::minutes(1);
        let id = format!("seed-{k:02}");
        let run_dir = state.join("runs").join(&id);
        l.begin_run(&RunRow {
            id: id.clone(),
            name: "seeded".into(),
            manifest: state.join("orch.toml"),
            run_dir: run_dir.clone(),
            started_at: at,
        })
        .expect("run");
        let step = StepRow {
            step: 0,
            job: "review".into(),
            label: "review".into(),
            command: Some("/review".into()),
            session_id: None,
            resume: false,
            is_agent: true,
            log: run_dir.join("logs/review.log"),
            attempt: 1,
        };
        l.begin_step(&id, &step, at).expect("step");
        let d = Delta {
            input: 1000 + k,
            output: 200,
            cache_read: 0,
            cache_creation: 0,
            usd: Nanos::from_usd(0.5 + k as f64 / 10.0),
        };
        l.record(&id, 0, Some("claude-sonnet-4-5"), Kind::Final, &d, at)
            .expect("usage");
        l.finish_step(&id, 0, "completed", at).expect("finish");
        l.finish_run(&id, "completed", 0, None, at)
            .expect("finish run");
    }
}

#[test]
fn a_token_is_required_off_loopback_and_checked_on_every_request() {
    let t = Test::new();
    // Off loopback without a token: refused before anything listens.
    let out = t
        .with_args(&["serve", "--bind", "0.0.0.0:0"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--bind") && err.contains("--token"), "{err}");
    let token = "a-long-random-token-42";
    let s = Server::start(&t, &["--bind", "127.0.0.1:0", "--token", token]);
    check_token(&s.addr, token);
}

fn check_token(addr: &str, token: &str) {
    assert_eq!(get(addr, "/runs", &[]).status, 401);
    assert_eq!(get(addr, "/assets/style.css", &[]).status, 401);
    assert_eq!(get(addr, "/runs?token=wrong", &[]).status, 401);
    assert_eq!(
        get(addr, "/runs", &["Authorization: Bearer wrong"]).status,
        401
    );
    let bearer = format!("Authorization: Bearer {token}");
    assert_eq!(get(addr, "/runs", &[&bearer]).status, 200);
    let first = get(addr, &format!("/runs?token={token}"), &[]);
    assert_eq!(first.status, 200);
    assert!(
        first
            .head
            .to_ascii_lowercase()
            .contains("set-cookie: orch_token=")
    );
    let cookie = format!("Cookie: orch_token={token}");
    assert_eq!(get(addr, "/spend", &[&cookie]).status, 200);
}

#[test]
fn bound_off_loopback_in_a_network_namespace_the_token_is_checked() {
    // This thread (and the server it starts) gets a network namespace of its own with only
    // loopback, so binding every address exposes nothing outside the test.
    let t = Test::new();
    let token = "namespace-token-0123";
    std::thread::spawn(move || {
        super::sandbox::enter();
        let s = Server::start(&t, &["--bind", "0.0.0.0:0", "--token", token]);
        let port = s.addr.rsplit(':').next().expect("a port").to_string();
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "the server never accepted");
        }
        check_token(&addr, token);
    })
    .join()
    .expect("the namespace test passed");
}
