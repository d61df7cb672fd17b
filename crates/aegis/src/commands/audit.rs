//! `aegis audit [--device ID] [--rollout ID] [--since DUR] [--outcome O] [--format
//! table|json|csv]` and `aegis audit verify`: the server's append-only, hash-chained log.
//! CSV is the server's own export, passed through unchanged.

use aegis_server::audit::AuditRecord;

use crate::cli::{AuditAction, AuditArgs, AuditFormat, AuditVerifyArgs};
use crate::client;
use crate::exit::{CodedError, Exit};
use crate::output::{self, Ui};
use crate::render;

pub fn run(args: &AuditArgs) -> anyhow::Result<Exit> {
    if let Some(AuditAction::Verify(v)) = &args.action {
        return verify(v);
    }
    let format = if args.json {
        AuditFormat::Json
    } else {
        args.format
    };
    let (client, _) = client::connect(&args.server)?;
    let query = [
        ("device", args.device.as_deref()),
        ("rollout", args.rollout.as_deref()),
        ("since", args.since.as_deref()),
        ("outcome", args.outcome.as_deref()),
    ];
    client::runtime()?.block_on(async {
        match format {
            AuditFormat::Csv => {
                let mut q = query.to_vec();
                q.push(("format", Some("csv")));
                print!("{}", client.get_text("audit", &q).await?);
            }
            AuditFormat::Json => {
                let records: Vec<AuditRecord> = client.get_query("audit", &query).await?;
                output::print_json(&records)?;
            }
            AuditFormat::Table => {
                let records: Vec<AuditRecord> = client.get_query("audit", &query).await?;
                if records.is_empty() {
                    eprintln!("no audit records match");
                } else {
                    print!("{}", render::audit(&records));
                }
            }
        }
        Ok(Exit::Success)
    })
}

fn verify(args: &AuditVerifyArgs) -> anyhow::Result<Exit> {
    let (client, _) = client::connect(&args.server)?;
    let ui = Ui::new(args.json);
    client::runtime()?.block_on(async {
        let report: serde_json::Value = client.get("audit/verify").await?;
        let intact = report
            .get("intact")
            .and_then(serde_json::Value::as_bool)
            .ok_or_else(|| {
                CodedError::new(
                    Exit::Failure,
                    "the server's verification report has no `intact` field; is it the same version as this client?",
                )
            })?;
        let records = report.get("records").and_then(serde_json::Value::as_u64);
        if ui.json {
            output::print_json(&report)?;
        }
        if intact {
            if !ui.json {
                println!(
                    "the audit log is intact: {} records, hash chain verified",
                    records.map_or_else(|| "all".to_string(), |n| n.to_string())
                );
            }
            Ok(Exit::Success)
        } else {
            let seq = report.pointer("/first_bad/seq").and_then(serde_json::Value::as_u64);
            let reason = report
                .pointer("/first_bad/reason")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("the hash chain does not match");
            eprintln!(
                "the audit log is NOT intact: record {}: {reason}",
                seq.map_or_else(|| "?".to_string(), |n| n.to_string())
            );
            Ok(Exit::Failure)
        }
    })
}
