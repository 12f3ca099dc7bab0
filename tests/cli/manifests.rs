//! The bundled manifests and the schema: they load, they validate, the schema is not stale.

use super::harness::{Test, root};

fn bundled_manifests() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("manifests"))
        .expect("manifests/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "the demo and the nightly example");
    files
}

#[test]
fn the_committed_schema_is_what_orch_schema_prints() {
    let out = Test::new().args(&["schema"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let committed = std::fs::read_to_string(root().join("schemas/orch-manifest.schema.json"))
        .expect("committed schema");
    assert!(
        committed == out.stdout,
        "schemas/orch-manifest.schema.json is stale: run `cargo run -- schema > schemas/orch-manifest.schema.json`"
    );
}

#[test]
fn every_bundled_manifest_validates_against_the_schema_and_names_it() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/orch-manifest.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    for path in bundled_manifests() {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("#:schema ../schemas/orch-manifest.schema.json\n"),
            "{} must start with a #:schema line",
            path.display()
        );
        let value: serde_json::Value = toml::from_str(&text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
}

#[test]
fn the_schema_rejects_what_the_loader_rejects() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/orch-manifest.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for bad in [
        "[jobs.a]\nrun = [\"a\"]\ntimout = \"5s\"\n",
        "[jobs.a]\nrun = \"a\"\n",
        "[settings]\nstartup_delay = \"soon\"\n",
        "[budget]\nwindow = { period = \"5h\", dollars = 3 }\n",
    ] {
        let value: serde_json::Value = toml::from_str(bad).unwrap();
        assert!(!validator.is_valid(&value), "schema accepted:\n{bad}");
    }
}

#[test]
fn every_bundled_manifest_plans() {
    for path in bundled_manifests() {
        let out = Test::new()
            .args(&["plan", path.to_str().unwrap(), "--simulate"])
            .run();
        assert_eq!(out.code, 0, "{}: {}", path.display(), out.stderr);
        assert!(out.stdout.starts_with("plan "), "{}", out.stdout);
    }
}

#[test]
fn zen_configs_convert_and_the_toml_plans_the_same() {
    for name in ["all-keys", "my-config", "production-config"] {
        let json = std::fs::read_to_string(root().join(format!("tests/fixtures/zen/{name}.json")))
            .unwrap();
        let t = Test::new().file(&format!("{name}.json"), &json);
        let converted = t
            .command()
            .args(["convert", &format!("{name}.json")])
            .output()
            .unwrap();
        assert!(converted.status.success());
        std::fs::write(t.path().join(format!("{name}.toml")), &converted.stdout).unwrap();
        let plan = |file: &str| {
            let out = t
                .command()
                .args(["plan", file, "--format", "json", "--simulate"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            v["manifest"] = serde_json::Value::Null;
            // Unnamed sessions are fresh per invocation; the rest must match exactly.
            for step in v["steps"].as_array_mut().unwrap() {
                step["argv"] = serde_json::Value::Null;
                step["session"] = serde_json::Value::Null;
            }
            v
        };
        assert_eq!(
            plan(&format!("{name}.json")),
            plan(&format!("{name}.toml")),
            "{name}"
        );
    }
}

/// Every complete ```toml (and ```json) example in the book loads; fragments are marked `,ignore`.
#[test]
fn every_example_in_the_book_loads() {
    let mut checked = 0;
    let dir = root().join("book/src");
    let mut chapters: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    chapters.sort();
    for chapter in chapters {
        let text = std::fs::read_to_string(&chapter).unwrap();
        let mut block: Option<(&str, String, usize)> = None;
        for (n, line) in text.lines().enumerate() {
            match &mut block {
                None => {
                    let fence = line.trim_start();
                    if fence == "```toml" {
                        block = Some(("orch.toml", String::new(), n + 1));
                    } else if fence == "```json" {
                        block = Some(("zen.json", String::new(), n + 1));
                    }
                }
                Some((name, body, start)) => {
                    if line.trim_start().starts_with("```") {
                        let path = dir.join(*name);
                        if let Err(e) = orch::manifest::load_str(&path, body.clone()) {
                            panic!(
                                "{}:{start}: example does not load: {:?}",
                                chapter.display(),
                                miette::Report::new(e)
                            );
                        }
                        checked += 1;
                        block = None;
                    } else {
                        body.push_str(line);
                        body.push('\n');
                    }
                }
            }
        }
    }
    assert!(checked >= 5, "only {checked} examples found");
}
