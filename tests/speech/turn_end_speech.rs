//! The turn-end decision on speech with known boundaries: espeak-ng
//! sentences joined by sox-trimmed silences of known length, at 16 and
//! 8 kHz, clean and in pink noise, through the shipped agent's `vad` and
//! `user_context` (read from `pipelines/agent.toml`) on the audio clock
//! (the file read as fast as the pipeline takes it, each frame once the
//! pipeline is idle), so every decision falls on a known frame however
//! loaded the machine.
//!
//! Between them an STT stand-in hands, at each VAD stop, the words of the
//! parts that ended by then, at once: what is under test is when the turn
//! ends, not a provider's latency. Shown: a complete sentence ends its turn
//! shortly after the speech; a 400, 600 or 1,000 ms hesitation mid-phrase
//! never does; a fragment ends at the fallback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use support::speech::{pink_noise, say, shipped_section};
use voxpipe::conversation::Role;
use voxpipe::frame::{Direction, Frame, FrameBody, TranscriptionFrame};
use voxpipe::pipeline::{
    NamedProcessor, Observer, PipelineParams, PipelineTask, Processor, ProcessorContext,
    ProcessorError, ProcessorFactory, PushEvent, SessionClock, SessionSetup,
};
use voxpipe::processors::{UserContextConfig, VadConfig};
use voxpipe::transport::file::FileInput;

const FIRST: &str = "I would like to order";
const SECOND: &str = "a large pizza with mushrooms.";
const WHOLE: &str = "I would like to order a large pizza with mushrooms.";
const FRAGMENT: &str = "I would like to";

/// Where a VAD's reported end may fall after the true one and still count
/// as that part's end (its last voiced window).
const END_SLACK: Duration = Duration::from_millis(150);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Speech made of parts, each with its true end and its words.
struct Speech {
    samples: Vec<i16>,
    rate: u32,
    /// `(start, end, words)` of each part.
    parts: Vec<(Duration, Duration, &'static str)>,
}

impl Speech {
    fn end(&self) -> Duration {
        self.parts.last().unwrap().1
    }
}

/// 300 ms of silence, `parts` spoken with `pause` between them, then
/// 2.5 s of silence; pink noise over all of it when `noise`.
fn speech(dir: &Path, rate: u32, parts: &[&'static str], pause: Duration, noise: bool) -> Speech {
    let silence = |d: Duration| vec![0_i16; (d.as_secs_f64() * f64::from(rate)) as usize];
    let at = |n: usize| Duration::from_secs_f64(n as f64 / f64::from(rate));
    let mut samples = silence(ms(300));
    let mut spans = Vec::new();
    for (i, text) in parts.iter().enumerate() {
        if i > 0 {
            samples.extend(silence(pause));
        }
        let start = at(samples.len());
        samples.extend(say(dir, &format!("part{i}"), text, rate));
        spans.push((start, at(samples.len()), *text));
    }
    samples.extend(silence(ms(2_500)));
    if noise {
        // About 25 dB below espeak's speech.
        let noise = pink_noise(dir, rate, samples.len(), 0.03);
        for (s, n) in samples.iter_mut().zip(noise) {
            *s = s.saturating_add(n);
        }
    }
    Speech {
        samples,
        rate,
        parts: spans,
    }
}

/// An STT stand-in: at each VAD stop, the words of the parts that ended by
/// then, as one final transcript, at once.
struct KnownWords {
    parts: Vec<(Duration, &'static str)>,
    next: usize,
}

#[async_trait]
impl Processor for KnownWords {
    async fn process(
        &mut self,
        frame: Frame,
        direction: Direction,
        ctx: &ProcessorContext,
    ) -> Result<(), ProcessorError> {
        let stop = match &frame.body {
            FrameBody::UserStoppedSpeaking { end } => Some(*end),
            _ => None,
        };
        ctx.push(frame, direction).await;
        if let Some(end) = stop {
            let mut words = Vec::new();
            while let Some((part_end, text)) = self.parts.get(self.next)
                && *part_end <= end + END_SLACK
            {
                words.push(*text);
                self.next += 1;
            }
            if !words.is_empty() {
                let transcription = TranscriptionFrame {
                    text: words.join(" "),
                    user_id: None,
                    language: None,
                    at: ctx.now(),
                };
                ctx.push_downstream(FrameBody::Transcription(transcription))
                    .await;
            }
        }
        Ok(())
    }
}

/// The user turns `user_context` completed: when, and their words.
#[derive(Default)]
struct Turns(Mutex<Vec<(Duration, String)>>);

impl Observer for Turns {
    fn on_push(&self, event: &PushEvent<'_>) {
        if let FrameBody::TurnCompleted(turn) = &event.frame.body
            && event.from == "user_context"
            && turn.role == Role::User
        {
            self.0.lock().unwrap().push((event.at, turn.text.clone()));
        }
    }
}

fn shipped<C>(kind: &str, setup: &SessionSetup) -> Box<dyn Processor>
where
    C: serde::de::DeserializeOwned + ProcessorFactory,
{
    let config: C = toml::from_str(&shipped_section("agent.toml", kind)).unwrap();
    config.build(setup).unwrap()
}

/// The user turns of `speech` through the shipped `vad ▶ (known words) ▶
/// user_context`, on the audio clock.
async fn turns(speech: &Speech) -> Vec<(Duration, String)> {
    let setup = SessionSetup::new("turn-end-speech", speech.rate);
    let processors = vec![
        NamedProcessor::new(
            "input",
            FileInput::new(speech.samples.clone(), speech.rate, false),
        ),
        NamedProcessor {
            name: "vad".into(),
            processor: shipped::<VadConfig>("vad", &setup),
        },
        NamedProcessor::new(
            "stt",
            KnownWords {
                parts: speech.parts.iter().map(|(_, end, t)| (*end, *t)).collect(),
                next: 0,
            },
        ),
        NamedProcessor {
            name: "user_context".into(),
            processor: shipped::<UserContextConfig>("user_context", &setup),
        },
    ];
    let turns = Arc::new(Turns::default());
    let mut params = PipelineParams::new("turn-end-speech", speech.rate);
    params.clock = SessionClock::audio();
    params.observers.push(turns.clone());
    let outcome = tokio::time::timeout(
        Duration::from_secs(120),
        PipelineTask::new(processors, params).run(),
    )
    .await
    .expect("the session ends with its input");
    drop(outcome);
    turns.0.lock().unwrap().clone()
}

/// The shipped decision's fallback, from `pipelines/agent.toml`.
fn fallback() -> Duration {
    let section: toml::Table =
        toml::from_str(&shipped_section("agent.toml", "user_context")).unwrap();
    let secs = section["turn_end"]["fallback_secs"].as_float().unwrap();
    Duration::from_secs_f64(secs)
}

fn label(rate: u32, noise: bool) -> String {
    format!("{rate} Hz{}", if noise { ", pink noise" } else { "" })
}

async fn a_complete_sentence_ends_its_turn(rate: u32, noise: bool) {
    let dir = tempfile::tempdir().unwrap();
    let speech = speech(dir.path(), rate, &[WHOLE], Duration::ZERO, noise);
    let turns = turns(&speech).await;
    let end = speech.end();
    assert_eq!(turns.len(), 1, "{}: {turns:?}", label(rate, noise));
    let (at, text) = &turns[0];
    assert_eq!(text, WHOLE);
    // Not before the speech ended; well before the fallback: the VAD's
    // short stop, then `complete_secs` from the end it reports.
    assert!(
        *at >= end && *at <= end + ms(700),
        "{}: the turn ended {:?} after the speech",
        label(rate, noise),
        at.saturating_sub(end)
    );
}

async fn a_hesitation_never_ends_the_turn(rate: u32, noise: bool, pause_ms: u64) {
    let dir = tempfile::tempdir().unwrap();
    let speech = speech(dir.path(), rate, &[FIRST, SECOND], ms(pause_ms), noise);
    let turns = turns(&speech).await;
    let resumed = speech.parts[1].0;
    let what = format!("{}, {pause_ms} ms hesitation", label(rate, noise));
    assert!(
        turns.iter().all(|(at, _)| *at >= resumed),
        "{what}: cut off: {turns:?}"
    );
    assert_eq!(turns.len(), 1, "{what}: {turns:?}");
    assert_eq!(turns[0].1, WHOLE, "{what}");
    assert!(turns[0].0 <= speech.end() + ms(700), "{what}: {turns:?}");
}

async fn a_fragment_ends_at_the_fallback(rate: u32, noise: bool) {
    let dir = tempfile::tempdir().unwrap();
    let speech = speech(dir.path(), rate, &[FRAGMENT], Duration::ZERO, noise);
    let turns = turns(&speech).await;
    let end = speech.end();
    assert_eq!(turns.len(), 1, "{}: {turns:?}", label(rate, noise));
    let (at, text) = &turns[0];
    assert_eq!(text, FRAGMENT);
    // The fallback runs from the end the VAD reports, its last voiced
    // window: within a few windows of the true end.
    assert!(
        *at + ms(100) >= end + fallback() && *at <= end + fallback() + ms(300),
        "{}: the fragment's turn ended {:?} after it",
        label(rate, noise),
        at.saturating_sub(end)
    );
}

async fn every_case(rate: u32, noise: bool) {
    a_complete_sentence_ends_its_turn(rate, noise).await;
    for pause_ms in [400, 600, 1_000] {
        a_hesitation_never_ends_the_turn(rate, noise, pause_ms).await;
    }
    a_fragment_ends_at_the_fallback(rate, noise).await;
}

#[tokio::test]
async fn turn_ends_at_16k() {
    every_case(16_000, false).await;
}

#[tokio::test]
async fn turn_ends_at_8k() {
    every_case(8_000, false).await;
}

#[tokio::test]
async fn turn_ends_at_16k_in_pink_noise() {
    every_case(16_000, true).await;
}

#[tokio::test]
async fn turn_ends_at_8k_in_pink_noise() {
    every_case(8_000, true).await;
}
