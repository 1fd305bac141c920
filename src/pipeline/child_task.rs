//! [`ChildTask`]: a processor's child task, started, awaited or aborted in
//! one place.
//!
//! Processors that emit long bursts (a playback, an LLM response, a
//! provider socket) do so from a child task so that their inbox stays
//! responsive: the runner only delivers an interruption or a cancel once
//! `process` returns. Each such processor needs the same handful of moves:
//! spawn the work in the processor's tracing span, wait for it in `on_end`
//! (a panic there is an error, an abort is not), abort it in
//! `on_interruption` or `on_cancel`, and never leave it running once the
//! processor is gone. `ChildTask` is that slot.
//!
//! # Dropping aborts
//!
//! Dropping a `ChildTask` aborts its task: a processor dropped by the
//! runner (a cancelled session, a panicked sibling) leaves nothing behind
//! that would push into a pipeline that has stopped. Work that must outlive
//! its owner (a tool that is not cancelled by an interruption) is spawned
//! with `tokio::spawn`, not kept here.
//!
//! # Cancel safety
//!
//! [`ChildTask::finish`] and [`ChildTask::stop`] are cancel safe: they
//! borrow the slot, so a caller dropped while waiting leaves the task
//! where it was (still running for `finish`, still asked to stop for
//! `stop`), and calling again goes on waiting for the same task.

use std::future::Future;

use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::pipeline::ProcessorError;

/// A slot holding at most one child task. See the module docs.
#[derive(Debug)]
pub struct ChildTask<T = ()> {
    /// What the task does, for the error when it panics ("the TTS engine").
    what: &'static str,
    handle: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> ChildTask<T> {
    /// An empty slot for a task doing `what`.
    pub fn new(what: &'static str) -> Self {
        ChildTask { what, handle: None }
    }

    /// A slot already running `work`.
    pub fn spawn(what: &'static str, work: impl Future<Output = T> + Send + 'static) -> Self {
        let mut task = ChildTask::new(what);
        task.start(work);
        task
    }

    /// Starts `work` in the current tracing span; a task still in the slot
    /// is aborted first (not waited for).
    pub fn start(&mut self, work: impl Future<Output = T> + Send + 'static) {
        self.abort();
        self.handle = Some(tokio::spawn(work.in_current_span()));
    }

    /// True while a task is in the slot and has not completed.
    pub fn is_running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Asks the task to stop at its next await point and empties the slot,
    /// without waiting. Nothing happens if the slot is empty.
    pub fn abort(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }

    /// Aborts the task and waits until it has stopped, so that nothing it
    /// would push comes after this returns. True if it was still running.
    ///
    /// # Cancel safety
    /// Cancel safe: the task stays asked to stop and in the slot.
    pub async fn stop(&mut self) -> bool {
        let Some(handle) = self.handle.as_mut() else {
            return false;
        };
        if handle.is_finished() {
            self.handle = None;
            return false;
        }
        handle.abort();
        // Err(cancelled) is the expected outcome of the abort; a task that
        // completed meanwhile stopped all the same.
        let _stopped = handle.await;
        self.handle = None;
        true
    }

    /// Waits for the task to finish what it has and empties the slot.
    ///
    /// `Ok(None)` when the slot was empty or the task had been aborted (it
    /// was stopped on purpose); an error naming the task when it panicked.
    ///
    /// # Cancel safety
    /// Cancel safe: the task keeps running in the slot.
    pub async fn finish(&mut self) -> Result<Option<T>, ProcessorError> {
        let Some(handle) = self.handle.as_mut() else {
            return Ok(None);
        };
        let joined = handle.await;
        self.handle = None;
        match joined {
            Ok(value) => Ok(Some(value)),
            Err(error) if error.is_panic() => {
                Err(ProcessorError::recoverable(format!("{} failed", self.what)))
            }
            Err(_cancelled) => Ok(None),
        }
    }
}

impl<T> Drop for ChildTask<T> {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    /// Sets its flag when dropped: tells whether a task was torn down.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn endless(dropped: &Arc<AtomicBool>) -> impl Future<Output = ()> + Send + 'static {
        let flag = DropFlag(Arc::clone(dropped));
        async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn finish_returns_the_value_and_empties_the_slot() {
        let mut task = ChildTask::spawn("the adder", async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            2 + 2
        });
        assert!(task.is_running());
        assert_eq!(task.finish().await.unwrap(), Some(4));
        assert!(!task.is_running());
        assert_eq!(task.finish().await.unwrap(), None, "the slot is empty");
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_is_an_error_naming_the_task() {
        let mut task: ChildTask = ChildTask::spawn("the panicker", async { panic!("boom") });
        let error = task.finish().await.unwrap_err();
        assert_eq!(error.to_string(), "the panicker failed");
    }

    #[tokio::test(start_paused = true)]
    async fn stop_waits_until_the_task_is_gone() {
        let dropped = Arc::new(AtomicBool::new(false));
        let mut task = ChildTask::spawn("the endless", endless(&dropped));
        tokio::task::yield_now().await;
        assert!(task.stop().await, "it was running");
        assert!(
            dropped.load(Ordering::SeqCst),
            "stopped before stop returned"
        );
        assert!(!task.stop().await, "nothing left to stop");
    }

    #[tokio::test(start_paused = true)]
    async fn an_aborted_task_finishes_without_error() {
        let dropped = Arc::new(AtomicBool::new(false));
        let mut task = ChildTask::spawn("the endless", endless(&dropped));
        let handle = task.handle.as_ref().unwrap();
        handle.abort();
        assert_eq!(task.finish().await.unwrap(), None);
        assert!(dropped.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_slot_aborts_the_task() {
        let dropped = Arc::new(AtomicBool::new(false));
        let task = ChildTask::spawn("the endless", endless(&dropped));
        tokio::task::yield_now().await;
        assert!(!dropped.load(Ordering::SeqCst));
        drop(task);
        // The runtime tears an aborted task down on its next turn.
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(dropped.load(Ordering::SeqCst), "the task was aborted");
    }

    #[tokio::test(start_paused = true)]
    async fn starting_again_aborts_the_previous_task() {
        let first = Arc::new(AtomicBool::new(false));
        let mut task = ChildTask::spawn("the player", endless(&first));
        task.start(async {});
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(first.load(Ordering::SeqCst), "the first was aborted");
        assert_eq!(task.finish().await.unwrap(), Some(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_finish_leaves_the_task_running_in_the_slot() {
        let mut task = ChildTask::spawn("the sleeper", async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            7
        });
        let waited = tokio::time::timeout(Duration::from_secs(1), task.finish()).await;
        assert!(waited.is_err(), "gave up waiting after 1 s");
        assert!(task.is_running());
        assert_eq!(task.finish().await.unwrap(), Some(7));
    }
}
