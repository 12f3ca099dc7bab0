//! `orch plan`, zen's `--dry-run`, and how manifest errors look to a person.

use super::harness::{Test, redact, root};

const PIPELINE: &str = r#"#:schema ../schemas/orch-manifest.schema.json
name = "pipeline"

[settings]
startup_delay = "2s"
max_parallel = 2

[budget]
mode = "block"
usd = 3.0

[defaults]
model = "sonnet"
allowed_tools = ["Read", "Bash"]

[jobs.lint]
run = ["cargo", "clippy"]

[jobs.tests]
command = "/createtestsv2 unit"
pre_commands = ["/compact"]
needs = ["lint"]
max_usd = 1.5

[jobs.docs]
shell = "echo 'docs ok'"
"#;

#[test]
fn plan_text_shows_argv_offsets_and_budgets() {
    let t = Test::new()
        .file("orch.toml", PIPELINE)
        // A project command, so that the plan has no unknown-command warning.
        .file(
            ".claude/commands/createtestsv2.md",
            "Write tests for $ARGUMENTS\n",
        )
        .args(&["plan", "--simulate"]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(redact(&out.stdout, &t));
}

#[test]
fn dry_run_with_config_is_plan() {
    let t = Test::new().file(
        "zen.json",
        r#"{"instances": [{"command": "/a"}, {"command": "/b"}]}"#,
    );
    let plan = t
        .command()
        .args(["plan", "zen.json", "--simulate"])
        .output()
        .unwrap();
    let dry = t
        .command()
        .args(["run", "--config", "zen.json", "--dry-run", "--simulate"])
        .output()
        .unwrap();
    assert!(plan.status.success() && dry.status.success());
    let (plan, dry) = (
        redact(&String::from_utf8_lossy(&plan.stdout), &t),
        redact(&String::from_utf8_lossy(&dry.stdout), &t),
    );
    assert_eq!(plan, dry);
    assert!(plan.contains("+5s"), "zen's default stagger: {plan}");
}

#[test]
fn json_dot_and_mermaid_formats() {
    let t = Test::new().file("orch.toml", PIPELINE);
    let json = t
        .command()
        .args(["plan", "--format", "json", "--simulate"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    assert_eq!(steps[1]["label"], "tests [1/2]");
    assert_eq!(steps[1]["needs"], serde_json::json!([0]));
    assert_eq!(steps[2]["session"]["mode"], "resume");
    assert_eq!(steps[3]["offset_ms"], 2000);

    let dot = t
        .command()
        .args(["plan", "--format", "dot"])
        .output()
        .unwrap();
    assert!(dot.status.success());
    let dot_text = String::from_utf8(dot.stdout).unwrap();
    // Parsed with a DOT grammar, not matched as text: a bad escape in a label fails here.
    let graph = parse_dot(&dot_text);
    let nodes = [
        ("s0", r"lint\ncargo clippy"),
        ("s1", r"tests [1/2]\n/compact"),
        ("s2", r"tests [2/2]\n/createtestsv2 unit"),
        ("s3", r"docs\nsh -c 'echo '\\''docs ok'\\'''"),
    ];
    let nodes = nodes.map(|(id, label)| (id.to_string(), label.to_string()));
    assert_eq!(graph.nodes, nodes, "{dot_text}");
    let edges = [("s0", "s1"), ("s1", "s2")].map(|(a, b)| (a.to_string(), b.to_string()));
    assert_eq!(graph.edges, edges, "{dot_text}");

    let mermaid = t
        .command()
        .args(["plan", "--format", "mermaid"])
        .output()
        .unwrap();
    let text = String::from_utf8(mermaid.stdout).unwrap();
    assert!(text.starts_with("flowchart LR\n"));
    assert!(text.contains("s0 --> s1"));
}

#[test]
fn orch_toml_is_the_default_manifest() {
    Test::new()
        .args(&["plan"])
        .status(2)
        .stderr_contains("cannot read manifest orch.toml")
        .stderr_contains("create orch.toml here")
        .run();
}

#[test]
fn manifest_errors_render_with_source_labels_and_help() {
    let bad = "[settings]\nstartup_delay = \"fast\"\n\n[jobs.build]\nrun = [\"make\"]\nneeds = [\"tset\"]\ntimout = \"5m\"\n\n[jobs.test]\ncommand = \"/test\"\nrun = [\"make\", \"test\"]\n";
    let t = Test::new().file("orch.toml", bad).args(&["plan"]);
    let out = t.run();
    assert_eq!(out.code, 2);
    assert!(out.stdout.is_empty());
    insta::assert_snapshot!(redact(&out.stderr, &t));
}

#[test]
fn a_cycle_is_shown_with_every_edge() {
    let bad =
        "[jobs.a]\nrun = [\"a\"]\nneeds = [\"b\"]\n\n[jobs.b]\nrun = [\"b\"]\nneeds = [\"a\"]\n";
    let t = Test::new().file("orch.toml", bad).args(&["plan"]);
    let out = t.run();
    assert_eq!(out.code, 2);
    insta::assert_snapshot!(redact(&out.stderr, &t));
}

#[test]
fn a_json_syntax_error_is_shown_in_place() {
    let bad = "{\n  \"instances\": [\n    {\"command\": \"/a\"},\n  ]\n}\n";
    let t = Test::new()
        .file("zen.json", bad)
        .args(&["run", "--config", "zen.json", "--dry-run"]);
    let out = t.run();
    assert_eq!(out.code, 2);
    insta::assert_snapshot!(redact(&out.stderr, &t));
}

#[test]
fn the_demo_manifest_plans_its_simulated_agents() {
    Test::new()
        .args(&[
            "plan",
            root().join("manifests/demo.toml").to_str().unwrap(),
            "--simulate",
        ])
        .status(0)
        .stdout_contains("agent-sim -p --output-format stream-json --verbose")
        .run();
}

/// What a `digraph` in DOT declares: its nodes with their labels (as written, escapes kept) and
/// its edges, in order.
struct Dot {
    nodes: Vec<(String, String)>,
    edges: Vec<(String, String)>,
}

/// Parses `text` with a DOT grammar (graphviz-rust's parser, no Graphviz needed); panics on
/// what is not a directed graph of plain nodes and edges.
fn parse_dot(text: &str) -> Dot {
    use graphviz_rust::dot_structures::{EdgeTy, Graph, Id, NodeId, Stmt, Vertex};
    let id = |id: &Id| match id {
        Id::Plain(s) | Id::Anonymous(s) | Id::Html(s) => s.clone(),
        // The parser keeps the quotes of a quoted string.
        Id::Escaped(s) => s
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(s)
            .to_string(),
    };
    let vertex = |v: &Vertex| match v {
        Vertex::N(NodeId(node, None)) => id(node),
        other => panic!("an edge end that is not a plain node: {other:?}"),
    };
    let graph = graphviz_rust::parse(text).unwrap_or_else(|e| panic!("not DOT: {e}\n{text}"));
    let Graph::DiGraph { stmts, .. } = graph else {
        panic!("not a digraph: {text}");
    };
    let mut dot = Dot {
        nodes: Vec::new(),
        edges: Vec::new(),
    };
    for stmt in &stmts {
        match stmt {
            Stmt::Node(node) => {
                let label = node
                    .attributes
                    .iter()
                    .find(|a| id(&a.0) == "label")
                    .map(|a| id(&a.1))
                    .unwrap_or_else(|| panic!("a node without a label: {node:?}"));
                dot.nodes.push((id(&node.id.0), label));
            }
            Stmt::Edge(edge) => match &edge.ty {
                EdgeTy::Pair(a, b) => dot.edges.push((vertex(a), vertex(b))),
                EdgeTy::Chain(chain) => {
                    for pair in chain.windows(2) {
                        dot.edges.push((vertex(&pair[0]), vertex(&pair[1])));
                    }
                }
            },
            Stmt::Attribute(_) | Stmt::GAttribute(_) => {}
            Stmt::Subgraph(sub) => panic!("an unexpected subgraph: {sub:?}"),
        }
    }
    dot
}

#[test]
fn the_dot_check_rejects_what_graphviz_would() {
    // A quote left unescaped in a label, an edge to nowhere: the parser refuses both.
    for bad in [
        "digraph \"p\" {\n  s0 [label=\"say \"hi\"\"];\n}\n",
        "digraph \"p\" {\n  s0 -> ;\n}\n",
    ] {
        assert!(graphviz_rust::parse(bad).is_err(), "accepted: {bad}");
    }
    let good = parse_dot(
        "digraph \"p\" {\n  s0 [label=\"a \\\"b\\\"\"];\n  s1 [label=\"c\"];\n  s0 -> s1;\n}\n",
    );
    assert_eq!(good.edges, [("s0".to_string(), "s1".to_string())]);
}

/// Manifests that made `orch plan` panic (exit 101): now each is a manifest error (exit 2).
#[test]
fn hostile_manifests_are_manifest_errors_not_panics() {
    let cases = [
        // Three launch offsets of 1e19 s overflowed a Duration.
        (
            "[settings]\nstartup_delay = \"1e19\"\n[jobs.a]\nrun = [\"true\"]\n\
             [jobs.b]\nrun = [\"true\"]\n[jobs.c]\nrun = [\"true\"]\n"
                .to_string(),
            "orch::manifest::duration_too_long",
        ),
        // A 64 KiB name was a format width above u16::MAX.
        (
            format!("[jobs.{}]\nrun = [\"true\"]\n", "n".repeat(65_536)),
            "orch::manifest::long_job_name",
        ),
    ];
    for (manifest, code) in cases {
        let t = Test::new()
            .file("orch.toml", &manifest)
            .args(&["plan", "--simulate"]);
        let out = t.run();
        assert_eq!(out.code, 2, "{code}: {}", out.stderr);
        assert!(out.stderr.contains(code), "{code}: {}", out.stderr);
    }
}

#[test]
fn plan_refuses_a_missing_workspace() {
    let t = Test::new()
        .file(
            "orch.toml",
            "[settings]\nworkspace = \"missing\"\n[jobs.a]\nrun = [\"true\"]\n",
        )
        .args(&["plan"]);
    let out = t.run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "workspace `{}` does not exist",
            t.path().join("missing").display()
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn repeated_needs_are_one_dependency_in_the_plan() {
    let t = Test::new()
        .file(
            "orch.toml",
            "[jobs.a]\nrun = [\"true\"]\n[jobs.b]\nrun = [\"true\"]\nneeds = [\"a\", \"a\"]\n",
        )
        .args(&["plan", "--format", "json"]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(plan["steps"][1]["needs"], serde_json::json!([0]));
}

#[test]
fn an_unreadable_ledger_is_a_warning_in_the_plan() {
    // Also what `ulimit -n 5` leads to: the plan goes on without the ledger, and says why.
    let t = Test::new()
        .file(
            "orch.toml",
            "[budget.window]\nperiod = \"5h\"\nusd = 5.0\n[jobs.a]\nprompt = \"hi\"\n",
        )
        .file(".orch/ledger.sqlite", &"not a database ".repeat(100))
        .allow_unreadable_ledger("the test plants a file that is not a database")
        .args(&["plan", "--simulate"]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("cannot read the ledger .orch/ledger.sqlite: ")
            && out
                .stdout
                .contains("window spend and forecasts are not shown"),
        "{}",
        out.stdout
    );
}
