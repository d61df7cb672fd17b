//! The server's one error type. It travels from any domain to the API, where it becomes
//! `{"error":{"code","message"}}` with a fitting status code; `message` is one sentence saying
//! what is wrong and what to do.

use std::fmt;

/// What kind of failure, which decides the HTTP status and the stable `code` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or a value is out of range (400).
    BadRequest,
    /// Missing or wrong operator token (401).
    Unauthorized,
    /// No such device, firmware, rollout (404).
    NotFound,
    /// The request conflicts with current state, e.g. deleting firmware a rollout uses (409).
    Conflict,
    /// The body is larger than allowed (413).
    TooLarge,
    /// Well-formed but unacceptable content, e.g. a file that is not an OTA app image (422).
    Unprocessable,
    /// A device or peer did not answer as the protocol requires (502).
    Upstream,
    /// Storage or another internal failure (500).
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::TooLarge => 413,
            ErrorKind::Unprocessable => 422,
            ErrorKind::Upstream => 502,
            ErrorKind::Internal => 500,
        }
    }
}

/// An error with a stable snake_case `code` and a human sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal", message)
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::new(
            ErrorKind::Internal,
            "storage",
            format!(
                "the database failed: {e}; check the data directory's disk space and permissions"
            ),
        )
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(
            ErrorKind::Internal,
            "io",
            format!(
                "a file operation failed: {e}; check the data directory's disk space and permissions"
            ),
        )
    }
}
