//! The client commands' contract with scripts: exit codes and one-sentence errors when the
//! server is down, input is bad, or the config file says where to go.

use std::process::Output;

use aegis_testkit::netns_test;

use crate::harness::{Harness, aegis_cmd, make_image, stderr, stdout};

/// Nothing listens on port 1 of loopback: connecting is refused at once.
const DOWN: &str = "http://127.0.0.1:1";

fn run(tmp: &std::path::Path, args: &[&str]) -> Output {
    aegis_cmd(tmp).args(args).output().unwrap()
}

fn assert_one_line_error(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    let last = err.lines().last().unwrap_or("");
    assert!(last.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn server_down_is_exit_4_with_a_clear_sentence() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        &["devices", "--server", DOWN][..],
        &["firmware", "list", "--server", DOWN],
        &["rollouts", "--server", DOWN],
        &["audit", "--format", "csv", "--server", DOWN],
        &[
            "deploy",
            "abcdef123456",
            "--to",
            "all",
            "--yes",
            "--server",
            DOWN,
        ],
        &["rollouts", "abort", "r-00000000", "--server", DOWN],
    ] {
        let out = run(tmp.path(), args);
        assert_one_line_error(&out, 4, "could not reach the server at http://127.0.0.1:1");
        assert!(stderr(&out).contains("aegis serve"), "{}", stderr(&out));
        assert!(out.stdout.is_empty(), "aegis {args:?}");
    }
}

#[test]
fn a_bad_file_is_refused_before_any_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = make_image(tmp.path(), "bad.bin", &["--corrupt", "bad-checksum"]);
    // The server is down: had the client tried to upload, this would be exit 4.
    let out = run(
        tmp.path(),
        &[
            "deploy",
            bad.to_str().unwrap(),
            "--to",
            "all",
            "--yes",
            "--server",
            DOWN,
        ],
    );
    assert_one_line_error(&out, 2, "is not a valid OTA app image");
    assert!(stderr(&out).contains("checksum"), "{}", stderr(&out));
    let out = run(
        tmp.path(),
        &["firmware", "add", bad.to_str().unwrap(), "--server", DOWN],
    );
    assert_one_line_error(&out, 2, "nothing was uploaded");
}

#[test]
fn bad_input_is_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let good = make_image(tmp.path(), "good.bin", &[]);
    let good = good.to_str().unwrap();
    for (args, needle) in [
        (
            &[
                "deploy",
                good,
                "--to",
                "colour:red",
                "--yes",
                "--server",
                DOWN,
            ][..],
            "not a target selector",
        ),
        (&["deploy", good, "--to", "all", "--server", DOWN], "--yes"),
        (
            &[
                "deploy",
                "no-such.bin",
                "--to",
                "all",
                "--yes",
                "--server",
                DOWN,
            ],
            "no file named no-such.bin",
        ),
        (
            &[
                "deploy",
                good,
                "--to",
                "all",
                "--yes",
                "--timeout",
                "soon",
                "--server",
                DOWN,
            ],
            "not a duration",
        ),
        (&["devices", "--server", "ftp://x"], "not a server URL"),
    ] {
        let out = run(tmp.path(), args);
        assert_one_line_error(&out, 2, needle);
    }
    // Out-of-range flags are clap usage errors, also exit 2.
    let out = run(
        tmp.path(),
        &["deploy", good, "--to", "all", "--max-failures", "101"],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn ci_without_yes_is_refused_even_with_a_terminal_flagless() {
    let tmp = tempfile::tempdir().unwrap();
    let good = make_image(tmp.path(), "good.bin", &[]);
    let out = aegis_cmd(tmp.path())
        .env("CI", "true")
        .args([
            "deploy",
            good.to_str().unwrap(),
            "--to",
            "outdated",
            "--server",
            DOWN,
        ])
        .output()
        .unwrap();
    assert_one_line_error(&out, 2, "pass --yes");
}

#[test]
fn flags_override_env_override_the_config_file() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, "server = \"http://127.0.0.1:2\"\n").unwrap();
    let with_config = |extra_env: Option<&str>, args: &[&str]| {
        let mut cmd = aegis_cmd(tmp.path());
        cmd.env("AEGIS_CONFIG", &config);
        if let Some(url) = extra_env {
            cmd.env("AEGIS_SERVER", url);
        }
        cmd.args(args).output().unwrap()
    };
    let out = with_config(None, &["devices"]);
    assert_one_line_error(&out, 4, "http://127.0.0.1:2");
    let out = with_config(Some("http://127.0.0.1:3"), &["devices"]);
    assert_one_line_error(&out, 4, "http://127.0.0.1:3");
    let out = with_config(
        Some("http://127.0.0.1:3"),
        &["devices", "--server", "127.0.0.1:4"],
    );
    assert_one_line_error(&out, 4, "http://127.0.0.1:4");

    std::fs::write(&config, "sever = \"typo\"\n").unwrap();
    let out = with_config(None, &["devices"]);
    assert_one_line_error(&out, 2, "config file");
    assert!(stderr(&out).contains("sever"), "{}", stderr(&out));
}

#[test]
fn completions_are_generated_for_every_shell() {
    let tmp = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run(tmp.path(), &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = stdout(&out);
        assert!(
            text.contains("deploy") && text.contains("allow-downgrade"),
            "{shell}"
        );
    }
    let out = run(tmp.path(), &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

netns_test! {
    /// Against a real server: errors the server returns become one sentence and exit 2;
    /// a server that needs a token says how to pass it.
    fn server_errors_are_sentences() {
        let h = Harness::start(0);
        let out = h.aegis(&["rollouts", "r-00000000"]);
        assert_one_line_error(&out, 2, "r-00000000");
        let out = h.aegis(&["firmware", "rm", "abcdef"]);
        assert_one_line_error(&out, 2, "no firmware in the library");
        let out = h.aegis(&["audit", "--since", "yesterday"]);
        assert_one_line_error(&out, 2, "since");
        let out = h.aegis(&["devices"]);
        assert_eq!(out.status.code(), Some(0));
        assert!(stderr(&out).contains("knows no devices"), "{}", stderr(&out));
        let out = h.aegis(&["audit", "--json"]);
        let records: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(records[0]["kind"], "server_started");
    }
}
