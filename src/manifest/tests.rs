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
    assert!(help.starts_with("the keys of [budget] are: mode, tokens, usd"), "{help}");
}

#[test]
fn wrong_type_names_the_path_and_suggests_a_fix() {
    let text = "[jobs.a]\nrun = [\"true\"]\nmax_tokens = \"5000\"\n";
    let errors = toml_errors(text);
    assert_eq!(errors[0].to_string(), "`jobs.a.max_tokens` must be an integer, found a string");
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
fn duplicate_tables_in_toml_are_syntax_errors() {
    let text = "[jobs.a]\nrun = [\"a\"]\n[jobs.a]\nrun = [\"b\"]\n";
    let errors = toml_errors(text);
    let (code, labels, _) = parts(text, &errors[0]);
    assert_eq!(code, "orch::manifest::syntax");
    assert_eq!(errors[0].to_string(), "TOML syntax error: duplicate key");
    assert_eq!(labels, ["a"]);
    assert_eq!(errors[0].offset(), text.rfind("a]").unwrap());
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
    assert_eq!(errors[0].to_string(), "dependency cycle: `a` → `c` → `b` → `a`");
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
fn negative_and_zero_budgets() {
    let text = "[budget]\ntokens = -5\nusd = 0.0\n[jobs.a]\nrun = [\"a\"]\n";
    let errors = toml_errors(text);
    assert_eq!(errors.len(), 2);
    let (code, labels, help) = parts(text, &errors[0]);
    assert_eq!(code, "orch::manifest::bad_budget");
    assert_eq!(labels, ["-5"]);
    assert!(help.contains("at least 1"));
    let (_, labels, help) = parts(text, &errors[1]);
    assert_eq!(labels, ["0.0"]);
    assert!(help.contains("dollars above zero"));
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
