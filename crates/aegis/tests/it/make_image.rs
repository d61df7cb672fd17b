//! `aegis sim make-image`: writes what was asked (atomically, deterministically), breaks it
//! on request, and rejects bad input with exit 2 and one clear sentence.

use std::process::{Command, Output};

fn aegis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aegis"))
        .args(args)
        .output()
        .expect("run the aegis binary")
}

fn make(dir: &std::path::Path, name: &str, extra: &[&str]) -> Output {
    let out = dir.join(name);
    let mut args = vec!["sim", "make-image", "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    aegis(&args)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn writes_the_requested_image_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = make(
        dir.path(),
        "fw.bin",
        &[
            "--chip",
            "esp32s3",
            "--version",
            "2.0.0",
            "--project",
            "demo",
            "--size",
            "1MiB",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(dir.path().join("fw.bin")).unwrap();
    assert_eq!(bytes.len(), 1 << 20);
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains("1048576 bytes") && line.contains("esp32s3") && line.contains("sha256 "),
        "{line}"
    );
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    // Same inputs, same bytes.
    let again = make(
        dir.path(),
        "fw2.bin",
        &[
            "--chip",
            "esp32s3",
            "--version",
            "2.0.0",
            "--project",
            "demo",
            "--size",
            "1MiB",
        ],
    );
    assert!(again.status.success());
    assert_eq!(std::fs::read(dir.path().join("fw2.bin")).unwrap(), bytes);
}

#[test]
fn corrupted_images_are_refused_by_inspect() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, needle) in [
        ("bad-checksum", "checksum is wrong"),
        ("bad-digest", "digest does not match"),
        ("truncated", "truncated"),
        ("wrong-chip", "built for another chip"),
    ] {
        let name = format!("{flag}.bin");
        let out = make(
            dir.path(),
            &name,
            &["--chip", "esp32", "--size", "64KiB", "--corrupt", flag],
        );
        assert!(out.status.success(), "{flag}: {}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains(flag));
        let path = dir.path().join(&name);
        let out = aegis(&["firmware", "inspect", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{flag}");
        assert!(stderr(&out).contains(needle), "{flag}: {}", stderr(&out));
    }
}

#[test]
fn bad_input_exits_2_with_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let long = "v".repeat(32);
    for (args, needle) in [
        (
            vec!["--chip", "esp33"],
            "unknown chip `esp33`: known chips are esp32, esp32s2",
        ),
        (vec!["--size", "lots"], "invalid size `lots`"),
        (vec!["--size", "100"], "too small"),
        (vec!["--size", "1GiB"], "too large"),
        (vec!["--version", long.as_str()], "at most 31 bytes"),
    ] {
        let out = make(dir.path(), "fw.bin", &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!dir.path().join("fw.bin").exists());
    }
    let out = aegis(&[
        "sim",
        "make-image",
        "-o",
        dir.path().join("no/such/dir/fw.bin").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot write"), "{}", stderr(&out));

    let out = make(dir.path(), "fw.bin", &["--behavior", "explodes"]);
    assert_eq!(out.status.code(), Some(2), "clap rejects unknown values");
}
