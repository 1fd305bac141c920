//! [`Recorder`]: one call's recording, as the session holds it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::RecordingSection;
use crate::frame::{AudioFrame, Direction, FrameBody};
use crate::pipeline::{Observer, PushEvent};
use crate::store::{CallRecording, RecordingStatus};
use crate::transport::{INPUT_NAME, PlaybackListener};

use super::writer::{Event, WriterJob, run};

/// Events the writer may fall behind by before audio is dropped: about
/// five seconds of a call (a caller frame and a bot frame every 20 ms),
/// against the 0.5 s it sleeps between batches.
const BACKLOG: usize = 512;

/// How long the end of a session waits for the file to be finished.
const FINISH_LIMIT: Duration = Duration::from_secs(30);

/// One call's recording: hand [`Recorder::observer`] to the session's
/// observers (the caller's audio) and [`Recorder::listener`] to its output
/// transport (the bot's, as heard), run the session, then
/// [`Recorder::finish`].
pub struct Recorder {
    feed: Arc<Feed>,
    /// The writer's thread, to wake it to finish.
    writer: Option<std::thread::Thread>,
    rate: u32,
    abandoned: Arc<AtomicBool>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Starts recording call `call_id` at `rate` Hz into `section.dir`:
    /// the writer's thread creates the file; nothing here touches the disk.
    pub fn start(section: &RecordingSection, call_id: &str, rate: u32) -> Self {
        let (tx, rx) = mpsc::channel(BACKLOG);
        let abandoned = Arc::new(AtomicBool::new(false));
        let job = WriterJob {
            dir: section.dir.path().to_owned(),
            call_id: call_id.to_owned(),
            rate,
            abandoned: Arc::clone(&abandoned),
        };
        let spawned = std::thread::Builder::new()
            .name("voxpipe-recording".into())
            .stack_size(256 * 1024)
            .spawn(move || run(job, rx));
        let writer = match spawned {
            Ok(handle) => Some(handle.thread().clone()),
            Err(err) => {
                // The receiver is gone with the closure: every send fails,
                // and `finish` reports the recording failed.
                tracing::warn!(error = %err, "cannot start the recording's writer");
                None
            }
        };
        Recorder {
            writer,
            feed: Arc::new(Feed {
                tx,
                dropped: AtomicU64::new(0),
            }),
            rate,
            abandoned,
        }
    }

    /// Sees the caller's audio as it enters the transport input.
    pub fn observer(&self) -> Arc<dyn Observer> {
        Arc::clone(&self.feed) as Arc<dyn Observer>
    }

    /// Hears the bot's audio as it leaves the transport output, and its
    /// cuts.
    pub fn listener(&self) -> Arc<dyn PlaybackListener> {
        Arc::clone(&self.feed) as Arc<dyn PlaybackListener>
    }

    /// The session ended at session time `end`: the rest is written, the
    /// file finished and renamed. Waits at most 30 s for the disk (on the
    /// wall clock, so a test on tokio's paused clock waits for the real
    /// disk); after that the recording is given up (failed, its partial
    /// file removed).
    pub async fn finish(self, end: Duration) -> CallRecording {
        let (reply, outcome) = std::sync::mpsc::sync_channel(1);
        let finish = Event::Finish {
            end,
            dropped: self.feed.dropped.load(Ordering::Relaxed),
            reply,
        };
        let failed = |reason: &str| CallRecording {
            status: RecordingStatus::Failed,
            reason: Some(reason.to_owned()),
            file: None,
            duration_ms: 0,
            sample_rate: self.rate,
            degraded: false,
        };
        if self.feed.tx.send(finish).await.is_err() {
            return failed("the recording's writer could not start");
        }
        if let Some(writer) = &self.writer {
            writer.unpark();
        }
        let waited = tokio::task::spawn_blocking(move || outcome.recv_timeout(FINISH_LIMIT)).await;
        match waited {
            Ok(Ok(recording)) => recording,
            Ok(Err(std::sync::mpsc::RecvTimeoutError::Disconnected)) | Err(_) => {
                failed("the recording's writer stopped")
            }
            Ok(Err(std::sync::mpsc::RecvTimeoutError::Timeout)) => {
                self.abandoned.store(true, Ordering::SeqCst);
                tracing::warn!(limit = ?FINISH_LIMIT, "the recording took too long to finish; given up");
                failed("the recording took too long to finish (a stalled disk?)")
            }
        }
    }
}

/// What the audio path calls: a `try_send`, never a wait.
struct Feed {
    tx: mpsc::Sender<Event>,
    /// Events the writer had no room for.
    dropped: AtomicU64,
}

impl Feed {
    fn send(&self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        "the recording's writer is behind; dropping audio from the recording"
                    );
                }
            }
            // The writer has stopped (it could not start): `finish` says so.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

impl Observer for Feed {
    fn on_push(&self, event: &PushEvent<'_>) {
        if event.from != INPUT_NAME || event.direction != Direction::Downstream {
            return;
        }
        if let FrameBody::InputAudio(audio) = &event.frame.body {
            self.send(Event::Caller {
                audio: audio.clone(),
                at: event.at,
            });
        }
    }
}

impl PlaybackListener for Feed {
    fn played(&self, audio: &AudioFrame, now: Duration) {
        self.send(Event::Bot {
            audio: audio.clone(),
            now,
        });
    }

    fn cut(&self, at: Duration) {
        self.send(Event::Cut { at });
    }
}
