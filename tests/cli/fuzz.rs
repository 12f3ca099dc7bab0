//! Random and mutated manifests: the loader answers with errors, never a panic; and every
//! manifest that loads also plans and renders in every format (text, JSON, dot, Mermaid)
//! without a panic, whatever its durations, names, bytes or scripts.

use std::path::Path;

use orch::cli::PlanFormat;
use orch::plan::{Plan, PlanOptions};
use proptest::prelude::*;

const SEEDS: &[&str] = &[
    include_str!("../../manifests/demo.toml"),
    include_str!("../../manifests/nightly-quality.toml"),
    include_str!("../fixtures/zen/all-keys.json"),
    include_str!("../fixtures/zen/my-config.json"),
];

/// One edit of a valid manifest: delete, duplicate, or replace a slice with a fragment.
fn mutate(seed: &str, at: usize, len: usize, fragment: &str, kind: u8) -> String {
    let bytes = seed.as_bytes();
    let at = at % (bytes.len() + 1);
    let end = (at + len).min(bytes.len());
    let mut out = Vec::with_capacity(bytes.len() + fragment.len());
    out.extend_from_slice(&bytes[..at]);
    match kind % 3 {
        0 => {}
        1 => out.extend_from_slice(&bytes[at..end]),
        _ => out.extend_from_slice(fragment.as_bytes()),
    }
    if kind % 3 == 1 {
        out.extend_from_slice(&bytes[at..]);
    } else {
        out.extend_from_slice(&bytes[end..]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

const FRAGMENTS: &[&str] = &[
    "\"",
    "[",
    "]",
    "{",
    "}",
    "=",
    ",",
    "\n",
    "needs = [\"lint\"]",
    "-1",
    "0",
    "1e999",
    "9223372036854775808",
    "[jobs.x]\n",
    "\"\\u0000\"",
    "é",
    "null",
    "true",
    "[[jobs]]",
    "run = []",
    "timeout = \"-5s\"",
    "startup_delay = 1e308",
    "cron = \"* * * * * * * *\"",
    "needs = [\"demo\"]",
    "max_parallel = -3",
    "commands.\"/a\" = 5",
    "\"instances\": 5,",
    // Limits: huge and maximal durations, long names, NUL bytes, unicode, empty programs.
    "startup_delay = \"36500d\"",
    "startup_delay = \"1e19\"",
    "timeout = 1e19",
    "period = \"999999999999h\"",
    "start_at = \"999999h\"",
    "start_at = \"9999-12-31T23:59\"",
    "[jobs.nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn]\n",
    "\"\\u0000\\u0000\"",
    "\"ü日本\u{202e}\"",
    "[jobs.\"日本語 ジョブ\"]\nrun = [\"ü\"]\n",
    "run = [\"\"]",
    "needs = [\"lint\", \"lint\"]",
];

/// Loads the text and, when it is a valid manifest, plans it and renders the plan in every
/// format. Must return, never panic; errors are fine.
fn load(name: &str, text: String) {
    let Ok(manifest) = orch::manifest::load_str(Path::new(name), text) else {
        return;
    };
    plan_and_render(&manifest);
}

fn plan_and_render(manifest: &orch::manifest::Manifest) {
    let plan = Plan::build(
        manifest,
        &PlanOptions {
            agent: orch::agent::AgentProgram::by_name(),
            run_id: uuid::Uuid::nil(),
        },
    );
    let view = orch::commands::plan::view(
        manifest,
        &plan,
        chrono::Utc::now(),
        manifest.warnings.clone(),
    );
    for format in [
        PlanFormat::Text,
        PlanFormat::Json,
        PlanFormat::Dot,
        PlanFormat::Mermaid,
    ] {
        let out = orch::report::plan::render(&view, format);
        assert!(!out.is_empty());
    }
}

/// A manifest built from parts chosen at random: names, durations, strings and needs.
fn generated(
    names: &[String],
    durations: &[String],
    strings: &[String],
    needs: &[(usize, usize)],
) -> String {
    let mut text = format!(
        "[settings]\nstartup_delay = {}\ntimeout = {}\n[schedule]\nstart_at = {}\n\
         [budget.window]\nperiod = {}\nusd = 1.0\n",
        toml_string(&durations[0]),
        toml_string(&durations[1]),
        toml_string(&durations[2]),
        toml_string(&durations[3]),
    );
    for (i, name) in names.iter().enumerate() {
        let s = &strings[i % strings.len()];
        text.push_str(&format!("[jobs.{}]\n", toml_string(name)));
        match i % 4 {
            0 => text.push_str(&format!("run = [{}, {}]\n", toml_string(s), toml_string(s))),
            1 => text.push_str(&format!("shell = {}\n", toml_string(s))),
            2 => text.push_str(&format!(
                "command = {}\npre_commands = [{}]\n",
                toml_string(&format!("/{s}")),
                toml_string(s)
            )),
            _ => text.push_str(&format!(
                "prompt = {}\nenv = {{ K = {} }}\n",
                toml_string(s),
                toml_string(s)
            )),
        }
        text.push_str(&format!(
            "timeout = {}\n",
            toml_string(&durations[i % durations.len()])
        ));
        // Mostly earlier jobs (a DAG that plans), sometimes any job (cycles, itself).
        let mine: Vec<String> = needs
            .iter()
            .filter(|(from, _)| from % names.len() == i)
            .map(|(_, to)| match (i, to % 5) {
                (0, _) | (_, 0) => toml_string(&names[to % names.len()]),
                _ => toml_string(&names[to % i]),
            })
            .collect();
        if !mine.is_empty() {
            text.push_str(&format!("needs = [{}]\n", mine.join(", ")));
        }
    }
    text
}

/// A TOML basic string holding `s` exactly (control characters escaped).
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("36500d".to_string()),
        1 => Just("36500d1s".to_string()),
        1 => Just("1e19".to_string()),
        1 => Just("999999999999h".to_string()),
        2 => Just("0s".to_string()),
        1 => Just("999999h".to_string()),
        1 => "[0-9]{1,25}(ms|s|m|h|d)",
        8 => "[0-9]{1,4}(ms|s|m|h|d)",
        2 => "[0-9]{1,3}(\\.[0-9]{1,3})?",
    ]
}

fn name_text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z]{1,8}",
        4 => "\\PC{1,12}",
        1 => "[a-z]{120,140}",
        2 => Just("é".repeat(128)),
        1 => Just("a\u{0}b".to_string()),
    ]
}

/// The largest values the loader accepts, together: they plan and render.
#[test]
fn extreme_but_valid_manifests_plan_and_render() {
    let mut text = String::from(
        "[settings]\nstartup_delay = \"36500d\"\ntimeout = \"36500d\"\n\
         [schedule]\nstart_at = \"36500d\"\ncron = \"@daily\"\n\
         [budget.window]\nperiod = \"36500d\"\nusd = 1.0\n",
    );
    let name = |i: usize| format!("{i:03}{}", "日".repeat(125));
    for i in 0..300 {
        text.push_str(&format!(
            "[jobs.\"{}\"]\nprompt = \"ü\u{202e}\"\npre_commands = [\"/compact\"]\n",
            name(i)
        ));
        if i % 2 == 1 {
            text.push_str(&format!("needs = [\"{}\"]\n", name(i - 1)));
        }
    }
    let manifest = orch::manifest::load_str(Path::new("orch.toml"), text).expect("valid");
    assert_eq!(manifest.settings.startup_delay, orch::duration::MAX);
    plan_and_render(&manifest);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn mutated_manifests_never_panic(
        seed in 0..SEEDS.len(),
        at in any::<usize>(),
        len in 0usize..40,
        fragment in 0..FRAGMENTS.len(),
        kind in any::<u8>(),
        repeat in 1usize..4,
    ) {
        let mut text = SEEDS[seed].to_string();
        for i in 0..repeat {
            text = mutate(&text, at.wrapping_mul(i + 1), len, FRAGMENTS[(fragment + i) % FRAGMENTS.len()], kind.wrapping_add(i as u8));
        }
        let name = if seed >= 2 { "zen.json" } else { "orch.toml" };
        load(name, text);
    }

    #[test]
    fn generated_manifests_plan_and_render(
        names in proptest::collection::vec(name_text(), 1..8),
        durations in proptest::collection::vec(duration_text(), 4..8),
        strings in proptest::collection::vec(prop_oneof!["\\PC{0,20}", "[a-z ]{0,10}", Just(String::new()), Just("\u{0}".to_string())], 1..4),
        needs in proptest::collection::vec((0usize..8, 0usize..8), 0..10),
    ) {
        load("orch.toml", generated(&names, &durations, &strings, &needs));
    }

    #[test]
    fn random_text_never_panics(text in "\\PC{0,300}") {
        load("orch.toml", text.clone());
        load("zen.json", text);
    }

    #[test]
    fn random_toml_shaped_text_never_panics(
        lines in proptest::collection::vec("(\\[jobs\\.[a-c]\\]|[a-z_]{1,14} = (\"[a-z/ 0-9]{0,8}\"|-?[0-9]{1,3}|\\[\"[a-c]\"\\]|true|\\{ tokens = -?[0-9] \\}))", 0..30)
    ) {
        load("orch.toml", lines.join("\n"));
    }
}
