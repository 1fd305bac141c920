//! The evaluation job queue in the embedded store: a stream in the
//! keyspace (logged) and a pending-entries list in memory (not logged).

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::keyspace::Op;
use super::store::{MemoryStore, PendingJob};
use crate::store::{JobDelivery, JobQueue, StoreError};

#[async_trait]
impl JobQueue for MemoryStore {
    async fn push_job(&self, payload: &str) -> Result<String, StoreError> {
        let key = self.settings.keys.eval_jobs();
        let seq = self.write(|ks, now| {
            let (_, last) = ks.stream(&key, now);
            let seq = last + 1;
            let add = Op::XAdd {
                key: key.clone(),
                seq,
                payload: payload.to_owned(),
            };
            (vec![add], seq)
        })?;
        self.jobs_arrived.notify_waiters();
        Ok(job_id(seq))
    }

    async fn read_jobs(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<JobDelivery>, StoreError> {
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so a push in between still wakes us.
            let arrived = self.jobs_arrived.notified();
            let jobs = self.take_new_jobs(consumer, max)?;
            if !jobs.is_empty() || Instant::now() >= deadline {
                return Ok(jobs);
            }
            // Pushes by other processes (through the log) notify no one: look
            // again at least every 100 ms.
            let _arrived_or_timed_out = tokio::time::timeout_at(
                deadline.min(Instant::now() + Duration::from_millis(100)),
                arrived,
            )
            .await;
        }
    }

    async fn reclaim_jobs(
        &self,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<JobDelivery>, StoreError> {
        let key = self.settings.keys.eval_jobs();
        self.with_inner(|inner, now| {
            let (entries, _) = inner.keyspace.stream(&key, now);
            let mut claimed = Vec::new();
            let mut gone = Vec::new();
            for (&seq, job) in inner.jobs.pending.iter_mut() {
                if claimed.len() == max {
                    break;
                }
                if job.since.elapsed() < min_idle {
                    continue;
                }
                let Some(payload) = entries.and_then(|e| e.get(&seq)) else {
                    gone.push(seq);
                    continue;
                };
                job.consumer = consumer.to_owned();
                job.since = Instant::now();
                job.deliveries += 1;
                claimed.push(JobDelivery {
                    id: job_id(seq),
                    payload: payload.clone(),
                    deliveries: job.deliveries,
                });
            }
            for seq in gone {
                inner.jobs.pending.remove(&seq);
            }
            Ok(claimed)
        })
    }

    async fn ack_job(&self, id: &str) -> Result<(), StoreError> {
        let key = self.settings.keys.eval_jobs();
        let seq =
            parse_job_id(id).ok_or_else(|| StoreError::corrupt(&key, format!("no job {id}")))?;
        self.write(|_, _| {
            (
                vec![Op::XDel {
                    key: key.clone(),
                    seq,
                }],
                (),
            )
        })?;
        self.with_inner(|inner, _| {
            inner.jobs.pending.remove(&seq);
            Ok(())
        })
    }

    async fn keep_job(&self, consumer: &str, id: &str) -> Result<bool, StoreError> {
        self.keep_pending(consumer, id)
    }
}

impl MemoryStore {
    /// [`JobQueue::keep_job`].
    fn keep_pending(&self, consumer: &str, id: &str) -> Result<bool, StoreError> {
        let Some(seq) = parse_job_id(id) else {
            return Ok(false);
        };
        self.with_inner(|inner, _| match inner.jobs.pending.get_mut(&seq) {
            Some(job) if job.consumer == consumer => {
                job.since = Instant::now();
                Ok(true)
            }
            _ => Ok(false),
        })
    }

    fn take_new_jobs(&self, consumer: &str, max: usize) -> Result<Vec<JobDelivery>, StoreError> {
        let key = self.settings.keys.eval_jobs();
        self.with_inner(|inner, now| {
            let (entries, _) = inner.keyspace.stream(&key, now);
            let from = inner.jobs.delivered_up_to;
            let fresh: Vec<(u64, String)> = entries
                .into_iter()
                .flat_map(|e| e.range(from + 1..))
                .take(max)
                .map(|(&seq, payload)| (seq, payload.clone()))
                .collect();
            let mut delivered = Vec::with_capacity(fresh.len());
            for (seq, payload) in fresh {
                inner.jobs.delivered_up_to = seq;
                inner.jobs.pending.insert(
                    seq,
                    PendingJob {
                        consumer: consumer.to_owned(),
                        since: Instant::now(),
                        deliveries: 1,
                    },
                );
                delivered.push(JobDelivery {
                    id: job_id(seq),
                    payload,
                    deliveries: 1,
                });
            }
            Ok(delivered)
        })
    }
}

fn job_id(seq: u64) -> String {
    format!("{seq}-0")
}

fn parse_job_id(id: &str) -> Option<u64> {
    id.strip_suffix("-0")?.parse().ok()
}
