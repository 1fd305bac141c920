//! The engine's own latency around the services, against fake servers on
//! loopback that answer at once (so what is measured is voxpipe: the
//! aggregator, the HTTP client, SSE parsing, sentence cutting, resampling,
//! the hops between processors; plus loopback HTTP).
//!
//! - `final_transcript_to_tts_request`: from a final transcription entering
//!   the pipeline (no VAD: handed as a turn at once) to the fake TTS server
//!   receiving the speech request. In between: the user aggregator, an LLM
//!   request and its streamed one-sentence answer, the sentence splitter,
//!   the TTS request.
//! - `tts_first_byte_to_output`: from the fake TTS server handing its first
//!   PCM bytes (24 kHz) to the moment the output transport writes the
//!   first audio (16 kHz) to its sink: HTTP body, resampling, the assistant
//!   aggregator, the output's schedule.
//!
//! Each iteration is one whole turn on a live (wall-clock) pipeline whose
//! output releases audio as inbound audio ticks it (as in a file run), so
//! the first audio of a turn leaves as soon as it arrives; the measured span
//! is taken from timestamps, so waiting for the turn to play out is not
//! counted.
//!
//! Run with: `cargo bench --bench services`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::Criterion;
use support::fake::openai::{FakeOpenAi, Part, Reply, text_answer};
use support::session::build;
use voxpipe::conversation::{LlmContext, SharedConversation};
use voxpipe::frame::{AudioFrame, FrameBody, TranscriptionFrame};
use voxpipe::pipeline::ProcessorError;
use voxpipe::pipeline::ProcessorFactory;
use voxpipe::pipeline::SessionSetup;
use voxpipe::pipeline::{NamedProcessor, PipelineHandle, PipelineParams, PipelineTask};
use voxpipe::processors::UserContextConfig;
use voxpipe::services::llm::OpenAiLlmConfig;
use voxpipe::services::tts::OpenAiTtsConfig;
use voxpipe::transport::{AudioSink, OutputTransport, Pacing};

/// Notes when audio reaches the sink.
#[derive(Clone, Default)]
struct TimedSink(Arc<Mutex<Vec<Instant>>>);

impl AudioSink for TimedSink {
    fn write(&mut self, _audio: &AudioFrame) -> Result<(), ProcessorError> {
        self.0.lock().unwrap().push(Instant::now());
        Ok(())
    }
}

struct Bench {
    server: FakeOpenAi,
    handle: PipelineHandle,
    conversation: Arc<SharedConversation>,
    sink: TimedSink,
    stops: Arc<Mutex<usize>>,
}

/// Counts the turns that played out.
struct TurnEnds(Arc<Mutex<usize>>);

impl voxpipe::pipeline::Observer for TurnEnds {
    fn on_push(&self, event: &voxpipe::pipeline::PushEvent<'_>) {
        // Pushed both ways: count it once.
        if event.from == "transport.output"
            && event.direction == voxpipe::frame::Direction::Downstream
            && matches!(event.frame.body, FrameBody::BotStoppedSpeaking)
        {
            *self.0.lock().unwrap() += 1;
        }
    }
}

async fn start() -> Bench {
    let server = FakeOpenAi::start().await;
    let setup = SessionSetup::new("bench", 16_000);
    let user: UserContextConfig = toml::from_str("").unwrap();
    let assistant: voxpipe::processors::AssistantContextConfig = toml::from_str("").unwrap();
    let sink = TimedSink::default();
    let processors = vec![
        NamedProcessor {
            name: "user_context".into(),
            processor: user.build(&setup).unwrap(),
        },
        build::<OpenAiLlmConfig>(
            "llm",
            &format!("base_url = \"{}\"\nmodel = \"m\"", server.base_url),
            &[],
        ),
        build::<OpenAiTtsConfig>("tts", &format!("base_url = \"{}\"", server.base_url), &[]),
        NamedProcessor {
            name: "assistant_context".into(),
            processor: assistant.build(&setup).unwrap(),
        },
        NamedProcessor::new(
            "transport.output",
            OutputTransport::new(sink.clone(), Pacing::InboundAudio { realtime: false }),
        ),
    ];
    let stops = Arc::new(Mutex::new(0));
    let mut params = PipelineParams::new("bench", 16_000);
    params.measure = false;
    params
        .observers
        .push(Arc::new(TurnEnds(Arc::clone(&stops))));
    let task = PipelineTask::new(processors, params);
    let handle = task.handle();
    tokio::spawn(task.run());
    let conversation = setup
        .resources
        .get::<SharedConversation>("default")
        .unwrap();
    Bench {
        server,
        handle,
        conversation,
        sink,
        stops,
    }
}

/// One turn: (transcript → TTS request, first TTS byte → sink).
async fn turn(bench: &Bench, n: usize) -> (Duration, Duration) {
    // A fresh conversation each turn keeps every request the same size.
    bench.conversation.lock().context = LlmContext::new();
    bench
        .server
        .push_chat(Reply::Sse(text_answer("Hello there, how can I help?")));
    bench
        .server
        .push_speech(Reply::Pcm(vec![Part::Raw(support::signal::tone_pcm(
            24_000, 0.04,
        ))]));
    let asked = Instant::now();
    bench
        .handle
        .queue_frame(FrameBody::Transcription(TranscriptionFrame {
            text: "Hi".into(),
            user_id: None,
            language: None,
            at: Duration::ZERO,
        }))
        .await;
    // The output releases audio as inbound audio ticks it, as in a file
    // run: tick until this turn's audio has played out.
    while *bench.stops.lock().unwrap() <= n {
        tokio::time::sleep(Duration::from_millis(5)).await;
        bench
            .handle
            .queue_frame(FrameBody::InputAudio(AudioFrame::from_samples(
                &[0; 320],
                16_000,
                1,
                Duration::ZERO,
            )))
            .await;
    }
    let request = bench.server.received("audio/speech")[n].at.into_std();
    let first_byte = bench.server.first_bytes("speech")[n];
    let written = bench
        .sink
        .0
        .lock()
        .unwrap()
        .iter()
        .copied()
        .find(|t| *t > first_byte)
        .unwrap();
    (request - asked, written - first_byte)
}

fn services(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bench = runtime.block_on(start());
    let turns = Arc::new(Mutex::new(0usize));
    let mut group = c.benchmark_group("services");
    // A turn takes about 60 ms of wall time (its audio plays out): few
    // iterations per sample.
    group
        .sample_size(30)
        .sampling_mode(criterion::SamplingMode::Flat)
        .measurement_time(Duration::from_secs(15));
    for (name, pick) in [
        ("final_transcript_to_tts_request", 0usize),
        ("tts_first_byte_to_output", 1),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let n = {
                            let mut turns = turns.lock().unwrap();
                            *turns += 1;
                            *turns - 1
                        };
                        let (to_request, to_output) = turn(&bench, n).await;
                        total += if pick == 0 { to_request } else { to_output };
                    }
                    total
                })
            });
        });
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    services(&mut criterion);
    criterion.final_summary();
}
