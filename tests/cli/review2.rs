//! Review findings on the pipeline work (issue 12): each test states what should happen and
//! fails on the reviewed commit 76ef49a.

use serde_json::Value;

use super::harness::Test;

fn results(t: &Test) -> Value {
    let runs = t.path().join(".orch/runs");
    let dir = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap()
}

const FAST: &str = "[settings]\nstartup_delay = \"0s\"\n";

/// A `when = "always"` job that reads a typed output of a job that failed reads null, as it
/// does for a job that never ran; it is not failed before it starts.
#[test]
fn an_always_job_reads_a_failed_jobs_missing_json_output_as_null() {
    let manifest = format!(
        r#"{FAST}
[jobs.src]
shell = "echo '[1]'; exit 1"
outputs = "json"

[jobs.report]
needs = [{{ job = "src", when = "always" }}]
run = ["echo", "src said ${{{{ jobs.src.outputs.json }}}}"]
"#
    );
    let t = Test::new().file("orch.toml", &manifest).args(&["run"]);
    let out = t.run();
    let v = results(&t);
    assert_eq!(
        v["instances"]["report"]["status"], "completed",
        "{}{}",
        out.stdout, out.stderr
    );
}

/// A for_each job that cannot expand is a failed job in the summary and the counts, like
/// any job that fails (the run exits 1, so something must show as failed).
#[test]
fn a_for_each_that_cannot_expand_counts_as_failed() {
    let manifest = format!(
        r#"{FAST}
[jobs.src]
shell = "echo '{{\"a\":1}}'"
outputs = "json"

[jobs.fan]
needs = ["src"]
for_each = "${{{{ jobs.src.outputs.json }}}}"
run = ["echo", "${{{{ item }}}}"]
"#
    );
    let t = Test::new()
        .file("orch.toml", &manifest)
        .args(&["run"])
        .status(1);
    let out = t.run();
    let v = results(&t);
    assert_eq!(v["failed"], 1, "{}", out.stdout);
    assert!(out.stdout.contains("1 failed"), "{}", out.stdout);
}

/// `if` false on a for_each job skips it: its source is not even read.
#[test]
fn a_false_if_skips_a_for_each_job_instead_of_failing_its_expansion() {
    let manifest = format!(
        r#"{FAST}
[jobs.src]
shell = "exit 3"
outputs = "json"
continue_on_failure = true

[jobs.fan]
needs = ["src"]
if = "jobs.src.status == 'completed'"
for_each = "${{{{ jobs.src.outputs.json }}}}"
run = ["echo", "${{{{ item }}}}"]
"#
    );
    let t = Test::new().file("orch.toml", &manifest).args(&["run"]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(results(&t)["fan_outs"]["fan"]["status"], "skipped");
}

/// `${{ env.NAME }}` of a job `env` value that is itself a template reads the rendered value
/// (the one the process gets), not the template text.
#[test]
fn env_reference_to_a_templated_job_env_reads_the_rendered_value() {
    let manifest = format!(
        r#"{FAST}
[jobs.a]
run = ["printf", "hello"]

[jobs.b]
needs = ["a"]
env = {{ GREETING = "${{{{ jobs.a.outputs.stdout }}}}" }}
run = ["sh", "-c", "test \"$1\" = \"$GREETING\"", "x", "${{{{ env.GREETING }}}}"]
"#
    );
    Test::new()
        .file("orch.toml", &manifest)
        .args(&["run"])
        .status(0)
        .run();
}

/// A tolerated failure (`continue_on_failure`) does not trigger `fail_fast`.
#[test]
fn continue_on_failure_does_not_trigger_fail_fast() {
    let manifest = r#"[settings]
startup_delay = "0s"
fail_fast = true

[jobs.lint]
continue_on_failure = true
shell = "exit 1"

[jobs.build]
needs = ["lint"]
run = ["echo", "building"]
"#;
    let t = Test::new().file("orch.toml", manifest).args(&["run"]);
    let out = t.run();
    assert_eq!(
        results(&t)["instances"]["build"]["status"],
        "completed",
        "{}",
        out.stdout
    );
    assert_eq!(out.code, 0);
}

/// A for_each source is a reference like any other: to a job that is not upstream, it is a
/// load-time diagnostic (exit 2), not a run whose expansion races the source job.
#[test]
fn a_for_each_source_not_upstream_is_a_diagnostic() {
    let manifest = format!(
        r#"{FAST}
[jobs.src]
shell = "echo '[1]'"
outputs = "json"

[jobs.fan]
for_each = "${{{{ jobs.src.outputs.json }}}}"
run = ["echo", "${{{{ item }}}}"]
"#
    );
    Test::new()
        .file("orch.toml", &manifest)
        .args(&["run"])
        .status(2)
        .stderr_contains("add `src` to needs")
        .run();
}
