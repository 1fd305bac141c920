//! The analyzer's decisions on scripted confidences and volumes.

use super::*;

/// A model that reads its confidence from the chunk's first sample:
/// `1000` means 1.0, and the chunk's loudness comes from the rest.
struct Scripted {
    resets: usize,
}

impl VoiceModel for Scripted {
    fn sample_rate(&self) -> u32 {
        16_000
    }
    fn chunk_samples(&self) -> usize {
        512
    }
    fn voice_confidence(&mut self, chunk: &[i16]) -> f32 {
        f32::from(chunk[0]) / 1000.0
    }
    fn reset(&mut self) {
        self.resets += 1;
    }
}

/// A chunk the model scores `confidence`, at a loud (or silent) level.
fn chunk(confidence: f32, loud: bool) -> Vec<i16> {
    let mut c: Vec<i16> = (0..512)
        .map(|i| {
            if loud && i % 16 < 8 {
                8000
            } else if loud {
                -8000
            } else {
                0
            }
        })
        .collect();
    c[0] = (confidence * 1000.0) as i16;
    c
}

fn analyzer() -> VadAnalyzer {
    VadAnalyzer::new(Box::new(Scripted { resets: 0 }), VadParams::default())
}

fn run(vad: &mut VadAnalyzer, chunks: &[Vec<i16>]) -> Vec<(usize, VadEvent)> {
    let mut events = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        vad.push_audio(c);
        while let Some(e) = vad.poll_event() {
            events.push((i, e));
        }
    }
    events
}

#[test]
fn chunk_counts_round_like_python() {
    // 0.2 s / 32 ms = 6.25 → 6; 0.8 s / 32 ms = 25; 0.2 s / 16 ms = 12.5 → 12.
    assert_eq!(chunks_for(0.2, 512, 16_000), 6);
    assert_eq!(chunks_for(0.8, 512, 16_000), 25);
    assert_eq!(chunks_for(0.2, 256, 16_000), 12);
    assert_eq!(chunks_for(0.8, 256, 8_000), 25);
}

#[test]
fn starts_after_start_secs_and_stops_after_stop_secs() {
    let mut vad = analyzer();
    let mut chunks = vec![chunk(0.0, false); 5];
    chunks.extend(vec![chunk(0.95, true); 40]);
    chunks.extend(vec![chunk(0.0, false); 30]);
    let events = run(&mut vad, &chunks);
    // The window (silence before the stream, then the loud chunks) is
    // loud from the first loud chunk (index 5); the smoothed volume (a
    // fifth of the way toward it per chunk) passes 0.6 on the 5th loud
    // chunk (index 9); at the 6th speaking chunk (index 14) the user is
    // speaking. The onset reaches back to the first loud chunk.
    assert_eq!(
        events,
        [
            (14, VadEvent::Started { start: 5 * 512 }),
            (69, VadEvent::Stopped { end: 45 * 512 }),
        ]
    );
    assert_eq!(vad.state(), VadState::Quiet);
}

#[test]
fn pauses_are_reported_once_each_before_the_stop() {
    // 0.064 s is two 32 ms chunks.
    let mut vad = analyzer().with_pauses(0.064);
    let mut chunks = vec![chunk(0.95, true); 20];
    chunks.extend(vec![chunk(0.0, false); 10]);
    chunks.extend(vec![chunk(0.95, true); 10]);
    chunks.extend(vec![chunk(0.0, false); 30]);
    let events = run(&mut vad, &chunks);
    assert!(
        matches!(events[0].1, VadEvent::Started { .. }),
        "{events:?}"
    );
    assert_eq!(
        events[1..],
        [
            (21, VadEvent::Paused { end: 20 * 512 }),
            (41, VadEvent::Paused { end: 40 * 512 }),
            (64, VadEvent::Stopped { end: 40 * 512 }),
        ]
    );
    // A pause time reaching stop_secs adds nothing to the stop.
    let mut vad = analyzer().with_pauses(0.8);
    let events = run(&mut vad, &chunks);
    assert!(
        !events
            .iter()
            .any(|(_, e)| matches!(e, VadEvent::Paused { .. }))
    );
}

#[test]
fn short_blips_and_short_pauses_are_not_events() {
    let mut vad = analyzer();
    let mut chunks = vec![chunk(0.95, true); 20];
    // A pause shorter than stop_secs inside the speech.
    chunks.extend(vec![chunk(0.0, false); 10]);
    chunks.extend(vec![chunk(0.95, true); 10]);
    chunks.extend(vec![chunk(0.0, false); 30]);
    let events = run(&mut vad, &chunks);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(events[1].1, VadEvent::Stopped { end } if end == 40 * 512));

    // Loud but not voice, or voice too quiet: never speech.
    assert_eq!(run(&mut analyzer(), &vec![chunk(0.1, true); 30]), []);
    assert_eq!(run(&mut analyzer(), &vec![chunk(0.99, false); 30]), []);
}

#[test]
fn the_start_reaches_back_over_a_short_gap_but_not_a_long_one() {
    let speech_after = |gap: usize| {
        let mut chunks = vec![chunk(0.0, false); 5];
        // Too short to become speaking on its own: the smoothed volume
        // is still climbing when it ends.
        chunks.extend(vec![chunk(0.95, true); 3]);
        chunks.extend(vec![chunk(0.0, false); gap]);
        chunks.extend(vec![chunk(0.95, true); 30]);
        let events = run(&mut analyzer(), &chunks);
        match events.first() {
            Some((_, VadEvent::Started { start })) => *start / 512,
            other => panic!("{other:?}"),
        }
    };
    // A 64 ms closure is bridged: the speech began with the first burst.
    assert_eq!(speech_after(2), 5);
    // 192 ms of silence is not: the speech began after it.
    assert_eq!(speech_after(6), 14);
}

#[test]
fn audio_can_come_in_any_sizes() {
    let mut whole = analyzer();
    let mut split = analyzer();
    let mut stream = vec![0i16; 512 * 3];
    for _ in 0..30 {
        stream.extend(chunk(0.9, true));
    }
    stream.extend(vec![0i16; 512 * 30]);
    whole.push_audio(&stream);
    for piece in stream.chunks(160) {
        split.push_audio(piece);
    }
    let drain = |v: &mut VadAnalyzer| std::iter::from_fn(|| v.poll_event()).collect::<Vec<_>>();
    assert_eq!(drain(&mut whole), drain(&mut split));
    assert_eq!(whole.position(), split.position());
}

#[test]
fn reset_forgets_the_stream() {
    let mut vad = analyzer();
    run(&mut vad, &vec![chunk(0.95, true); 30]);
    assert_eq!(vad.state(), VadState::Speaking);
    assert!(vad.speech().is_some());
    vad.reset();
    assert_eq!(
        (vad.state(), vad.position(), vad.speech()),
        (VadState::Quiet, 0, None)
    );
}
