//! Reporters: everything orch shows a person or a machine. Nothing else writes to the terminal.
//!
//! A run's events go to one human reporter (the live [`terminal::Terminal`] view, or the
//! [`plain::Plain`] lines and status tables) and, with `--events`, to the [`ndjson::Ndjson`]
//! stream. Reporters never decide anything about the run; time-driven output comes from `tick`,
//! called by the reporter task's timer ([`serve`]), never from the runner. The reporter task owns
//! the reporters: the runner and the schedule only send it events through a [`Sink`], so a slow
//! terminal never holds up the dispatcher.

#[cfg(test)]
mod display_tests;
pub mod history;
pub mod live;
pub mod ndjson;
pub mod plain;
pub mod plan;
pub mod results;
pub mod sanitize;
pub mod screen;
pub mod select;
pub mod service_file;
pub mod status;
pub mod summary;
pub mod table;
pub mod terminal;
pub mod width;

pub use select::{Fanout, Options, Selection, select};

/// Something that shows a run: it consumes every event, may be ticked by a timer, and ends
/// with the results. `Send`, because it lives in the reporter task.
pub trait Reporter: Send {
    /// One event, `now` being when it arrived.
    fn report(&mut self, event: &crate::events::Event, now: std::time::Instant);
    /// A timer's beat, for what changes with time alone (spinners, elapsed times, status tables).
    fn tick(&mut self, _now: std::time::Instant) {}
    /// How often the reporter wants `tick`; `None` for never.
    fn tick_every(&self) -> Option<std::time::Duration> {
        None
    }
    /// The run is over and its results are written to `path`.
    fn finish(&mut self, results: &results::Results, path: &std::path::Path);
    /// Every event queued so far has been reported: write out what waits in a buffer. Called
    /// once per batch, so a burst of events (a thousand quick steps) is one write, not one each.
    fn flush(&mut self) {}
}

/// What the reporter task is handed.
enum ToReporter {
    Event(crate::events::Event),
    Finish(Box<results::Results>, std::path::PathBuf),
}

/// Where events go: the sending end of the reporter task's queue. Sending never blocks.
#[derive(Clone)]
pub struct Sink(tokio::sync::mpsc::UnboundedSender<ToReporter>);

impl Sink {
    /// Hands an event to the reporters.
    pub fn event(&self, event: crate::events::Event) {
        // The task ends only once every sink is dropped, so this cannot fail while it runs.
        let _ = self.0.send(ToReporter::Event(event));
    }

    /// The run is over and its results are written to `path`.
    pub fn finish(&self, results: results::Results, path: &std::path::Path) {
        let _ = self
            .0
            .send(ToReporter::Finish(Box::new(results), path.to_path_buf()));
    }
}

/// Starts the reporter task: it owns `reporter`, hands it everything sent to the [`Sink`] in
/// order, ticks it on its own timer, and ends once every sink is dropped and the queue is empty.
pub fn spawn(mut reporter: impl Reporter + 'static) -> (Sink, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let every = reporter.tick_every();
        let period = every.unwrap_or(std::time::Duration::from_secs(3600));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = rx.recv() => {
                    // This message and every one queued behind it, then one flush.
                    let mut next = msg;
                    while let Some(msg) = next {
                        match msg {
                            ToReporter::Event(e) => reporter.report(&e, std::time::Instant::now()),
                            ToReporter::Finish(results, path) => reporter.finish(&results, &path),
                        }
                        next = rx.try_recv().ok();
                    }
                    reporter.flush();
                    if rx.is_closed() && rx.is_empty() {
                        return;
                    }
                },
                _ = ticks.tick(), if every.is_some() => reporter.tick(std::time::Instant::now()),
            }
        }
    });
    (Sink(tx), task)
}

/// Quotes an argv for a POSIX shell so it can be copied and pasted.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_word(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_word(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:,=+@%".contains(&b));
    if safe {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The spend report of `orch ledger` as a table.
pub fn ledger_table(rows: &[crate::ledger::SpendRow], since: &str) -> String {
    if rows.is_empty() {
        return format!("nothing spent in the last {since}\n");
    }
    let width = rows
        .iter()
        .map(|r| r.key.chars().count())
        .max()
        .unwrap_or(3)
        .clamp(3, 60);
    let mut o = format!(
        "{:<width$} {:>5} {:>10} {:>10} {:>12} {:>12} {:>12}\n",
        "", "runs", "input", "output", "cache read", "cache write", "cost"
    );
    let (mut tokens, mut nanos) = (0u64, crate::ledger::Nanos::ZERO);
    for r in rows {
        tokens = tokens.saturating_add(r.total_tokens);
        nanos = nanos.saturating_add(crate::ledger::Nanos(r.usd_nanos));
        o.push_str(&format!(
            "{:<width$} {:>5} {:>10} {:>10} {:>12} {:>12} {:>12}\n",
            r.key,
            r.runs,
            r.input_tokens,
            r.output_tokens,
            r.cache_read_tokens,
            r.cache_creation_tokens,
            format!("${:.4}{}", r.usd, if r.estimated { "~" } else { "" })
        ));
    }
    o.push_str(&format!(
        "\ntotal in the last {since}: {tokens} tokens, ${nanos:.4} (~ marks estimates)\n"
    ));
    o
}

/// Writes a command's output to stdout.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed pipe (`orch plan | head`) is not an error worth a panic.
    let text = sanitize::sanitize_keep_colours(text);
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Writes bytes to stdout as they are (`orch logs --raw`), secret values masked when they are
/// text; on a terminal, escape sequences are neutralised as [`emit`] does.
pub fn emit_bytes(bytes: &[u8]) {
    use std::io::{IsTerminal, Write};
    let mut out = std::io::stdout().lock();
    let _ = match std::str::from_utf8(bytes) {
        Ok(text) if out.is_terminal() => {
            let masked = crate::secrets::mask(text);
            out.write_all(sanitize::sanitize_keep_colours(&masked).as_bytes())
        }
        Ok(text) => out.write_all(crate::secrets::mask(text).as_bytes()),
        Err(_) => out.write_all(bytes),
    }
    .and_then(|()| out.flush());
}

/// Prints a setup error with its source, labels and help to stderr.
pub fn print_error(err: miette::Report) {
    // The message and the quoted source may hold a manifest's escape sequences.
    eprintln!("{}", sanitize::sanitize_keep_colours(&format!("{err:?}")));
}

/// Shows a path relative to the current folder when it is inside it.
pub fn display_path(path: &std::path::Path) -> String {
    let cwd = std::env::current_dir().ok();
    let shown = cwd
        .as_deref()
        .and_then(|c| path.strip_prefix(c).ok())
        .unwrap_or(path);
    if shown.as_os_str().is_empty() {
        ".".into()
    } else {
        shown.display().to_string()
    }
}

/// Prints a warning about the command line on stderr, before a run starts.
pub fn print_warning(text: &str) {
    eprintln!("warning: {}", sanitize::sanitize_block(text));
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_only_what_needs_it() {
        let argv = ["claude", "-p", "--", "/review it's", ""].map(String::from);
        assert_eq!(
            super::shell_words(&argv),
            r"claude -p -- '/review it'\''s' ''"
        );
    }
}
