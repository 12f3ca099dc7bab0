//! The Config built from real command lines (through clap, as `orch` parses them): each flag's
//! validation, the precedence flag > manifest > default, and that scheduled times arrive parsed.

use std::path::Path;
use std::time::Duration;

use chrono::TimeZone;
use clap::Parser;

use super::*;
use crate::cli::Cli;
use crate::commands::service::Timing;

/// The Config of `orch ARGS...`, or its error.
fn config(args: &[&str]) -> Result<Config, Error> {
    let cli = Cli::try_parse_from(std::iter::once("orch").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("clap rejected {args:?}: {e}"));
    Config::from_command(cli.command)
}

fn run(args: &[&str]) -> RunConfig {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    match config(&all) {
        Ok(Config::Run(c)) => c,
        Ok(_) => panic!("not a run"),
        Err(e) => panic!("{all:?} was refused: {e}"),
    }
}

/// The flag and value of the `BadFlag` error that `orch run ARGS...` stops with.
fn refused(args: &[&str]) -> (&'static str, String, String) {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    match config(&all) {
        Err(Error::BadFlag {
            flag,
            value,
            reason,
            ..
        }) => (flag, value, reason),
        Err(e) => panic!("{all:?}: not a bad flag: {e}"),
        Ok(_) => panic!("{all:?} was accepted"),
    }
}

fn manifest(text: &str) -> Manifest {
    manifest::load_str(Path::new("/m/orch.toml"), text.into()).expect("a valid manifest")
}

const PLAIN: &str = "[jobs.a]\nrun = [\"true\"]\n";

#[test]
fn durations_are_typed_once() {
    let c = run(&["--startup-delay", "2.5", "--timeout", "1h30m"]);
    assert_eq!(c.manifest.startup_delay, Some(Duration::from_millis(2500)));
    assert_eq!(c.manifest.timeout, Some(Duration::from_secs(5400)));
    let (flag, value, _) = refused(&["--startup-delay", "5 parsecs"]);
    assert_eq!((flag, value.as_str()), ("--startup-delay", "5 parsecs"));
    let (flag, _, reason) = refused(&["--timeout", "999999999999h"]);
    assert_eq!(flag, "--timeout");
    assert!(reason.contains("36500d"), "{reason}");
}

#[test]
fn max_parallel_must_be_at_least_one() {
    assert_eq!(run(&["--max-parallel", "3"]).manifest.max_parallel, Some(3));
    let (flag, value, reason) = refused(&["--max-parallel", "0"]);
    assert_eq!((flag, value.as_str()), ("--max-parallel", "0"));
    assert_eq!(reason, "it must be at least 1");
}

#[test]
fn run_budgets_are_positive_limits() {
    let c = run(&[
        "--overall-token-budget",
        "5000",
        "--overall-cost-budget",
        "2.5",
    ]);
    assert_eq!(
        c.manifest.run_limit,
        Limit {
            tokens: Some(5000),
            usd: Some(2.5)
        }
    );
    assert_eq!(
        refused(&["--overall-token-budget", "0"]).0,
        "--overall-token-budget"
    );
    for bad in ["0", "-1", "NaN", "inf"] {
        let (flag, value, _) = refused(&[&format!("--overall-cost-budget={bad}")]);
        assert_eq!(flag, "--overall-cost-budget", "{bad}");
        // The value is shown as the number clap read, as before.
        assert_eq!(value, bad.parse::<f64>().expect("a float").to_string());
    }
}

#[test]
fn command_budgets_merge_per_command_and_add_the_slash() {
    let c = run(&[
        "--command-budget",
        "createtestsv2=5000",
        "--command-cost-budget",
        "/createtestsv2=1.5",
        "--command-cost-budget",
        " /review = 0.25 ",
    ]);
    assert_eq!(
        c.manifest.command_limits,
        vec![
            (
                "/createtestsv2".to_string(),
                Limit {
                    tokens: Some(5000),
                    usd: Some(1.5)
                }
            ),
            (
                "/review".to_string(),
                Limit {
                    tokens: None,
                    usd: Some(0.25)
                }
            ),
        ]
    );
    let (flag, value, reason) = refused(&["--command-budget", "/a=abc"]);
    assert_eq!((flag, value.as_str()), ("--command-budget", "/a=abc"));
    assert!(reason.contains("not a whole number"), "{reason}");
    assert_eq!(refused(&["--command-budget", "/a=0"]).0, "--command-budget");
    let (flag, _, reason) = refused(&["--command-budget", "nothing"]);
    assert_eq!(
        (flag, reason.as_str()),
        ("--command-budget", "expected /command=amount")
    );
    assert_eq!(refused(&["--command-budget", "/=5"]).0, "--command-budget");
    let (flag, value, _) = refused(&["--command-cost-budget", "/a=-1"]);
    assert_eq!((flag, value.as_str()), ("--command-cost-budget", "-1"));
}

#[test]
fn direct_flags_alone_are_refused_and_with_a_command_make_the_job() {
    let (flag, value, _) = refused(&["--session-id", "s1"]);
    assert_eq!((flag, value.as_str()), ("--session-id", "given alone"));
    let c = run(&[
        "--command",
        "/review now",
        "--instance-name",
        "r",
        "--clear-history",
    ]);
    let Source::Direct(job) = &c.manifest.source else {
        panic!("not direct mode: {:?}", c.manifest.source);
    };
    assert_eq!(job.what, Direct::Command("/review now".into()));
    assert_eq!(job.name.as_deref(), Some("r"));
    assert!(job.clear_history && job.notice.is_none());
    assert!(c.manifest.zen_mode());
    // A positional slash command that is no file is guessed, with a notice.
    let c = run(&["/surely-no-such-file-here"]);
    let Source::Direct(job) = &c.manifest.source else {
        panic!("not guessed");
    };
    assert!(
        job.notice
            .as_deref()
            .is_some_and(|n| n.contains("--command"))
    );
}

#[test]
fn the_source_says_which_file_and_whether_it_is_zens() {
    let dir = tempfile::tempdir().expect("a temp folder");
    let json = dir.path().join("zen.json");
    std::fs::write(&json, r#"{"instances": []}"#).expect("write");
    let toml = dir.path().join("orch.toml");
    std::fs::write(&toml, PLAIN).expect("write");
    let source = |args: &[&str]| run(args).manifest.source;
    let zen = |c: RunConfig| c.manifest.zen_mode();
    assert!(zen(run(&["--config", json.to_str().expect("utf-8")])));
    // A JSON file named positionally is not zen's --config; a TOML --config is not either.
    assert!(!zen(run(&[json.to_str().expect("utf-8")])));
    assert!(!zen(run(&["--config", toml.to_str().expect("utf-8")])));
    assert_eq!(
        source(&[]),
        Source::File {
            path: PathBuf::from("orch.toml"),
            positional: false,
            zen_config: false
        }
    );
    assert!(!run(&[]).manifest.named);
    assert!(run(&["--config", "x.toml"]).manifest.named);
}

#[test]
fn the_state_folder_is_made_absolute_once() {
    let c = run(&["--state-dir", "some/state"]);
    let dir = c.state_dir.expect("given");
    assert!(dir.is_absolute(), "{}", dir.display());
    assert!(dir.ends_with("some/state"));
    assert_eq!(run(&[]).state_dir, None);
}

#[test]
fn display_flags_are_typed() {
    let c = run(&["--status-report-interval", "7", "--quiet", "--events", "-"]);
    assert_eq!(c.display.status_report_interval, Duration::from_secs(7));
    assert!(c.display.quiet);
    assert_eq!(c.selection.events, Some(PathBuf::from("-")));
    let c = run(&[]);
    assert_eq!(
        (c.display.max_console_lines, c.display.max_line_length),
        (5, 800)
    );
}

#[test]
fn output_format_json_is_a_warning() {
    assert!(
        run(&["--output-format", "stream-json"])
            .manifest
            .warnings
            .is_empty()
    );
    let w = run(&["--output-format", "json"]).manifest.warnings;
    assert!(w.len() == 1 && w[0].contains("changes nothing"), "{w:?}");
}

#[test]
fn ledger_since_is_a_duration() {
    match config(&["ledger", "--since", "7d"]) {
        Ok(Config::Ledger(c)) => {
            assert_eq!(c.since, Duration::from_secs(7 * 86_400));
            assert_eq!(c.since_text, "7d");
        }
        _ => panic!("not a ledger Config"),
    }
    match config(&["ledger"]) {
        Ok(Config::Ledger(c)) => assert_eq!(c.since, Duration::from_secs(30 * 86_400)),
        _ => panic!("not a ledger Config"),
    }
    match config(&["ledger", "--since", "999999999999h"]) {
        Err(Error::BadFlag { flag, .. }) => assert_eq!(flag, "--since"),
        _ => panic!("accepted"),
    }
}

#[test]
fn flags_win_over_the_manifest_which_wins_over_the_defaults() {
    let file = "[settings]\nstartup_delay = \"1s\"\ntimeout = \"2m\"\nmax_parallel = 4\n\
                [budget]\nmode = \"block\"\ntokens = 100\nusd = 3.0\n\
                [budget.commands.\"/review\"]\ntokens = 7\nusd = 0.5\n\
                [jobs.a]\nrun = [\"true\"]\n";
    // Neither: orch's defaults.
    let mut m = manifest(PLAIN);
    run(&[]).manifest.apply(&mut m);
    assert_eq!(m.settings.startup_delay, manifest::DEFAULT_STARTUP_DELAY);
    assert_eq!(m.jobs[0].timeout, manifest::DEFAULT_TIMEOUT);
    assert_eq!(m.settings.max_parallel, None);
    assert_eq!(m.budget.mode, BudgetMode::Warn);
    // The manifest alone.
    let mut m = manifest(file);
    run(&[]).manifest.apply(&mut m);
    assert_eq!(m.settings.startup_delay, Duration::from_secs(1));
    assert_eq!(m.jobs[0].timeout, Duration::from_secs(120));
    assert_eq!(m.settings.max_parallel, Some(4));
    assert_eq!(m.budget.run.tokens, Some(100));
    // Flags over it: each given flag replaces its value, the others stay the manifest's.
    let mut m = manifest(file);
    run(&[
        "--startup-delay",
        "250ms",
        "--timeout",
        "5",
        "--max-parallel",
        "2",
        "--budget-enforcement-mode",
        "warn",
        "--overall-cost-budget",
        "9",
        "--command-budget",
        "/review=70",
        "--command-budget",
        "/new=1",
        "--workspace",
        "/ws",
    ])
    .manifest
    .apply(&mut m);
    assert_eq!(m.settings.startup_delay, Duration::from_millis(250));
    assert_eq!(
        (m.settings.timeout, m.jobs[0].timeout),
        (Duration::from_secs(5), Duration::from_secs(5))
    );
    assert_eq!(m.settings.max_parallel, Some(2));
    assert_eq!(m.budget.mode, BudgetMode::Warn);
    assert_eq!(
        m.budget.run,
        Limit {
            tokens: Some(100),
            usd: Some(9.0)
        }
    );
    assert_eq!(
        m.budget.commands,
        vec![
            (
                "/review".to_string(),
                Limit {
                    tokens: Some(70),
                    usd: Some(0.5)
                }
            ),
            (
                "/new".to_string(),
                Limit {
                    tokens: Some(1),
                    usd: None
                }
            ),
        ]
    );
    assert_eq!(
        (
            m.settings.workspace.as_path(),
            m.jobs[0].workspace.as_path()
        ),
        (Path::new("/ws"), Path::new("/ws"))
    );
}

#[test]
fn start_at_2h_arrives_parsed_and_resolves_to_the_instant() {
    let c = run(&["--start-at", "2h"]);
    let start = c.when.start_at.as_ref().expect("given");
    assert_eq!(start.text, "2h");
    assert_eq!(start.spec, StartAt::In(Duration::from_secs(7200)));
    let now = Utc
        .with_ymd_and_hms(2026, 12, 1, 23, 0, 0)
        .single()
        .expect("a valid instant");
    let t = Timing::new(&c.when, &manifest(PLAIN), now)
        .expect("valid")
        .expect("scheduled");
    assert_eq!(
        t.start,
        Some(("2h".into(), "--start-at", now + chrono::Duration::hours(2)))
    );
    assert!(t.cron.is_none());
}

#[test]
fn schedule_flags_win_over_the_manifests() {
    let file = "[schedule]\nstart_at = \"30m\"\ncron = \"@daily\"\ntimezone = \"UTC\"\n\
                [jobs.a]\nrun = [\"true\"]\n";
    let now = Utc
        .with_ymd_and_hms(2026, 12, 1, 23, 0, 0)
        .single()
        .expect("a valid instant");
    let m = manifest(file);
    let t = Timing::new(&run(&[]).when, &m, now)
        .expect("valid")
        .expect("scheduled");
    assert_eq!(
        t.start,
        Some((
            "30m".into(),
            "schedule.start_at",
            now + chrono::Duration::minutes(30)
        ))
    );
    assert_eq!(t.cron.as_ref().map(|(e, _)| e.as_str()), Some("@daily"));
    let c = run(&["--start-at", "1h", "--schedule", "0 2 * * *", "--once"]);
    let t = Timing::new(&c.when, &m, now)
        .expect("valid")
        .expect("scheduled");
    assert_eq!(
        t.start.as_ref().map(|s| (s.1, s.2)),
        Some(("--start-at", now + chrono::Duration::hours(1)))
    );
    assert_eq!(t.cron.as_ref().map(|(e, _)| e.as_str()), Some("0 2 * * *"));
    assert!(t.once);
    // Nothing scheduled anywhere: run at once.
    assert!(
        Timing::new(&run(&[]).when, &manifest(PLAIN), now)
            .expect("valid")
            .is_none()
    );
}

#[test]
fn a_start_time_that_has_passed_is_the_flags_error() {
    let c = run(&["--start-at", "2020-01-01T00:00:00+00:00"]);
    let now = Utc::now();
    match Timing::new(&c.when, &manifest(PLAIN), now) {
        Err(Error::BadFlag { flag, help, .. }) => {
            assert_eq!(flag, "--start-at");
            assert_eq!(help, "give a time that is still to come");
        }
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("a past start time was accepted"),
    }
}

#[test]
fn bad_start_times_and_schedules_are_clap_errors() {
    for args in [
        ["run", "--start-at", "13pm"],
        ["plan", "--schedule", "0 2 * *"],
    ] {
        let err = Cli::try_parse_from(std::iter::once("orch").chain(args)).expect_err("refused");
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{err}");
    }
}
