//! Planning: which devices a rollout reaches, which of them are skipped and why (preflight),
//! and roughly how long it will take. Pure functions over the registry's records, so the dry
//! run and the real run decide identically.

use std::time::Duration;

use aegis_protocol::version::is_downgrade;

use super::types::{Decision, Plan, PlannedTarget, Selector, Strategy, TargetSpec};
use crate::devices::Device;
use crate::firmware::FirmwareEntry;
use crate::{Error, Result};

/// Assumed Wi-Fi OTA throughput for estimates (bytes/s); ESP32s typically pull 100-500 KiB/s.
const ESTIMATE_BYTES_PER_S: u64 = 200 * 1024;
/// Assumed per-device overhead for estimates: trigger, flash finish, reboot, self-test, confirm.
const ESTIMATE_OVERHEAD: Duration = Duration::from_secs(15);

/// What the planner needs to know about the server itself.
#[derive(Debug, Clone, Default)]
pub struct PlanContext {
    /// `key` TXT value (fingerprint prefix) of the server's signing key: a device announcing a
    /// different one will refuse our signature.
    pub server_key_id: Option<String>,
}

/// The devices `spec` names, in a stable order (hostname, then id). Explicit ids must all be
/// known; duplicates are removed.
pub fn resolve<'a>(
    spec: &TargetSpec,
    firmware: &FirmwareEntry,
    devices: &'a [Device],
) -> Result<Vec<&'a Device>> {
    let mut chosen: Vec<&Device> = match spec {
        TargetSpec::Ids(ids) => {
            if ids.is_empty() {
                return Err(Error::bad_request(
                    "no_targets",
                    "the target list is empty: name at least one device id, or use a selector",
                ));
            }
            let mut out = Vec::with_capacity(ids.len());
            let mut unknown = Vec::new();
            for id in ids {
                match devices.iter().find(|d| &d.id == id) {
                    Some(d) if !out.iter().any(|o: &&Device| o.id == d.id) => out.push(d),
                    Some(_) => {}
                    None => unknown.push(id.as_str()),
                }
            }
            if !unknown.is_empty() {
                return Err(Error::bad_request(
                    "unknown_device",
                    format!(
                        "no device with id {} is known: check `aegis devices` for the ids",
                        unknown.join(", ")
                    ),
                ));
            }
            out
        }
        TargetSpec::Selector(sel) => devices
            .iter()
            .filter(|d| matches_selector(sel, d, firmware))
            .collect(),
    };
    chosen.sort_by(|a, b| a.hostname.cmp(&b.hostname).then_with(|| a.id.cmp(&b.id)));
    Ok(chosen)
}

fn matches_selector(sel: &Selector, d: &Device, fw: &FirmwareEntry) -> bool {
    match sel {
        Selector::All => true,
        Selector::Outdated => {
            d.project.as_deref() == Some(fw.project.as_str()) && d.version != fw.version
        }
        Selector::Project(p) => d.project.as_deref() == Some(p.as_str()),
        Selector::Chip(c) => d.chip.as_deref() == Some(c.as_str()),
        Selector::Version(v) => &d.version == v,
    }
}

/// Why `device` must not get `firmware` under `strategy`, or `None` when it may.
pub fn preflight(
    device: &Device,
    firmware: &FirmwareEntry,
    strategy: &Strategy,
    ctx: &PlanContext,
) -> Option<String> {
    if !device.online {
        return Some("the device is offline".into());
    }
    if device.proto != aegis_protocol::PROTOCOL_VERSION {
        return Some(format!(
            "the device speaks protocol {}, this server speaks {}",
            device.proto,
            aegis_protocol::PROTOCOL_VERSION
        ));
    }
    if let Some(chip) = &device.chip
        && chip != &firmware.chip
    {
        return Some(format!(
            "the image is for {} but the device is an {chip}",
            firmware.chip
        ));
    }
    if let Some(sha) = &device.sha
        && !sha.is_empty()
        && firmware.sha256.starts_with(sha.as_str())
    {
        return Some("the device already runs this image".into());
    }
    if !strategy.allow_downgrade && is_downgrade(&device.version, &firmware.version) {
        return Some(format!(
            "{} is older than the running {}: allow downgrades to deploy it",
            firmware.version, device.version
        ));
    }
    if let (Some(trusted), Some(ours)) = (&device.key, &ctx.server_key_id)
        && trusted != ours
    {
        return Some(format!(
            "the device trusts a different server key ({trusted}; this server's is {ours})"
        ));
    }
    None
}

/// Rough wall time: waves of `max_parallel` devices (the canary wave first), each taking the
/// transfer at a typical Wi-Fi rate plus reboot and confirmation.
pub fn estimate(deploy: u32, size: u64, strategy: &Strategy) -> Duration {
    if deploy == 0 {
        return Duration::ZERO;
    }
    let per_device = Duration::from_secs(size / ESTIMATE_BYTES_PER_S) + ESTIMATE_OVERHEAD;
    let parallel = strategy.max_parallel.max(1);
    let canary = strategy.canary.min(deploy);
    let canary_waves = u32::from(canary > 0) * canary.div_ceil(parallel);
    let rest_waves = (deploy - canary).div_ceil(parallel);
    per_device * (canary_waves + rest_waves)
}

/// The whole plan: every named device with its decision.
pub fn plan(
    spec: &TargetSpec,
    firmware: &FirmwareEntry,
    strategy: &Strategy,
    devices: &[Device],
    ctx: &PlanContext,
) -> Result<Plan> {
    validate_strategy(strategy)?;
    let chosen = resolve(spec, firmware, devices)?;
    let targets: Vec<PlannedTarget> = chosen
        .into_iter()
        .map(|d| {
            let reason = preflight(d, firmware, strategy, ctx);
            PlannedTarget {
                device: d.id.clone(),
                hostname: d.hostname.clone(),
                from_version: d.version.clone(),
                to_version: firmware.version.clone(),
                decision: if reason.is_some() {
                    Decision::Skip
                } else {
                    Decision::Deploy
                },
                reason,
            }
        })
        .collect();
    let deploy = u32::try_from(
        targets
            .iter()
            .filter(|t| t.decision == Decision::Deploy)
            .count(),
    )
    .unwrap_or(u32::MAX);
    let skip = u32::try_from(targets.len()).unwrap_or(u32::MAX) - deploy;
    Ok(Plan {
        firmware: firmware.sha256.clone(),
        strategy: strategy.clone(),
        estimated_s: estimate(deploy, firmware.size, strategy).as_secs(),
        targets,
        deploy,
        skip,
    })
}

/// Refuses strategies that cannot work, with what to change.
pub fn validate_strategy(s: &Strategy) -> Result<()> {
    let bad = |msg: &str| Err(Error::bad_request("bad_strategy", msg.to_string()));
    if s.max_parallel == 0 {
        return bad("max_parallel must be at least 1");
    }
    if s.max_parallel > 1000 {
        return bad("max_parallel must be at most 1000");
    }
    if s.max_failure_pct > 100 {
        return bad("max_failure_pct is a percentage: use 0 to 100");
    }
    if s.retries > 10 {
        return bad("retries must be at most 10");
    }
    if s.timeout_s < 10 || s.timeout_s > 24 * 3600 {
        return bad("timeout_s must be between 10 seconds and 24 hours");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn fw(version: &str) -> FirmwareEntry {
        FirmwareEntry {
            sha256: "ab".repeat(32),
            size: 1024 * 1024,
            chip: "esp32".into(),
            project: "demo".into(),
            version: version.into(),
            idf_version: "v5.2".into(),
            secure_version: 0,
            filename: None,
            notes: None,
            uploaded_at: Timestamp(0),
        }
    }

    fn dev(id: &str, version: &str) -> Device {
        Device {
            id: id.into(),
            hostname: format!("host-{id}"),
            ip: "127.0.1.1".into(),
            port: 80,
            version: version.into(),
            project: Some("demo".into()),
            chip: Some("esp32".into()),
            sha: Some("cd".repeat(8)),
            slot: Some("ota_0".into()),
            state: Some("idle".into()),
            proto: 1,
            key: None,
            online: true,
            first_seen: Timestamp(0),
            last_seen: Timestamp(0),
            duplicate: None,
        }
    }

    #[test]
    fn outdated_means_same_project_other_version() {
        let mut other = dev("000000000003", "1.0.0");
        other.project = Some("other".into());
        let devices = vec![
            dev("000000000001", "1.0.0"),
            dev("000000000002", "2.0.0"),
            other,
        ];
        let got = resolve(
            &TargetSpec::Selector(Selector::Outdated),
            &fw("2.0.0"),
            &devices,
        )
        .unwrap();
        assert_eq!(
            got.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["000000000001"]
        );
    }

    #[test]
    fn unknown_ids_are_named() {
        let devices = vec![dev("000000000001", "1.0.0")];
        let err = resolve(
            &TargetSpec::Ids(vec!["000000000001".into(), "0000000000ff".into()]),
            &fw("2.0.0"),
            &devices,
        )
        .unwrap_err();
        assert_eq!(err.code, "unknown_device");
        assert!(err.message.contains("0000000000ff"), "{}", err.message);
    }

    #[test]
    fn preflight_reasons() {
        let f = fw("2.0.0");
        let s = Strategy::default();
        let ctx = PlanContext {
            server_key_id: Some("1111222233334444".into()),
        };
        assert_eq!(preflight(&dev("000000000001", "1.0.0"), &f, &s, &ctx), None);

        let mut d = dev("000000000001", "1.0.0");
        d.online = false;
        assert_eq!(
            preflight(&d, &f, &s, &ctx).unwrap(),
            "the device is offline"
        );

        let mut d = dev("000000000001", "1.0.0");
        d.chip = Some("esp32s3".into());
        assert!(
            preflight(&d, &f, &s, &ctx)
                .unwrap()
                .contains("is an esp32s3")
        );

        let mut d = dev("000000000001", "1.0.0");
        d.sha = Some("ab".repeat(8));
        assert!(
            preflight(&d, &f, &s, &ctx)
                .unwrap()
                .contains("already runs")
        );

        let d = dev("000000000001", "3.0.0");
        assert!(
            preflight(&d, &f, &s, &ctx)
                .unwrap()
                .contains("allow downgrades")
        );
        let permissive = Strategy {
            allow_downgrade: true,
            ..Strategy::default()
        };
        assert_eq!(preflight(&d, &f, &permissive, &ctx), None);

        let mut d = dev("000000000001", "1.0.0");
        d.proto = 2;
        assert!(preflight(&d, &f, &s, &ctx).unwrap().contains("protocol 2"));

        let mut d = dev("000000000001", "1.0.0");
        d.key = Some("9999888877776666".into());
        assert!(
            preflight(&d, &f, &s, &ctx)
                .unwrap()
                .contains("different server key")
        );
    }

    #[test]
    fn estimate_counts_waves() {
        let s = Strategy {
            max_parallel: 10,
            canary: 2,
            ..Strategy::default()
        };
        // 1 MiB at 200 KiB/s = 5 s + 15 s overhead = 20 s per wave; canary wave + 3 waves for 28.
        assert_eq!(estimate(30, 1024 * 1024, &s), Duration::from_secs(80));
        assert_eq!(estimate(0, 1024 * 1024, &s), Duration::ZERO);
    }

    #[test]
    fn plan_counts_and_rejects_bad_strategies() {
        let mut current = dev("000000000002", "2.0.0");
        current.sha = Some("ab".repeat(8));
        let devices = vec![dev("000000000001", "1.0.0"), current];
        let p = plan(
            &TargetSpec::Selector(Selector::All),
            &fw("2.0.0"),
            &Strategy::default(),
            &devices,
            &PlanContext::default(),
        )
        .unwrap();
        assert_eq!((p.deploy, p.skip), (1, 1));
        let bad = Strategy {
            max_parallel: 0,
            ..Strategy::default()
        };
        let err = plan(
            &TargetSpec::Selector(Selector::All),
            &fw("2.0.0"),
            &bad,
            &devices,
            &PlanContext::default(),
        )
        .unwrap_err();
        assert_eq!(err.code, "bad_strategy");
    }
}
