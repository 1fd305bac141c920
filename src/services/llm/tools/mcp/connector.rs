//! [`Connector`]: how one connection to an MCP server is opened (a child
//! process on stdio, or streamable HTTP), our side of the protocol
//! ([`Handler`]), and a child's standard error passed to the log.
//!
//! Nothing here keeps state between connections: that is
//! [`McpServer`](super::McpServer)'s.

use std::collections::BTreeMap;
use std::fmt;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::common::client_side_sse::ExponentialBackoff;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use crate::services::ApiKey;

/// How to open a connection: variables already read.
pub(crate) enum Connector {
    /// Run `command` with `args` in an environment holding only `env`.
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
    },
    /// Speak streamable HTTP to `url`.
    Http {
        url: String,
        bearer_token: Option<ApiKey>,
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    /// Speak MCP over an in-memory stream the function makes (each
    /// connection a new one): a scripted server under paused time.
    #[cfg(test)]
    Memory(Arc<dyn Fn() -> tokio::io::DuplexStream + Send + Sync>),
}

impl fmt::Debug for Connector {
    // Variables and headers may hold secrets: only their names are shown;
    // of the URL, which may hold one in its path or query, only its origin.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Connector::Stdio { command, args, env } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field("env", &env.keys().collect::<Vec<_>>())
                .finish(),
            Connector::Http {
                url,
                bearer_token,
                headers,
            } => f
                .debug_struct("Http")
                .field("origin", &origin(url))
                .field("bearer_token", &bearer_token.is_some())
                .field(
                    "headers",
                    &headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                )
                .finish(),
            #[cfg(test)]
            Connector::Memory(_) => f.write_str("Memory"),
        }
    }
}

/// The scheme, host and port of `url`, nothing of its path or query.
fn origin(url: &str) -> String {
    reqwest::Url::parse(url).map_or_else(
        |_| "(not a URL)".to_owned(),
        |u| u.origin().ascii_serialization(),
    )
}

/// Our side of the protocol: who we are, and a flag raised when the
/// server says its tools changed.
#[derive(Clone)]
pub(crate) struct Handler {
    pub(crate) tools_changed: Arc<AtomicBool>,
}

impl ClientHandler for Handler {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.tools_changed.store(true, Ordering::Relaxed);
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("voxpipe", env!("CARGO_PKG_VERSION")),
        )
    }
}

/// An open connection.
pub(crate) type Client = RunningService<RoleClient, Handler>;

impl Connector {
    /// Opens a connection and shakes hands. Not bounded here: the caller
    /// bounds it (dropping the future kills a child being started).
    pub(crate) async fn connect(&self, server: &str, handler: Handler) -> Result<Client, String> {
        match self {
            Connector::Stdio { command, args, env } => {
                let mut child = tokio::process::Command::new(command);
                child.args(args).env_clear().envs(env).kill_on_drop(true);
                let (transport, stderr) = TokioChildProcess::builder(child)
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("cannot run `{command}`: {e}"))?;
                if let Some(stderr) = stderr {
                    let server = server.to_owned();
                    tokio::spawn(async move { log_stderr(&server, stderr).await });
                }
                handler.serve(transport).await.map_err(|e| e.to_string())
            }
            Connector::Http {
                url,
                bearer_token,
                headers,
            } => {
                let client = crate::services::http::client()
                    .map_err(|e| e.to_string())?
                    .clone();
                // rmcp resumes a broken event stream forever by default,
                // waiting as long as the server's `retry:` says (3 s for
                // rmcp servers) between attempts: a server that died would
                // cost the call its whole timeout. One immediate attempt
                // rides out a dropped connection; a voice turn cannot wait
                // for more.
                let mut resume = ExponentialBackoff::default();
                resume.max_times = Some(1);
                resume.base_duration = Duration::from_millis(250);
                let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .reinit_on_expired_session(true)
                    .custom_headers(headers.iter().cloned().collect());
                config.retry_config = Arc::new(resume);
                if let Some(token) = bearer_token {
                    config = config.auth_header(token.expose());
                }
                let transport = StreamableHttpClientTransport::with_client(client, config);
                handler.serve(transport).await.map_err(|e| e.to_string())
            }
            #[cfg(test)]
            Connector::Memory(stream) => handler.serve(stream()).await.map_err(|e| e.to_string()),
        }
    }

    /// `text` (an error of this connection) without the server's URL,
    /// which may carry a secret in its path or query: reqwest's errors
    /// quote it, and the text goes to the model and the logs.
    pub(crate) fn scrub(&self, text: String) -> String {
        let Connector::Http { url, .. } = self else {
            return text;
        };
        let mut text = text;
        // As written, then as reqwest prints it (normalised).
        let normalised = reqwest::Url::parse(url).map(String::from).ok();
        for form in std::iter::once(url.as_str()).chain(normalised.as_deref()) {
            if !form.is_empty() && text.contains(form) {
                text = text.replace(form, &format!("{}/…", origin(url)));
            }
        }
        text
    }
}

/// The longest line of a server's standard error kept in the log.
const MAX_STDERR_LINE: usize = 1024;

/// Passes a child's standard error to the log, line by line, until it
/// closes: the lines it holds, in all. Debug level: a server's chatter is
/// not voxpipe's news. Bytes, not text: a line that is not UTF-8 is logged
/// lossily, and the rest of an overlong line is skipped, never held. It
/// reads to the end whatever comes, since a child writing to a pipe no one
/// reads would die of `SIGPIPE` or block for ever.
pub(crate) async fn log_stderr(server: &str, stderr: impl AsyncRead + Unpin) -> usize {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::with_capacity(256);
    let mut lines = 0;
    loop {
        line.clear();
        let limit = MAX_STDERR_LINE as u64 + 1;
        match (&mut reader).take(limit).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return lines,
            Ok(_) => {}
        }
        if !line.ends_with(b"\n") && line.len() > MAX_STDERR_LINE {
            line.truncate(MAX_STDERR_LINE);
            if !skip_line(&mut reader).await {
                log_line(server, &line);
                return lines + 1;
            }
        }
        log_line(server, &line);
        lines += 1;
    }
}

fn log_line(server: &str, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\n', '\r']);
    tracing::debug!(server = %server, "{text}");
}

/// Consumes `reader` up to and including the next newline: false at its
/// end or on an error.
async fn skip_line(reader: &mut (impl AsyncBufRead + Unpin)) -> bool {
    loop {
        let buffered = match reader.fill_buf().await {
            Ok([]) | Err(_) => return false,
            Ok(buffered) => buffered,
        };
        match buffered.iter().position(|b| *b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                return true;
            }
            None => {
                let all = buffered.len();
                reader.consume(all);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn stderr_that_is_not_utf8_or_too_long_is_read_to_its_end() {
        // A pipe smaller than what the child writes after the bad byte: a
        // reader that gave up would leave the child's writes failing.
        let (mut child, ours) = tokio::io::duplex(256);
        let reader = tokio::spawn(async move { log_stderr("s", ours).await });
        let mut written = b"bad \xff\xfe byte\n".to_vec();
        written.extend(vec![b'x'; 3 * MAX_STDERR_LINE]);
        written.push(b'\n');
        for n in 0..100 {
            written.extend(format!("line {n}\n").bytes());
        }
        child.write_all(&written).await.unwrap();
        child.write_all(b"last, without a newline").await.unwrap();
        drop(child);
        assert_eq!(reader.await.unwrap(), 103);
    }

    #[test]
    fn an_http_url_is_scrubbed_from_errors_and_debug() {
        let connector = Connector::Http {
            url: "http://Example.com:8080/hooks/s3cret?key=k3y".to_owned(),
            bearer_token: None,
            headers: Vec::new(),
        };
        let error = "error sending request for url \
                     (http://example.com:8080/hooks/s3cret?key=k3y)"
            .to_owned();
        let scrubbed = connector.scrub(error);
        assert_eq!(
            scrubbed,
            "error sending request for url (http://example.com:8080/…)"
        );
        let debug = format!("{connector:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("k3y"),
            "{debug}"
        );
    }
}
