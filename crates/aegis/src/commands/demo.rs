//! `aegis demo`: the server and a simulated fleet in one process, on loopback only, with a few
//! releases already in the library, so a newcomer can deploy something within a minute of
//! starting it.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use aegis_image::{Chip, ImageBuilder, SimBehavior};
use aegis_server::server::{ServerConfig, ShutdownToken, serve};
use aegis_sim::fleet::{Fleet, FleetConfig, GroupConfig, StateDir, parse_bandwidth};
use aegis_sim::timing::Timing;
use anyhow::Context;

use super::serve::{bind, dashboard_url, init_logging};
use crate::cli::DemoArgs;
use crate::exit::{CodedError, Exit};

/// One release the demo puts in the library.
struct Release {
    chip: Chip,
    project: &'static str,
    version: &'static str,
    behavior: SimBehavior,
    notes: &'static str,
}

const RELEASES: [Release; 3] = [
    Release {
        chip: Chip::Esp32,
        project: "demo",
        version: "2.0.0",
        behavior: SimBehavior::Boots,
        notes: "A good release: deploy it to the outdated devices.",
    },
    Release {
        chip: Chip::Esp32,
        project: "demo",
        version: "2.1.0",
        behavior: SimBehavior::CrashesAtBoot,
        notes: "A bad release that crashes at boot: deploy it to watch devices roll back and the rollout pause.",
    },
    Release {
        chip: Chip::Esp32s3,
        project: "sensor",
        version: "1.5.0",
        behavior: SimBehavior::Boots,
        notes: "An update for the ESP32-S3 sensors.",
    },
];

/// Size of the demo images: big enough to watch progress bars move.
const IMAGE_SIZE: u64 = 1024 * 1024;

pub fn run(args: &DemoArgs) -> anyhow::Result<Exit> {
    init_logging();
    for (addr, flag) in [
        (args.listen, "--listen"),
        (args.device_listen, "--device-listen"),
    ] {
        if !addr.ip().is_loopback() {
            return Err(CodedError::new(
                Exit::BadInput,
                format!("{flag} {addr} is not a loopback address: the demo stays on this machine; use 127.0.0.1:PORT, or run `aegis serve` for a real network"),
            )
            .into());
        }
    }
    let bandwidth = parse_bandwidth(&args.bandwidth).map_err(|e| {
        CodedError::new(
            Exit::BadInput,
            format!("--bandwidth {}: {e}", args.bandwidth),
        )
    })?;
    let (data_dir, _temp) = match &args.data_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("aegis-demo-")
                .tempdir()
                .context("creating a temporary data directory")?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(demo(args, data_dir, bandwidth, _temp.is_some()))
}

async fn demo(
    args: &DemoArgs,
    data_dir: PathBuf,
    bandwidth: Option<u64>,
    temporary: bool,
) -> anyhow::Result<Exit> {
    let operator = bind(args.listen, "--listen").await?;
    let device = bind(args.device_listen, "--device-listen").await?;
    let url = dashboard_url(args.listen, operator.local_addr()?);
    let mut config = ServerConfig::new(&data_dir);
    config.mdns_interface = Some(loopback_interface().to_string());

    // The devices trust this server's key, as devices built with `aegis keys export` would.
    // Made before the server starts, which then loads it.
    let dir = data_dir.clone();
    let key =
        tokio::task::spawn_blocking(move || aegis_server::keys::load_or_create_signing_key(&dir))
            .await?
            .map_err(|e| anyhow::anyhow!(e.message))?
            .value
            .public_key();

    let shutdown = ShutdownToken::new();
    let mut server = tokio::spawn(serve(config, operator, device, shutdown.clone()));

    let fleet_cfg = fleet_config(args.devices, bandwidth, key, &data_dir);
    let fleet = Fleet::start(fleet_cfg)
        .await
        .map_err(|e| anyhow::anyhow!("the simulated fleet could not start: {e}"))?;

    let http = reqwest::Client::builder().no_proxy().build()?;
    let mut library = Vec::new();
    let mut shas = Vec::new();
    for r in &RELEASES {
        tokio::select! {
            uploaded = upload(&http, &url, r) => {
                let sha = uploaded?;
                library.push(format!("{} {} ({})", r.project, r.version, short(&sha)));
                shas.push(sha);
            }
            ended = &mut server => {
                // The server stopped while starting: say why.
                ended.context("the server task failed")?.map_err(|e| anyhow::anyhow!(e.message))?;
                anyhow::bail!("the server stopped while the demo was starting");
            }
        }
    }

    let outdated = fleet.devices().iter().filter(|d| d.plan.group == 0).count();
    let first = fleet.devices().first().map(|d| d.plan.ip);
    let last = fleet.devices().last().map(|d| d.plan.ip);
    let range = match (first, last) {
        (Some(a), Some(b)) if a != b => format!("{a} to {b}"),
        (Some(a), _) => a.to_string(),
        _ => String::new(),
    };
    println!("AegisOTA demo is running: everything stays on this machine.");
    println!();
    println!("  dashboard  {url}");
    println!(
        "  devices    {} simulated ESP32s on {range}; {outdated} run demo 1.0.0 (outdated)",
        fleet.devices().len()
    );
    println!("  library    {}", library.join(", "));
    if temporary {
        println!("  data       {} (removed on exit)", data_dir.display());
    } else {
        println!("  data       {}", data_dir.display());
    }
    println!();
    println!("Next:");
    println!(
        "  - in the dashboard, deploy demo 2.0.0 to the outdated devices and watch them update"
    );
    println!("  - or from another terminal:");
    println!(
        "      aegis deploy {} --to outdated --wait",
        shas.first().map_or("SHA256", String::as_str)
    );
    println!(
        "  - deploy demo 2.1.0 (it crashes at boot) to watch devices roll back and the rollout pause"
    );
    println!();
    println!("Ctrl-C stops the demo.");

    if !args.no_open {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = open::that_detached(&url) {
                tracing::warn!("could not open a browser ({e}); visit {url}");
            }
        });
    }

    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            r.context("waiting for Ctrl-C")?;
            eprintln!("stopping the demo...");
        }
        () = shutdown.cancelled() => {}
    }
    fleet.shutdown().await;
    shutdown.cancel();
    server
        .await
        .context("the server task failed")?
        .map_err(|e| anyhow::anyhow!(e.message))?;
    Ok(Exit::Success)
}

/// Three groups: outdated devices, up-to-date ones, and a second project on another chip.
fn fleet_config(
    n: u32,
    bandwidth: Option<u64>,
    key: aegis_protocol::PublicKey,
    data_dir: &std::path::Path,
) -> FleetConfig {
    let sensors = n / 5;
    let current = n * 2 / 5;
    let outdated = n - sensors - current;
    let group = |count: u32, project: &str, version: &str, chip: Chip| {
        let mut g = GroupConfig::new(count);
        g.project = project.into();
        g.version = version.into();
        g.chip = chip;
        g
    };
    let mut cfg = FleetConfig::new(0);
    cfg.groups = vec![
        group(outdated, "demo", "1.0.0", Chip::Esp32),
        group(current, "demo", "2.0.0", Chip::Esp32),
        group(sensors, "sensor", "1.4.2", Chip::Esp32s3),
    ];
    cfg.groups.retain(|g| g.count > 0);
    cfg.ip_base = Ipv4Addr::new(127, 0, 1, 1);
    cfg.timing = Timing {
        bandwidth,
        ..Timing::realistic()
    };
    cfg.trusted_key = Some(key);
    // Beside the server's data: temporary with it, or kept with it.
    cfg.state_dir = StateDir::Persistent(data_dir.join("devices"));
    cfg
}

async fn upload(http: &reqwest::Client, base: &str, r: &Release) -> anyhow::Result<String> {
    let bytes = ImageBuilder::new(r.chip)
        .project(r.project)
        .version(r.version)
        .size(IMAGE_SIZE)
        .behavior(r.behavior)
        .build()
        .map_err(|e| anyhow::anyhow!("building the demo image {} {}: {e}", r.project, r.version))?;
    let resp = http
        .post(format!("{base}api/v1/firmware"))
        .query(&[
            ("filename", format!("{}-{}.bin", r.project, r.version)),
            ("notes", r.notes.to_string()),
        ])
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .context("uploading the demo releases to the server")?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("the server refused a demo release ({status}): {body}");
    }
    Ok(body["sha256"].as_str().unwrap_or_default().to_string())
}

fn short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

/// The loopback interface's name, which mDNS is pinned to.
fn loopback_interface() -> &'static str {
    if cfg!(target_os = "macos") {
        "lo0"
    } else {
        "lo"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_protocol::SigningKey;

    #[test]
    fn the_fleet_has_outdated_current_and_other_devices() {
        let dir = std::path::Path::new("/tmp/x");
        let cfg = fleet_config(25, None, SigningKey::generate().public_key(), dir);
        let counts: Vec<u32> = cfg.groups.iter().map(|g| g.count).collect();
        assert_eq!(counts, vec![10, 10, 5]);
        assert_eq!(cfg.groups[0].version, "1.0.0");
        let one = fleet_config(1, None, SigningKey::generate().public_key(), dir);
        assert_eq!(one.device_count(), 1);
    }
}
