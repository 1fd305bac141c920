//! [`PlaybackTap`]: who else hears the bot's audio as the caller does.
//!
//! The output transport knows exactly what left and when, and what an
//! interruption cut; a listener installed in the session's resources before
//! it starts (a recorder) is told both, on the output's task. It must
//! return at once: it hands the audio on and never waits.

use std::sync::Arc;
use std::time::Duration;

use crate::frame::AudioFrame;
use crate::pipeline::SessionResources;

/// Told what the bot's listener hears.
pub trait PlaybackListener: Send + Sync {
    /// `audio` left the output at session time `now`; it plays from
    /// `audio.pts`, at the pipeline's rate: at or before `now`, or after it
    /// for audio sent ahead to a far end that buffers (Twilio).
    fn played(&self, audio: &AudioFrame, now: Duration);

    /// The bot was interrupted at session time `at`: audio that had left
    /// but would have played after `at` was never heard.
    fn cut(&self, at: Duration);
}

/// The listener a session installed for its output transport.
#[derive(Clone)]
pub struct PlaybackTap(Arc<dyn PlaybackListener>);

impl PlaybackTap {
    /// Its name among the session's resources.
    const RESOURCE: &'static str = "transport.playback_tap";

    /// Installs `listener` for the output transport of the session whose
    /// resources these are; call before the session starts.
    pub fn install(resources: &SessionResources, listener: Arc<dyn PlaybackListener>) {
        resources.insert(Self::RESOURCE, PlaybackTap(listener));
    }

    /// The listener installed in `resources`, if any.
    pub(crate) fn find(resources: &SessionResources) -> Option<PlaybackTap> {
        resources
            .get::<PlaybackTap>(Self::RESOURCE)
            .map(|tap| PlaybackTap::clone(&tap))
    }

    pub(crate) fn played(&self, audio: &AudioFrame, now: Duration) {
        self.0.played(audio, now);
    }

    pub(crate) fn cut(&self, at: Duration) {
        self.0.cut(at);
    }
}
