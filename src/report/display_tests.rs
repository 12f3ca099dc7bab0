//! The human reporters fed events directly: the terminal view rendered into indicatif's
//! in-memory terminal, zen's status table, the budget colours, the NDJSON line format.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{InMemoryTerm, ProgressDrawTarget, TermLike};

use super::live::{Board, BudgetView, Shape};
use super::terminal::{Level, Terminal};
use super::{Options, Reporter};
use crate::agent::accounting::UsageUpdate;
use crate::agent::stream::TokenCounts;
use crate::events::Event;
use crate::events::Status;

fn shape() -> Shape {
    Shape {
        jobs: vec!["lint".into(), "review".into(), "docs-agent".into()],
        steps: vec![
            (0, "lint".into(), None),
            (1, "review [1/2]".into(), Some("sonnet".into())),
            (1, "review [2/2]".into(), Some("sonnet".into())),
            (2, "docs-agent".into(), Some("opus".into())),
        ],
        budgets: Vec::new(),
    }
}

fn opts() -> Options {
    Options {
        quiet: false,
        max_console_lines: 3,
        max_line_length: 40,
        status_report_interval: Duration::from_secs(5),
        disable_budget_visuals: false,
        color: false,
    }
}

fn usage(input: u64, output: u64, cache_read: u64, cost: f64, tools: u32) -> UsageUpdate {
    UsageUpdate {
        tokens: TokenCounts {
            input,
            output,
            cache_read,
            ..TokenCounts::default()
        },
        cost_usd: cost,
        is_estimate: true,
        price_unknown: false,
        tool_calls_total: tools,
    }
}

fn budget(scope: &str, tokens: u64, usd: f64, tl: Option<u64>, ul: Option<f64>) -> Event {
    use crate::ledger::budget::ScopeKind;
    let kind = match scope {
        "run" => ScopeKind::Run,
        s if s.starts_with("window ") => ScopeKind::Window,
        s if s.starts_with("job ") => ScopeKind::Job,
        _ => ScopeKind::Command,
    };
    Event::BudgetUpdated {
        scope: scope.into(),
        kind,
        tokens_used: tokens,
        usd_used: usd,
        tokens_limit: tl,
        usd_limit: ul,
    }
}

/// A run 42 s in: lint done, review's first step and docs-agent running, three budgets.
fn events() -> Vec<(u64, Event)> {
    let started = |step: usize, label: &str| Event::StepStarted {
        step,
        label: label.into(),
        pid: 1000 + step as u32,
        log: PathBuf::from(format!("logs/{step}.log")),
        at: chrono::DateTime::UNIX_EPOCH,
    };
    vec![
        (
            0,
            Event::RunStarted {
                run_id: "r1".into(),
                name: "nightly".into(),
                manifest: "orch.toml".into(),
                run_dir: ".orch/runs/r1".into(),
                jobs: 3,
                steps: 4,
                at: chrono::DateTime::UNIX_EPOCH,
                resumed_from: None,
                graph: Vec::new(),
            },
        ),
        (0, started(0, "lint")),
        (
            3,
            Event::StepFinished {
                step: 0,
                label: "lint".into(),
                status: Status::Completed,
                exit_code: Some(0),
                signal: None,
                duration: Duration::from_millis(3_200),
                usage: None,
                leaked: vec![],
                reason: None,
                log: "logs/0.log".into(),
                stderr_log: "logs/0.err".into(),
            },
        ),
        (3, started(1, "review [1/2]")),
        (5, started(3, "docs-agent")),
        (
            20,
            Event::UsageRecorded {
                step: 1,
                label: "review [1/2]".into(),
                update: usage(1_200, 800, 10_000, 0.0421, 3),
            },
        ),
        (
            30,
            Event::UsageRecorded {
                step: 3,
                label: "docs-agent".into(),
                update: usage(4_000, 2_500, 0, 0.1375, 7),
            },
        ),
        (
            31,
            Event::StepOutput {
                step: 3,
                label: "docs-agent".into(),
                line: "Reading README.md and the three chapters of the book it links".into(),
            },
        ),
        (32, budget("run", 150_000, 0.18, Some(200_000), Some(5.0))),
        (32, budget("/review", 0, 0.19, None, Some(0.2))),
        (32, budget("window 5h", 0, 2.0, None, Some(20.0))),
        (32, budget("job docs-agent", 0, 0.14, None, Some(1.0))),
    ]
}

/// Hides the wall-clock times of log lines.
fn no_clock(text: &str) -> String {
    text.lines()
        .map(|l| match l.get(..8) {
            Some(t) if t.as_bytes().iter().filter(|b| **b == b':').count() == 2 => {
                format!("[time]{}", &l[8..])
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_terminal_view_renders_bars_budgets_and_running_steps() {
    let term = InMemoryTerm::new(16, 110);
    let t0 = Instant::now();
    let mut view = Terminal::new(
        ProgressDrawTarget::term_like(Box::new(term.clone())),
        (16, term.width() as usize),
        None,
        Box::new(std::io::sink()),
        &shape(),
        opts(),
    );
    for (at, e) in events() {
        view.report(&e, t0 + Duration::from_secs(at));
    }
    view.tick(t0 + Duration::from_secs(42));
    insta::assert_snapshot!(no_clock(&term.contents()));
}

#[test]
fn budget_visuals_can_be_hidden() {
    let term = InMemoryTerm::new(16, 110);
    let t0 = Instant::now();
    let mut view = Terminal::new(
        ProgressDrawTarget::term_like(Box::new(term.clone())),
        (16, term.width() as usize),
        None,
        Box::new(std::io::sink()),
        &shape(),
        Options {
            disable_budget_visuals: true,
            ..opts()
        },
    );
    for (at, e) in events() {
        view.report(&e, t0 + Duration::from_secs(at));
    }
    view.tick(t0 + Duration::from_secs(42));
    let text = term.contents();
    assert!(!text.contains("budget run"), "{text}");
    assert!(text.contains("docs-agent"), "{text}");
}

#[test]
fn a_small_terminal_shows_the_oldest_running_steps_and_counts_the_rest() {
    let n = 30;
    let shape = Shape {
        jobs: (0..n).map(|i| format!("a{i:02}")).collect(),
        steps: (0..n).map(|i| (i, format!("a{i:02}"), None)).collect(),
        budgets: Vec::new(),
    };
    let term = InMemoryTerm::new(10, 100);
    let t0 = Instant::now();
    let mut view = Terminal::new(
        ProgressDrawTarget::term_like(Box::new(term.clone())),
        (10, term.width() as usize),
        None,
        Box::new(std::io::sink()),
        &shape,
        opts(),
    );
    for i in 0..n {
        let e = Event::StepStarted {
            step: i,
            label: format!("a{i:02}"),
            pid: 1,
            log: "l".into(),
            at: chrono::DateTime::UNIX_EPOCH,
        };
        view.report(&e, t0 + Duration::from_millis(i as u64));
    }
    view.tick(t0 + Duration::from_secs(1));
    let text = term.contents();
    assert!(text.contains("a00") && text.contains("a06"), "{text}");
    assert!(!text.contains("a07 "), "{text}");
    assert!(text.contains("… and 23 more running"), "{text}");
    assert!(text.lines().count() <= 10, "{text}");
}

#[test]
fn budget_bars_turn_yellow_at_70_and_red_at_90_percent() {
    assert_eq!(Level::of(0.0), Level::Green);
    assert_eq!(Level::of(0.699), Level::Green);
    assert_eq!(Level::of(0.70), Level::Yellow);
    assert_eq!(Level::of(0.899), Level::Yellow);
    assert_eq!(Level::of(0.90), Level::Red);
    assert_eq!(Level::of(1.3), Level::Red);
}

#[test]
fn zens_status_table_from_the_board() {
    let t0 = Instant::now();
    let mut board = Board::new(&shape(), 2);
    for (at, e) in events() {
        board.apply(&e, t0 + Duration::from_secs(at));
    }
    board.apply(
        &Event::StepOutput {
            step: 3,
            label: "docs-agent".into(),
            line: "Writing the summary".into(),
        },
        t0 + Duration::from_secs(40),
    );
    let table = super::status::report(
        &board,
        t0 + Duration::from_secs(42),
        "14:23:45",
        2,
        true,
        80,
    );
    insta::assert_snapshot!(table);
    let without = super::status::report(
        &board,
        t0 + Duration::from_secs(42),
        "14:23:45",
        0,
        false,
        80,
    );
    assert!(
        !without.contains("Budgets") && !without.contains("│"),
        "{without}"
    );
}

#[test]
fn an_ndjson_line_starts_with_the_version_and_the_kind() {
    let line = super::ndjson::line(&Event::LaunchesResumed).unwrap();
    assert_eq!(line, "{\"v\":1,\"event\":\"launches_resumed\"}\n");
    let (_, e) = &events()[1];
    let line = super::ndjson::line(e).unwrap();
    assert!(
        line.starts_with("{\"v\":1,\"event\":\"step_started\",\"step\":0,"),
        "{line}"
    );
}

#[test]
fn the_plain_status_table_comes_only_when_its_interval_has_passed() {
    let mut out = Vec::new();
    let t0 = Instant::now();
    {
        let mut plain = super::plain::Plain::new(&mut out, &shape(), opts());
        for (at, e) in events() {
            plain.report(&e, t0 + Duration::from_secs(at.min(4)));
        }
        assert_eq!(plain.tick_every(), Some(Duration::from_secs(1)));
        plain.tick(t0 + Duration::from_millis(4_900));
    }
    let before = String::from_utf8(out.clone()).unwrap();
    assert!(!before.contains("STATUS REPORT"), "{before}");
    {
        let mut plain = super::plain::Plain::new(&mut out, &shape(), opts());
        plain.report(&events()[0].1, t0);
        plain.tick(t0 + Duration::from_secs(5));
        plain.tick(t0 + Duration::from_secs(6));
        plain.tick(t0 + Duration::from_secs(10));
    }
    let after = String::from_utf8(out).unwrap();
    assert_eq!(after.matches("STATUS REPORT").count(), 2, "{after}");
}

#[test]
fn a_job_rolls_up_its_steps() {
    let t0 = Instant::now();
    let mut board = Board::new(&shape(), 1);
    for (at, e) in events() {
        board.apply(&e, t0 + Duration::from_secs(at));
    }
    let jobs = board.job_views(t0 + Duration::from_secs(42));
    let review = &jobs[1];
    assert_eq!(review.status, Status::Running);
    assert_eq!(review.elapsed, Duration::from_secs(39));
    assert_eq!(review.tokens.total(), 12_000);
    assert_eq!(review.current, Some(1));
    assert_eq!(jobs[0].status, Status::Completed);
    assert_eq!(jobs[0].elapsed, Duration::from_millis(3_200));
    assert_eq!(Board::job_counts(&jobs), (2, 1, 0, 0, 0));
    assert_eq!(super::status::median_tokens(&jobs), 9_250);
}

/// A run of twelve jobs, three running (one with a long name, one with wide characters), a
/// command budget not spent yet and a job budget, at 30 s.
fn busy(max_console_lines: usize, rows: u16, cols: u16) -> (InMemoryTerm, Terminal, Instant) {
    use crate::ledger::budget::ScopeKind;
    let names = [
        "a-job-with-a-rather-long-name-for-its-column",
        "レビュー-review",
        "lint",
        "docs",
        "tests-unit",
        "tests-integration",
        "bench",
        "changelog",
        "release-notes",
        "audit",
        "format",
        "typos",
    ];
    let shape = Shape {
        jobs: names.iter().map(|s| s.to_string()).collect(),
        steps: names
            .iter()
            .enumerate()
            .map(|(i, n)| (i, n.to_string(), None))
            .collect(),
        budgets: vec![
            BudgetView {
                scope: "run".into(),
                kind: ScopeKind::Run,
                tokens_used: 0,
                usd_used: 0.0,
                tokens_limit: Some(200_000),
                usd_limit: None,
            },
            BudgetView {
                scope: "/review".into(),
                kind: ScopeKind::Command,
                tokens_used: 0,
                usd_used: 0.0,
                tokens_limit: None,
                usd_limit: Some(2.0),
            },
            BudgetView {
                scope: "job レビュー-review".into(),
                kind: ScopeKind::Job,
                tokens_used: 0,
                usd_used: 0.0,
                tokens_limit: None,
                usd_limit: Some(1.0),
            },
        ],
    };
    let term = InMemoryTerm::new(rows, cols);
    let t0 = Instant::now();
    let mut view = Terminal::new(
        ProgressDrawTarget::term_like(Box::new(term.clone())),
        (usize::from(rows), usize::from(cols)),
        None,
        Box::new(std::io::sink()),
        &shape,
        Options {
            max_console_lines,
            max_line_length: 800,
            ..opts()
        },
    );
    view.report(&events()[0].1, t0);
    for (step, name) in names.iter().enumerate().take(3) {
        let e = Event::StepStarted {
            step,
            label: name.to_string(),
            pid: 1,
            log: "l".into(),
            at: chrono::DateTime::UNIX_EPOCH,
        };
        view.report(&e, t0 + Duration::from_secs(step as u64));
        for k in 0..5 {
            let line = format!(
                "step {step} line {k}: reading the files of the crate and writing what it found there"
            );
            view.report(
                &Event::StepOutput {
                    step,
                    label: name.to_string(),
                    line,
                },
                t0 + Duration::from_secs(10),
            );
        }
    }
    view.report(
        &Event::UsageRecorded {
            step: 1,
            label: names[1].into(),
            update: usage(20_000, 5_000, 0, 0.42, 2),
        },
        t0 + Duration::from_secs(20),
    );
    view.report(
        &budget("job レビュー-review", 25_000, 0.42, None, Some(1.0)),
        t0 + Duration::from_secs(20),
    );
    view.tick(t0 + Duration::from_secs(30));
    (term, view, t0)
}

/// Every line of the screen, checked to fit `cols` columns by display width.
fn fits(term: &InMemoryTerm, cols: usize) -> String {
    let text = no_clock(&term.contents());
    for line in text.lines() {
        assert!(
            super::width::width(line) <= cols,
            "{} columns: {line}\n{text}",
            super::width::width(line)
        );
    }
    text
}

#[test]
fn the_live_view_fits_80x24_with_budgets_from_the_start_and_the_waiting_jobs() {
    let (term, _view, _) = busy(5, 24, 80);
    let text = fits(&term, 80);
    // Not spent yet, the command budget has its bar; the job budget shows on its job's line.
    assert!(text.contains("budget /review"), "{text}");
    assert!(text.contains("[██▌") || text.contains(" 42%"), "{text}");
    assert!(
        text.contains("⧗ 9 waiting, next: docs, tests-unit"),
        "{text}"
    );
    // The progress line leaves counts out whole, never a word cut.
    let progress = text.lines().find(|l| l.contains(" steps  ")).unwrap();
    assert!(!progress.ends_with('…'), "{progress}");
    insta::assert_snapshot!(text);
}

#[test]
fn the_live_view_at_200x50() {
    let (term, _view, _) = busy(5, 50, 200);
    let text = fits(&term, 200);
    assert!(
        text.contains("a-job-with-a-rather-long-name-for-its-column"),
        "{text}"
    );
    insta::assert_snapshot!(text);
}

#[test]
fn max_console_lines_sets_the_output_lines_under_each_running_job() {
    let under = |text: &str| text.lines().filter(|l| l.starts_with("    │ ")).count();
    let (term, _v, _) = busy(3, 50, 120);
    let text = fits(&term, 120);
    assert_eq!(under(&text), 9, "3 lines under each of 3 jobs:\n{text}");
    assert!(
        text.contains("line 4: reading"),
        "the latest line last:\n{text}"
    );
    assert!(!text.contains("line 1: reading"), "{text}");
    let (term, _v, _) = busy(1, 50, 120);
    let text = fits(&term, 120);
    assert_eq!(under(&text), 0, "{text}");
    assert_eq!(text.matches("  │ step ").count(), 3, "inline:\n{text}");
    let (term, _v, _) = busy(0, 50, 120);
    let text = fits(&term, 120);
    assert!(!text.contains("│ step"), "{text}");
    // A small screen gives fewer lines to each job rather than hiding jobs.
    let (term, _v, _) = busy(5, 12, 80);
    let text = fits(&term, 80);
    assert_eq!(text.matches(" tok ").count(), 3, "{text}");
}

#[test]
fn a_wide_character_in_a_name_does_not_shift_the_columns() {
    let (term, _view, _) = busy(0, 24, 80);
    let text = fits(&term, 80);
    let cols: Vec<usize> = text
        .lines()
        .filter(|l| l.contains(" tok "))
        .map(|l| super::width::width(&l[..l.find(" tok ").unwrap()]))
        .collect();
    assert_eq!(cols.len(), 3, "{text}");
    assert!(cols.iter().all(|&c| c == cols[0]), "{cols:?}\n{text}");
}

/// A terminal that keeps every byte written to it, escape sequences included.
#[derive(Clone, Debug, Default)]
struct Recorder(std::sync::Arc<std::sync::Mutex<String>>);

impl TermLike for Recorder {
    fn width(&self) -> u16 {
        80
    }
    fn height(&self) -> u16 {
        24
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.write_str(&format!("\x1b[{n}A"))
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.write_str(&format!("\x1b[{n}B"))
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.write_str(&format!("\x1b[{n}C"))
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.write_str(&format!("\x1b[{n}D"))
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write_str(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.0.lock().unwrap().push_str(s);
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.write_str("\r\x1b[2K")
    }
    fn flush(&self) -> std::io::Result<()> {
        self.write_str("<flush>")
    }
}

#[test]
fn each_frame_is_one_synchronized_update_with_the_cursor_hidden_until_the_end() {
    use super::screen::{HIDE_CURSOR, SHOW_CURSOR, SYNC_BEGIN, SYNC_END, Screen};
    let rec = Recorder::default();
    let screen = Screen::new(Box::new(rec.clone()));
    let t0 = Instant::now();
    let mut view = Terminal::new(
        ProgressDrawTarget::term_like(Box::new(screen.clone())),
        (24, 80),
        Some(screen),
        Box::new(std::io::sink()),
        &shape(),
        opts(),
    );
    for (at, e) in events() {
        view.report(&e, t0 + Duration::from_secs(at));
    }
    for i in 0..3 {
        view.tick(t0 + Duration::from_secs(42 + i));
    }
    let drawn = rec.0.lock().unwrap().clone();
    assert_eq!(drawn.matches(HIDE_CURSOR).count(), 1, "{drawn:?}");
    assert!(!drawn.contains(SHOW_CURSOR), "{drawn:?}");
    // Every flush closes the update its writes opened.
    for frame in drawn.split("<flush>").filter(|f| !f.is_empty()) {
        assert!(frame.starts_with(SYNC_BEGIN), "{frame:?}");
        assert!(frame.ends_with(SYNC_END), "{frame:?}");
        assert_eq!(frame.matches(SYNC_BEGIN).count(), 1, "{frame:?}");
    }
    drop(view);
    let drawn = rec.0.lock().unwrap().clone();
    assert!(
        drawn.ends_with(&format!("{SHOW_CURSOR}<flush>")),
        "{drawn:?}"
    );
}

#[test]
fn ctrl_c_leaves_no_stale_view_above_the_interrupted_line() {
    use super::screen::Screen;
    let term = InMemoryTerm::new(24, 80);
    let screen = Screen::new(Box::new(term.clone()));
    let t0 = Instant::now();
    let mut view = Terminal::new(
        ProgressDrawTarget::term_like(Box::new(screen.clone())),
        (24, 80),
        Some(screen),
        Box::new(std::io::sink()),
        &shape(),
        opts(),
    );
    for (at, e) in events() {
        view.report(&e, t0 + Duration::from_secs(at));
    }
    view.tick(t0 + Duration::from_secs(42));
    // What the terminal itself does on Ctrl-C: it echoes `^C` where the cursor is.
    term.write_str("^C").unwrap();
    view.report(
        &Event::StopRequested {
            cause: crate::events::StopCause::Interrupted,
            signals: 1,
        },
        t0 + Duration::from_secs(43),
    );
    view.tick(t0 + Duration::from_secs(43));
    let text = no_clock(&term.contents());
    let interrupted = text.find("■ interrupted").expect("the interrupted line");
    assert!(
        !text[..interrupted].contains(" steps "),
        "a stale progress line above:\n{text}"
    );
    assert_eq!(text.matches(" steps ").count(), 1, "{text}");
    assert!(!text.contains("^C"), "{text}");
}

#[test]
fn log_lines_printed_between_frames_all_stay_on_screen() {
    use super::screen::Screen;
    let term = InMemoryTerm::new(24, 80);
    let screen = Screen::new(Box::new(term.clone()));
    let t0 = Instant::now();
    let mut view = Terminal::new(
        ProgressDrawTarget::term_like(Box::new(screen.clone())),
        (24, 80),
        Some(screen),
        Box::new(std::io::sink()),
        &shape(),
        opts(),
    );
    let evs = events();
    view.report(&evs[0].1, t0);
    view.tick(t0);
    for (at, e) in &evs[1..3] {
        view.report(e, t0 + Duration::from_secs(*at));
        view.tick(t0 + Duration::from_secs(*at));
    }
    view.tick(t0 + Duration::from_secs(4));
    let text = no_clock(&term.contents());
    assert!(text.starts_with("[time] run nightly r1"), "{text}");
    assert!(text.contains("[time] ✔ lint completed"), "{text}");
    assert_eq!(text.matches(" steps ").count(), 1, "{text}");
}
