//! The writer's task: the queue drained into the store in order, with
//! retries, the spool kept up to date beside them, and the bounded flush.
//!
//! Every wait of the loop (an attempt at the front step, the backoff
//! before the next one) is one `select!` over the same things: the flush
//! deadline, the store call or the backoff, the spool write in flight and
//! the commands. None of them waits for another: a disk that hangs holds
//! up neither the store call nor the deadline, and a store that hangs
//! holds up neither the commands nor the disk.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::spool_file::write_done;
use super::{
    Action, Command, Step, WriteReport, Writer, WriterStatus, describe, dropped, flush_deadline,
};
use crate::agent::redact::{record_for_log, turn_for_log};
use crate::store::{CallChange, StoreError};

/// How long an attempt may go unanswered before the store counts as
/// failing for the spool: what waits goes to disk then, not only once the
/// store's own timeout has failed the attempt.
pub(super) const SLOW_ATTEMPT: Duration = Duration::from_secs(1);

impl Writer {
    pub(super) async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Command>,
    ) -> (WriteReport, watch::Sender<WriterStatus>) {
        let mut backoff = self.settings.retry_initial;
        let mut failing_since: Option<Instant> = None;
        loop {
            while let Ok(command) = rx.try_recv() {
                self.accept(command);
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
            let outcome = self
                .attempt(
                    &mut attempt,
                    first_attempt,
                    &mut rx,
                    failing_since.is_some(),
                )
                .await;
            // What the attempt learnt (the turn's index) stays with the
            // step: still the front one, since commands taken in meanwhile
            // only went behind it.
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
                    // What waits goes to disk (again, if a write failed).
                    self.spool_file.due = true;
                    if !self.wait_to_retry(&mut rx, backoff, since, &err).await {
                        return (self.report, self.status);
                    }
                    backoff = (backoff * 2).min(self.settings.retry_max);
                }
            }
        }
    }

    /// Performs `step`, a copy of the front one, once; `None` when the
    /// flush deadline passes first. With a spool, commands sent meanwhile
    /// are taken in (behind the step) and, once the store is `failing` or
    /// the attempt is slow, kept in the spool as they come; the copy keeps
    /// the queue's front as it was before the attempt, for the spool file,
    /// until the caller puts it back.
    async fn attempt(
        &mut self,
        step: &mut Step,
        first_attempt: bool,
        rx: &mut mpsc::UnboundedReceiver<Command>,
        failing: bool,
    ) -> Option<Result<(), StoreError>> {
        let store = Arc::clone(&self.store);
        let call_id = Arc::clone(&self.call_id);
        let flush = self.settings.flush_timeout;
        let spool = self.settings.spool.is_some();
        let mut next_index = self.next_index;
        let lease_holder = self.settings.lease_holder.clone();
        let slow = tokio::time::sleep(SLOW_ATTEMPT);
        tokio::pin!(slow);
        let mut is_slow = false;
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
                if self.spooling(failing, is_slow) {
                    self.start_spool_write();
                }
                tokio::select! {
                    biased;
                    () = flush_deadline(&self.end, flush) => break None,
                    result = &mut work => break Some(result),
                    done = write_done(&mut self.spool_file.write, &self.call_id) => {
                        // Steps that came while it ran follow at once.
                        self.spool_write_done(done);
                    }
                    command = rx.recv(), if spool && !self.ended => {
                        self.accept(command.unwrap_or_else(dropped));
                        // A burst is written once.
                        while let Ok(command) = rx.try_recv() {
                            self.accept(command);
                        }
                    }
                    () = &mut slow, if spool && !is_slow => {
                        is_slow = true;
                        self.spool_file.due = true;
                    }
                }
            }
        };
        self.next_index = next_index;
        outcome
    }

    /// After a failed attempt: waits `backoff`, taking in commands and
    /// keeping the spool up to date meanwhile. False when the flush
    /// deadline passed first: everything was given up (left in the spool,
    /// or logged).
    async fn wait_to_retry(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Command>,
        backoff: Duration,
        since: Instant,
        err: &StoreError,
    ) -> bool {
        let flush = self.settings.flush_timeout;
        let wait = tokio::time::sleep(backoff);
        tokio::pin!(wait);
        loop {
            if self.spooling(true, false) {
                self.start_spool_write();
            }
            tokio::select! {
                biased;
                () = flush_deadline(&self.end, flush) => {
                    let why = format!(
                        "the context store stayed unavailable for {:?} (last error: {err})",
                        since.elapsed()
                    );
                    self.give_up_all(rx, &why).await;
                    return false;
                }
                () = &mut wait => return true,
                done = write_done(&mut self.spool_file.write, &self.call_id) => {
                    self.spool_write_done(done);
                }
                // Spoken turns reach the disk as they come, not at the
                // next retry.
                command = rx.recv(), if !self.ended => {
                    self.accept(command.unwrap_or_else(dropped));
                }
            }
        }
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
        self.spool_file.changed = true;
        self.spool_file.due = true;
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
