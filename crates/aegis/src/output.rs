//! How a client command talks: to a person at a terminal (tables, progress bars, prompts) or
//! to a pipeline (no TTY, `CI=true` or `--json`: JSON on stdout, human messages on stderr, no
//! bars, no prompts).

use std::io::{BufRead, IsTerminal, Write};

use serde::Serialize;

use crate::exit::{CodedError, Exit};

/// The output mode of one command.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    /// Machine-readable JSON on stdout.
    pub json: bool,
    /// A person is there: prompts are allowed (stdin and stderr are terminals, not CI, not
    /// `--json`).
    pub interactive: bool,
    /// Live progress bars and redrawn tables on stderr/stdout are allowed.
    pub live: bool,
}

impl Ui {
    pub fn new(json: bool) -> Ui {
        let ci = in_ci();
        let stderr_tty = std::io::stderr().is_terminal();
        Ui {
            json,
            interactive: !json && !ci && stderr_tty && std::io::stdin().is_terminal(),
            live: !json && !ci && stderr_tty,
        }
    }
}

/// `CI` set to anything but empty, `0` or `false` (GitHub Actions and GitLab CI set `true`).
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
        .unwrap_or(false)
}

/// Pretty JSON on stdout, one document.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| {
        CodedError::new(Exit::Failure, format!("cannot encode the JSON output: {e}"))
    })?;
    println!("{text}");
    Ok(())
}

/// One JSON document per line on stdout (for `--watch --json`), flushed at once.
pub fn print_json_line<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string(value).map_err(|e| {
        CodedError::new(Exit::Failure, format!("cannot encode the JSON output: {e}"))
    })?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
    Ok(())
}

/// Asks a yes/no question on stderr; only "y"/"yes" is yes.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CodedError::new(Exit::BadInput, format!("cannot read the answer: {e}")))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Clears a terminal screen and moves to its top (for `--watch` redraws).
pub fn clear_screen() {
    print!("\x1b[2J\x1b[H");
}

/// The wall clock, for "seen 5s ago" columns (the CLI's only reading of it).
pub fn now() -> aegis_server::time::Timestamp {
    use aegis_server::time::Clock as _;
    aegis_server::time::SystemClock.now()
}
