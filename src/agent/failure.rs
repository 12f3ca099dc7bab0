//! Why Claude Code said a step failed, in words a person reads in the summary: the text after
//! "Claude Code reported an error: ".
//!
//! Owns turning a result line's verdict ([`ResultSummary`]) into that phrase. It is pure: it
//! never decides whether the step failed (the dispatcher does) and never prints.

use super::accounting::ResultSummary;

/// Longest reason taken from the result's own text, in characters.
const MAX: usize = 160;

/// What went wrong, from a result line with `is_error`:
/// - an API error ("API Error: 529 …" in the result text, or `api_error_status`) is named with
///   its status and the first sentence of the CLI's message;
/// - an execution cut short (`error_during_execution`, whose `errors` carry only the CLI's
///   internal `[ede_diagnostic] …` text) says it was interrupted;
/// - otherwise the CLI's first error message ("Reached maximum number of turns (1)"), else
///   the subtype.
pub fn claude_error(r: &ResultSummary) -> String {
    let text = r.text.as_deref().map(str::trim).unwrap_or_default();
    if text.starts_with("API Error") {
        return first_sentence(text);
    }
    if let Some(status) = r.api_error_status {
        return format!("API Error: {status}");
    }
    // The CLI's diagnostics are for its own developers, not a reason anyone can act on.
    let errors: Vec<&str> = r
        .errors
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty() && !e.starts_with("[ede_diagnostic]"))
        .collect();
    if let Some(first) = errors.first() {
        return clip(first);
    }
    match r.subtype.as_str() {
        "error_during_execution" => "interrupted during execution".to_string(),
        // The CLI marks API failures as subtype "success" with is_error; without a text saying
        // which, the most that is known is that.
        "success" | "" if !text.is_empty() => first_sentence(text),
        "success" | "" => "is_error in its result".to_string(),
        subtype => subtype.to_string(),
    }
}

/// The text up to its first ". " (the CLI follows the status with advice), cut to [`MAX`].
fn first_sentence(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    let end = line.find(". ").map_or(line.len(), |i| i);
    clip(line[..end].trim_end_matches('.'))
}

fn clip(s: &str) -> String {
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(MAX - 1).collect();
        c.push('…');
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::accounting::Accounting;
    use crate::agent::stream::parse_line;

    /// The verdict of a recorded Claude Code transcript, as the executor gets it.
    fn verdict(fixture: &str) -> ResultSummary {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/claude-code-2.1.331")
            .join(fixture);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut acc = Accounting::new(None);
        for line in text.lines() {
            if let Some(ev) = parse_line(line.as_bytes()) {
                acc.observe(&ev);
            }
        }
        acc.finish(Some(1)).result.expect("a result line")
    }

    #[test]
    fn an_api_529_is_named_with_its_status() {
        let r = verdict("api-error-529-after-retries.jsonl");
        assert_eq!(claude_error(&r), "API Error: 529 mock error 529");
    }

    #[test]
    fn an_interrupted_session_does_not_show_the_cli_diagnostic() {
        let r = verdict("interrupted-by-sigint.jsonl");
        assert!(r.errors[0].starts_with("[ede_diagnostic]"), "{r:?}");
        assert_eq!(claude_error(&r), "interrupted during execution");
    }

    #[test]
    fn other_errors_keep_the_cli_message() {
        let r = verdict("error-max-turns.jsonl");
        let why = claude_error(&r);
        assert!(why.starts_with("Reached maximum number of turns"), "{why}");
        let r = ResultSummary {
            subtype: "success".into(),
            is_error: true,
            ..ResultSummary::default()
        };
        assert_eq!(claude_error(&r), "is_error in its result");
    }
}
