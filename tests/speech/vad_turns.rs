//! Turn-taking end to end, as a user runs it: `voxpipe run` over speech
//! made with espeak-ng and sox, with silences of known length between the
//! utterances, so the true speech boundaries are known from how the file
//! was built.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::speech::{run_tool, say};
use voxpipe::audio::wav::{read_wav, write_wav};

/// How far a reported boundary may be from the true one.
const TOLERANCE_MS: i64 = 100;
/// The VAD's default `stop_secs`.
const STOP_MS: i64 = 800;

enum Part {
    Silence(f64),
    Say(&'static str),
}

/// A WAV of `parts`, and where each utterance truly starts and ends (ms).
struct Speech {
    path: PathBuf,
    rate: u32,
    samples: Vec<i16>,
    utterances: Vec<(i64, i64)>,
}

fn speech(dir: &Path, rate: u32, parts: &[Part]) -> Speech {
    let ms = |samples: usize| (samples as u64 * 1000 / u64::from(rate)) as i64;
    let mut samples = Vec::new();
    let mut utterances = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        match part {
            Part::Silence(secs) => {
                samples.resize(samples.len() + (secs * f64::from(rate)) as usize, 0)
            }
            Part::Say(text) => {
                let start = samples.len();
                samples.extend(say(dir, &format!("u{index}"), text, rate));
                utterances.push((ms(start), ms(samples.len())));
            }
        }
    }
    let path = dir.join(format!("speech_{rate}.wav"));
    write_wav(&path, rate, &samples).unwrap();
    Speech {
        path,
        rate,
        samples,
        utterances,
    }
}

/// `voxpipe run pipelines/parrot.toml` on `input` with `--set`s; the
/// events, and the output WAV's samples.
fn run_parrot(dir: &Path, input: &Path, sets: &[String]) -> (Vec<Value>, Vec<i16>) {
    let output = dir.join("out.wav");
    let mut args = vec![
        "run".to_owned(),
        "pipelines/parrot.toml".to_owned(),
        "--input".to_owned(),
        input.display().to_string(),
        "--output".to_owned(),
        output.display().to_string(),
        "--events".to_owned(),
    ];
    for set in sets {
        args.push("--set".to_owned());
        args.push(set.clone());
    }
    let out = Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (events, read_wav(&output).unwrap().to_mono())
}

fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

fn int(event: &Value, field: &str) -> i64 {
    event[field].as_i64().unwrap()
}

fn two_utterances(dir: &Path, rate: u32) -> Speech {
    speech(
        dir,
        rate,
        &[
            Part::Silence(1.0),
            Part::Say("The quick brown fox jumps over the lazy dog."),
            Part::Silence(1.6),
            Part::Say("Please call me back tomorrow morning."),
            Part::Silence(1.5),
        ],
    )
}

fn assert_boundaries(engine: &str, rate: u32) {
    let dir = tempfile::tempdir().unwrap();
    let speech = two_utterances(dir.path(), rate);
    let (events, _) = run_parrot(
        dir.path(),
        &speech.path,
        &[
            format!("processor.0.engine={engine}"),
            format!("pipeline.sample_rate={rate}"),
        ],
    );
    let starts = named(&events, "user_started_speaking");
    let stops = named(&events, "user_stopped_speaking");
    let context = format!(
        "{engine} at {rate} Hz: truth {:?}, events {starts:?} {stops:?}",
        speech.utterances
    );
    eprintln!("{context}");
    assert_eq!(starts.len(), speech.utterances.len(), "{context}");
    assert_eq!(stops.len(), speech.utterances.len(), "{context}");
    for ((start, stop), (true_start, true_end)) in starts.iter().zip(&stops).zip(&speech.utterances)
    {
        let near = |got: i64, want: i64| (got - want).abs() <= TOLERANCE_MS;
        assert!(
            near(int(start, "start_ms"), *true_start),
            "start: {context}"
        );
        assert!(near(int(stop, "end_ms"), *true_end), "end: {context}");
        // The stop is decided stop_secs after the end.
        assert!(
            near(int(stop, "t_ms"), true_end + STOP_MS),
            "stop decision: {context}"
        );
        // The start is decided after start_secs of speech, not before.
        assert!(
            int(start, "t_ms") >= int(start, "start_ms") + 200,
            "start decision: {context}"
        );
    }
}

#[test]
fn silero_finds_the_speech_boundaries_at_16k() {
    assert_boundaries("silero", 16_000);
}

#[test]
fn silero_finds_the_speech_boundaries_at_8k() {
    assert_boundaries("silero", 8_000);
}

#[test]
fn silero_finds_the_speech_boundaries_at_48k_through_the_resampler() {
    assert_boundaries("silero", 48_000);
}

#[test]
fn earshot_finds_the_speech_boundaries_at_16k() {
    assert_boundaries("earshot", 16_000);
}

#[test]
fn earshot_finds_the_speech_boundaries_at_8k() {
    assert_boundaries("earshot", 8_000);
}

#[test]
fn silence_and_faint_noise_are_not_speech() {
    let dir = tempfile::tempdir().unwrap();
    let silence = dir.path().join("silence.wav");
    write_wav(&silence, 16_000, &vec![0; 16_000 * 3]).unwrap();
    // White noise at about -50 dBFS: a quiet room.
    let noise = dir.path().join("noise.wav");
    run_tool(
        "sox",
        &[
            "-n",
            "-r",
            "16000",
            "-c",
            "1",
            "-b",
            "16",
            noise.to_str().unwrap(),
            "synth",
            "3",
            "whitenoise",
            "vol",
            "0.003",
        ],
    );
    for engine in ["silero", "earshot"] {
        for input in [&silence, &noise] {
            let (events, output) =
                run_parrot(dir.path(), input, &[format!("processor.0.engine={engine}")]);
            let speech_events: Vec<_> = events
                .iter()
                .filter(|e| e["event"].as_str().unwrap().starts_with("user_"))
                .collect();
            assert!(
                speech_events.is_empty(),
                "{engine} on {}: {speech_events:?}",
                input.display()
            );
            assert!(output.iter().all(|s| *s == 0), "nothing to repeat");
        }
    }
}

/// Speech that the parrot plays back while the user speaks again.
fn barge_in_speech(dir: &Path) -> Speech {
    speech(
        dir,
        16_000,
        &[
            Part::Silence(0.5),
            Part::Say(
                "I would like to book a table for four people at eight o'clock tonight, please.",
            ),
            // The playback starts about 0.8 s into this silence.
            Part::Silence(1.5),
            Part::Say("Actually, make that six people."),
            Part::Silence(4.0),
        ],
    )
}

fn energy(samples: &[i16]) -> f64 {
    samples.iter().map(|s| f64::from(*s).powi(2)).sum()
}

#[test]
fn user_speech_over_the_playback_interrupts_it_within_a_frame() {
    let dir = tempfile::tempdir().unwrap();
    let speech = barge_in_speech(dir.path());
    let (events, output) = run_parrot(dir.path(), &speech.path, &[]);
    let at = |ms: i64| (ms * i64::from(speech.rate) / 1000) as usize;
    let (second_start, second_end) = speech.utterances[1];

    let interruptions = named(&events, "interruption");
    assert_eq!(interruptions.len(), 1, "{events:?}");
    let interrupted = int(interruptions[0], "t_ms");
    eprintln!(
        "second utterance at {second_start} ms; {:?}",
        interruptions[0]
    );
    // After min_secs (0.3 s) of the user's speech, while they still speak
    // (Pipecat's start decision itself may take half a second when a
    // consonant's closure restarts its count).
    assert!(
        (second_start + 300..second_end).contains(&interrupted),
        "interrupted at {interrupted} ms, speech from {second_start} to {second_end} ms"
    );
    assert!(int(interruptions[0], "played_ms") > 0 && int(interruptions[0], "cut_ms") > 0);

    // The bot was audible right up to the interruption...
    let playback_start = int(named(&events, "bot_started_speaking")[0], "t_ms");
    assert!(energy(&output[at(interrupted - 200)..at(interrupted)]) > 0.0);
    // ...and silent from one 20 ms frame after it until it speaks again
    // (repeating the interrupting utterance).
    let next_playback = named(&events, "bot_started_speaking")
        .iter()
        .map(|e| int(e, "t_ms"))
        .find(|t| *t > interrupted)
        .unwrap();
    let silent = &output[at(interrupted + 20)..at(next_playback)];
    assert!(
        silent.iter().all(|s| *s == 0),
        "bot audio after the interruption"
    );
    assert!(next_playback > playback_start);
}

#[test]
fn without_interruptions_the_playback_plays_on() {
    let dir = tempfile::tempdir().unwrap();
    let speech = barge_in_speech(dir.path());
    let (events, output) = run_parrot(
        dir.path(),
        &speech.path,
        &["pipeline.allow_interruptions=false".to_owned()],
    );
    assert!(named(&events, "interruption").is_empty(), "{events:?}");
    let at = |ms: i64| (ms * i64::from(speech.rate) / 1000) as usize;
    let (first_start, first_end) = speech.utterances[0];
    let playback_start = int(named(&events, "bot_started_speaking")[0], "t_ms");
    // The whole first utterance is played back, over the user's second one.
    let played = &output[at(playback_start)..at(playback_start + first_end - first_start)];
    let heard = &speech.samples[at(first_start)..at(first_end)];
    let ratio = energy(played) / energy(heard);
    assert!(
        (0.95..=1.05).contains(&ratio),
        "played back {ratio} of the utterance's energy"
    );
}

/// Discards bot audio.
struct NoSink;

impl voxpipe::transport::AudioSink for NoSink {
    fn write(
        &mut self,
        _audio: &voxpipe::frame::AudioFrame,
    ) -> Result<(), voxpipe::pipeline::ProcessorError> {
        Ok(())
    }
}

/// One file session of `config` over `samples` (16 kHz); the VAD's
/// decisions, as debug strings.
async fn vad_decisions(
    config: &voxpipe::pipeline_file::PipelineConfig,
    samples: Vec<i16>,
) -> Vec<String> {
    use voxpipe::pipeline::{NamedProcessor, SessionClock};
    use voxpipe::session::{SessionOptions, run_session};
    use voxpipe::transport::TransportEnds;

    use voxpipe::transport::file::FileInput;
    use voxpipe::transport::{OutputTransport, Pacing};

    let recorder = voxpipe::testing::RecordingObserver::new();
    let ends = TransportEnds {
        input: NamedProcessor::new("transport.input", FileInput::new(samples, 16_000, false)),
        output: NamedProcessor::new(
            "transport.output",
            OutputTransport::new(NoSink, Pacing::InboundAudio { realtime: false }),
        ),
    };
    let options = SessionOptions {
        setup: config.session_setup("reset-test"),
        clock: SessionClock::audio(),
        observers: vec![recorder.clone()],
        memory: None,
    };
    let report = run_session(&config.processors, ends, options)
        .await
        .unwrap();
    assert!(report.fatal_error.is_none());
    recorder
        .frames_from("vad", voxpipe::frame::Direction::Downstream)
        .into_iter()
        .filter(|f| f.name().starts_with("User"))
        .map(|f| format!("{:?}", f.body))
        .collect()
}

#[tokio::test]
async fn every_session_starts_with_a_fresh_vad() {
    let dir = tempfile::tempdir().unwrap();
    let config = voxpipe::pipeline_file::load_pipeline(
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pipelines/parrot.toml"
        )),
        &[],
        &voxpipe::processors::ProcessorRegistry::builtin(),
    )
    .unwrap();
    // The first session ends while the user is still speaking.
    let mut speaking = vec![0; 8_000];
    speaking.extend(say(dir.path(), "u0", "Are you still there?", 16_000));
    let first = vad_decisions(&config, speaking.clone()).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].starts_with("UserStartedSpeaking"), "{first:?}");
    // The next one hears only silence: nothing carried over says "stopped".
    assert_eq!(
        vad_decisions(&config, vec![0; 16_000 * 2]).await,
        Vec::<String>::new()
    );
    // And the same speech again gives the same decisions at the same times.
    assert_eq!(vad_decisions(&config, speaking).await, first);
}

#[test]
fn speech_shorter_than_the_guard_does_not_interrupt() {
    let dir = tempfile::tempdir().unwrap();
    let speech = barge_in_speech(dir.path());
    let (second_start, second_end) = speech.utterances[1];
    assert!(second_end - second_start < 3_000);
    // The second utterance is heard over the bot, but is shorter than the
    // guard: a cough, as far as interruptions go.
    let (events, _) = run_parrot(
        dir.path(),
        &speech.path,
        &["interruption.min_secs=3".to_owned()],
    );
    let heard = int(named(&events, "user_started_speaking")[1], "t_ms");
    let bot_from = int(named(&events, "bot_started_speaking")[0], "t_ms");
    let bot_until = int(named(&events, "bot_stopped_speaking")[0], "t_ms");
    assert!((bot_from..bot_until).contains(&heard), "{events:?}");
    assert!(named(&events, "interruption").is_empty(), "{events:?}");
}
