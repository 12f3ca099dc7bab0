//! References: the names a template hole or a condition may use, their grammar and their
//! canonical text. Pure: it parses and prints, it never looks a value up.
//!
//! ```text
//! reference := "jobs" job ".outputs" key path
//!            | "jobs" job ".status"
//!            | "matrix" key | "item" path | "env" key
//!            | "run.id" | "run.started_at"
//! job, key  := "." NAME | "[" QUOTED "]"
//! path      := ( "." NAME | "[" QUOTED "]" | "[" INDEX "]" )*
//! NAME      := [A-Za-z0-9_-]+          (hyphens belong to the name: jobs.frontend-tests)
//! QUOTED    := '…' or "…", where \\ \' and \" are the only escapes
//! INDEX     := [0-9]+                  (from 0; no negative indexes)
//! ```
//! Spaces may stand inside brackets (`[ 0 ]`), nowhere else in a reference.

use super::Error;
use crate::manifest::diagnostic::did_you_mean;
use std::fmt;

/// A value a template or condition names, checked at load time and looked up by the runner.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reference {
    /// `jobs.NAME.outputs.KEY` and a path into the output's JSON value.
    Output {
        job: String,
        key: String,
        path: Vec<PathSeg>,
    },
    /// `jobs.NAME.status`: what the job ended as, e.g. `failed` (see [`crate::events::Status`]).
    Status { job: String },
    /// `matrix.KEY`: this instance's value of a matrix axis.
    Matrix { key: String },
    /// `item` and a path: this instance's element of a `for_each` list.
    Item { path: Vec<PathSeg> },
    /// `env.NAME`: a variable of orch's environment.
    Env { name: String },
    /// `run.id`: the run's id.
    RunId,
    /// `run.started_at`: when the run started (RFC 3339).
    RunStartedAt,
}

impl Reference {
    /// The job the reference reads from (`jobs.NAME.…`), for the loader's "is it upstream?" check.
    pub fn job(&self) -> Option<&str> {
        match self {
            Reference::Output { job, .. } | Reference::Status { job } => Some(job),
            _ => None,
        }
    }

    /// The JSON path after the value the reference names (empty for references without one):
    /// what [`super::walk`] and [`super::schema_allows`] take.
    pub fn path(&self) -> &[PathSeg] {
        match self {
            Reference::Output { path, .. } | Reference::Item { path } => path,
            _ => &[],
        }
    }
}

/// One step of a path into a JSON value: an object key or an array index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathSeg {
    /// `.name` or `["any name"]`: the member of an object.
    Key(String),
    /// `[3]`: the element of an array, from 0.
    Index(usize),
}

/// The words a reference may start with.
pub(crate) const ROOTS: [&str; 5] = ["jobs", "matrix", "item", "env", "run"];

/// Whether `b` may stand in a bare NAME.
pub(crate) fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_name_byte)
}

/// Parses one reference starting at byte `start` of `text`; it ends where the grammar ends, and
/// the byte after it is returned with it. Spans in errors are byte offsets within `text`.
pub(crate) fn parse_at(text: &str, start: usize) -> Result<(Reference, usize), Error> {
    let mut c = Cursor { text, pos: start };
    let root = c.name();
    let root_span = start..c.pos;
    let reference = match root {
        "jobs" => {
            let job = c.segment("a job name")?;
            let word = if c.peek() == Some(b'.') {
                c.pos += 1;
                c.name()
            } else {
                ""
            };
            match word {
                "outputs" => Reference::Output {
                    job,
                    key: c.segment("an output key")?,
                    path: c.path()?,
                },
                "status" => Reference::Status { job },
                _ => {
                    let mut help =
                        "write `.outputs.KEY` (e.g. `.outputs.result`) or `.status`".to_string();
                    if let Some(near) = did_you_mean(word, ["outputs", "status"]) {
                        help = format!("did you mean `{near}`? {help}");
                    }
                    return Err(Error::new(
                        "`jobs.NAME` must be followed by `.outputs.KEY` or `.status`",
                        start..c.pos.max(start + 4),
                        help,
                    ));
                }
            }
        }
        "matrix" => Reference::Matrix {
            key: c.segment("a matrix key")?,
        },
        "item" => Reference::Item { path: c.path()? },
        "env" => Reference::Env {
            name: c.segment("a variable name")?,
        },
        "run" => {
            let word = if c.peek() == Some(b'.') {
                c.pos += 1;
                c.name()
            } else {
                ""
            };
            match word {
                "id" => Reference::RunId,
                "started_at" => Reference::RunStartedAt,
                _ => {
                    let mut help = "the run has `run.id` and `run.started_at`".to_string();
                    if let Some(near) = did_you_mean(word, ["id", "started_at"]) {
                        help = format!("did you mean `run.{near}`? {help}");
                    }
                    let what = if word.is_empty() {
                        "`run` must be followed by `.id` or `.started_at`".to_string()
                    } else {
                        format!("`run.{word}` is not a reference")
                    };
                    return Err(Error::new(what, start..c.pos, help));
                }
            }
        }
        "" => {
            let found = describe_at(text, start);
            return Err(Error::new(
                format!("expected a reference, found {found}"),
                start..next_char_end(text, start),
                "references start with jobs., matrix., item, env. or run.",
            ));
        }
        other => {
            let mut help = "references start with jobs., matrix., item, env. or run.".to_string();
            if let Some(near) = did_you_mean(other, ROOTS) {
                help = format!("did you mean `{near}`? {help}");
            }
            return Err(Error::new(
                format!("`{other}` is not a reference"),
                root_span,
                help,
            ));
        }
    };
    let takes_path = matches!(reference, Reference::Output { .. } | Reference::Item { .. });
    if !takes_path && matches!(c.peek(), Some(b'.' | b'[')) {
        let rest = c.pos;
        let _ = c.path();
        return Err(Error::new(
            format!("`{reference}` takes no path"),
            rest..c.pos.max(rest + 1),
            "only `jobs.NAME.outputs.KEY` and `item` take a path such as `.field` or `[0]`",
        ));
    }
    Ok((reference, c.pos))
}

/// Parses a quoted string starting at byte `start` (a `'` or `"`): its value and the byte after
/// the closing quote. `\\`, `\'` and `\"` are the only escapes.
pub(crate) fn parse_quoted(text: &str, start: usize) -> Result<(String, usize), Error> {
    let bytes = text.as_bytes();
    let quote = bytes[start];
    let mut out = String::new();
    let mut run_start = start + 1;
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                out.push_str(&text[run_start..i]);
                match bytes.get(i + 1) {
                    Some(&e @ (b'\\' | b'\'' | b'"')) => out.push(e as char),
                    _ => {
                        let end = next_char_end(text, i + 1);
                        return Err(Error::new(
                            format!("unknown escape `{}` in a string", &text[i..end]),
                            i..end,
                            r#"only \\, \' and \" are escapes; other characters stand as they are"#,
                        ));
                    }
                }
                i += 2;
                run_start = i;
            }
            b if b == quote => {
                out.push_str(&text[run_start..i]);
                return Ok((out, i + 1));
            }
            _ => i += 1,
        }
    }
    let q = quote as char;
    Err(Error::new(
        "this string is not closed",
        start..text.len(),
        format!("close it with `{q}`"),
    ))
}

/// Reads a reference byte by byte.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// A bare NAME, possibly empty.
    fn name(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(is_name_byte) {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    /// `.NAME` or `["QUOTED"]`: a job name or a key.
    fn segment(&mut self, what: &str) -> Result<String, Error> {
        let start = self.pos;
        match self.peek() {
            Some(b'.') => {
                self.pos += 1;
                self.dotted_name(start, what)
            }
            Some(b'[') => {
                self.pos += 1;
                self.skip_spaces();
                if !matches!(self.peek(), Some(b'"' | b'\'')) {
                    return Err(Error::new(
                        format!("expected {what} as a quoted string inside `[ ]`"),
                        start..next_char_end(self.text, self.pos),
                        r#"write ["name"] or ['name']"#,
                    ));
                }
                let (name, end) = parse_quoted(self.text, self.pos)?;
                self.pos = end;
                self.close_bracket(start)?;
                Ok(name)
            }
            _ => Err(Error::new(
                format!("expected `.` and {what}"),
                start..next_char_end(self.text, start),
                r#"write `.name`, or `["name"]` for a name with other characters"#,
            )),
        }
    }

    /// The NAME after a `.` that started at `dot`.
    fn dotted_name(&mut self, dot: usize, what: &str) -> Result<String, Error> {
        let name = self.name();
        if name.is_empty() {
            return Err(Error::new(
                format!("`.` must be followed by {what}"),
                dot..next_char_end(self.text, self.pos),
                r#"write `.name` (letters, digits, `_`, `-`), or `["name"]` for other characters"#,
            ));
        }
        Ok(name.to_string())
    }

    fn close_bracket(&mut self, open: usize) -> Result<(), Error> {
        self.skip_spaces();
        if self.peek() == Some(b']') {
            self.pos += 1;
            Ok(())
        } else {
            Err(Error::new(
                "this `[` is not closed",
                open..next_char_end(self.text, self.pos),
                "close it with `]`",
            ))
        }
    }

    /// Any number of `.NAME`, `["QUOTED"]` and `[INDEX]`.
    fn path(&mut self) -> Result<Vec<PathSeg>, Error> {
        let mut path = Vec::new();
        loop {
            let start = self.pos;
            match self.peek() {
                Some(b'.') => {
                    self.pos += 1;
                    path.push(PathSeg::Key(self.dotted_name(start, "a key")?));
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.skip_spaces();
                    path.push(self.bracket(start)?);
                    self.close_bracket(start)?;
                }
                _ => return Ok(path),
            }
        }
    }

    /// What stands inside `[ ]` in a path; `open` is the `[`.
    fn bracket(&mut self, open: usize) -> Result<PathSeg, Error> {
        let at = self.pos;
        match self.peek() {
            Some(b'"' | b'\'') => {
                let (key, end) = parse_quoted(self.text, at)?;
                self.pos = end;
                Ok(PathSeg::Key(key))
            }
            Some(b'0'..=b'9') => {
                while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    self.pos += 1;
                }
                let digits = &self.text[at..self.pos];
                digits.parse().map(PathSeg::Index).map_err(|_| {
                    Error::new(
                        format!("the index `{digits}` is too large"),
                        at..self.pos,
                        "an index counts array elements from 0",
                    )
                })
            }
            Some(b'-') => {
                self.pos += 1;
                while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    self.pos += 1;
                }
                Err(Error::new(
                    format!(
                        "`{}` is not an index; indexes count from 0 at the start",
                        &self.text[at..self.pos]
                    ),
                    at..self.pos.max(at + 1),
                    "use an index from 0, e.g. [0] for the first element",
                ))
            }
            _ => Err(Error::new(
                "expected an index or a quoted key inside `[ ]`",
                open..next_char_end(self.text, at),
                r#"write an index like [0] or a quoted key like ["name"]"#,
            )),
        }
    }
}

/// The end of the character at byte `at` (or `at` at the end), for one-character spans.
pub(crate) fn next_char_end(text: &str, at: usize) -> usize {
    text[at..].chars().next().map_or(at, |c| at + c.len_utf8())
}

/// "`x`" for the character at `at`, or "the end" past the text.
pub(crate) fn describe_at(text: &str, at: usize) -> String {
    match text[at..].chars().next() {
        Some(c) => format!("`{c}`"),
        None => "the end".to_string(),
    }
}

/// A name as a segment: `.name` when it is a bare NAME, else `["…"]`.
fn write_segment(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    if is_name(name) {
        write!(f, ".{name}")
    } else {
        let escaped = name.replace('\\', r"\\").replace('"', "\\\"");
        write!(f, "[\"{escaped}\"]")
    }
}

/// Writes a path in its canonical text, e.g. `.tasks[0].title`.
pub(crate) fn write_path(f: &mut fmt::Formatter<'_>, path: &[PathSeg]) -> fmt::Result {
    for seg in path {
        match seg {
            PathSeg::Key(k) => write_segment(f, k)?,
            PathSeg::Index(i) => write!(f, "[{i}]")?,
        }
    }
    Ok(())
}

/// A path's canonical text, e.g. `.tasks[0].title` (empty for the empty path).
pub fn path_text(path: &[PathSeg]) -> String {
    struct P<'a>(&'a [PathSeg]);
    impl fmt::Display for P<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_path(f, self.0)
        }
    }
    P(path).to_string()
}

impl fmt::Display for Reference {
    /// The canonical text, which parses back to the same reference:
    /// `jobs.plan.outputs.structured.tasks[0].title`, `jobs["my job"].status`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Output { job, key, path } => {
                f.write_str("jobs")?;
                write_segment(f, job)?;
                f.write_str(".outputs")?;
                write_segment(f, key)?;
                write_path(f, path)
            }
            Reference::Status { job } => {
                f.write_str("jobs")?;
                write_segment(f, job)?;
                f.write_str(".status")
            }
            Reference::Matrix { key } => {
                f.write_str("matrix")?;
                write_segment(f, key)
            }
            Reference::Item { path } => {
                f.write_str("item")?;
                write_path(f, path)
            }
            Reference::Env { name } => {
                f.write_str("env")?;
                write_segment(f, name)
            }
            Reference::RunId => f.write_str("run.id"),
            Reference::RunStartedAt => f.write_str("run.started_at"),
        }
    }
}
