//! Steps on a real Slurm cluster: 4 logical nodes on loopback started by `.ci/slurm.sh` (it
//! installs slurm-wlm and munge when missing). These tests need the cluster and fail, never
//! skip, when it cannot start. Every test checks that no process of its steps survived on any
//! node (the harness's marker scan: the nodes are this machine) and no job of its run is left in
//! `squeue`.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::harness::{Test, root, wait_until};
use super::run::Running;

/// `SLURM_CONF` of the test cluster, started once for the whole test binary.
fn slurm_conf() -> String {
    static CONF: OnceLock<String> = OnceLock::new();
    CONF.get_or_init(|| {
        let script = root().join(".ci/slurm.sh");
        let out = Command::new(&script)
            .arg("start")
            .output()
            .expect("run .ci/slurm.sh");
        assert!(
            out.status.success(),
            "the Slurm test cluster did not start (.ci/slurm.sh start); these tests need it:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = Command::new(&script)
            .arg("env")
            .output()
            .expect("slurm.sh env");
        String::from_utf8_lossy(&env.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("export SLURM_CONF="))
            .expect("slurm.sh env prints SLURM_CONF")
            .to_string()
    })
    .clone()
}

fn slurm_test(manifest: &str) -> Test {
    let t = Test::new().file("orch.toml", manifest);
    let state = t.path().join("sim");
    t.env("SLURM_CONF", &slurm_conf())
        .env("ORCH_SIM_STATE_DIR", state.to_str().unwrap())
}

fn results(t: &Test) -> Value {
    let run = run_dir(t);
    serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap()
}

fn run_dir(t: &Test) -> std::path::PathBuf {
    let runs = t.path().join(".orch/runs");
    std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

fn step<'a>(v: &'a Value, job: &str) -> &'a Value {
    &v["instances"][job]["steps"][0]
}

/// Jobs of this test's run still in the queue (pending, running or completing), after waiting
/// up to 5 s for them to go.
fn queued(t: &Test) -> Vec<String> {
    let run = run_dir(t);
    let id = run.file_name().unwrap().to_string_lossy().into_owned();
    let mut left = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        let out = Command::new("squeue")
            .args(["-h", "-o", "%i %j %T"])
            .env("SLURM_CONF", slurm_conf())
            .output()
            .expect("squeue");
        left = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&id))
            .map(str::to_string)
            .collect();
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    left
}

fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str().unwrap().parse().unwrap()
}

/// Per run, the allocation is spread over the nodes (`--spread-job`); per step, Slurm packs
/// small jobs onto the first node with room, so each step asks for 6 of a node's 8 CPUs.
fn mixed(allocation: &str) -> String {
    // `nodes` is Slurm's --nodelist (every node listed is in the allocation): per run only.
    let request = if allocation == "per_step" {
        "cpus = 6"
    } else {
        "nodes = \"n[1-4]\""
    };
    let mut m = format!(
        "[settings]\nexecutor = \"slurm\"\nmax_parallel = 4\nstartup_delay = \"30ms\"\n\
         [slurm]\nallocation = \"{allocation}\"\n{request}\n"
    );
    for i in 0..12 {
        m.push_str(&format!(
            "[jobs.e{i:02}]\nrun = [\"sh\", \"-c\", \"echo node=$SLURMD_NODENAME; sleep 0.3\"]\n"
        ));
        if i >= 8 {
            m.push_str("needs = [\"e00\", \"e01\"]\n");
        }
    }
    for i in 0..4 {
        m.push_str(&format!(
            "[jobs.agent{i}]\nprompt = \"hello {i}\"\nenv = {{ ORCH_SIM_TURNS = \"3\" }}\n"
        ));
    }
    m
}

/// 12 exec steps and 4 simulated agents on the cluster: at least three nodes used, dependency
/// order, max_parallel and the stagger held, the node in the results, logs as a local run's.
fn runs_across_nodes(allocation: &str) {
    let t = slurm_test(&mixed(allocation)).args(&["run", "--simulate", "--events", "e.ndjson"]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let events = std::fs::read_to_string(t.path().join("e.ndjson")).unwrap();
    let placed = events
        .lines()
        .filter(|l| l.contains("\"event\":\"step_placed\"") && l.contains("\"node\":\"n"))
        .count();
    assert_eq!(placed, 16, "one step_placed per step:\n{events}");
    let v = results(&t);
    let mut nodes = BTreeSet::new();
    let mut spans = Vec::new();
    for (name, inst) in v["instances"].as_object().unwrap() {
        let s = &inst["steps"][0];
        assert_eq!(s["status"], "completed", "{name}: {s}");
        let node = s["node"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no node: {s}"));
        nodes.insert(node.to_string());
        let log = std::fs::read_to_string(s["log"].as_str().unwrap()).unwrap();
        if name.starts_with('e') {
            assert_eq!(
                log,
                format!("node={node}\n"),
                "{name}: the log is the step's stdout"
            );
        }
        let err = std::fs::read(s["stderr_log"].as_str().unwrap()).unwrap();
        assert!(
            !err.windows(11).any(|w| w == b"orch-slurm "),
            "{name}: the wrapper's lines are not in the stderr log"
        );
        spans.push((time(&s["started"]), time(&s["finished"]), name.clone()));
    }
    assert!(nodes.len() >= 3, "nodes used: {nodes:?}");
    for i in 8..12 {
        let start = time(&step(&v, &format!("e{i:02}"))["started"]);
        for dep in ["e00", "e01"] {
            assert!(
                start >= time(&step(&v, dep)["finished"]),
                "e{i:02} before {dep}"
            );
        }
    }
    spans.sort();
    for (i, (start, _, name)) in spans.iter().enumerate() {
        let running = spans[..i].iter().filter(|(_, end, _)| end > start).count() + 1;
        assert!(
            running <= 4,
            "{running} steps ran at once when {name} started"
        );
        if i > 0 {
            let gap = (*start - spans[i - 1].0).num_milliseconds();
            assert!(gap >= 29, "{name} started {gap} ms after the one before");
        }
    }
    let agent = step(&v, "agent0");
    assert_eq!(agent["usage"]["is_estimate"], false, "{agent}");
    assert!(queued(&t).is_empty(), "{:?}", queued(&t));
}

#[test]
fn slurm_per_run_allocation_spreads_exec_and_agent_steps_over_the_nodes() {
    runs_across_nodes("per_run");
}

#[test]
fn slurm_per_step_allocation_spreads_exec_and_agent_steps_over_the_nodes() {
    runs_across_nodes("per_step");
}

/// A block-mode budget stop reaches the agent as SIGINT through `scancel`: it writes its result,
/// which is charged (not an estimate).
#[test]
fn slurm_budget_stop_delivers_sigint_through_scancel_and_charges_the_result() {
    let t = slurm_test(
        "[settings]\nexecutor = \"slurm\"\nstartup_delay = \"0s\"\n\
         [budget]\nmode = \"block\"\ntokens = 20000\n\
         [jobs.spender]\nprompt = \"spend\"\nenv = { ORCH_SIM_TURNS = \"60\", ORCH_SIM_DELAY_MS = \"30\" }\n",
    )
    .args(&["run", "--simulate"]);
    let out = t.run();
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    let s = step(&v, "spender");
    assert_eq!(s["status"], "budget_exceeded", "{s}");
    assert_eq!(
        s["usage"]["is_estimate"], false,
        "the agent's own result: {s}"
    );
    assert!(s["node"].is_string(), "{s}");
    assert!(queued(&t).is_empty());
}

const LONG: &str = "[settings]\nexecutor = \"slurm\"\nstartup_delay = \"0s\"\n\
    [jobs.long]\nrun = [\"sh\", \"-c\", \"sleep 300 & sleep 300; echo never\"]\n\
    [jobs.agent]\nprompt = \"long\"\nenv = { ORCH_SIM_TURNS = \"500\", ORCH_SIM_DELAY_MS = \"50\" }\n";

/// A signal to orch while steps run on the nodes: nothing of them survives anywhere, no job of
/// the run stays queued.
fn signal_leaves_nothing(sig: &str) {
    let mut t = slurm_test(LONG).args(&["run", "--simulate"]);
    if sig == "KILL" {
        t = t.allow_dead_run("orch is SIGKILLed");
    }
    let mut orch = Running::start(&t);
    orch.expect("long runs on n");
    orch.expect("agent runs on n");
    orch.signal(sig);
    let (code, _) = orch.wait();
    assert_ne!(code, 0);
    let left = t.survivors(Duration::from_secs(5));
    assert!(left.is_empty(), "survivors after SIG{sig}: {left:?}");
    let q = queued(&t);
    assert!(q.is_empty(), "jobs left after SIG{sig}: {q:?}");
}

#[test]
fn slurm_ctrl_c_leaves_no_process_and_no_job() {
    signal_leaves_nothing("INT");
}

#[test]
fn slurm_sigterm_leaves_no_process_and_no_job() {
    signal_leaves_nothing("TERM");
}

#[test]
fn slurm_sigkill_leaves_no_process_and_no_job() {
    signal_leaves_nothing("KILL");
}

/// The leader exits while its child holds stdout: the step ends at once (not after srun's 60 s)
/// and the child is reported as leaked and killed.
#[test]
fn slurm_leader_exit_ends_the_step_and_reports_the_leaked_child() {
    let t = slurm_test(
        "[settings]\nexecutor = \"slurm\"\n\
         [jobs.leaky]\nrun = [\"sh\", \"-c\", \"sleep 120 & echo $! > leaked.pid; echo done\"]\n",
    )
    .args(&["run"]);
    let started = Instant::now();
    let out = t.run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    let s = step(&v, "leaky");
    assert!(
        s["duration_seconds"].as_f64().unwrap() < 1.0,
        "the step took {s}"
    );
    let pid: u64 = std::fs::read_to_string(t.path().join("leaked.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(s["leaked_pids"], serde_json::json!([pid]), "{s}");
    wait_until("the leaked child to die", Duration::from_secs(5), || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn slurm_missing_working_directory_fails_clearly() {
    let t = slurm_test(
        "[settings]\nexecutor = \"slurm\"\n[jobs.lost]\nrun = [\"true\"]\nworkspace = \"not-there\"\n",
    )
    .args(&["run"]);
    let out = t.run();
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    let s = step(&v, "lost");
    assert_eq!(s["status"], "failed");
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.contains("not-there") && reason.contains("does not exist on node n"),
        "{reason}"
    );
    assert!(reason.contains("shares"), "it says what to do: {reason}");
}

#[test]
fn slurm_unsatisfiable_request_fails_after_pending_timeout_with_the_reason() {
    let t = slurm_test(
        "[settings]\nexecutor = \"slurm\"\n[slurm]\nallocation = \"per_step\"\n\
         pending_timeout = \"1s\"\nextra_args = [\"--begin=now+1hour\"]\n\
         [jobs.never]\nrun = [\"true\"]\n",
    )
    .args(&["run"]);
    let out = t.run();
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    let s = step(&v, "never");
    assert_eq!(s["status"], "failed", "{s}");
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.contains("pending on Slurm for more than 1s"),
        "{reason}"
    );
    assert!(reason.contains("BeginTime"), "squeue's reason: {reason}");
    assert!(queued(&t).is_empty(), "{:?}", queued(&t));
}

#[test]
fn slurm_timeout_stops_the_step_through_slurm() {
    let t = slurm_test(
        "[settings]\nexecutor = \"slurm\"\ntimeout = \"1s\"\n[jobs.slow]\nrun = [\"sleep\", \"60\"]\n",
    )
    .args(&["run"]);
    let started = Instant::now();
    let out = t.run();
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    let s = step(&v, "slow");
    assert_eq!(s["status"], "timed_out", "{s}");
    assert!(
        s["reason"].as_str().unwrap().contains("timed out after 1s"),
        "{s}"
    );
    // SIGINT through scancel ends `sleep` at once: no grace period was needed.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(queued(&t).is_empty());
}
