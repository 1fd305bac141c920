//! [`CallChange`]: a change to a stored call, and how a record takes it
//! ([`CallRecord::apply`]): statuses only move forward, and the outbound
//! changes apply only while the record is as the change expects.

use super::call::{CallRecord, Evaluation, Extraction};
use super::call_status::CallStatus;
use super::learned::Learned;
use super::outbound_call::{OutboundCall, TwilioReport};
use super::recording::CallRecording;
use super::stored_objects::StoredObjects;
use super::time::rfc3339;
use super::undelivered::{MAX_UNDELIVERED_KEPT, UndeliveredMessage};

impl CallRecord {
    /// Records `evaluation` with the outcome and score it gives.
    fn set_evaluation(&mut self, evaluation: &Evaluation) {
        match evaluation {
            Evaluation::Evaluated { outcome, score, .. } => {
                self.outcome = Some(*outcome);
                self.score = Some(*score);
            }
            Evaluation::Unevaluated { .. } => {
                self.outcome = None;
                self.score = None;
            }
        }
        self.evaluation = Some(evaluation.clone());
    }

    /// Applies `change`, written at `now_ms`. Status never moves backwards,
    /// so a late or repeated change is harmless. Whether the record
    /// changed: when it did not (a repeated change, a message past the
    /// cap), `updated_at` stays too, and the stores write nothing.
    pub fn apply(&mut self, change: &CallChange, now_ms: u64) -> bool {
        let before = self.clone();
        self.take(change);
        let changed = *self != before || matches!(change, CallChange::Touched);
        if changed {
            self.updated_at = rfc3339(now_ms);
        }
        changed
    }

    /// Applies `change`, but for `updated_at`.
    fn take(&mut self, change: &CallChange) {
        match change {
            CallChange::Started { at_ms } => {
                if self.started_at.is_none() && !self.status.is_final() {
                    self.status = self.status.advanced_to(CallStatus::Active);
                    self.started_at = Some(rfc3339(*at_ms));
                }
            }
            CallChange::Ended { reason, at_ms } => {
                if self.ended_at.is_none() {
                    self.status = self.status.advanced_to(CallStatus::Completed);
                    self.ended_at = Some(rfc3339(*at_ms));
                    self.end_reason = Some(reason.clone());
                }
            }
            // The first verdict stays: two workers racing on one job store
            // one, and each merges tactics and optimises from that one.
            CallChange::Evaluated(evaluation) => {
                if self.evaluation.is_none() {
                    self.set_evaluation(evaluation);
                }
            }
            // Asked for afresh (`voxpipe evaluate`): replaces.
            CallChange::Reevaluated(evaluation) => self.set_evaluation(evaluation),
            // The first extraction stays: two workers racing on one job
            // store one result, and the webhook and storage read that one.
            CallChange::Extracted(extraction) => {
                if self.extraction.is_none() {
                    self.extraction = Some(extraction.clone());
                }
            }
            CallChange::ObjectsStored(stored) => self.objects.merge(stored),
            CallChange::PostCallDeferred => {
                self.post_call_deferrals = self.post_call_deferrals.saturating_add(1);
            }
            CallChange::PostCallBegun => {
                self.post_call_runs = self.post_call_runs.saturating_add(1);
            }
            CallChange::Recorded(recording) => self.recording = Some(recording.clone()),
            // Waiting moves on to a final state; the first final state
            // stays (two workers racing on one job record one lesson).
            CallChange::Learned(learned) => {
                let replaces = match &self.learned {
                    None => true,
                    Some(Learned::Waiting { .. }) => learned.is_final(),
                    Some(_) => false,
                };
                if replaces {
                    self.learned = Some(learned.clone());
                }
            }
            CallChange::Optimised(id) => self.optimisation = Some(id.clone()),
            CallChange::Touched => {}
            // Kept once per message (Twilio may call back twice), and only
            // the first few: later ones are alike.
            CallChange::Undelivered(undelivered) => {
                let known = self
                    .undelivered
                    .iter()
                    .any(|kept| kept.message_sid == undelivered.message_sid);
                // Only a text conversation's answers have a status to
                // report (`Channel::name`: Twilio answers `sms` and
                // `whatsapp`).
                let text = matches!(self.transport.as_str(), "sms" | "whatsapp");
                if text && !known && self.undelivered.len() < MAX_UNDELIVERED_KEPT {
                    self.undelivered.push(undelivered.clone());
                }
            }
            CallChange::Dialled { twilio_sid, at_ms } => {
                let outbound = self.outbound.get_or_insert_with(OutboundCall::default);
                outbound
                    .twilio_sid
                    .get_or_insert_with(|| twilio_sid.clone());
                outbound.dialled_at.get_or_insert_with(|| rfc3339(*at_ms));
                self.status = self.status.advanced_to(CallStatus::Initiated);
            }
            CallChange::Asking { at_ms, by } => {
                let outbound = self.outbound.get_or_insert_with(OutboundCall::default);
                let free = (outbound.asked_at.is_none() || outbound.asked_by.as_ref() == Some(by))
                    && outbound.twilio_sid.is_none();
                if free && !self.status.is_final() {
                    outbound.asked_at = Some(rfc3339(*at_ms));
                    outbound.asked_by = Some(by.clone());
                }
            }
            CallChange::NotTaken { by } => {
                if let Some(outbound) = &mut self.outbound
                    && outbound.twilio_sid.is_none()
                    && outbound.asked_by.as_ref() == Some(by)
                {
                    outbound.asked_at = None;
                    outbound.asked_by = None;
                }
            }
            CallChange::Unplaced { error, at_ms, note } => {
                let unplaced = self
                    .outbound
                    .as_ref()
                    .is_none_or(|o| o.twilio_sid.is_none() && &RequestNote::of(o) == note);
                if unplaced && !self.status.is_final() && self.started_at.is_none() {
                    self.status = CallStatus::Failed;
                    self.end_unconnected(*at_ms);
                    self.outbound
                        .get_or_insert_with(OutboundCall::default)
                        .error = Some(error.clone());
                }
            }
            CallChange::TwilioReported(report) => self.apply_twilio(report),
            CallChange::Unconnected {
                status,
                error,
                at_ms,
            } => {
                if !self.status.is_final() && self.started_at.is_none() {
                    self.status = *status;
                    self.end_unconnected(*at_ms);
                    if let Some(error) = error {
                        self.outbound
                            .get_or_insert_with(OutboundCall::default)
                            .error = Some(error.clone());
                    }
                }
            }
        }
    }
}

impl CallRecord {
    fn apply_twilio(&mut self, report: &TwilioReport) {
        let outbound = self.outbound.get_or_insert_with(OutboundCall::default);
        if let Some(sid) = &report.twilio_sid {
            outbound.twilio_sid.get_or_insert_with(|| sid.clone());
        }
        if let Some(answered_by) = &report.answered_by {
            outbound.answered_by = Some(answered_by.clone());
        }
        if let Some(duration) = report.call_duration_secs {
            outbound.call_duration_secs = Some(duration);
        }
        if let Some(error) = &report.error {
            outbound.error.get_or_insert_with(|| error.clone());
        }
        if let Some(sequence) = report.sequence {
            outbound.callback_sequence = Some(
                outbound
                    .callback_sequence
                    .map_or(sequence, |s| s.max(sequence)),
            );
        }
        let Some(status) = report.status else {
            return;
        };
        if status == CallStatus::Active {
            outbound
                .answered_at
                .get_or_insert_with(|| rfc3339(report.at_ms));
        }
        let before = self.status;
        self.status = before.advanced_to(status);
        if self.status.is_final() && !before.is_final() && self.started_at.is_none() {
            self.end_unconnected(report.at_ms);
        }
    }

    /// A call that ends without its pipeline ever running ends here.
    fn end_unconnected(&mut self, at_ms: u64) {
        if self.ended_at.is_none() {
            self.ended_at = Some(rfc3339(at_ms));
            self.end_reason = Some(self.status.as_str().to_owned());
        }
    }
}

/// A change to a stored call.
#[derive(Debug, Clone, PartialEq)]
pub enum CallChange {
    /// The pipeline started: pending → active.
    Started {
        /// When (Unix ms).
        at_ms: u64,
    },
    /// The session ended: → completed.
    Ended {
        /// Why.
        reason: String,
        /// When (Unix ms).
        at_ms: u64,
    },
    /// The evaluator judged it (kept only if no verdict is stored yet:
    /// of two workers racing on one job, the first verdict stands).
    Evaluated(Evaluation),
    /// The evaluator judged it again because a fresh verdict was asked for
    /// (`voxpipe evaluate ID`): replaces the stored one.
    Reevaluated(Evaluation),
    /// The extraction step recorded its result (kept only if none is
    /// stored yet).
    Extracted(Extraction),
    /// Objects were stored: their keys are recorded (keys already recorded
    /// and not named here are kept).
    ObjectsStored(StoredObjects),
    /// A delivery of the post-call job ended because a service a step needs
    /// was down; the job stays pending and runs again.
    PostCallDeferred,
    /// A delivery of the post-call job is about to run (counted before
    /// it runs, so a worker that dies in the run has it counted).
    PostCallBegun,
    /// Its recording was finished (or failed).
    Recorded(CallRecording),
    /// The learning step recorded what it took from the call (see
    /// [`Learned`] for which change wins).
    Learned(Learned),
    /// A prompt optimisation ran for it (the id of its trace).
    Optimised(String),
    /// Text: Twilio reported an answer `failed` or `undelivered`.
    Undelivered(UndeliveredMessage),
    /// Nothing but `updated_at`: written again, so that its TTL is
    /// refreshed (the call of a recording still waiting on storage).
    Touched,
    /// Outbound: Twilio took the call (its SID): queued → initiated.
    Dialled {
        /// Twilio's call SID.
        twilio_sid: String,
        /// When it was dialled (Unix ms).
        at_ms: u64,
    },
    /// Outbound: try `by` is about to send a create request to Twilio.
    /// Taken only when no other try has asked and Twilio has given no SID
    /// (and the call is not final): the try sends its request only if the
    /// record then names it.
    Asking {
        /// When (Unix ms).
        at_ms: u64,
        /// The try (a random id).
        by: String,
    },
    /// Outbound: Twilio created nothing for try `by`'s request (a 429, a
    /// 503, or never reached): the call is not asked of Twilio any more.
    /// Ignored once Twilio gave a SID, or when another try asked.
    NotTaken {
        /// The try.
        by: String,
    },
    /// Outbound: the call was never placed (never asked of Twilio, or
    /// asked and never confirmed): → `failed` with `error`, but only if
    /// the record still has no SID, still has the request note `note`
    /// (none: not asked), and is neither final nor started, so a decision
    /// read earlier never fails a call that has moved on since.
    Unplaced {
        /// Why, for people.
        error: String,
        /// When (Unix ms).
        at_ms: u64,
        /// The request note the decision was made on.
        note: RequestNote,
    },
    /// Outbound: a callback from Twilio. Its status applies only when it
    /// moves the call forward (callbacks come out of order and twice).
    TwilioReported(TwilioReport),
    /// Outbound: the call ended before it ever connected (a dial refused, a
    /// cancel before Twilio had it): → `status`, a final one. Ignored once
    /// the call is final or its pipeline has started.
    Unconnected {
        /// The final status.
        status: CallStatus,
        /// Why, for people.
        error: Option<String>,
        /// When (Unix ms).
        at_ms: u64,
    },
}

/// A call's request note as read: which try asked Twilio, and when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestNote {
    /// `outbound.asked_at`.
    pub asked_at: Option<String>,
    /// `outbound.asked_by`.
    pub asked_by: Option<String>,
}

impl RequestNote {
    /// The note `outbound` holds.
    pub fn of(outbound: &OutboundCall) -> RequestNote {
        RequestNote {
            asked_at: outbound.asked_at.clone(),
            asked_by: outbound.asked_by.clone(),
        }
    }

    /// The note `call` holds (none for a call with no outbound part).
    pub fn of_call(call: &CallRecord) -> RequestNote {
        call.outbound
            .as_ref()
            .map(RequestNote::of)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Segment;

    fn queued() -> CallRecord {
        let mut call =
            CallRecord::pending("c1", "twilio", Segment::default(), Default::default(), 0);
        call.status = CallStatus::Queued;
        call
    }

    fn asked_by(call: &CallRecord) -> Option<&str> {
        call.outbound.as_ref().and_then(|o| o.asked_by.as_deref())
    }

    #[test]
    fn one_try_asks_and_only_it_takes_its_note_back() {
        let mut call = queued();
        let ask = |by: &str| CallChange::Asking {
            at_ms: 5,
            by: by.into(),
        };
        call.apply(&ask("a"), 5);
        call.apply(&ask("b"), 6);
        assert_eq!(asked_by(&call), Some("a"), "the second try is refused");
        call.apply(&ask("a"), 7);
        assert_eq!(asked_by(&call), Some("a"), "the same try may ask again");
        call.apply(&CallChange::NotTaken { by: "b".into() }, 8);
        assert_eq!(asked_by(&call), Some("a"), "not b's to take back");
        call.apply(&CallChange::NotTaken { by: "a".into() }, 9);
        assert_eq!(asked_by(&call), None);
        call.apply(&ask("b"), 10);
        assert_eq!(asked_by(&call), Some("b"));
        // Once Twilio gave a SID, nobody asks and nothing is taken back.
        call.apply(
            &CallChange::Dialled {
                twilio_sid: "CA1".into(),
                at_ms: 11,
            },
            11,
        );
        call.apply(&CallChange::NotTaken { by: "b".into() }, 12);
        assert_eq!(asked_by(&call), Some("b"));
        let mut placed = queued();
        placed.apply(
            &CallChange::Dialled {
                twilio_sid: "CA1".into(),
                at_ms: 1,
            },
            1,
        );
        placed.apply(&ask("c"), 2);
        assert_eq!(asked_by(&placed), None);
    }

    fn asked_by_a() -> CallRecord {
        let mut call = queued();
        let ask = CallChange::Asking {
            at_ms: 40,
            by: "a".into(),
        };
        call.apply(&ask, 40);
        call
    }

    #[test]
    fn a_call_is_failed_as_unplaced_only_while_it_is_as_read() {
        let unplaced = |note: RequestNote| CallChange::Unplaced {
            error: "never placed".into(),
            at_ms: 50,
            note,
        };
        // Read as never asked, and still so: failed.
        let mut call = queued();
        call.apply(&unplaced(RequestNote::default()), 50);
        assert_eq!(call.status, CallStatus::Failed);
        // Asked since it was read: left alone.
        let mut call = asked_by_a();
        call.apply(&unplaced(RequestNote::default()), 50);
        assert_eq!(call.status, CallStatus::Queued);
        // Read as asked by another try: left alone.
        let note = RequestNote::of_call(&call);
        let other = RequestNote {
            asked_by: Some("b".into()),
            ..note.clone()
        };
        call.apply(&unplaced(other), 50);
        assert_eq!(call.status, CallStatus::Queued);
        // Read as asked by that try at that time, and still so: failed.
        call.apply(&unplaced(note.clone()), 50);
        assert_eq!(call.status, CallStatus::Failed);
        // A SID came since: left alone.
        let mut call = asked_by_a();
        call.apply(
            &CallChange::Dialled {
                twilio_sid: "CA1".into(),
                at_ms: 45,
            },
            45,
        );
        call.apply(&unplaced(note), 50);
        assert_eq!(call.status, CallStatus::Initiated);
    }
}
