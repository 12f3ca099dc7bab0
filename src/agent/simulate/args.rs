//! The simulated agent's configuration: the `claude` argv orch passes, and the `ORCH_SIM_*`
//! environment knobs that make it misbehave on purpose.
//!
//! Owns parsing and validation only. It must never accept an option the real driver would not
//! pass: an unknown option is a usage error (exit 2), so argv regressions in orch surface here.

use std::ffi::OsString;
use std::path::PathBuf;

/// How the session is chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionArg {
    /// `--session-id ID`: a new session with this id (`None`: a fresh random id).
    New(Option<String>),
    /// `--resume ID`: continue an existing session.
    Resume(String),
    /// `--resume FROM --fork-session [--session-id TO]`: continue a copy of FROM as TO (a fresh
    /// random id when `None`), leaving FROM as it was.
    Fork { from: String, to: Option<String> },
}

/// The parsed `claude` argv.
#[derive(Debug, Clone, PartialEq)]
pub struct SimArgs {
    /// `--permission-mode`.
    pub permission_mode: String,
    /// `--model`, as given (alias or id).
    pub model: Option<String>,
    /// `--allowedTools`, split on commas and spaces.
    pub allowed_tools: Vec<String>,
    /// `--max-turns`.
    pub max_turns: Option<u32>,
    /// `--max-budget-usd`.
    pub max_budget_usd: Option<f64>,
    /// `--session-id` or `--resume`.
    pub session: SessionArg,
    /// `--json-schema`, parsed and compiled: the run ends with a `StructuredOutput` call and a
    /// result carrying `structured_output`.
    pub json_schema: Option<serde_json::Value>,
    /// The prompt (everything after `--`, joined by spaces).
    pub prompt: String,
}

/// A rejected argv: the message for stderr and the exit code.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgError {
    /// What went wrong, in the CLI's words.
    pub message: String,
    /// 2 for usage errors, 1 for errors the real CLI reports at run time.
    pub exit_code: u8,
}

fn usage(message: String) -> ArgError {
    ArgError {
        message,
        exit_code: 2,
    }
}

const PERMISSION_MODES: &[&str] = &[
    "acceptEdits",
    "auto",
    "bypassPermissions",
    "default",
    "dontAsk",
    "plan",
];

impl SimArgs {
    /// Parses the argv that follows `orch agent-sim`, like `claude` would.
    pub fn parse(args: &[OsString]) -> Result<SimArgs, ArgError> {
        let mut strings = Vec::with_capacity(args.len());
        for arg in args {
            let s = arg
                .to_str()
                .ok_or_else(|| usage(format!("error: argument {arg:?} is not UTF-8")))?;
            strings.push(s.to_owned());
        }
        let mut it = strings.into_iter();
        let (mut print, mut verbose) = (false, false);
        let (mut format, mut mode, mut model, mut tools) = (None, None, None, Vec::new());
        let (mut max_turns, mut budget, mut session_id, mut resume) = (None, None, None, None);
        let mut fork = false;
        let mut json_schema = None;
        let mut prompt = Vec::new();
        while let Some(arg) = it.next() {
            if arg == "--" {
                prompt.extend(it.by_ref());
                break;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| usage(format!("error: option '{name}' argument missing")))
            };
            match name.as_str() {
                "-p" | "--print" => print = true,
                "--verbose" => verbose = true,
                "--output-format" => format = Some(value()?),
                "--permission-mode" => mode = Some(value()?),
                "--model" => model = Some(value()?),
                "--allowedTools" | "--allowed-tools" => {
                    let v = value()?;
                    tools.extend(
                        v.split([',', ' '])
                            .filter(|t| !t.is_empty())
                            .map(str::to_owned),
                    );
                }
                "--max-turns" => max_turns = Some(number(&name, &value()?)?),
                "--max-budget-usd" => budget = Some(number(&name, &value()?)?),
                "--session-id" => session_id = Some(value()?),
                "-r" | "--resume" => resume = Some(value()?),
                "--fork-session" => fork = true,
                "--json-schema" => json_schema = Some(schema(&value()?)?),
                // Claude Code options the simulation accepts and does not act on.
                "--append-system-prompt"
                | "--system-prompt"
                | "--disallowedTools"
                | "--disallowed-tools"
                | "--mcp-config"
                | "--add-dir"
                | "--fallback-model"
                | "--settings"
                | "--agents"
                | "--permission-prompt-tool" => {
                    value()?;
                }
                "--strict-mcp-config" => {}
                other if other.starts_with('-') && other.len() > 1 => {
                    return Err(usage(format!("error: unknown option '{other}'")));
                }
                _ => prompt.push(arg),
            }
        }
        if !print {
            return Err(usage(
                "error: orch agent-sim only simulates print mode (-p)".into(),
            ));
        }
        match format.as_deref() {
            Some("stream-json") => {}
            other => {
                let msg = format!("error: --output-format must be stream-json, got {other:?}");
                return Err(usage(msg));
            }
        }
        if !verbose {
            let message =
                "Error: When using --print, --output-format=stream-json requires --verbose";
            return Err(ArgError {
                message: message.into(),
                exit_code: 1,
            });
        }
        let permission_mode = mode.unwrap_or_else(|| "default".into());
        if !PERMISSION_MODES.contains(&permission_mode.as_str()) {
            return Err(usage(format!(
                "error: option '--permission-mode <mode>' argument '{permission_mode}' is invalid. \
                 Allowed choices are {}.",
                PERMISSION_MODES.join(", ")
            )));
        }
        let session = match (session_id, resume) {
            (to, Some(from)) if fork => SessionArg::Fork {
                from: valid_uuid(from)?,
                to: to.map(valid_uuid).transpose()?,
            },
            (Some(_), Some(_)) => {
                let message = "Error: --session-id can only be used with --continue or --resume \
                               if --fork-session is also specified.";
                return Err(ArgError {
                    message: message.into(),
                    exit_code: 1,
                });
            }
            (_, Some(id)) => SessionArg::Resume(valid_uuid(id)?),
            (Some(id), None) => SessionArg::New(Some(valid_uuid(id)?)),
            (None, None) => SessionArg::New(None),
        };
        let prompt = prompt.join(" ");
        if prompt.trim().is_empty() {
            let message = "Error: Input must be provided either through stdin or as a prompt \
                           argument when using --print";
            return Err(ArgError {
                message: message.into(),
                exit_code: 1,
            });
        }
        Ok(SimArgs {
            permission_mode,
            model,
            allowed_tools: tools,
            max_turns,
            max_budget_usd: budget,
            session,
            json_schema,
            prompt,
        })
    }
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ArgError> {
    value.trim().parse().map_err(|_| {
        usage(format!(
            "error: option '{name}' argument '{value}' is invalid"
        ))
    })
}

/// `--json-schema` as Claude Code 2.1.331 takes it: JSON that compiles as a JSON Schema, or
/// exit 1 with the CLI's own words.
fn schema(text: &str) -> Result<serde_json::Value, ArgError> {
    let run_time = |message: String| ArgError {
        message,
        exit_code: 1,
    };
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| run_time(format!("Error: --json-schema is not valid JSON: {e}")))?;
    jsonschema::validator_for(&value).map_err(|e| {
        run_time(format!(
            "Error: --json-schema is not a valid JSON Schema: {e}"
        ))
    })?;
    Ok(value)
}

fn valid_uuid(id: String) -> Result<String, ArgError> {
    match uuid::Uuid::parse_str(&id) {
        Ok(_) => Ok(id),
        Err(_) => Err(ArgError {
            message: "Error: Invalid session ID. Must be a valid UUID.".into(),
            exit_code: 1,
        }),
    }
}

/// How a run with `--json-schema` answers (`ORCH_SIM_STRUCTURED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Structured {
    /// `valid`: a `StructuredOutput` call with a value synthesised from the schema, and a
    /// successful result carrying it.
    Valid,
    /// `missing`: no call and a successful result without `structured_output`, as the real CLI
    /// ends when the model ignores its reminder to call the tool.
    Missing,
    /// `invalid`: a successful result whose `structured_output` is a string, which matches no
    /// object schema (the real CLI validates; this is for testing that orch does too).
    Invalid,
    /// `exhausted`: the CLI's `error_max_structured_output_retries` result, exit 1.
    Exhausted,
}

impl Structured {
    fn parse(v: &str) -> Option<Structured> {
        Some(match v {
            "valid" => Structured::Valid,
            "missing" => Structured::Missing,
            "invalid" => Structured::Invalid,
            "exhausted" => Structured::Exhausted,
            _ => return None,
        })
    }
}

/// The `ORCH_SIM_*` knobs (see the module doc of `agent::simulate`).
#[derive(Debug, Clone, PartialEq)]
pub struct Knobs {
    /// `ORCH_SIM_TURNS`: API responses per run (default 2).
    pub turns: u32,
    /// `ORCH_SIM_DELAY_MS`: sleep between lines (default 20).
    pub delay_ms: u64,
    /// `ORCH_SIM_EXIT`: exit code after the result (default: 0, or 1 for an error result).
    pub exit: Option<u8>,
    /// `ORCH_SIM_IS_ERROR=1`: the result says `is_error: true` (with subtype `success`).
    pub is_error: bool,
    /// `ORCH_SIM_HUGE_LINE_MB=N`: the first text line carries N MB of text.
    pub huge_line_mb: u64,
    /// `ORCH_SIM_GARBAGE=1`: non-JSON and non-UTF-8 lines between the real ones.
    pub garbage: bool,
    /// `ORCH_SIM_IGNORE_SIGTERM=1`: SIGTERM is ignored.
    pub ignore_sigterm: bool,
    /// `ORCH_SIM_GRANDCHILD=1`: leave a `sleep 1000` grandchild holding stdout.
    pub grandchild: bool,
    /// `ORCH_SIM_NO_RESULT=1`: never write a result line.
    pub no_result: bool,
    /// `ORCH_SIM_TOKENS_PER_TURN=N`: usage scale (default 1000).
    pub tokens_per_turn: u64,
    /// `ORCH_SIM_STREAM_MB=N`: N MB of assistant lines as fast as possible.
    pub stream_mb: u64,
    /// `ORCH_SIM_HANG=1`: sleep forever after the init line.
    pub hang: bool,
    /// `ORCH_SIM_ITEMS=N`: items in each array of a structured output (default 3; 0 allowed).
    pub items: usize,
    /// `ORCH_SIM_STRUCTURED`: how a run with `--json-schema` answers (default `valid`).
    pub structured: Structured,
    /// `ORCH_SIM_STATE_DIR`: where session totals are kept.
    pub state_dir: PathBuf,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            turns: 2,
            delay_ms: 20,
            exit: None,
            is_error: false,
            huge_line_mb: 0,
            garbage: false,
            ignore_sigterm: false,
            grandchild: false,
            no_result: false,
            tokens_per_turn: 1000,
            stream_mb: 0,
            hang: false,
            items: 3,
            structured: Structured::Valid,
            // orch sets ORCH_SIM_STATE_DIR; by hand, sessions stay with the working folder.
            state_dir: PathBuf::from(".orch").join("agent-sim"),
        }
    }
}

impl Knobs {
    /// Reads the knobs through `get` (the process environment in `main`, a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Knobs, String> {
        let d = Knobs::default();
        let num = |key: &str, default: u64| -> Result<u64, String> {
            match get(key) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{key}={v:?} is not a number")),
            }
        };
        let flag = |key: &str| get(key).is_some_and(|v| !matches!(v.trim(), "" | "0" | "false"));
        let exit = match get("ORCH_SIM_EXIT") {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse()
                    .map_err(|_| format!("ORCH_SIM_EXIT={v:?} is not 0-255"))?,
            ),
        };
        Ok(Knobs {
            turns: u32::try_from(num("ORCH_SIM_TURNS", d.turns.into())?).unwrap_or(u32::MAX),
            delay_ms: num("ORCH_SIM_DELAY_MS", d.delay_ms)?,
            exit,
            is_error: flag("ORCH_SIM_IS_ERROR"),
            huge_line_mb: num("ORCH_SIM_HUGE_LINE_MB", 0)?,
            garbage: flag("ORCH_SIM_GARBAGE"),
            ignore_sigterm: flag("ORCH_SIM_IGNORE_SIGTERM"),
            grandchild: flag("ORCH_SIM_GRANDCHILD"),
            no_result: flag("ORCH_SIM_NO_RESULT"),
            tokens_per_turn: num("ORCH_SIM_TOKENS_PER_TURN", d.tokens_per_turn)?,
            stream_mb: num("ORCH_SIM_STREAM_MB", 0)?,
            hang: flag("ORCH_SIM_HANG"),
            items: usize::try_from(num("ORCH_SIM_ITEMS", d.items as u64)?).unwrap_or(usize::MAX),
            structured: match get("ORCH_SIM_STRUCTURED") {
                None => d.structured,
                Some(v) => Structured::parse(v.trim()).ok_or_else(|| {
                    format!(
                        "ORCH_SIM_STRUCTURED={v:?} is not one of valid, missing, invalid, exhausted"
                    )
                })?,
            },
            state_dir: get("ORCH_SIM_STATE_DIR")
                .map(PathBuf::from)
                .unwrap_or(d.state_dir),
        })
    }
}
