//! `aegis devices [--watch] [--json] [--project P] [--chip C] [--outdated] [--online]`: the
//! devices a running server knows, as a sorted table or JSON, optionally kept live from the
//! event stream.

use std::collections::BTreeMap;

use aegis_server::devices::Device;
use aegis_server::firmware::FirmwareEntry;

use crate::cli::DevicesArgs;
use crate::client::{self, Client};
use crate::exit::Exit;
use crate::output::{self, Ui};
use crate::render;

pub fn run(args: &DevicesArgs) -> anyhow::Result<Exit> {
    let (client, _) = client::connect(&args.server)?;
    let ui = Ui::new(args.json);
    client::runtime()?.block_on(async {
        if args.watch {
            watch(&client, args, ui).await
        } else {
            let shown = fetch(&client, args).await?;
            if ui.json {
                output::print_json(&shown)?;
            } else if shown.is_empty() {
                eprintln!("{}", empty_message(args));
            } else {
                print!("{}", render::devices(&shown, output::now()));
            }
            Ok(Exit::Success)
        }
    })
}

async fn fetch(client: &Client, args: &DevicesArgs) -> anyhow::Result<Vec<Device>> {
    let devices: Vec<Device> = client.get("devices").await?;
    let library: Vec<FirmwareEntry> = if args.outdated {
        client.get("firmware").await?
    } else {
        Vec::new()
    };
    Ok(filter(devices, args, &library))
}

/// The devices the filters let through, sorted by hostname then id.
pub fn filter(devices: Vec<Device>, args: &DevicesArgs, library: &[FirmwareEntry]) -> Vec<Device> {
    let newest = newest_by_project(library);
    let mut out: Vec<Device> = devices
        .into_iter()
        .filter(|d| args.project.is_none() || d.project == args.project)
        .filter(|d| args.chip.is_none() || d.chip == args.chip)
        .filter(|d| !args.online || d.online)
        .filter(|d| !args.outdated || is_outdated(d, &newest))
        .collect();
    out.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.id.cmp(&b.id)));
    out
}

/// The most recently uploaded image of each project (and chip), the version devices of that
/// project are expected to run.
fn newest_by_project(library: &[FirmwareEntry]) -> BTreeMap<(&str, &str), &FirmwareEntry> {
    let mut newest: BTreeMap<(&str, &str), &FirmwareEntry> = BTreeMap::new();
    for f in library {
        let key = (f.project.as_str(), f.chip.as_str());
        match newest.get(&key) {
            Some(n) if n.uploaded_at >= f.uploaded_at => {}
            _ => {
                newest.insert(key, f);
            }
        }
    }
    newest
}

fn is_outdated(d: &Device, newest: &BTreeMap<(&str, &str), &FirmwareEntry>) -> bool {
    let (Some(project), Some(chip)) = (d.project.as_deref(), d.chip.as_deref()) else {
        return false;
    };
    newest
        .get(&(project, chip))
        .is_some_and(|f| f.version != d.version)
}

fn empty_message(args: &DevicesArgs) -> &'static str {
    if args.project.is_some() || args.chip.is_some() || args.outdated || args.online {
        "no device matches these filters"
    } else {
        "the server knows no devices yet: they appear when they announce themselves by mDNS \
         on the server's network"
    }
}

/// Redraws the table (or prints a JSON line per change) as device events arrive; on a
/// `resync` re-reads the list. Ends on Ctrl-C or when the server closes the stream.
async fn watch(client: &Client, args: &DevicesArgs, ui: Ui) -> anyhow::Result<Exit> {
    let mut events = client.events().await?;
    let mut shown = fetch(client, args).await?;
    let draw = |shown: &[Device]| {
        if ui.live {
            output::clear_screen();
        }
        print!("{}", render::devices(shown, output::now()));
    };
    if ui.json {
        for d in &shown {
            output::print_json_line(d)?;
        }
    } else {
        draw(&shown);
    }
    loop {
        let msg = tokio::select! {
            m = events.next() => m?,
            _ = tokio::signal::ctrl_c() => return Ok(Exit::Success),
        };
        let Some(msg) = msg else {
            eprintln!("the server closed the event stream (it is shutting down)");
            return Ok(Exit::Success);
        };
        match msg.event.as_str() {
            "device_updated" => {
                let Ok(device) = serde_json::from_str::<Device>(&msg.data) else {
                    continue;
                };
                if ui.json {
                    if !filter(vec![device.clone()], args, &[]).is_empty() || args.outdated {
                        output::print_json_line(&device)?;
                    }
                    continue;
                }
                shown = fetch(client, args).await?;
                draw(&shown);
            }
            "resync" | "firmware_added" | "firmware_deleted" if !ui.json => {
                shown = fetch(client, args).await?;
                draw(&shown);
            }
            _ => {}
        }
    }
}
