//! `aegis firmware inspect`: exit codes, the JSON interface, the human report, and bad input
//! (missing file, directory, empty file) giving one clear sentence and exit 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn aegis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aegis"))
        .args(args)
        .output()
        .expect("run the aegis binary")
}

fn corpus(file: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/firmware/real");
    assert!(
        dir.join("manifest.json").is_file(),
        "the real-firmware corpus is missing at {}",
        dir.display()
    );
    dir.join(file)
}

fn inspect_json(path: &Path) -> (i32, Value, String) {
    let out = aegis(&["firmware", "inspect", path.to_str().unwrap(), "--json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (
        out.status.code().unwrap(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn valid_app_exits_0_with_the_documented_json() {
    let (code, j, _) = inspect_json(&corpus("esp-serial-flasher-esp32s3-espidf-5.2.2.bin"));
    assert_eq!(code, 0);
    assert_eq!(j["valid"], true);
    assert_eq!(j["kind"], "app");
    assert!(j["reason"].is_null());
    assert_eq!(j["chip"], "esp32s3");
    assert_eq!(j["chip_id"], 9);
    assert_eq!(j["checksum_valid"], true);
    assert_eq!(j["digest_valid"], true);
    assert_eq!(j["size"], 135008);
    assert_eq!(
        j["sha256"],
        "3dfbf390a908ac4a5e0cc83d55f0f5e6bbec28fc40f3f6823944e24f5f4373fc"
    );
    let app = &j["app"];
    assert_eq!(app["version"], "v1.4.1-2-g0296947-dirty");
    assert_eq!(app["project"], "hello_world");
    assert_eq!(app["idf_version"], "v5.2.2-dirty");
    assert_eq!(app["secure_version"], 0);
    assert_eq!(app["date"], "Jul 25 2024");
    assert_eq!(app["time"], "16:25:51");
    assert_eq!(app["elf_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(j["segments"].as_array().unwrap().len(), 5);
    assert!(j["notes"].as_array().unwrap().is_empty());
}

#[test]
fn app_without_descriptor_is_valid_with_a_note() {
    let (code, j, _) = inspect_json(&corpus("espflash-esp32-rust-esphal-blinky.bin"));
    assert_eq!(code, 0);
    assert!(j["app"].is_null());
    assert!(
        j["notes"][0]
            .as_str()
            .unwrap()
            .contains("no app descriptor")
    );
}

#[test]
fn non_apps_exit_1_with_kind_and_reason() {
    for (file, kind) in [
        (
            "NEG-esp-serial-flasher-esp32-bootloader-5.2.2.bin",
            "bootloader",
        ),
        (
            "NEG-esp-serial-flasher-partition-table.bin",
            "partition_table",
        ),
        ("NEG-micropython-esp32-merged-1.23.0.bin", "merged"),
        ("NEG-esphome-esp32-merged-2022.3.0.bin", "merged"),
        ("NEG-esp-serial-flasher-esp8266-rtos-sdk-3.4.bin", "esp8266"),
        ("NEG-espflash-esp32c3-rust-directboot.bin", "unknown"),
    ] {
        let (code, j, err) = inspect_json(&corpus(file));
        assert_eq!(code, 1, "{file}");
        assert_eq!(j["valid"], false, "{file}");
        assert_eq!(j["kind"], kind, "{file}");
        assert!(j["reason"].as_str().unwrap().len() > 40, "{file}");
        assert!(
            err.is_empty(),
            "{file}: JSON mode keeps stderr quiet: {err}"
        );
    }
}

#[test]
fn text_mode_prints_a_report_and_the_reason_on_stderr() {
    let path = corpus("NEG-micropython-esp32-merged-1.23.0.bin");
    let out = aegis(&["firmware", "inspect", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Kind:      merged"), "{text}");
    assert!(
        text.contains("Verdict:   NOT a valid OTA app image"),
        "{text}"
    );
    let err = stderr(&out);
    assert!(
        err.contains("merged flash image") && err.contains("build/<project>.bin"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let path = corpus("tasmota-esp32c6-arduino-20241104.bin");
    let out = aegis(&["firmware", "inspect", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Chip:      esp32c6",
        "Checksum:  valid",
        "Digest:    valid",
        "ESP-IDF:        5.3.1.241024",
        "version:        (empty)",
        "Verdict:   valid OTA app image for esp32c6",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(stderr(&out).is_empty());
}

#[test]
fn builder_output_round_trips_through_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let fw = dir.path().join("fw.bin");
    let out = aegis(&[
        "sim",
        "make-image",
        "--chip",
        "esp32c3",
        "--version",
        "4.5.6",
        "--project",
        "relay",
        "--secure-version",
        "2",
        "--behavior",
        "never-confirms",
        "--size",
        "100KiB",
        "-o",
        fw.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, j, _) = inspect_json(&fw);
    assert_eq!(code, 0);
    assert_eq!(j["chip"], "esp32c3");
    assert_eq!(j["size"], 102400);
    assert_eq!(j["app"]["version"], "4.5.6");
    assert_eq!(j["app"]["project"], "relay");
    assert_eq!(j["app"]["secure_version"], 2);
    assert_eq!(j["sim_behavior"], "never-confirms");
}

#[test]
fn unreadable_input_exits_2_with_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.bin");
    let out = aegis(&["firmware", "inspect", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: cannot read") && err.contains("No such file"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let out = aegis(&[
        "firmware",
        "inspect",
        dir.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());

    let out = aegis(&["firmware", "inspect"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "missing argument is a usage error"
    );
}

#[test]
fn empty_and_garbage_files_are_not_images() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    let (code, j, _) = inspect_json(&empty);
    assert_eq!(code, 1);
    assert_eq!(j["kind"], "unknown");
    assert_eq!(j["reason"], "the file is empty");
    assert!(j["checksum_valid"].is_null() && j["digest_valid"].is_null() && j["chip"].is_null());

    let elf = dir.path().join("app.elf");
    std::fs::write(&elf, b"\x7fELF\x01\x01\x01rest of an elf").unwrap();
    let out = aegis(&["firmware", "inspect", elf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("ELF file"), "{}", stderr(&out));
}
