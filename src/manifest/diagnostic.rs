//! Manifest diagnostics: every mistake a manifest can hold, as a miette report pointing at its span.
//!
//! Each variant has a namespaced code (`orch::manifest::*`) and a help line. They are collected, never
//! thrown one by one: [`ManifestErrors`] carries all of a file's mistakes and its source text.

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};
use thiserror::Error;

use super::node::Span;

/// One mistake in a manifest.
#[derive(Debug, Error, Diagnostic, Clone, PartialEq)]
pub enum ManifestError {
    #[error("{format} syntax error: {message}")]
    #[diagnostic(
        code(orch::manifest::syntax),
        help("fix the {format} syntax here; nothing else in the file was checked")
    )]
    Syntax {
        format: &'static str,
        message: String,
        #[label("here")]
        span: SourceSpan,
    },

    #[error("unknown key `{key}` in {at}")]
    #[diagnostic(code(orch::manifest::unknown_key))]
    UnknownKey {
        key: String,
        /// Where: a dotted path, or the table's description at the top level.
        at: String,
        context: String,
        #[label("not a key of {context}")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("`{path}` must be {expected}, found {found}")]
    #[diagnostic(code(orch::manifest::wrong_type))]
    WrongType {
        path: String,
        expected: &'static str,
        found: &'static str,
        #[label("expected {expected}")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("`{path}` is given twice")]
    #[diagnostic(
        code(orch::manifest::duplicate_key),
        help("keep one of them; a key means one thing")
    )]
    DuplicateKey {
        path: String,
        #[label("first here")]
        first: SourceSpan,
        #[label("again here")]
        second: SourceSpan,
    },

    #[error("job `{job}` has nothing to run")]
    #[diagnostic(
        code(orch::manifest::no_command),
        help(
            "give an agent job `command = \"/slash-command args\"` or `prompt = \"...\"`, \
             or a process job `run = [\"program\", \"arg\"]` or `shell = \"script\"`"
        )
    )]
    NoCommand {
        job: String,
        #[label("this job needs one of command, prompt, run or shell")]
        span: SourceSpan,
    },

    #[error("`{path}` is empty: a job's program needs a name")]
    #[diagnostic(
        code(orch::manifest::empty_program),
        help(
            "write the program first, e.g. run = [\"cargo\", \"test\"], or use \
             shell = \"...\" for a script"
        )
    )]
    EmptyProgram {
        path: String,
        #[label("no program")]
        span: SourceSpan,
    },

    #[error("`{path}` holds a NUL byte")]
    #[diagnostic(
        code(orch::manifest::nul_byte),
        help(
            "a NUL byte cannot be passed in a program's arguments, its environment or a path: \
             remove the \\u0000 (or \\0) from this string"
        )
    )]
    NulByte {
        path: String,
        #[label("NUL byte in this string")]
        span: SourceSpan,
    },

    #[error("job `{job}` has both `{first}` and `{second}`")]
    #[diagnostic(
        code(orch::manifest::conflicting_command),
        help("a job runs one thing: keep exactly one of command, prompt, run or shell")
    )]
    ConflictingCommand {
        job: String,
        first: String,
        second: String,
        #[label("`{first}` here")]
        first_span: SourceSpan,
        #[label("`{second}` here")]
        second_span: SourceSpan,
    },

    #[error("job name `{name}` is used twice")]
    #[diagnostic(
        code(orch::manifest::duplicate_job),
        help("job names identify jobs in `needs`, logs and results: give each job its own name")
    )]
    DuplicateJob {
        name: String,
        #[label("first defined here")]
        first: SourceSpan,
        #[label("defined again here")]
        second: SourceSpan,
    },

    #[error("jobs `{first_job}` and `{second_job}` name the same session_id \"{session}\"")]
    #[diagnostic(
        code(orch::manifest::shared_session),
        help(
            "a Claude session is one conversation, continued by one job from run to run; two \
             jobs in it would run in it at once: give each job its own session_id"
        )
    )]
    SharedSession {
        session: String,
        first_job: String,
        second_job: String,
        #[label("first named here")]
        first: SourceSpan,
        #[label("named again here")]
        second: SourceSpan,
    },

    #[error(
        "job name `{start}…` is {chars} characters long; the most is {}",
        super::MAX_JOB_NAME
    )]
    #[diagnostic(
        code(orch::manifest::long_job_name),
        help(
            "a job name becomes part of log file names (at most 255 bytes) and of every table \
             orch prints: shorten it to {} characters, and say more in `description`",
            super::MAX_JOB_NAME
        )
    )]
    LongJobName {
        /// The name's first characters.
        start: String,
        chars: usize,
        #[label("{chars} characters")]
        span: SourceSpan,
    },

    #[error("job `{job}` needs `{need}`, which is not a job of this manifest")]
    #[diagnostic(code(orch::manifest::unknown_need))]
    UnknownNeed {
        job: String,
        need: String,
        #[label("no job is called `{need}`")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("dependency cycle: {cycle}")]
    #[diagnostic(
        code(orch::manifest::cycle),
        help("jobs in a cycle wait for each other forever: remove one of these `needs`")
    )]
    Cycle {
        cycle: String,
        #[label(collection)]
        spans: Vec<LabeledSpan>,
    },

    #[error("`{path}` is not a duration: {reason}")]
    #[diagnostic(
        code(orch::manifest::bad_duration),
        help(
            "write a number with a unit: \"500ms\", \"5s\", \"30m\", \"2h\", \"1d\", or \"1h30m\"; \
             a bare number means seconds"
        )
    )]
    BadDuration {
        path: String,
        reason: String,
        #[label("not a duration")]
        span: SourceSpan,
    },

    #[error(
        "`{path}` is longer than the maximum duration, {}",
        crate::duration::MAX_TEXT
    )]
    #[diagnostic(
        code(orch::manifest::duration_too_long),
        help(
            "the longest duration orch accepts is {}; write a shorter one, or leave the key out \
             for the default",
            crate::duration::MAX_TEXT
        )
    )]
    DurationTooLong {
        path: String,
        #[label("longer than {}", crate::duration::MAX_TEXT)]
        span: SourceSpan,
    },

    #[error("`{path}` must be greater than zero")]
    #[diagnostic(code(orch::manifest::bad_budget))]
    BadBudget {
        path: String,
        #[label("this limit can never be met")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("`{path}` must be a whole number of at least 1")]
    #[diagnostic(code(orch::manifest::not_positive))]
    NotPositive {
        path: String,
        #[label("must be 1 or more")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("`{path}` must be one of {allowed}")]
    #[diagnostic(code(orch::manifest::bad_value))]
    BadValue {
        path: String,
        allowed: String,
        #[label("not an accepted value")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("`{path}` is not a valid cron expression: {reason}")]
    #[diagnostic(
        code(orch::manifest::bad_cron),
        help(
            "use 5 fields (min hour day month weekday, e.g. \"0 2 * * *\"), 6 with seconds first, \
             or @hourly, @daily, @weekly, @monthly, @yearly"
        )
    )]
    BadCron {
        path: String,
        reason: String,
        #[label("here")]
        span: SourceSpan,
    },

    #[error("`{path}` is not a start time: {reason}")]
    #[diagnostic(
        code(orch::manifest::bad_start_at),
        help("write {}", crate::schedule::START_AT_FORMS)
    )]
    BadStartAt {
        path: String,
        reason: String,
        #[label("not a start time")]
        span: SourceSpan,
    },

    #[error("`{path}` is not a time zone: {name:?}")]
    #[diagnostic(code(orch::manifest::bad_timezone))]
    BadTimezone {
        path: String,
        name: String,
        #[label("not an IANA time zone")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("`{path}`: {message}")]
    #[diagnostic(code(orch::manifest::template))]
    Template {
        path: String,
        message: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
        #[help]
        help: String,
    },

    #[error("`{path}`: {message}")]
    #[diagnostic(code(orch::manifest::condition))]
    Condition {
        path: String,
        message: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
        #[help]
        help: String,
    },

    #[error("`{path}`: {message}")]
    #[diagnostic(code(orch::manifest::fan_out))]
    FanOut {
        path: String,
        message: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
        #[help]
        help: String,
    },

    #[error("`{path}`: {message}")]
    #[diagnostic(code(orch::manifest::output_schema))]
    OutputSchema {
        path: String,
        message: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
        #[help]
        help: String,
    },

    #[error("`{path}`: {message}")]
    #[diagnostic(code(orch::manifest::slurm_value))]
    SlurmValue {
        path: String,
        message: String,
        #[label("not a value Slurm takes here")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("`{path}`: {message}")]
    #[diagnostic(code(orch::manifest::agent_option))]
    AgentOption {
        path: String,
        message: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
        #[help]
        help: String,
    },

    #[error("`{path}`: cannot read the env file {file}: {reason}")]
    #[diagnostic(
        code(orch::manifest::env_file),
        help("give a dotenv file (NAME=value lines) relative to the manifest, or remove the key")
    )]
    EnvFile {
        path: String,
        file: String,
        reason: String,
        #[label("this file")]
        span: SourceSpan,
    },

    #[error("the manifest defines no jobs")]
    #[diagnostic(code(orch::manifest::empty))]
    Empty {
        #[label("no jobs here")]
        span: SourceSpan,
        /// An example in the file's own format ([`empty_help`]).
        #[help]
        help: String,
    },
}

/// The help of [`ManifestError::Empty`]: a job in TOML, or an instance for a JSON config.
pub fn empty_help(json: bool) -> String {
    if json {
        "add an instance, for example:\n\n{\n  \"instances\": [\n    {\"name\": \"hello\", \
         \"command\": \"/createtestsv2 unit\"}\n  ]\n}"
            .into()
    } else {
        "add a job, for example:\n\n[jobs.hello]\nrun = [\"echo\", \"hello\"]\n\n\
         (a legacy JSON config lists them under \"instances\")"
            .into()
    }
}

impl ManifestError {
    /// The primary span, for sorting errors in file order.
    pub fn offset(&self) -> usize {
        self.labels()
            .and_then(|mut labels| labels.next())
            .map(|l| l.offset())
            .unwrap_or(0)
    }
}

/// The most mistakes of one file that are rendered. Each costs a pass over the source to find
/// its line, so 20,000 of them took minutes; the first hundred say what is wrong.
pub const MAX_SHOWN: usize = 100;

/// All the mistakes of one manifest file (the first [`MAX_SHOWN`] in file order), rendered
/// together with its source.
#[derive(Debug, Error, Diagnostic)]
#[error("{} in {name}{}", plural(*.total), shown(.errors.len(), *.total))]
#[diagnostic(
    code(orch::manifest::invalid),
    help("nothing was run; fix the manifest and try again")
)]
pub struct ManifestErrors {
    pub name: String,
    #[source_code]
    pub source_code: NamedSource<String>,
    #[related]
    pub errors: Vec<ManifestError>,
    /// How many mistakes the file holds, `errors` being the first of them.
    pub total: usize,
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 error".to_string()
    } else {
        format!("{n} errors")
    }
}

fn shown(shown: usize, total: usize) -> String {
    if shown < total {
        format!(" (the first {shown} are shown)")
    } else {
        String::new()
    }
}

/// Converts a byte range into miette's span type.
pub fn span(s: &Span) -> SourceSpan {
    (s.start, s.end.saturating_sub(s.start)).into()
}

/// "did you mean `x`?" for the closest candidate, if any is close enough. Words and candidates
/// longer than 256 bytes are never compared: nobody mistypes them, and comparing two long
/// strings costs the product of their lengths.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    const LONGEST: usize = 256;
    if word.len() > LONGEST {
        return None;
    }
    candidates
        .into_iter()
        .filter(|c| c.len() <= LONGEST)
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
