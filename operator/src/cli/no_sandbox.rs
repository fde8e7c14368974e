//! `netfence sandbox` in a build without the sandbox (`--no-default-features`, as the container
//! image is built): the subcommand stays, so the answer is one clear error instead of clap's
//! "unrecognized subcommand".

use std::process::ExitCode;

use super::EXIT_BAD_INPUT;

/// Whatever was given: this build has no sandbox to give it to.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Ignored.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

/// Say which build has the sandbox; exit 2.
#[must_use]
pub fn run(_args: &Args) -> ExitCode {
    eprintln!(
        "error: this netfence was built without the sandbox (the container image leaves the in-memory API server out; it is a test double, not part of the operator). Run it from a checkout with `cargo run --release -- sandbox ...`, or install the default build: `cargo install --locked --path operator`"
    );
    ExitCode::from(EXIT_BAD_INPUT)
}
