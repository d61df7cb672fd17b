//! The HTTP client of the JSON API: finds the server (`--server`, `AEGIS_SERVER`, the config
//! file, else `http://127.0.0.1:3000`) and the operator token (`--token`, `AEGIS_TOKEN`, the
//! config file, else `<data dir>/keys/token` when it exists), and turns every failure into
//! one sentence with the exit code scripts rely on: the server not reachable → 4, a request
//! the server refused as invalid → 2, a server-side failure → 1.

pub mod sse;

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cli::ServerArgs;
use crate::config::Config;
use crate::exit::{CodedError, Exit};

/// Where the server is when nothing says otherwise (`aegis serve`'s default listener).
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:3000";

/// Time to wait for a TCP connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time limit of an ordinary request (uploads and event streams have their own).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Time limit of a firmware upload.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// A connection to one server's `/api/v1`.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// A tokio runtime for one command (the client commands are short-lived and single-user).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            CodedError::new(
                Exit::Failure,
                format!("cannot start the async runtime: {e}"),
            )
            .into()
        })
}

impl Client {
    /// Resolves server URL and token from flags/env (already merged by clap) and the config.
    pub fn new(args: &ServerArgs, config: &Config) -> anyhow::Result<Client> {
        let raw = args
            .server
            .clone()
            .or_else(|| config.server.clone())
            .unwrap_or_else(|| DEFAULT_SERVER.to_string());
        let base = normalize_url(&raw)?;
        let token = args
            .token
            .clone()
            .or_else(|| config.token.clone())
            .or_else(|| token_from_data_dir(config))
            .filter(|t| !t.trim().is_empty());
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("aegis-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CodedError::new(Exit::Failure, format!("cannot set up HTTP: {e}")))?;
        Ok(Client { base, token, http })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut rb = self
            .http
            .request(method, format!("{}/api/v1/{path}", self.base));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        rb
    }

    /// Sends, and maps transport failures and error statuses to coded errors.
    async fn send(&self, rb: RequestBuilder) -> anyhow::Result<Response> {
        let resp = rb.send().await.map_err(|e| self.transport_error(&e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.status_error(resp).await.into())
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let resp = self
            .send(self.request(Method::GET, path).timeout(REQUEST_TIMEOUT))
            .await?;
        self.decode(resp).await
    }

    /// GET with query parameters (`None` values are left out).
    pub async fn get_query<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, Option<&str>)],
    ) -> anyhow::Result<T> {
        let resp = self.send(self.query(path, query)).await?;
        self.decode(resp).await
    }

    /// GET with query parameters, the body as text (CSV).
    pub async fn get_text(
        &self,
        path: &str,
        query: &[(&str, Option<&str>)],
    ) -> anyhow::Result<String> {
        let resp = self.send(self.query(path, query)).await?;
        resp.text()
            .await
            .map_err(|e| self.transport_error(&e).into())
    }

    fn query(&self, path: &str, query: &[(&str, Option<&str>)]) -> RequestBuilder {
        let pairs: Vec<(&str, &str)> = query
            .iter()
            .filter_map(|(k, v)| v.map(|v| (*k, v)))
            .collect();
        self.request(Method::GET, path)
            .query(&pairs)
            .timeout(REQUEST_TIMEOUT)
    }

    /// POST a JSON body; returns the status (201 vs 200 matters to some callers) and the body.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<(StatusCode, T)> {
        let resp = self
            .send(
                self.request(Method::POST, path)
                    .json(body)
                    .timeout(REQUEST_TIMEOUT),
            )
            .await?;
        let status = resp.status();
        Ok((status, self.decode(resp).await?))
    }

    /// POST raw bytes (a firmware upload) with query parameters.
    pub async fn post_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, Option<&str>)],
        bytes: Vec<u8>,
    ) -> anyhow::Result<(StatusCode, T)> {
        let pairs: Vec<(&str, &str)> = query
            .iter()
            .filter_map(|(k, v)| v.map(|v| (*k, v)))
            .collect();
        let rb = self
            .request(Method::POST, path)
            .query(&pairs)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .timeout(UPLOAD_TIMEOUT);
        let resp = self.send(rb).await?;
        let status = resp.status();
        Ok((status, self.decode(resp).await?))
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.send(self.request(Method::DELETE, path).timeout(REQUEST_TIMEOUT))
            .await?;
        Ok(())
    }

    /// Opens `GET /api/v1/events`; returns once the server has answered (it has subscribed,
    /// so nothing published after this returns is missed).
    pub async fn events(&self) -> anyhow::Result<Events> {
        let resp = self
            .send(
                self.request(Method::GET, "events")
                    .header(reqwest::header::ACCEPT, "text/event-stream"),
            )
            .await?;
        Ok(Events {
            stream: resp.bytes_stream().map(|r| r.map(|b| b.to_vec())).boxed(),
            parser: sse::Parser::new(),
            pending: std::collections::VecDeque::new(),
            server: self.base.clone(),
        })
    }

    async fn decode<T: DeserializeOwned>(&self, resp: Response) -> anyhow::Result<T> {
        let url = resp.url().path().to_string();
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            CodedError::new(
                Exit::Failure,
                format!(
                    "the server at {} answered {url} with JSON this aegis does not understand \
                     ({e}); is it the same version as this client?",
                    self.base
                ),
            )
            .into()
        })
    }

    fn transport_error(&self, e: &reqwest::Error) -> CodedError {
        let cause = root_cause(e);
        if e.is_connect() || (e.is_timeout() && !e.is_body()) || e.is_request() {
            CodedError::new(
                Exit::Unreachable,
                format!(
                    "could not reach the server at {} ({cause}); start it with `aegis serve`, \
                     or point --server / AEGIS_SERVER at it",
                    self.base
                ),
            )
        } else {
            CodedError::new(
                Exit::Unreachable,
                format!(
                    "the connection to the server at {} failed ({cause}); try again",
                    self.base
                ),
            )
        }
    }

    async fn status_error(&self, resp: Response) -> CodedError {
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| {
                format!(
                    "the server at {} answered {status} without an explanation",
                    self.base
                )
            });
        let code = match status.as_u16() {
            401 => {
                return CodedError::new(
                    Exit::BadInput,
                    format!("{message} (pass it with --token or AEGIS_TOKEN)"),
                );
            }
            400..=499 => Exit::BadInput,
            _ => Exit::Failure,
        };
        CodedError::new(code, message)
    }
}

/// The server-sent event stream, message by message.
pub struct Events {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    parser: sse::Parser,
    pending: std::collections::VecDeque<sse::Message>,
    server: String,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("server", &self.server)
            .finish()
    }
}

impl Events {
    /// The next message; `None` when the server closed the stream.
    pub async fn next(&mut self) -> anyhow::Result<Option<sse::Message>> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Ok(Some(m));
            }
            match self.stream.next().await {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(CodedError::new(
                        Exit::Unreachable,
                        format!(
                            "the event stream from {} broke ({}); try again",
                            self.server,
                            root_cause(&e)
                        ),
                    )
                    .into());
                }
                Some(Ok(chunk)) => {
                    let msgs = self
                        .parser
                        .feed(&chunk)
                        .map_err(|e| CodedError::new(Exit::Failure, e))?;
                    self.pending.extend(msgs);
                }
            }
        }
    }
}

/// `http://host:port` without a trailing slash; a bare `host:port` gets `http://`.
pub fn normalize_url(raw: &str) -> anyhow::Result<String> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    let bad = || {
        CodedError::new(
            Exit::BadInput,
            format!(
                "`{raw}` is not a server URL: use the form http://HOST:PORT, e.g. {DEFAULT_SERVER}"
            ),
        )
    };
    let url = reqwest::Url::parse(&with_scheme).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad().into());
    }
    Ok(with_scheme.trim_end_matches('/').to_string())
}

/// The token the server wrote to `<data dir>/keys/token`, when this machine has it.
fn token_from_data_dir(config: &Config) -> Option<String> {
    let dir = config.data_dir.clone().or_else(|| {
        directories::ProjectDirs::from("", "", "aegis").map(|d| d.data_dir().to_path_buf())
    })?;
    let text = std::fs::read_to_string(
        aegis_server::keys::keys_dir(&dir).join(aegis_server::keys::TOKEN_FILE),
    )
    .ok()?;
    Some(text.trim().to_string())
}

/// The innermost cause of an HTTP error ("Connection refused"), without Rust's os-error
/// suffix.
fn root_cause(e: &reqwest::Error) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(next) = last.source() {
        last = next;
    }
    let s = last.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Loads the config file and builds a client from it and the flags.
pub fn connect(args: &ServerArgs) -> anyhow::Result<(Client, Config)> {
    let config = crate::config::load()?;
    let client = Client::new(args, &config)?;
    Ok((client, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_normalized_or_refused() {
        assert_eq!(
            normalize_url("http://127.0.0.1:3000/").unwrap(),
            "http://127.0.0.1:3000"
        );
        assert_eq!(
            normalize_url("10.0.0.5:3000").unwrap(),
            "http://10.0.0.5:3000"
        );
        assert!(normalize_url("ftp://x").is_err());
        assert!(normalize_url("http://").is_err());
    }
}
