//! Templates: text with `${{ REFERENCE }}` holes, parsed at load time and rendered by the runner
//! when a step becomes ready. Pure: no I/O; values come in through [`Values`].
//!
//! # The language
//! - A hole is `${{`, optional whitespace, one [`Reference`], optional whitespace, `}}`. The
//!   references are `jobs.NAME.outputs.KEY` (with a JSON path, e.g.
//!   `jobs.plan.outputs.structured.tasks[0].title`), `jobs.NAME.status`, `matrix.KEY`, `item`
//!   (with a path, e.g. `item.title`), `env.NAME`, `run.id` and `run.started_at`; the grammar is in
//!   [`mod@reference`]. A job name with characters other than `[A-Za-z0-9_-]` is quoted:
//!   `jobs["my job"].status`.
//! - `$${{` is an escape: it renders a literal `${{`. A lone `$`, `{` or `}}` is plain text.
//! - The closing `}}` is the first one after `${{` that is not inside a quoted key (a quote
//!   right after `[`, as in `item["a}}b"]`). A `${{` met before any `}}` leaves the first hole
//!   unclosed.
//! - Only `jobs.NAME.outputs.KEY` and `item` take a path; `matrix.KEY.x` is a mistake.
//! - A reference's canonical text (its `Display`) writes bare NAMEs with `.` and any other name
//!   as `["…"]` with `\\` and `\"` escaped; it parses back to the same reference.
//! - Mistakes are all collected, each with a byte span within the text and a help line: an
//!   unclosed `${{`, an empty `${{ }}`, an unknown root, `jobs.x` without `.outputs.KEY` or
//!   `.status`, `run.other`, bad path syntax (`[x`, `[-1]`, a trailing `.`), or anything after the
//!   reference inside the hole.
//!
//! # Rendering
//! A string value renders as itself; any other value (number, bool, null, array, object) as
//! compact JSON (`serde_json::to_string`: `3`, `1.5`, `true`, `null`, `["a","b"]`, `{"k":1}`,
//! object keys sorted). In [`Mode::Plain`] that text goes in as it is, nothing escaped.
//! In [`Mode::Shell`] each hole's text becomes exactly one shell word through [`shell_quote`]:
//! it is wrapped in single quotes, and each `'` in it is written `'\''` (close the quote, an
//! escaped quote, reopen), so `it's` becomes `'it'\''s'` and the empty string `''`. Inside single
//! quotes a POSIX shell gives every byte its literal meaning (`$`, `` ` ``, `\`, `"`, newlines),
//! so the word is the value byte for byte. Only the holes are quoted: the literal text around
//! them is the script as written. A hole that the script itself put inside quotes (`"${{ x }}"`)
//! would keep orch's quotes as characters; [`quoted_context`] finds those for a load-time warning.
//! A value containing a NUL byte cannot be rendered in either mode (no argv element, environment
//! value or shell word can carry one): rendering fails and says so.

pub mod path;
pub mod reference;

#[cfg(test)]
mod tests;

use std::ops::Range;

pub use path::{schema_allows, walk};
pub use reference::{PathSeg, Reference, path_text};

/// A mistake in a template or condition: what is wrong, where (bytes within the text) and how to
/// fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// What is wrong, e.g. "`foo` is not a reference".
    pub message: String,
    /// The bytes of the template or condition text the mistake is at.
    pub span: Range<usize>,
    /// How to fix it, e.g. "close it with `}}`".
    pub help: String,
}

impl Error {
    pub(crate) fn new(
        message: impl Into<String>,
        span: Range<usize>,
        help: impl Into<String>,
    ) -> Error {
        Error {
            message: message.into(),
            span,
            help: help.into(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.help)
    }
}

/// A parsed template: literal text and holes, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    /// Text as it renders (escapes already resolved).
    Text(String),
    /// A hole; `span` is the reference's text inside it, without the `${{ }}` and spaces.
    Hole {
        reference: Reference,
        span: Range<usize>,
    },
}

/// Parses a template, reporting every mistake at once.
pub fn parse(text: &str) -> Result<Template, Vec<Error>> {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let mut errors = Vec::new();
    let mut literal = String::new();
    let mut literal_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"$${{") {
            literal.push_str(&text[literal_start..i]);
            literal.push_str("${{");
            i += 4;
            literal_start = i;
        } else if bytes[i..].starts_with(b"${{") {
            literal.push_str(&text[literal_start..i]);
            let open = i;
            match find_close(text, open + 3) {
                Close::At(close) => {
                    match parse_hole(text, open, close) {
                        Ok((reference, span)) => {
                            if !literal.is_empty() {
                                parts.push(Part::Text(std::mem::take(&mut literal)));
                            }
                            parts.push(Part::Hole { reference, span });
                        }
                        Err(e) => errors.push(e),
                    }
                    i = close + 2;
                }
                Close::Reopened(next) => {
                    errors.push(unclosed(open..next));
                    i = next;
                }
                Close::Never => {
                    errors.push(unclosed(open..text.len()));
                    i = text.len();
                }
            }
            literal_start = i;
        } else {
            i += 1;
        }
    }
    literal.push_str(&text[literal_start..]);
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    if errors.is_empty() {
        Ok(Template { parts })
    } else {
        Err(errors)
    }
}

fn unclosed(span: Range<usize>) -> Error {
    Error::new("this `${{` is not closed", span, "close it with `}}`")
}

/// Where a hole opened just before `from` closes.
enum Close {
    /// The `}}` starts at this byte.
    At(usize),
    /// Another `${{` starts at this byte first.
    Reopened(usize),
    /// Nowhere.
    Never,
}

/// Finds the `}}` closing a hole whose inside starts at `from`: the first not inside a quoted
/// key (a quote right after `[`), or, when such a quote never closes, the first at all (the
/// quote is then reported).
fn find_close(text: &str, from: usize) -> Close {
    let bytes = text.as_bytes();
    let mut quote = None;
    let mut last = b' ';
    let mut i = from;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(_) if b == b'\\' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if (b == b'"' || b == b'\'') && last == b'[' => quote = Some(b),
            None if bytes[i..].starts_with(b"}}") => return Close::At(i),
            None if bytes[i..].starts_with(b"${{") => return Close::Reopened(i),
            None => {}
        }
        if !b.is_ascii_whitespace() {
            last = b;
        }
        i += 1;
    }
    match text[from..].find("}}") {
        Some(at) => Close::At(from + at),
        None => Close::Never,
    }
}

/// Parses the hole `${{ … }}` opening at `open` and closing with the `}}` at `close`.
fn parse_hole(text: &str, open: usize, close: usize) -> Result<(Reference, Range<usize>), Error> {
    let inner = &text[open + 3..close];
    if inner.trim().is_empty() {
        return Err(Error::new(
            "this `${{ }}` is empty",
            open..close + 2,
            "put a reference inside, e.g. `${{ jobs.NAME.outputs.result }}`",
        ));
    }
    let start = open + 3 + (inner.len() - inner.trim_start().len());
    let bounded = &text[..close];
    let (reference, end) = reference::parse_at(bounded, start)?;
    let rest = &text[end..close];
    if !rest.trim().is_empty() {
        let at = end + (rest.len() - rest.trim_start().len());
        let stop = end + rest.trim_end().len();
        return Err(Error::new(
            format!("unexpected `{}` after `{reference}`", &text[at..stop]),
            at..stop,
            "a `${{ }}` holds one reference; to decide whether a job runs, use its `if`",
        ));
    }
    Ok((reference, start..end))
}

impl Template {
    /// Every reference with its span: the reference's text inside its `${{ }}` (bytes within the
    /// template text), in order of appearance.
    pub fn references(&self) -> impl Iterator<Item = (&Reference, Range<usize>)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Hole { reference, span } => Some((reference, span.clone())),
            Part::Text(_) => None,
        })
    }

    /// Whether the template has no reference at all (it renders to its text, escapes resolved).
    pub fn is_literal(&self) -> bool {
        self.references().next().is_none()
    }

    /// `Some` when the whole text is one `${{ }}`, whitespace around allowed: the form a
    /// `for_each` source takes.
    pub fn single(&self) -> Option<&Reference> {
        let mut found = None;
        for part in &self.parts {
            match part {
                Part::Text(t) if t.trim().is_empty() => {}
                Part::Text(_) => return None,
                Part::Hole { reference, .. } if found.is_none() => found = Some(reference),
                Part::Hole { .. } => return None,
            }
        }
        found
    }
}

/// Where values come from when rendering or evaluating (the runner implements it).
pub trait Values {
    /// The value `r` names now, or why there is none (e.g. "the job has not completed"); the
    /// error is shown after the reference's text.
    fn get(&self, r: &Reference) -> Result<serde_json::Value, String>;
}

/// How a hole's value is written into the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// As it is: prompts, `run` argv elements (never through a shell), env values, workspaces.
    Plain,
    /// As one shell word, through [`shell_quote`]: `shell` scripts, which `sh -c` runs.
    Shell,
}

/// Renders a template: literal text as written, each hole as its value's text (see the module
/// documentation), shell-quoted in [`Mode::Shell`]. Fails with the first reference that has no
/// value, naming it.
pub fn render(t: &Template, values: &dyn Values, mode: Mode) -> Result<String, String> {
    let mut out = String::new();
    for part in &t.parts {
        match part {
            Part::Text(text) => out.push_str(text),
            Part::Hole { reference, .. } => {
                let value = values
                    .get(reference)
                    .map_err(|e| format!("`${{{{ {reference} }}}}`: {e}"))?;
                let text = value_text(&value);
                if text.contains('\0') {
                    return Err(format!(
                        "`${{{{ {reference} }}}}`: the value contains a NUL byte, which no \
                         argument, environment value or shell word can carry"
                    ));
                }
                match mode {
                    Mode::Plain => out.push_str(&text),
                    Mode::Shell => out.push_str(&shell_quote(&text)),
                }
            }
        }
    }
    Ok(out)
}

/// A value's text in a template: a string as itself, anything else as compact JSON.
pub fn value_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => serde_json::to_string(other).expect("a serde_json::Value always serialises"),
    }
}

/// POSIX sh single-quoting: one shell word whose value is `s` byte for byte. `it's` becomes
/// `'it'\''s'`; the empty string `''`. Every string is quoted, even one that would not need it.
pub fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str(r"'\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Whether byte `at` of a shell script sits inside `'…'` or `"…"` on its line. A simple scan from
/// the start of the line: a backslash outside single quotes escapes the next byte, `#` at the
/// start of a word outside quotes starts a comment (nothing after it is quoted), and `${{ … }}`
/// holes are skipped whole. Quotes spanning lines are not followed. The loader uses it to warn
/// that a hole is inside quotes, since orch quotes holes itself in shell scripts.
pub fn quoted_context(script: &str, at: usize) -> bool {
    let bytes = script.as_bytes();
    let at = at.min(bytes.len());
    let line_start = bytes[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let mut quote: Option<u8> = None;
    let mut i = line_start;
    while i < at {
        if bytes[i..].starts_with(b"${{") {
            if let Close::At(close) = find_close(script, i + 3) {
                if close + 2 > at {
                    // `at` is inside this hole: judge by where the hole starts.
                    return quote.is_some();
                }
                i = close + 2;
                continue;
            }
        }
        let b = bytes[i];
        match quote {
            Some(b'\'') => {
                if b == b'\'' {
                    quote = None;
                }
            }
            Some(_) => match b {
                b'\\' => i += 1,
                b'"' => quote = None,
                _ => {}
            },
            None => match b {
                b'\\' => i += 1,
                b'\'' | b'"' => quote = Some(b),
                b'#' if i == line_start || bytes[i - 1].is_ascii_whitespace() => return false,
                _ => {}
            },
        }
        i += 1;
    }
    quote.is_some()
}
