//! What Twilio sends on a media stream, as typed values.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

/// The only audio format Twilio streams: G.711 mu-law.
pub const MULAW_ENCODING: &str = "audio/x-mulaw";
/// Twilio's sample rate.
pub const TWILIO_SAMPLE_RATE: u32 = 8_000;

/// A message from Twilio. Its text fields borrow from the message where
/// they can: `media` comes every 20 ms, and its stream SID is only
/// compared, never kept.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundEvent<'a> {
    /// The WebSocket is open; the first message.
    Connected {
        /// `Call`.
        protocol: Option<Cow<'a, str>>,
        /// The protocol's version, e.g. `1.0.0`.
        version: Option<Cow<'a, str>>,
    },
    /// The stream starts; sent once.
    Start(StreamStart),
    /// 20 ms (usually) of the caller's audio.
    Media(Media<'a>),
    /// The caller pressed a key.
    Dtmf {
        /// The stream it belongs to.
        stream_sid: Option<Cow<'a, str>>,
        /// `0`-`9`, `*`, `#` or `A`-`D`.
        digit: char,
    },
    /// The audio we sent before the mark `name` has played, or was cleared.
    Mark {
        /// The stream it belongs to.
        stream_sid: Option<Cow<'a, str>>,
        /// The name we gave the mark.
        name: Cow<'a, str>,
    },
    /// The stream is over (the call ended or the stream was stopped).
    Stop {
        /// The stream it belongs to.
        stream_sid: Option<Cow<'a, str>>,
        /// The account, if given.
        account_sid: Option<Cow<'a, str>>,
        /// The call, if given.
        call_sid: Option<Cow<'a, str>>,
    },
}

impl InboundEvent<'_> {
    /// The event's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            InboundEvent::Connected { .. } => "connected",
            InboundEvent::Start(_) => "start",
            InboundEvent::Media(_) => "media",
            InboundEvent::Dtmf { .. } => "dtmf",
            InboundEvent::Mark { .. } => "mark",
            InboundEvent::Stop { .. } => "stop",
        }
    }
}

/// What a `start` message says about the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStart {
    /// The stream's id (`MZ…`); every message we send names it.
    pub stream_sid: String,
    /// The account (`AC…`), needed to hang up through the REST API.
    pub account_sid: Option<String>,
    /// The call (`CA…`), needed to hang up through the REST API.
    pub call_sid: Option<String>,
    /// The tracks that will come: `inbound`, `outbound`.
    pub tracks: Vec<String>,
    /// The `<Parameter>`s of the TwiML `<Stream>`.
    pub custom_parameters: BTreeMap<String, String>,
    /// The audio format: always mu-law 8 kHz mono for Twilio.
    pub media_format: MediaFormat,
}

/// The audio format of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFormat {
    /// `audio/x-mulaw`.
    pub encoding: String,
    /// 8000.
    pub sample_rate: u32,
    /// 1.
    pub channels: u16,
}

impl Default for MediaFormat {
    fn default() -> Self {
        MediaFormat {
            encoding: MULAW_ENCODING.to_owned(),
            sample_rate: TWILIO_SAMPLE_RATE,
            channels: 1,
        }
    }
}

/// Which side of the call audio belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// The caller.
    Inbound,
    /// What the call plays (our audio, on streams that carry both tracks).
    Outbound,
}

/// One `media` message.
#[derive(Debug, Clone, PartialEq)]
pub struct Media<'a> {
    /// The stream it belongs to.
    pub stream_sid: Option<Cow<'a, str>>,
    /// Whose audio.
    pub track: Track,
    /// Chunk number, from 1.
    pub chunk: Option<u64>,
    /// Milliseconds since the stream started.
    pub timestamp: Option<Duration>,
    /// mu-law bytes, one per sample at 8 kHz.
    pub payload: Vec<u8>,
}
