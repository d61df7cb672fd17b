//! `aegis sim make-image` (implemented with aegis-image's builder).
use crate::cli::MakeImageArgs;
use crate::exit::Exit;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Behavior {
    Boots,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Corruption {
    BadChecksum,
}

pub fn run(_args: &MakeImageArgs) -> anyhow::Result<Exit> {
    anyhow::bail!("not yet")
}
