//! One module per subcommand; `run` dispatches to them.

pub mod demo;
pub mod inspect;
pub mod keys;
pub mod make_image;
pub mod serve;
pub mod sim;

use crate::cli::{Cli, Command, FirmwareCommand, SimAction};
use crate::exit::{CodedError, Exit};

pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Some(Command::Firmware(FirmwareCommand::Inspect(args))) => inspect::run(&args),
        Some(Command::Sim(sim)) => match sim.action {
            Some(SimAction::MakeImage(args)) => make_image::run(&args),
            None => self::sim::run(&sim.fleet),
        },
        Some(Command::Serve(args)) => serve::run(&args),
        // Plain `aegis` is `aegis serve` with its defaults.
        None => match <Cli as clap::Parser>::parse_from(["aegis", "serve"]).command {
            Some(Command::Serve(args)) => serve::run(&args),
            _ => anyhow::bail!("`aegis serve` could not be set up with its defaults"),
        },
        Some(Command::Demo(args)) => demo::run(&args),
        Some(Command::Firmware(_)) => unavailable(
            "aegis firmware add|list|rm",
            "the firmware library client",
            6,
        ),
        Some(Command::Devices(_)) => unavailable("aegis devices", "the devices client", 6),
        Some(Command::Deploy(_)) => unavailable("aegis deploy", "the deploy client", 6),
        Some(Command::Rollouts(_)) => unavailable("aegis rollouts", "the rollouts client", 6),
        Some(Command::Audit(_)) => unavailable("aegis audit", "the audit client", 6),
        Some(Command::Keys(args)) => keys::run(&args),
    }
}

/// Commands that are part of the interface but not built into this version yet.
fn unavailable(command: &str, what: &str, issue: u32) -> anyhow::Result<Exit> {
    Err(CodedError::new(
        Exit::Unavailable,
        format!(
            "`{command}` is not available in this version of aegis: {what} is not built yet \
             (tracked as issue #{issue}); `aegis firmware inspect` and `aegis sim make-image` work today"
        ),
    )
    .into())
}
