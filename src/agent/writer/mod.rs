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
//! rewritten as each command is read: a process that stops during an
//! outage loses none of the steps read. Once a write has failed (or while
//! the spool holds the writer's file), commands are read as they come even
//! while a retry is in flight, and reach the disk at once: the step runs on
//! a copy, put back when it is done, so the queue is only ever added to
//! behind it. (A command sent during the first write that fails reaches the
//! disk when that write fails, at most `op_timeout` later.)
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

pub use super::after_call::AfterCall;
use super::redact::{record_for_log, turn_for_log};
use super::turn_spool::{SpoolEntry, SpoolError, TurnSpool};

mod perform;
mod spooling;
#[cfg(test)]
mod tests;
use crate::conversation::Turn;
use crate::store::time::unix_ms;
use crate::store::{CallChange, CallRecord, CallRecording, Store, StoreError};

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
    let (tx, rx) = mpsc::unbounded_channel();
    let end = Arc::new(EndSignal::default());
    let (status_tx, status_rx) = watch::channel(WriterStatus::default());
    let call_id: Arc<str> = record.call_id.as_str().into();
    let writer = Writer {
        store,
        started_ms: unix_ms(),
        call_id: Arc::clone(&call_id),
        settings,
        steps: VecDeque::from([Step::new(Action::Create(Box::new(record)))]),
        next_index: 0,
        ended: false,
        spool_entry: None,
        spool_write: None,
        spooled: false,
        spool_stale: false,
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
    /// This writer's file in the spool, once it has needed one.
    spool_entry: Option<SpoolEntry>,
    /// A write of that file the disk has not finished (past the bound).
    spool_write: Option<tokio::task::JoinHandle<Result<(), SpoolError>>>,
    /// True while the spool holds this writer's file.
    spooled: bool,
    /// True when steps were queued since the spool file was written.
    spool_stale: bool,
    /// When the session ended: the start of the bounded flush.
    end: Arc<EndSignal>,
    report: WriteReport,
    status: watch::Sender<WriterStatus>,
}

impl Writer {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Command>,
    ) -> (WriteReport, watch::Sender<WriterStatus>) {
        let mut backoff = self.settings.retry_initial;
        let mut failing_since: Option<Instant> = None;
        let flush = self.settings.flush_timeout;
        loop {
            let mut fresh = false;
            while let Ok(command) = rx.try_recv() {
                self.accept(command);
                fresh = true;
            }
            let Some(step) = self.steps.front_mut() else {
                if self.ended {
                    return (self.report, self.status);
                }
                let command = rx.recv().await.unwrap_or_else(dropped);
                self.accept(command);
                continue;
            };
            let first_attempt = !step.attempted;
            step.attempted = true;
            let mut attempt = step.clone();
            let is_turn = matches!(attempt.action, Action::Turn(..));
            // Failing: what comes reaches the disk at once, even while the
            // step is in flight.
            let spooling =
                self.settings.spool.is_some() && (self.spooled || failing_since.is_some());
            if spooling && fresh {
                self.keep_in_spool().await;
            }
            let outcome = self
                .attempt(&mut attempt, first_attempt, &mut rx, spooling)
                .await;
            // What the attempt learnt (the turn's index) stays with the step.
            if let Some(front) = self.steps.front_mut() {
                *front = attempt;
            }
            // A step stuck on a stalled store is abandoned at the flush
            // deadline like the rest.
            let Some(result) = outcome else {
                self.give_up_all(
                    &mut rx,
                    "the session ended and the flush time ran out while writing",
                )
                .await;
                return (self.report, self.status);
            };
            match result {
                Ok(()) => {
                    if is_turn {
                        self.report.turns_written += 1;
                        let written = self.report.turns_written;
                        self.status.send_modify(|s| s.turns_written = written);
                    }
                    self.steps.pop_front();
                    self.spool_progress().await;
                    backoff = self.settings.retry_initial;
                    if let Some(since) = failing_since.take() {
                        tracing::info!(
                            call_id = %self.call_id,
                            after = ?since.elapsed(),
                            waiting = self.steps.len(),
                            "context store reachable again; writing what waited"
                        );
                    }
                }
                Err(err) if !err.is_transient() => {
                    if let Some(step) = self.steps.pop_front() {
                        self.give_up(&step, &err.to_string());
                    }
                    self.spool_progress().await;
                }
                Err(err) => {
                    if failing_since.is_none() {
                        tracing::warn!(
                            call_id = %self.call_id,
                            error = %err,
                            "context store unavailable; the call goes on and its turns wait in memory"
                        );
                    }
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    self.keep_in_spool().await;
                    // Wait, still accepting commands (so that nothing is
                    // left in the channel when the log is written), unless
                    // the flush deadline passes first.
                    let wait = tokio::time::sleep(backoff);
                    tokio::pin!(wait);
                    loop {
                        tokio::select! {
                            biased;
                            () = flush_deadline(&self.end, flush) => {
                                let why = format!(
                                    "the context store stayed unavailable for {:?} (last error: {err})",
                                    since.elapsed()
                                );
                                self.give_up_all(&mut rx, &why).await;
                                return (self.report, self.status);
                            }
                            () = &mut wait => break,
                            command = rx.recv(), if !self.ended => {
                                match command {
                                    Some(command) => self.accept(command),
                                    None => self.accept(dropped()),
                                }
                                // Spoken turns reach the disk as they come,
                                // not at the next retry.
                                self.keep_in_spool().await;
                            }
                        }
                    }
                    backoff = (backoff * 2).min(self.settings.retry_max);
                }
            }
        }
    }

    /// Performs `step`, a copy of the front one, once; `None` when the
    /// flush deadline passes first. With `spooling`, commands sent
    /// meanwhile are accepted (behind the step) and kept in the spool as
    /// they come; the copy keeps the queue's front as it was before the
    /// attempt, for the spool file, until the caller puts it back.
    async fn attempt(
        &mut self,
        step: &mut Step,
        first_attempt: bool,
        rx: &mut mpsc::UnboundedReceiver<Command>,
        spooling: bool,
    ) -> Option<Result<(), StoreError>> {
        let store = Arc::clone(&self.store);
        let call_id = Arc::clone(&self.call_id);
        let flush = self.settings.flush_timeout;
        let mut next_index = self.next_index;
        let lease_holder = self.settings.lease_holder.clone();
        let outcome = {
            let work = step.perform(
                &*store,
                &call_id,
                lease_holder.as_deref(),
                &mut next_index,
                first_attempt,
            );
            tokio::pin!(work);
            loop {
                tokio::select! {
                    biased;
                    () = flush_deadline(&self.end, flush) => break None,
                    result = &mut work => break Some(result),
                    command = rx.recv(), if spooling && !self.ended => {
                        self.accept(command.unwrap_or_else(dropped));
                        // A burst is written once.
                        while let Ok(command) = rx.try_recv() {
                            self.accept(command);
                        }
                        self.keep_in_spool().await;
                    }
                }
            }
        };
        self.next_index = next_index;
        outcome
    }

    /// Gives up every step, including those still in the channel: leaves
    /// them in the spool for its replayer if there is one, else logs them.
    async fn give_up_all(&mut self, rx: &mut mpsc::UnboundedReceiver<Command>, why: &str) {
        while let Ok(command) = rx.try_recv() {
            self.accept(command);
        }
        if self.leave_in_spool(why).await {
            return;
        }
        for step in std::mem::take(&mut self.steps) {
            self.give_up(&step, why);
        }
    }

    fn accept(&mut self, command: Command) {
        if self.ended {
            if let Command::Turn(turn) = command {
                let turn = turn_for_log(turn.index, &turn);
                tracing::warn!(call_id = %self.call_id, %turn, "turn recorded after the session ended; not written");
            }
            return;
        }
        self.spool_stale = true;
        match command {
            Command::Turn(turn) => self.steps.push_back(Step::new(Action::Turn(turn))),
            Command::Started(at_ms) => self
                .steps
                .push_back(Step::new(Action::Change(CallChange::Started { at_ms }))),
            Command::Recorded(recording) => self
                .steps
                .push_back(Step::new(Action::Change(CallChange::Recorded(recording)))),
            Command::Detached => {
                self.ended = true;
                self.end.mark();
            }
            Command::Ended(reason, at_ms) => {
                self.ended = true;
                // Normally set by the recorder already; a dropped session
                // ends here.
                self.end.mark();
                self.steps
                    .push_back(Step::new(Action::Change(CallChange::Ended {
                        reason,
                        at_ms,
                    })));
                for after in self.settings.on_completed.clone() {
                    self.steps.push_back(Step::new(Action::After(after)));
                }
            }
        }
    }

    fn give_up(&mut self, step: &Step, why: &str) {
        // Turns never attempted get the positions they would have had.
        let what = describe(step, &mut self.next_index);
        match &step.action {
            Action::Create(record) => {
                let call = record_for_log(record);
                tracing::error!(call_id = %self.call_id, %call, reason = why, "call state not written");
            }
            Action::Change(change) => {
                tracing::error!(call_id = %self.call_id, change = ?change, reason = why, "call status not written");
            }
            Action::Turn(turn) => {
                let index = self.next_index - 1;
                let turn = turn_for_log(index, turn);
                tracing::error!(call_id = %self.call_id, index, %turn, reason = why, "turn not written");
            }
            Action::After(after) => {
                tracing::error!(call_id = %self.call_id, action = ?after, reason = why, "not queued after the call");
            }
        }
        self.report.unwritten.push(what);
    }
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
