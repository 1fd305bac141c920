//! Turn latency end to end: from the true end of the user's speech to the
//! bot's first audio, and the turns cut off, over speech with known
//! boundaries (espeak-ng and sox) at 16 and 8 kHz, through `vad ▶ stt ▶
//! user_context ▶ llm ▶ tts ▶ assistant_context` against fake providers
//! answering with a provider's latency:
//!
//! - `realistic`: transcription 300 ms (after its request for segment STT,
//!   after the speech ends for streaming STT), LLM first token 400 ms, TTS
//!   first byte 200 ms;
//! - `fast`: 100, 150 and 100 ms.
//!
//! STT kinds: `segment` (OpenAI-compatible `/audio/transcriptions`, one
//! request per VAD utterance, and with the shipped agent's
//! `transcribe_on_pause` one more per pause spoken through) and `stream` (the fake Deepgram, its final
//! sent once the audio streamed reaches the transcription latency past
//! each part's end, as its endpointing does).
//!
//! Configurations: `baseline` (the VAD's 0.8 s stop ends the turn, as
//! before issue 16) and `shipped`: the `vad`, `user_context` and (for
//! segment STT) `stt` sections
//! read from `pipelines/agent.toml` (segment) and
//! `pipelines/agent_deepgram.toml` (stream) at run time, so the bench
//! measures what ships (`TURN_LATENCY_PIPELINES=DIR` reads them from DIR
//! instead, to try another configuration).
//! Speech: a complete sentence, the same sentence with a 400 or 600 ms
//! hesitation mid-phrase, and a sentence followed 600 ms later by more of
//! it (`sentence 600`: its first part's transcript ends a sentence, so only
//! a learned model can hear that the user is not done); a cut-off is a
//! user turn ended, or bot audio started, before the last part.
//!
//! The session runs live (wall clock), the audio fed in real time, each
//! 20 ms frame when its audio would have been captured; the latency is taken
//! from the session times the observers see. Each case runs
//! `TURN_LATENCY_RUNS` times (default 3); a line gives the median and
//! every run, the preemptive replies and the transcription requests of each.
//!
//! Run with: `cargo bench --bench turn_latency` (needs espeak-ng and sox).
//! `cargo bench --bench turn_latency -- --serve-fakes` serves the same
//! speech and scripted fakes to another pipeline instead: Pipecat's, in
//! `benches/pipecat_turn_latency.py`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use support::fake::deepgram::{FakeDeepgram, Script as DeepgramScript};
use support::fake::openai::{FakeOpenAi, Part, Reply, text_answer};
use support::session::build;
use support::speech::{say, section};
use voxpipe::conversation::Role;
use voxpipe::frame::{AudioFrame, Direction, FrameBody};
use voxpipe::pipeline::{NamedProcessor, Observer, PipelineParams, PipelineTask, PushEvent};
use voxpipe::processors::{AssistantContextConfig, UserContextConfig, VadConfig};
use voxpipe::services::llm::OpenAiLlmConfig;
use voxpipe::services::stt::{DeepgramSttConfig, OpenAiSttConfig};
use voxpipe::services::tts::OpenAiTtsConfig;

const FIRST: &str = "I would like to order";
const SECOND: &str = "a large pizza with mushrooms.";
const WHOLE: &str = "I would like to order a large pizza with mushrooms.";
/// A first part that is a sentence of its own: only the voice can tell
/// that more is coming.
const SENTENCE: &str = "I would like a large pizza.";
const MORE: &str = "With mushrooms and olives.";

/// Provider latencies: transcription, LLM first token, TTS first byte.
struct Latencies {
    name: &'static str,
    stt: Duration,
    llm: Duration,
    tts: Duration,
}

/// Speech with its true end: 300 ms of silence, the parts with `pause`
/// between them, then 2.5 s of silence for the answer.
struct Speech {
    samples: Vec<i16>,
    rate: u32,
    end: Duration,
    /// Where the last part begins: a turn ending before it cut the user off.
    last_part: Duration,
    /// Where each part ends.
    part_ends: Vec<Duration>,
}

fn speech(parts: &[&[i16]], pause: Duration, rate: u32) -> Speech {
    let silence = |d: Duration| vec![0_i16; (d.as_secs_f64() * f64::from(rate)) as usize];
    let at = |n: usize| Duration::from_secs_f64(n as f64 / f64::from(rate));
    let mut samples = silence(Duration::from_millis(300));
    let mut last_part = Duration::ZERO;
    let mut part_ends = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            samples.extend(silence(pause));
        }
        last_part = at(samples.len());
        samples.extend_from_slice(part);
        part_ends.push(at(samples.len()));
    }
    let end = at(samples.len());
    samples.extend(silence(Duration::from_millis(2_500)));
    Speech {
        samples,
        rate,
        end,
        last_part,
        part_ends,
    }
}

/// What the observers saw, in session time.
#[derive(Default)]
struct Seen {
    first_audio: Option<Duration>,
    user_turns: Vec<Duration>,
    preemptive: usize,
}

struct Watch(Arc<Mutex<Seen>>);

impl Observer for Watch {
    fn on_push(&self, event: &PushEvent<'_>) {
        let mut seen = self.0.lock().unwrap();
        match &event.frame.body {
            FrameBody::OutputAudio(_)
                if event.from == "assistant_context"
                    && event.direction == Direction::Downstream =>
            {
                seen.first_audio.get_or_insert(event.at);
            }
            FrameBody::TurnCompleted(turn)
                if event.from == "user_context" && turn.role == Role::User =>
            {
                seen.user_turns.push(event.at);
            }
            FrameBody::PreemptiveLlmMessages(_) if event.from == "user_context" => {
                seen.preemptive += 1;
            }
            _ => {}
        }
    }
}

/// The STT kinds.
#[derive(Clone, Copy, PartialEq)]
enum SttKind {
    Segment,
    Stream,
}

/// Where the agents' pipeline files are read: `TURN_LATENCY_PIPELINES`,
/// to try another configuration, or the shipped `pipelines/`.
fn pipelines() -> PathBuf {
    std::env::var_os("TURN_LATENCY_PIPELINES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines"),
        PathBuf::from,
    )
}

/// The fake providers of one run.
struct Fakes {
    openai: FakeOpenAi,
    deepgram: FakeDeepgram,
}

fn processors(fakes: &Fakes, shipped: bool, stt: SttKind, rate: u32) -> Vec<NamedProcessor> {
    let file = match stt {
        SttKind::Segment => "agent.toml",
        SttKind::Stream => "agent_deepgram.toml",
    };
    let (vad, user) = if shipped {
        (
            section(&pipelines().join(file), "vad"),
            section(&pipelines().join(file), "user_context"),
        )
    } else {
        (String::new(), String::new())
    };
    let url = &fakes.openai.base_url;
    let stt = match stt {
        SttKind::Segment => {
            // The shipped agent's keys (`transcribe_on_pause`), at the fake.
            let mut table: toml::Table = if shipped {
                toml::from_str(&section(&pipelines().join(file), "stt")).unwrap()
            } else {
                toml::Table::new()
            };
            for key in ["provider", "model", "api_key_env"] {
                table.remove(key);
            }
            table.insert("base_url".into(), url.clone().into());
            build::<OpenAiSttConfig>("stt", &toml::to_string(&table).unwrap(), &[])
        }
        SttKind::Stream => build::<DeepgramSttConfig>(
            "stt",
            &format!("base_url = \"{}\"", fakes.deepgram.url),
            &[("DEEPGRAM_API_KEY", "bench")],
        ),
    };
    let mut list = vec![
        build::<VadConfig>("vad", &vad, &[]),
        stt,
        build::<UserContextConfig>("user_context", &user, &[]),
        build::<OpenAiLlmConfig>("llm", &format!("base_url = \"{url}\"\nmodel = \"m\""), &[]),
        build::<OpenAiTtsConfig>(
            "tts",
            &format!("base_url = \"{url}\"\nvoice = \"nova\""),
            &[],
        ),
        build::<AssistantContextConfig>("assistant_context", "", &[]),
    ];
    // `build` makes 16 kHz processors; the VAD picks its model by rate.
    if rate != 16_000 {
        let config: VadConfig = toml::from_str(&vad).unwrap();
        let setup = voxpipe::pipeline::SessionSetup::new("bench", rate);
        list[0] = NamedProcessor {
            name: "vad".into(),
            processor: voxpipe::pipeline::ProcessorFactory::build(&config, &setup).unwrap(),
        };
    }
    list
}

/// Fake providers scripted for one turn over `speech`: a transcript per
/// part, each `latencies.stt` late (the fake Deepgram's finals that long
/// past each part's end), every chat answer and speech `latencies.llm` and
/// `latencies.tts` late; `spares` more transcriptions and speeches for a
/// client that asks more often. With `fed_from` (set when the audio starts
/// to flow), a transcription request gets the words of the last part ended
/// when it arrives, and the first part's before any ended: a segmented STT
/// may send at pauses the user speaks through, and drops those transcripts.
async fn scripted_fakes(
    speech: &Speech,
    transcripts: &[&str],
    latencies: &Latencies,
    spares: usize,
    fed_from: Option<Arc<OnceLock<tokio::time::Instant>>>,
) -> Fakes {
    let fakes = Fakes {
        openai: FakeOpenAi::start().await,
        deepgram: FakeDeepgram::start().await,
    };
    let server = &fakes.openai;
    if let Some(fed_from) = fed_from {
        let parts: Vec<(Duration, String)> = speech
            .part_ends
            .iter()
            .zip(transcripts)
            .map(|(end, text)| (*end, (*text).to_owned()))
            .collect();
        let stt_latency = latencies.stt;
        server.transcribe_with(move || {
            let heard = fed_from.get().map_or(Duration::ZERO, |from| from.elapsed());
            let text = parts
                .iter()
                .rev()
                .find(|(end, _)| *end <= heard)
                .or(parts.first())
                .map_or("", |(_, text)| text.as_str());
            Reply::Delayed(
                stt_latency,
                Box::new(Reply::Json(serde_json::json!({ "text": text }))),
            )
        });
    } else {
        // Requests past the script (more VAD segments than parts) are as slow.
        let last = transcripts.last().copied().unwrap_or_default();
        for text in transcripts.iter().chain(std::iter::repeat_n(&last, spares)) {
            server.push_transcription(Reply::Delayed(
                latencies.stt,
                Box::new(Reply::Json(serde_json::json!({ "text": text }))),
            ));
        }
    }
    // Linear16 at the pipeline's rate: two bytes a sample.
    let bytes_at = |at: Duration| (at + latencies.stt).as_secs_f64() * f64::from(speech.rate) * 2.0;
    fakes.deepgram.push_script(DeepgramScript {
        interim_every: usize::MAX,
        finals_at: speech
            .part_ends
            .iter()
            .zip(transcripts)
            .map(|(end, text)| (bytes_at(*end) as usize, (*text).to_owned()))
            .collect(),
        ..DeepgramScript::default()
    });
    server.chat_fallback(Reply::Delayed(
        latencies.llm,
        Box::new(Reply::Sse(text_answer("Sure. Anything else?"))),
    ));
    for _ in 0..8 + spares {
        server.push_speech(Reply::Delayed(
            latencies.tts,
            Box::new(Reply::Pcm(vec![Part::Raw(support::signal::tone_pcm(
                24_000, 0.5,
            ))])),
        ));
    }
    fakes
}

/// One turn; `(latency, cut off, preemptive replies, transcription
/// requests)`.
async fn run(
    speech: &Speech,
    transcripts: &[&str],
    latencies: &Latencies,
    shipped: bool,
    stt: SttKind,
) -> (Option<Duration>, bool, usize, usize) {
    let feeding_from = Arc::new(OnceLock::new());
    let fakes = scripted_fakes(
        speech,
        transcripts,
        latencies,
        0,
        Some(Arc::clone(&feeding_from)),
    )
    .await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut params = PipelineParams::new("bench", speech.rate);
    params.observers.push(Arc::new(Watch(Arc::clone(&seen))));
    let task = PipelineTask::new(processors(&fakes, shipped, stt, speech.rate), params);
    let handle = task.handle();
    let running = tokio::spawn(task.run());
    let frame = speech.rate as usize / 50;
    let started = *feeding_from.get_or_init(tokio::time::Instant::now);
    for (i, chunk) in speech.samples.chunks(frame).enumerate() {
        let pts = Duration::from_millis(20 * i as u64);
        // Captured at its end.
        tokio::time::sleep_until(started + pts + Duration::from_millis(20)).await;
        handle
            .queue_frame(FrameBody::InputAudio(AudioFrame::from_samples(
                chunk,
                speech.rate,
                1,
                pts,
            )))
            .await;
    }
    handle.end("bench over").await;
    let _ = running.await;
    let seen = seen.lock().unwrap();
    // Session time runs from the task's start, a hair before `started`.
    let latency = seen.first_audio.map(|at| at.saturating_sub(speech.end));
    let cut = seen.user_turns.iter().any(|at| *at < speech.last_part)
        || seen.first_audio.is_some_and(|at| at < speech.last_part);
    let requests = fakes.openai.received("audio/transcriptions").len();
    (latency, cut, seen.preemptive, requests)
}

/// The provider latencies measured: `realistic` and `fast`.
fn profiles() -> [Latencies; 2] {
    [
        Latencies {
            name: "realistic",
            stt: Duration::from_millis(300),
            llm: Duration::from_millis(400),
            tts: Duration::from_millis(200),
        },
        Latencies {
            name: "fast",
            stt: Duration::from_millis(100),
            llm: Duration::from_millis(150),
            tts: Duration::from_millis(100),
        },
    ]
}

/// The speech cases at `rate`: name, speech, a transcript per part.
fn cases(dir: &Path, rate: u32) -> [(&'static str, Speech, Vec<&'static str>); 4] {
    let whole = say(dir, "whole", WHOLE, rate);
    let first = say(dir, "first", FIRST, rate);
    let second = say(dir, "second", SECOND, rate);
    let sentence = say(dir, "sentence", SENTENCE, rate);
    let more = say(dir, "more", MORE, rate);
    [
        (
            "complete",
            speech(&[&whole], Duration::ZERO, rate),
            vec![WHOLE],
        ),
        (
            "pause 400",
            speech(&[&first, &second], Duration::from_millis(400), rate),
            vec![FIRST, SECOND],
        ),
        (
            "pause 600",
            speech(&[&first, &second], Duration::from_millis(600), rate),
            vec![FIRST, SECOND],
        ),
        (
            "sentence 600",
            speech(&[&sentence, &more], Duration::from_millis(600), rate),
            vec![SENTENCE, MORE],
        ),
    ]
}

/// `--serve-fakes`: the same speech and fake providers for another
/// pipeline (`benches/pipecat_turn_latency.py`). Each line on stdin,
/// `PROFILE RATE CASE` (e.g. `realistic 16000 pause 400`), starts fresh
/// fakes scripted for that turn, as a run of this bench does (with spare
/// replies, as slow, for a client that cuts more segments), writes the
/// case's audio to a WAV file, and answers with one JSON line: the fakes'
/// URLs, the file, and the speech's true end and last part (ms from the
/// file's start). It serves until stdin closes.
fn serve_fakes(runtime: &tokio::runtime::Runtime, dir: &Path) {
    let mut served = Vec::new();
    for line in std::io::stdin().lines() {
        let line = line.unwrap();
        let mut words = line.splitn(3, ' ');
        let (Some(profile), Some(rate), Some(case)) = (words.next(), words.next(), words.next())
        else {
            panic!("expected `PROFILE RATE CASE`, got {line:?}");
        };
        let latencies = profiles().into_iter().find(|p| p.name == profile).unwrap();
        let rate: u32 = rate.parse().unwrap();
        let (_, speech, transcripts) = cases(dir, rate)
            .into_iter()
            .find(|(name, _, _)| *name == case)
            .unwrap_or_else(|| panic!("no case {case:?}"));
        let wav = dir.join(format!("{}_{rate}.wav", case.replace(' ', "_")));
        voxpipe::audio::wav::write_wav(&wav, rate, &speech.samples).unwrap();
        let fakes = runtime.block_on(scripted_fakes(&speech, &transcripts, &latencies, 8, None));
        let answer = serde_json::json!({
            "openai": fakes.openai.base_url,
            "deepgram": fakes.deepgram.url,
            "wav": wav,
            "end_ms": speech.end.as_secs_f64() * 1e3,
            "last_part_ms": speech.last_part.as_secs_f64() * 1e3,
        });
        println!("{answer}");
        // Kept serving: the client may still be talking to the last ones.
        served.push(fakes);
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    if std::env::args().any(|arg| arg == "--serve-fakes") {
        serve_fakes(&runtime, dir.path());
        return;
    }
    let profiles = profiles();
    let runs: usize = std::env::var("TURN_LATENCY_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    println!(
        "config    stt      profile    rate   speech      median  runs (ms)          cut off  preemptive  stt requests"
    );
    for rate in [16_000, 8_000] {
        let cases = cases(dir.path(), rate);
        let configs = [
            ("baseline", false, SttKind::Segment),
            ("shipped", true, SttKind::Segment),
            ("shipped", true, SttKind::Stream),
        ];
        for (config, shipped, stt) in configs {
            for profile in &profiles {
                for (name, speech, transcripts) in &cases {
                    if !shipped && *name != "complete" {
                        continue;
                    }
                    let mut latencies = Vec::new();
                    let mut cut_offs = 0;
                    let mut preemptive = Vec::new();
                    let mut requests = Vec::new();
                    for _ in 0..runs {
                        let (latency, cut, prepared, sent) =
                            runtime.block_on(run(speech, transcripts, profile, shipped, stt));
                        latencies.push(latency.map_or(u128::MAX, |l| l.as_millis()));
                        cut_offs += usize::from(cut);
                        preemptive.push(prepared);
                        requests.push(sent);
                    }
                    let shown: Vec<String> = latencies
                        .iter()
                        .map(|l| {
                            if *l == u128::MAX {
                                "none".into()
                            } else {
                                l.to_string()
                            }
                        })
                        .collect();
                    latencies.sort_unstable();
                    let median = latencies[latencies.len() / 2];
                    let median = if median == u128::MAX {
                        "none".into()
                    } else {
                        format!("{median} ms")
                    };
                    let stt = match stt {
                        SttKind::Segment => "segment",
                        SttKind::Stream => "stream",
                    };
                    println!(
                        "{config:<9} {stt:<8} {:<10} {rate:<6} {name:<11} {median:>7}  {:<17}  {cut_offs}/{runs}      {preemptive:?}  {requests:?}",
                        profile.name,
                        shown.join(" "),
                    );
                }
            }
        }
    }
}
