//! One test per diagnostic: its code, the byte span of its label, and its help text.

use std::path::Path;

use miette::Diagnostic;

use super::*;

fn errors_of(name: &str, text: &str) -> Vec<ManifestError> {
    match load_str(Path::new(name), text.to_string()) {
        Ok(m) => panic!("expected errors, loaded {m:?}"),
        Err(LoadError::Invalid(e)) => e.errors,
        Err(e) => panic!("unexpected {e:?}"),
    }
}

fn toml_errors(text: &str) -> Vec<ManifestError> {
    errors_of("orch.toml", text)
}

/// Code, (labelled text, label) of each label, help.
fn parts(text: &str, e: &ManifestError) -> (String, Vec<String>, String) {
    let code = e.code().map(|c| c.to_string()).unwrap_or_default();
    let labels = e
        .labels()
        .into_iter()
        .flatten()
        .map(|l| text[l.offset()..l.offset() + l.len()].to_string())
        .collect();
    let help = e.help().map(|h| h.to_string()).unwrap_or_default();
    (code, labels, help)
}

fn only(text: &str, errors: Vec<ManifestError>) -> (String, Vec<String>, String) {
    assert_eq!(errors.len(), 1, "{errors:#?}");
    parts(text, &errors[0])
}

#[test]
fn toml_syntax_error() {
    let text = "[jobs.a]\nrun = [\"true\"\n";
    let (code, labels, help) = only(text, toml_errors(text));
    assert_eq!(code, "orch::manifest::syntax");
    assert_eq!(labels.len(), 1);
    assert!(help.contains("TOML syntax"));
}

#[test]
fn json_syntax_error_points_at_the_trailing_comma() {
    let text = "{\"instances\": [{\"command\": \"/a\"},]}";
    let errors = errors_of("zen.json", text);
    let (code, _, help) = only(text, errors.clone());
    assert_eq!(code, "orch::manifest::syntax");
    assert!(help.contains("JSON syntax"));
    let offset = errors[0].offset();
    assert_eq!(&text[offset..offset + 1], ",");
}

#[test]
fn unknown_key_suggests_the_closest() {
    let text = "[jobs.a]\nrun = [\"true\"]\nneeds = []\ntimout = \"5s\"\n";
    let (code, labels, help) = only(text, toml_errors(text));
    assert_eq!(code, "orch::manifest::unknown_key");
    assert_eq!(labels, ["timout"]);
    assert_eq!(help, "did you mean `timeout`?");
}

#[test]
fn unknown_key_without_a_close_match_lists_the_keys() {
    let text = "[budget]\nfrobnicate = 1\n[jobs.a]\nrun = [\"true\"]\n";
    let (_, labels, help) = only(text, toml_errors(text));
    assert_eq!(labels, ["frobnicate"]);
    assert!(
        help.starts_with("the keys of [budget] are: mode, tokens, usd"),
        "{help}"
    );
}

#[test]
fn wrong_type_names_the_path_and_suggests_a_fix() {
    let text = "[jobs.a]\nrun = [\"true\"]\nmax_tokens = \"5000\"\n";
    let errors = toml_errors(text);
    assert_eq!(
        errors[0].to_string(),
        "`jobs.a.max_tokens` must be an integer, found a string"
    );
    let (code, labels, help) = only(text, errors);
    assert_eq!(code, "orch::manifest::wrong_type");
    assert_eq!(labels, ["\"5000\""]);
    assert_eq!(help, "remove the quotes: 5000");
}

#[test]
fn a_string_where_a_list_belongs() {
    let text = "[jobs.a]\nrun = \"cargo test\"\n";
    let (code, labels, help) = only(text, toml_errors(text));
    assert_eq!(code, "orch::manifest::wrong_type");
    assert_eq!(labels, ["\"cargo test\""]);
    assert!(help.contains("wrap it in brackets"));
}

#[test]
fn job_with_nothing_to_run() {
    let text = "[jobs.idle]\ndescription = \"nothing\"\n";
    let (code, labels, help) = only(text, toml_errors(text));
    assert_eq!(code, "orch::manifest::no_command");
    assert_eq!(labels, ["idle"]);
    assert!(help.contains("`run = [\"program\", \"arg\"]`"));
}

#[test]
fn job_with_two_things_to_run() {
    let text = "[jobs.a]\ncommand = \"/review\"\nrun = [\"true\"]\n";
    let (code, labels, help) = only(text, toml_errors(text));
    assert_eq!(code, "orch::manifest::conflicting_command");
    assert_eq!(labels, ["\"/review\"", "[\"true\"]"]);
    assert!(help.contains("keep exactly one"));
}

#[test]
fn duplicate_job_names_in_json() {
    let text = r#"{"instances": [
        {"name": "a", "command": "/x"},
        {"name": "a", "command": "/y"}
    ]}"#;
    let (code, labels, help) = only(text, errors_of("zen.json", text));
    assert_eq!(code, "orch::manifest::duplicate_job");
    assert_eq!(labels, ["\"a\"", "\"a\""]);
    assert!(help.contains("give each job its own name"));
}

#[test]
fn duplicate_keys_in_json() {
    let text = r#"{"instances": [{"command": "/x", "command": "/y"}]}"#;
    let (code, labels, _) = only(text, errors_of("zen.json", text));
    assert_eq!(code, "orch::manifest::duplicate_key");
    assert_eq!(labels, ["\"command\"", "\"command\""]);
}

#[test]
fn a_repeated_job_table_in_toml_is_a_duplicate_job() {
    let text = "[jobs.a]\nrun = [\"a\"]\n\n[jobs.b]\nrun = [\"b\"]\n\n[jobs.a]\nrun = [\"c\"]\n";
    let (code, labels, help) = only(text, toml_errors(text));
    assert_eq!(code, "orch::manifest::duplicate_job");
    assert_eq!(labels, ["[jobs.a]", "[jobs.a]"]);
    assert!(help.contains("give each job its own name"));
}

#[test]
fn other_duplicate_keys_in_toml_stay_syntax_errors() {
    let text = "[jobs.a]\nrun = [\"a\"]\nrun = [\"b\"]\n";
    let errors = toml_errors(text);
    let (code, labels, _) = parts(text, &errors[0]);
    assert_eq!(code, "orch::manifest::syntax");
    assert_eq!(errors[0].to_string(), "TOML syntax error: duplicate key");
    assert_eq!(labels, ["run"]);
}

#[test]
fn unknown_need_suggests_a_job() {
    let text = "[jobs.build]\nrun = [\"make\"]\n[jobs.test]\nrun = [\"make\", \"test\"]\nneeds = [\"biuld\"]\n";
    let (code, labels, help) = only(text, toml_errors(text));
    assert_eq!(code, "orch::manifest::unknown_need");
    assert_eq!(labels, ["\"biuld\""]);
    assert_eq!(help, "did you mean `build`?");
}

#[test]
fn cycle_names_every_job_of_the_loop() {
    let text = "[jobs.a]\nrun = [\"a\"]\nneeds = [\"c\"]\n\
                [jobs.b]\nrun = [\"b\"]\nneeds = [\"a\"]\n\
                [jobs.c]\nrun = [\"c\"]\nneeds = [\"b\"]\n\
                [jobs.d]\nrun = [\"d\"]\nneeds = [\"a\"]\n";
    let errors = toml_errors(text);
    assert_eq!(
        errors[0].to_string(),
        "dependency cycle: `a` → `c` → `b` → `a`"
    );
    let (code, labels, help) = only(text, errors);
    assert_eq!(code, "orch::manifest::cycle");
    assert_eq!(labels, ["\"c\"", "\"a\"", "\"b\""]);
    assert!(help.contains("remove one of these `needs`"));
}

#[test]
fn a_job_needing_itself_is_a_cycle() {
    let text = "[jobs.a]\nrun = [\"a\"]\nneeds = [\"a\"]\n";
    let errors = toml_errors(text);
    assert_eq!(errors[0].to_string(), "dependency cycle: `a` → `a`");
}

#[test]
fn bad_duration() {
    let text = "[settings]\nstartup_delay = \"5 parsecs\"\n[jobs.a]\nrun = [\"a\"]\n";
    let errors = toml_errors(text);
    assert_eq!(
        errors[0].to_string(),
        "`settings.startup_delay` is not a duration: unknown unit `parsecs`"
    );
    let (code, labels, help) = only(text, errors);
    assert_eq!(code, "orch::manifest::bad_duration");
    assert_eq!(labels, ["\"5 parsecs\""]);
    assert!(help.contains("\"30m\""));
}

#[test]
fn durations_longer_than_a_century_are_refused() {
    // 1e19 s overflowed `Instant::now() + startup_delay` (a panic in plan and run), and
    // 999999999999h made `now - period` overflow.
    let text = "[settings]\nstartup_delay = \"1e19\"\ntimeout = 1e19\n\
                [budget.window]\nperiod = \"999999999999h\"\nusd = 1.0\n\
                [jobs.a]\nrun = [\"a\"]\ntimeout = \"36500d1s\"\n";
    let errors = toml_errors(text);
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_eq!(
        errors[0].to_string(),
        "`settings.startup_delay` is longer than the maximum duration, 36500d (100 years)"
    );
    let labels: Vec<String> = errors.iter().flat_map(|e| parts(text, e).1).collect();
    assert_eq!(
        labels,
        ["\"1e19\"", "1e19", "\"999999999999h\"", "\"36500d1s\""]
    );
    for e in &errors {
        let (code, _, help) = parts(text, e);
        assert_eq!(code, "orch::manifest::duration_too_long");
        assert!(help.contains("36500d (100 years)"), "{help}");
    }
    // The maximum itself is accepted.
    let m = load_str(
        Path::new("orch.toml"),
        "[settings]\nstartup_delay = \"36500d\"\n[jobs.a]\nrun = [\"a\"]\n".into(),
    )
    .expect("a century is allowed");
    assert_eq!(m.settings.startup_delay, crate::duration::MAX);
}

#[test]
fn job_names_longer_than_128_characters_are_refused() {
    // A 64 KiB name made `orch plan` panic (a format width above u16::MAX).
    let name = "n".repeat(65_536);
    let text = format!("[jobs.{name}]\nrun = [\"a\"]\n[jobs.ok]\nrun = [\"b\"]\n");
    let errors = toml_errors(&text);
    assert_eq!(
        errors[0].to_string(),
        "job name `nnnnnnnnnnnnnnnnnnnn…` is 65536 characters long; the most is 128"
    );
    let (code, labels, help) = only(&text, errors);
    assert_eq!(code, "orch::manifest::long_job_name");
    assert_eq!(labels, [name.as_str()]);
    assert!(help.contains("128 characters"), "{help}");
    // Characters, not bytes.
    let name = "é".repeat(128);
    let text = format!("[jobs.\"{name}\"]\nrun = [\"a\"]\n");
    assert!(load_str(Path::new("orch.toml"), text).is_ok());
}

#[test]
fn an_empty_program_is_refused() {
    let text = "[jobs.a]\nrun = [\"\", \"x\"]\n";
    let errors = toml_errors(text);
    assert_eq!(
        errors[0].to_string(),
        "`jobs.a.run[0]` is empty: a job's program needs a name"
    );
    let (code, labels, help) = only(text, errors);
    assert_eq!(code, "orch::manifest::empty_program");
    assert_eq!(labels, ["\"\""]);
    assert!(help.contains("run = [\"cargo\", \"test\"]"), "{help}");
}

#[test]
fn nul_bytes_are_refused_in_every_string_and_key() {
    let text = "[settings]\nworkspace = \"w\\u0000\"\n\
                [defaults]\nenv = { \"K\\u0000\" = \"v\" }\n\
                [jobs.a]\nrun = [\"echo\", \"a\\u0000b\"]\nenv = { K = \"v\\u0000\" }\n\
                [jobs.b]\nprompt = \"hi\\u0000\"\nworkspace = \"x\\u0000\"\n";
    let errors = toml_errors(text);
    let found: Vec<(String, Vec<String>)> = errors
        .iter()
        .map(|e| {
            let (code, labels, help) = parts(text, e);
            assert_eq!(code, "orch::manifest::nul_byte");
            assert!(help.contains("remove the \\u0000"), "{help}");
            (e.to_string(), labels)
        })
        .collect();
    let expected = [
        ("settings.workspace", "\"w\\u0000\""),
        ("defaults.env.\"K\\0\"", "\"K\\u0000\""),
        ("jobs.a.run.1", "\"a\\u0000b\""),
        ("jobs.a.env.K", "\"v\\u0000\""),
        ("jobs.b.prompt", "\"hi\\u0000\""),
        ("jobs.b.workspace", "\"x\\u0000\""),
    ];
    let expected: Vec<(String, Vec<String>)> = expected
        .iter()
        .map(|(p, l)| (format!("`{p}` holds a NUL byte"), vec![l.to_string()]))
        .collect();
    assert_eq!(found, expected);
    // In a zen config too (JSON's "\u0000").
    let json = r#"{"instances": [{"command": "/a\u0000"}]}"#;
    let (code, labels, _) = only(json, errors_of("zen.json", json));
    assert_eq!(code, "orch::manifest::nul_byte");
    assert_eq!(labels, ["\"/a\\u0000\""]);
}

#[test]
fn repeated_needs_count_once() {
    let text = "[jobs.a]\nrun = [\"a\"]\n[jobs.b]\nrun = [\"b\"]\n\
                [jobs.c]\nrun = [\"c\"]\nneeds = [\"a\", \"b\", \"a\", \"a\"]\n";
    let m = load_str(Path::new("orch.toml"), text.into()).expect("valid");
    assert_eq!(m.jobs[2].need_names().collect::<Vec<_>>(), ["a", "b"]);
}

#[test]
fn only_the_first_hundred_errors_are_kept_for_rendering() {
    let text: String = (0..250)
        .map(|i| format!("[jobs.j{i}]\nrun = [\"true\"]\nneeds = [\"j{i}\"]\n"))
        .collect();
    let Err(LoadError::Invalid(e)) = load_str(Path::new("orch.toml"), text) else {
        panic!("250 cycles");
    };
    assert_eq!(e.total, 250);
    assert_eq!(e.errors.len(), 100);
    assert_eq!(
        e.to_string(),
        "250 errors in orch.toml (the first 100 are shown)"
    );
    assert_eq!(e.errors[99].to_string(), "dependency cycle: `j99` → `j99`");
}

/// Asserts that loading grows about linearly: 8 times the size takes less than 32 times as long
/// (linear is 8, n log n about 10, quadratic 64, cubic 512). The two sizes are timed in turns,
/// five times each, and the fastest of each kept, so load on a shared machine hits both alike.
/// The first large load runs on a thread with a deadline, so that a regression fails instead of
/// hanging.
fn loads_in_linear_time(name: &'static str, make: fn(usize) -> String, small: usize) {
    // Loading, and rendering the errors as `orch` prints them.
    let load = move |n: usize| {
        let text = make(n);
        move || {
            let t = std::time::Instant::now();
            if let Err(e) = load_str(Path::new(name), text.clone()) {
                let _ = format!("{:?}", miette::Report::new(e));
            }
            t.elapsed().as_secs_f64()
        }
    };
    let (small_load, big_load) = (load(small), load(8 * small));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let first = big_load();
        let _ = tx.send((first, big_load));
    });
    let Ok((first, big_load)) = rx.recv_timeout(std::time::Duration::from_secs(60)) else {
        panic!("{name}: {} did not load within 60 s", 8 * small);
    };
    // The best of interleaved rounds; on a loaded machine a round can be slowed at random, so a
    // failing ratio is measured again (up to three times): a quadratic load fails every time.
    let (mut t_small, mut t_big) = (f64::INFINITY, first);
    for _ in 0..3 {
        for _ in 0..5 {
            t_small = t_small.min(small_load());
            t_big = t_big.min(big_load());
        }
        if t_big < 32.0 * t_small.max(0.0005) {
            return;
        }
    }
    panic!(
        "{name}: {small} took {t_small:.4}s, {} took {t_big:.4}s",
        8 * small
    );
}

#[test]
fn unnamed_zen_instances_are_named_after_their_command() {
    let long = "p".repeat(300);
    let json = format!(
        r#"{{"instances": [{{"command": "/a"}}, {{"command": "/a"}}, {{"name": "/a-3", "command": "/b"}},
            {{"command": "/a"}}, {{"prompt": "{long}"}}, {{"prompt": "{long}"}}]}}"#
    );
    let m = load_str(Path::new("zen.json"), json).expect("valid");
    let names: Vec<&str> = m.jobs.iter().map(|j| j.name.as_str()).collect();
    let cut = "p".repeat(120);
    assert_eq!(
        names,
        [
            "/a",
            "/a-2",
            "/a-3",
            "/a-4",
            cut.as_str(),
            &format!("{cut}-2")
        ]
    );
}

#[test]
fn naming_unnamed_zen_instances_takes_linear_time() {
    // Every instance runs the same command, so each needs a "-N" suffix.
    fn config(n: usize) -> String {
        let one = r#"{"command": "/same"}"#;
        format!("{{\"instances\": [{}]}}", vec![one; n].join(","))
    }
    loads_in_linear_time("zen.json", config, 1000);
}

#[test]
fn cycle_diagnostics_take_linear_time() {
    // One loop through every job: j0 needs j1, ..., the last needs j0.
    fn ring(n: usize) -> String {
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&format!(
                "[jobs.j{i}]\nrun = [\"true\"]\nneeds = [\"j{}\"]\n",
                (i + 1) % n
            ));
        }
        text
    }
    loads_in_linear_time("orch.toml", ring, 2000);
}

#[test]
fn many_errors_take_linear_time() {
    // A job needing itself, thousands of times: one error each.
    fn loops(n: usize) -> String {
        (0..n)
            .map(|i| format!("[jobs.j{i}]\nrun = [\"true\"]\nneeds = [\"j{i}\"]\n"))
            .collect()
    }
    loads_in_linear_time("orch.toml", loops, 1000);
}

#[test]
fn a_long_cycle_is_named_by_its_ends() {
    let n = 100;
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "[jobs.j{i}]\nrun = [\"true\"]\nneeds = [\"j{}\"]\n",
            (i + 1) % n
        ));
    }
    let errors = toml_errors(&text);
    let (code, labels, _) = only(&text, errors.clone());
    assert_eq!(code, "orch::manifest::cycle");
    assert_eq!(labels.len(), 20);
    let message = errors[0].to_string();
    assert!(
        message.starts_with("dependency cycle: `j0` → `j1` → ")
            && message.contains("`j9` → … 80 more … → `j90` → ")
            && message.ends_with("`j99` → `j0` (100 jobs)"),
        "{message}"
    );
}

#[test]
fn negative_and_zero_budgets() {
    let text = "[budget]\ntokens = -5\nusd = 0.0\n[jobs.a]\nrun = [\"a\"]\n";
    let errors = toml_errors(text);
    assert_eq!(errors.len(), 2);
    let (code, labels, help) = parts(text, &errors[0]);
    assert_eq!(code, "orch::manifest::bad_budget");
    assert_eq!(labels, ["-5"]);
    assert!(help.contains("tokens of at least 1"));
    let (_, labels, help) = parts(text, &errors[1]);
    assert_eq!(labels, ["0.0"]);
    assert!(help.contains("dollars above zero"));
}

#[test]
fn counts_must_be_positive() {
    let text = "[settings]\nmax_parallel = 0\n[jobs.a]\nrun = [\"a\"]\n";
    let (code, labels, help) = only(text, toml_errors(text));
    assert_eq!(code, "orch::manifest::not_positive");
    assert_eq!(labels, ["0"]);
    assert_eq!(
        help,
        "write 1 or more, or remove `settings.max_parallel` for the default"
    );
}

#[test]
fn bad_enumerated_value_suggests_the_closest() {
    let text = "[jobs.a]\ncommand = \"/x\"\npermission_mode = \"bypasspermissions\"\n";
    let (code, labels, help) = only(text, toml_errors(text));
    assert_eq!(code, "orch::manifest::bad_value");
    assert_eq!(labels, ["\"bypasspermissions\""]);
    assert_eq!(help, "did you mean \"bypassPermissions\"?");
}

#[test]
fn bad_cron() {
    let text = "[schedule]\ncron = \"0 2 * *\"\n[jobs.a]\nrun = [\"a\"]\n";
    let (code, labels, help) = only(text, toml_errors(text));
    assert_eq!(code, "orch::manifest::bad_cron");
    assert_eq!(labels, ["\"0 2 * *\""]);
    assert!(help.contains("@daily"));
}

#[test]
fn bad_start_at_lists_the_accepted_forms() {
    let text = "[schedule]\nstart_at = \"13pm\"\n[jobs.a]\nrun = [\"a\"]\n";
    let (code, labels, help) = only(text, toml_errors(text));
    assert_eq!(code, "orch::manifest::bad_start_at");
    assert_eq!(labels, ["\"13pm\""]);
    assert!(
        help.contains("\"2am\"") && help.contains("ISO 8601"),
        "{help}"
    );
}

#[test]
fn bad_timezone_suggests_the_closest() {
    let text =
        "[schedule]\ncron = \"@daily\"\ntimezone = \"Europe/Berln\"\n[jobs.a]\nrun = [\"a\"]\n";
    let (code, labels, help) = only(text, toml_errors(text));
    assert_eq!(code, "orch::manifest::bad_timezone");
    assert_eq!(labels, ["\"Europe/Berln\""]);
    assert_eq!(help, "did you mean \"Europe/Berlin\"?");
    let text = "[schedule]\ntimezone = \"Mars/Olympus\"\n[jobs.a]\nrun = [\"a\"]\n";
    let (_, _, help) = only(text, toml_errors(text));
    assert!(help.contains("IANA"), "{help}");
}

#[test]
fn empty_manifest() {
    for text in ["", "name = \"x\"\n", "[jobs]\n"] {
        let (code, _, help) = only(text, toml_errors(text));
        assert_eq!(code, "orch::manifest::empty");
        assert!(help.contains("[jobs.hello]"));
    }
    let (code, _, _) = only("{}", errors_of("zen.json", "{}"));
    assert_eq!(code, "orch::manifest::empty");
}

#[test]
fn every_error_of_a_file_is_reported_at_once_in_file_order() {
    let text = "[settings]\ntimeout = \"soon\"\n\
                [jobs.a]\nrun = [\"a\"]\nneeds = [\"zz\"]\ntimout = 1\n\
                [jobs.b]\nmax_usd = -1.0\n";
    let errors = toml_errors(text);
    let codes: Vec<String> = errors
        .iter()
        .map(|e| e.code().map(|c| c.to_string()).unwrap_or_default())
        .collect();
    assert_eq!(
        codes,
        [
            "orch::manifest::bad_duration",
            "orch::manifest::unknown_need",
            "orch::manifest::unknown_key",
            "orch::manifest::no_command",
        ],
        "{errors:#?}"
    );
}

#[test]
fn type_errors_do_not_also_report_the_value_as_missing() {
    let text = "[jobs.a]\ncommand = 5\n";
    let (code, _, _) = only(text, toml_errors(text));
    assert_eq!(code, "orch::manifest::wrong_type");
}

mod legacy_json {
    use super::*;

    const ZEN: &[(&str, &str)] = &[
        (
            "all-keys.json",
            include_str!("../../tests/fixtures/zen/all-keys.json"),
        ),
        (
            "my-config.json",
            include_str!("../../tests/fixtures/zen/my-config.json"),
        ),
        (
            "production-config.json",
            include_str!("../../tests/fixtures/zen/production-config.json"),
        ),
    ];

    fn load_zen(name: &str) -> Manifest {
        let (file, text) = ZEN.iter().find(|(f, _)| *f == name).unwrap();
        load_str(Path::new(file), text.to_string()).expect("zen config loads")
    }

    #[test]
    fn every_zen_key_loads() {
        let m = load_zen("all-keys.json");
        let names: Vec<&str> = m.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "critical-tests",
                "Explain the build system in one paragraph",
                "/ssotgardener removing legacy",
                "/ssotgardener removing legacy-2",
            ]
        );
        let Task::Agent(critical) = &m.jobs[0].task else {
            panic!()
        };
        assert_eq!(critical.pre_commands, ["/clear", "/compact", "/clear"]);
        // zen's "system message: ..." pre-command is Claude Code's appended system prompt.
        assert_eq!(
            critical.config.append_system_prompt.as_deref(),
            Some("Focus on testing")
        );
        assert_eq!(critical.allowed_tools, ["Write", "Edit", "Bash", "Read"]);
        assert_eq!(m.jobs[0].limit.tokens, Some(75_000));
        assert_eq!(
            m.jobs[0].description.as_deref(),
            Some("Critical E2E test creation")
        );
        // A session name maps to a stable UUID; a UUID stays itself.
        assert_eq!(
            critical.session_id,
            Some(resolve::session_uuid("dedicated-session-1"))
        );
        assert_eq!(
            critical.session_id.unwrap().get_version(),
            Some(uuid::Version::Sha1)
        );
        let Task::Agent(explain) = &m.jobs[1].task else {
            panic!()
        };
        assert_eq!(
            explain.session_id.unwrap().to_string(),
            "0b8c6a3e-4f2d-4c1a-9e55-2a7f1d3c9b10"
        );
        assert_eq!(explain.permission_mode, "default");
        assert_eq!(explain.prompt, "Explain the build system in one paragraph");
        let Task::Agent(unnamed) = &m.jobs[2].task else {
            panic!()
        };
        assert_eq!(unnamed.permission_mode, "bypassPermissions");
        assert!(
            m.warnings
                .iter()
                .any(|w| w.contains("output_format \"json\""))
        );

        assert_eq!(m.budget.mode, BudgetMode::Block);
        assert_eq!(m.budget.run.tokens, Some(200_000));
        assert_eq!(m.budget.run.usd, Some(12.5));
        assert_eq!(
            m.budget.commands,
            [
                (
                    "/createtestsv2".to_string(),
                    Limit {
                        tokens: Some(80_000),
                        usd: Some(4.0)
                    }
                ),
                (
                    "/ssotgardener".to_string(),
                    Limit {
                        tokens: Some(60_000),
                        usd: None
                    }
                ),
            ]
        );
        assert!(m.settings.disable_budget_visuals);
    }

    #[test]
    fn a_cost_budget_type_means_dollars() {
        let text = r#"{"instances": [{"command": "/a"}],
            "budget": {"overall_budget": 3.5, "budget_type": "cost", "command_budgets": {"/a": 1.25}}}"#;
        let m = load_str(Path::new("zen.json"), text.into()).unwrap();
        assert_eq!(
            m.budget.run,
            Limit {
                tokens: None,
                usd: Some(3.5)
            }
        );
        assert_eq!(
            m.budget.commands[0].1,
            Limit {
                tokens: None,
                usd: Some(1.25)
            }
        );
    }

    #[test]
    fn unknown_instance_keys_are_reported_with_suggestions() {
        let text = r#"{"instances": [{"command": "/a", "max_token_per_command": 5}]}"#;
        let errors = errors_of("zen.json", text);
        let (code, labels, help) = only(text, errors);
        assert_eq!(code, "orch::manifest::unknown_key");
        assert_eq!(labels, ["\"max_token_per_command\""]);
        assert_eq!(help, "did you mean `max_tokens_per_command`?");
    }

    #[test]
    fn convert_round_trips_every_zen_config() {
        let scratch = tempfile::Builder::new()
            .prefix("orch-convert-")
            .tempdir()
            .unwrap();
        let dir = scratch.path();
        for (file, text) in ZEN {
            let json_path = dir.join(file);
            std::fs::write(&json_path, text).unwrap();
            let toml_text = crate::commands::convert::convert(&json_path).expect("converts");
            let toml_path = json_path.with_extension("toml");
            let from_json = load_str(&json_path, text.to_string()).unwrap();
            let mut from_toml = load_str(&toml_path, toml_text.clone())
                .unwrap_or_else(|e| panic!("{file}: {e:?}\n{toml_text}"));
            from_toml.path = from_json.path.clone();
            assert_eq!(from_json, from_toml, "{file}");
        }
    }
}

#[test]
fn retry_merges_defaults_key_by_key_and_checks_its_values() {
    let m = crate::manifest::load_str(
        std::path::Path::new("orch.toml"),
        r#"
[settings]
max_pause = "30m"
[defaults]
retry = { attempts = 3, backoff = "10s" }
[jobs.a]
prompt = "a"
retry = { on = ["timeout", "max_turns"], jitter = false }
[jobs.b]
run = ["true"]
"#
        .into(),
    )
    .expect("loads");
    let a = &m.jobs[0].retry;
    assert_eq!(a.attempts, 3);
    assert_eq!(a.backoff, std::time::Duration::from_secs(10));
    assert_eq!(a.max_backoff, crate::manifest::DEFAULT_MAX_BACKOFF);
    assert!(!a.jitter);
    assert_eq!(
        a.on,
        [
            crate::manifest::RetryOn::Timeout,
            crate::manifest::RetryOn::MaxTurns
        ]
    );
    assert_eq!(m.jobs[1].retry.on, crate::manifest::RetryOn::DEFAULT);
    assert_eq!(m.settings.max_pause, std::time::Duration::from_secs(1800));
    let errors = toml_errors(
        "[jobs.a]\nrun = [\"true\"]\nretry = { attempts = 101, on = [\"overload\"], backoff = \"soon\", prompt = \" \" }\n",
    );
    let text: Vec<String> = errors
        .iter()
        .map(|e| {
            format!(
                "{e} {}",
                e.help().map(|h| h.to_string()).unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(errors.len(), 4, "{text:#?}");
    assert!(
        text.iter()
            .any(|t| t.contains("did you mean \"overloaded\"")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|t| t.contains("jobs.a.retry.attempts")),
        "{text:#?}"
    );
}

#[test]
fn slurm_values_of_the_wrong_form_point_at_their_table_each_once() {
    // Two jobs on Slurm share the top table: its mistakes are reported once, at the top.
    let text = "[settings]\nexecutor = \"slurm\"\n[slurm]\nmem = \"lots\"\npartition = \"debug queue\"\n\
                [jobs.a]\nrun = [\"true\"]\n[jobs.a.slurm]\ngres = \"gpu::2\"\nnodes = \"-n1\"\n\
                [jobs.b]\nrun = [\"true\"]\n";
    let errors = toml_errors(text);
    let found: Vec<(String, Vec<String>, String)> = errors
        .iter()
        .map(|e| {
            let (code, labels, _) = parts(text, e);
            (code, labels, e.to_string())
        })
        .collect();
    let code = "orch::manifest::slurm_value".to_string();
    assert_eq!(
        found,
        [
            (
                code.clone(),
                vec!["\"lots\"".into()],
                "`slurm.mem`: it is not a size".into()
            ),
            (
                code.clone(),
                vec!["\"debug queue\"".into()],
                "`slurm.partition`: it is not a name".into()
            ),
            (
                code.clone(),
                vec!["\"gpu::2\"".into()],
                "`jobs.a.slurm.gres`: it is not a list of generic resources".into()
            ),
            (
                code,
                vec!["\"-n1\"".into()],
                "`jobs.a.slurm.nodes`: it starts with `-`, as an option would".into()
            ),
        ]
    );
    assert!(parts(text, &errors[0]).2.contains("\"2G\""));
    // Hostile values: a 64 KiB size, a newline, a huge number of megabytes (Slurm's to judge).
    for (key, value, bad) in [
        ("mem", "9".repeat(65_536) + "X", true),
        ("partition", "a\\nb".to_string(), true),
        ("gres", ",".repeat(65_536), true),
        ("mem", "99999999999999999999999".to_string(), false),
    ] {
        let text = format!(
            "[settings]\nexecutor = \"slurm\"\n[slurm]\n{key} = \"{value}\"\n[jobs.a]\nrun = [\"true\"]\n"
        );
        let loaded = load_str(Path::new("orch.toml"), text);
        assert_eq!(
            loaded.is_err(),
            bad,
            "{key} = {:?}",
            &value[..value.len().min(20)]
        );
    }
}

#[test]
fn slurm_values_of_the_forms_slurm_takes_load() {
    for (key, value) in [
        ("mem", "4096"),
        ("mem", "2G"),
        ("mem", "512m"),
        ("gres", "gpu:1"),
        ("gres", "gpu:a100:2,mps:50"),
        ("constraint", "intel&ib"),
        ("constraint", "[rack1|rack2]"),
        ("nodes", "n[1-4],gpu01"),
        ("partition", "debug,long"),
        ("account", "proj_x-1"),
        ("qos", "normal"),
    ] {
        let text = format!(
            "[settings]\nexecutor = \"slurm\"\n[slurm]\n{key} = \"{value}\"\n[jobs.a]\nrun = [\"true\"]\n"
        );
        if let Err(e) = load_str(Path::new("orch.toml"), text) {
            panic!("{key} = {value:?}: {e:?}");
        }
    }
}
