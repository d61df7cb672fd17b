//! Every file of the real-firmware corpus is classified as manifest.json says, and for every
//! image esptool accepts, our header, segments, checksum and digest verdicts equal what
//! `esptool image-info` (v5.6.0) printed, saved in esptool-image-info/.

use aegis_image::{Chip, Kind, inspect};
use serde_json::Value;

use crate::support::{corpus_dir, corpus_files};

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(corpus_dir().join("manifest.json")).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// What esptool printed for a file, as far as we compare it.
#[derive(Debug, Default)]
struct EsptoolInfo {
    rejected: bool,
    chip: Option<String>,
    chip_id: Option<u16>,
    entry: Option<u32>,
    checksum_valid: Option<bool>,
    digest_valid: Option<bool>,
    /// (length, load address, file offset)
    segments: Vec<(u32, u32, u64)>,
    project: Option<String>,
    version: Option<String>,
    idf: Option<String>,
    secure_version: Option<u32>,
    elf_sha256: Option<String>,
}

fn hex_u32(s: &str) -> u32 {
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).unwrap()
}

fn esptool_info(file: &str) -> EsptoolInfo {
    let path = corpus_dir()
        .join("esptool-image-info")
        .join(format!("{file}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut info = EsptoolInfo::default();
    let mut in_segments = false;
    for line in text.lines() {
        let value = |prefix: &str| line.strip_prefix(prefix).map(str::to_owned);
        if line.contains("fatal error") {
            info.rejected = true;
        }
        if let Some(v) = value("Detected image type: ") {
            info.chip = Some(v);
        }
        if let Some(v) = value("Chip ID: ") {
            info.chip_id = v.split_whitespace().next().and_then(|n| n.parse().ok());
        }
        if let Some(v) = value("Entry point: ") {
            info.entry = Some(hex_u32(&v));
        }
        if let Some(v) = value("Checksum: ") {
            info.checksum_valid = Some(v.ends_with("(valid)"));
        }
        if let Some(v) = value("Validation hash: ") {
            info.digest_valid = Some(v.ends_with("(valid)"));
        }
        if let Some(v) = value("Project name: ") {
            info.project = Some(v);
        }
        if let Some(v) = value("App version: ") {
            info.version = Some(v);
        }
        if let Some(v) = value("ESP-IDF: ") {
            info.idf = Some(v);
        }
        if let Some(v) = value("Secure version: ") {
            info.secure_version = v.parse().ok();
        }
        if let Some(v) = value("ELF file SHA256: ") {
            info.elf_sha256 = Some(v);
        }
        if line.starts_with("-------") {
            in_segments = true;
            continue;
        }
        if in_segments {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 4 {
                in_segments = false;
                continue;
            }
            info.segments.push((
                hex_u32(cols[1]),
                hex_u32(cols[2]),
                u64::from(hex_u32(cols[3])),
            ));
        }
    }
    // Images without a project line print an empty value: "Project name: " trimmed by the
    // file; normalise those to empty strings.
    for line in text.lines() {
        if line == "Project name:" {
            info.project = Some(String::new());
        }
        if line == "App version:" {
            info.version = Some(String::new());
        }
    }
    info
}

fn expected_kind(role: &str) -> (Kind, bool) {
    match role {
        "app" | "app-no-desc" | "edge-app" => (Kind::App, true),
        "negative:bootloader" => (Kind::Bootloader, false),
        "negative:partition-table" => (Kind::PartitionTable, false),
        "negative:merged-image" => (Kind::Merged, false),
        "negative:esp8266" => (Kind::Esp8266, false),
        "negative:direct-boot" => (Kind::Unknown, false),
        other => panic!("manifest role `{other}` is new: decide what inspect() should say"),
    }
}

#[test]
fn every_corpus_file_is_in_the_manifest_and_classified_as_it_says() {
    let manifest = manifest();
    let files = corpus_files();
    assert_eq!(
        files.len(),
        manifest.len(),
        "corpus files and manifest entries differ"
    );
    let mut failures = Vec::new();
    for (name, bytes) in &files {
        let entry = manifest
            .iter()
            .find(|e| e["file"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} is not in manifest.json"));
        let role = entry["role"].as_str().unwrap();
        let (kind, valid) = expected_kind(role);
        let ins = inspect(bytes);
        let summary = format!(
            "{name} ({role}): got kind {:?} valid {} reason {:?}",
            ins.kind, ins.valid, ins.reason
        );
        if ins.kind != kind || ins.valid != valid {
            failures.push(summary);
            continue;
        }
        assert_eq!(ins.valid, ins.reason.is_none(), "{summary}");
        assert_eq!(ins.size, entry["size"].as_u64().unwrap(), "{name}");
        assert_eq!(
            hex::encode(ins.sha256),
            entry["sha256"].as_str().unwrap(),
            "{name}"
        );
        if !valid {
            let reason = ins.reason.as_deref().unwrap();
            assert!(
                reason.len() > 40 && !reason.ends_with('.'),
                "{name}: terse reason {reason:?}"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "misclassified:\n{}",
        failures.join("\n")
    );
}

#[test]
fn app_images_agree_with_manifest_and_esptool() {
    for (name, bytes) in corpus_files() {
        let manifest = manifest();
        let entry = manifest
            .iter()
            .find(|e| e["file"] == name.as_str())
            .unwrap();
        let role = entry["role"].as_str().unwrap();
        if !role.starts_with("app") && role != "edge-app" {
            continue;
        }
        let ins = inspect(&bytes);
        let es = esptool_info(&name);
        let chip: Chip = es.chip.as_deref().unwrap().parse().unwrap();
        assert_eq!(ins.chip, Some(chip), "{name}");
        assert_eq!(
            ins.chip_id,
            Some(entry["chip_id"].as_u64().unwrap() as u16),
            "{name}"
        );
        assert_eq!(ins.chip_id, es.chip_id, "{name}");
        assert_eq!(ins.checksum_valid, es.checksum_valid, "{name}");
        assert_eq!(ins.digest_valid, es.digest_valid, "{name}");
        let h = ins.header.as_ref().unwrap();
        assert_eq!(Some(h.entry_point), es.entry, "{name}");
        let ours: Vec<(u32, u32, u64)> = ins
            .segments
            .iter()
            .map(|s| (s.length, s.load_address, s.file_offset))
            .collect();
        assert_eq!(ours, es.segments, "{name}: segments differ from esptool's");

        let descs = entry["app_desc"].as_array().unwrap();
        match (role, &ins.app, descs.first()) {
            ("app-no-desc", None, None) => {
                assert!(
                    ins.notes.iter().any(|n| n.contains("no app descriptor")),
                    "{name}"
                );
            }
            (_, Some(app), Some(m)) => {
                assert_eq!(app.version, m["version"].as_str().unwrap(), "{name}");
                assert_eq!(app.project, m["project_name"].as_str().unwrap(), "{name}");
                assert_eq!(app.idf_version, m["idf_ver"].as_str().unwrap(), "{name}");
                assert_eq!(app.date, m["date"].as_str().unwrap(), "{name}");
                assert_eq!(app.time, m["time"].as_str().unwrap(), "{name}");
                assert_eq!(
                    u64::from(app.secure_version),
                    m["secure_version"].as_u64().unwrap(),
                    "{name}"
                );
                let offset =
                    u64::from_str_radix(m["offset"].as_str().unwrap().trim_start_matches("0x"), 16)
                        .unwrap();
                assert_eq!(app.offset, offset, "{name}");
                if role == "app" {
                    // esptool prints the descriptor only when it sits at 0x20.
                    assert_eq!(es.version.as_deref(), Some(app.version.as_str()), "{name}");
                    assert_eq!(es.project.as_deref(), Some(app.project.as_str()), "{name}");
                    assert_eq!(es.idf.as_deref(), Some(app.idf_version.as_str()), "{name}");
                    assert_eq!(es.secure_version, Some(app.secure_version), "{name}");
                    assert_eq!(es.elf_sha256, Some(hex::encode(app.elf_sha256)), "{name}");
                }
            }
            other => panic!("{name}: descriptor mismatch {other:?}"),
        }
        if role == "edge-app" {
            assert!(
                ins.notes.iter().any(|n| n.contains("RAM-only")),
                "{name}: {:?}",
                ins.notes
            );
        }
        assert!(
            ins.sim_behavior.is_none(),
            "{name}: real images carry no simulator marker"
        );
    }
}

#[test]
fn negative_images_agree_with_esptool_where_it_parses_them() {
    for (name, bytes) in corpus_files() {
        if !name.starts_with("NEG-") {
            continue;
        }
        let ins = inspect(&bytes);
        let es = esptool_info(&name);
        match ins.kind {
            Kind::Bootloader | Kind::Esp8266 => {
                assert!(!es.rejected, "{name}");
                assert_eq!(ins.checksum_valid, es.checksum_valid, "{name}");
                assert_eq!(ins.digest_valid, es.digest_valid, "{name}");
                let ours: Vec<(u32, u32, u64)> = ins
                    .segments
                    .iter()
                    .map(|s| (s.length, s.load_address, s.file_offset))
                    .collect();
                assert_eq!(ours, es.segments, "{name}");
            }
            Kind::PartitionTable | Kind::Unknown => {
                assert!(
                    es.rejected,
                    "{name}: esptool accepted what we call {:?}",
                    ins.kind
                )
            }
            Kind::Merged => {
                // esptool reads only the bootloader at the start of one of these; we say
                // what the whole file is and point at the app inside.
                assert!(
                    ins.notes
                        .iter()
                        .any(|n| n.contains("contains an app image")),
                    "{name}: {:?}",
                    ins.notes
                );
            }
            Kind::App => panic!("{name}: a negative sample passed as an app"),
        }
    }
}

#[test]
fn reasons_name_the_thing_and_what_to_do() {
    for (name, bytes) in corpus_files() {
        let ins = inspect(&bytes);
        let Some(reason) = ins.reason else { continue };
        let expected = match ins.kind {
            Kind::Bootloader => "bootloader",
            Kind::PartitionTable => "partition table",
            Kind::Merged => "merged flash image",
            Kind::Esp8266 => "ESP8266",
            Kind::Unknown => "direct-boot",
            Kind::App => unreachable!(),
        };
        assert!(reason.contains(expected), "{name}: {reason}");
    }
}
