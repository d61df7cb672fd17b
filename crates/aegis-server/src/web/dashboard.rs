//! `GET /`: a minimal server-rendered status page (devices, firmware, rollouts, links to the
//! API) until the dashboard proper exists. No scripts.

use axum::extract::{RawQuery, State};
use axum::response::Html;

use super::Shared;

pub async fn page(State(s): State<Shared>, RawQuery(query): RawQuery) -> Html<String> {
    let devices: Result<Vec<crate::devices::Device>, crate::Error> = Ok(s.registry.devices());
    let firmware = s.library.list().await;
    let rollouts = s.engine.list().await;
    // Keep the token (if the page was opened with one) on the links.
    let suffix = query
        .as_deref()
        .and_then(|q| q.split('&').find(|p| p.starts_with("token=")))
        .map(|t| format!("?{}", escape(t)))
        .unwrap_or_default();

    let count = |r: Result<usize, crate::Error>| match r {
        Ok(n) => n.to_string(),
        Err(e) => format!("unavailable ({})", escape(&e.message)),
    };
    let online = devices
        .as_ref()
        .map(|d| d.iter().filter(|d| d.online).count())
        .unwrap_or(0);
    let devices_line = match &devices {
        Ok(d) => format!("{} known, {online} online", d.len()),
        Err(e) => format!("unavailable ({})", escape(&e.message)),
    };
    let mut rows = String::new();
    if let Ok(list) = &rollouts {
        for r in list.iter().take(20) {
            let counts: Vec<String> = r.counts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{:?}</td><td><code>{}</code></td><td>{}</td></tr>\n",
                escape(&r.id),
                r.state,
                escape(r.firmware.get(..16).unwrap_or(&r.firmware)),
                escape(&counts.join(", "))
            ));
        }
    }
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>AegisOTA</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}}\
         td,th{{padding:.2rem .8rem;text-align:left}}</style></head><body>\n\
         <h1>AegisOTA {version}</h1>\n\
         <ul>\n<li>Devices: {devices_line} (<a href=\"/api/v1/devices{suffix}\">JSON</a>)</li>\n\
         <li>Firmware images: {firmware} (<a href=\"/api/v1/firmware{suffix}\">JSON</a>)</li>\n\
         <li>Rollouts: {rollouts} (<a href=\"/api/v1/rollouts{suffix}\">JSON</a>)</li>\n\
         <li><a href=\"/api/v1/audit{suffix}\">Audit log</a> · \
         <a href=\"/api/v1/openapi.json{suffix}\">API (OpenAPI)</a> · \
         <a href=\"/api/v1/health{suffix}\">Health</a></li>\n</ul>\n\
         <table><tr><th>Rollout</th><th>State</th><th>Firmware</th><th>Targets</th></tr>\n{rows}</table>\n\
         </body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
        firmware = count(firmware.map(|f| f.len())),
        rollouts = count(rollouts.as_ref().map(|r| r.len()).map_err(Clone::clone)),
    ))
}

/// HTML-escapes text.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
