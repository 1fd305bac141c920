//! Futures a session's processors start beside themselves (a transport's
//! socket reader, the output's pacing timer), run inside the session's own
//! task rather than spawned as tasks of their own.
//!
//! A live call's media path is then one task: a frame read from the
//! socket, pushed through the chain and released by the pacing timer
//! costs one wake-up of the runtime, not one per task it crosses (the
//! reader, the chain, the ticker each woke a task of its own before; at
//! 1,000 calls of 50 frames a second each way that was several hundred
//! thousand wake-ups a second). A future here must not block: it shares the
//! session's task with every processor, as the processors share it with
//! each other.
//!
//! They end with the chain: when every processor has stopped, whatever is
//! still running here is dropped.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;
use futures_util::StreamExt as _;
use futures_util::future::{AbortHandle, BoxFuture, abortable};
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;

/// Starts futures in the session's task. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct LocalTasks {
    starts: mpsc::UnboundedSender<BoxFuture<'static, ()>>,
}

/// Runs what [`LocalTasks`] starts, polled by the session's task beside
/// its processors.
#[derive(Debug)]
pub(crate) struct LocalTaskRunner {
    starts: mpsc::UnboundedReceiver<BoxFuture<'static, ()>>,
}

/// A starter and the runner it feeds.
pub(crate) fn local_tasks() -> (LocalTasks, LocalTaskRunner) {
    let (starts, starts_rx) = mpsc::unbounded_channel();
    (LocalTasks { starts }, LocalTaskRunner { starts: starts_rx })
}

impl LocalTasks {
    /// Starts `task` in the session's task; the handle stops it. Once the
    /// session's processors have all stopped, `task` is dropped unstarted.
    pub(crate) fn start(&self, task: impl Future<Output = ()> + Send + 'static) -> AbortHandle {
        let (task, handle) = abortable(task);
        let task = async move {
            // A panic stops this future only, as it stopped a spawned task.
            if let Err(panic) = AssertUnwindSafe(task).catch_unwind().await {
                let message = panic_message(panic.as_ref());
                tracing::error!(panic = %message, "a session's helper future panicked");
            }
        };
        if self.starts.send(task.boxed()).is_err() {
            tracing::debug!("the session's processors have stopped; not started");
        }
        handle
    }
}

/// What a panic said, from its payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

impl LocalTaskRunner {
    /// Runs every future started, as they come. Never returns: the session
    /// drops it when its processors have stopped.
    pub(crate) async fn run(mut self) {
        let mut running = FuturesUnordered::new();
        loop {
            tokio::select! {
                Some(task) = self.starts.recv() => running.push(task),
                Some(()) = running.next(), if !running.is_empty() => {}
                else => std::future::pending::<()>().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_what_is_started_and_stops_it_on_abort() {
        let (tasks, runner) = local_tasks();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        tasks.start(async move {
            let _sent = done_tx.send(());
        });
        let (never_tx, never_rx) = tokio::sync::oneshot::channel::<()>();
        let stopped = tasks.start(async move {
            std::future::pending::<()>().await;
            drop(never_tx);
        });
        tasks.start(async { panic!("a helper that panics") });
        let run = tokio::spawn(runner.run());
        done_rx.await.unwrap();
        stopped.abort();
        // Aborted: its future (and the sender it holds) is dropped.
        assert!(never_rx.await.is_err());
        assert!(!run.is_finished(), "the runner outlives a panic");
        run.abort();
    }
}
