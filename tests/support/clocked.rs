//! A live pipeline on an audio clock the test moves: every decision made on
//! the session clock falls on a known frame, however loaded the machine.

use std::time::Duration;

use voxpipe::frame::{AudioFrame, Direction, Frame, FrameBody};
use voxpipe::pipeline::{NamedProcessor, SessionClock};

use super::session::Live;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A session on an audio clock the test moves.
pub struct Session {
    pub live: Live,
    clock: SessionClock,
    /// The last processor's name: a frame it pushed went through them all.
    last: String,
}

impl Session {
    pub fn start(processors: Vec<NamedProcessor>) -> Session {
        let last = processors
            .last()
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let clock = SessionClock::audio();
        let session_clock = clock.clone();
        let live = Live::start_with(processors, move |p| p.clock = session_clock);
        Session { live, clock, last }
    }

    /// Queues `body` at session time `at_ms`.
    pub async fn at(&self, at_ms: u64, body: FrameBody) {
        self.clock.advance_to(ms(at_ms));
        self.live.handle.queue_frame(body).await;
    }

    /// Waits until every frame pushed so far has been handled by every
    /// processor it was pushed to (child tasks' work still to come aside):
    /// what a processor holds back, it has then seen.
    pub async fn settled(&self) {
        self.live.handle.wait_idle().await;
    }

    /// A 20 ms frame of the user's (quiet) audio at `at_ms`, waited for
    /// until every processor has handled it (the last one pushed it).
    pub async fn audio(&self, at_ms: u64) {
        let frame = Frame::new(FrameBody::InputAudio(AudioFrame::from_samples(
            &[0; 320],
            16_000,
            1,
            ms(at_ms),
        )));
        let id = frame.id;
        self.clock.advance_to(ms(at_ms));
        self.live.handle.queue_frame(frame).await;
        self.live
            .wait_until("the pipeline to handle the audio", |pushes| {
                pushes
                    .iter()
                    .any(|(from, _, f)| *from == self.last && f.id == id)
            })
            .await;
    }

    /// What `from` pushed downstream so far.
    pub fn pushed_by(&self, from: &str) -> Vec<FrameBody> {
        self.live
            .recorder
            .pushes()
            .into_iter()
            .filter(|(f, d, _)| f == from && *d == Direction::Downstream)
            .map(|(_, _, frame)| frame.body)
            .collect()
    }
}
