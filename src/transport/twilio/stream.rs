//! The inbound side of one Twilio stream as a state machine, without I/O:
//! text messages in ([`StreamReader::handle_text`]), what they mean out,
//! and the caller's audio as 20 ms frames ([`StreamReader::poll_audio`]).
//!
//! It decides what each message means at this point of the stream: audio
//! before `start` is skipped (there is no session to give it to yet), a
//! second `start` is skipped, a message naming another stream is skipped,
//! and so on. Skipping is always the answer to bad input, except for a
//! `start` whose audio format cannot be decoded: that stream cannot go on.

use std::time::Duration;

use crate::audio::AudioError;
use crate::frame::AudioFrame;

pub use crate::transport::real_time::AHEAD_ALLOWANCE;
use crate::transport::real_time::RealTimeBudget;

use super::codec::{InboundCodec, mulaw_duration};
use super::protocol::{InboundEvent, ProtocolError, StreamStart, Track, parse_inbound};

/// What one message means.
#[derive(Debug)]
pub enum Inbound {
    /// The stream started: a session can begin.
    Started(StreamStart),
    /// Caller audio was decoded: frames may be ready in
    /// [`StreamReader::poll_audio`].
    Audio,
    /// The caller pressed a key.
    Dtmf(char),
    /// Twilio played (or cleared) the audio we sent before this mark.
    MarkPlayed(String),
    /// Twilio ended the stream: the call is over.
    Stopped,
    /// Nothing to do (`connected`, our own audio on an outbound track).
    Ignored,
    /// The message was skipped, for this reason.
    Skipped(Skip),
    /// The stream cannot go on.
    Failed(ProtocolError),
}

/// Why a message was skipped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Skip {
    /// It could not be read.
    #[error(transparent)]
    Protocol(ProtocolError),
    /// It came before `start`, when there is no session for it.
    #[error("`{0}` before `start`")]
    BeforeStart(&'static str),
    /// The stream had already started.
    #[error("a second `start`")]
    DuplicateStart,
    /// It names another stream than the one that started.
    #[error("`{event}` for another stream (`{stream_sid}`)")]
    OtherStream {
        /// The event.
        event: &'static str,
        /// The stream it named.
        stream_sid: String,
    },
    /// It came after `stop`.
    #[error("`{0}` after `stop`")]
    AfterStop(&'static str),
    /// A binary message: Twilio sends only text.
    #[error("a binary message of {0} bytes; Twilio sends JSON text")]
    Binary(usize),
    /// Caller audio further ahead of real time than the allowance: Twilio
    /// streams in real time, so this is a flood, dropped rather than held.
    #[error("caller audio more than {AHEAD_ALLOWANCE:?} ahead of real time")]
    AheadOfRealTime,
}

impl Skip {
    /// A short stable label for metrics and logs, e.g. `before_start`.
    pub fn kind(&self) -> &'static str {
        match self {
            Skip::Protocol(e) => e.kind(),
            Skip::BeforeStart(_) => "before_start",
            Skip::DuplicateStart => "duplicate_start",
            Skip::OtherStream { .. } => "other_stream",
            Skip::AfterStop(_) => "after_stop",
            Skip::Binary(_) => "binary_message",
            Skip::AheadOfRealTime => "media_ahead_of_real_time",
        }
    }
}

/// The inbound state of one stream.
#[derive(Debug)]
pub struct StreamReader {
    codec: InboundCodec,
    stream_sid: Option<String>,
    stopped: bool,
    budget: RealTimeBudget,
}

impl StreamReader {
    /// A reader decoding caller audio to `pipeline_rate`.
    pub fn new(pipeline_rate: u32) -> Result<Self, AudioError> {
        Ok(StreamReader {
            codec: InboundCodec::new(pipeline_rate)?,
            stream_sid: None,
            stopped: false,
            budget: RealTimeBudget::default(),
        })
    }

    /// Handles one text message that arrived at session time `now`.
    pub fn handle_text(&mut self, message: &str, now: Duration) -> Inbound {
        let event = match parse_inbound(message) {
            Ok(event) => event,
            Err(e @ ProtocolError::UnsupportedFormat { .. }) if self.stream_sid.is_none() => {
                return Inbound::Failed(e);
            }
            Err(e) => return Inbound::Skipped(Skip::Protocol(e)),
        };
        if self.stopped {
            return Inbound::Skipped(Skip::AfterStop(event.name()));
        }
        let Some(stream_sid) = &self.stream_sid else {
            return match event {
                InboundEvent::Connected { .. } => Inbound::Ignored,
                InboundEvent::Start(start) => {
                    self.stream_sid = Some(start.stream_sid.clone());
                    Inbound::Started(start)
                }
                InboundEvent::Stop { .. } => {
                    self.stopped = true;
                    Inbound::Stopped
                }
                other => Inbound::Skipped(Skip::BeforeStart(other.name())),
            };
        };
        let named = match &event {
            InboundEvent::Media(media) => media.stream_sid.as_deref(),
            InboundEvent::Dtmf { stream_sid, .. }
            | InboundEvent::Mark { stream_sid, .. }
            | InboundEvent::Stop { stream_sid, .. } => stream_sid.as_deref(),
            InboundEvent::Connected { .. } | InboundEvent::Start(_) => None,
        };
        if let Some(named) = named
            && named != stream_sid
        {
            return Inbound::Skipped(Skip::OtherStream {
                event: event.name(),
                stream_sid: named.chars().take(64).collect(),
            });
        }
        match event {
            InboundEvent::Connected { .. } => Inbound::Ignored,
            InboundEvent::Start(_) => Inbound::Skipped(Skip::DuplicateStart),
            // Nothing to hear: not caller audio, so it cannot keep the
            // stream alive either.
            InboundEvent::Media(media)
                if media.track == Track::Outbound || media.payload.is_empty() =>
            {
                Inbound::Ignored
            }
            InboundEvent::Media(media) => {
                if !self.budget.admit(now, mulaw_duration(media.payload.len())) {
                    return Inbound::Skipped(Skip::AheadOfRealTime);
                }
                self.codec.push(&media.payload, now);
                Inbound::Audio
            }
            InboundEvent::Dtmf { digit, .. } => Inbound::Dtmf(digit),
            InboundEvent::Mark { name, .. } => Inbound::MarkPlayed(name.into_owned()),
            InboundEvent::Stop { .. } => {
                self.stopped = true;
                Inbound::Stopped
            }
        }
    }

    /// A binary message arrived.
    pub fn handle_binary(&mut self, len: usize) -> Inbound {
        Inbound::Skipped(Skip::Binary(len))
    }

    /// The stream started `waited` before its first read: Twilio streams
    /// from `start` on, so that much audio waits as a backlog, owed its
    /// time on top of the real-time allowance.
    pub fn set_head_start(&mut self, waited: Duration) {
        self.budget.set_head_start(waited);
    }

    /// See [`InboundCodec::set_lead_allowance`].
    pub fn set_lead_allowance(&mut self, allowance: Duration) {
        self.codec.set_lead_allowance(allowance);
    }

    /// Silence up to session time `now` in place of caller audio that has
    /// stopped coming; `false` when none was missing. See
    /// [`InboundCodec::fill_silence`].
    pub fn fill_silence(&mut self, now: Duration) -> bool {
        !self.stopped && self.codec.fill_silence(now)
    }

    /// The next 20 ms of caller audio at the pipeline rate, if ready.
    pub fn poll_audio(&mut self) -> Option<AudioFrame> {
        self.codec.poll_frame()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"streamSid":"MZ1","accountSid":"AC1","callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{}}}"#;

    fn media(sid: &str) -> String {
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::STANDARD.encode([0xFF_u8; 160]);
        format!(
            r#"{{"event":"media","streamSid":"{sid}","media":{{"track":"inbound","chunk":"1","timestamp":"0","payload":"{payload}"}}}}"#
        )
    }

    fn started() -> StreamReader {
        let mut reader = StreamReader::new(16_000).unwrap();
        assert!(matches!(
            reader.handle_text(START, Duration::ZERO),
            Inbound::Started(_)
        ));
        reader
    }

    #[test]
    fn audio_before_start_is_skipped_and_after_start_decoded() {
        let mut reader = StreamReader::new(16_000).unwrap();
        let connected = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;
        assert!(matches!(
            reader.handle_text(connected, Duration::ZERO),
            Inbound::Ignored
        ));
        let early = reader.handle_text(&media("MZ1"), Duration::ZERO);
        assert!(
            matches!(&early, Inbound::Skipped(s) if s.kind() == "before_start"),
            "{early:?}"
        );
        assert!(reader.poll_audio().is_none());
        assert!(matches!(
            reader.handle_text(START, Duration::ZERO),
            Inbound::Started(s) if s.stream_sid == "MZ1"
        ));
        assert!(matches!(
            reader.handle_text(&media("MZ1"), Duration::from_millis(20)),
            Inbound::Audio
        ));
        assert_eq!(reader.poll_audio().unwrap().num_frames(), 320);
    }

    #[test]
    fn media_without_audio_is_not_caller_audio() {
        let mut reader = started();
        let empty = r#"{"event":"media","streamSid":"MZ1","media":{"track":"inbound","chunk":"1","timestamp":"0","payload":""}}"#;
        let inbound = reader.handle_text(empty, Duration::ZERO);
        assert!(matches!(inbound, Inbound::Ignored), "{inbound:?}");
        assert!(reader.poll_audio().is_none());
    }

    #[test]
    fn another_streams_messages_and_a_second_start_are_skipped() {
        let mut reader = started();
        let other = reader.handle_text(&media("MZ2"), Duration::ZERO);
        assert!(matches!(&other, Inbound::Skipped(s) if s.kind() == "other_stream"));
        assert!(reader.poll_audio().is_none());
        let again = reader.handle_text(START, Duration::ZERO);
        assert!(matches!(&again, Inbound::Skipped(s) if s.kind() == "duplicate_start"));
    }

    #[test]
    fn stop_ends_the_stream_and_later_messages_are_skipped() {
        let mut reader = started();
        let stop =
            r#"{"event":"stop","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}"#;
        assert!(matches!(
            reader.handle_text(stop, Duration::ZERO),
            Inbound::Stopped
        ));
        let late = reader.handle_text(&media("MZ1"), Duration::ZERO);
        assert!(matches!(&late, Inbound::Skipped(s) if s.kind() == "after_stop"));
    }

    #[test]
    fn media_beyond_real_time_and_the_allowance_is_dropped() {
        let mut reader = started();
        // Two seconds (the allowance) at once is taken...
        for _ in 0..100 {
            assert!(matches!(
                reader.handle_text(&media("MZ1"), Duration::ZERO),
                Inbound::Audio
            ));
        }
        while reader.poll_audio().is_some() {}
        // ...the next 20 ms only once 20 ms have passed.
        let over = reader.handle_text(&media("MZ1"), Duration::from_millis(10));
        assert!(matches!(&over, Inbound::Skipped(s) if s.kind() == "media_ahead_of_real_time"));
        assert!(reader.poll_audio().is_none(), "dropped, not decoded");
        assert!(matches!(
            reader.handle_text(&media("MZ1"), Duration::from_millis(20)),
            Inbound::Audio
        ));
        // A stream in real time is never over.
        let mut steady = started();
        for n in 0..1_000u64 {
            let at = Duration::from_millis(20 * n);
            assert!(matches!(
                steady.handle_text(&media("MZ1"), at),
                Inbound::Audio
            ));
        }
    }

    #[test]
    fn an_undecodable_start_fails_the_stream() {
        let mut reader = StreamReader::new(16_000).unwrap();
        let l16 = START.replace("audio/x-mulaw", "audio/x-l16");
        assert!(matches!(
            reader.handle_text(&l16, Duration::ZERO),
            Inbound::Failed(ProtocolError::UnsupportedFormat { .. })
        ));
    }

    #[test]
    fn marks_dtmf_and_our_own_track_are_told_apart() {
        let mut reader = started();
        let mark = r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"u1"}}"#;
        assert!(
            matches!(reader.handle_text(mark, Duration::ZERO), Inbound::MarkPlayed(n) if n == "u1")
        );
        let dtmf =
            r##"{"event":"dtmf","streamSid":"MZ1","dtmf":{"track":"inbound_track","digit":"#"}}"##;
        assert!(matches!(
            reader.handle_text(dtmf, Duration::ZERO),
            Inbound::Dtmf('#')
        ));
        let ours = media("MZ1").replace("\"inbound\"", "\"outbound\"");
        assert!(matches!(
            reader.handle_text(&ours, Duration::ZERO),
            Inbound::Ignored
        ));
        assert!(matches!(
            reader.handle_binary(3),
            Inbound::Skipped(Skip::Binary(3))
        ));
    }
}
