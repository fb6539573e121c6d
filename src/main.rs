//! The `herald` binary: see [`herald::cli`] for its commands.

use std::process::ExitCode;

use clap::Parser;
use herald::cli::{self, Cli};

fn main() -> ExitCode {
    // A missing .env is normal; a malformed one is worth saying.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("herald: cannot read .env: {e}");
            return ExitCode::from(2);
        }
    }
    cli::run(Cli::parse())
}
