//! `GET /api/v1/audit` (filters, JSON or CSV) and `GET /api/v1/audit/verify` (the hash chain
//! check).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ApiQuery;
use super::{Shared, blocking};
use crate::store::AuditQuery;
use crate::time::Timestamp;
use crate::{Error, Result};

/// `?device=&rollout=&since=&until=&outcome=&kind=&limit=&format=json|csv`.
#[derive(Debug, Default, Deserialize)]
pub struct AuditParams {
    device: Option<String>,
    rollout: Option<String>,
    /// RFC 3339, or a duration (`1h`, `30m`) meaning "that long ago".
    since: Option<String>,
    until: Option<String>,
    outcome: Option<String>,
    kind: Option<String>,
    limit: Option<usize>,
    format: Option<String>,
}

pub async fn query(
    State(s): State<Shared>,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Response> {
    let now = s.clock.now();
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(Error::bad_request(
                "bad_query",
                format!("format \"{other}\" is not offered; use format=json or format=csv"),
            ));
        }
    };
    let query = AuditQuery {
        device: p.device,
        rollout: p.rollout,
        since: p
            .since
            .as_deref()
            .map(|v| parse_time("since", v, now))
            .transpose()?,
        until: p
            .until
            .as_deref()
            .map(|v| parse_time("until", v, now))
            .transpose()?,
        outcome: p.outcome,
        kind: p.kind,
        limit: p.limit,
    };
    // Records accepted before this request are visible to it.
    s.audit.flush().await?;
    let store = s.store.clone();
    let records = blocking(move || store.audit(&query)).await?;
    if csv {
        let body = crate::audit::to_csv(&records);
        Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"aegis-audit.csv\"",
                ),
            ],
            body,
        )
            .into_response())
    } else {
        Ok(Json(records).into_response())
    }
}

/// `{"intact", "records", "first_bad": {"seq","reason"} | null, "head"}`.
pub async fn verify(State(s): State<Shared>) -> Result<Json<serde_json::Value>> {
    s.audit.flush().await?;
    let store = s.store.clone();
    let report = blocking(move || crate::audit::verify(store.as_ref())).await?;
    let mut body = serde_json::to_value(&report)
        .map_err(|e| Error::internal(format!("the verification report failed to encode: {e}")))?;
    if let Some(obj) = body.as_object_mut() {
        obj.insert("intact".into(), report.is_intact().into());
    }
    Ok(Json(body))
}

/// An RFC 3339 time, or a duration before `now`.
pub fn parse_time(name: &str, value: &str, now: Timestamp) -> Result<Timestamp> {
    if let Ok(t) = value.parse::<Timestamp>() {
        return Ok(t);
    }
    match humantime::parse_duration(value) {
        Ok(d) => Ok(Timestamp(
            now.millis()
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )),
        Err(_) => Err(Error::bad_request(
            "bad_query",
            format!(
                "{name}=\"{value}\" is neither an RFC 3339 time (2024-05-01T12:00:00Z) nor a duration (1h, 30m); use one of those"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_durations_ago() {
        let now = Timestamp(10_000_000);
        assert_eq!(
            parse_time("since", "1970-01-01T00:00:01Z", now).unwrap(),
            Timestamp(1000)
        );
        assert_eq!(
            parse_time("since", "1h", now).unwrap(),
            Timestamp(10_000_000 - 3_600_000)
        );
        assert_eq!(
            parse_time("since", "90s", now).unwrap(),
            Timestamp(10_000_000 - 90_000)
        );
        let err = parse_time("since", "yesterday", now).unwrap_err();
        assert_eq!(err.code, "bad_query");
        assert!(err.message.contains("since"), "{}", err.message);
    }
}
