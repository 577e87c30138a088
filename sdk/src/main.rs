fn main() -> std::process::ExitCode {
    wasque_sdk::cli::main()
}
