//! The VAD's fidelity to Pipecat 1.14 on speech with known boundaries, made
//! with espeak-ng and sox: the rolling volume window across stop
//! consonants, and 8 kHz speech in pink noise analysed at 8 kHz rather
//! than upsampled to 16 kHz.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::path::Path;
use std::time::Duration;

use support::speech::say;
use voxpipe::audio::StreamResampler;
use voxpipe::frame::AudioFrame;
use voxpipe::vad::{
    FrameVad, ModelInput, SileroVad, SmoothedVolume, VadAnalyzer, VadEvent, VadParams,
};

/// `text` spoken by espeak-ng at `rate`, trimmed to the speech itself.
fn utterance(dir: &Path, text: &str, rate: u32) -> Vec<i16> {
    say(dir, "utterance", text, rate)
}

/// Deterministic pink noise (white noise through Paul Kellet's filter).
fn pink_noise(len: usize) -> Vec<f64> {
    let mut state = 0x9e37_79b9_u32;
    let mut b = [0.0f64; 3];
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let white = f64::from(state) / f64::from(u32::MAX) - 0.5;
            b[0] = 0.99765 * b[0] + white * 0.099_046;
            b[1] = 0.96300 * b[1] + white * 0.296_516_4;
            b[2] = 0.57000 * b[2] + white * 1.052_691_3;
            b[0] + b[1] + b[2] + white * 0.1848
        })
        .collect()
}

fn rms(x: &[f64]) -> f64 {
    (x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// `speech` after `lead` samples of silence and followed by as many, in
/// pink noise at `snr_db` below the speech's level.
fn in_noise(speech: &[i16], lead: usize, snr_db: f64) -> Vec<i16> {
    let speech_f: Vec<f64> = speech.iter().map(|&s| f64::from(s)).collect();
    let noise = pink_noise(speech.len() + 2 * lead);
    let gain = rms(&speech_f) / rms(&noise) / 10f64.powf(snr_db / 20.0);
    noise
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let s = i
                .checked_sub(lead)
                .and_then(|j| speech_f.get(j))
                .copied()
                .unwrap_or(0.0);
            (s + n * gain).round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// 20 ms frames of `samples` at `rate`.
fn frames(samples: &[i16], rate: u32) -> Vec<AudioFrame> {
    samples
        .chunks_exact(rate as usize / 50)
        .enumerate()
        .map(|(i, s)| AudioFrame::from_samples(s, rate, 1, Duration::from_millis(20 * i as u64)))
        .collect()
}

/// When (the end of the frame that decided it) the first start was
/// reported, pushing `frames` through `push`.
fn first_start(
    frames: &[AudioFrame],
    mut push: impl FnMut(&AudioFrame) -> Option<VadEvent>,
) -> Option<Duration> {
    frames.iter().find_map(|frame| {
        matches!(push(frame), Some(VadEvent::Started { .. }))
            .then(|| frame.pts + Duration::from_millis(20))
    })
}

#[test]
fn the_rolling_window_carries_the_volume_across_stop_consonants() {
    let dir = tempfile::tempdir().unwrap();
    // Every word opens or closes on a stop: their closures are near
    // silence.
    let word = utterance(dir.path(), "tick tock, pick a packet", 16_000);
    let mut padded = vec![0i16; 16_000];
    padded.extend(&word);
    let speech = 16_000 / 512..(16_000 + word.len()) / 512;
    let mut volume = SmoothedVolume::new(16_000, 512);
    let min_volume = VadParams::default().min_volume;
    let (mut loud_from, mut dips_after, mut chunk_dips) = (None, 0, 0);
    for (i, chunk) in padded.chunks_exact(512).enumerate() {
        let (chunk_volume, smoothed) = volume.next(chunk);
        if !speech.contains(&i) {
            continue;
        }
        if loud_from.is_none() && smoothed >= min_volume {
            loud_from = Some(i);
        } else if loud_from.is_some() && smoothed < min_volume {
            dips_after += 1;
        }
        // How a per-chunk measure would see it.
        if loud_from.is_some() && chunk_volume < min_volume {
            chunk_dips += 1;
        }
    }
    let loud_from = loud_from.expect("the word is loud enough");
    eprintln!(
        "window loud from chunk {loud_from} (speech from {}); chunks below min_volume alone: {chunk_dips}",
        speech.start
    );
    // The closures do dip when each chunk is measured alone...
    assert!(chunk_dips > 0);
    // ...but the window's volume, once past min_volume, stays there to the
    // end of the word, so no closure restarts the start count.
    assert_eq!(dips_after, 0);
    assert!(loud_from - speech.start <= 20, "{loud_from}");
}

#[test]
fn frames_at_8k_are_analysed_at_8k_in_a_16k_vad() {
    let mut vad = FrameVad::new(
        Box::new(SileroVad::new(16_000).unwrap()),
        VadParams::default(),
    );
    vad.push(&AudioFrame::from_samples(
        &[0; 160],
        8_000,
        1,
        Duration::ZERO,
    ))
    .unwrap();
    assert_eq!(vad.analyzer().sample_rate(), 8_000);
}

#[test]
fn upsampled_8k_speech_in_pink_noise_is_analysed_at_8k_and_starts_no_later() {
    let dir = tempfile::tempdir().unwrap();
    let speech = utterance(
        dir.path(),
        "Hello, I would like to book a table for two tonight.",
        8_000,
    );
    // 1.5 s of noise, the sentence, 1.5 s of noise; 10 dB SNR.
    let lead = 12_000;
    let call = in_noise(&speech, lead, 10.0);
    let true_start = Duration::from_millis(1500);
    // The transport upsamples the call for a 16 kHz pipeline.
    let mut upsampler = StreamResampler::new(8_000, 16_000).unwrap();
    let mut upsampled = Vec::new();
    upsampler.process(&call, &mut upsampled);
    // The resampler's delay, so that times are the call's own.
    upsampled.drain(..upsampler.delay_samples());
    let frames = frames(&upsampled, 16_000);

    // Scored at 16 kHz, as before.
    let mut analyzer = VadAnalyzer::new(
        Box::new(SileroVad::new(16_000).unwrap()),
        VadParams::default(),
    );
    let mut input = ModelInput::new(16_000);
    let at_16k = first_start(&frames, |frame| {
        analyzer.push_audio(input.convert(frame).unwrap());
        std::iter::from_fn(|| analyzer.poll_event()).find(|e| matches!(e, VadEvent::Started { .. }))
    });

    // Recognised as narrowband and scored at 8 kHz.
    let mut vad = FrameVad::new(
        Box::new(SileroVad::new(16_000).unwrap()),
        VadParams::default(),
    );
    let at_8k = first_start(&frames, |frame| {
        vad.push(frame).unwrap();
        std::iter::from_fn(|| vad.poll_event()).find(|e| matches!(e, VadEvent::Started { .. }))
    });
    assert_eq!(vad.analyzer().sample_rate(), 8_000);

    let delay =
        |t: Option<Duration>| t.map(|t| t.as_millis() as i64 - true_start.as_millis() as i64);
    let (delay_16k, delay_8k) = (delay(at_16k), delay(at_8k));
    eprintln!(
        "start reported after the true start: at 16 kHz {delay_16k:?} ms, at 8 kHz {delay_8k:?} ms"
    );
    let delay_8k = delay_8k.expect("the 8 kHz analysis starts");
    // Never before the speech; within start_secs and the volume's climb.
    assert!((0..=800).contains(&delay_8k), "{delay_8k}");
    if let Some(delay_16k) = delay_16k {
        assert!(
            delay_8k <= delay_16k,
            "8 kHz {delay_8k} ms, 16 kHz {delay_16k} ms"
        );
    }
}

#[test]
fn a_caller_who_speaks_as_the_call_connects_is_heard_from_the_first_word() {
    // The parrot's failure: Pipecat's window reads 0 for the stream's first
    // 400 ms, the first word ("Hello") could not start the turn, the start
    // was decided on a later word and the first word was lost.
    let dir = tempfile::tempdir().unwrap();
    let speech = utterance(
        dir.path(),
        "Hello, I would like to book a table for two tonight.",
        8_000,
    );
    let mut call = speech.clone();
    call.extend(vec![0i16; 8_000 * 2]);
    let mut upsampler = StreamResampler::new(8_000, 16_000).unwrap();
    let mut upsampled = Vec::new();
    upsampler.process(&call, &mut upsampled);
    upsampled.drain(..upsampler.delay_samples());
    let mut vad = FrameVad::new(
        Box::new(SileroVad::new(16_000).unwrap()),
        VadParams::default(),
    );
    let mut events = Vec::new();
    for frame in frames(&upsampled, 16_000) {
        vad.push(&frame).unwrap();
        while let Some(event) = vad.poll_event() {
            events.push(match event {
                VadEvent::Started { start } => ("start", vad.time_of(start)),
                VadEvent::Stopped { end } => ("stop", vad.time_of(end)),
                VadEvent::Paused { .. } => continue,
            });
        }
    }
    eprintln!("{events:?}");
    let speech_ms = speech.len() as u64 / 8;
    let (first, last) = (events.first().unwrap(), events.last().unwrap());
    assert_eq!(first.0, "start");
    assert!(first.1 <= Duration::from_millis(100), "{events:?}");
    assert_eq!(last.0, "stop");
    assert!(
        last.1 + Duration::from_millis(100) >= Duration::from_millis(speech_ms),
        "{events:?}, speech lasts {speech_ms} ms"
    );
}

/// Every event of `analyzer` over `samples`, pushed in 20 ms frames, with
/// the model's runs.
fn events_and_runs(mut analyzer: VadAnalyzer, samples: &[i16]) -> (Vec<VadEvent>, u64) {
    let frame = analyzer.sample_rate() as usize / 50;
    let mut events = Vec::new();
    for chunk in samples.chunks(frame) {
        analyzer.push_audio(chunk);
        events.extend(std::iter::from_fn(|| analyzer.poll_event()));
    }
    (events, analyzer.model_runs())
}

/// Quiet chunks are scored only when a chunk comes that the model must
/// decide (`quiet_chunks`): on sentences with pauses of every length, clean
/// and in noise, at 8 and 16 kHz, every event is the one scoring every
/// chunk gives, and in the clean calls' pauses the model mostly does not run.
#[test]
fn deferring_quiet_chunks_changes_no_decision() {
    let dir = tempfile::tempdir().unwrap();
    for rate in [16_000u32, 8_000] {
        let ms = |ms: usize| rate as usize * ms / 1000;
        let sentence = utterance(dir.path(), "I would like to book a table.", rate);
        let fragment = utterance(dir.path(), "and then", rate);
        // Pauses shorter and longer than the half second kept unscored.
        let mut clean = vec![0i16; ms(1000)];
        for pause in [200, 400, 600, 1000, 3000] {
            clean.extend(&sentence);
            clean.extend(vec![0; ms(pause)]);
            clean.extend(&fragment);
            clean.extend(vec![0; ms(pause)]);
        }
        for (name, call) in [
            ("clean", clean.clone()),
            ("noise at 30 dB SNR", in_noise(&clean, ms(500), 30.0)),
            ("noise at 10 dB SNR", in_noise(&clean, ms(500), 10.0)),
        ] {
            let analyzer = || {
                VadAnalyzer::new(
                    Box::new(SileroVad::new(rate).unwrap()),
                    VadParams::default(),
                )
            };
            let (deferred, runs) = events_and_runs(analyzer(), &call);
            let (every, all_runs) = events_and_runs(analyzer().scoring_every_chunk(), &call);
            eprintln!(
                "{rate} Hz, {name}: {} events, the model ran {runs} of {all_runs} times",
                every.len()
            );
            assert!(every.len() >= 6, "{rate} Hz {name}: {every:?}");
            assert_eq!(deferred, every, "{rate} Hz, {name}");
            assert!(runs <= all_runs);
            if name == "clean" {
                assert!(runs * 10 < all_runs * 9, "{runs} of {all_runs}");
            }
        }
    }
}
