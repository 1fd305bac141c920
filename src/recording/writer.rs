//! The recording's writer: a thread of its own per call, fed by a bounded
//! channel, that places the audio ([`StereoMixer`]) and appends it to the
//! file ([`SpoolFile`]). All of a recording's file I/O happens here.
//!
//! The thread does not wake for every frame (a hundred a second per call):
//! it sleeps [`WAKE_PERIOD`] between batches, woken early only to finish,
//! which keeps a call's recording to a few wake-ups a second.
//!
//! A failure (a full disk, an unwritable directory) ends the writing, not
//! the call: the partial file is removed at once, the thread keeps draining
//! the channel so the audio path never notices, and the outcome says
//! `failed` with the reason.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::frame::{AudioFrame, FrameResampler};
use crate::store::{CallRecording, RecordingStatus};

use super::mixer::{Channel, StereoMixer};
use super::spool::{SpoolError, SpoolFile};

/// How long the writer sleeps between batches.
pub(crate) const WAKE_PERIOD: Duration = Duration::from_millis(500);

/// What the session tells the writer.
pub(crate) enum Event {
    /// Caller audio entered the transport input at session time `at`.
    Caller { audio: AudioFrame, at: Duration },
    /// Bot audio left the transport output at session time `now`.
    Bot { audio: AudioFrame, now: Duration },
    /// The bot was interrupted at `at`.
    Cut { at: Duration },
    /// The session ended at `end`; `dropped` events never reached the
    /// writer (it fell behind). The outcome goes back on `reply`.
    Finish {
        end: Duration,
        dropped: u64,
        reply: std::sync::mpsc::SyncSender<CallRecording>,
    },
}

/// Where and what the writer writes.
pub(crate) struct WriterJob {
    pub(crate) dir: PathBuf,
    pub(crate) call_id: String,
    pub(crate) rate: u32,
    /// Set when the session stopped waiting for the outcome: the file must
    /// not appear under its final name any more.
    pub(crate) abandoned: Arc<AtomicBool>,
}

/// Runs the writer until `Finish` or until the channel closes (the session
/// was dropped: the partial file is removed). Unpark the thread after
/// sending `Finish`.
pub(crate) fn run(job: WriterJob, mut events: mpsc::Receiver<Event>) {
    let mut writer = Writer::open(&job);
    loop {
        let event = match events.try_recv() {
            Ok(event) => event,
            Err(mpsc::error::TryRecvError::Empty) => {
                writer.write_ready();
                std::thread::park_timeout(WAKE_PERIOD);
                continue;
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        match event {
            Event::Caller { audio, at } => writer.place(Channel::Caller, &audio, at),
            Event::Bot { audio, now } => writer.place(Channel::Bot, &audio, now),
            Event::Cut { at } => writer.mixer.cut(at),
            Event::Finish {
                end,
                dropped,
                reply,
            } => {
                let outcome = writer.finish(&job, end, dropped);
                if reply.send(outcome).is_err() {
                    tracing::debug!("nobody waited for the recording's outcome");
                }
                return;
            }
        }
    }
    if let Some(file) = writer.file.take() {
        file.discard();
    }
}

struct Writer {
    mixer: StereoMixer,
    file: Option<SpoolFile>,
    /// Why writing stopped, if it did.
    failed: Option<String>,
    /// The WAV format's size limit was reached.
    full: bool,
    rate: u32,
    caller_rate: FrameResampler,
    bot_rate: FrameResampler,
    /// The job's: set when the session stopped waiting.
    abandoned: Arc<AtomicBool>,
}

/// Why a recording given up on failed.
const GIVEN_UP: &str = "the session stopped waiting for the recording";

impl Writer {
    fn open(job: &WriterJob) -> Self {
        let (file, failed) = match SpoolFile::create(&job.dir, &job.call_id, job.rate) {
            Ok(file) => (Some(file), None),
            Err(err) => (None, Some(fail(&err))),
        };
        Writer {
            mixer: StereoMixer::new(job.rate),
            file,
            failed,
            full: false,
            rate: job.rate,
            caller_rate: FrameResampler::new(job.rate),
            bot_rate: FrameResampler::new(job.rate),
            abandoned: Arc::clone(&job.abandoned),
        }
    }

    fn place(&mut self, channel: Channel, audio: &AudioFrame, now: Duration) {
        self.mixer.advance(now);
        if self.file.is_none() {
            return;
        }
        // Transports hand audio at the pipeline's rate; anything else is
        // converted rather than lost.
        let convert = match channel {
            Channel::Caller => &mut self.caller_rate,
            Channel::Bot => &mut self.bot_rate,
        };
        let audio = match convert.convert(audio) {
            Ok(audio) => audio,
            Err(err) => {
                tracing::debug!(error = %err, "recording: audio skipped");
                return;
            }
        };
        // Read straight from the frame's bytes: no copy of the samples.
        let samples = audio
            .data
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]));
        match channel {
            Channel::Caller => self.mixer.place_caller(audio.pts, now, samples),
            Channel::Bot => self.mixer.place(channel, audio.pts, samples),
        }
    }

    /// Writes what is final.
    fn write_ready(&mut self) {
        while self.file.is_some() {
            let Some(block) = self.mixer.next_block() else {
                return;
            };
            let written = self.file.as_mut().map(|file| file.write(block));
            self.after_write(written);
        }
    }

    fn after_write(&mut self, written: Option<Result<bool, SpoolError>>) {
        match written {
            Some(Ok(true)) | None => {}
            Some(Ok(false)) => {
                // The WAV format is full: keep what fits, stop there.
                self.full = true;
                if let Some(file) = self.file.take() {
                    self.finish_file(file);
                }
            }
            Some(Err(err)) => {
                self.failed = Some(fail(&err));
                if let Some(file) = self.file.take() {
                    file.discard();
                }
            }
        }
    }

    /// Set once the file is finished early (the format's size limit).
    fn finish_file(&mut self, file: SpoolFile) {
        match file.finish(&self.abandoned) {
            Ok(Some(_)) => {}
            Ok(None) => self.failed = Some(GIVEN_UP.into()),
            Err(err) => self.failed = Some(fail(&err)),
        }
    }

    fn finish(mut self, job: &WriterJob, end: Duration, dropped: u64) -> CallRecording {
        self.mixer.advance(end);
        while self.file.is_some() {
            let Some(block) = self.mixer.final_block() else {
                break;
            };
            let written = self.file.as_mut().map(|file| file.write(block));
            self.after_write(written);
        }
        let frames = self.mixer.emitted();
        let mut file_path = None;
        if let Some(file) = self.file.take() {
            if job.abandoned.load(Ordering::SeqCst) {
                file.discard();
                self.failed = Some(GIVEN_UP.into());
            } else {
                // Checked again in `finish`, right before the rename.
                match file.finish(&job.abandoned) {
                    Ok(Some(done)) => file_path = Some(done),
                    Ok(None) => self.failed = Some(GIVEN_UP.into()),
                    Err(err) => self.failed = Some(fail(&err)),
                }
            }
        } else if self.full && self.failed.is_none() {
            file_path = Some(job.dir.join(format!("{}.wav", job.call_id)));
        }
        let duration_ms = frames * 1000 / u64::from(self.rate.max(1));
        match (self.failed, file_path) {
            (None, Some(file)) => {
                let mut reasons = Vec::new();
                if dropped > 0 {
                    reasons.push(format!(
                        "{dropped} audio blocks dropped: the recording's writer fell behind"
                    ));
                }
                let late = self.mixer.late();
                if late > 0 {
                    reasons.push(format!(
                        "{} ms of audio arrived too late to be placed",
                        late * 1000 / u64::from(self.rate.max(1))
                    ));
                }
                if self.full {
                    reasons
                        .push("the WAV size limit (4 GiB) was reached; the rest is missing".into());
                }
                CallRecording {
                    status: RecordingStatus::Recorded,
                    degraded: !reasons.is_empty(),
                    reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
                    file: Some(file.to_string_lossy().into_owned()),
                    duration_ms,
                    sample_rate: self.rate,
                }
            }
            (failed, _) => CallRecording {
                status: RecordingStatus::Failed,
                reason: Some(failed.unwrap_or_else(|| "no file was written".into())),
                file: None,
                duration_ms,
                sample_rate: self.rate,
                degraded: false,
            },
        }
    }
}

/// Logs why writing stopped and returns it, for the call record.
fn fail(err: &SpoolError) -> String {
    tracing::warn!(error = %err, "recording failed; the call goes on unrecorded");
    err.to_string()
}
