//! The simulated agent (stub).

/// Entry point of `orch agent-sim ARGS...`: behaves like `claude -p ... --output-format stream-json`.
pub fn main(_args: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
