//! A local mock of the Anthropic Messages API, enough for the real Claude Code CLI: HTTP/1.1 over a
//! std `TcpListener`, one thread per connection, `POST /v1/messages` answered from a per-test
//! script (SSE when the request asks for `"stream": true`, JSON otherwise), `count_tokens`
//! answered with a fixed count, and anything else with a harmless empty reply.
//!
//! Every request is logged (method, path, and for messages the parsed body) so tests can assert
//! what the CLI called. The mock never talks to anything but the socket it was handed; it is
//! meant to live inside the test's loopback-only network namespace.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The model every reply names; Claude Code 2.1.331 has it in its own price table, so its
/// `total_cost_usd` is a real figure.
pub const MODEL: &str = "claude-opus-5-5";

/// The tool through which Claude Code 2.1.331 asks for the answer to `--json-schema`.
pub const STRUCTURED_OUTPUT_TOOL: &str = "StructuredOutput";

/// The usage one reply reports: `message_start` carries everything but the output, which arrives
/// in `message_delta` (the start carries a placeholder of 1, as the real API does).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub input: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub cache_read: u64,
    pub output: u64,
}

impl Usage {
    /// A large first turn: a fresh prompt written to the cache (as the fixtures show).
    pub const COLD: Usage = Usage {
        input: 3,
        cache_write_5m: 10_000,
        cache_write_1h: 2_000,
        cache_read: 0,
        output: 57,
    };
    /// A later turn that reads the cached prompt.
    pub const WARM: Usage = Usage {
        input: 8,
        cache_write_5m: 300,
        cache_write_1h: 0,
        cache_read: 12_000,
        output: 12,
    };

    /// Every token together, as orch's `total_tokens` counts them.
    pub fn total(&self) -> u64 {
        self.input + self.cache_write_5m + self.cache_write_1h + self.cache_read + self.output
    }

    /// The `usage` object of `message_start`, output still a placeholder.
    fn start_json(&self) -> Value {
        json!({
            "input_tokens": self.input,
            "cache_creation_input_tokens": self.cache_write_5m + self.cache_write_1h,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_write_5m,
                "ephemeral_1h_input_tokens": self.cache_write_1h,
            },
            "output_tokens": 1,
            "service_tier": "standard",
        })
    }
}

/// What the mock answers to one streaming `POST /v1/messages`.
#[derive(Clone, Debug)]
pub enum Reply {
    /// One text block, `end_turn`.
    Text { text: String, usage: Usage },
    /// A text block, then a `tool_use` block whose input streams as `input_json_delta`s;
    /// `stop_reason: tool_use`, so the CLI runs the tool and asks again.
    Tool {
        text: String,
        name: String,
        input: Value,
        usage: Usage,
    },
    /// An HTTP error with the API's error body (`529` → `overloaded_error`).
    Error { status: u16 },
    /// `message_start` and a whole text block, then nothing until the client hangs up: the CLI
    /// is mid-turn for as long as the test likes.
    Stall { text: String, usage: Usage },
    /// What a model does when asked for structured output: to a request that offers the
    /// `StructuredOutput` tool (Claude Code's `--json-schema`), a text block and a call of that
    /// tool with `input`; to any other request, `text` alone, `end_turn`.
    Structured {
        text: String,
        input: Value,
        usage: Usage,
    },
}

impl Reply {
    pub fn text(text: &str, usage: Usage) -> Reply {
        Reply::Text {
            text: text.into(),
            usage,
        }
    }

    /// A call of the Bash tool with `command`.
    pub fn bash(command: &str, usage: Usage) -> Reply {
        Reply::Tool {
            text: "I'll run a command.".into(),
            name: "Bash".into(),
            input: json!({ "command": command, "description": "Run a command" }),
            usage,
        }
    }

    /// A call of `StructuredOutput` with `input` when the request offers that tool.
    pub fn structured(input: Value, usage: Usage) -> Reply {
        Reply::Structured {
            text: "Here is the structured answer.".into(),
            input,
            usage,
        }
    }

    /// The reply as sent to `request`: [`Reply::Structured`] becomes a tool call or a text.
    fn for_request(self, request: &Request) -> Reply {
        match self {
            Reply::Structured { text, input, usage } => {
                if request.offered_tool(STRUCTURED_OUTPUT_TOOL).is_some() {
                    Reply::Tool {
                        text,
                        name: STRUCTURED_OUTPUT_TOOL.into(),
                        input,
                        usage,
                    }
                } else {
                    Reply::Text { text, usage }
                }
            }
            other => other,
        }
    }

    pub fn stall(usage: Usage) -> Reply {
        Reply::Stall {
            text: "Thinking about it.".into(),
            usage,
        }
    }
}

/// One request the mock received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The JSON body, `Null` when there was none or it did not parse.
    pub body: Value,
}

impl Request {
    /// A `POST /v1/messages` (not `count_tokens`).
    pub fn is_messages(&self) -> bool {
        self.method == "POST"
            && self.path.split('?').next() == Some("/v1/messages")
            && !self.path.contains("count_tokens")
    }

    /// How many messages the conversation sent had.
    pub fn message_count(&self) -> usize {
        self.body["messages"].as_array().map_or(0, Vec::len)
    }

    /// The definition of the tool `name` in the request's `tools`, if it offers it.
    pub fn offered_tool(&self, name: &str) -> Option<&Value> {
        self.body["tools"]
            .as_array()?
            .iter()
            .find(|tool| tool["name"] == name)
    }

    /// Every text block of the conversation sent, in order.
    pub fn texts(&self) -> Vec<String> {
        let mut out = Vec::new();
        for m in self.body["messages"].as_array().into_iter().flatten() {
            match &m["content"] {
                Value::String(text) => out.push(text.clone()),
                blocks => {
                    for block in blocks.as_array().into_iter().flatten() {
                        if let Some(text) = block["text"].as_str() {
                            out.push(text.to_string());
                        }
                    }
                }
            }
        }
        out
    }

    /// Whether the conversation carries a `tool_result` block (a tool really ran).
    pub fn tool_results(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for m in self.body["messages"].as_array().into_iter().flatten() {
            for block in m["content"].as_array().into_iter().flatten() {
                if block["type"] == "tool_result" {
                    out.push(block.clone());
                }
            }
        }
        out
    }
}

#[derive(Default)]
struct State {
    script: Vec<Reply>,
    next: usize,
    requests: Vec<Request>,
    /// Usage of every reply streamed to its `message_stop`.
    served: Vec<Usage>,
    /// Replies currently stalled, waiting for their client to hang up.
    stalled: usize,
}

/// A running mock; its threads end with the test process (they hold nothing but sockets).
pub struct MockApi {
    port: u16,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl MockApi {
    /// Binds 127.0.0.1 on a free port and serves `script` in order; once the script is spent its
    /// last reply is repeated (so "always 529" or "always call a tool" is a one-line script).
    pub fn start(script: Vec<Reply>) -> MockApi {
        assert!(!script.is_empty(), "a script needs at least one reply");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the mock on loopback");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new((
            Mutex::new(State {
                script,
                ..State::default()
            }),
            Condvar::new(),
        ));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || serve(conn, &shared));
            }
        });
        MockApi { port, state }
    }

    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.0.lock().expect("mock state").requests.clone()
    }

    /// The `POST /v1/messages` requests so far.
    pub fn message_requests(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(Request::is_messages)
            .collect()
    }

    /// Usage of every reply streamed to its end.
    pub fn served(&self) -> Vec<Usage> {
        self.state.0.lock().expect("mock state").served.clone()
    }

    /// Waits until a reply is stalled mid-turn (the CLI has received its first block).
    pub fn wait_stalled(&self, deadline: Duration) {
        self.wait("a stalled reply", deadline, |s| s.stalled > 0);
    }

    /// Waits until no reply is stalled any more (its client hung up).
    pub fn wait_released(&self, deadline: Duration) {
        self.wait("the stalled client to hang up", deadline, |s| {
            s.stalled == 0
        });
    }

    fn wait(&self, what: &str, deadline: Duration, ok: impl Fn(&State) -> bool) {
        let end = Instant::now() + deadline;
        let (lock, cond) = &*self.state;
        let mut state = lock.lock().expect("mock state");
        while !ok(&state) {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; requests: {:?}",
                state
                    .requests
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.path))
                    .collect::<Vec<_>>()
            );
            state = cond.wait_timeout(state, left).expect("mock state").0;
        }
    }

    fn update(state: &(Mutex<State>, Condvar), f: impl FnOnce(&mut State)) {
        f(&mut state.0.lock().expect("mock state"));
        state.1.notify_all();
    }
}

/// Serves one connection: requests in a row (keep-alive) until the client closes or a streamed
/// reply ends the connection.
fn serve(conn: TcpStream, state: &Arc<(Mutex<State>, Condvar)>) {
    let Ok(write_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    let mut out = write_half;
    while let Some(request) = read_request(&mut reader) {
        let reply = {
            let mut s = state.0.lock().expect("mock state");
            s.requests.push(request.clone());
            let reply = (request.is_messages() && request.body["stream"] == true).then(|| {
                let i = s.next.min(s.script.len() - 1);
                s.next += 1;
                (i, s.script[i].clone().for_request(&request))
            });
            state.1.notify_all();
            reply
        };
        let keep_alive = match (&reply, request.method.as_str()) {
            (Some((i, reply)), _) => stream_reply(&mut out, &mut reader, *i, reply, state),
            (None, "POST") if request.is_messages() => write_json(&mut out, 200, &plain_message()),
            (None, "POST") if request.path.contains("count_tokens") => {
                write_json(&mut out, 200, &json!({ "input_tokens": 1000 }))
            }
            (None, "HEAD") => write_head(&mut out, 200, "", 0),
            // Other probes (GET /v1/models, OAuth, ...) get an empty 404: "not here".
            _ => write_json(&mut out, 404, &json!({})),
        };
        if !keep_alive {
            break;
        }
    }
}

/// Reads one request; `None` when the client closed or sent garbage.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let body = if chunked {
        read_chunked(reader)?
    } else {
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        body
    };
    Some(Request {
        method,
        path,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

fn write_head(out: &mut TcpStream, status: u16, content_type: &str, length: usize) -> bool {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        529 => "Overloaded",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {length}\r\n\
         request-id: req_mock\r\n\r\n"
    );
    out.write_all(head.as_bytes()).is_ok()
}

fn write_json(out: &mut TcpStream, status: u16, body: &Value) -> bool {
    let body = body.to_string();
    write_head(out, status, "application/json", body.len())
        && out.write_all(body.as_bytes()).is_ok()
        && out.flush().is_ok()
}

/// The answer to a non-streaming messages call (the CLI's side requests, if it makes any).
fn plain_message() -> Value {
    json!({
        "id": "msg_mock_plain",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{ "type": "text", "text": "ok" }],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": { "input_tokens": 0, "output_tokens": 0,
                   "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0 },
    })
}

/// Streams one scripted reply. Returns false: a streamed reply closes the connection (it has no
/// length, so the end of the connection is the end of the body).
fn stream_reply(
    out: &mut TcpStream,
    reader: &mut BufReader<TcpStream>,
    index: usize,
    reply: &Reply,
    state: &Arc<(Mutex<State>, Condvar)>,
) -> bool {
    if let Reply::Error { status } = reply {
        let kind = if *status == 529 {
            "overloaded_error"
        } else {
            "api_error"
        };
        let body = json!({ "type": "error",
            "error": { "type": kind, "message": format!("mock error {status}") } });
        write_json(out, *status, &body);
        return false;
    }
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
                request-id: req_mock\r\nconnection: close\r\n\r\n";
    if out.write_all(head.as_bytes()).is_err() {
        return false;
    }
    let id = format!("msg_mock_{index:04}_{:08x}", std::process::id());
    let (text, usage) = match reply {
        Reply::Text { text, usage }
        | Reply::Tool { text, usage, .. }
        | Reply::Stall { text, usage } => (text, *usage),
        Reply::Error { .. } | Reply::Structured { .. } => {
            unreachable!("answered above, or made a tool call or a text by `for_request`")
        }
    };
    let mut events = vec![
        (
            "message_start",
            json!({ "type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": MODEL, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": usage.start_json() } }),
        ),
        (
            "content_block_start",
            json!({ "type": "content_block_start", "index": 0,
                    "content_block": { "type": "text", "text": "" } }),
        ),
        (
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 0,
                    "delta": { "type": "text_delta", "text": text } }),
        ),
        (
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": 0 }),
        ),
    ];
    let mut stop_reason = "end_turn";
    if let Reply::Tool { name, input, .. } = reply {
        stop_reason = "tool_use";
        let input = input.to_string();
        // Split the input JSON in two deltas, as the API does for longer inputs.
        let (a, b) = input.split_at(input.len() / 2);
        events.push((
            "content_block_start",
            json!({ "type": "content_block_start", "index": 1, "content_block": {
                "type": "tool_use", "id": format!("toolu_mock_{index:04}"), "name": name,
                "input": {} } }),
        ));
        for part in [a, b] {
            events.push((
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": 1,
                        "delta": { "type": "input_json_delta", "partial_json": part } }),
            ));
        }
        events.push((
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": 1 }),
        ));
    }
    if !send_events(out, &events) {
        return false;
    }
    if matches!(reply, Reply::Stall { .. }) {
        MockApi::update(state, |s| s.stalled += 1);
        // Hold the turn open until the client hangs up (EOF or reset), at most two minutes.
        let _ = reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(120)));
        let mut sink = [0u8; 256];
        while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
        MockApi::update(state, |s| s.stalled -= 1);
        return false;
    }
    let end = [
        (
            "message_delta",
            json!({ "type": "message_delta",
                    "delta": { "stop_reason": stop_reason, "stop_sequence": null },
                    "usage": { "output_tokens": usage.output } }),
        ),
        ("message_stop", json!({ "type": "message_stop" })),
    ];
    if send_events(out, &end) {
        MockApi::update(state, |s| s.served.push(usage));
    }
    false
}

fn send_events(out: &mut TcpStream, events: &[(&str, Value)]) -> bool {
    for (name, data) in events {
        let frame = format!("event: {name}\ndata: {data}\n\n");
        if out.write_all(frame.as_bytes()).is_err() || out.flush().is_err() {
            return false;
        }
    }
    true
}
