fn main() -> std::process::ExitCode {
    wasque_node::cli::main()
}
