//! Feeds the server's metrics from what one session's frames say.
//!
//! It sees every push, so the audio path costs a match and, for inbound
//! audio reaching the output end, one histogram update. Frames forwarded
//! along the chain are seen at every hop: errors and service metrics are
//! counted once per frame id (the last few ids are remembered: a frame
//! passes all its hops before many more such frames are made), and voice-to-voice latency is taken from the
//! first `BotStartedSpeaking` after a `UserStoppedSpeaking`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::frame::{Direction, FrameBody, FrameId, MetricsData};
use crate::pipeline::{Observer, PushEvent};

use super::metrics::ServerMetrics;

/// The name of every transport's output processor.
const TRANSPORT_OUTPUT: &str = "transport.output";

/// How many counted frame ids are remembered: far more than the errors,
/// metrics and preemptive-reply frames in flight at once, so a session's
/// memory stays flat however long it runs.
const REMEMBERED: usize = 64;

#[derive(Default)]
struct Turns {
    /// The ids counted most recently, oldest first.
    counted: VecDeque<FrameId>,
    /// When the user's last utterance ended, until the bot answers.
    user_stopped: Option<Duration>,
}

/// One session's observer feeding [`ServerMetrics`].
pub(crate) struct MetricsObserver {
    metrics: Arc<ServerMetrics>,
    turns: Mutex<Turns>,
}

impl MetricsObserver {
    pub(crate) fn new(metrics: Arc<ServerMetrics>) -> Self {
        MetricsObserver {
            metrics,
            turns: Mutex::new(Turns::default()),
        }
    }

    fn turns(&self) -> std::sync::MutexGuard<'_, Turns> {
        self.turns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True the first time `id` is seen.
    fn first(&self, id: FrameId) -> bool {
        let counted = &mut self.turns().counted;
        if counted.contains(&id) {
            return false;
        }
        if counted.len() == REMEMBERED {
            counted.pop_front();
        }
        counted.push_back(id);
        true
    }
}

impl Observer for MetricsObserver {
    fn on_push(&self, event: &PushEvent<'_>) {
        let frame = event.frame;
        match &frame.body {
            FrameBody::InputAudio(_)
                if event.direction == Direction::Downstream && event.from == TRANSPORT_OUTPUT =>
            {
                self.metrics
                    .transit
                    .observe(frame.created.elapsed().as_secs_f64());
            }
            FrameBody::Error(error) if self.first(frame.id) => {
                let kind = if error.fatal {
                    "fatal_processor_error"
                } else {
                    "processor_error"
                };
                self.metrics.error(kind, &error.processor);
            }
            FrameBody::Metrics(MetricsData::Ttfb {
                processor,
                value_ms,
            }) if self.first(frame.id) => {
                self.metrics.ttfb(processor, value_ms / 1000.0);
            }
            FrameBody::PreemptiveReplyConfirmed if self.first(frame.id) => {
                self.metrics.preemptive_reply("confirmed");
            }
            FrameBody::PreemptiveReplyDiscarded if self.first(frame.id) => {
                self.metrics.preemptive_reply("discarded");
            }
            FrameBody::UserStoppedSpeaking { end } => self.turns().user_stopped = Some(*end),
            FrameBody::BotStartedSpeaking => {
                let user_stopped = self.turns().user_stopped.take();
                if let Some(end) = user_stopped {
                    self.metrics
                        .voice_to_voice
                        .observe(event.at.saturating_sub(end).as_secs_f64());
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{ErrorFrame, Frame};

    fn push(observer: &MetricsObserver, from: &str, frame: &Frame, at_ms: u64) {
        observer.on_push(&PushEvent {
            from,
            frame,
            direction: Direction::Upstream,
            at: Duration::from_millis(at_ms),
        });
    }

    #[test]
    fn counts_each_error_once_and_measures_voice_to_voice() {
        let metrics = Arc::new(ServerMetrics::new());
        let observer = MetricsObserver::new(Arc::clone(&metrics));
        let error = Frame::new(FrameBody::Error(ErrorFrame {
            processor: "llm".into(),
            message: "boom".into(),
            fatal: false,
            provider: None,
            status: None,
        }));
        for hop in ["llm", "stt", "vad"] {
            push(&observer, hop, &error, 0);
        }
        let stopped = Frame::new(FrameBody::UserStoppedSpeaking {
            end: Duration::from_millis(1_000),
        });
        push(&observer, "vad", &stopped, 1_800);
        let started = Frame::new(FrameBody::BotStartedSpeaking);
        push(&observer, "transport.output", &started, 2_300);
        push(&observer, "tts", &started, 2_300);
        let text = metrics.render();
        assert!(
            text.contains(r#"voxpipe_errors_total{kind="processor_error",source="llm"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("voxpipe_voice_to_voice_seconds_count 1\n"),
            "{text}"
        );
        assert!(
            text.contains("voxpipe_voice_to_voice_seconds_sum 1.3\n"),
            "{text}"
        );
    }

    #[test]
    fn counts_preemptive_replies_once_each_by_outcome() {
        let metrics = Arc::new(ServerMetrics::new());
        let observer = MetricsObserver::new(Arc::clone(&metrics));
        let confirmed = Frame::new(FrameBody::PreemptiveReplyConfirmed);
        let discarded = Frame::new(FrameBody::PreemptiveReplyDiscarded);
        for hop in ["user_context", "llm", "tts"] {
            push(&observer, hop, &confirmed, 0);
            push(&observer, hop, &discarded, 0);
        }
        push(
            &observer,
            "user_context",
            &Frame::new(FrameBody::PreemptiveReplyDiscarded),
            5,
        );
        let text = metrics.render();
        assert!(
            text.contains(r#"voxpipe_preemptive_replies_total{outcome="confirmed"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"voxpipe_preemptive_replies_total{outcome="discarded"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn a_long_session_remembers_only_its_last_counted_frames() {
        let observer = MetricsObserver::new(Arc::new(ServerMetrics::new()));
        let first = FrameId(1);
        assert!(observer.first(first));
        assert!(!observer.first(first), "seen at its next hop");
        for id in 2..10_000 {
            assert!(observer.first(FrameId(id)));
        }
        assert_eq!(observer.turns().counted.len(), REMEMBERED);
    }
}
