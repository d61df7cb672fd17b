//! `GET /api/v1/events`: the event bus as server-sent events. Each [`Event`] goes out as
//! `event: <name>` with `data: <json of its payload>`. The stream opens with a `: connected`
//! comment (sent once the subscription exists, so a client knows it will miss nothing after
//! it), keeps idle connections alive with comments, tells a subscriber that fell behind
//! `event: resync` (`data: {"missed": n}`; it should re-read what it shows) and continues, and
//! ends when the server shuts down.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use super::Shared;
use crate::events::Event;

/// Interval of keep-alive comments on an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn stream(
    State(s): State<Shared>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = s.events.subscribe();
    let hello = stream::once(async { Ok(SseEvent::default().comment("connected")) });
    let events = stream::unfold(rx, |mut rx| async move {
        let item = match rx.recv().await {
            Ok(event) => to_sse(&event),
            Err(RecvError::Lagged(missed)) => SseEvent::default()
                .event("resync")
                .data(serde_json::json!({ "missed": missed }).to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(item), rx))
    });
    let stream = hello
        .chain(events)
        .take_until(s.shutdown.clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// One event as SSE: its name, and the JSON of its payload.
pub fn to_sse(event: &Event) -> SseEvent {
    let payload = match serde_json::to_value(event) {
        Ok(serde_json::Value::Object(mut obj)) => {
            obj.remove("data").unwrap_or(serde_json::Value::Null)
        }
        Ok(_) | Err(_) => serde_json::Value::Null,
    };
    SseEvent::default()
        .event(event.name())
        .data(payload.to_string())
}
