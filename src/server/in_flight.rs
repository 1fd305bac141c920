//! [`InFlight`]: work a request handler left running after its answer
//! (a text message's answer on its way by REST), which a graceful
//! shutdown waits for as it waits for calls.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Counts the tasks spawned through it; see the module docs.
#[derive(Debug, Default, Clone)]
pub(crate) struct InFlight {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    running: AtomicUsize,
    idle: Notify,
}

/// Counted while alive: dropped when its task (or handler) ends, however
/// it ends.
pub(crate) struct Running(Arc<Shared>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    /// Counts the caller until the guard is dropped: a handler that will
    /// spawn, so that a shutdown that starts before it does waits for it.
    pub(crate) fn enter(&self) -> Running {
        self.shared.running.fetch_add(1, Ordering::AcqRel);
        Running(Arc::clone(&self.shared))
    }

    /// Spawns `task`, counted until it ends.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let running = self.enter();
        tokio::spawn(async move {
            let _running = running;
            task.await;
        });
    }

    /// How many are running.
    pub(crate) fn running(&self) -> usize {
        self.shared.running.load(Ordering::Acquire)
    }

    /// Waits until none is running, at most `limit`; true if none is.
    pub(crate) async fn wait_idle(&self, limit: Duration) -> bool {
        let idle = async {
            loop {
                let notified = self.shared.idle.notified();
                if self.running() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, idle).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_for_its_tasks_within_the_limit() {
        let in_flight = InFlight::default();
        assert!(in_flight.wait_idle(Duration::from_secs(1)).await);
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        in_flight.spawn(async move {
            let _ = released.await;
        });
        in_flight.spawn(async {});
        assert!(!in_flight.wait_idle(Duration::from_secs(5)).await);
        assert_eq!(in_flight.running(), 1);
        let _ = release.send(());
        assert!(in_flight.wait_idle(Duration::from_secs(5)).await);
        assert_eq!(in_flight.running(), 0);
    }
}
