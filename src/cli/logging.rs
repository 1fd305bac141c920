//! Logs go to stderr, never stdout: stdout carries `--events`.
//!
//! Logged values often come from the network (a Twilio `streamSid`, an
//! event name, a provider's error text). In the text format each value is
//! escaped, so a newline or an ESC byte in one cannot forge a log line or
//! drive a terminal, and cut at [`MAX_FIELD_CHARS`], so junk cannot make
//! lines of tens of kilobytes. The JSON format escapes control characters
//! by itself (JSON strings cannot hold them raw); each string value in it
//! (event and span fields alike) is cut at [`MAX_FIELD_CHARS`] the same
//! way ([`CappedJson`]).
//!
//! The logs of `rmcp` (the MCP SDK) are off unless the filter names
//! `rmcp`: its transport logs errors that quote an HTTP MCP server's URL
//! (reqwest's errors hold it), and that URL may carry a secret in its path
//! or query. voxpipe logs every MCP failure itself, without the URL.

use std::fmt::Write as _;
use std::io::IsTerminal;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt as _;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The most characters a logged value keeps.
const MAX_FIELD_CHARS: usize = 512;

/// How log lines look.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the span fields (the call id).
    Json,
}

/// The directive that silences `rmcp` (see the module docs).
const QUIET_RMCP: &str = "rmcp=off";

/// The filter of `RUST_LOG` if set and valid, else of `level`, else
/// `info`; `rmcp` off unless the chosen filter names it.
fn filter(rust_log: Option<&str>, level: &str) -> EnvFilter {
    let quiet = |spec: &str| {
        if spec.contains("rmcp") {
            spec.to_owned()
        } else {
            format!("{spec},{QUIET_RMCP}")
        }
    };
    rust_log
        .and_then(|spec| EnvFilter::try_new(quiet(spec)).ok())
        .or_else(|| EnvFilter::try_new(quiet(level)).ok())
        .unwrap_or_else(|| EnvFilter::new(quiet("info")))
}

pub(crate) fn init(format: LogFormat, level: &str) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter(rust_log.as_deref(), level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Text => builder
            .fmt_fields(
                tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
                    let text = escape_field(&format!("{value:?}"));
                    match field.name() {
                        "message" => writer.write_str(&text),
                        name => write!(writer, "{name}={text}"),
                    }
                })
                .delimited(" "),
            )
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .map_event_format(|json| CappedJson { json })
            .try_init(),
    };
    if let Err(err) = installed {
        eprintln!("voxpipe: logging not set up: {err}");
    }
}

/// The JSON format with every string value cut at [`MAX_FIELD_CHARS`]:
/// the line is formatted, read back and written again with its long
/// strings cut (the JSON formatter has no hook for its values).
struct CappedJson<F> {
    json: F,
}

impl<S, N, F> FormatEvent<S, N> for CappedJson<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.json.format_event(ctx, Writer::new(&mut line), event)?;
        // A line this short holds no string to cut: no need to read it back.
        if line.chars().count() <= MAX_FIELD_CHARS {
            return writer.write_str(&line);
        }
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(mut value) => {
                cap_strings(&mut value);
                writeln!(writer, "{value}")
            }
            // Not JSON (cannot happen with the JSON formatter): as is.
            Err(_) => writer.write_str(&line),
        }
    }
}

/// Cuts every string in `value` after [`MAX_FIELD_CHARS`] characters.
fn cap_strings(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => {
            if let Some((cut, _)) = text.char_indices().nth(MAX_FIELD_CHARS) {
                let rest = text[cut..].chars().count();
                text.truncate(cut);
                let _infallible = write!(text, "…[{rest} more chars]");
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(cap_strings),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(cap_strings),
        _ => {}
    }
}

/// `value` with control characters written as escapes (`\n`, `\u{1b}`)
/// and cut after [`MAX_FIELD_CHARS`] characters, saying how much was cut.
fn escape_field(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_FIELD_CHARS + 32));
    for (n, c) in value.chars().enumerate() {
        if n == MAX_FIELD_CHARS {
            let rest = value.chars().count() - n;
            let _infallible = write!(out, "…[{rest} more chars]");
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _infallible = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn rmcp_does_not_log_the_secret_url_of_an_http_server_it_cannot_reach() {
        use rmcp::ServiceExt as _;
        use rmcp::transport::StreamableHttpClientTransport;
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

        let _ = rustls::crypto::ring::default_provider().install_default();
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter(None, "info"))
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{closed}/mcp/SECRET-PATH?key=SECRET-KEY");
        let config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
        let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
        assert!(().serve(transport).await.is_err());
        // The transport's worker logs as it quits.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        tracing::warn!("voxpipe's own line");
        let logged = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
        assert!(logged.contains("voxpipe's own line"), "{logged}");
        assert!(!logged.contains("SECRET"), "{logged}");
    }

    #[test]
    fn rmcp_logs_only_when_the_filter_names_it() {
        use tracing_subscriber::layer::SubscriberExt as _;

        let enabled = |filter: EnvFilter| {
            let subscriber = tracing_subscriber::registry().with(filter);
            tracing::subscriber::with_default(
                subscriber,
                || tracing::event_enabled!(target: "rmcp::transport::worker", tracing::Level::ERROR),
            )
        };
        assert!(!enabled(filter(None, "debug")));
        assert!(!enabled(filter(Some("trace"), "info")));
        assert!(enabled(filter(Some("rmcp=debug"), "info")));
        assert!(enabled(filter(None, "info,rmcp::transport=error")));
    }

    #[test]
    fn control_characters_are_escaped_and_long_values_cut() {
        assert_eq!(
            escape_field("MZ1\nINFO forged\r\u{1b}[2J\t\u{85}"),
            "MZ1\\nINFO forged\\r\\u{1b}[2J\\t\\u{85}"
        );
        assert_eq!(escape_field("plain"), "plain");
        let long = escape_field(&"é".repeat(MAX_FIELD_CHARS + 10));
        assert!(long.ends_with("…[10 more chars]"), "{long}");
        assert_eq!(long.chars().filter(|c| *c == 'é').count(), MAX_FIELD_CHARS);
    }

    #[test]
    fn long_json_strings_are_cut_at_any_depth() {
        let long = "é".repeat(MAX_FIELD_CHARS + 10);
        let mut value = serde_json::json!({
            "message": long, "span": {"call": long}, "spans": [{"name": long}], "n": 1, "short": "ok",
        });
        cap_strings(&mut value);
        for cut in [
            &value["message"],
            &value["span"]["call"],
            &value["spans"][0]["name"],
        ] {
            let cut = cut.as_str().unwrap();
            assert!(cut.ends_with("…[10 more chars]"), "{cut}");
            assert_eq!(cut.chars().filter(|c| *c == 'é').count(), MAX_FIELD_CHARS);
        }
        assert_eq!(value["short"], "ok");
        assert_eq!(value["n"], 1);
    }
}
