//! [`Frame`]: a body with its id and creation instant.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::{FrameBody, FrameKind};

/// A process-wide unique frame id, increasing in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameId(pub u64);

impl FrameId {
    fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        FrameId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for FrameId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One frame: an id, its creation instant and what it carries.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Unique id; kept by clones.
    pub id: FrameId,
    /// When the frame was created (wall clock; used for transit latency).
    pub created: Instant,
    /// What the frame carries.
    pub body: FrameBody,
}

impl Frame {
    /// A new frame with a fresh id, created now.
    pub fn new(body: FrameBody) -> Self {
        Frame {
            id: FrameId::next(),
            created: Instant::now(),
            body,
        }
    }

    /// A new frame made from this one (a changed copy): a fresh id, so it is
    /// a different event, but the same creation instant, so transit time is
    /// still measured from where the original entered the pipeline.
    pub fn derive(&self, body: FrameBody) -> Frame {
        Frame {
            id: FrameId::next(),
            created: self.created,
            body,
        }
    }

    /// The frame's kind (see the module docs).
    pub fn kind(&self) -> FrameKind {
        self.body.kind()
    }

    /// A short name for logs, e.g. `InputAudio`.
    pub fn name(&self) -> &'static str {
        self.body.name()
    }
}

impl From<FrameBody> for Frame {
    fn from(body: FrameBody) -> Self {
        Frame::new(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_keep_the_id_and_new_frames_get_fresh_ones() {
        let a = Frame::new(FrameBody::BotStartedSpeaking);
        let b = a.clone();
        let c = Frame::new(FrameBody::BotStartedSpeaking);
        assert_eq!(a.id, b.id);
        assert!(c.id > a.id);
    }
}
