//! Logs go to stderr, never stdout: stdout carries `--events`.
//!
//! Logged values often come from the network (a Twilio `streamSid`, an
//! event name, a provider's error text). In the text format each value is
//! escaped, so a newline or an ESC byte in one cannot forge a log line or
//! drive a terminal, and cut at [`MAX_FIELD_CHARS`], so junk cannot make
//! lines of tens of kilobytes. The JSON format escapes control characters
//! by itself (JSON strings cannot hold them raw).

use std::fmt::Write as _;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt as _;

/// The most characters a logged value keeps in the text format.
const MAX_FIELD_CHARS: usize = 512;

/// How log lines look.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the span fields (the call id).
    Json,
}

pub(crate) fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
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
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(err) = installed {
        eprintln!("voxpipe: logging not set up: {err}");
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
    use super::*;

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
}
