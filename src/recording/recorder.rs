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
        self.finish_within(end, FINISH_LIMIT).await
    }

    /// [`Self::finish`], giving the writer `limit` in all: to take the
    /// `Finish` event (a writer stalled on the disk leaves the channel
    /// full) and to answer it.
    async fn finish_within(self, end: Duration, limit: Duration) -> CallRecording {
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
        let tx = self.feed.tx.clone();
        let writer = self.writer.clone();
        // On a blocking thread against the wall clock: the wait is for the
        // disk, which tokio's (possibly paused) clock knows nothing of.
        let waited = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + limit;
            hand_over(&tx, writer.as_ref(), finish, deadline)?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            outcome.recv_timeout(left).map_err(|err| match err {
                std::sync::mpsc::RecvTimeoutError::Timeout => Waited::TimedOut,
                std::sync::mpsc::RecvTimeoutError::Disconnected => Waited::Stopped,
            })
        })
        .await;
        match waited {
            Ok(Ok(recording)) => recording,
            Ok(Err(Waited::NotStarted)) => failed("the recording's writer could not start"),
            Ok(Err(Waited::Stopped)) | Err(_) => failed("the recording's writer stopped"),
            Ok(Err(Waited::TimedOut)) => {
                // The writer checks this before the file takes its final
                // name, and removes the partial file instead.
                self.abandoned.store(true, Ordering::SeqCst);
                tracing::warn!(?limit, "the recording took too long to finish; given up");
                failed("the recording took too long to finish (a stalled disk?)")
            }
        }
    }
}

/// Why [`Recorder::finish`] got no outcome from the writer.
enum Waited {
    /// The writer's thread never started (the channel is closed).
    NotStarted,
    /// The writer dropped the reply without answering.
    Stopped,
    /// The deadline passed first.
    TimedOut,
}

/// How often a full channel is tried again while the writer catches up.
const HAND_OVER_RETRY: Duration = Duration::from_millis(5);

/// Puts `finish` in the channel before `deadline` (blocking), waking the
/// writer so that it drains the channel now rather than at its next batch.
fn hand_over(
    tx: &mpsc::Sender<Event>,
    writer: Option<&std::thread::Thread>,
    mut finish: Event,
    deadline: std::time::Instant,
) -> Result<(), Waited> {
    loop {
        match tx.try_send(finish) {
            Ok(()) => {
                if let Some(writer) = writer {
                    writer.unpark();
                }
                return Ok(());
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Waited::NotStarted),
            Err(mpsc::error::TrySendError::Full(event)) => {
                finish = event;
                if let Some(writer) = writer {
                    writer.unpark();
                }
                if std::time::Instant::now() >= deadline {
                    return Err(Waited::TimedOut);
                }
                std::thread::sleep(HAND_OVER_RETRY);
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

#[cfg(test)]
mod tests {
    #[cfg(unix)]
    use super::*;
    #[cfg(unix)]
    use crate::config::RecordingDir;

    // A FIFO stands in for the stalled disk: Unix only.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_writer_stalled_on_the_disk_fails_the_recording_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        // A FIFO where the file goes: the writer's open blocks until a
        // reader comes, as on a stalled disk.
        let part = dir.path().join("call-1.wav.part");
        let made = std::process::Command::new("mkfifo")
            .arg(&part)
            .status()
            .unwrap();
        assert!(made.success());
        let section = RecordingSection {
            enabled: true,
            dir: RecordingDir::try_from(dir.path().to_owned()).unwrap(),
        };
        let recorder = Recorder::start(&section, "call-1", 8_000);
        let listener = recorder.listener();
        let audio = AudioFrame::from_samples(&[0; 160], 8_000, 1, Duration::ZERO);
        for i in 0..=BACKLOG as u64 {
            listener.played(&audio, Duration::from_millis(20 * i));
        }
        assert!(
            recorder.feed.dropped.load(Ordering::Relaxed) > 0,
            "the channel is full"
        );

        let finished = tokio::time::timeout(
            Duration::from_secs(20),
            recorder.finish_within(Duration::from_secs(11), Duration::from_millis(200)),
        )
        .await
        .expect("the end of the call does not wait on a stuck writer");
        assert_eq!(finished.status, RecordingStatus::Failed);
        assert!(
            finished.reason.as_deref().unwrap().contains("too long"),
            "{finished:?}"
        );
        assert!(finished.file.is_none());

        // The disk comes back, releasing the writer's thread. (That a file
        // given up on never takes its final name is `spool`'s test: here
        // the end never reached the writer.)
        drop(listener);
        let reader = std::thread::spawn(move || std::fs::read(part));
        reader.join().unwrap().unwrap();
    }
}
