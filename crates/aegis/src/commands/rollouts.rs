//! `aegis rollouts [ID] [--watch]` (list, show, follow) and
//! `aegis rollouts pause|resume|abort|retry ID` (control).

use aegis_server::rollout::{Rollout, RolloutSummary};

use crate::cli::{RolloutAction, RolloutIdArgs, RolloutsArgs};
use crate::client::{self, Client};
use crate::commands::{deploy, follow};
use crate::exit::Exit;
use crate::output::{self, Ui};
use crate::render;

pub fn run(args: &RolloutsArgs) -> anyhow::Result<Exit> {
    if let Some(action) = &args.action {
        return control(action);
    }
    let (client, _) = client::connect(&args.server)?;
    let ui = Ui::new(args.json);
    client::runtime()?.block_on(async {
        match (&args.id, args.watch) {
            (Some(id), true) => {
                let events = client.events().await?;
                let (rollout, ending) = follow::follow(&client, id, events, ui).await?;
                deploy::report(&rollout, ending, ui)
            }
            (Some(id), false) => {
                let r: Rollout = client.get(&format!("rollouts/{id}")).await?;
                if ui.json {
                    output::print_json(&r)?;
                } else {
                    print!("{}", render::rollout(&r, output::now()));
                }
                Ok(Exit::Success)
            }
            (None, watch) => list(&client, ui, watch).await,
        }
    })
}

async fn list(client: &Client, ui: Ui, watch: bool) -> anyhow::Result<Exit> {
    let mut events = if watch {
        Some(client.events().await?)
    } else {
        None
    };
    loop {
        let list: Vec<RolloutSummary> = client.get("rollouts").await?;
        if ui.json {
            if watch {
                output::print_json_line(&list)?;
            } else {
                output::print_json(&list)?;
            }
        } else if list.is_empty() && !watch {
            eprintln!("no rollouts yet: start one with `aegis deploy FILE --to SELECTOR`");
        } else {
            if watch && ui.live {
                output::clear_screen();
            }
            print!("{}", render::rollouts(&list, output::now()));
        }
        let Some(ev) = events.as_mut() else {
            return Ok(Exit::Success);
        };
        // Redraw on the next rollout change.
        loop {
            let msg = tokio::select! {
                m = ev.next() => m?,
                _ = tokio::signal::ctrl_c() => return Ok(Exit::Success),
            };
            match msg {
                None => return Ok(Exit::Success),
                Some(m) if matches!(m.event.as_str(), "rollout_updated" | "resync") => break,
                Some(_) => {}
            }
        }
    }
}

fn control(action: &RolloutAction) -> anyhow::Result<Exit> {
    let (args, verb, done): (&RolloutIdArgs, &str, &str) = match action {
        RolloutAction::Pause(a) => (a, "pause", "paused"),
        RolloutAction::Resume(a) => (a, "resume", "resumed"),
        RolloutAction::Abort(a) => (a, "abort", "aborted"),
        RolloutAction::Retry(a) => (a, "retry-failed", "queued its failed targets again"),
    };
    let (client, _) = client::connect(&args.server)?;
    let ui = Ui::new(args.json);
    client::runtime()?.block_on(async {
        let (_, summary): (_, RolloutSummary) = client
            .post(
                &format!("rollouts/{}/{verb}", args.id),
                &serde_json::json!({}),
            )
            .await?;
        if ui.json {
            output::print_json(&summary)?;
        } else {
            println!(
                "rollout {} {done}; it is now {} [{}]",
                summary.id,
                render::rollout_state(summary.state),
                summary
                    .counts
                    .iter()
                    .map(|(s, n)| format!("{n} {s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(Exit::Success)
    })
}
