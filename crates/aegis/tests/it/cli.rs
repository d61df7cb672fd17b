//! The command-line surface: help texts exist, commands not built yet say so and fail.

use std::process::{Command, Output};

fn aegis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aegis"))
        .args(args)
        .output()
        .expect("run the aegis binary")
}

#[test]
fn help_lists_every_subcommand() {
    let out = aegis(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for cmd in [
        "serve", "demo", "sim", "firmware", "devices", "deploy", "rollouts", "audit", "keys",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(cmd)),
            "`aegis --help` does not list `{cmd}`:\n{text}"
        );
    }
}

#[test]
fn version_is_printed() {
    let out = aegis(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("aegis {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unknown_flags_are_usage_errors() {
    let out = aegis(&["firmware", "inspect", "--frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--frobnicate"), "{err}");
}
