//! One Twilio parrot call's media work, in process and without sockets, so
//! that it can be counted exactly: for every 20 ms the server parses a
//! `media` message (JSON, base64 mu-law), decodes it to the pipeline's
//! 16 kHz (`InboundCodec`), scores it as the `vad` processor does
//! (`FrameVad` with Silero: for a phone call, the 8 kHz source is scored at
//! 8 kHz) and, as the parrot does while it plays, sends the frame back: to
//! 8 kHz mu-law (`OutboundCodec`) and a `media` message. The caller speaks
//! `assets/samples/hello_8k.wav` over and over. A real call sends back only
//! while the parrot plays, and the runtime, WebSocket framing and TCP are
//! not here: `twilio_load` measures those.
//!
//! For instructions per call-second (repeatable on a busy machine):
//!
//! ```sh
//! valgrind --tool=callgrind --toggle-collect='*call_second*' \
//!   target/release/deps/twilio_media-* --secs 10
//! ```
//!
//! and divide the instructions by 10. Without valgrind it prints the time.
//!
//! Run with: `cargo bench --bench twilio_media [-- --secs N]`

#![allow(clippy::expect_used)] // benchmark set-up may panic
#![allow(clippy::print_stdout)] // the result is printed

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use voxpipe::audio::mulaw;
use voxpipe::audio::wav::read_wav;
use voxpipe::transport::twilio::codec::{CHUNK_BYTES, InboundCodec, OutboundCodec};
use voxpipe::transport::twilio::protocol::{InboundEvent, MediaMessages, parse_inbound};
use voxpipe::vad::{FrameVad, SileroVad, VadParams};

/// The pipeline's rate in `pipelines/parrot.toml`.
const PIPELINE_RATE: u32 = 16_000;

/// The messages a caller sends in `secs` seconds.
fn caller_messages(secs: usize) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples/hello_8k.wav");
    let speech = read_wav(&path).expect("sample speech").to_mono();
    let mut mulaw_speech = Vec::new();
    mulaw::encode(&speech, &mut mulaw_speech);
    mulaw_speech
        .chunks_exact(CHUNK_BYTES)
        .cycle()
        .take(secs * 50)
        .enumerate()
        .map(|(i, payload)| {
            format!(
                r#"{{"event":"media","sequenceNumber":"{}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":"{}"}},"streamSid":"MZ0123456789abcdef0123456789abcdef"}}"#,
                i + 2,
                i + 1,
                i * 20,
                BASE64.encode(payload)
            )
        })
        .collect()
}

/// The call's state.
struct Call {
    inbound: InboundCodec,
    vad: FrameVad,
    outbound: OutboundCodec,
    messages: MediaMessages,
}

/// One second of the call: 50 messages in, 50 out. Kept out of line for
/// callgrind's `--toggle-collect`.
#[inline(never)]
fn call_second(call: &mut Call, second: &[String], start: Duration) -> usize {
    let mut sent = 0;
    for (i, message) in second.iter().enumerate() {
        let Ok(InboundEvent::Media(media)) = parse_inbound(message) else {
            panic!("a media message");
        };
        call.inbound
            .push(&media.payload, start + Duration::from_millis(20 * i as u64));
        while let Some(frame) = call.inbound.poll_frame() {
            call.vad.push(&frame).expect("vad");
            call.outbound.push(&frame).expect("encode");
        }
        while let Some(chunk) = call.outbound.poll_chunk() {
            sent += black_box(call.messages.message(chunk)).len();
        }
    }
    sent
}

fn main() {
    let mut secs = 60;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        // `cargo bench` passes `--bench`.
        if arg == "--secs" {
            secs = args.next().and_then(|s| s.parse().ok()).expect("--secs N");
        }
    }
    let messages = caller_messages(secs);
    let mut call = Call {
        inbound: InboundCodec::new(PIPELINE_RATE).expect("codec"),
        vad: FrameVad::new(
            Box::new(SileroVad::new(PIPELINE_RATE).expect("silero")),
            VadParams::default(),
        ),
        outbound: OutboundCodec::new(),
        messages: MediaMessages::new("MZ0123456789abcdef0123456789abcdef"),
    };
    let started = Instant::now();
    let mut sent = 0;
    for (s, second) in messages.chunks(50).enumerate() {
        sent += call_second(&mut call, second, Duration::from_secs(s as u64));
    }
    let elapsed = started.elapsed();
    println!(
        "{secs} call-seconds in {elapsed:.2?}: {:.3} ms CPU per call-second ({sent} bytes sent)",
        elapsed.as_secs_f64() * 1000.0 / secs as f64
    );
}
