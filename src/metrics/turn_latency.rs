//! Where a turn's time went, between the user stopping and the bot's first
//! audio, computed from the frames a session pushes (sans-IO: the caller
//! passes each frame with its session time).
//!
//! A turn starts when the VAD decides the user stopped speaking (or, with
//! no VAD, at a final transcript: typed text, a transcript-only STT) and is
//! complete when the bot's audio starts leaving the transport. Its stages
//! follow one another; a stage the pipeline does not have (no STT in
//! `parrot`) is `None` and the next stage starts where the last one ended:
//!
//! | stage | from | to |
//! |---|---|---|
//! | `vad_stop_ms` | the end of speech | the VAD's decision (its stop wait) |
//! | `stt_ms` | the decision | the final transcript (0 when it came first) |
//! | `llm_ms` | the previous stage's end | the first LLM token |
//! | `tts_ms` | the previous stage's end | the first bot audio produced |
//! | `audio_out_ms` | the previous stage's end | the first bot audio leaving |
//!
//! A preemptive reply (one prepared before the user's turn was confirmed
//! over) overlaps the stages with the wait for the turn's end:
//! `preemptive_hidden_ms` is that overlap, from the reply's start to the
//! confirmation, the time the user would otherwise have waited on top.
//!
//! `total_ms` runs from the end of speech (or the turn's start) to the first
//! audio leaving: the voice-to-voice latency the user feels, less the
//! network and the browser's playout.

use std::time::Duration;

use serde::Serialize;

use crate::frame::{Direction, Frame, FrameBody, FrameId};

/// One turn's latency breakdown, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnLatency {
    /// The VAD's stop wait.
    pub vad_stop_ms: Option<f64>,
    /// Speech-to-text finalisation after the VAD decided.
    pub stt_ms: Option<f64>,
    /// LLM time to first token.
    pub llm_ms: Option<f64>,
    /// Time to the first synthesized audio (TTS time to first byte).
    pub tts_ms: Option<f64>,
    /// Time for that audio to leave the transport.
    pub audio_out_ms: Option<f64>,
    /// How long a preemptive reply was prepared before the turn was
    /// confirmed over; `None` when the reply was not preemptive.
    pub preemptive_hidden_ms: Option<f64>,
    /// End of speech (or the turn's start) to the first audio leaving.
    pub total_ms: f64,
}

#[derive(Debug, Default)]
struct Turn {
    speech_end: Option<Duration>,
    decided: Duration,
    transcript: Option<Duration>,
    first_token: Option<Duration>,
    first_audio: Option<Duration>,
    preemptive_start: Option<Duration>,
    confirmed: Option<Duration>,
}

/// Follows a session's frames and reports each turn's latency once.
#[derive(Debug, Default)]
pub struct TurnLatencyTracker {
    turn: Option<Turn>,
    /// A final transcript came while the user was still speaking.
    transcript_while_speaking: bool,
    /// The speaking frames already seen: a frame is pushed by every
    /// processor it passes and counts once.
    last_started: Option<FrameId>,
    last_stopped: Option<FrameId>,
}

impl TurnLatencyTracker {
    /// A tracker with no turn in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one push of `frame` at session time `at`; returns the turn's
    /// latency when this push completes it.
    pub fn observe(
        &mut self,
        frame: &Frame,
        direction: Direction,
        at: Duration,
    ) -> Option<TurnLatency> {
        match &frame.body {
            FrameBody::UserStartedSpeaking { .. }
                if self.last_started.replace(frame.id) != Some(frame.id) =>
            {
                self.turn = None;
                self.transcript_while_speaking = false;
            }
            FrameBody::UserStoppedSpeaking { end }
                if self.last_stopped.replace(frame.id) != Some(frame.id) =>
            {
                let transcribed = std::mem::take(&mut self.transcript_while_speaking);
                self.turn = Some(Turn {
                    speech_end: Some(*end),
                    decided: at,
                    transcript: transcribed.then_some(at),
                    ..Turn::default()
                });
            }
            FrameBody::Transcription(_) => {
                let speaking = self.user_speaking();
                match &mut self.turn {
                    Some(turn) => {
                        turn.transcript.get_or_insert(at);
                    }
                    None if speaking => self.transcript_while_speaking = true,
                    None => {
                        self.turn = Some(Turn {
                            decided: at,
                            transcript: Some(at),
                            ..Turn::default()
                        });
                    }
                }
            }
            FrameBody::PreemptiveLlmMessages(_) => {
                if let Some(turn) = &mut self.turn {
                    turn.preemptive_start.get_or_insert(at);
                }
            }
            FrameBody::PreemptiveReplyDiscarded => {
                if let Some(turn) = &mut self.turn {
                    turn.preemptive_start = None;
                }
            }
            FrameBody::PreemptiveReplyConfirmed => {
                if let Some(turn) = &mut self.turn {
                    turn.confirmed.get_or_insert(at);
                }
            }
            FrameBody::LlmText(_) => {
                if let Some(turn) = &mut self.turn {
                    turn.first_token.get_or_insert(at);
                }
            }
            FrameBody::OutputAudio(_) if direction == Direction::Downstream => {
                if let Some(turn) = &mut self.turn {
                    turn.first_audio.get_or_insert(at);
                }
            }
            FrameBody::BotStartedSpeaking => {
                return self.turn.take().map(|turn| turn.latency(at));
            }
            _ => {}
        }
        None
    }

    /// The user is speaking: the last start is newer than the last stop.
    fn user_speaking(&self) -> bool {
        match (self.last_started, self.last_stopped) {
            (Some(started), Some(stopped)) => started > stopped,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

impl Turn {
    fn latency(self, out: Duration) -> TurnLatency {
        let mut last = self.decided;
        let mut stage = |at: Option<Duration>| {
            at.map(|at| {
                let took = at.saturating_sub(last);
                last = last.max(at);
                ms(took)
            })
        };
        let stt_ms = stage(self.transcript);
        let llm_ms = stage(self.first_token);
        let tts_ms = stage(self.first_audio);
        let audio_out_ms = stage(Some(out));
        TurnLatency {
            vad_stop_ms: self
                .speech_end
                .map(|end| ms(self.decided.saturating_sub(end))),
            stt_ms,
            llm_ms,
            tts_ms,
            audio_out_ms,
            preemptive_hidden_ms: self
                .preemptive_start
                .zip(self.confirmed)
                .map(|(start, confirmed)| ms(confirmed.saturating_sub(start))),
            total_ms: ms(out.saturating_sub(self.speech_end.unwrap_or(self.decided))),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{AudioFrame, TranscriptionFrame};

    fn ms_(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn transcript(text: &str) -> FrameBody {
        FrameBody::Transcription(TranscriptionFrame {
            text: text.into(),
            user_id: None,
            language: None,
            at: Duration::ZERO,
        })
    }

    fn audio() -> FrameBody {
        FrameBody::OutputAudio(AudioFrame::from_samples(&[0; 320], 16_000, 1, ms_(0)))
    }

    /// Feeds `(body, at)` pushes; each frame pushed twice, as it would be
    /// when passing two processors.
    fn run(pushes: Vec<(FrameBody, u64)>) -> Vec<TurnLatency> {
        let mut tracker = TurnLatencyTracker::new();
        let mut out = Vec::new();
        for (body, at) in pushes {
            let frame = Frame::new(body);
            for hop in 0..2 {
                out.extend(tracker.observe(&frame, Direction::Downstream, ms_(at + hop)));
            }
        }
        out
    }

    #[test]
    fn a_full_voice_turn_is_broken_into_its_stages() {
        let turns = run(vec![
            (FrameBody::UserStartedSpeaking { start: ms_(100) }, 300),
            (FrameBody::UserStoppedSpeaking { end: ms_(1_000) }, 1_800),
            (transcript("hello"), 1_950),
            (FrameBody::LlmText("Hi".into()), 2_300),
            (audio(), 2_500),
            (FrameBody::BotStartedSpeaking, 2_520),
        ]);
        assert_eq!(
            turns,
            [TurnLatency {
                vad_stop_ms: Some(800.0),
                stt_ms: Some(150.0),
                llm_ms: Some(350.0),
                tts_ms: Some(200.0),
                audio_out_ms: Some(20.0),
                preemptive_hidden_ms: None,
                total_ms: 1_520.0,
            }]
        );
    }

    #[test]
    fn parrot_has_no_stt_or_llm_stage() {
        let turns = run(vec![
            (FrameBody::UserStartedSpeaking { start: ms_(0) }, 200),
            (FrameBody::UserStoppedSpeaking { end: ms_(900) }, 1_700),
            (audio(), 1_701),
            (FrameBody::BotStartedSpeaking, 1_705),
        ]);
        assert_eq!(turns.len(), 1);
        assert_eq!(turns[0].stt_ms, None);
        assert_eq!(turns[0].llm_ms, None);
        assert_eq!(turns[0].tts_ms, Some(1.0));
        assert_eq!(turns[0].audio_out_ms, Some(4.0));
    }

    #[test]
    fn a_transcript_before_the_stop_costs_nothing_and_typed_text_starts_a_turn() {
        let turns = run(vec![
            (FrameBody::UserStartedSpeaking { start: ms_(0) }, 200),
            (transcript("streamed"), 900),
            (FrameBody::UserStoppedSpeaking { end: ms_(800) }, 1_000),
            (FrameBody::LlmText("ok".into()), 1_300),
            (FrameBody::BotStartedSpeaking, 1_600),
            // Typed text: no VAD.
            (transcript("typed"), 5_000),
            (FrameBody::LlmText("sure".into()), 5_400),
            (FrameBody::BotStartedSpeaking, 5_900),
        ]);
        assert_eq!(turns.len(), 2);
        assert_eq!(turns[0].stt_ms, Some(0.0));
        assert_eq!(turns[0].llm_ms, Some(300.0));
        assert_eq!(turns[1].vad_stop_ms, None);
        assert_eq!(turns[1].llm_ms, Some(400.0));
        assert_eq!(turns[1].total_ms, 900.0);
    }

    #[test]
    fn a_bot_that_never_answers_reports_nothing_and_the_next_turn_starts_fresh() {
        let turns = run(vec![
            (FrameBody::UserStartedSpeaking { start: ms_(0) }, 200),
            (FrameBody::UserStoppedSpeaking { end: ms_(500) }, 1_300),
            (FrameBody::UserStartedSpeaking { start: ms_(1_400) }, 1_600),
            (FrameBody::UserStoppedSpeaking { end: ms_(2_000) }, 2_800),
            (FrameBody::BotStartedSpeaking, 2_900),
            (FrameBody::BotStartedSpeaking, 3_000),
        ]);
        assert_eq!(turns.len(), 1);
        assert_eq!(turns[0].vad_stop_ms, Some(800.0));
        assert_eq!(turns[0].total_ms, 900.0);
    }

    #[test]
    fn a_preemptive_reply_shows_how_long_it_was_prepared_before_the_turn_ended() {
        let turns = run(vec![
            (FrameBody::UserStartedSpeaking { start: ms_(0) }, 200),
            (FrameBody::UserStoppedSpeaking { end: ms_(1_000) }, 1_200),
            (transcript("hello."), 1_500),
            (FrameBody::PreemptiveLlmMessages(Default::default()), 1_500),
            (FrameBody::LlmText("Hi".into()), 1_900),
            (audio(), 2_100),
            (FrameBody::PreemptiveReplyConfirmed, 2_200),
            (FrameBody::BotStartedSpeaking, 2_220),
        ]);
        assert_eq!(turns.len(), 1);
        assert_eq!(turns[0].preemptive_hidden_ms, Some(700.0));
        assert_eq!(turns[0].total_ms, 1_220.0);

        let discarded = run(vec![
            (FrameBody::UserStoppedSpeaking { end: ms_(1_000) }, 1_200),
            (FrameBody::PreemptiveLlmMessages(Default::default()), 1_500),
            (FrameBody::PreemptiveReplyDiscarded, 1_600),
            (FrameBody::PreemptiveReplyConfirmed, 2_200),
            (FrameBody::BotStartedSpeaking, 2_220),
        ]);
        assert_eq!(discarded[0].preemptive_hidden_ms, None);
    }
}
