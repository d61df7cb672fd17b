//! The command-line interface: every subcommand and flag of `aegis`, as clap types.
//! `aegis --help` is the reference; DESIGN.md lists the contract these follow.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "aegis",
    version,
    about = "Local-first firmware deployment for ESP32 fleets",
    long_about = "AegisOTA discovers ESP32 devices on the local network by mDNS, keeps a library of \
                  firmware images, deploys them to many devices at once with signed triggers, and \
                  records every attempt. Run without a subcommand to start the server.",
    after_help = "Examples:\n  aegis demo                         server + simulated fleet on loopback\n  \
                  aegis firmware inspect fw.bin      check a .bin before deploying it\n  \
                  aegis sim make-image --chip esp32s3 --version 2.0.0 -o fw.bin"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: discovery, firmware library, rollouts, dashboard and API.
    Serve(ServeArgs),
    /// Run the server with a simulated fleet, on loopback only.
    Demo(DemoArgs),
    /// Run simulated ESP32 devices, or make firmware images for them.
    Sim(SimCommand),
    /// Inspect firmware files, or manage the server's firmware library.
    #[command(subcommand)]
    Firmware(FirmwareCommand),
    /// List the devices a running server knows.
    Devices(DevicesArgs),
    /// Deploy a firmware image to devices through a running server.
    Deploy(Box<DeployArgs>),
    /// Show or control rollouts on a running server.
    Rollouts(RolloutsArgs),
    /// Read or verify the audit log of a running server.
    Audit(AuditArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Manage the server's signing key (print the public key for device firmware).
    Keys(KeysArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the operator listener (dashboard, API).
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Address of the device listener (firmware downloads, reports).
    #[arg(long, default_value = "0.0.0.0:3001")]
    pub device_listen: SocketAddr,
    /// Data directory (database, firmware, keys); defaults to the per-OS data dir.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Do not open the dashboard in a browser.
    #[arg(long)]
    pub no_open: bool,
    /// Limit mDNS discovery to this network interface.
    #[arg(long)]
    pub mdns_interface: Option<String>,
    /// Base URL devices use to reach the device listener, e.g. http://10.0.0.5:3001 (default:
    /// the device listener's address, or the local address on the route to each device).
    #[arg(long)]
    pub public_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub action: KeysAction,
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Print the server's public key for device firmware (created on first use).
    #[command(
        after_help = "Examples:\n  aegis keys export                  fingerprint, TXT key id, hex, C array and PEM\n  \
                            aegis keys export --format c > aegis_key.h"
    )]
    Export(KeysExportArgs),
}

#[derive(Debug, Args)]
pub struct KeysExportArgs {
    /// Data directory holding keys/signing.pem; defaults to the per-OS data dir.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// What to print.
    #[arg(long, value_enum, default_value_t = KeyFormat::All)]
    pub format: KeyFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyFormat {
    /// The 65-byte uncompressed SEC1 point in hex.
    Hex,
    /// A C array definition.
    C,
    /// SubjectPublicKeyInfo PEM.
    Pem,
    /// Fingerprint, TXT key id and all three forms.
    All,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Everything stays on loopback: the server listens on 127.0.0.1, the \
                         simulated devices use 127.0.1.x, and mDNS runs on the loopback interface \
                         only.\n\nExample:\n  aegis demo --devices 50"
)]
pub struct DemoArgs {
    /// Number of simulated devices (some run an older release, some another project).
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub devices: u32,
    /// Do not open the dashboard in a browser.
    #[arg(long)]
    pub no_open: bool,
    /// Keep the server's data and the devices' flash here (default: a temporary directory,
    /// removed on exit).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address of the dashboard and API (must be a loopback address).
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Address the devices download from (must be a loopback address).
    #[arg(long, default_value = "127.0.0.1:3001")]
    pub device_listen: SocketAddr,
    /// Simulated Wi-Fi download rate of each device, e.g. 200KiB/s.
    #[arg(long, default_value = "200KiB/s")]
    pub bandwidth: String,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimCommand {
    #[command(subcommand)]
    pub action: Option<SimAction>,
    #[command(flatten)]
    pub fleet: SimFleetArgs,
}

#[derive(Debug, Subcommand)]
pub enum SimAction {
    /// Make a valid ESP32 app image (optionally broken on purpose) for tests and the simulator.
    #[command(
        after_help = "Example:\n  aegis sim make-image --chip esp32s3 --version 2.0.0 --project demo --size 1MiB -o fw.bin"
    )]
    MakeImage(MakeImageArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
        ../shared/lab aegis sim --count 100                  100 devices, 127.0.1.1-100, ports 8080-8179\n  \
        aegis sim --count 5 --fast --faults 'drop@50%:dev=3;busy:dev=5'\n  \
        aegis sim --fleet fleet.toml --state-dir ./sim-state  mixed fleet, kept across restarts\n  \
        aegis sim --count 1000 --report-stats 10s            memory and CPU every 10 s\n\n\
        Run it inside a private network namespace (../shared/lab) or where announcing devices \
        on loopback is harmless. `aegis sim --help` shows the fault grammar under --faults; \
        docs/simulator.md explains the device model, the fleet file, faults and limits.")]
pub struct SimFleetArgs {
    /// Number of simulated devices.
    #[arg(long, default_value_t = 1, conflicts_with = "fleet")]
    pub count: u32,
    /// Address of the first device; the others follow consecutively (127.0.1.1, 127.0.1.2, ...).
    #[arg(long, default_value = "127.0.1.1")]
    pub ip_base: Ipv4Addr,
    /// Control port of the first device; the others follow consecutively.
    #[arg(long, default_value_t = 8080)]
    pub port_base: u16,
    /// Give every device the same port (--port-base), as real ESP32s all listen on port 80.
    #[arg(long)]
    pub same_port: bool,
    /// Firmware version the devices run at first.
    #[arg(long, default_value = "1.0.0", conflicts_with = "fleet")]
    pub version: String,
    /// Project name of the firmware the devices run.
    #[arg(long, default_value = "demo", conflicts_with = "fleet")]
    pub project: String,
    /// Chip of the simulated devices (esp32, esp32s2, esp32s3, esp32c3, esp32c6, ...).
    #[arg(long, default_value = "esp32", conflicts_with = "fleet")]
    pub chip: aegis_image::Chip,
    /// Anti-rollback secure_version of the factory firmware.
    #[arg(long, default_value_t = 0, conflicts_with = "fleet")]
    pub secure_version: u32,
    /// Size of each OTA slot, e.g. 1536KiB, 2MiB (a multiple of 4 KiB).
    #[arg(long, default_value = "1536KiB", value_parser = aegis_sim::fleet::parse_slot_size)]
    pub slot_size: u64,
    /// A fleet file (TOML) with groups of devices: count, project, version, chip,
    /// secure_version, faults, bandwidth, slot_size. See docs/simulator.md.
    #[arg(long, value_name = "FILE")]
    pub fleet: Option<PathBuf>,
    #[command(flatten)]
    pub run: Box<SimRunArgs>,
}

/// How the simulated fleet behaves and runs (boxed: `aegis sim` has many flags).
#[derive(Debug, Args)]
pub struct SimRunArgs {
    /// The server public key the devices trust (130 hex digits, `aegis keys export`); without
    /// it devices accept unsigned triggers.
    #[arg(long, value_name = "HEX")]
    pub trusted_key: Option<String>,
    /// Download bandwidth of each device, e.g. 200KiB/s, or `unlimited` [default: 256KiB/s,
    /// unlimited with --fast].
    #[arg(long, value_name = "RATE")]
    pub bandwidth: Option<String>,
    /// Time a device takes to reboot, e.g. 2.5s, 800ms [default: 2.5s, 20ms with --fast].
    #[arg(long, value_name = "DURATION", value_parser = aegis_sim::fleet::parse_duration)]
    pub boot_time: Option<std::time::Duration>,
    /// Near-zero delays everywhere (downloads, flash writes, boots), for tests and quick demos.
    #[arg(long)]
    pub fast: bool,
    /// Directory where device flash state persists across restarts (a restart is a power
    /// cycle). Without it a temporary directory is used and removed on exit.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Fault injection: what goes wrong on which devices (`--help` shows the grammar).
    #[arg(long, value_name = "SPEC", long_help = aegis_sim::faults::HELP)]
    pub faults: Option<aegis_sim::faults::FaultSpec>,
    /// Seed that picks the devices of `frac=` fault rules.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print memory (RSS) and CPU use of the simulator at this interval [default: 10s].
    #[arg(
        long,
        value_name = "INTERVAL",
        num_args = 0..=1,
        default_missing_value = "10s",
        value_parser = aegis_sim::fleet::parse_duration
    )]
    pub report_stats: Option<std::time::Duration>,
    /// Stop by itself after this long (for measurements and scripts), e.g. 30s.
    #[arg(long, value_name = "DURATION", value_parser = aegis_sim::fleet::parse_duration)]
    pub stop_after: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct MakeImageArgs {
    /// Chip the image is built for (esp32, esp32s2, esp32s3, esp32c3, esp32c6, ...).
    #[arg(long, default_value = "esp32")]
    pub chip: String,
    /// Version string written into the app descriptor (at most 31 bytes).
    #[arg(long, default_value = "1.0.0")]
    pub version: String,
    /// Project name written into the app descriptor (at most 31 bytes).
    #[arg(long, default_value = "demo")]
    pub project: String,
    /// Total file size, e.g. 200KiB, 1MiB, 1500000 (rounded up to what the format needs).
    #[arg(long, default_value = "256KiB")]
    pub size: String,
    /// Anti-rollback secure_version written into the app descriptor.
    #[arg(long, default_value_t = 0)]
    pub secure_version: u32,
    /// What the image does when a simulated device boots it.
    #[arg(long, value_enum, default_value_t = crate::commands::make_image::Behavior::Boots)]
    pub behavior: crate::commands::make_image::Behavior,
    /// Break the image on purpose, to test that it is refused.
    #[arg(long, value_enum)]
    pub corrupt: Option<crate::commands::make_image::Corruption>,
    /// Where to write the image.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum FirmwareCommand {
    /// Parse and validate an ESP32 firmware file (offline; no server needed).
    #[command(
        after_help = "Exit status: 0 for a valid OTA app image, 1 when the file is not one \
                            (the reason is printed), 2 when the file cannot be read.\n\n\
                            Example:\n  aegis firmware inspect build/app.bin --json"
    )]
    Inspect(InspectArgs),
    /// Upload a firmware file to the server's library (checked locally first).
    #[command(
        after_help = "Examples:\n  aegis firmware add .pio/build/esp32/firmware.bin --notes \"fixes the watchdog\"\n  \
                            aegis firmware add build/app.bin --json | jq -r .sha256"
    )]
    Add(FirmwareAddArgs),
    /// List the server's firmware library, newest first.
    #[command(
        after_help = "Example:\n  aegis firmware list --json | jq -r '.[] | .version + \" \" + .sha256'"
    )]
    List(FirmwareListArgs),
    /// Remove an unused image from the server's library.
    #[command(
        after_help = "Example:\n  aegis firmware rm 3fa9c1d2e4b5   (a unique prefix of the SHA-256 is enough)"
    )]
    Rm(FirmwareRmArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The firmware file (.bin).
    pub file: PathBuf,
    /// Print a JSON document (a stable interface for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Where the server is and how to prove the right to use it (every client command).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Server")]
pub struct ServerArgs {
    /// URL of the server's operator listener [default: `server` in the config file, else
    /// http://127.0.0.1:3000].
    #[arg(long, env = "AEGIS_SERVER", hide_env_values = true, value_name = "URL")]
    pub server: Option<String>,
    /// Operator token, needed when the server listens beyond loopback [default: `token` in the
    /// config file, else <data dir>/keys/token on this machine].
    #[arg(
        long,
        env = "AEGIS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    aegis devices                               every device, sorted by hostname\n  \
    aegis devices --outdated --online           what `deploy --to outdated` would reach\n  \
    aegis devices --project demo --json | jq -r '.[].id'\n  \
    aegis devices --watch                       live table (Ctrl-C to stop)")]
pub struct DevicesArgs {
    /// Keep the list up to date from the server's event stream (Ctrl-C to stop); with --json,
    /// one JSON object per line for each device change.
    #[arg(long)]
    pub watch: bool,
    /// Print JSON (an array of devices) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only devices running firmware of this project.
    #[arg(long, value_name = "PROJECT")]
    pub project: Option<String>,
    /// Only devices of this chip (esp32, esp32s3, ...).
    #[arg(long, value_name = "CHIP")]
    pub chip: Option<String>,
    /// Only devices not running the newest firmware of their project in the library.
    #[arg(long)]
    pub outdated: bool,
    /// Only devices seen recently (online).
    #[arg(long)]
    pub online: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct FirmwareAddArgs {
    /// The firmware file (.bin), e.g. .pio/build/esp32/firmware.bin.
    pub file: PathBuf,
    /// A note stored with the image (what changed).
    #[arg(long, value_name = "TEXT")]
    pub notes: Option<String>,
    /// Print the library entry as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct FirmwareListArgs {
    /// Print JSON (an array of library entries) instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct FirmwareRmArgs {
    /// SHA-256 of the image, or a unique prefix of it (at least 6 hex digits).
    #[arg(value_name = "SHA")]
    pub sha: String,
    /// Print `{"deleted": "<sha256>"}` instead of a sentence.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "SELECTOR is one of: all, outdated (same project, other version), project:NAME, \
    chip:NAME, version:V, or a comma-separated list of device ids.\n\n\
    Exit status: 0 every target succeeded or was skipped (or, without --wait, the rollout \
    started); 1 some targets failed, rolled back, timed out or were cancelled; 2 bad input \
    (a bad file, flag or selector, or no --yes where nobody can be asked); 3 the rollout was \
    paused by its failure threshold; 4 the server could not be reached; 130 detached with \
    Ctrl-C (the rollout goes on).\n\n\
    Examples:\n  \
    aegis deploy .pio/build/esp32/firmware.bin --to outdated --wait\n  \
    aegis deploy fw.bin --to project:demo --dry-run\n  \
    aegis deploy 3fa9c1d2e4b5 --to a0b1c2d3e4f5,a0b1c2d3e4f6 --canary 1 --parallel 2 --wait\n  \
    pio run && aegis deploy .pio/build/esp32/firmware.bin --to outdated --wait --yes   (CI)"
)]
pub struct DeployArgs {
    /// A firmware file (.bin; checked, then uploaded if the library lacks it) or the SHA-256
    /// (or a unique prefix) of an image already in the library.
    #[arg(value_name = "FILE|SHA")]
    pub firmware: String,
    /// Which devices: all, outdated, project:NAME, chip:NAME, version:V, or id,id,...
    #[arg(long, value_name = "SELECTOR")]
    pub to: String,
    /// Devices updating at the same time [default: config file, else 10].
    #[arg(long, value_name = "N")]
    pub parallel: Option<u32>,
    /// Devices in the first wave, which must all succeed before the rest start (0: none)
    /// [default: config file, else 1].
    #[arg(long, value_name = "N")]
    pub canary: Option<u32>,
    /// Pause the rollout when more than this percentage of its devices failed
    /// [default: config file, else 20].
    #[arg(long, value_name = "PCT", value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_failures: Option<u8>,
    /// Extra attempts per device after a retryable failure [default: config file, else 1].
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Per-device limit from trigger to confirmation, e.g. 90s, 5m [default: config file,
    /// else 5m].
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Permit installing an older version than a device runs.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Show what would happen to each device, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Follow the rollout to its end with live progress, then exit with its outcome.
    #[arg(long)]
    pub wait: bool,
    /// Do not ask for confirmation (required when nobody can be asked: no TTY, CI, --json).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// JSON on stdout (the plan, the rollout, or with --wait the final summary); messages on
    /// stderr; no bars, no prompts.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Exit status with --watch: as `aegis deploy --wait` (0 all succeeded or skipped, 1 some \
    failed, 3 paused by threshold, 4 server unreachable, 130 detached).\n\n\
    Examples:\n  \
    aegis rollouts                     every rollout, newest first\n  \
    aegis rollouts r-1a2b3c4d --watch  follow one to its end\n  \
    aegis rollouts abort r-1a2b3c4d    stop it (devices mid-update finish their update)"
)]
pub struct RolloutsArgs {
    #[command(subcommand)]
    pub action: Option<RolloutAction>,
    /// A rollout id: show it with its targets (without it: list every rollout).
    #[arg(value_name = "ID")]
    pub id: Option<String>,
    /// Follow the rollout (or, without ID, the list) live until it ends (Ctrl-C to stop).
    #[arg(long)]
    pub watch: bool,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum RolloutAction {
    /// Stop starting new targets; devices mid-update finish.
    #[command(after_help = "Example:\n  aegis rollouts pause r-1a2b3c4d")]
    Pause(RolloutIdArgs),
    /// Continue a paused rollout (failures so far no longer count toward the threshold).
    #[command(after_help = "Example:\n  aegis rollouts resume r-1a2b3c4d")]
    Resume(RolloutIdArgs),
    /// Stop the rollout for good: pending targets are cancelled.
    #[command(after_help = "Example:\n  aegis rollouts abort r-1a2b3c4d")]
    Abort(RolloutIdArgs),
    /// Queue failed, rolled-back and timed-out targets again.
    #[command(after_help = "Example:\n  aegis rollouts retry r-1a2b3c4d")]
    Retry(RolloutIdArgs),
}

#[derive(Debug, Args)]
pub struct RolloutIdArgs {
    /// The rollout id (from `aegis rollouts`).
    #[arg(value_name = "ID")]
    pub id: String,
    /// Print the rollout's new summary as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  \
    aegis audit --rollout r-1a2b3c4d\n  \
    aegis audit --device a0b1c2d3e4f5 --since 24h\n  \
    aegis audit --since 7d --format csv > audit.csv\n  \
    aegis audit verify                 check the hash chain (exit 1 if it is broken)"
)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub action: Option<AuditAction>,
    /// Only records about this device.
    #[arg(long, value_name = "ID")]
    pub device: Option<String>,
    /// Only records of this rollout.
    #[arg(long, value_name = "ID")]
    pub rollout: Option<String>,
    /// Only records from this long ago on (1h, 7d) or since an RFC 3339 time.
    #[arg(long, value_name = "DURATION|TIME")]
    pub since: Option<String>,
    /// Only records with this outcome (succeeded, failed, rolled_back, ...).
    #[arg(long, value_name = "OUTCOME")]
    pub outcome: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = AuditFormat::Table)]
    pub format: AuditFormat,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check the audit log's hash chain; exit 1 if a record was altered or removed.
    #[command(after_help = "Example:\n  aegis audit verify --json")]
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// Print the server's verification report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    aegis completions bash > ~/.local/share/bash-completion/completions/aegis\n  \
    aegis completions zsh > \"${fpath[1]}/_aegis\"\n  \
    aegis completions fish > ~/.config/fish/completions/aegis.fish")]
pub struct CompletionsArgs {
    /// The shell to write a completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
