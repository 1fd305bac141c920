//! The shipped agent's VAD pauses (`pause_secs` in `pipelines/agent.toml`)
//! on speech with known boundaries: every stop comes after a pause with the
//! same end, so a segmented STT's `transcribe_on_pause` transcript is
//! confirmed at each stop and sent well before it; a hesitation is a pause
//! and a stop of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::Duration;

use support::speech::{say, shipped_section};
use voxpipe::frame::AudioFrame;
use voxpipe::processors::VadConfig;
use voxpipe::vad::{FrameVad, SileroVad, VadEvent, VadParams};

const FIRST: &str = "I would like to order";
const SECOND: &str = "a large pizza with mushrooms please.";

/// The shipped VAD's parameters and pause time.
fn shipped_vad(rate: u32) -> FrameVad {
    let config: VadConfig = toml::from_str(&shipped_section("agent.toml", "vad")).unwrap();
    let params = VadParams {
        confidence: config.confidence,
        start_secs: config.start_secs.as_secs_f64(),
        stop_secs: config.stop_secs.as_secs_f64(),
        min_volume: config.min_volume,
    };
    let pause = config.pause_secs.expect("the agent reports pauses");
    FrameVad::new(Box::new(SileroVad::new(rate).unwrap()), params).with_pauses(pause.as_secs_f64())
}

/// `(event, when decided, speech end it reports)` for the two parts spoken
/// with `gap` between them, from 20 ms frames.
fn events(rate: u32, gap: Duration) -> (Vec<(&'static str, Duration, Duration)>, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let silence = |d: Duration| vec![0_i16; (d.as_secs_f64() * f64::from(rate)) as usize];
    let mut samples = silence(Duration::from_millis(300));
    samples.extend(say(dir.path(), "first", FIRST, rate));
    samples.extend(silence(gap));
    samples.extend(say(dir.path(), "second", SECOND, rate));
    let speech_end = Duration::from_secs_f64(samples.len() as f64 / f64::from(rate));
    samples.extend(silence(Duration::from_secs(1)));
    let mut vad = shipped_vad(rate);
    let mut seen = Vec::new();
    let frame = rate as usize / 50;
    for (i, chunk) in samples.chunks(frame).enumerate() {
        let pts = Duration::from_millis(20 * i as u64);
        vad.push(&AudioFrame::from_samples(chunk, rate, 1, pts))
            .unwrap();
        let decided = pts + Duration::from_millis(20);
        while let Some(event) = vad.poll_event() {
            seen.push(match event {
                VadEvent::Started { start } => ("start", decided, vad.time_of(start)),
                VadEvent::Paused { end } => ("pause", decided, vad.time_of(end)),
                VadEvent::Stopped { end } => ("stop", decided, vad.time_of(end)),
            });
        }
    }
    (seen, speech_end)
}

/// Each stop is confirmed by the last pause before it, which came with
/// the same end; returns `(pauses, stops)`.
fn check(rate: u32, gap: Duration) -> (usize, usize) {
    let (seen, speech_end) = events(rate, gap);
    eprintln!("{rate} Hz, gap {gap:?}: {seen:?}");
    let mut last_pause = None;
    let (mut pauses, mut stops) = (0, 0);
    for (event, decided, end) in &seen {
        match *event {
            "start" => last_pause = None,
            "pause" => {
                pauses += 1;
                last_pause = Some((*decided, *end));
            }
            _ => {
                stops += 1;
                let (paused_at, paused_end) = last_pause.expect("a pause before every stop");
                assert_eq!(paused_end, *end, "{rate} Hz: the stop confirms the pause");
                assert!(
                    *decided >= paused_at + Duration::from_millis(100),
                    "{seen:?}"
                );
            }
        }
    }
    // The final pause comes soon after the true end of speech.
    let (event, decided, _) = seen.iter().rev().find(|(e, ..)| *e == "pause").unwrap();
    assert_eq!(*event, "pause");
    assert!(
        *decided <= speech_end + Duration::from_millis(200),
        "{seen:?}"
    );
    (pauses, stops)
}

#[test]
fn every_stop_confirms_a_pause_at_16k_and_8k() {
    for rate in [16_000, 8_000] {
        let (pauses, stops) = check(rate, Duration::ZERO);
        assert_eq!(stops, 1, "{rate} Hz: one utterance");
        assert!(pauses >= 1);
    }
}

#[test]
fn a_hesitation_is_a_pause_and_a_stop_of_its_own() {
    for rate in [16_000, 8_000] {
        let (_, stops) = check(rate, Duration::from_millis(600));
        assert_eq!(stops, 2, "{rate} Hz: two utterances");
    }
}
