//! `aegis completions SHELL`: a completion script for bash, zsh, fish, elvish or PowerShell,
//! generated from the same clap definition the executable parses with.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::exit::Exit;

pub fn run(args: &CompletionsArgs) -> anyhow::Result<Exit> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "aegis", &mut std::io::stdout());
    Ok(Exit::Success)
}
