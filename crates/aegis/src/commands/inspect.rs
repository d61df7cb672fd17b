//! `aegis firmware inspect FILE [--json]` (implemented with aegis-image).
use crate::cli::InspectArgs;
use crate::exit::Exit;

pub fn run(_args: &InspectArgs) -> anyhow::Result<Exit> {
    anyhow::bail!("not yet")
}
