//! One module per subcommand; `run` dispatches to them.

pub mod audit;
pub mod completions;
pub mod demo;
pub mod deploy;
pub mod devices;
pub mod firmware_client;
pub mod follow;
pub mod inspect;
pub mod keys;
pub mod make_image;
pub mod rollouts;
pub mod serve;
pub mod sim;

use crate::cli::{Cli, Command, FirmwareCommand, SimAction};
use crate::exit::Exit;

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
        Some(Command::Firmware(FirmwareCommand::Add(args))) => firmware_client::add(&args),
        Some(Command::Firmware(FirmwareCommand::List(args))) => firmware_client::list(&args),
        Some(Command::Firmware(FirmwareCommand::Rm(args))) => firmware_client::rm(&args),
        Some(Command::Devices(args)) => devices::run(&args),
        Some(Command::Deploy(args)) => deploy::run(&args),
        Some(Command::Rollouts(args)) => rollouts::run(&args),
        Some(Command::Audit(args)) => audit::run(&args),
        Some(Command::Completions(args)) => completions::run(&args),
        Some(Command::Keys(args)) => keys::run(&args),
    }
}
