//! False-interruption resume in `assistant_context`: a barge-in after which
//! no words come resumes the bot's interrupted sentence (sent back up to
//! the TTS), and the conversation keeps what was actually heard; words
//! make the interruption real. The session runs on an audio clock the test
//! moves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use support::clocked::Session;
use voxpipe::conversation::{Role, SharedConversation};
use voxpipe::frame::{AudioFrame, Direction, FrameBody, SpokenText, SpokenTiming};
use voxpipe::pipeline::NamedProcessor;
use voxpipe::processors::AssistantContextAggregator;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn sentence(text: &str, at: u64) -> FrameBody {
    FrameBody::TtsText(SpokenText {
        text: text.into(),
        start: ms(at),
        timing: SpokenTiming::Sentence,
    })
}

fn bot_audio(secs: u64) -> Vec<FrameBody> {
    (0..secs * 50)
        .map(|_| {
            FrameBody::OutputAudio(AudioFrame::from_samples(
                &[100; 320],
                16_000,
                1,
                Duration::ZERO,
            ))
        })
        .collect()
}

/// A session whose bot says two sentences over 2 s of audio and is
/// interrupted by the user 1.5 s in (the output cut 500 ms).
async fn interrupted_bot(conversation: &SharedConversation) -> Session {
    let assistant =
        AssistantContextAggregator::new(conversation.clone()).with_false_interruption(ms(1_000));
    let session = Session::start(vec![NamedProcessor::new("assistant_context", assistant)]);
    let mut answer = vec![
        FrameBody::LlmResponseStart,
        FrameBody::TtsStarted,
        sentence("It is ten.", 0),
        sentence("The shop opens at nine.", 1_000),
    ];
    answer.extend(bot_audio(2));
    answer.extend([FrameBody::TtsStopped, FrameBody::BotStartedSpeaking]);
    for body in answer {
        session.at(0, body).await;
    }
    session
        .live
        .wait_for_from("assistant_context", "the whole answer", |b| {
            matches!(b, FrameBody::TtsStopped)
        })
        .await;
    session
        .live
        .wait_for_from("assistant_context", "the bot speaking", |b| {
            matches!(b, FrameBody::BotStartedSpeaking)
        })
        .await;
    session
        .at(1_900, FrameBody::UserStartedSpeaking { start: ms(1_700) })
        .await;
    session.at(1_900, FrameBody::Interruption).await;
    session
        .at(
            1_900,
            FrameBody::BotInterrupted {
                played: ms(1_500),
                cut: ms(500),
            },
        )
        .await;
    session
}

fn resumed(session: &Session) -> Vec<String> {
    session
        .live
        .recorder
        .pushes()
        .into_iter()
        .filter(|(from, d, _)| from == "assistant_context" && *d == Direction::Upstream)
        .filter_map(|(_, _, f)| match f.body {
            FrameBody::Text(text) => Some(text),
            _ => None,
        })
        .collect()
}

fn assistant_messages(conversation: &SharedConversation) -> Vec<String> {
    conversation
        .lock()
        .context
        .messages()
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .map(|m| m.content.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_barge_in_without_words_resumes_the_interrupted_sentence() {
    let conversation = SharedConversation::default();
    let session = interrupted_bot(&conversation).await;
    // The user's sound (a cough held long enough) stops at 2.2 s.
    session
        .at(2_400, FrameBody::UserStoppedSpeaking { end: ms(2_200) })
        .await;
    let mut t = 2_420;
    while t < 3_200 {
        session.audio(t).await;
        t += 20;
    }
    assert!(resumed(&session).is_empty(), "not before the timeout");
    // 1 s after the sound stopped.
    session.audio(3_200).await;
    assert_eq!(resumed(&session), ["The shop opens at nine."]);
    // What the user heard of the interrupted turn is recorded as heard.
    assert_eq!(assistant_messages(&conversation), ["It is ten. The shop"]);

    // The TTS says it again; heard in full, it is a turn of its own.
    let mut again = vec![
        FrameBody::TtsStarted,
        sentence("The shop opens at nine.", 0),
    ];
    again.extend(bot_audio(1));
    again.push(FrameBody::TtsStopped);
    for body in again {
        session.at(3_400, body).await;
    }
    // The output's reports (system frames) after the audio they report on.
    let stops = |pushes: &support::session::Pushes| {
        pushes
            .iter()
            .filter(|(from, _, f)| {
                from == "assistant_context" && matches!(f.body, FrameBody::TtsStopped)
            })
            .count()
    };
    session
        .live
        .wait_until("the resumed audio", |pushes| stops(pushes) == 2)
        .await;
    for body in [FrameBody::BotStartedSpeaking, FrameBody::BotStoppedSpeaking] {
        session.at(3_400, body).await;
    }
    session
        .live
        .wait_for_from("assistant_context", "the resumed turn", |b| {
            matches!(b, FrameBody::TurnCompleted(turn) if turn.text == "The shop opens at nine.")
        })
        .await;
    assert_eq!(
        assistant_messages(&conversation),
        ["It is ten. The shop", "The shop opens at nine."]
    );
    for t in (3_420..5_000).step_by(20) {
        session.audio(t).await;
    }
    assert_eq!(resumed(&session).len(), 1, "resumed once");
    let _pushes = session.live.finish().await;
}

#[tokio::test]
async fn words_after_the_barge_in_make_it_a_real_interruption() {
    let conversation = SharedConversation::default();
    let session = interrupted_bot(&conversation).await;
    session
        .at(2_400, FrameBody::UserStoppedSpeaking { end: ms(2_200) })
        .await;
    let user_turn = support::turns::turn(9, Role::User, "Wait, what time?", 2_600);
    session
        .at(2_600, FrameBody::TurnCompleted(Arc::new(user_turn)))
        .await;
    for t in (2_620..5_000).step_by(20) {
        session.audio(t).await;
    }
    assert!(resumed(&session).is_empty());
    let _pushes = session.live.finish().await;
}
