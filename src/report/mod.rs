//! Reporters: everything orch shows a person or a machine. Nothing else writes to the terminal.

pub mod plain;
pub mod plan;
pub mod results;

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
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Prints a setup error with its source, labels and help to stderr.
pub fn print_error(err: miette::Report) {
    eprintln!("{err:?}");
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
