//! Pipelines end to end: outputs, `${{ }}` templates, fan-out and conditions, through the real
//! binary with real child processes and the simulated agent.

use serde_json::Value;

use super::harness::{Test, root};

fn sim_test(manifest: &str) -> Test {
    let t = Test::new().file("orch.toml", manifest);
    let state = t.path().join("sim");
    t.env("ORCH_SIM_STATE_DIR", state.to_str().unwrap())
        .env("ORCH_SIM_DELAY_MS", "0")
}

/// The results of the only run in the test's state folder.
fn results(t: &Test) -> Value {
    let runs = t.path().join(".orch/runs");
    let dir = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap()
}

fn status(v: &Value, job: &str) -> String {
    v["instances"][job]["status"]
        .as_str()
        .unwrap_or_else(|| panic!("no job {job} in {v:#}"))
        .to_string()
}

fn reason(v: &Value, job: &str) -> String {
    v["instances"][job]["steps"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn stdout_of(v: &Value, job: &str) -> String {
    v["instances"][job]["outputs"]["stdout"]
        .as_str()
        .unwrap_or_else(|| panic!("no stdout output of {job} in {v:#}"))
        .to_string()
}

const FAST: &str = "[settings]\nstartup_delay = \"0s\"\n";

/// Every kind of pipeline mistake is reported at once, each at its place with a hint, and
/// nothing runs.
#[test]
fn every_pipeline_mistake_is_a_diagnostic_and_nothing_runs() {
    let manifest = r#"[settings]
startup_delay = "0s"

[jobs.plan]
prompt = "plan"
output_schema = { type = "object", properties = { tasks = { type = "array", items = { type = "object", properties = { title = { type = "string" } }, additionalProperties = false } } } }

[jobs.side]
run = ["touch", "ran"]

[jobs.a]
needs = ["plan"]
run = ["echo", "${{ jobs.side.outputs.stdout }}"]

[jobs.b]
needs = ["plan"]
run = ["echo", "${{ jobs.nope.outputs.result }}"]

[jobs.c]
needs = ["plan"]
run = ["echo", "${{ jobs.plan.outputs.reslt }}"]

[jobs.d]
needs = ["plan"]
run = ["echo", "${{ jobs.plan.outputs.structured.tasks[0].titel }}"]

[jobs.e]
needs = ["plan"]
run = ["echo", "${{ jobs.plan.outputs.result"]

[jobs.f]
run = ["echo", "${{ item.title }}", "${{ matrix.target }}"]

[jobs.g]
needs = ["plan"]
if = "jobs.plan.status == 'faild'"
run = ["true"]

[jobs.h]
needs = ["plan"]
for_each = "tasks: ${{ jobs.plan.outputs.structured.tasks }}"
run = ["true"]

[jobs.i]
needs = [{ job = "plan", when = "sometimes" }]
run = ["true"]

[jobs.j]
needs = ["plan"]
if = "jobs.plan.status == "
run = ["true"]
"#;
    let t = Test::new().file("orch.toml", manifest).args(&["run"]);
    let out = t.run();
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    let err = &out.stderr;
    for needle in [
        "`side` is not upstream of `a`",
        "add `side` to needs",
        "there is no job `nope`",
        "`plan` has no output `reslt`",
        "did you mean `result`?",
        "the output schema of `plan` cannot have this",
        "titel",
        "jobs.e.run[1]",
        "close it with `}}`",
        "`f` has no for_each, so `item` has no value",
        "`f` has no matrix, so `matrix.target` has no value",
        "faild",
        "for_each takes one reference to an upstream output",
        "jobs.i.needs[0].when",
        "jobs.j.if",
    ] {
        assert!(err.contains(needle), "stderr lacks {needle:?}:\n{err}");
    }
    // All at once, each pointing into the manifest's text.
    assert!(err.contains("errors in"), "{err}");
    assert!(err.contains("orch.toml:"), "{err}");
    assert!(!t.path().join("ran").exists(), "nothing may run");
    assert!(!t.path().join(".orch/runs").exists(), "no run may begin");
}

/// A hostile value (quotes, `$()`, backticks, a newline, a backslash) goes into argv as one
/// argument, into a shell script as one quoted word, and into the environment, byte for byte;
/// nothing in it is executed.
#[test]
fn values_render_into_argv_shell_and_env_without_being_run() {
    let hostile = "it's \"q\" $(touch pwned1) `touch pwned2` ; touch pwned3\nline 2 \\ end";
    let manifest = format!(
        r#"{FAST}
[jobs.src]
run = ["printf", "%s", {hostile:?}]

[jobs.argv]
needs = ["src"]
run = ["printf", "%s", "${{{{ jobs.src.outputs.stdout }}}}"]

[jobs.shell]
needs = ["src"]
shell = "printf %s ${{{{ jobs.src.outputs.stdout }}}} > shell.out"

[jobs.env]
needs = ["src"]
env = {{ V = "${{{{ jobs.src.outputs.stdout }}}}" }}
shell = 'printf %s "$V" > env.out'

[jobs.json]
needs = ["src"]
run = ["printf", "%s", "${{{{ jobs.src.outputs.exit_code }}}} ${{{{ run.id }}}}"]
"#
    );
    let t = Test::new()
        .file("orch.toml", &manifest)
        .args(&["run", "--quiet"]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    assert_eq!(stdout_of(&v, "src"), hostile);
    assert_eq!(stdout_of(&v, "argv"), hostile);
    let dir = t.path();
    assert_eq!(
        std::fs::read_to_string(dir.join("shell.out")).unwrap(),
        hostile
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("env.out")).unwrap(),
        hostile
    );
    for f in ["pwned1", "pwned2", "pwned3"] {
        assert!(!dir.join(f).exists(), "{f} was run");
    }
    // A number renders as JSON; run.id is the run's id.
    let run_id = v["metadata"]["run_id"].as_str().unwrap();
    assert_eq!(stdout_of(&v, "json"), format!("0 {run_id}"));
    // The run folder's outputs file has a line per job, as it was, unmasked.
    let run_dir = std::path::PathBuf::from(v["metadata"]["run_dir"].as_str().unwrap());
    let text = std::fs::read_to_string(run_dir.join("outputs.ndjson")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let jobs: Vec<&str> = lines.iter().map(|l| l["job"].as_str().unwrap()).collect();
    assert_eq!(
        jobs.len(),
        v["instances"].as_object().unwrap().len(),
        "{text}"
    );
    let saved = &lines.iter().find(|l| l["job"] == "src").unwrap()["outputs"];
    assert_eq!(saved["stdout"], hostile);
    assert_eq!(saved["exit_code"], 0);
}

/// A manifest whose `fan` job runs once per item of `src`'s JSON array of `n` numbers.
fn fan_out(n: usize, max_items: Option<usize>) -> String {
    let list = (1..=n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let max = max_items.map_or(String::new(), |m| format!("max_items = {m}\n"));
    format!(
        r#"{FAST}
[jobs.src]
run = ["printf", "[{list}]"]
outputs = "json"

[jobs.fan]
needs = ["src"]
for_each = "${{{{ jobs.src.outputs.json }}}}"
{max}run = ["printf", "item %s", "${{{{ item }}}}"]

[jobs.after]
needs = ["fan"]
run = ["printf", "%s", "${{{{ jobs.fan.outputs.stdout }}}}"]
"#
    )
}

#[test]
fn for_each_over_zero_items_completes_with_an_empty_list() {
    let t = Test::new()
        .file("orch.toml", &fan_out(0, None))
        .args(&["run", "--quiet"]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    assert_eq!(v["fan_outs"]["fan"]["status"], "completed");
    assert_eq!(v["fan_outs"]["fan"]["instances"], serde_json::json!([]));
    assert_eq!(stdout_of(&v, "after"), "[]");
}

#[test]
fn for_each_over_one_item_makes_one_instance() {
    let t = Test::new()
        .file("orch.toml", &fan_out(1, None))
        .args(&["run", "--quiet"]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    assert_eq!(
        v["fan_outs"]["fan"]["instances"],
        serde_json::json!(["fan[0]"])
    );
    assert_eq!(stdout_of(&v, "fan[0]"), "item 1");
    assert_eq!(stdout_of(&v, "after"), r#"["item 1"]"#);
}

#[test]
fn for_each_over_200_items_runs_each_and_the_dependent_sees_them_in_order() {
    let t = Test::new()
        .file("orch.toml", &fan_out(200, None))
        .args(&["run", "--quiet"]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    let names = v["fan_outs"]["fan"]["instances"].as_array().unwrap();
    assert_eq!(names.len(), 200);
    assert_eq!(v["total_instances"], 202);
    assert_eq!(v["completed"], 202);
    let seen: Vec<String> = serde_json::from_str(&stdout_of(&v, "after")).unwrap();
    let want: Vec<String> = (1..=200).map(|i| format!("item {i}")).collect();
    assert_eq!(seen, want);
}

#[test]
fn an_expansion_over_max_items_fails_the_job_and_skips_its_dependents() {
    let t = Test::new()
        .file("orch.toml", &fan_out(5, Some(3)))
        .args(&["run", "--quiet"]);
    let out = t.run();
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    assert_eq!(v["fan_outs"]["fan"]["status"], "failed");
    let why = v["fan_outs"]["fan"]["reason"].as_str().unwrap();
    assert!(why.contains("5 items, more than max_items (3)"), "{why}");
    assert_eq!(status(&v, "after"), "skipped");
}

/// The matrix's cartesian product, less `exclude`, plus `include` (one extends a combination,
/// one adds its own); `orch plan` shows the instances, `matrix.KEY` renders per instance, and
/// a job's own `max_parallel` bounds its instances.
#[test]
fn a_matrix_with_include_and_exclude() {
    let manifest = format!(
        r#"{FAST}
[jobs.test]
matrix = {{ target = ["a", "b"], kind = ["unit", "e2e"], exclude = [{{ target = "b", kind = "e2e" }}], include = [{{ target = "a", kind = "unit", extra = "x" }}, {{ target = "c", kind = "unit" }}] }}
max_parallel = 1
run = ["sh", "-c", "printf '%s' \"$1\"; sleep 0.2", "t", "${{{{ matrix.target }}}}-${{{{ matrix.kind }}}}"]

[jobs.all]
needs = ["test"]
run = ["printf", "%s", "${{{{ jobs.test.outputs.stdout }}}}"]
"#
    );
    let t = Test::new().file("orch.toml", &manifest);
    let plan = t.with_args(&["plan"]).output().unwrap();
    let plan = String::from_utf8_lossy(&plan.stdout);
    for name in [
        "test[a,unit]",
        "test[a,e2e]",
        "test[b,unit]",
        "test[c,unit]",
    ] {
        assert!(plan.contains(name), "plan lacks {name}:\n{plan}");
    }
    assert!(!plan.contains("test[b,e2e]"), "{plan}");
    assert!(
        plan.contains("instance 1 of 4 of `test` (matrix)"),
        "{plan}"
    );
    let t = t.args(&["run", "--quiet"]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    assert_eq!(
        stdout_of(&v, "all"),
        r#"["a-unit","a-e2e","b-unit","c-unit"]"#
    );
    // max_parallel = 1: no two instances overlapped.
    let mut spans: Vec<(String, String)> = [
        "test[a,unit]",
        "test[a,e2e]",
        "test[b,unit]",
        "test[c,unit]",
    ]
    .iter()
    .map(|j| {
        let s = &v["instances"][*j]["steps"][0];
        (
            s["started"].as_str().unwrap().to_string(),
            s["finished"].as_str().unwrap().to_string(),
        )
    })
    .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "instances overlapped: {spans:?}");
    }
}

/// `if` over outputs and statuses: true runs, false skips with the reason (and the run still
/// succeeds), and a tolerated failure (`continue_on_failure`) can be tested for.
#[test]
fn conditions_true_false_and_over_statuses() {
    let manifest = format!(
        r#"{FAST}
[jobs.probe]
run = ["printf", "yes"]

[jobs.flaky]
run = ["false"]
continue_on_failure = true

[jobs.when-yes]
needs = ["probe"]
if = "contains(jobs.probe.outputs.stdout, 'yes') && jobs.probe.outputs.exit_code == 0"
run = ["true"]

[jobs.when-no]
needs = ["probe"]
if = "${{{{ jobs.probe.outputs.stdout == 'no' }}}}"
run = ["touch", "no-ran"]

[jobs.after-flaky]
needs = ["flaky"]
if = "jobs.flaky.status == 'failed'"
run = ["true"]

[jobs.after-skip]
needs = ["when-no"]
run = ["touch", "after-skip-ran"]
"#
    );
    let t = Test::new()
        .file("orch.toml", &manifest)
        .args(&["run", "--quiet"]);
    let out = t.run();
    // The only failure is tolerated, and skipped jobs fail nothing.
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    assert_eq!(status(&v, "when-yes"), "completed");
    assert_eq!(status(&v, "when-no"), "skipped");
    assert!(reason(&v, "when-no").contains("`if` is false"), "{v:#}");
    assert!(!t.path().join("no-ran").exists());
    assert_eq!(status(&v, "flaky"), "failed");
    assert_eq!(status(&v, "after-flaky"), "completed");
    assert_eq!(status(&v, "after-skip"), "skipped");
    assert!(!t.path().join("after-skip-ran").exists());
}

/// `when = "always"` runs after a failure; `when = "failure"` runs only after one.
#[test]
fn when_always_and_failure_after_a_failure() {
    let manifest = format!(
        r#"{FAST}
[jobs.tests]
run = ["sh", "-c", "echo boom; exit 3"]

[jobs.cleanup]
needs = [{{ job = "tests", when = "always" }}]
run = ["printf", "%s", "tests ${{{{ jobs.tests.status }}}}: ${{{{ jobs.tests.outputs.stdout }}}}"]

[jobs.on-failure]
needs = [{{ job = "tests", when = "failure" }}]
run = ["true"]

[jobs.ok]
run = ["true"]

[jobs.on-ok-failure]
needs = [{{ job = "ok", when = "failure" }}]
run = ["true"]

[jobs.next]
needs = ["tests"]
run = ["true"]
"#
    );
    let t = Test::new()
        .file("orch.toml", &manifest)
        .args(&["run", "--quiet"]);
    let out = t.run();
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    assert_eq!(status(&v, "tests"), "failed");
    assert_eq!(status(&v, "cleanup"), "completed");
    assert_eq!(stdout_of(&v, "cleanup"), "tests failed: boom\n");
    assert_eq!(status(&v, "on-failure"), "completed");
    assert_eq!(status(&v, "on-ok-failure"), "skipped");
    assert!(
        reason(&v, "on-ok-failure").contains("runs only when it fails"),
        "{v:#}"
    );
    assert_eq!(status(&v, "next"), "skipped");
}

/// A report job with `when = "always"` still runs when the job it waits for was stopped by a
/// block-mode budget, and reads its status; the run exits with the budget code.
#[test]
fn when_always_runs_after_a_budget_stop() {
    let manifest = r#"[settings]
startup_delay = "0s"

[budget]
mode = "block"
tokens = 1000

[jobs.agent]
prompt = "work"
env = { ORCH_SIM_TURNS = "20", ORCH_SIM_TOKENS_PER_TURN = "400" }

[jobs.report]
needs = [{ job = "agent", when = "always" }]
run = ["printf", "%s", "agent ${{ jobs.agent.status }}"]
"#;
    let t = sim_test(manifest).args(&["run", "--simulate", "--quiet"]);
    let out = t.run();
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    assert_eq!(status(&v, "agent"), "budget_exceeded");
    assert_eq!(status(&v, "report"), "completed");
    assert_eq!(stdout_of(&v, "report"), "agent budget_exceeded");
}

/// `outputs = "json"` parses stdout; stdout that is not JSON fails the job with the position.
/// `output_limit` keeps the end of stdout and says how much was cut.
#[test]
fn json_outputs_and_the_output_limit() {
    let manifest = format!(
        r#"{FAST}
[jobs.good]
run = ["printf", '{{"n": 2, "list": ["x", "y"]}}']
outputs = "json"

[jobs.bad]
run = ["printf", '{{"n": 2,\n  oops}}']
outputs = "json"

[jobs.big]
run = ["sh", "-c", "printf 0123456789abcdef"]
output_limit = 6

[jobs.use]
needs = ["good", "big"]
run = ["printf", "%s", "${{{{ jobs.good.outputs.json.list[1] }}}} ${{{{ jobs.good.outputs.json }}}} ${{{{ jobs.big.outputs.stdout }}}}"]
"#
    );
    let t = Test::new().file("orch.toml", &manifest).args(&[
        "run",
        "--quiet",
        "--events",
        "events.ndjson",
    ]);
    let out = t.run();
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    assert_eq!(status(&v, "good"), "completed");
    assert_eq!(v["instances"]["good"]["outputs"]["json"]["n"], 2);
    assert_eq!(status(&v, "bad"), "failed");
    let why = reason(&v, "bad");
    assert!(why.contains("not JSON") && why.contains("line 2"), "{why}");
    assert_eq!(stdout_of(&v, "big"), "abcdef");
    assert_eq!(stdout_of(&v, "use"), r#"y {"list":["x","y"],"n":2} abcdef"#);
    let events = std::fs::read_to_string(t.path().join("events.ndjson")).unwrap();
    let cut = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"] == "job_outputs" && e["job"] == "big")
        .expect("a job_outputs event for big");
    assert_eq!(cut["stdout_cut_bytes"], 10);
}

/// The bundled example runs end to end with the simulated agent: a planner with an output
/// schema, one implementer per task (at most three at once), a reviewer that reads their
/// results, and a report written whatever happened.
#[test]
fn the_bundled_pipeline_runs_with_the_simulated_agent() {
    let text = std::fs::read_to_string(root().join("manifests/pipeline.toml")).unwrap();
    let text = text.replace("workspace = \"..\"", "workspace = \".\"");
    let t = sim_test(&text)
        .env("ORCH_SIM_ITEMS", "4")
        .args(&["run", "--simulate", "--quiet"]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    let tasks = v["instances"]["plan"]["outputs"]["structured"]["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("no structured tasks: {v:#}"))
        .clone();
    assert_eq!(tasks.len(), 4);
    let names = v["fan_outs"]["implement"]["instances"].as_array().unwrap();
    assert_eq!(names.len(), 4);
    // Each implementer's prompt holds its own task's title.
    for (name, task) in names.iter().zip(&tasks) {
        let name = name.as_str().unwrap();
        let argv = v["instances"][name]["steps"][0]["argv"].as_array().unwrap();
        let prompt = argv.last().unwrap().as_str().unwrap();
        let title = task["title"].as_str().unwrap();
        assert!(prompt.contains(title), "{name}: {prompt} lacks {title}");
    }
    // The reviewer's prompt holds every implementer's result.
    let review = v["instances"]["review"]["steps"][0]["argv"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    for name in names {
        let result = v["instances"][name.as_str().unwrap()]["outputs"]["result"]
            .as_str()
            .unwrap();
        assert!(review.contains(result), "review prompt lacks {result}");
    }
    let report = std::fs::read_to_string(t.path().join("pipeline-report.txt")).unwrap();
    assert!(report.contains("review (completed)"), "{report}");
}

/// `orch plan` shows templates unrendered, lists each step's references, and gives them as data
/// edges in JSON, dot and Mermaid; `when` conditions label their edges.
#[test]
fn the_plan_shows_references_as_data_edges() {
    let manifest = format!(
        r#"{FAST}
[jobs.src]
run = ["printf", "[1]"]
outputs = "json"

[jobs.each]
needs = ["src"]
for_each = "${{{{ jobs.src.outputs.json }}}}"
run = ["echo", "${{{{ item }}}}"]

[jobs.report]
needs = [{{ job = "each", when = "always" }}]
if = "jobs.each.status != 'skipped'"
run = ["echo", "${{{{ jobs.each.outputs.stdout }}}}"]
"#
    );
    let t = Test::new().file("orch.toml", &manifest);
    let text = t.with_args(&["plan"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("expands from ${{ jobs.src.outputs.json }} when it exists"),
        "{text}"
    );
    assert!(
        text.contains("reads: jobs.each.outputs.stdout, jobs.each.status"),
        "{text}"
    );
    assert!(text.contains("if: jobs.each.status != 'skipped'"), "{text}");
    assert!(
        text.contains("$ echo '${{ jobs.each.outputs.stdout }}'"),
        "{text}"
    );
    assert!(text.contains("2 (always)"), "{text}");

    let json = t.with_args(&["plan", "--format", "json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    let report = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["label"] == "report")
        .unwrap();
    assert_eq!(
        report["references"],
        serde_json::json!(["jobs.each.outputs.stdout", "jobs.each.status"])
    );
    assert_eq!(report["reads_from"], serde_json::json!([1]));
    assert_eq!(report["when"], serde_json::json!(["always"]));
    let each = &v["steps"][1];
    assert_eq!(each["kind"], "expand");
    assert_eq!(each["reads_from"], serde_json::json!([0]));

    let dot = t.with_args(&["plan", "--format", "dot"]).output().unwrap();
    let dot = String::from_utf8_lossy(&dot.stdout).into_owned();
    assert!(dot.contains("s1 -> s2 [label=\"always\"];"), "{dot}");
    assert!(
        dot.contains("s1 -> s2 [style=dashed, label=\"data\"];"),
        "{dot}"
    );
    let mermaid = t
        .with_args(&["plan", "--format", "mermaid"])
        .output()
        .unwrap();
    let mermaid = String::from_utf8_lossy(&mermaid.stdout).into_owned();
    assert!(mermaid.contains("s1 -->|always| s2"), "{mermaid}");
    assert!(mermaid.contains("s0 -.->|data| s1"), "{mermaid}");
}

/// A job's `max_tokens` is each instance's own budget: in block mode one instance over it is
/// stopped while the others, under it, complete; the run's budget counts them all.
#[test]
fn a_fanned_out_jobs_budget_applies_to_each_instance() {
    // The second instance spends ten times as much per turn, over its own 5000 tokens.
    let manifest = r#"[settings]
startup_delay = "0s"

[budget]
mode = "block"

[jobs.work]
matrix = { per_turn = ["100", "1000"] }
prompt = "work"
max_tokens = 5000
env = { ORCH_SIM_TURNS = "8", ORCH_SIM_TOKENS_PER_TURN = "${{ matrix.per_turn }}" }
"#;
    let t = sim_test(manifest).args(&["run", "--simulate", "--quiet"]);
    let out = t.run();
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    assert_eq!(status(&v, "work[100]"), "completed");
    assert_eq!(status(&v, "work[1000]"), "budget_exceeded");
    let scopes: Vec<&str> = v["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["scope"].as_str().unwrap())
        .collect();
    assert!(scopes.contains(&"job work[100]"), "{scopes:?}");
    assert!(scopes.contains(&"job work[1000]"), "{scopes:?}");
}

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

/// Hostile values of the pipeline's number keys are clear errors at their place, never a panic:
/// negative, zero, non-finite and far too large sizes and counts, and a 64 KiB string.
#[test]
fn hostile_pipeline_numbers_are_clear_errors() {
    let long = "9".repeat(64 * 1024);
    let manifest = format!(
        r#"[jobs.a]
run = ["true"]
output_limit = -5
[jobs.b]
run = ["true"]
output_limit = "lots"
[jobs.c]
run = ["true"]
output_limit = inf
[jobs.d]
run = ["true"]
output_limit = "{long}PB"
[jobs.e]
matrix = {{ k = ["x"] }}
max_items = 0
run = ["true"]
[jobs.f]
run = ["true"]
max_parallel = -1
[jobs.g]
run = ["true"]
outputs = "yaml"
"#
    );
    let t = Test::new().file("orch.toml", &manifest).args(&["plan"]);
    let out = t.run();
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    for needle in [
        "jobs.a.output_limit",
        "jobs.b.output_limit",
        "jobs.c.output_limit",
        "jobs.d.output_limit",
        "jobs.e.max_items",
        "jobs.f.max_parallel",
        "jobs.g.outputs",
        "7 errors",
    ] {
        assert!(out.stderr.contains(needle), "stderr lacks {needle:?}");
    }
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}
