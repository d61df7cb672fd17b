//! Interoperability with esptool: images made by the builder, for every chip, are accepted
//! by `esptool image-info` with a valid checksum and digest and the descriptor fields we
//! wrote; corrupted ones are flagged by esptool the same way we flag them.
//!
//! esptool is found via $AEGIS_ESPTOOL, else `.venv/bin/esptool` in the workspace, else
//! `esptool` on PATH. Missing esptool fails the test (it is never skipped).

use std::path::{Path, PathBuf};
use std::process::Command;

use aegis_image::{Chip, Corruption, ImageBuilder};

fn esptool() -> PathBuf {
    if let Some(p) = std::env::var_os("AEGIS_ESPTOOL") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/esptool");
    if venv.is_file() {
        return venv;
    }
    let on_path = PathBuf::from("esptool");
    if Command::new(&on_path)
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return on_path;
    }
    panic!(
        "esptool not found: these tests check our images against it. Install it with \
         `python3 -m venv .venv && .venv/bin/pip install esptool` in the workspace root (or \
         `pip install esptool`), run scripts/test, or set AEGIS_ESPTOOL=/path/to/esptool"
    );
}

fn image_info(esptool: &Path, image: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fw.bin");
    std::fs::write(&path, image).unwrap();
    let out = Command::new(esptool)
        .arg("image-info")
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "esptool image-info failed:\n{text}");
    text
}

fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{text}"))
        .trim_end()
}

#[test]
fn esptool_accepts_builder_images_for_every_chip() {
    let esptool = esptool();
    let handles: Vec<_> = Chip::ALL
        .iter()
        .map(|&chip| {
            let esptool = esptool.clone();
            std::thread::spawn(move || {
                let version = format!("2.0.0-{}", chip.name());
                let img = ImageBuilder::new(chip)
                    .version(&version)
                    .project("interop")
                    .secure_version(3)
                    .size(70_000)
                    .build()
                    .unwrap();
                let text = image_info(&esptool, &img);
                let ctx = format!("{chip}:\n{text}");
                assert_eq!(
                    line(&text, "Detected image type: "),
                    chip.display_name(),
                    "{ctx}"
                );
                assert_eq!(
                    line(&text, "Image size: "),
                    format!("{} bytes", img.len()),
                    "{ctx}"
                );
                assert!(line(&text, "Checksum: ").ends_with("(valid)"), "{ctx}");
                assert!(
                    line(&text, "Validation hash: ").ends_with("(valid)"),
                    "{ctx}"
                );
                assert_eq!(line(&text, "App version: "), version, "{ctx}");
                assert_eq!(line(&text, "Project name: "), "interop", "{ctx}");
                assert_eq!(line(&text, "ESP-IDF: "), "v5.2.2", "{ctx}");
                assert_eq!(line(&text, "Secure version: "), "3", "{ctx}");
                assert!(!text.contains("WARNING"), "{ctx}");
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn esptool_sees_the_same_corruption() {
    let esptool = esptool();
    let img = ImageBuilder::new(Chip::Esp32)
        .corrupt(Corruption::BadChecksum)
        .build()
        .unwrap();
    let text = image_info(&esptool, &img);
    assert!(line(&text, "Checksum: ").contains("invalid"), "{text}");
    assert!(
        line(&text, "Validation hash: ").ends_with("(valid)"),
        "{text}"
    );

    let img = ImageBuilder::new(Chip::Esp32)
        .corrupt(Corruption::BadDigest)
        .build()
        .unwrap();
    let text = image_info(&esptool, &img);
    assert!(line(&text, "Checksum: ").ends_with("(valid)"), "{text}");
    assert!(
        line(&text, "Validation hash: ").ends_with("(invalid)"),
        "{text}"
    );
}
