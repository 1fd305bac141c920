//! The TwiML answers to Twilio's voice and messaging webhooks, without I/O.
//!
//! `<Connect><Stream>` opens a bidirectional media stream and holds the call
//! until the stream ends; Twilio does not allow a query string in the
//! stream's URL, so values for the session travel as `<Parameter>`s and come
//! back in the `start` message's `customParameters`.

use std::borrow::Cow;
use std::fmt::Write as _;

const PROLOG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// Connects the call to the stream at `stream_url` (`wss://…`), passing
/// `parameters` along.
pub fn connect_stream(stream_url: &str, parameters: &[(String, String)]) -> String {
    let mut xml = format!(
        r#"{PROLOG}<Response><Connect><Stream url="{}">"#,
        escape(stream_url)
    );
    for (name, value) in parameters {
        let _infallible = write!(
            xml,
            r#"<Parameter name="{}" value="{}"/>"#,
            escape(name),
            escape(value)
        );
    }
    xml.push_str("</Stream></Connect></Response>");
    xml
}

/// Refuses the call with a busy signal: the caller may try again later.
pub fn reject_busy() -> String {
    format!(r#"{PROLOG}<Response><Reject reason="busy"/></Response>"#)
}

/// Answers an incoming message with `bodies`, one `<Message>` each (Twilio
/// sends at most 10 per incoming message); none: an empty `<Response/>`,
/// which sends nothing.
pub fn messages(bodies: &[String]) -> String {
    messages_with(bodies, None)
}

/// As [`messages`], each `<Message>` asking Twilio to report its status to
/// `status_callback` (its `action` URL, `method="POST"`; Twilio's helper
/// libraries document the older `statusCallback` attribute as deprecated
/// in favour of `action`): a message Twilio took and then failed to
/// deliver is known only from that report.
pub fn messages_reporting_to(bodies: &[String], status_callback: &str) -> String {
    messages_with(bodies, Some(status_callback))
}

fn messages_with(bodies: &[String], status_callback: Option<&str>) -> String {
    let mut xml = format!("{PROLOG}<Response>");
    let open = match status_callback {
        Some(url) => format!(r#"<Message action="{}" method="POST">"#, escape(url)),
        None => "<Message>".to_owned(),
    };
    for body in bodies {
        let _infallible = write!(xml, "{open}{}</Message>", escape(body));
    }
    xml.push_str("</Response>");
    xml
}

/// `text` made safe for an XML attribute value. XML 1.0 cannot carry the
/// other control characters at all, even as references (a signed
/// `CallerName` may hold them): they are dropped, as is U+FFFE/U+FFFF.
fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) && !text.contains(needs_care) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if needs_care(c) => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A character that is not allowed in XML 1.0 (or, for tab and line
/// ends, is only kept as a character reference in an attribute).
fn needs_care(c: char) -> bool {
    c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connects_the_stream_with_its_parameters() {
        let xml = connect_stream(
            "wss://voice.example.com/twilio/ws",
            &[
                ("From".into(), "+15551234567".into()),
                ("note".into(), r#"a "quoted" <b>&'"#.into()),
            ],
        );
        assert_eq!(
            xml,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                r#"<Response><Connect><Stream url="wss://voice.example.com/twilio/ws">"#,
                r#"<Parameter name="From" value="+15551234567"/>"#,
                r#"<Parameter name="note" value="a &quot;quoted&quot; &lt;b&gt;&amp;&apos;"/>"#,
                r#"</Stream></Connect></Response>"#
            )
        );
    }

    #[test]
    fn control_characters_cannot_break_the_xml() {
        let xml = connect_stream(
            "wss://h/twilio/ws",
            &[(
                "CallerName".into(),
                "A\u{1}\u{8}\u{1b}[31m\tB\n\u{7f}\u{85}\u{FFFF}C".into(),
            )],
        );
        assert!(
            xml.contains(r#"<Parameter name="CallerName" value="A[31m&#9;B&#10;C"/>"#),
            "{xml}"
        );
        assert!(!xml.chars().any(|c| c.is_control()));
    }

    #[test]
    fn answers_a_message_with_escaped_bodies() {
        let xml = messages(&["5 < 6 & \"ok\"\nbye".to_owned()]);
        assert!(xml.ends_with(
            "<Response><Message>5 &lt; 6 &amp; &quot;ok&quot;&#10;bye</Message></Response>"
        ));
        assert!(messages(&[]).ends_with("<Response></Response>"));
    }

    #[test]
    fn a_message_can_ask_for_its_status() {
        let xml = messages_reporting_to(&["hi".to_owned()], "https://h/s?call_id=a&b");
        assert!(xml.ends_with(
            r#"<Response><Message action="https://h/s?call_id=a&amp;b" method="POST">hi</Message></Response>"#
        ));
    }

    #[test]
    fn rejects_with_a_busy_signal() {
        assert!(reject_busy().ends_with(r#"<Response><Reject reason="busy"/></Response>"#));
    }
}
