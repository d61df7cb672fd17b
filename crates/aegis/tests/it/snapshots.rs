//! Snapshots of the interface people and scripts see: `--help` of every client command, and
//! the table formats rendered from fixed data through the very functions the commands use
//! (`src/render.rs`, compiled into this test binary). A change shows up as a snapshot diff to
//! review (`cargo insta review`, or INSTA_UPDATE=always to accept).

#[path = "../../src/render.rs"]
#[allow(dead_code)]
mod render;

use aegis_server::audit::AuditRecord;
use aegis_server::devices::Device;
use aegis_server::firmware::FirmwareEntry;
use aegis_server::rollout::{Plan, Rollout, RolloutSummary};
use aegis_server::time::Timestamp;
use serde_json::json;

use crate::harness::aegis_cmd;

fn help(args: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let out = aegis_cmd(tmp.path())
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "aegis {args:?} --help");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_texts() {
    for args in [
        &["devices"][..],
        &["firmware", "add"],
        &["firmware", "list"],
        &["firmware", "rm"],
        &["deploy"],
        &["rollouts"],
        &["rollouts", "pause"],
        &["rollouts", "resume"],
        &["rollouts", "abort"],
        &["rollouts", "retry"],
        &["audit"],
        &["audit", "verify"],
        &["completions"],
    ] {
        let text = help(args);
        assert!(
            text.contains("Example"),
            "`aegis {} --help` has no example",
            args.join(" ")
        );
        insta::assert_snapshot!(format!("help_{}", args.join("_")), text);
    }
}

/// 2024-05-01T12:00:00Z.
const NOW: Timestamp = Timestamp(1_714_564_800_000);

fn at(secs_before: i64) -> String {
    Timestamp(NOW.0 - secs_before * 1000).to_string()
}

fn devices() -> Vec<Device> {
    serde_json::from_value(json!([
        { "id": "240ac4000002", "hostname": "greenhouse-2", "ip": "192.168.1.32", "port": 80,
          "version": "1.4.0", "project": "greenhouse", "chip": "esp32s3", "sha": "9f86d081884c7d65",
          "slot": "ota_1", "state": "idle", "proto": 1, "key": null, "online": true,
          "first_seen": at(86_400 * 3), "last_seen": at(4), "duplicate": null },
        { "id": "240ac4000001", "hostname": "greenhouse-1", "ip": "192.168.1.31", "port": 80,
          "version": "1.3.2", "project": "greenhouse", "chip": "esp32s3", "sha": null,
          "slot": "ota_0", "state": "updating", "proto": 1, "key": null, "online": true,
          "first_seen": at(86_400 * 3), "last_seen": at(75), "duplicate": null },
        { "id": "a0b1c2d3e4f5", "hostname": "door-bell", "ip": "192.168.1.40", "port": 8080,
          "version": "", "project": null, "chip": null, "sha": null,
          "slot": null, "state": null, "proto": 1, "key": null, "online": false,
          "first_seen": at(86_400 * 30), "last_seen": at(86_400 * 2), "duplicate": null }
    ]))
    .unwrap()
}

fn firmware() -> Vec<FirmwareEntry> {
    serde_json::from_value(json!([
        { "sha256": "3fa9c1d2e4b5a6978877665544332211ffeeddccbbaa99887766554433221100",
          "size": 912_384, "chip": "esp32s3", "project": "greenhouse", "version": "1.4.0",
          "idf_version": "v5.2.1", "secure_version": 0, "filename": "firmware.bin",
          "notes": "fixes the watchdog", "uploaded_at": at(3600 * 5) },
        { "sha256": "00aa11bb22cc33dd44ee55ff66778899aabbccddeeff00112233445566778899",
          "size": 2048, "chip": "esp32", "project": "demo", "version": "0.1.0",
          "idf_version": "v5.1", "secure_version": 1, "filename": null,
          "notes": null, "uploaded_at": at(86_400 * 9) }
    ]))
    .unwrap()
}

fn strategy() -> serde_json::Value {
    json!({ "max_parallel": 10, "canary": 1, "max_failure_pct": 20, "retries": 1,
            "timeout_s": 300, "allow_downgrade": false })
}

fn rollout() -> Rollout {
    serde_json::from_value(json!({
        "id": "r-1a2b3c4d", "state": "paused", "firmware":
            "3fa9c1d2e4b5a6978877665544332211ffeeddccbbaa99887766554433221100",
        "strategy": strategy(),
        "reason": "a canary device ended rolled_back: the rest of the fleet was not touched",
        "created_at": at(120), "started_at": at(120), "finished_at": null,
        "counts": { "rolled_back": 1, "pending": 1, "skipped": 1, "in_progress": 1 },
        "targets": [
            { "device": "240ac4000001", "state": "rolled_back", "phase": "done", "bytes": 912_384,
              "total": 912_384, "error": "the device booted its old image again (the new one crashed)",
              "from_version": "1.3.2", "to_version": "1.4.0", "attempts": 1,
              "started_at": at(110), "finished_at": at(90) },
            { "device": "240ac4000003", "state": "in_progress", "phase": "downloading",
              "bytes": 456_192, "total": 912_384, "error": null, "from_version": "1.3.2",
              "to_version": "1.4.0", "attempts": 1, "started_at": at(20), "finished_at": null },
            { "device": "240ac4000004", "state": "pending", "phase": "queued", "bytes": 0,
              "total": 912_384, "error": null, "from_version": "1.3.2", "to_version": "1.4.0",
              "attempts": 0, "started_at": null, "finished_at": null },
            { "device": "240ac4000002", "state": "skipped", "phase": "queued", "bytes": 0,
              "total": 912_384, "error": "the device already runs this image",
              "from_version": "1.4.0", "to_version": "1.4.0", "attempts": 0,
              "started_at": null, "finished_at": null }
        ]
    }))
    .unwrap()
}

fn summaries() -> Vec<RolloutSummary> {
    let mut done = rollout().summary;
    done.id = "r-00c0ffee".into();
    done.state = aegis_server::rollout::RolloutState::Completed;
    done.reason = None;
    done.created_at = Timestamp(NOW.0 - 86_400_000);
    done.counts = [("succeeded".to_string(), 12), ("timed_out".to_string(), 1)]
        .into_iter()
        .collect();
    vec![done, rollout().summary]
}

fn plan() -> Plan {
    serde_json::from_value(json!({
        "firmware": "3fa9c1d2e4b5a6978877665544332211ffeeddccbbaa99887766554433221100",
        "strategy": strategy(),
        "targets": [
            { "device": "240ac4000001", "hostname": "greenhouse-1", "from_version": "1.3.2",
              "to_version": "1.4.0", "decision": "deploy", "reason": null },
            { "device": "240ac4000002", "hostname": "greenhouse-2", "from_version": "1.4.0",
              "to_version": "1.4.0", "decision": "skip", "reason": "the device already runs this image" }
        ],
        "deploy": 1, "skip": 1, "estimated_s": 95
    }))
    .unwrap()
}

fn audit() -> Vec<AuditRecord> {
    serde_json::from_value(json!([
        { "seq": 1, "at": at(600), "kind": "server_started", "rollout": null, "device": null,
          "firmware": null, "from_version": null, "to_version": null, "outcome": null,
          "bytes": null, "error": null, "started_at": null, "ended_at": null,
          "detail": {}, "hash": "aa" },
        { "seq": 2, "at": at(90), "kind": "attempt", "rollout": "r-1a2b3c4d",
          "device": "240ac4000001", "firmware": "3fa9c1d2", "from_version": "1.3.2",
          "to_version": "1.4.0", "outcome": "rolled_back", "bytes": 912_384,
          "error": "the new image crashed", "started_at": at(110), "ended_at": at(90),
          "detail": { "attempt": 1 }, "hash": "bb" }
    ]))
    .unwrap()
}

#[test]
fn table_formats() {
    insta::assert_snapshot!("table_devices", render::devices(&devices(), NOW));
    insta::assert_snapshot!("table_firmware", render::firmware(&firmware(), NOW));
    insta::assert_snapshot!("table_rollouts", render::rollouts(&summaries(), NOW));
    insta::assert_snapshot!("table_rollout", render::rollout(&rollout(), NOW));
    insta::assert_snapshot!("table_plan", render::plan(&plan()));
    insta::assert_snapshot!("table_summary", render::summary(&rollout()));
    insta::assert_snapshot!("table_audit", render::audit(&audit()));
}

#[test]
fn tables_have_aligned_columns_and_no_trailing_blanks() {
    let text = render::devices(&devices(), NOW);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(
        lines[1].starts_with("a0b1c2d3e4f5   door-bell")
            && lines[2].starts_with("240ac4000001   greenhouse-1"),
        "sorted by hostname: {text}"
    );
    let col = lines[0].find("HOSTNAME").unwrap();
    for l in &lines[1..] {
        assert_eq!(l.chars().nth(col - 1), Some(' '));
        assert_ne!(l.chars().nth(col), Some(' '), "{l}");
        assert_eq!(l.trim_end(), *l);
    }
    assert_eq!(render::ago(NOW, Some(Timestamp(NOW.0 - 59_000))), "59s");
    assert_eq!(render::ago(NOW, Some(Timestamp(NOW.0 - 7_200_000))), "2h");
    assert_eq!(render::bytes(1536), "1.5 KiB");
    assert_eq!(render::duration(3725), "1h 2m");
}
