//! `aegis sim`: run a fleet of simulated ESP32 devices until Ctrl-C. Turns the flags (and an
//! optional fleet file) into an `aegis_sim::fleet::FleetConfig` and hands it to
//! `aegis_sim::fleet::run`; everything else lives in the aegis-sim crate.

use aegis_protocol::PublicKey;
use aegis_sim::faults::FaultSpec;
use aegis_sim::fleet::{
    self, FleetConfig, FleetFile, GroupConfig, RunOptions, StateDir, parse_bandwidth,
};
use aegis_sim::timing::Timing;

use crate::cli::SimFleetArgs;
use crate::exit::{CodedError, Exit};

pub fn run(args: &SimFleetArgs) -> anyhow::Result<Exit> {
    let (cfg, opts) = config(args).map_err(|e| CodedError::new(Exit::BadInput, e))?;
    fleet::run(cfg, opts).map_err(|e| CodedError::new(Exit::Failure, e.to_string()))?;
    Ok(Exit::Success)
}

/// The fleet the flags describe; the error is a sentence naming the flag at fault.
fn config(args: &SimFleetArgs) -> Result<(FleetConfig, RunOptions), String> {
    let run = &args.run;
    let mut defaults = GroupConfig::new(args.count);
    defaults.project.clone_from(&args.project);
    defaults.version.clone_from(&args.version);
    defaults.chip = args.chip;
    defaults.secure_version = args.secure_version;
    defaults.slot_size = args.slot_size;

    let mut cfg = FleetConfig::new(args.count);
    let mut faults = FaultSpec::default();
    if let Some(path) = &args.fleet {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--fleet: cannot read {}: {e}", path.display()))?;
        let file = FleetFile::parse(&text, &path.display().to_string(), &defaults)
            .map_err(|e| e.to_string())?;
        cfg.groups = file.groups;
        faults = file.faults;
    } else {
        cfg.groups = vec![defaults];
    }
    if let Some(spec) = &run.faults {
        faults = faults.merged(spec);
    }
    cfg.faults = faults;
    cfg.ip_base = args.ip_base;
    cfg.port_base = args.port_base;
    cfg.same_port = args.same_port;
    cfg.seed = run.seed;
    cfg.timing = if run.fast {
        Timing::fast()
    } else {
        Timing::realistic()
    };
    if let Some(b) = &run.bandwidth {
        cfg.timing.bandwidth = parse_bandwidth(b).map_err(|e| format!("--bandwidth: {e}"))?;
    }
    if let Some(t) = run.boot_time {
        cfg.timing.boot_time = t;
    }
    if let Some(key) = &run.trusted_key {
        let key = PublicKey::from_hex(key.trim()).map_err(|e| format!("--trusted-key: {e}"))?;
        cfg.trusted_key = Some(key);
    }
    cfg.state_dir = match &run.state_dir {
        Some(dir) => StateDir::Persistent(dir.clone()),
        None => StateDir::Temporary,
    };
    // Check the layout now, so that impossible flags are reported as bad input.
    fleet::plan(&cfg).map_err(|e| e.to_string())?;

    let opts = RunOptions {
        report_stats: run.report_stats,
        stop_after: run.stop_after,
    };
    Ok((cfg, opts))
}
