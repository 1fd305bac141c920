//! The per-session writer: persists a call as it happens without ever
//! making the conversation wait.
//!
//! # Design
//!
//! The session holds a [`TurnRecorder`]; recording a turn or a status change
//! is a send on an unbounded channel, which never waits, so no audio frame
//! ever waits on the store. One task per session drains the channel into an
//! ordered queue of steps and performs them one at a time, in order:
//! create the call (pending), mark it active, append each turn, mark it
//! completed, then run its after-call hooks ([`AfterCall`]: queue its
//! evaluation, its webhook), which the runtime chooses; the writer knows
//! none of them.
//!
//! When a step fails because the store is down or slow, the writer keeps the
//! step (and everything behind it) and tries again with exponential backoff;
//! the call goes on, and its turns pile up in memory until the store is
//! back. Retrying is safe because every step is idempotent: a turn carries
//! its index and the store appends it only at that index, so a retry after a
//! lost reply never writes it twice and order always holds.
//!
//! While the store fails, the writer also keeps its pending steps on local
//! disk, in the turn spool (`agent/turn_spool/`), when the runtime has one,
//! rewritten as commands come: a process that stops during an outage loses
//! none of the steps read. With a spool, commands are read as they come
//! even while a step is in flight (the step runs on a copy, put back when
//! it is done, so the queue is only ever added to behind it). They reach
//! the disk at once when the store has failed, when the attempt in flight
//! has gone unanswered for a second (`task::SLOW_ATTEMPT`: what waits is
//! kept without waiting for the store's own timeout to fail the attempt),
//! and while the spool holds the writer's file.
//!
//! A spool write runs on a blocking thread, one at a time, and the writer
//! never waits for it while there is anything else to do: the loop polls
//! it beside the store call, the flush deadline and the commands
//! (`task.rs`), and the write that follows a stalled one starts as soon as
//! that one lands, with whatever came meanwhile. It waits for the disk (at
//! most 5 s each time) only at the flush deadline, and to remove its file
//! once every step is written.
//!
//! After the session ends, the writer keeps trying for at most
//! `flush_timeout`; then it leaves what it could not write in the spool,
//! whose replayer writes it once the store is back, and stops. Without a
//! spool (or when the disk fails too) it logs every step it could not
//! perform and stops. Logs never carry the call's words or numbers: a turn is logged
//! by its index, role and length, the call record with its phone numbers
//! and caller name hashed (`agent::redact`). A step the store rejects for good (not a
//! transient error) is logged the same way and skipped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use self::spool_file::SpoolFile;
pub use super::after_call::AfterCall;
use super::turn_spool::TurnSpool;
use crate::conversation::Turn;
use crate::store::time::unix_ms;
use crate::store::{CallChange, CallRecord, CallRecording, Store};

mod perform;
mod spool_file;
mod spooling;
mod task;
#[cfg(test)]
mod tests;

/// How a writer retries and what it does when the call ends.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// First wait after a failed step.
    pub retry_initial: Duration,
    /// Longest wait between attempts.
    pub retry_max: Duration,
    /// How long after the session ends the writer keeps trying.
    pub flush_timeout: Duration,
    /// What to queue once the call is completed.
    pub on_completed: Vec<Arc<dyn AfterCall>>,
    /// Where pending steps are kept on disk while the store fails, if
    /// anywhere.
    pub spool: Option<Arc<TurnSpool>>,
    /// This writer's hold on its call's session lease, when it keeps one
    /// (set per session by the runtime): its after-call steps let go of
    /// that hold alone, and the spool keeps it for the replayer.
    pub lease_holder: Option<String>,
}

impl Default for WriterSettings {
    fn default() -> Self {
        WriterSettings {
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            flush_timeout: Duration::from_secs(120),
            on_completed: Vec::new(),
            spool: None,
            lease_holder: None,
        }
    }
}

/// A command; status changes are stamped with the wall time they were sent
/// at (a turn carries its own).
enum Command {
    Turn(Arc<Turn>),
    Started(u64),
    Recorded(CallRecording),
    Ended(String, u64),
    /// The session stops without ending the call (a text conversation
    /// between two messages): write what is queued, then stop.
    Detached,
}

/// Records a session's turns and status for its writer. Cheap to clone;
/// every method returns at once.
#[derive(Clone)]
pub struct TurnRecorder {
    call_id: Arc<str>,
    tx: mpsc::UnboundedSender<Command>,
    end: Arc<EndSignal>,
}

impl std::fmt::Debug for TurnRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnRecorder")
            .field("call_id", &self.call_id)
            .finish_non_exhaustive()
    }
}

impl TurnRecorder {
    /// The call this records.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Queues a completed turn; it is written as soon as the store allows.
    pub fn record(&self, turn: Arc<Turn>) {
        self.send(Command::Turn(turn));
    }

    /// The pipeline started: the call becomes active.
    pub fn started(&self) {
        self.send(Command::Started(unix_ms()));
    }

    /// The call's recording is finished (or failed): written to the call
    /// before it is marked completed, when sent before [`Self::ended`].
    pub fn recorded(&self, recording: CallRecording) {
        self.send(Command::Recorded(recording));
    }

    /// The session ended: the call becomes completed, and the writer stops
    /// once everything is written (or `flush_timeout` has passed).
    pub fn ended(&self, reason: &str) {
        // Marked here, not when the writer reads the command: a writer
        // stuck on a stalled store still stops `flush_timeout` after the
        // session ended.
        self.end.mark();
        self.send(Command::Ended(reason.to_owned(), unix_ms()));
    }

    /// The session stops but the call goes on (a text conversation waits
    /// for its next message, whose session continues the transcript): the
    /// writer writes what is queued (for at most `flush_timeout`) and
    /// stops, without marking the call completed or running the after-call
    /// hooks.
    pub fn detached(&self) {
        self.end.mark();
        self.send(Command::Detached);
    }

    fn send(&self, command: Command) {
        if self.tx.send(command).is_err() {
            tracing::warn!(call_id = %self.call_id, "the call's writer has stopped; not recorded");
        }
    }
}

/// What a writer managed to do, once it has stopped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteReport {
    /// Turns the store holds from this session.
    pub turns_written: u64,
    /// Steps that could not be written, described for people (each also
    /// logged at error level with its full content).
    pub unwritten: Vec<String>,
    /// Steps left in the turn spool, to be written when the store is back,
    /// described as `unwritten` is.
    pub spooled: Vec<String>,
}

/// A writer's progress.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriterStatus {
    /// Turns written so far.
    pub turns_written: u64,
    /// Steps the turn spool holds for this call (0: no file).
    pub spooled: usize,
    /// The final report, once the writer has stopped.
    pub done: Option<WriteReport>,
}

/// Follows a writer's progress.
pub type WriterDone = watch::Receiver<WriterStatus>;

/// Starts the writer of one call: `record` is created (pending) first.
pub fn spawn_writer(
    store: Arc<dyn Store>,
    record: CallRecord,
    settings: WriterSettings,
) -> (TurnRecorder, WriterDone) {
    let call_id: Arc<str> = record.call_id.as_str().into();
    let create = Step::new(Action::Create(Box::new(record)));
    spawn(store, call_id, VecDeque::from([create]), settings)
}

/// Starts the writer of `call_id` whose queue begins with `steps`.
fn spawn(
    store: Arc<dyn Store>,
    call_id: Arc<str>,
    steps: VecDeque<Step>,
    settings: WriterSettings,
) -> (TurnRecorder, WriterDone) {
    let (tx, rx) = mpsc::unbounded_channel();
    let end = Arc::new(EndSignal::default());
    let (status_tx, status_rx) = watch::channel(WriterStatus::default());
    let writer = Writer {
        store,
        started_ms: unix_ms(),
        call_id: Arc::clone(&call_id),
        settings,
        steps,
        next_index: 0,
        ended: false,
        spool_file: SpoolFile::default(),
        end: Arc::clone(&end),
        report: WriteReport::default(),
        status: status_tx,
    };
    tokio::spawn(async move {
        let (report, status) = writer.run(rx).await;
        status.send_modify(|s| s.done = Some(report));
    });
    (TurnRecorder { call_id, tx, end }, status_rx)
}

#[derive(Clone)]
enum Action {
    Create(Box<CallRecord>),
    Change(CallChange),
    Turn(Arc<Turn>),
    After(Arc<dyn AfterCall>),
}

#[derive(Clone)]
struct Step {
    action: Action,
    /// For a turn: the index given on its first attempt, kept for retries.
    index: Option<u64>,
    attempted: bool,
}

impl Step {
    fn new(action: Action) -> Self {
        Step {
            action,
            index: None,
            attempted: false,
        }
    }
}

struct Writer {
    store: Arc<dyn Store>,
    /// When it started (its spool file's name: the replay's order).
    started_ms: u64,
    call_id: Arc<str>,
    settings: WriterSettings,
    steps: VecDeque<Step>,
    /// The transcript position of the next new turn.
    next_index: u64,
    /// True once the end command has been accepted.
    ended: bool,
    /// Its file in the turn spool, and the write of it in flight.
    spool_file: SpoolFile,
    /// When the session ended: the start of the bounded flush.
    end: Arc<EndSignal>,
    report: WriteReport,
    status: watch::Sender<WriterStatus>,
}

/// When the session ended, shared by the recorder and the writer.
#[derive(Default)]
struct EndSignal {
    at: std::sync::OnceLock<Instant>,
    notify: tokio::sync::Notify,
}

impl EndSignal {
    fn mark(&self) {
        if self.at.set(Instant::now()).is_ok() {
            // One waiter at most (the writer); a stored permit covers a
            // writer that is not waiting yet.
            self.notify.notify_one();
        }
    }
}

/// Resolves `flush` after the session ended (never, while it runs).
async fn flush_deadline(end: &EndSignal, flush: Duration) {
    loop {
        if let Some(at) = end.at.get() {
            tokio::time::sleep_until(*at + flush).await;
            return;
        }
        end.notify.notified().await;
    }
}

fn dropped() -> Command {
    Command::Ended("session dropped".into(), unix_ms())
}

/// A step for people, as [`WriteReport`] lists it; `index` is the
/// position the next unattempted turn would get.
fn describe(step: &Step, index: &mut u64) -> String {
    match &step.action {
        Action::Create(_) => "call state (pending)".to_owned(),
        Action::Change(change) => format!("call status change {change:?}"),
        Action::Turn(_) => {
            let at = step.index.unwrap_or(*index);
            *index = at + 1;
            format!("turn {at}")
        }
        Action::After(after) => format!("{after:?} not queued"),
    }
}
