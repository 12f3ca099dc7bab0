//! Random and mutated manifests: the loader answers with errors, never a panic.

use std::path::Path;

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
];

fn load(name: &str, text: String) {
    // Must return, never panic; errors are fine.
    let _ = orch::manifest::load_str(Path::new(name), text);
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
