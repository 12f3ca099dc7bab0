//! Input limits end to end: manifests and flags that once made `orch run` panic (exit 101), fail
//! only once running (exit 1) or wait a century are setup errors (exit 2) before any step starts.

use super::harness::{Test, orch_bin};

/// Manifests that once panicked (exit 101) or failed only once running (exit 1): each is now a
/// setup error (exit 2) naming its mistake, and the first job, which would touch `ran`, never
/// starts.
#[test]
fn hostile_manifests_are_setup_errors_before_anything_runs() {
    let first = "[jobs.first]\nrun = [\"touch\", \"ran\"]\n";
    let cases = [
        // `Instant::now() + startup_delay` overflowed after the first launch.
        (
            format!("[settings]\nstartup_delay = \"1e19\"\n{first}[jobs.b]\nrun = [\"true\"]\n"),
            "orch::manifest::duration_too_long",
        ),
        // `now - period` overflowed before the run.
        (
            format!("[budget.window]\nperiod = \"999999999999h\"\nusd = 1.0\n{first}"),
            "orch::manifest::duration_too_long",
        ),
        (
            format!("{first}[jobs.b]\nrun = [\"\"]\n"),
            "orch::manifest::empty_program",
        ),
        (
            format!("{first}[jobs.b]\nrun = [\"echo\", \"a\\u0000b\"]\n"),
            "orch::manifest::nul_byte",
        ),
        (
            format!("{first}[jobs.b]\nrun = [\"true\"]\nenv = {{ K = \"\\u0000\" }}\n"),
            "orch::manifest::nul_byte",
        ),
        (
            format!("{first}[jobs.{}]\nrun = [\"true\"]\n", "n".repeat(65_536)),
            "orch::manifest::long_job_name",
        ),
    ];
    for (manifest, code) in cases {
        let t = Test::new()
            .file("orch.toml", &manifest)
            .args(&["run", "--no-progress"]);
        let out = t.run();
        assert_eq!(out.code, 2, "{code}: {}", out.stderr);
        assert!(out.stderr.contains(code), "{code}: {}", out.stderr);
        assert!(!t.path().join("ran").exists(), "{code}: nothing ran");
    }
}

#[test]
fn a_missing_workspace_is_a_setup_error_naming_the_path() {
    let t = Test::new()
        .file(
            "orch.toml",
            "[jobs.first]\nrun = [\"touch\", \"ran\"]\n\
             [jobs.b]\nrun = [\"true\"]\nworkspace = \"no/such/dir\"\n",
        )
        .args(&["run", "--no-progress"]);
    let out = t.run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    let path = t.path().join("no/such/dir");
    assert!(
        out.stderr
            .contains(&format!("workspace `{}` does not exist", path.display())),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("orch::manifest::missing_workspace"));
    assert!(out.stderr.contains("[jobs.b]"), "{}", out.stderr);
    assert!(!t.path().join("ran").exists(), "nothing ran");
    // The flag's folder is checked the same way.
    let out = t
        .with_args(&["run", "--no-progress", "--workspace", "gone"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("workspace `gone` does not exist") && stderr.contains("--workspace"),
        "{stderr}"
    );
}

#[test]
fn flags_longer_than_a_century_are_setup_errors() {
    let t = Test::new().file("orch.toml", "[jobs.first]\nrun = [\"touch\", \"ran\"]\n");
    let cases: [(&[&str], &str); 4] = [
        (&["--startup-delay", "1e19"], "--startup-delay"),
        (&["--timeout", "999999999999h"], "--timeout"),
        // Parsing this start time panicked (float seconds too big for a Duration).
        (&["--start-at", "99999999999999999999h"], "--start-at"),
        // This one waited 114 years.
        (&["--start-at", "999999h"], "--start-at"),
    ];
    for (flags, flag) in cases {
        let mut args = vec!["run", "--no-progress"];
        args.extend_from_slice(flags);
        let out = t.with_args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("36500d (100 years)"),
            "{flags:?}: {stderr}"
        );
    }
    assert!(!t.path().join("ran").exists(), "nothing ran");
}

#[test]
fn ledger_since_longer_than_a_century_is_a_setup_error() {
    let t = Test::new().file("orch.toml", "[jobs.a]\nrun = [\"true\"]\n");
    let out = t.with_args(&["run", "--no-progress"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let out = t
        .with_args(&["ledger", "--since", "999999999999h"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--since") && stderr.contains("36500d (100 years)"),
        "{stderr}"
    );
    // A century back is fine.
    let out = t
        .with_args(&["ledger", "--since", "36500d"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn too_few_open_files_is_a_setup_error_not_a_panic() {
    let t = Test::new().file("orch.toml", "[jobs.a]\nrun = [\"touch\", \"ran\"]\n");
    // bash's `ulimit -n` lowers the hard limit too, so orch cannot raise it back.
    let out = std::process::Command::new("bash")
        .current_dir(t.path())
        .env("HOME", t.path().join("home"))
        .env("NO_COLOR", "1")
        .args(["-c", "ulimit -n 7; exec \"$0\" run --no-progress"])
        .arg(orch_bin())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("orch::setup::too_few_files")
            && stderr.contains("orch may open only 7 files at once (hard limit 7)"),
        "{stderr}"
    );
    assert!(!t.path().join("ran").exists(), "nothing ran");
}
