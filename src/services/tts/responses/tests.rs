use crate::frame::SpokenTiming;
use crate::services::ServiceError;

use super::*;

#[test]
fn pieces_split_mid_sample_are_joined_and_whole_ones_are_not_copied() {
    let mut carry = None;
    let whole = Bytes::from_static(&[1, 2, 3, 4]);
    let out = whole_samples(&mut carry, whole.clone());
    assert_eq!(out, whole);
    assert_eq!(out.as_ptr(), whole.as_ptr(), "no copy");
    assert_eq!(carry, None);

    let out = whole_samples(&mut carry, Bytes::from_static(&[5, 6, 7]));
    assert_eq!(&out[..], [5, 6]);
    assert_eq!(carry, Some(7));
    let out = whole_samples(&mut carry, Bytes::from_static(&[8]));
    assert_eq!(&out[..], [7, 8]);
    assert_eq!(carry, None);
    let out = whole_samples(&mut carry, Bytes::from_static(&[9]));
    assert!(out.is_empty());
    assert_eq!(carry, Some(9));
    let out = whole_samples(&mut carry, Bytes::new());
    assert!(out.is_empty());
    assert_eq!(carry, Some(9), "an empty piece keeps the odd byte");
}

const PREFIX: &str = "vp0000abcd";

fn outputs(r: &mut TtsResponses) -> Vec<TtsOutput> {
    std::iter::from_fn(|| r.poll_output()).collect()
}

/// The kinds of frame pushed, with the response each belongs to.
fn pushed(outputs: &[TtsOutput]) -> Vec<(u64, &'static str)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            TtsOutput::Push { response, frame } => Some((*response, label(&frame.body))),
            _ => None,
        })
        .collect()
}

/// Our own names for the frames a response pushes (the frame's own
/// names are for logs).
fn label(body: &FrameBody) -> &'static str {
    match body {
        FrameBody::TtsStarted => "tts_started",
        FrameBody::Metrics(_) => "metrics",
        FrameBody::OutputAudio(_) => "output_audio",
        FrameBody::TtsText(_) => "tts_text",
        FrameBody::TtsStopped => "tts_stopped",
        FrameBody::LlmResponseEnd { .. } => "llm_response_end",
        _ => "other",
    }
}

fn pcm(ms: u64, rate: u32) -> Bytes {
    Bytes::from(vec![0u8; (ms * u64::from(rate) / 1000 * 2) as usize])
}

#[test]
fn a_response_starts_speaks_times_its_first_byte_and_stops_after_its_audio() {
    let t0 = Instant::now();
    let mut r = TtsResponses::new("tts", 16_000, 16_000, PREFIX.into());
    r.handle_speak(1, "Hello.".into(), t0);
    let first = outputs(&mut r);
    assert_eq!(pushed(&first), [(1, "tts_started")]);
    assert!(matches!(&first[1], TtsOutput::Speak { context, text }
        if context == "vp0000abcd-1" && text == "Hello."));
    r.handle_speak(1, "Bye.".into(), t0);
    assert_eq!(pushed(&outputs(&mut r)), [], "started once");

    let context = || "vp0000abcd-1".to_owned();
    let t1 = t0 + Duration::from_millis(180);
    r.handle_event(
        WireEvent::Audio {
            context: context(),
            pcm: pcm(100, 16_000),
        },
        "p",
        t1,
    );
    r.handle_event(
        WireEvent::Text {
            context: context(),
            text: "Bye.".into(),
            start: None,
            timing: SpokenTiming::Sentence,
        },
        "p",
        t1,
    );
    let got = outputs(&mut r);
    assert_eq!(
        pushed(&got),
        [(1, "metrics"), (1, "output_audio"), (1, "tts_text")]
    );
    assert!(matches!(&got[0], TtsOutput::Push { frame, .. }
        if matches!(&frame.body, FrameBody::Metrics(MetricsData::Ttfb { value_ms, .. }) if (*value_ms - 180.0).abs() < 1e-6)));
    assert!(
        matches!(&got[2], TtsOutput::Push { frame, .. }
        if matches!(&frame.body, FrameBody::TtsText(s) if s.start == Duration::from_millis(100))),
        "placed where the audio stands"
    );

    // Done before the response's text ended: not the end yet.
    r.handle_event(WireEvent::Done { context: context() }, "p", t1);
    assert!(outputs(&mut r).is_empty());
    assert!(r.is_busy());
    r.handle_finish(
        1,
        Some(Frame::new(FrameBody::LlmResponseEnd { failed: false })),
        t1,
    );
    assert!(
        matches!(&outputs(&mut r)[..], [TtsOutput::Finish { context }] if context == "vp0000abcd-1")
    );
    r.handle_event(WireEvent::Done { context: context() }, "p", t1);
    assert_eq!(
        pushed(&outputs(&mut r)),
        [(1, "tts_stopped"), (1, "llm_response_end")]
    );
    assert!(!r.is_busy());
}

#[test]
fn a_response_with_nothing_spoken_passes_its_closing_frame_at_once() {
    let t0 = Instant::now();
    let mut r = TtsResponses::new("tts", 16_000, 16_000, PREFIX.into());
    r.handle_finish(
        4,
        Some(Frame::new(FrameBody::LlmResponseEnd { failed: false })),
        t0,
    );
    assert_eq!(pushed(&outputs(&mut r)), [(4, "llm_response_end")]);
}

#[test]
fn cancelled_responses_are_dropped_at_the_provider_and_their_events_ignored() {
    let t0 = Instant::now();
    let mut r = TtsResponses::new("tts", 16_000, 16_000, PREFIX.into());
    r.handle_speak(1, "One.".into(), t0);
    r.handle_speak(2, "Two.".into(), t0);
    r.handle_speak(3, "Three.".into(), t0);
    outputs(&mut r);
    r.handle_cancel(2, t0);
    let cancelled: Vec<String> = outputs(&mut r)
        .into_iter()
        .filter_map(|o| match o {
            TtsOutput::Cancel { context } => Some(context),
            _ => None,
        })
        .collect();
    assert_eq!(cancelled, ["vp0000abcd-1", "vp0000abcd-2"]);
    for context in ["vp0000abcd-1", "someone-else-3", "vp0000abcd-x"] {
        let audio = WireEvent::Audio {
            context: context.into(),
            pcm: pcm(20, 16_000),
        };
        r.handle_event(audio, "p", t0);
    }
    assert!(outputs(&mut r).is_empty(), "not ours, or no longer wanted");
    r.handle_event(
        WireEvent::Audio {
            context: "vp0000abcd-3".into(),
            pcm: pcm(20, 16_000),
        },
        "p",
        t0,
    );
    assert_eq!(
        pushed(&outputs(&mut r)),
        [(3, "metrics"), (3, "output_audio")]
    );
}

#[test]
fn audio_is_resampled_and_its_tail_flushed_at_the_end() {
    let t0 = Instant::now();
    let mut r = TtsResponses::new("tts", 24_000, 16_000, PREFIX.into());
    r.handle_speak(1, "Hi.".into(), t0);
    r.handle_finish(1, None, t0);
    outputs(&mut r);
    let context = || "vp0000abcd-1".to_owned();
    r.handle_event(
        WireEvent::Audio {
            context: context(),
            pcm: pcm(100, 24_000),
        },
        "p",
        t0,
    );
    r.handle_event(WireEvent::Done { context: context() }, "p", t0);
    let mut frames = Vec::new();
    for output in outputs(&mut r) {
        if let TtsOutput::Push { frame, .. } = output
            && let FrameBody::OutputAudio(audio) = frame.body
        {
            assert_eq!(audio.sample_rate, 16_000);
            frames.push(audio.data.len() / 2);
        }
    }
    assert_eq!(frames.len(), 2, "the audio, then the resampler's tail");
    let samples: usize = frames.iter().sum();
    assert!(
        (1_600..1_800).contains(&samples),
        "0.1 s at 16 kHz: {samples}"
    );
}

#[test]
fn failures_are_reported_naming_the_provider() {
    let t0 = Instant::now();
    let mut r = TtsResponses::new("tts", 16_000, 16_000, PREFIX.into());
    let failed = WireEvent::Failed {
        context: None,
        error: ServiceError::Remote("bad voice".into()),
    };
    r.handle_event(failed, "cartesia", t0);
    assert!(
        matches!(&outputs(&mut r)[..], [TtsOutput::Report(e)] if e.to_string().contains("bad voice"))
    );
}

#[test]
fn text_after_a_tool_call_goes_to_a_new_context_played_after_the_first() {
    let t0 = Instant::now();
    let mut r = TtsResponses::new("tts", 16_000, 16_000, PREFIX.into()).with_segments(true);
    r.handle_speak(1, "Let me check.".into(), t0);
    outputs(&mut r);
    r.handle_break(1, t0);
    assert!(
        matches!(&outputs(&mut r)[..], [TtsOutput::Finish { context }] if context == "vp0000abcd-1"),
        "the text before the tool is finished at the provider"
    );
    r.handle_break(1, t0);
    assert!(
        outputs(&mut r).is_empty(),
        "nothing said since: no new context"
    );
    r.handle_speak(1, "It's sunny.".into(), t0);
    let next = outputs(&mut r);
    assert_eq!(pushed(&next), [], "one response: started once");
    assert!(matches!(&next[..], [TtsOutput::Speak { context, .. }] if context == "vp0000abcd-1.1"));

    // The new context's audio and words come before the first is done:
    // they wait, and play after it.
    let audio = |context: &str, ms| WireEvent::Audio {
        context: context.into(),
        pcm: pcm(ms, 16_000),
    };
    r.handle_event(audio("vp0000abcd-1.1", 50), "p", t0);
    r.handle_event(
        WireEvent::Text {
            context: "vp0000abcd-1.1".into(),
            text: "sunny".into(),
            start: Some(Duration::from_millis(20)),
            timing: SpokenTiming::Word,
        },
        "p",
        t0,
    );
    assert!(outputs(&mut r).is_empty());
    r.handle_event(audio("vp0000abcd-1", 300), "p", t0);
    assert_eq!(
        pushed(&outputs(&mut r)),
        [(1, "metrics"), (1, "output_audio")]
    );
    r.handle_event(
        WireEvent::Done {
            context: "vp0000abcd-1".into(),
        },
        "p",
        t0,
    );
    let got = outputs(&mut r);
    assert_eq!(pushed(&got), [(1, "output_audio"), (1, "tts_text")]);
    assert!(
        matches!(&got[1], TtsOutput::Push { frame, .. }
            if matches!(&frame.body, FrameBody::TtsText(s) if s.start == Duration::from_millis(320))),
        "a word's time counts from where the segment began in the response"
    );
    // Late audio of the finished context is not played after the next.
    r.handle_event(audio("vp0000abcd-1", 10), "p", t0);
    assert!(outputs(&mut r).is_empty());

    r.handle_finish(
        1,
        Some(Frame::new(FrameBody::LlmResponseEnd { failed: false })),
        t0,
    );
    assert!(
        matches!(&outputs(&mut r)[..], [TtsOutput::Finish { context }] if context == "vp0000abcd-1.1")
    );
    r.handle_event(
        WireEvent::Done {
            context: "vp0000abcd-1.1".into(),
        },
        "p",
        t0,
    );
    assert_eq!(
        pushed(&outputs(&mut r)),
        [(1, "tts_stopped"), (1, "llm_response_end")]
    );
    assert!(!r.is_busy());
}

#[test]
fn a_response_ending_at_a_tool_call_ends_when_its_text_is_done() {
    let t0 = Instant::now();
    let mut r = TtsResponses::new("tts", 16_000, 16_000, PREFIX.into()).with_segments(true);
    r.handle_speak(2, "Goodbye.".into(), t0);
    r.handle_break(2, t0);
    outputs(&mut r);
    // Nothing said after the tool (end_call): the response waits for
    // the first context only.
    r.handle_finish(
        2,
        Some(Frame::new(FrameBody::LlmResponseEnd { failed: false })),
        t0,
    );
    assert!(outputs(&mut r).is_empty());
    r.handle_event(
        WireEvent::Done {
            context: "vp0000abcd-2".into(),
        },
        "p",
        t0,
    );
    assert_eq!(
        pushed(&outputs(&mut r)),
        [(2, "tts_stopped"), (2, "llm_response_end")]
    );

    // An interruption cancels every context of a response.
    r.handle_speak(3, "One.".into(), t0);
    r.handle_break(3, t0);
    r.handle_speak(3, "Two.".into(), t0);
    outputs(&mut r);
    r.handle_cancel(3, t0);
    let cancelled: Vec<String> = outputs(&mut r)
        .into_iter()
        .filter_map(|o| match o {
            TtsOutput::Cancel { context } => Some(context),
            _ => None,
        })
        .collect();
    assert_eq!(cancelled, ["vp0000abcd-3", "vp0000abcd-3.1"]);
    assert!(!r.is_busy());
}

#[test]
fn without_segments_a_tool_call_keeps_the_context() {
    // ElevenLabs: contexts do not expire, and a socket takes only five.
    let t0 = Instant::now();
    let mut r = TtsResponses::new("tts", 16_000, 16_000, PREFIX.into());
    r.handle_speak(1, "Let me check.".into(), t0);
    outputs(&mut r);
    r.handle_break(1, t0);
    assert!(outputs(&mut r).is_empty());
    r.handle_speak(1, "It's sunny.".into(), t0);
    assert!(
        matches!(&outputs(&mut r)[..], [TtsOutput::Speak { context, .. }] if context == "vp0000abcd-1")
    );
}

#[test]
fn a_word_timed_at_the_end_of_time_after_a_segment_is_placed_at_the_latest_instant() {
    // Cartesia's `provider_seconds(1e300)` is `Duration::MAX`; added to a
    // segment's base above zero it overflowed and the engine task panicked.
    let t0 = Instant::now();
    let mut r = TtsResponses::new("tts", 16_000, 16_000, PREFIX.into());
    r.handle_speak(1, "Hello.".into(), t0);
    outputs(&mut r);
    let context = || "vp0000abcd-1".to_owned();
    r.handle_event(
        WireEvent::Audio {
            context: context(),
            pcm: pcm(100, 16_000),
        },
        "p",
        t0,
    );
    // The provider lost the context: its text goes on counting from 100 ms.
    r.handle_event(WireEvent::Done { context: context() }, "p", t0);
    outputs(&mut r);
    r.handle_event(
        WireEvent::Text {
            context: context(),
            text: "Hello".into(),
            start: Some(Duration::MAX),
            timing: SpokenTiming::Word,
        },
        "p",
        t0,
    );
    let got = outputs(&mut r);
    assert!(
        matches!(&got[..], [TtsOutput::Push { frame, .. }]
            if matches!(&frame.body, FrameBody::TtsText(s) if s.start == Duration::MAX)),
        "{got:?}"
    );
}
