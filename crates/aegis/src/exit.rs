//! Exit codes of the `aegis` executable, a stable interface for scripts and CI pipelines, and
//! the rendering of errors as one readable line.

use std::fmt::Write as _;
use std::process::ExitCode;

/// The process exit codes `aegis` uses. Documented in README.md and `docs/cli.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything the command was asked to do succeeded.
    Success = 0,
    /// The command ran but the answer is "no": e.g. the file is not a valid OTA app image.
    Failure = 1,
    /// Bad input: a flag, a file that cannot be read, a value out of range, a request the
    /// server refused as invalid, or a confirmation that is needed but was not given.
    BadInput = 2,
    /// `aegis deploy --wait` / `aegis rollouts --watch`: the rollout was paused by its failure
    /// threshold (or a failed canary) and is waiting for the operator.
    Paused = 3,
    /// The server could not be reached (not running, wrong `--server`, network down).
    Unreachable = 4,
    /// Ctrl-C while following a rollout: the CLI detached, the rollout keeps running.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// An error that carries the exit code it should end the process with.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CodedError {
    pub code: Exit,
    pub message: String,
}

impl CodedError {
    pub fn new(code: Exit, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The exit code for an error: the one it carries, else "bad input" (most errors the binary
/// sees come from reading the user's files and flags).
pub fn code_for(err: &anyhow::Error) -> Exit {
    err.chain()
        .find_map(|e| e.downcast_ref::<CodedError>())
        .map_or(Exit::BadInput, |e| e.code)
}

/// The error and its causes on one line: "reading fw.bin: No such file or directory".
pub fn describe(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let _ = write!(out, ": {cause}");
    }
    out
}
