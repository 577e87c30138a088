//! The command line's own documentation: shell completions
//! (`wasque completions bash|zsh|fish|...`) and the man page
//! (`wasque manpage`), both from the clap definitions `--help` uses, so
//! they cannot drift from the commands.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use super::Args;

/// Writes the completion script for `shell` to stdout.
pub(super) fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut cmd = Args::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "wasque", &mut out);
    write_stdout(&out)
}

/// Writes the man page (roff) to stdout.
pub(super) fn manpage() -> ExitCode {
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(Args::command()).render(&mut out) {
        eprintln!("error: cannot render the man page: {e}");
        return ExitCode::FAILURE;
    }
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
