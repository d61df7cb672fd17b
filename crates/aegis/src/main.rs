//! The `aegis` executable: parses the command line and hands each subcommand to its module in
//! `commands/`. All product logic lives in the library crates; this file stays thin.

mod cli;
mod client;
mod commands;
mod config;
mod exit;
mod output;
mod render;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            // One clear sentence (with its causes), never a backtrace.
            eprintln!("error: {}", exit::describe(&err));
            exit::code_for(&err).into()
        }
    }
}
