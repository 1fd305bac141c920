//! The user and assistant aggregators sharing one conversation: turns
//! handed to the LLM, what the bot actually said when interrupted, and
//! interruptions asked for when the user talks over the bot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use support::session::{Live, unique};
use voxpipe::conversation::{Role, SharedConversation, Turn};
use voxpipe::frame::{
    AudioFrame, Direction, Frame, FrameBody, SpokenText, SpokenTiming, TranscriptionFrame,
};
use voxpipe::pipeline::NamedProcessor;
use voxpipe::pipeline::ProcessorFactory;
use voxpipe::pipeline::SessionSetup;
use voxpipe::processors::{AssistantContextConfig, UserContextConfig};

/// The pair, built for one session as a pipeline file would.
fn pair(timeout_secs: f64) -> (Vec<NamedProcessor>, SessionSetup) {
    let setup = SessionSetup::new("s", 16_000);
    let user: UserContextConfig =
        toml::from_str(&format!("transcript_timeout_secs = {timeout_secs}")).unwrap();
    let assistant: AssistantContextConfig = toml::from_str("").unwrap();
    let processors = vec![
        NamedProcessor {
            name: "user_context".into(),
            processor: user.build(&setup).unwrap(),
        },
        NamedProcessor {
            name: "assistant_context".into(),
            processor: assistant.build(&setup).unwrap(),
        },
    ];
    (processors, setup)
}

fn transcription(text: &str) -> FrameBody {
    FrameBody::Transcription(TranscriptionFrame {
        text: text.into(),
        user_id: None,
        language: None,
        at: Duration::ZERO,
    })
}

fn word(text: &str, ms: u64) -> FrameBody {
    FrameBody::TtsText(SpokenText {
        text: text.into(),
        start: Duration::from_millis(ms),
        timing: SpokenTiming::Word,
    })
}

fn turns(frames: &[Frame]) -> Vec<Arc<Turn>> {
    frames
        .iter()
        .filter_map(|f| match &f.body {
            FrameBody::TurnCompleted(turn) => Some(Arc::clone(turn)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_interrupted_answer_keeps_only_the_words_heard() {
    let (processors, setup) = pair(1.0);
    let live = Live::start(processors);
    for frame in [
        FrameBody::UserStartedSpeaking {
            start: Duration::ZERO,
        },
        transcription("What time is it?"),
        FrameBody::UserStoppedSpeaking {
            end: Duration::from_secs(1),
        },
    ] {
        live.handle.queue_frame(frame).await;
    }
    live.wait_for("the user turn", |b| matches!(b, FrameBody::LlmMessages(_)))
        .await;

    // What the LLM and TTS would send: four timed words over 1 s of audio.
    let mut answer = vec![
        FrameBody::LlmResponseStart,
        FrameBody::TtsStarted,
        word("It", 0),
        word("is", 200),
        word("ten", 400),
        word("o'clock.", 600),
    ];
    answer.extend((0..50).map(|_| {
        FrameBody::OutputAudio(AudioFrame::from_samples(
            &[100; 320],
            16_000,
            1,
            Duration::ZERO,
        ))
    }));
    answer.extend([
        FrameBody::TtsStopped,
        FrameBody::LlmResponseEnd { failed: false },
        FrameBody::BotStartedSpeaking,
    ]);
    for frame in answer {
        live.handle.queue_frame(frame).await;
    }
    live.wait_for_from("assistant_context", "the answer", |b| {
        matches!(b, FrameBody::BotStartedSpeaking)
    })
    .await;
    live.handle.queue_frame(FrameBody::Interruption).await;
    live.wait_for("the interruption", |b| matches!(b, FrameBody::Interruption))
        .await;
    // The output transport's account: 550 ms of the answer were cut.
    live.handle
        .queue_frame(FrameBody::BotInterrupted {
            played: Duration::from_millis(450),
            cut: Duration::from_millis(550),
        })
        .await;
    live.wait_for(
        "the assistant turn",
        |b| matches!(b, FrameBody::TurnCompleted(t) if t.role == Role::Assistant),
    )
    .await;
    let frames = unique(&live.finish().await);

    let turns = turns(&frames);
    assert_eq!(turns.len(), 2);
    assert_eq!(
        (turns[0].index, turns[0].role, turns[0].text.as_str()),
        (0, Role::User, "What time is it?")
    );
    assert_eq!(
        (turns[1].index, turns[1].role, turns[1].text.as_str()),
        (1, Role::Assistant, "It is ten")
    );
    assert!(turns[1].interrupted);

    let conversation = setup
        .resources
        .get::<SharedConversation>("default")
        .unwrap();
    let conversation = conversation.lock();
    let messages = conversation.context.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1].content.as_deref(), Some("It is ten"));
    assert!(!conversation.awaiting_reply());
    // The user's turn went to the LLM as the whole context.
    let handed = frames
        .iter()
        .find_map(|f| match &f.body {
            FrameBody::LlmMessages(m) => Some(m.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].content.as_deref(), Some("What time is it?"));
}

#[tokio::test]
async fn the_user_speaking_over_an_answer_asks_for_an_interruption() {
    let (processors, _setup) = pair(1.0);
    let live = Live::start(processors);
    for frame in [
        FrameBody::UserStartedSpeaking {
            start: Duration::ZERO,
        },
        transcription("Tell me a story."),
        FrameBody::UserStoppedSpeaking {
            end: Duration::from_secs(1),
        },
    ] {
        live.handle.queue_frame(frame).await;
    }
    live.wait_for("the user turn", |b| matches!(b, FrameBody::LlmMessages(_)))
        .await;
    // A reply is due: speaking now interrupts it.
    live.handle
        .queue_frame(FrameBody::UserStartedSpeaking {
            start: Duration::from_secs(2),
        })
        .await;
    live.wait_for("the interruption", |b| matches!(b, FrameBody::Interruption))
        .await;
    let pushes = live.finish().await;
    let requests: Vec<&str> = pushes
        .iter()
        .filter(|(_, d, f)| {
            *d == Direction::Upstream && matches!(f.body, FrameBody::InterruptionRequest)
        })
        .map(|(from, _, _)| from.as_str())
        .collect();
    assert_eq!(requests, ["user_context"]);
}

#[tokio::test]
async fn speech_over_a_speaking_bot_is_left_to_the_vad() {
    let (processors, _setup) = pair(1.0);
    let live = Live::start(processors);
    for frame in [
        FrameBody::UserStartedSpeaking {
            start: Duration::ZERO,
        },
        transcription("Tell me a story."),
        FrameBody::UserStoppedSpeaking {
            end: Duration::from_secs(1),
        },
    ] {
        live.handle.queue_frame(frame).await;
    }
    live.wait_for("the user turn", |b| matches!(b, FrameBody::LlmMessages(_)))
        .await;
    // The reply is being heard: the VAD decides, with its guard against
    // coughs, whether this speech interrupts it.
    live.handle.queue_frame(FrameBody::BotStartedSpeaking).await;
    live.handle
        .queue_frame(FrameBody::UserStartedSpeaking {
            start: Duration::from_secs(2),
        })
        .await;
    live.wait_for_from("user_context", "the second start", |b| {
        matches!(b, FrameBody::UserStartedSpeaking { start } if *start == Duration::from_secs(2))
    })
    .await;
    let pushes = live.finish().await;
    assert!(
        !pushes
            .iter()
            .any(|(_, _, f)| matches!(f.body, FrameBody::InterruptionRequest)),
        "no interruption asked by the aggregator"
    );
}

#[tokio::test(start_paused = true)]
async fn an_interim_that_never_finalises_becomes_the_turn_after_the_wait() {
    let (processors, setup) = pair(0.5);
    let live = Live::start(processors);
    let interim = FrameBody::InterimTranscription(TranscriptionFrame {
        text: "maybe tomorrow".into(),
        user_id: None,
        language: None,
        at: Duration::ZERO,
    });
    for frame in [
        FrameBody::UserStartedSpeaking {
            start: Duration::ZERO,
        },
        interim,
        FrameBody::UserStoppedSpeaking {
            end: Duration::ZERO,
        },
    ] {
        live.handle.queue_frame(frame).await;
    }
    live.wait_for_from("user_context", "the stop", |b| {
        matches!(b, FrameBody::UserStoppedSpeaking { .. })
    })
    .await;
    // Inbound audio every 100 ms, as a live transport sends it.
    for _ in 0..8 {
        tokio::time::advance(Duration::from_millis(100)).await;
        live.handle
            .queue_frame(FrameBody::InputAudio(AudioFrame::from_samples(
                &[0; 320],
                16_000,
                1,
                Duration::ZERO,
            )))
            .await;
    }
    live.wait_for("the turn", |b| matches!(b, FrameBody::LlmMessages(_)))
        .await;
    // Its final, arriving late, is not a second turn.
    live.handle
        .queue_frame(transcription("Maybe tomorrow."))
        .await;
    let frames = unique(&live.finish().await);
    let turns = turns(&frames);
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0].text, "maybe tomorrow");
    assert!(
        (500..=620).contains(&turns[0].at_ms),
        "handed when the 0.5 s wait ran out on the session clock, at {} ms",
        turns[0].at_ms
    );
    let conversation = setup
        .resources
        .get::<SharedConversation>("default")
        .unwrap();
    assert_eq!(conversation.lock().context.messages().len(), 1);
}

#[tokio::test]
async fn a_cancelled_session_keeps_what_the_user_had_said() {
    let (processors, _setup) = pair(1.0);
    let live = Live::start(processors);
    let started = FrameBody::UserStartedSpeaking {
        start: Duration::ZERO,
    };
    for frame in [
        started.clone(),
        transcription("Cancel my order"),
        // Speech resuming: the same turn, and a frame the aggregator passes
        // on once it has taken the transcript.
        started,
    ] {
        live.handle.queue_frame(frame).await;
    }
    live.wait_until("both starts passed on", |pushes| {
        pushes
            .iter()
            .filter(|(from, _, f)| {
                from == "user_context" && matches!(f.body, FrameBody::UserStartedSpeaking { .. })
            })
            .count()
            == 2
    })
    .await;
    // A fatal error elsewhere (or a shutdown past its grace) cancels the
    // session while the user is still speaking.
    live.handle.cancel("fatal error in stt");
    let frames = unique(&live.finish().await);

    let turns = turns(&frames);
    assert_eq!(turns.len(), 1);
    assert_eq!(
        (turns[0].role, turns[0].text.as_str()),
        (Role::User, "Cancel my order")
    );
    assert!(
        !frames
            .iter()
            .any(|f| matches!(f.body, FrameBody::LlmMessages(_))),
        "no reply is asked for once the session is cancelled"
    );
}
