//! The simulated agent's transcript as a pure state machine: which stream-json lines a run
//! writes, in order, and what its result line says.
//!
//! Owns line shapes (modelled on the Claude Code 2.1.331 fixtures), the synthetic usage and the
//! limit rules. It must never write, sleep, read files or read environment variables; `simulate::main`
//! drives it.

use super::args::{Failure, Knobs, SimArgs, Structured};
use super::state::SessionState;
use super::synth::Synth;
use crate::agent::prices::price_for;
use crate::agent::stream::{ModelUsage, TokenCounts};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};

/// One thing for the driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Emit {
    /// Write this line (newline included), flush, then sleep the configured delay.
    Line(Vec<u8>),
    /// Write this line `count` times as fast as possible (throughput runs).
    Repeat { line: Vec<u8>, count: u64 },
    /// Sleep until a signal arrives.
    Hang,
}

/// The lines of non-JSON and non-UTF-8 noise written with `ORCH_SIM_GARBAGE=1`.
const GARBAGE: &[&[u8]] = &[
    b"not json: the agent printed something odd\n",
    b"\xff\xfe\x00\x80 binary \xc3\x28 noise\n",
    b"{\"type\":\"assistant\",\"message\":{\"truncated\n",
    b"\n",
];

/// The tool through which Claude Code 2.1.331 takes the answer to `--json-schema`.
pub const STRUCTURED_OUTPUT_TOOL: &str = "StructuredOutput";

/// Model aliases as the simulated CLI resolves them.
fn resolve_model(model: Option<&str>) -> String {
    match model {
        None | Some("opus") | Some("default") => "claude-opus-5-5".into(),
        Some("sonnet") => "claude-sonnet-4-5-20250929".into(),
        Some("haiku") => "claude-haiku-4-5-20251001".into(),
        Some(other) => other.into(),
    }
}

/// The true usage of one synthetic API response: deterministic in the prompt length, the
/// response's index in the run and in the session, and the scale knob.
pub fn response_usage(
    prompt_len: u64,
    step_index: u64,
    state: &SessionState,
    scale: u64,
) -> TokenCounts {
    let write_5m = if step_index == 0 {
        scale + prompt_len / 4
    } else {
        scale / 4 + 50
    };
    let write_1h = if state.responses == 0 { scale / 5 } else { 0 };
    TokenCounts {
        input: 3 + step_index + prompt_len % 5,
        output: 20 + 7 * step_index + scale / 50 + prompt_len % 11,
        cache_read: state.context_tokens,
        cache_creation: write_5m + write_1h,
        cache_creation_5m: write_5m,
        cache_creation_1h: write_1h,
    }
}

/// The simulated run of one `claude -p` invocation.
#[derive(Debug, Clone)]
pub struct Script {
    args: SimArgs,
    knobs: Knobs,
    session_id: String,
    model: String,
    state: SessionState,
    state_dirty: bool,
    step_usage: TokenCounts,
    step_cost: f64,
    next_response: u32,
    lines: u64,
    queue: VecDeque<Emit>,
    started: bool,
    finished: bool,
    exit_code: u8,
    /// The answer to `--json-schema`, for the result line.
    structured: Option<Value>,
}

impl Script {
    /// A run of `session_id` continuing from `state` (default for a new session).
    pub fn new(args: SimArgs, knobs: Knobs, session_id: String, state: SessionState) -> Script {
        let model = resolve_model(args.model.as_deref());
        Script {
            args,
            knobs,
            session_id,
            model,
            state,
            state_dirty: true,
            step_usage: TokenCounts::default(),
            step_cost: 0.0,
            next_response: 0,
            lines: 0,
            queue: VecDeque::new(),
            started: false,
            finished: false,
            exit_code: 0,
            structured: None,
        }
    }

    /// The next thing to do; `None` when the run is over.
    pub fn next_emit(&mut self) -> Option<Emit> {
        loop {
            if let Some(emit) = self.queue.pop_front() {
                return Some(emit);
            }
            if self.finished {
                return None;
            }
            if !self.started {
                self.started = true;
                self.push_init();
            } else {
                self.push_response();
            }
        }
    }

    /// SIGINT: the user line and the result with the cost so far, like the real CLI. Ends the
    /// run with exit code 0.
    pub fn interrupt(&mut self) -> Vec<Vec<u8>> {
        self.queue.clear();
        self.finished = true;
        self.exit_code = 0;
        let user = json!({"type": "user", "message": {"role": "user", "content": [
            {"type": "text", "text": "[Request interrupted by user]"}]},
            "parent_tool_use_id": null, "session_id": self.session_id, "uuid": self.uuid()});
        let mut out = vec![line(&user)];
        if !self.knobs.no_result {
            let turns = self.next_response + 1;
            let errors = ["[ede_diagnostic] result_type=user last_content_type=n/a"];
            out.push(self.result_line("error_during_execution", true, turns, None, &errors));
        }
        out
    }

    /// The session state changed since the last call: the driver persists what this returns.
    pub fn take_dirty_state(&mut self) -> Option<SessionState> {
        std::mem::take(&mut self.state_dirty).then(|| self.state.clone())
    }

    /// The session's cumulative state so far.
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    /// The exit code once `next_emit` returned `None` (or after `interrupt`).
    pub fn exit_code(&self) -> u8 {
        self.exit_code
    }

    fn uuid(&mut self) -> String {
        self.lines += 1;
        let name = format!(
            "{}/{}/{}",
            self.session_id, self.state.responses, self.lines
        );
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
    }

    fn push_line(&mut self, value: &Value) {
        self.queue.push_back(Emit::Line(line(value)));
    }

    fn push_garbage(&mut self) {
        if self.knobs.garbage {
            self.queue
                .extend(GARBAGE.iter().map(|g| Emit::Line(g.to_vec())));
        }
    }

    fn push_init(&mut self) {
        let tools: Vec<&str> = if self.args.allowed_tools.is_empty() {
            vec!["Bash", "Edit", "Read", "Write"]
        } else {
            self.args
                .allowed_tools
                .iter()
                .map(|t| tool_name(t))
                .collect()
        };
        let init = json!({"type": "system", "subtype": "init", "cwd": cwd(),
            "session_id": self.session_id, "tools": tools, "mcp_servers": [],
            "model": self.model, "permissionMode": self.args.permission_mode,
            "apiKeySource": "none", "claude_code_version": "2.1.331-orch-sim",
            "output_style": "default", "uuid": self.uuid()});
        self.push_line(&init);
        self.push_garbage();
        if self.knobs.hang {
            self.queue.push_back(Emit::Hang);
        }
    }

    /// One API response and what follows it: a tool result, another response, or the result.
    fn push_response(&mut self) {
        let k = self.next_response;
        if let (Some(how), Some(reset)) = (self.knobs.fail, self.knobs.failing) {
            if k >= self.knobs.fail_after_turns {
                return self.push_failure(how, reset, k + 1);
            }
        }
        if k >= self.knobs.turns {
            // Only reachable with ORCH_SIM_TURNS=0: answer without any API response.
            return self.push_answer(None, 0, None);
        }
        self.next_response += 1;
        let last = k + 1 >= self.knobs.turns;
        let prompt_len = self.args.prompt.len() as u64;
        let usage = response_usage(
            prompt_len,
            k.into(),
            &self.state,
            self.knobs.tokens_per_turn,
        );
        let id = format!(
            "msg_sim_{:016x}{:08x}",
            fnv(&self.session_id),
            self.state.responses
        );
        let tool = self.tool_for(k);
        let done = format!(
            "Done: {}",
            self.args.prompt.chars().take(60).collect::<String>()
        );
        let text = if last {
            done.clone()
        } else if k == 0 && self.knobs.huge_line_mb > 0 {
            filler(self.knobs.huge_line_mb * 1_000_000)
        } else {
            format!("I'll use {tool}.")
        };
        let text_line = line(&self.assistant(&id, &usage, json!([{"type": "text", "text": text}])));
        self.queue.push_back(Emit::Line(text_line));
        if k == 0 && self.knobs.stream_mb > 0 {
            let block = json!([{"type": "text", "text": filler(1000)}]);
            let line = line(&self.assistant(&id, &usage, block));
            let count = (self.knobs.stream_mb * 1_000_000).div_ceil(line.len() as u64);
            self.queue.push_back(Emit::Repeat { line, count });
        }
        if !last {
            let tool_id = format!("toolu_sim_{:016x}{:08x}", fnv(&id), k);
            let block = json!([{"type": "tool_use", "id": tool_id, "name": tool,
                "input": {"command": "ls", "description": "List files"}}]);
            let tool_line = self.assistant(&id, &usage, block);
            self.push_line(&tool_line);
            let user = json!({"type": "user", "message": {"role": "user", "content": [
                {"tool_use_id": tool_id, "type": "tool_result",
                 "content": "(Bash completed with no output)", "is_error": false}]},
                "parent_tool_use_id": null, "session_id": self.session_id, "uuid": self.uuid()});
            self.push_line(&user);
        }
        self.record(&usage);
        self.push_garbage();
        let turns = k + 1;
        if last {
            self.push_answer(Some((&id, &usage)), turns, Some(done));
        } else if let Some(max) = self.args.max_turns.filter(|m| turns >= *m) {
            let error = format!("Reached maximum number of turns ({max})");
            self.push_result("error_max_turns", true, turns + 1, None, &[&error]);
        } else if let Some(cap) = self
            .args
            .max_budget_usd
            .filter(|cap| self.step_cost >= *cap)
        {
            let error = format!("Reached maximum budget (${cap})");
            self.push_result("error_max_budget_usd", true, turns + 1, None, &[&error]);
        }
    }

    /// The end of a run that was not stopped: the result, and with `--json-schema` first the
    /// `StructuredOutput` call of the last response (its id and usage; as Claude Code 2.1.331 writes it: an
    /// `assistant` line with the `tool_use`, sharing the response's message id, and a `user`
    /// line with its result), unless `ORCH_SIM_STRUCTURED` says otherwise.
    fn push_answer(
        &mut self,
        response: Option<(&str, &TokenCounts)>,
        turns: u32,
        text: Option<String>,
    ) {
        let is_error = self.knobs.is_error;
        let Some(schema) = self.args.json_schema.clone() else {
            return self.push_result("success", is_error, turns, text, &[]);
        };
        let answer = match self.knobs.structured {
            Structured::Missing => return self.push_result("success", is_error, turns, text, &[]),
            Structured::Exhausted => {
                let error = "Failed to provide valid structured output after 5 attempts \u{2014} \
                             last StructuredOutput error: Output does not match required schema: \
                             orch agent-sim was told to fail (ORCH_SIM_STRUCTURED=exhausted)";
                return self.push_result(
                    "error_max_structured_output_retries",
                    true,
                    turns,
                    None,
                    &[error],
                );
            }
            Structured::Invalid => json!("orch agent-sim: not what the schema asks for"),
            Structured::Valid => Synth::new(&schema, self.knobs.items).value(),
        };
        if let Some((id, usage)) = response {
            let tool_id = format!("toolu_sim_{:016x}so", fnv(id));
            let block = json!([{"type": "tool_use", "id": tool_id, "name": STRUCTURED_OUTPUT_TOOL,
                "input": answer}]);
            let tool_line = self.assistant(id, usage, block);
            self.push_line(&tool_line);
            let user = json!({"type": "user", "message": {"role": "user", "content": [
                {"tool_use_id": tool_id, "type": "tool_result",
                 "content": "Structured output provided successfully"}]},
                "parent_tool_use_id": null, "session_id": self.session_id, "uuid": self.uuid(),
                "tool_use_result": "Structured output provided successfully"});
            self.push_line(&user);
        }
        // Nothing is said after the tool call, so the CLI's result text is the answer as JSON.
        let text = Some(answer.to_string());
        self.structured = Some(answer);
        self.push_result("success", is_error, turns, text, &[]);
    }

    /// The end of a failing invocation (`ORCH_SIM_FAIL`): what Claude Code writes when the API
    /// stays overloaded, or when a rate or usage limit stops it. Exit 1.
    fn push_failure(&mut self, how: Failure, reset: i64, turns: u32) {
        if how == Failure::ApiRetry {
            for attempt in 1..=10u32 {
                let retry = json!({"type": "system", "subtype": "api_retry", "attempt": attempt,
                    "max_retries": 10, "retry_delay_ms": 500 * u64::from(attempt),
                    "error_status": 529, "error": "overloaded",
                    "session_id": self.session_id, "uuid": self.uuid()});
                self.push_line(&retry);
            }
        }
        if how == Failure::RateLimit {
            let event = json!({"type": "rate_limit_event", "rate_limit_info": {
                "status": "rejected", "resetsAt": reset, "rateLimitType": "five_hour",
                "utilization": 1.0, "isUsingOverage": false},
                "session_id": self.session_id, "uuid": self.uuid()});
            self.push_line(&event);
        }
        let (text, status) = match how {
            Failure::Overloaded | Failure::ApiRetry => (
                "API Error: 529 {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}. This is a server-side issue, usually temporary — try again in a moment.".to_string(),
                Some(529),
            ),
            Failure::UsageLimit | Failure::RateLimit => {
                (format!("Claude AI usage limit reached|{reset}"), None)
            }
        };
        let synthetic = json!({"type": "assistant", "message": {"id": format!("msg_sim_synthetic_{}", self.lines),
            "type": "message", "role": "assistant", "model": "<synthetic>",
            "content": [{"type": "text", "text": text}], "stop_reason": "stop_sequence",
            "usage": usage_json(&TokenCounts::default())},
            "parent_tool_use_id": null, "session_id": self.session_id, "uuid": self.uuid()});
        self.push_line(&synthetic);
        self.finished = true;
        self.exit_code = self.knobs.exit.unwrap_or(1);
        if !self.knobs.no_result {
            let mut result: Value =
                serde_json::from_slice(&self.result_line("success", true, turns, Some(text), &[]))
                    .expect("a result line is JSON");
            result["api_error_status"] = json!(status);
            if status.is_some() {
                result["api_error_type"] = json!("overloaded_error");
            }
            result["terminal_reason"] = json!("api_error");
            self.push_line(&result);
        }
    }

    /// Adds a response's usage to the run and to the session.
    fn record(&mut self, usage: &TokenCounts) {
        let cost = price_for(&self.model).map_or(0.0, |p| p.cost(usage));
        self.step_usage.add(usage);
        self.step_cost += cost;
        let entry = self.state.models.entry(self.model.clone()).or_default();
        entry.tokens.add(usage);
        entry.cost_usd += cost;
        self.state.cost_usd += cost;
        self.state.responses += 1;
        self.state.context_tokens += usage.cache_creation;
        self.state_dirty = true;
    }

    fn tool_for(&self, k: u32) -> String {
        match self.args.allowed_tools.len() {
            0 => "Bash".into(),
            n => tool_name(&self.args.allowed_tools[k as usize % n]).into(),
        }
    }

    fn assistant(&mut self, id: &str, usage: &TokenCounts, content: Value) -> Value {
        // Start-of-response snapshot: the real output count is only in the result.
        json!({"type": "assistant", "message": {"id": id, "type": "message", "role": "assistant",
            "model": self.model, "content": content, "stop_reason": null, "stop_sequence": null,
            "usage": usage_json(&TokenCounts { output: 1, ..*usage })},
            "parent_tool_use_id": null, "session_id": self.session_id, "uuid": self.uuid()})
    }

    fn push_result(
        &mut self,
        subtype: &str,
        is_error: bool,
        turns: u32,
        text: Option<String>,
        errors: &[&str],
    ) {
        self.finished = true;
        self.exit_code = self.knobs.exit.unwrap_or(if is_error { 1 } else { 0 });
        if !self.knobs.no_result {
            let result = self.result_line(subtype, is_error, turns, text, errors);
            self.queue.push_back(Emit::Line(result));
        }
    }

    fn result_line(
        &mut self,
        subtype: &str,
        is_error: bool,
        turns: u32,
        text: Option<String>,
        errors: &[&str],
    ) -> Vec<u8> {
        let models: BTreeMap<&String, Value> = self
            .state
            .models
            .iter()
            .map(|(m, u)| (m, model_usage_json(u)))
            .collect();
        let mut result = json!({"type": "result", "subtype": subtype, "is_error": is_error,
            "duration_ms": 0, "duration_api_ms": 0, "num_turns": turns,
            "session_id": self.session_id, "total_cost_usd": self.state.cost_usd,
            "usage": usage_json(&self.step_usage), "modelUsage": models,
            "permission_denials": [], "uuid": self.uuid()});
        if let Some(text) = text {
            result["result"] = json!(text);
        }
        if !errors.is_empty() {
            result["errors"] = json!(errors);
        }
        if let Some(answer) = self.structured.take() {
            result["structured_output"] = answer;
        }
        line(&result)
    }
}

fn line(value: &Value) -> Vec<u8> {
    let mut bytes = value.to_string().into_bytes();
    bytes.push(b'\n');
    bytes
}

fn usage_json(u: &TokenCounts) -> Value {
    json!({"input_tokens": u.input, "cache_creation_input_tokens": u.cache_creation,
        "cache_read_input_tokens": u.cache_read, "output_tokens": u.output,
        "cache_creation": {"ephemeral_5m_input_tokens": u.cache_creation_5m,
            "ephemeral_1h_input_tokens": u.cache_creation_1h},
        "service_tier": "standard"})
}

fn model_usage_json(m: &ModelUsage) -> Value {
    let t = &m.tokens;
    json!({"inputTokens": t.input, "outputTokens": t.output, "cacheReadInputTokens": t.cache_read,
        "cacheCreationInputTokens": t.cache_creation, "webSearchRequests": 0,
        "costUSD": m.cost_usd, "cacheCreationEphemeral5mInputTokens": t.cache_creation_5m,
        "cacheCreationEphemeral1hInputTokens": t.cache_creation_1h})
}

/// `Bash(git:*)` → `Bash`.
fn tool_name(spec: &str) -> &str {
    spec.split('(').next().unwrap_or(spec).trim()
}

fn filler(bytes: u64) -> String {
    const WORDS: &str = "lorem ipsum dolor sit amet consectetur adipiscing elit ";
    WORDS
        .chars()
        .cycle()
        .take(usize::try_from(bytes).unwrap_or(usize::MAX))
        .collect()
}

fn cwd() -> String {
    std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default()
}

/// FNV-1a: a stable hash for deterministic ids (std's hasher is randomly seeded).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
