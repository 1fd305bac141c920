//! The fuzz targets' bodies: every parser that reads the network or a file,
//! driven as the server drives it, on arbitrary bytes.
//!
//! Each function must return for any input without panicking; where a
//! parser has a property beyond that (a codec's round trip, a decoder that
//! must not care how its input is split), the function asserts it. They
//! live in the library, not in `fuzz/`, because they reach parsers that
//! are not public; `fuzz/fuzz_targets/` holds one `cargo fuzz` target per
//! function, and `tests/integration/fuzz_corpus.rs` runs each over its committed seed
//! corpus (README, "Fuzzing").

use std::io::Cursor;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use webrtc::peer_connection::RTCSessionDescription;

use crate::audio::{mulaw, read_wav_from};
use crate::config::Override;
use crate::pipeline_file::parse_pipeline_with_overrides;
use crate::processors::ProcessorRegistry;
use crate::services::SseDecoder;
use crate::services::stt::{DeepgramListen, StreamingSpeech};
use crate::services::tts::{CartesiaSpeech, ElevenLabsSpeech, WsSpeech};
use crate::transport::rtvi::{is_rtvi, parse_rtvi};
use crate::transport::twilio::codec::InboundCodec;
use crate::transport::twilio::protocol::{InboundEvent, parse_inbound};
use crate::transport::webrtc::messages::parse_client_message;
use crate::transport::webrtc::signalling::{OfferRequest, PatchRequest, session_parameters};

/// One message from a Twilio media stream, as the socket reads it: parsed,
/// and a `media` payload decoded to 8 and 16 kHz audio as a call would.
pub fn twilio_message(data: &[u8]) {
    // The WebSocket layer refuses a text message that is not UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(event) = parse_inbound(text) else {
        return;
    };
    if let InboundEvent::Media(media) = event {
        for rate in [8_000, 16_000] {
            let Ok(mut codec) = InboundCodec::new(rate) else {
                return;
            };
            codec.push(&media.payload, Duration::from_millis(20));
            while codec.poll_frame().is_some() {}
        }
    }
}

/// Mu-law bytes decoded, encoded and decoded again: the second decoding
/// must equal the first (mu-law has two zeros, so the bytes need not).
pub fn mulaw_round_trip(data: &[u8]) {
    let mut decoded = Vec::new();
    mulaw::decode(data, &mut decoded);
    let mut encoded = Vec::new();
    mulaw::encode(&decoded, &mut encoded);
    let mut again = Vec::new();
    mulaw::decode(&encoded, &mut again);
    assert_eq!(decoded, again, "mu-law round trip changed the audio");
}

/// A server-sent event stream, whole and split at a point the first byte
/// picks: both must give the same events, as a chunked HTTP body may be
/// cut anywhere.
pub fn sse_stream(data: &[u8]) {
    let Some((&cut, body)) = data.split_first() else {
        return;
    };
    let whole = sse_events(&[body]);
    let at = usize::from(cut) * body.len() / 255;
    let (head, tail) = body.split_at(at.min(body.len()));
    assert_eq!(
        whole,
        sse_events(&[head, tail]),
        "SSE events depend on the split"
    );
}

/// An event's fields (`event`, `data`, `id`), or the decoder's error.
type DecodedEvent = Result<(Option<String>, String, Option<String>), String>;

fn sse_events(chunks: &[&[u8]]) -> Vec<DecodedEvent> {
    let mut decoder = SseDecoder::new();
    let mut events = Vec::new();
    let mut drain = |decoder: &mut SseDecoder| {
        while let Some(event) = decoder.poll_event() {
            events.push(
                event
                    .map(|e| (e.event, e.data, e.id))
                    .map_err(|e| e.to_string()),
            );
        }
    };
    for chunk in chunks {
        decoder.handle_bytes(chunk);
        drain(&mut decoder);
    }
    decoder.finish();
    drain(&mut decoder);
    events
}

/// One message from Deepgram's live transcription socket.
pub fn deepgram_message(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = DeepgramListen::fixture().parse(text);
    }
}

/// One message from ElevenLabs' multi-context speech socket.
pub fn elevenlabs_message(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ElevenLabsSpeech::fixture().parse(text);
    }
}

/// One message from Cartesia's speech socket.
pub fn cartesia_message(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = CartesiaSpeech::fixture().parse(text);
    }
}

/// The body of `POST /api/offer` or of its trickle `PATCH`, as the server
/// reads them before any connection is made; an offer's SDP is then parsed
/// as the peer connection parses it.
pub fn webrtc_signalling(data: &[u8]) {
    if let Ok(offer) = serde_json::from_slice::<OfferRequest>(data)
        && offer.validate().is_ok()
    {
        let _ = offer.custom_parameters();
        let _ = RTCSessionDescription::offer(offer.sdp).map(|offer| offer.unmarshal());
    }
    if let Ok(patch) = serde_json::from_slice::<PatchRequest>(data) {
        let _ = patch.validate();
    }
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        let _ = session_parameters(Some(&value));
    }
}

/// One message on the WebRTC data channel: RTVI when it says so, else
/// voxpipe's own client messages.
pub fn data_channel_message(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<Value>(data)
        && is_rtvi(&value)
    {
        let _ = parse_rtvi(&value);
        return;
    }
    let _ = parse_client_message(data);
}

/// A pipeline file with `--set` overrides: lines before a line `---` are
/// overrides (`key=value`), the rest is the TOML.
pub fn pipeline_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (sets, toml) = text.split_once("\n---\n").unwrap_or(("", text));
    let overrides: Vec<Override> = sets.lines().filter_map(|s| s.parse().ok()).collect();
    let _ = parse_pipeline_with_overrides(Path::new("fuzz.toml"), toml, &overrides, registry());
}

fn registry() -> &'static ProcessorRegistry {
    static REGISTRY: OnceLock<ProcessorRegistry> = OnceLock::new();
    REGISTRY.get_or_init(ProcessorRegistry::builtin)
}

/// A WAV file, as `voxpipe run --input` reads it.
pub fn wav_file(data: &[u8]) {
    let _ = read_wav_from(Cursor::new(data));
}

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus test and the `fuzz/` targets.
pub const TARGETS: &[(&str, Target)] = &[
    ("twilio_message", twilio_message),
    ("mulaw_round_trip", mulaw_round_trip),
    ("sse_stream", sse_stream),
    ("deepgram_message", deepgram_message),
    ("elevenlabs_message", elevenlabs_message),
    ("cartesia_message", cartesia_message),
    ("webrtc_signalling", webrtc_signalling),
    ("data_channel_message", data_channel_message),
    ("pipeline_toml", pipeline_toml),
    ("wav_file", wav_file),
];
