fn main() -> std::process::ExitCode {
    orch::main()
}
