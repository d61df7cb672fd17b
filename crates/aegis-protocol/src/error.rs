//! The reply bodies shared by every endpoint: the error body and the trigger's `accepted` body.
//!
//! Errors everywhere (device and server) are `{"error":{"code":"<snake_case>","message":"<human
//! sentence>"}}`.

use serde::{Deserialize, Serialize};

/// `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable snake_case code for programs.
    pub code: String,
    /// One sentence for people: what went wrong and what to do.
    pub message: String,
}

impl ErrorBody {
    /// An error body with this code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "error": { "code": self.error.code, "message": self.error.message }
        })
        .to_string()
    }
}

/// The 202 reply to an accepted trigger: `{"accepted":true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// Always `true`.
    pub accepted: bool,
}

impl Accepted {
    /// The exact reply body.
    pub const BODY: &'static str = r#"{"accepted":true}"#;
    /// The HTTP status of an accepted trigger.
    pub const STATUS: u16 = 202;
}

impl Default for Accepted {
    fn default() -> Self {
        Accepted { accepted: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let body = ErrorBody::new("busy", "Busy \"now\".");
        let json = body.to_json();
        assert_eq!(
            json,
            r#"{"error":{"code":"busy","message":"Busy \"now\"."}}"#
        );
        assert_eq!(serde_json::from_str::<ErrorBody>(&json).unwrap(), body);
        assert_eq!(
            serde_json::to_string(&Accepted::default()).unwrap(),
            Accepted::BODY
        );
    }
}
