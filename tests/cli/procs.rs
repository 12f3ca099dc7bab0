//! Process trees under `orch run`: a broad `kill -9` of everything named orch, and leftovers
//! that left the step's process group or closed its pipes. Real processes, real signals; every
//! test ends by checking, through `/proc`, that nothing of the steps is alive.

use std::collections::BTreeMap;
use std::time::Duration;

use super::harness::{Test, pid_alive, wait_until};
use super::run::Running;

/// `pid -> (ppid, comm)` of every live process.
fn processes() -> BTreeMap<u32, (u32, String)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            continue;
        }
        if let Some(ppid) = fields.get(1).and_then(|p| p.parse().ok()) {
            out.insert(pid, (ppid, comm));
        }
    }
    out
}

/// The live descendants of `root` with their kernel names.
fn descendants(root: u32) -> Vec<(u32, String)> {
    let all = processes();
    let mut found = vec![root];
    let mut out = Vec::new();
    while let Some(parent) = found.pop() {
        for (&pid, (ppid, comm)) in &all {
            if *ppid == parent {
                found.push(pid);
                out.push((pid, comm.clone()));
            }
        }
    }
    out
}

const TREES: &str = r#"
    [settings]
    startup_delay = "0s"
    [jobs.a]
    shell = "sleep 300 & sleep 300 & echo ready; wait"
    [jobs.b]
    shell = "sleep 300 & echo ready; sleep 300"
    [jobs.sim]
    prompt = "hang"
    env = { ORCH_SIM_HANG = "1", ORCH_SIM_GRANDCHILD = "1" }
    [jobs.c]
    shell = "setsid sleep 300 & echo ready; sleep 300"
"#;

/// What `pkill -9 orch` does, kept to this test's own processes (the machine is shared): one
/// `kill -9` of orch and of every descendant whose kernel name matches `orch`. The guardian goes
/// by another name, survives, and must take every step's tree down with it, a setsid escapee
/// (found by its step token) included.
#[test]
fn a_broad_kill_9_of_everything_named_orch_leaves_no_step_process() {
    for attempt in 0..3 {
        // Both ways of finding a setsid escapee: the step token, and cgroups where usable.
        let cgroup = if attempt % 2 == 0 { "off" } else { "on" };
        let t = Test::new()
            .file("orch.toml", TREES)
            .args(&["run", "--simulate"])
            .env("ORCH_CGROUP", cgroup)
            .allow_dead_run("orch and everything named orch are SIGKILLed on purpose");
        let sim = t.path().join("sim");
        let t = t.env("ORCH_SIM_STATE_DIR", sim.to_str().unwrap());
        let mut r = Running::start(&t);
        r.expect("a: ready");
        r.expect("b: ready");
        r.expect("c: ready");
        let orch = r.child.id();
        // Two sleeps each of `a`, `b` and `c` (one of them setsid), the agent's grandchild.
        wait_until("every step's processes", Duration::from_secs(20), || {
            descendants(orch)
                .iter()
                .filter(|(_, comm)| comm == "sleep")
                .count()
                >= 7
        });
        let tree = descendants(orch);
        let mut victims: Vec<String> = tree
            .iter()
            .filter(|(_, comm)| comm.contains("orch"))
            .map(|(pid, _)| pid.to_string())
            .collect();
        victims.push(orch.to_string());
        let killed = std::process::Command::new("kill")
            .arg("-9")
            .args(&victims)
            .status()
            .unwrap();
        assert!(killed.success());
        let _ = r.child.wait();
        for (pid, comm) in &tree {
            wait_until(
                &format!("{comm} {pid} to die (attempt {attempt})"),
                Duration::from_secs(5),
                || !pid_alive(*pid),
            );
        }
        assert!(
            tree.iter().any(|(_, comm)| comm == "step-guardian"),
            "the guardian goes by its own name: {tree:?}"
        );
    }
}

/// The simulated agent keeps its sessions in the run's state folder: two runs with different
/// state folders, even of the same session id, write two session files and nothing under /tmp.
#[test]
fn simulated_sessions_live_in_each_state_folder() {
    let session = uuid::Uuid::new_v4();
    let manifest = format!(
        "[settings]\nstartup_delay = \"0s\"\n[jobs.chat]\nprompt = \"hi\"\npre_commands = [\"/clear\"]\nsession_id = \"{session}\"\nenv = {{ ORCH_SIM_DELAY_MS = \"0\" }}\n"
    );
    let t = Test::new().file("orch.toml", &manifest);
    let mut files = Vec::new();
    for state in ["state-a", "state-b"] {
        let out = t
            .with_args(&["run", "--simulate", "--quiet", "--state-dir", state])
            .env_remove("ORCH_SIM_STATE_DIR")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let file = t
            .path()
            .join(state)
            .join(format!("agent-sim/{session}.json"));
        assert!(file.is_file(), "{} is missing", file.display());
        files.push(std::fs::read_to_string(file).unwrap());
    }
    // The second run did not resume the first one's session: same figures, not cumulative.
    assert_eq!(files[0], files[1]);
    let shared = std::env::temp_dir().join(format!("orch-sim/{session}.json"));
    assert!(!shared.exists(), "{} was written", shared.display());
}

/// orch's peak resident memory so far (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// A 100 MB line, without and then with a newline, costs orch about one line cap (64 MiB) of
/// memory, not three copies of it; the logs keep every byte.
#[test]
fn a_100_mb_line_costs_about_one_line_cap_of_memory() {
    let manifest = r#"
        [settings]
        startup_delay = "0s"
        [jobs.no-newline]
        shell = "head -c 100000000 /dev/zero | tr '\\0' a"
        [jobs.newline]
        shell = "head -c 100000000 /dev/zero | tr '\\0' a; echo"
        needs = ["no-newline"]
        [jobs.hold]
        shell = "echo holding; exec sleep 300"
        needs = ["newline"]
    "#;
    let t = Test::new()
        .file("orch.toml", manifest)
        .args(&["run", "--max-console-lines", "5"]);
    let mut r = Running::start(&t);
    r.expect("hold: holding");
    let peak = peak_rss(r.child.id());
    r.signal("INT");
    let _ = r.wait();
    let cap = 64u64 << 20;
    assert!(
        peak < cap + (40 << 20),
        "peak RSS {} MiB for a 64 MiB line cap",
        peak >> 20
    );
    let runs = t.path().join(".orch/runs");
    let run = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap();
    let size = |name: &str| {
        std::fs::metadata(run.path().join("logs").join(name))
            .unwrap()
            .len()
    };
    assert_eq!(size("001-no-newline.log"), 100_000_000);
    assert_eq!(size("002-newline.log"), 100_000_001);
}

/// Three ways to outlive a step's leader, each writing its pid once it runs as itself: in the
/// group with its pipes closed, `setsid`, and `setsid` exec'd with an empty environment.
const LEFTOVERS: &str = r#"
    [settings]
    startup_delay = "0s"
    [jobs.in-group]
    shell = "sh -c 'echo $$ > in-group.pid; exec sleep 300' >/dev/null 2>&1 & while [ ! -s in-group.pid ]; do :; done"
    [jobs.setsid]
    shell = "setsid sh -c 'echo $$ > setsid.pid; exec sleep 301' >/dev/null 2>&1 & while [ ! -s setsid.pid ]; do :; done"
    [jobs.env-i]
    shell = "env -i setsid sh -c 'echo $$ > env-i.pid; exec sleep 302' >/dev/null 2>&1 & while [ ! -s env-i.pid ]; do :; done"
"#;

fn leaked_of(t: &Test, job: &str) -> Vec<u32> {
    let runs = t.path().join(".orch/runs");
    let run = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("results.json")).unwrap())
            .unwrap();
    v["instances"][job]["steps"][0]["leaked_pids"]
        .as_array()
        .unwrap_or_else(|| panic!("no leaked_pids for {job}: {v}"))
        .iter()
        .map(|p| p.as_u64().unwrap() as u32)
        .collect()
}

fn pid_in(t: &Test, file: &str) -> u32 {
    std::fs::read_to_string(t.path().join(file))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Without cgroups: group members that closed their pipes and setsid escapees that kept the step
/// token are listed as leaked and killed; one exec'd with `env -i` cannot be found (documented),
/// and is killed here by the test.
#[test]
fn leftovers_are_listed_and_killed_without_cgroups() {
    let t = Test::new()
        .file("orch.toml", LEFTOVERS)
        .args(&["run"])
        .env("ORCH_CGROUP", "off")
        .allow_survivors(
            "without cgroups an env -i + setsid escapee cannot be found; killed below",
        );
    let out = t.run();
    let env_i = pid_in(&t, "env-i.pid");
    let lost = pid_alive(env_i);
    let _ = std::process::Command::new("kill")
        .args(["-9", &env_i.to_string()])
        .status();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    for job in ["in-group", "setsid"] {
        let pid = pid_in(&t, &format!("{job}.pid"));
        assert_eq!(leaked_of(&t, job), vec![pid], "{job}");
        wait_until(
            &format!("{job} {pid} to die"),
            Duration::from_secs(5),
            || !pid_alive(pid),
        );
    }
    assert!(
        lost,
        "the fallback cannot find a setsid + env -i escapee (if it can, say so)"
    );
}

/// With cgroup v2 (mounted here in a private mount namespace, as root): every leftover is found
/// through the step's cgroup and killed with cgroup.kill, the env -i escapee included; the run's
/// cgroup is gone afterwards.
#[test]
fn leftovers_are_killed_through_cgroup_v2_where_it_can_be_mounted() {
    let t = Test::new().file("orch.toml", LEFTOVERS);
    let mnt = t.path().join("cgroup2");
    std::fs::create_dir(&mnt).unwrap();
    let script = format!(
        "mount -t cgroup2 none {mnt} || exit 77; {orch} run & pid=$!; wait $pid; code=$?; \
         ls -d {mnt}/orch-$(printf %x $pid)-* > cgroups.txt 2>/dev/null; exit $code",
        mnt = mnt.display(),
        orch = super::harness::orch_bin().display()
    );
    let out = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .current_dir(t.path())
        .env("HOME", t.path().join("home"))
        .env("NO_COLOR", "1")
        .env_remove("ORCH_CGROUP")
        .output()
        .unwrap();
    if out.status.code() == Some(77) || !out.status.success() && out.stdout.is_empty() {
        eprintln!(
            "skipped: cannot mount cgroup2 here: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for job in ["in-group", "setsid", "env-i"] {
        let pid = pid_in(&t, &format!("{job}.pid"));
        let leaked = leaked_of(&t, job);
        let alive = pid_alive(pid);
        if alive {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
        assert_eq!(leaked, vec![pid], "{job}");
        assert!(!alive, "{job} {pid} survived");
    }
    // Other runs may share the hierarchy: look for this run's cgroup only (named by orch's pid).
    let left = std::fs::read_to_string(t.path().join("cgroups.txt")).unwrap();
    assert!(left.is_empty(), "the run's cgroup was not removed:\n{left}");
}
