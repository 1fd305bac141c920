//! A processor of your own in a voxpipe pipeline: `hard_clip` limits the
//! caller's audio to a peak, is registered with the [`ProcessorRegistry`]
//! under a new `type`, used from a pipeline written in TOML, and run over
//! a second of generated audio through the library, as `voxpipe run` runs a
//! WAV file (no network, no keys).
//!
//! Run with: `cargo run --example custom_processor`

#![allow(clippy::print_stdout)] // an example reports on stdout

use std::error::Error;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use voxpipe::frame::{AudioFrame, Direction, Frame, FrameBody};
use voxpipe::pipeline::ProcessorFactory;
use voxpipe::pipeline::{BuildError, SessionSetup};
use voxpipe::pipeline::{NamedProcessor, SessionClock};
use voxpipe::pipeline::{Processor, ProcessorContext, ProcessorError};
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::processors::ProcessorRegistry;
use voxpipe::session::{SessionOptions, run_session};
use voxpipe::transport::TransportEnds;
use voxpipe::transport::file::FileInput;
use voxpipe::transport::{AudioSink, OutputTransport, Pacing};

/// The pipeline: clip the caller's audio, then the built-in `parrot`
/// repeats it (with no VAD, the whole input, once it has ended).
const PIPELINE: &str = r#"
[pipeline]
name = "clip-and-echo"
sample_rate = 16000

[[processor]]
type = "hard_clip"
limit = 2000

[[processor]]
type = "parrot"
"#;

/// `[[processor]] type = "hard_clip"`: the TOML table, which serde reads
/// and the registry checks (`deny_unknown_fields` rejects a misspelt key).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HardClipConfig {
    /// The largest sample magnitude let through.
    limit: i16,
}

impl ProcessorFactory for HardClipConfig {
    /// Builds one session's processor; a bad value is a [`BuildError`],
    /// reported before the session starts.
    fn build(&self, _setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        if self.limit <= 0 {
            return Err(BuildError::Invalid(format!(
                "limit must be above 0, not {}",
                self.limit
            )));
        }
        Ok(Box::new(HardClip { limit: self.limit }))
    }
}

/// Clips inbound audio to `±limit`; every other frame passes unchanged.
struct HardClip {
    limit: i16,
}

#[async_trait]
impl Processor for HardClip {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        let FrameBody::InputAudio(audio) = &frame.body else {
            // The contract: forward what you do not handle.
            ctx.push(frame, direction).await;
            return Ok(());
        };
        let clipped: Vec<i16> = audio
            .samples()
            .iter()
            .map(|s| (*s).clamp(-self.limit, self.limit))
            .collect();
        let clipped =
            AudioFrame::from_samples(&clipped, audio.sample_rate, audio.channels, audio.pts);
        ctx.push(FrameBody::InputAudio(clipped), direction).await;
        Ok(())
    }
}

/// Where the bot's audio goes: here, to a channel the example reads.
struct ChannelSink(mpsc::Sender<AudioFrame>);

impl AudioSink for ChannelSink {
    fn write(&mut self, audio: &AudioFrame) -> Result<(), ProcessorError> {
        self.0
            .send(audio.clone())
            .map_err(|_| ProcessorError::fatal("the example stopped listening"))
    }
}

/// One second of a 440 Hz tone of peak 8000 at 16 kHz.
fn tone() -> Vec<i16> {
    (0..16_000)
        .map(|i| {
            let t = f64::from(i) / 16_000.0;
            (8_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()).round() as i16
        })
        .collect()
}

fn peak(samples: &[i16]) -> i16 {
    samples
        .iter()
        .map(|s| s.saturating_abs())
        .max()
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // The built-in types, plus ours under a new `type`.
    let mut registry = ProcessorRegistry::builtin();
    registry.register::<HardClipConfig>("hard_clip");
    let config = parse_pipeline(Path::new("clip-and-echo.toml"), PIPELINE, &registry)?;

    let input = tone();
    let (sink, heard) = mpsc::channel();
    let ends = TransportEnds {
        input: NamedProcessor::new(
            "transport.input",
            FileInput::new(input.clone(), 16_000, false),
        ),
        output: NamedProcessor::new(
            "transport.output",
            // Released as the input's clock advances, not in real time.
            OutputTransport::new(ChannelSink(sink), Pacing::InboundAudio { realtime: false }),
        ),
    };
    let options = SessionOptions {
        setup: config.session_setup("example"),
        clock: SessionClock::audio(),
        observers: Vec::new(),
        memory: None,
    };
    let report = run_session(&config.processors, ends, options).await?;

    let out: Vec<i16> = heard.try_iter().flat_map(|a| a.samples()).collect();
    let echo = Duration::from_secs_f64(out.len() as f64 / 16_000.0);
    println!(
        "session ended ({}) after {:?}",
        report.end_reason, report.duration
    );
    println!("the parrot echoed {echo:?} of audio");
    println!("input peak {}, echo peak {}", peak(&input), peak(&out));
    if peak(&out) > 2_000 {
        return Err("the echo was not clipped to 2000".into());
    }
    Ok(())
}
