//! Reporters: everything orch shows a person or a machine. Nothing else writes to the terminal.
//!
//! A run's events go to one human reporter (the live [`terminal::Terminal`] view, or the
//! [`plain::Plain`] lines and status tables) and, with `--events`, to the [`ndjson::Ndjson`]
//! stream. Reporters never decide anything about the run; time-driven output comes from `tick`,
//! called by `orch run`'s timer, never from the runner.

#[cfg(test)]
mod display_tests;
pub mod live;
pub mod ndjson;
pub mod plain;
pub mod plan;
pub mod results;
pub mod sanitize;
pub mod select;
pub mod status;
pub mod summary;
pub mod terminal;

pub use select::{Fanout, Options, Selection, select};

/// Something that shows a run: it consumes every event, may be ticked by a timer, and ends
/// with the results.
pub trait Reporter {
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
    let (mut tokens, mut usd) = (0i64, 0.0);
    for r in rows {
        tokens += r.total_tokens;
        usd += r.usd;
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
        "\ntotal in the last {since}: {tokens} tokens, ${usd:.4} (~ marks estimates)\n"
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

/// Prints a setup error with its source, labels and help to stderr.
pub fn print_error(err: miette::Report) {
    // The message and the quoted source may hold a manifest's escape sequences.
    eprintln!("{}", sanitize::sanitize_keep_colours(&format!("{err:?}")));
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
