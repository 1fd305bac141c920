//! The evaluation worker: takes jobs from the queue's consumer group,
//! evaluates, and acknowledges a job only after its writes.
//!
//! A worker takes one job at a time and, while it runs it, resets the
//! job's idle time every `claim_idle / 3` ([`crate::store::JobQueue::keep_job`], the
//! owner's `XCLAIM … JUSTID`), so a job that runs long (an optimisation
//! asks many models) is never taken over while its worker lives. If the
//! refresh finds the job held by another worker (this one was stalled
//! past `claim_idle` and taken for dead), the run here is cancelled and
//! the job left alone: neither acknowledged nor deleted, its new owner has
//! it. A worker that dies mid-job leaves the job pending under its name and
//! no longer refreshes it. Every worker periodically reclaims jobs pending
//! for longer than `claim_idle` (XAUTOCLAIM) and runs them once more; after
//! a reclaimed job it reclaims again at once, until none is idle, so a
//! backlog left by an outage drains at the speed of the work, one job at a
//! time, not one per reclaim period. A job delivered more than
//! `max_deliveries` times is recorded as unevaluated and acknowledged, so a
//! job that kills its workers cannot circle forever.
//!
//! Only deliveries that began running count toward `max_deliveries`
//! (each is noted on the call, `post_call_runs`, before it runs): a job
//! handed out by a read that a shutdown cut short never ran.
//!
//! A delivery that ends because the judge, the store or a service a
//! post-call step needs is down (object storage, the extraction model) is
//! different: the worker saw it fail and is alive. It is counted on the call (`post_call_deferrals`)
//! and does not count toward `max_deliveries`; the job stays pending and
//! runs again at each reclaim (every `claim_idle`), for up to
//! [`MAX_DEFERRALS`] deliveries, so an outage of hours loses no upload.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::evaluator::{EvalError, Evaluator};
use super::job::EvalJob;
use crate::store::{CallChange, JobDelivery, Store, StoreError};

/// Deliveries of one job that may end with a service down before the job
/// is given up: a day at the default `claim_idle` of 60 s.
pub const MAX_DEFERRALS: u64 = 1_440;

/// How a worker takes jobs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// A pending job idle this long is reclaimed from its worker.
    pub claim_idle: Duration,
    /// Deliveries after which a job is given up (2: the first run and one
    /// more after a crash).
    pub max_deliveries: u64,
    /// Jobs taken at once (1: a job waiting in a worker's batch would not
    /// be kept alive and could be taken over).
    pub batch: usize,
    /// How long one read waits for a new job.
    pub poll: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            claim_idle: Duration::from_secs(60),
            max_deliveries: 2,
            batch: 1,
            poll: Duration::from_secs(2),
        }
    }
}

/// One consumer of the evaluation queue.
pub struct EvaluationWorker {
    store: Arc<dyn Store>,
    evaluator: Arc<Evaluator>,
    consumer: String,
    settings: WorkerSettings,
}

impl EvaluationWorker {
    /// A worker named `consumer` (unique per worker: it owns the jobs it
    /// takes until it acknowledges them).
    pub fn new(
        store: Arc<dyn Store>,
        evaluator: Arc<Evaluator>,
        consumer: impl Into<String>,
        settings: WorkerSettings,
    ) -> Self {
        EvaluationWorker {
            store,
            evaluator,
            consumer: consumer.into(),
            settings,
        }
    }

    /// The worker's consumer name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Takes and runs jobs until `shutdown` resolves. A job being evaluated
    /// when it does is finished first; a job just handed out by a read that
    /// `shutdown` interrupts stays pending and is reclaimed by another
    /// worker.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut next_reclaim = Instant::now();
        let mut backoff = Duration::from_secs(1);
        let mut failing = false;
        loop {
            let reclaim = Instant::now() >= next_reclaim;
            if reclaim {
                next_reclaim =
                    Instant::now() + (self.settings.claim_idle / 2).max(Duration::from_secs(1));
            }
            let jobs = tokio::select! {
                () = &mut shutdown => return,
                jobs = self.fetch(reclaim, self.settings.poll) => jobs,
            };
            match jobs {
                Ok((jobs, reclaimed)) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!(consumer = %self.consumer, "evaluation queue reachable again");
                    }
                    backoff = Duration::from_secs(1);
                    if reclaimed {
                        // More may be idle (a backlog after an outage):
                        // reclaim again as soon as this one is done.
                        next_reclaim = Instant::now();
                    }
                    for job in jobs {
                        match self.process(&job).await {
                            // Logged where found; the job is its new owner's.
                            Ok(()) | Err(EvalError::ClaimLost(_)) => {}
                            Err(err) => {
                                tracing::warn!(job = %job.id, error = %err, "evaluation not finished; the job stays pending and will be reclaimed");
                            }
                        }
                    }
                }
                Err(err) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(consumer = %self.consumer, error = %err, "cannot read the evaluation queue");
                    }
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Runs every job waiting now, including pending jobs idle for
    /// `claim_idle`; returns how many ran. For one-shot runs (`voxpipe run`
    /// on the embedded store) and tests.
    pub async fn drain(&self) -> Result<usize, EvalError> {
        let mut ran = 0;
        let mut reclaim = true;
        loop {
            let (jobs, reclaimed) = self.fetch(reclaim, Duration::ZERO).await?;
            reclaim = reclaimed;
            if jobs.is_empty() {
                return Ok(ran);
            }
            for job in &jobs {
                match self.process(job).await {
                    Ok(()) => ran += 1,
                    Err(EvalError::ClaimLost(_)) => {}
                    Err(err) => return Err(err),
                }
            }
        }
    }

    /// Runs one delivered job and acknowledges it once its writes are done,
    /// keeping its claim alive meanwhile. If another worker holds the job
    /// now, the run is cancelled (dropped at its next await) and
    /// [`EvalError::ClaimLost`] returned: the job is neither acknowledged
    /// nor deleted here.
    pub async fn process(&self, job: &JobDelivery) -> Result<(), EvalError> {
        let every = (self.settings.claim_idle / 3).max(Duration::from_millis(100));
        let keep = async {
            loop {
                tokio::time::sleep(every).await;
                match self.store.keep_job(&self.consumer, &job.id).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job = %job.id, consumer = %self.consumer, "the job running here is held by another worker now; stopping it here");
                        return EvalError::ClaimLost(job.id.clone());
                    }
                    Err(err) => {
                        tracing::warn!(job = %job.id, error = %err, "cannot refresh the claim of the job running here");
                    }
                }
            }
        };
        tokio::select! {
            // A run that finished (its own acknowledgement may be what
            // made the claim check fail) wins over the check.
            biased;
            result = self.run_delivered(job) => result,
            lost = keep => Err(lost),
        }
    }

    async fn run_delivered(&self, job: &JobDelivery) -> Result<(), EvalError> {
        let parsed: EvalJob = match serde_json::from_str(&job.payload) {
            Ok(parsed) => parsed,
            Err(err) => {
                tracing::warn!(job = %job.id, payload = %job.payload, error = %err, "not an evaluation job; dropped");
                self.store.ack_job(&job.id).await?;
                return Ok(());
            }
        };
        let call_id = parsed.call_id.as_str();
        // Noted before the run: a worker that dies in it has it counted,
        // and a delivery that never got here (a read cut short by a
        // shutdown) is not counted as a crash.
        let Some(call) = self
            .store
            .update_call(call_id, &CallChange::PostCallBegun)
            .await?
        else {
            tracing::warn!(
                call_id,
                "evaluation job for a call that is not stored (expired?); dropped"
            );
            self.store.ack_job(&job.id).await?;
            return Ok(());
        };
        let deferrals = call.post_call_deferrals;
        // Runs begun before this one, at most the deliveries before this
        // one (a call recorded before runs were counted has none).
        let runs_before = call
            .post_call_runs
            .saturating_sub(1)
            .min(job.deliveries.saturating_sub(1));
        let crashed = runs_before.saturating_sub(deferrals);
        if crashed >= self.settings.max_deliveries || deferrals >= MAX_DEFERRALS {
            let what = if self.evaluator.judges() {
                "evaluation"
            } else {
                "post-call job"
            };
            let reason = if deferrals >= MAX_DEFERRALS {
                format!(
                    "{what} abandoned after {deferrals} deliveries with a service it needs down"
                )
            } else {
                format!("{what} abandoned after {crashed} deliveries (its workers stopped mid-job)")
            };
            tracing::warn!(call_id, job = %job.id, "{reason}");
            self.evaluator.give_up(call_id, &reason).await?;
            self.store.ack_job(&job.id).await?;
            return Ok(());
        }
        if job.deliveries > 1 {
            tracing::info!(call_id, job = %job.id, deliveries = job.deliveries, "running a reclaimed evaluation job");
        }
        match self.evaluator.run_job(call_id).await {
            Ok(()) => {}
            Err(EvalError::UnknownCall(_)) => {
                tracing::warn!(
                    call_id,
                    "evaluation job for a call that is not stored (expired?); dropped"
                );
            }
            // A store that timed out or failed over is as down as a model:
            // the run is deferred, not counted as a worker that died.
            Err(
                err @ (EvalError::PostCall(_)
                | EvalError::JudgeUnavailable(_)
                | EvalError::Store(_)),
            ) => {
                let deferred = self
                    .store
                    .update_call(call_id, &CallChange::PostCallDeferred)
                    .await;
                if let Err(store) = deferred {
                    tracing::warn!(call_id, error = %store, "could not count the deferral; this delivery counts toward giving up");
                }
                return Err(err);
            }
            Err(err) => return Err(err),
        }
        self.store.ack_job(&job.id).await?;
        Ok(())
    }

    /// Reclaimed jobs if asked and any are idle (then `true`), else new
    /// ones, waiting up to `wait`.
    async fn fetch(
        &self,
        reclaim: bool,
        wait: Duration,
    ) -> Result<(Vec<JobDelivery>, bool), StoreError> {
        if reclaim {
            let reclaimed = self.reclaim().await?;
            if !reclaimed.is_empty() {
                return Ok((reclaimed, true));
            }
        }
        let jobs = self
            .store
            .read_jobs(&self.consumer, self.settings.batch, wait)
            .await?;
        Ok((jobs, false))
    }

    async fn reclaim(&self) -> Result<Vec<JobDelivery>, StoreError> {
        self.store
            .reclaim_jobs(
                &self.consumer,
                self.settings.claim_idle,
                self.settings.batch,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use tokio::sync::Notify;

    use super::*;
    use crate::agent::eval::{EvaluatorSettings, queue_evaluation};
    use crate::agent::post_call::{PostCallError, PostCallStep};
    use crate::store::{CallRecord, MemoryStore, StoreSettings};

    /// A post-call step that runs until released.
    #[derive(Debug, Default)]
    struct Slow {
        started: Notify,
        release: Notify,
        runs: AtomicUsize,
    }

    #[async_trait]
    impl PostCallStep for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }

        async fn run(&self, _call: &CallRecord) -> Result<(), PostCallError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            self.started.notify_one();
            self.release.notified().await;
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_running_longer_than_claim_idle_is_not_taken_over() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
        let call = CallRecord::pending("c1", "file", Default::default(), Default::default(), 0);
        store.create_call(&call).await.unwrap();
        queue_evaluation(&*store, "c1").await.unwrap();
        queue_evaluation(&*store, "c1").await.unwrap();
        let slow = Arc::new(Slow::default());
        let settings = EvaluatorSettings {
            prompt: String::new(),
            max_attempts: 1,
            steps: vec![slow.clone() as Arc<dyn PostCallStep>],
            webhook: None,
        };
        let evaluator = Arc::new(Evaluator::without_judge(store.clone(), settings));
        let worker =
            EvaluationWorker::new(store.clone(), evaluator, "busy", WorkerSettings::default());
        let running = tokio::spawn(async move { worker.run(std::future::pending()).await });
        slow.started.notified().await;

        // Far past claim_idle (60 s) with the job still running.
        tokio::time::sleep(Duration::from_secs(300)).await;
        let taken = store
            .reclaim_jobs("thief", Duration::from_secs(60), 8)
            .await
            .unwrap();
        assert!(taken.is_empty(), "taken over while running: {taken:?}");
        // One job at a time: the second is still waiting, never handed out.
        let waiting = store.read_jobs("other", 8, Duration::ZERO).await.unwrap();
        assert_eq!(waiting.len(), 1, "the second job was not claimed");
        assert_eq!(slow.runs.load(Ordering::SeqCst), 1);

        slow.release.notify_one();
        running.abort();
    }

    /// A post-call step that counts its runs.
    #[derive(Debug, Default)]
    struct Count(AtomicUsize);

    #[async_trait]
    impl PostCallStep for Count {
        fn name(&self) -> &'static str {
            "count"
        }

        async fn run(&self, _call: &CallRecord) -> Result<(), PostCallError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    async fn store_with_calls(calls: usize) -> Arc<dyn Store> {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(StoreSettings::default()));
        for i in 0..calls {
            let id = format!("c{i}");
            let call = CallRecord::pending(&id, "file", Default::default(), Default::default(), 0);
            store.create_call(&call).await.unwrap();
            queue_evaluation(&*store, &id).await.unwrap();
        }
        store
    }

    fn worker_with(store: &Arc<dyn Store>, step: Arc<dyn PostCallStep>) -> EvaluationWorker {
        let settings = EvaluatorSettings {
            prompt: String::new(),
            max_attempts: 1,
            steps: vec![step],
            webhook: None,
        };
        let evaluator = Arc::new(Evaluator::without_judge(store.clone(), settings));
        EvaluationWorker::new(store.clone(), evaluator, "w", WorkerSettings::default())
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_loses_its_claim_stops_and_leaves_the_job_to_its_owner() {
        let store = store_with_calls(1).await;
        let slow = Arc::new(Slow::default());
        let worker = worker_with(&store, slow.clone());
        let job = store.read_jobs("w", 1, Duration::ZERO).await.unwrap();
        let running = tokio::spawn(async move { worker.process(&job[0]).await });
        slow.started.notified().await;
        // Taken for dead: another worker claims it.
        let taken = store
            .reclaim_jobs("thief", Duration::ZERO, 8)
            .await
            .unwrap();
        assert_eq!(taken.len(), 1);

        let ended = tokio::time::timeout(Duration::from_secs(60), running)
            .await
            .expect("the run went on after its claim was lost")
            .unwrap();
        assert!(matches!(ended, Err(EvalError::ClaimLost(_))), "{ended:?}");
        // Neither acknowledged nor deleted: still pending, the thief's.
        let pending = store
            .reclaim_jobs("third", Duration::ZERO, 8)
            .await
            .unwrap();
        assert_eq!(pending.len(), 1, "the job was acknowledged here");
        assert_eq!(slow.runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backlog_of_idle_jobs_drains_without_waiting_a_reclaim_period_each() {
        let store = store_with_calls(4).await;
        // A worker took them all and died.
        let dead = store.read_jobs("dead", 4, Duration::ZERO).await.unwrap();
        assert_eq!(dead.len(), 4);
        tokio::time::sleep(Duration::from_secs(61)).await;

        let count = Arc::new(Count::default());
        let worker = worker_with(&store, count.clone());
        let running = tokio::spawn(async move { worker.run(std::future::pending()).await });
        // Well under one reclaim period (claim_idle / 2 = 30 s).
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(count.0.load(Ordering::SeqCst), 4, "one per reclaim period");
        running.abort();
    }

    /// A post-call step whose store times out `failing` times, then works.
    #[derive(Debug)]
    struct StoreBlips {
        failing: AtomicUsize,
        runs: AtomicUsize,
    }

    #[async_trait]
    impl PostCallStep for StoreBlips {
        fn name(&self) -> &'static str {
            "store_blips"
        }

        async fn run(&self, _call: &CallRecord) -> Result<(), PostCallError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let left = self.failing.load(Ordering::SeqCst);
            if left > 0 {
                self.failing.store(left - 1, Ordering::SeqCst);
                return Err(PostCallError::Store(StoreError::Timeout(
                    Duration::from_secs(1),
                )));
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn store_errors_defer_the_job_and_do_not_use_up_its_deliveries() {
        let store = store_with_calls(1).await;
        let step = Arc::new(StoreBlips {
            failing: AtomicUsize::new(2),
            runs: AtomicUsize::new(0),
        });
        // max_deliveries = 2 (the default): two store timeouts would have
        // given the job up before the third delivery ran.
        let worker = worker_with(&store, step.clone());
        let first = store.read_jobs("w", 1, Duration::ZERO).await.unwrap();
        assert!(matches!(
            worker.process(&first[0]).await,
            Err(EvalError::Store(_))
        ));
        for expected in [Err(()), Ok(())] {
            let again = store.reclaim_jobs("w", Duration::ZERO, 1).await.unwrap();
            let ran = worker.process(&again[0]).await.map_err(|_| ());
            assert_eq!(ran, expected);
        }
        assert_eq!(
            step.runs.load(Ordering::SeqCst),
            3,
            "the third delivery ran"
        );
        let call = store.call("c0").await.unwrap().unwrap();
        assert_eq!(call.post_call_deferrals, 2);
        assert!(
            store
                .reclaim_jobs("w", Duration::ZERO, 1)
                .await
                .unwrap()
                .is_empty(),
            "acknowledged"
        );
    }

    #[tokio::test]
    async fn deliveries_that_never_began_running_do_not_count_toward_giving_up() {
        let store = store_with_calls(1).await;
        let count = Arc::new(Count::default());
        let worker = worker_with(&store, count.clone());
        // Two reads handed the job out and were cut short (a shutdown)
        // before it ran.
        store.read_jobs("w", 1, Duration::ZERO).await.unwrap();
        store.reclaim_jobs("w", Duration::ZERO, 1).await.unwrap();
        let third = store.reclaim_jobs("w", Duration::ZERO, 1).await.unwrap();
        assert_eq!(third[0].deliveries, 3);
        worker.process(&third[0]).await.unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "run, not given up");

        // Runs that began and died do count: with two of them noted the
        // next delivery gives up.
        let store = store_with_calls(1).await;
        let count = Arc::new(Count::default());
        let worker = worker_with(&store, count.clone());
        store.read_jobs("w", 1, Duration::ZERO).await.unwrap();
        for _ in 0..2 {
            store
                .update_call("c0", &CallChange::PostCallBegun)
                .await
                .unwrap();
        }
        store.reclaim_jobs("w", Duration::ZERO, 1).await.unwrap();
        let third = store.reclaim_jobs("w", Duration::ZERO, 1).await.unwrap();
        worker.process(&third[0]).await.unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "given up");
    }
}
