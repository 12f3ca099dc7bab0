//! Integration tests of `orch::process` against real processes: framing, draining, the stop
//! ladder, leaked grandchildren, the drop guard and the guardian. No sleeps synchronise anything:
//! tests wait for a line or a condition, each with a deadline. Every kill test asserts that no
//! process of the group survives, by pid, through `/proc`.
//!
//! This binary doubles as the guardian and as a stand-in for orch: `guardian_entry` and
//! `fake_orch_entry` do nothing in a normal run, and take over when their marker argument is given.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use orch::process::{
    self, Child, Exit, Guardian, Line, Lines, SpawnSpec, StopLadder, StopStage, Stream,
    group_members, pid_alive, spawn,
};

use tokio::time::{Instant, sleep, timeout};

const DEADLINE: Duration = Duration::from_secs(30);
const GUARDIAN_MARK: &str = "__orch_test_guardian";
const FAKE_ORCH_MARK: &str = "__orch_test_fake_orch";

fn sh(dir: &Path, script: &str) -> SpawnSpec {
    SpawnSpec {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        cwd: dir.to_path_buf(),
        env: vec![("ORCH_TEST".into(), "1".into())],
        stdout_log: dir.join("stdout.log"),
        stderr_log: dir.join("stderr.log"),
        max_line_bytes: 64 << 20,
    }
}

/// Collects every line until both pipes close, then the exit.
async fn run_to_end(mut child: Child) -> (Vec<Line>, Exit) {
    let mut lines = child.take_lines();
    let waiting = tokio::spawn(child.wait());
    let mut all = Vec::new();
    timeout(DEADLINE, async {
        while let Some(line) = lines.recv().await {
            all.push(line);
        }
    })
    .await
    .expect("the pipes closed in time");
    let exit = timeout(DEADLINE, waiting).await.expect("exited in time");
    (all, exit.expect("wait did not panic"))
}

fn texts(lines: &[Line], stream: Stream) -> Vec<String> {
    lines
        .iter()
        .filter(|line| line.stream == stream)
        .map(|line| String::from_utf8_lossy(&line.bytes).into_owned())
        .collect()
}

/// Waits for a stdout line equal to `want` and returns the lines before it.
async fn line_until(lines: &mut Lines, want: &str) -> Vec<String> {
    let mut before = Vec::new();
    timeout(DEADLINE, async {
        while let Some(line) = lines.recv().await {
            let text = String::from_utf8_lossy(&line.bytes).into_owned();
            if text == want {
                return;
            }
            before.push(text);
        }
        panic!("the pipes closed before {want:?}");
    })
    .await
    .expect("the line came in time");
    before
}

/// Polls `condition` until it holds; fails the test at the deadline.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        sleep(Duration::from_millis(5)).await;
    }
}

/// Asserts that every pid in `pids` is dead and group `pgid` is empty.
async fn assert_group_dead(pgid: u32, pids: &[u32]) {
    eventually("the group is dead", || {
        pids.iter().all(|&pid| !pid_alive(pid)) && group_members(pgid).is_empty()
    })
    .await;
}

/// Waits until `sleeps` members of group `pgid` have exec'd `sleep`, and returns all members.
///
/// Waiting for `ready` is not enough before a SIGINT: `sh -c` catches SIGINT, and so does its
/// fork until it execs, so a SIGINT landing in between is swallowed and nobody exits.
async fn settled_group(pgid: u32, sleeps: usize) -> Vec<u32> {
    let mut members = Vec::new();
    eventually("the group has settled", || {
        members = group_members(pgid);
        let comm = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/comm"));
        let running = members
            .iter()
            .filter(|&&pid| comm(pid).is_ok_and(|comm| comm.trim_end() == "sleep"));
        running.count() == sleeps
    })
    .await;
    members
}

#[tokio::test]
async fn echoes_lines_and_logs_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let child = spawn(
        &sh(dir.path(), "echo one; echo two >&2; echo $ORCH_TEST"),
        None,
    )
    .await
    .expect("spawned");
    let (lines, exit) = run_to_end(child).await;
    assert_eq!(texts(&lines, Stream::Stdout), ["one", "1"]);
    assert_eq!(texts(&lines, Stream::Stderr), ["two"]);
    assert!(exit.success(), "{exit:?}");
    assert_eq!((exit.signal, exit.stopped_by), (None, None));
    assert!(exit.leaked.is_empty());
    let log = std::fs::read(dir.path().join("stdout.log")).expect("log");
    assert_eq!(log, b"one\n1\n");
}

#[tokio::test]
async fn drains_heavy_stdout_and_stderr_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = "(yes eeee | head -c 5000000 >&2) & yes oooo | head -c 5000000; wait; exit 3";
    let child = spawn(&sh(dir.path(), script), None).await.expect("spawned");
    let (lines, exit) = run_to_end(child).await;
    assert_eq!(exit.code, Some(3));
    for (stream, text) in [(Stream::Stdout, "oooo"), (Stream::Stderr, "eeee")] {
        let mine: Vec<&Line> = lines.iter().filter(|l| l.stream == stream).collect();
        assert_eq!(mine.len(), 1_000_000);
        assert!(
            mine.iter()
                .all(|l| l.bytes == text.as_bytes() && !l.truncated)
        );
    }
    for log in ["stdout.log", "stderr.log"] {
        let len = std::fs::metadata(dir.path().join(log)).expect("log").len();
        assert_eq!(len, 5_000_000, "{log}");
    }
}

#[tokio::test]
async fn truncates_a_20_mb_line_but_logs_it_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh(
        dir.path(),
        "head -c 20000000 /dev/zero | tr '\\0' x; echo; echo after",
    );
    spec.max_line_bytes = 1 << 20;
    let child = spawn(&spec, None).await.expect("spawned");
    let (lines, exit) = run_to_end(child).await;
    assert!(exit.success());
    assert_eq!(lines.len(), 2);
    assert!(lines[0].truncated);
    assert_eq!(lines[0].bytes.len(), 1 << 20);
    assert!(lines[0].bytes.iter().all(|&b| b == b'x'));
    assert_eq!(
        (lines[1].bytes.as_slice(), lines[1].truncated),
        (&b"after"[..], false)
    );
    let len = std::fs::metadata(dir.path().join("stdout.log"))
        .expect("log")
        .len();
    assert_eq!(len, 20_000_000 + 1 + 6);
}

#[tokio::test]
async fn passes_non_utf8_bytes_and_a_last_line_without_newline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let child = spawn(&sh(dir.path(), r"printf '\377\376ok\r\nlast'"), None)
        .await
        .expect("spawned");
    let (lines, _) = run_to_end(child).await;
    let bytes: Vec<&[u8]> = lines.iter().map(|l| l.bytes.as_slice()).collect();
    assert_eq!(bytes, [&b"\xff\xfeok\r"[..], b"last"]);
}

/// Starts `script` (which must print `ready` once set up), stops it with `ladder`, and checks
/// that the group is gone afterwards.
async fn stop_with(script: &str, ladder: StopLadder) -> Exit {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = spawn(&sh(dir.path(), script), None).await.expect("spawned");
    let pgid = child.pid();
    line_until(child.lines(), "ready").await;
    let members = settled_group(pgid, 1).await;
    let stopper = child.stopper();
    stopper.stop(ladder);
    stopper.stop(ladder); // idempotent
    let exit = timeout(DEADLINE, child.wait())
        .await
        .expect("stopped in time");
    assert_group_dead(pgid, &members).await;
    exit
}

#[tokio::test]
async fn ladder_stops_at_sigint_when_the_child_obeys() {
    let long = Duration::from_secs(20);
    let ladder = StopLadder {
        grace_int: long,
        grace_term: long,
    };
    let exit = stop_with("echo ready; sleep 1000", ladder).await;
    assert_eq!(exit.stopped_by, Some(StopStage::Int));
    assert_eq!(exit.signal, Some(process::Signal::SIGINT as i32));
}

#[tokio::test]
async fn ladder_escalates_to_sigterm_when_sigint_is_ignored() {
    let ladder = StopLadder {
        grace_int: Duration::from_millis(200),
        grace_term: Duration::from_secs(20),
    };
    let exit = stop_with("trap '' INT; echo ready; sleep 1000", ladder).await;
    assert_eq!(exit.stopped_by, Some(StopStage::Term));
    assert_eq!(exit.signal, Some(process::Signal::SIGTERM as i32));
}

#[tokio::test]
async fn ladder_ends_with_sigkill_when_int_and_term_are_ignored() {
    let short = Duration::from_millis(200);
    let ladder = StopLadder {
        grace_int: short,
        grace_term: short,
    };
    let exit = stop_with("trap '' INT TERM; echo ready; sleep 1000", ladder).await;
    assert_eq!(exit.stopped_by, Some(StopStage::Kill));
    assert_eq!(exit.signal, Some(process::Signal::SIGKILL as i32));
}

#[tokio::test]
async fn kill_takes_the_group_down_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = "trap '' INT TERM; sleep 1000 & echo ready; wait";
    let mut child = spawn(&sh(dir.path(), script), None).await.expect("spawned");
    let pgid = child.pid();
    line_until(child.lines(), "ready").await;
    let members = settled_group(pgid, 1).await;
    child.stopper().kill();
    let exit = timeout(DEADLINE, child.wait())
        .await
        .expect("killed in time");
    assert_eq!(exit.stopped_by, Some(StopStage::Kill));
    assert_group_dead(pgid, &members).await;
}

#[tokio::test]
async fn leaked_grandchild_is_reported_and_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let child = spawn(&sh(dir.path(), "sleep 1000 & echo $!; echo started"), None)
        .await
        .expect("spawned");
    let pgid = child.pid();
    let started = Instant::now();
    let (lines, exit) = run_to_end(child).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "wait hung on the held pipe"
    );
    let out = texts(&lines, Stream::Stdout);
    assert_eq!(out[1], "started");
    let grandchild: u32 = out[0].parse().expect("a pid");
    assert!(exit.success());
    assert_eq!(exit.leaked, [grandchild]);
    assert!(!pid_alive(grandchild), "the leaked grandchild survived");
    assert_group_dead(pgid, &[grandchild]).await;
}

#[tokio::test]
async fn dropping_the_child_kills_the_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = "sleep 1000 & sleep 1000 & echo ready; wait";
    let mut child = spawn(&sh(dir.path(), script), None).await.expect("spawned");
    let pgid = child.pid();
    line_until(child.lines(), "ready").await;
    let members = settled_group(pgid, 2).await;
    drop(child);
    assert_group_dead(pgid, &members).await;
}

#[tokio::test]
async fn spawn_reports_a_missing_program() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh(dir.path(), "");
    spec.program = dir.path().join("no-such-program");
    let err = spawn(&spec, None).await.expect_err("nothing to run");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

/// What a failed exec or a missing working directory reports, as `execvp` would: a file that is
/// not executable is refused, and a `PATH` search goes past one to the next match.
#[tokio::test]
async fn spawn_reports_a_program_it_may_not_run_and_a_missing_working_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "#!/bin/sh\necho never\n").expect("written");
    let mut spec = sh(dir.path(), "");
    spec.program = plain.clone();
    let err = spawn(&spec, None).await.expect_err("not executable");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");

    let mut spec = sh(&dir.path().join("gone"), "true");
    spec.stdout_log = dir.path().join("out.log");
    let err = spawn(&spec, None).await.expect_err("no working directory");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");

    // In the job's PATH: the first entry has `plain` but may not run it, the second can.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let runnable = bin.join("plain");
    std::fs::write(&runnable, "#!/bin/sh\necho ran \"$0\"\n").expect("written");
    std::fs::set_permissions(&runnable, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut spec = sh(dir.path(), "");
    spec.program = "plain".into();
    spec.args.clear();
    spec.env
        .push(("PATH".into(), format!(".:{}", bin.display()).into()));
    let (lines, exit) = run_to_end(spawn(&spec, None).await.expect("spawned")).await;
    assert!(exit.success(), "{exit:?}");
    // (A script's $0 is the path the kernel ran it from.)
    assert_eq!(
        texts(&lines, Stream::Stdout),
        [format!("ran {}", runnable.display())]
    );
}

/// With cgroups (root, cgroup v2 mounted), a step's leader is in a step cgroup under the run's
/// when it runs the job's program: the clone entered it. An ended step's empty cgroup serves the
/// next step, unless the step left something in it (here a cgroup of its own).
#[tokio::test]
async fn a_step_runs_in_a_step_cgroup_which_a_later_step_reuses_once_empty() {
    let guardian = start_guardian();
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = std::fs::read_to_string("/proc/mounts")
        .expect("mounts")
        .lines()
        .find_map(|l| {
            let mut fields = l.split_whitespace().skip(1);
            let point = fields.next()?;
            (fields.next()? == "cgroup2").then(|| point.to_string())
        });
    let cgroup_of_step = async |make_sub: bool| {
        let mut script = "sed -n 's/^0:://p' /proc/self/cgroup".to_string();
        if make_sub {
            script.push_str(&format!(
                "; mkdir \"{}$(sed -n 's/^0:://p' /proc/self/cgroup)/sub\"",
                mount.as_deref().unwrap_or("/nowhere")
            ));
        }
        let spec = sh(dir.path(), &script);
        let (lines, exit) = run_to_end(spawn(&spec, Some(&guardian)).await.expect("spawned")).await;
        let out = texts(&lines, Stream::Stdout);
        (exit, out.first().cloned().unwrap_or_default())
    };
    let (exit, first) = cgroup_of_step(false).await;
    if !guardian.uses_cgroups() {
        assert!(!nix::unistd::geteuid().is_root(), "root without cgroups");
        return;
    }
    assert!(exit.success(), "{exit:?}");
    let (run, step) = first.rsplit_once('/').expect("a nested cgroup");
    assert!(
        run.rsplit('/')
            .next()
            .is_some_and(|r| r.starts_with("orch-")),
        "{first}"
    );
    assert!(
        step.strip_prefix('s')
            .is_some_and(|n| n.parse::<u64>().is_ok()),
        "{first}"
    );
    let (exit, second) = cgroup_of_step(true).await;
    assert!(exit.success(), "{exit:?}");
    assert_eq!(second, first, "the empty cgroup was not reused");
    let (exit, third) = cgroup_of_step(false).await;
    assert!(exit.success(), "{exit:?}");
    assert_ne!(third, second, "a cgroup with a cgroup in it was reused");
    let mount = mount.expect("a cgroup2 mount");
    std::fs::remove_dir(format!("{mount}{second}/sub")).expect("the step's sub-cgroup");
    guardian.shutdown().expect("guardian exited");
}

/// With a guardian, an ended step's leader is reaped once its `-PGID` has gone to the guardian:
/// with the next step's registration, or on its own shortly after the last step. No zombie is
/// left behind either way.
#[tokio::test]
async fn ended_leaders_are_reaped_after_their_unregistration_with_or_without_a_next_step() {
    let guardian = start_guardian();
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = sh(dir.path(), "echo hi");
    let first = spawn(&spec, Some(&guardian)).await.expect("spawned");
    let first_pid = first.pid();
    let (_, exit) = run_to_end(first).await;
    assert!(exit.success(), "{exit:?}");
    let second = spawn(&spec, Some(&guardian)).await.expect("spawned");
    // Its `-` went in the same write as the second's `+` (or before): reaped by now.
    let gone = |pid: u32| !Path::new(&format!("/proc/{pid}")).exists();
    assert!(gone(first_pid), "the first leader is still there");
    let second_pid = second.pid();
    let (_, exit) = run_to_end(second).await;
    assert!(exit.success(), "{exit:?}");
    eventually("the last leader reaped", || gone(second_pid)).await;
    guardian.shutdown().expect("guardian exited");
}

/// Arguments that make this test binary run as the guardian.
fn guardian_args() -> [&'static str; 5] {
    [
        "guardian_entry",
        GUARDIAN_MARK,
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ]
}

fn start_guardian() -> Guardian {
    let exe = std::env::current_exe().expect("test binary path");
    Guardian::start(&exe, &guardian_args()).expect("guardian started")
}

#[test]
fn guardian_entry() {
    if std::env::args().any(|arg| arg == GUARDIAN_MARK) {
        let _ = process::guardian::main();
        std::process::exit(0);
    }
}

/// Starts a group outside `orch::process` (so only the guardian can kill it).
fn foreign_group() -> (std::process::Child, u32) {
    use std::os::unix::process::CommandExt;
    let mut group = Command::new("/bin/sh")
        .args(["-c", "sleep 1000 & sleep 1000 & echo ready; wait"])
        .process_group(0)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawned");
    let mut ready = String::new();
    let stdout = group.stdout.take().expect("piped");
    BufReader::new(stdout).read_line(&mut ready).expect("ready");
    assert_eq!(ready, "ready\n");
    let pgid = group.id();
    (group, pgid)
}

#[tokio::test]
async fn guardian_kills_registered_groups_when_its_stdin_closes() {
    let guardian = start_guardian();
    let (mut kept, kept_pgid) = foreign_group();
    let (mut doomed, doomed_pgid) = foreign_group();
    let kept_members = settled_group(kept_pgid, 2).await;
    let doomed_members = settled_group(doomed_pgid, 2).await;
    for pgid in [kept_pgid, doomed_pgid] {
        guardian.register(pgid).expect("registered");
    }
    guardian.unregister(kept_pgid).expect("unregistered");
    // Closing stdin is what the kernel does when orch dies.
    guardian.shutdown().expect("guardian exited");
    assert_group_dead(doomed_pgid, &doomed_members).await;
    assert!(guardian.register(doomed_pgid).is_err());
    assert!(
        kept_members.iter().all(|&pid| pid_alive(pid)),
        "unregistered group was killed"
    );
    process::signal_group(kept_pgid, process::Signal::SIGKILL).expect("killed");
    assert_group_dead(kept_pgid, &kept_members).await;
    for group in [&mut kept, &mut doomed] {
        group.wait().expect("reaped");
    }
}

#[test]
fn fake_orch_entry() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|arg| arg == FAKE_ORCH_MARK) {
        return;
    }
    let dir = args
        .iter()
        .find_map(|arg| arg.strip_prefix("dir="))
        .expect("a dir= argument");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let guardian = start_guardian();
        let script = "sleep 1000 & sleep 1000 & echo ready; wait";
        let mut child = spawn(&sh(Path::new(dir), script), Some(&guardian))
            .await
            .expect("spawned");
        line_until(child.lines(), "ready").await;
        println!("pgid {} guardian {}", child.pid(), guardian.pid());
        std::future::pending::<()>().await;
    });
}

#[tokio::test]
async fn group_dies_when_orch_is_sigkilled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary path");
    let mut orch = Command::new(exe)
        .args(["fake_orch_entry", FAKE_ORCH_MARK, "--exact", "--nocapture"])
        .arg(format!("dir={}", dir.path().display()))
        .stdout(Stdio::piped())
        .spawn()
        .expect("fake orch started");
    let stdout = BufReader::new(orch.stdout.take().expect("piped"));
    let (pgid, guardian) = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            let rest = line.strip_prefix("pgid ")?;
            let (pgid, guardian) = rest.split_once(" guardian ")?;
            Some((pgid.parse::<u32>().ok()?, guardian.parse::<u32>().ok()?))
        })
        .expect("the fake orch reported its group");
    let members = settled_group(pgid, 2).await;
    orch.kill().expect("SIGKILL sent");
    orch.wait().expect("reaped");
    assert_group_dead(pgid, &members).await;
    eventually("the guardian exits", || !pid_alive(guardian)).await;
}

/// A throughput check, not run by default: `cargo test --release --test process -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark; run on demand"]
async fn throughput_16_children_of_50_mb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let line = "x".repeat(99);
    let script = format!("yes {line} | head -c 50000000");
    let started = Instant::now();
    let mut runs = Vec::new();
    for i in 0..16 {
        let mut spec = sh(dir.path(), &script);
        spec.stdout_log = dir.path().join(format!("{i}.log"));
        let mut child = spawn(&spec, None).await.expect("spawned");
        runs.push(tokio::spawn(async move {
            let mut lines = child.take_lines();
            let waiting = tokio::spawn(child.wait());
            let mut count = 0;
            while let Some(line) = lines.recv().await {
                count += usize::from(line.bytes.len() == 99);
            }
            assert!(waiting.await.expect("joined").success());
            count
        }));
    }
    for run in runs {
        assert_eq!(run.await.expect("joined"), 500_000);
    }
    eprintln!("16 × 50 MB in {:?}", started.elapsed());
}

/// The child resets handled signals only, as `posix_spawn` and `exec` do, so the defaults the
/// stop ladder needs come from orch handling, never ignoring, SIGINT, SIGTERM and SIGXFSZ: an
/// ignored signal stays ignored.
#[tokio::test]
async fn a_child_starts_with_default_signals_even_when_orch_was_started_ignoring_them() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: ignoring installs no handler.
    unsafe {
        for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGXFSZ] {
            signal(sig, SigHandler::SigIgn).expect("ignored");
        }
    }
    process::prepare_signals();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh(dir.path(), "");
    spec.program = "cat".into();
    spec.args = vec!["/proc/self/status".into()];
    // A PATH of the job's own: the program is looked up in it, not in orch's.
    spec.env
        .push(("PATH".into(), "/nowhere:/usr/bin:/bin".into()));
    let (lines, exit) = run_to_end(spawn(&spec, None).await.expect("spawned")).await;
    assert!(exit.success(), "{exit:?}");
    let ignored = texts(&lines, Stream::Stdout)
        .iter()
        .find_map(|l| l.strip_prefix("SigIgn:").map(|m| m.trim().to_string()))
        .expect("a SigIgn line");
    let mask = u64::from_str_radix(&ignored, 16).expect("a hex mask");
    // SIGPIPE too, which Rust ignores in orch; and nothing is blocked.
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGXFSZ,
        Signal::SIGPIPE,
    ] {
        assert_eq!(
            mask & (1 << (sig as u64 - 1)),
            0,
            "{sig} is ignored in the child"
        );
    }
    let blocked = texts(&lines, Stream::Stdout)
        .iter()
        .find_map(|l| l.strip_prefix("SigBlk:").map(|m| m.trim().to_string()))
        .expect("a SigBlk line");
    assert_eq!(
        u64::from_str_radix(&blocked, 16),
        Ok(0),
        "blocked: {blocked}"
    );
}
