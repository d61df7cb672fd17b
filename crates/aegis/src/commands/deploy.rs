//! `aegis deploy FILE|SHA --to SELECTOR [strategy flags] [--dry-run] [--wait] [--yes]`: the
//! one command a CI pipeline needs. Checks the file locally, uploads it if the library lacks
//! it, asks the server for the plan (a dry run), shows it and asks for confirmation when a
//! person is there, starts the rollout, and with `--wait` follows it to the end and exits with
//! its outcome (see `Exit` and docs/cli.md).

use std::path::Path;

use aegis_server::rollout::{CreateRollout, Plan, Rollout, Selector, Strategy, TargetSpec};

use crate::cli::DeployArgs;
use crate::client::{self, Client};
use crate::commands::firmware_client::{self, LocalImage};
use crate::commands::follow::{self, Summary};
use crate::config::DeployDefaults;
use crate::exit::{CodedError, Exit};
use crate::output::{self, Ui};
use crate::render;

pub fn run(args: &DeployArgs) -> anyhow::Result<Exit> {
    let ui = Ui::new(args.json);
    // Everything that can be refused locally is refused before anything changes.
    let targets = parse_targets(&args.to)?;
    if !args.yes && !args.dry_run && !ui.interactive {
        return Err(CodedError::new(
            Exit::BadInput,
            "refusing to deploy without confirmation: nobody can be asked here (no terminal, \
             CI or --json), so pass --yes, or --dry-run to only see the plan",
        )
        .into());
    }
    let local = if Path::new(&args.firmware).is_file() {
        Some(LocalImage::read(Path::new(&args.firmware))?)
    } else if looks_like_sha(&args.firmware) {
        None
    } else {
        return Err(CodedError::new(
            Exit::BadInput,
            format!(
                "there is no file named {}, and it is not a firmware SHA-256 either; give a .bin \
                 file or the SHA-256 of an image in the library",
                args.firmware
            ),
        )
        .into());
    };
    let (client, config) = client::connect(&args.server)?;
    let strategy = strategy(args, &config.deploy)?;
    client::runtime()?.block_on(deploy(&client, args, ui, local, targets, strategy))
}

async fn deploy(
    client: &Client,
    args: &DeployArgs,
    ui: Ui,
    local: Option<LocalImage>,
    targets: TargetSpec,
    strategy: Strategy,
) -> anyhow::Result<Exit> {
    let firmware = match &local {
        Some(image) => {
            if firmware_client::lookup(client, &image.sha256)
                .await?
                .is_none()
            {
                let (entry, _) = firmware_client::upload(client, image, None).await?;
                eprintln!(
                    "uploaded {} {} ({}) to the library",
                    entry.project,
                    entry.version,
                    render::short_sha(&entry.sha256)
                );
            }
            image.sha256.clone()
        }
        None => firmware_client::resolve_sha(client, &args.firmware).await?,
    };
    let request = CreateRollout {
        firmware,
        targets,
        strategy,
        dry_run: true,
    };
    let (_, plan): (_, Plan) = client.post("rollouts", &request).await?;

    if args.dry_run {
        if ui.json {
            output::print_json(&plan)?;
        } else {
            print!("{}", render::plan(&plan));
            eprintln!("dry run: nothing was deployed");
        }
        return Ok(Exit::Success);
    }
    if plan.deploy == 0 {
        if ui.json {
            output::print_json(&plan)?;
        } else {
            eprint!("{}", render::plan(&plan));
        }
        if plan.targets.is_empty() {
            eprintln!(
                "nothing to deploy: no device matches `{}`; see `aegis devices`",
                args.to
            );
        } else {
            eprintln!("nothing to deploy: every selected device is skipped (reasons above)");
        }
        return Ok(Exit::Success);
    }
    if ui.interactive && !args.yes {
        eprint!("{}", render::plan(&plan));
        let version = plan
            .targets
            .first()
            .map(|t| format!("{} ", t.to_version))
            .unwrap_or_default();
        let question = format!(
            "Deploy {version}({}) to {} device{}?",
            render::short_sha(&plan.firmware),
            plan.deploy,
            if plan.deploy == 1 { "" } else { "s" }
        );
        if !output::confirm(&question)? {
            return Err(CodedError::new(Exit::Failure, "cancelled: nothing was deployed").into());
        }
    }

    // Subscribe before creating, so no change of the new rollout is missed.
    let events = if args.wait {
        Some(client.events().await?)
    } else {
        None
    };
    let request = CreateRollout {
        dry_run: false,
        ..request
    };
    let (_, rollout): (_, Rollout) = client.post("rollouts", &request).await?;
    let id = rollout.summary.id.clone();
    let Some(events) = events else {
        if ui.json {
            output::print_json(&rollout)?;
        } else {
            println!(
                "started rollout {id}: {} device{}; follow it with `aegis rollouts {id} --watch`",
                plan.deploy,
                if plan.deploy == 1 { "" } else { "s" }
            );
        }
        return Ok(Exit::Success);
    };
    eprintln!("started rollout {id}");
    let (rollout, ending) = follow::follow(client, &id, events, ui).await?;
    report(&rollout, ending, ui)
}

/// Prints the end of a followed rollout (table or JSON summary) and returns its exit code.
pub fn report(rollout: &Rollout, ending: follow::Ending, ui: Ui) -> anyhow::Result<Exit> {
    let exit = follow::exit_for(rollout, ending);
    if ui.json {
        output::print_json(&Summary {
            rollout,
            result: follow::result_name(exit),
            exit_code: exit as u8,
        })?;
    } else if ending != follow::Ending::Detached {
        print!("{}", render::summary(rollout));
    }
    let id = &rollout.summary.id;
    match exit {
        Exit::Success => eprintln!("rollout {id} succeeded"),
        Exit::Paused => eprintln!(
            "rollout {id} is paused: {}; look with `aegis rollouts {id}`, then `aegis rollouts \
             resume {id}` or `aegis rollouts abort {id}`",
            rollout
                .summary
                .reason
                .as_deref()
                .unwrap_or("the failure threshold was exceeded")
        ),
        Exit::Interrupted => {}
        _ => eprintln!(
            "rollout {id} ended with failures; retry them with `aegis rollouts retry {id}`"
        ),
    }
    Ok(exit)
}

/// `all`, `outdated`, `project:P`, `chip:C`, `version:V`, or comma-separated device ids.
pub fn parse_targets(s: &str) -> anyhow::Result<TargetSpec> {
    let s = s.trim();
    if let Ok(sel) = s.parse::<Selector>() {
        return Ok(TargetSpec::Selector(sel));
    }
    let ids: Vec<String> = s
        .split(',')
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    let is_id = |p: &String| p.len() == 12 && p.bytes().all(|b| b.is_ascii_hexdigit());
    if !s.contains(':') && !ids.is_empty() && ids.iter().all(is_id) {
        return Ok(TargetSpec::Ids(ids));
    }
    Err(CodedError::new(
        Exit::BadInput,
        format!(
            "`{s}` is not a target selector: use all, outdated, project:NAME, chip:NAME, \
             version:V, or comma-separated device ids (12 hex digits each, see `aegis devices`)"
        ),
    )
    .into())
}

/// The strategy: flags, else the config file, else the server's defaults.
pub fn strategy(args: &DeployArgs, file: &DeployDefaults) -> anyhow::Result<Strategy> {
    let d = Strategy::default();
    let timeout_s = match args.timeout.as_deref().or(file.timeout.as_deref()) {
        None => d.timeout_s,
        Some(t) => {
            let dur = humantime::parse_duration(t).map_err(|_| {
                CodedError::new(
                    Exit::BadInput,
                    format!("`{t}` is not a duration: use e.g. 90s, 5m or 1h"),
                )
            })?;
            if dur.as_secs() == 0 {
                return Err(CodedError::new(
                    Exit::BadInput,
                    format!("a timeout of {t} leaves no time to update; use at least 1s"),
                )
                .into());
            }
            dur.as_secs()
        }
    };
    let max_failure_pct = args
        .max_failures
        .or(file.max_failures)
        .unwrap_or(d.max_failure_pct);
    if max_failure_pct > 100 {
        return Err(CodedError::new(
            Exit::BadInput,
            format!(
                "max_failures = {max_failure_pct} in the config file is not a percentage (0-100)"
            ),
        )
        .into());
    }
    Ok(Strategy {
        max_parallel: args.parallel.or(file.parallel).unwrap_or(d.max_parallel),
        canary: args.canary.or(file.canary).unwrap_or(d.canary),
        max_failure_pct,
        retries: args.retries.or(file.retries).unwrap_or(d.retries),
        timeout_s,
        allow_downgrade: args.allow_downgrade || file.allow_downgrade.unwrap_or(false),
    })
}

fn looks_like_sha(s: &str) -> bool {
    (6..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_id_lists() {
        assert_eq!(
            parse_targets("outdated").unwrap(),
            TargetSpec::Selector(Selector::Outdated)
        );
        assert_eq!(
            parse_targets("project:demo").unwrap(),
            TargetSpec::Selector(Selector::Project("demo".into()))
        );
        assert_eq!(
            parse_targets("A0B1C2D3E4F5, a0b1c2d3e4f6").unwrap(),
            TargetSpec::Ids(vec!["a0b1c2d3e4f5".into(), "a0b1c2d3e4f6".into()])
        );
        for bad in ["", "some", "colour:red", "a0b1c2", "project:"] {
            assert!(parse_targets(bad).is_err(), "{bad}");
        }
    }
}
