//! A call's state: the JSON kept at `call:{id}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::call_status::CallStatus;
use super::learned::Learned;
use super::outbound_call::OutboundCall;
use super::recording::CallRecording;
use super::stored_objects::StoredObjects;
use super::time::rfc3339;
use super::undelivered::UndeliveredMessage;

/// Who placed the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallDirection {
    /// The caller called us (a phone call to our number, a browser tab).
    Inbound,
    /// We called them (`POST /api/calls`, a campaign).
    Outbound,
}

/// The customer segment a call belongs to; it picks the system prompt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Country code, e.g. `US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Industry, e.g. `healthcare`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industry: Option<String>,
}

/// The evaluator's judgement of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The call reached its goal.
    Success,
    /// It did not.
    Failure,
}

impl Outcome {
    /// `success` or `failure`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// What the evaluator recorded for a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Evaluation {
    /// The judge answered.
    Evaluated {
        /// Success or failure.
        outcome: Outcome,
        /// 0 to 1.
        score: f64,
        /// The tactics the judge saw the agent use.
        tactics: Vec<String>,
        /// The judge's short reason.
        reason: String,
        /// The judge's model.
        model: String,
        /// When (RFC 3339).
        at: String,
    },
    /// No usable answer: the judge kept answering malformed JSON, could not
    /// be reached, or the job was delivered too many times.
    Unevaluated {
        /// Why, for people.
        reason: String,
        /// When (RFC 3339).
        at: String,
    },
}

impl Evaluation {
    /// When it was recorded (RFC 3339).
    pub fn at(&self) -> &str {
        match self {
            Self::Evaluated { at, .. } | Self::Unevaluated { at, .. } => at,
        }
    }
}

/// What the extraction step recorded for a call: the structured data the
/// pipeline's `[extraction]` schema asks for, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Extraction {
    /// The model answered with JSON that the schema accepts.
    Extracted {
        /// The answer, valid against the schema.
        data: serde_json::Value,
        /// The model that answered.
        model: String,
        /// Answers asked for, this one included.
        attempts: u32,
        /// When (RFC 3339).
        at: String,
    },
    /// No usable answer: every answer broke the schema or was not JSON, the
    /// call had no transcript, or the job was given up.
    Unextracted {
        /// Why, for people.
        reason: String,
        /// Answers asked for.
        attempts: u32,
        /// When (RFC 3339).
        at: String,
    },
}

/// The state of one call, as stored at `call:{id}`.
///
/// Fields other programs add to the JSON are kept through voxpipe's updates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The call (session) id.
    pub call_id: String,
    /// `twilio`, `webrtc` or `file`.
    pub transport: String,
    /// See [`CallStatus`].
    pub status: CallStatus,
    /// Inbound or outbound; absent in records written before outbound
    /// calls existed (all inbound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<CallDirection>,
    /// What an outbound call asked for and what Twilio said of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<OutboundCall>,
    /// When the session was set up (RFC 3339).
    pub created_at: String,
    /// When the pipeline started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the session ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// Why it ended, e.g. `hangup`, `end_call`, `end_of_input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// The segment the call belongs to.
    #[serde(default)]
    pub segment: Segment,
    /// Parameters the call was started with (Twilio `customParameters`,
    /// a WebRTC offer's `request_data`).
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
    /// The key the system prompt came from (`prompt:segment:US:healthcare`,
    /// `prompt:base`), or `toml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_source: Option<String>,
    /// `success` or `failure`, once evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// 0 to 1, once evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The evaluator's full record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
    /// The structured extraction, once the extraction step has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extraction: Option<Extraction>,
    /// The keys of the call's objects in object storage, as each is stored.
    #[serde(default, skip_serializing_if = "StoredObjects::is_empty")]
    pub objects: StoredObjects,
    /// Deliveries of the call's post-call job that ended because a service
    /// a step needs was down (not because a worker died): they do not count
    /// toward giving the job up.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub post_call_deferrals: u64,
    /// Deliveries of the call's post-call job that began running (noted
    /// before the run): a delivery handed to a worker that stopped before
    /// running it (a read cut short by shutdown) is not one, so it does not
    /// count toward giving the job up.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub post_call_runs: u64,
    /// The call's recording, when `[recording]` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<CallRecording>,
    /// What `[learning]` took from the call (skills, test cases), once its
    /// step has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned: Option<Learned>,
    /// The prompt optimisation this (failed) call started, if any: its
    /// trace is `optimisation:{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimisation: Option<String>,
    /// Text conversations: answers Twilio reported it could not deliver,
    /// the first [`MAX_UNDELIVERED_KEPT`](super::MAX_UNDELIVERED_KEPT).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undelivered: Vec<UndeliveredMessage>,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Fields voxpipe does not know, kept as they were.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl CallRecord {
    /// A pending call created at `now_ms`.
    pub fn pending(
        call_id: impl Into<String>,
        transport: impl Into<String>,
        segment: Segment,
        custom_parameters: BTreeMap<String, String>,
        now_ms: u64,
    ) -> Self {
        let now = rfc3339(now_ms);
        CallRecord {
            call_id: call_id.into(),
            transport: transport.into(),
            status: CallStatus::Pending,
            direction: None,
            outbound: None,
            created_at: now.clone(),
            started_at: None,
            ended_at: None,
            end_reason: None,
            segment,
            custom_parameters,
            prompt_source: None,
            outcome: None,
            score: None,
            evaluation: None,
            extraction: None,
            objects: StoredObjects::default(),
            post_call_deferrals: 0,
            post_call_runs: 0,
            recording: None,
            learned: None,
            optimisation: None,
            undelivered: Vec::new(),
            updated_at: now,
            extra: serde_json::Map::new(),
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a segment part (a country, an industry) may be: 1 to 64 bytes with
/// nothing that means something in a key: no `:` (the separator), `*` (the
/// wildcard country), `{` or `}` (Redis Cluster hash tags) and no control
/// characters. Spaces, `.` and `/` are fine (`real estate`).
pub fn is_segment_part(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && !value
            .chars()
            .any(|c| matches!(c, ':' | '*' | '{' | '}') || c.is_control())
}

/// Why a segment part is refused, for error messages.
pub const SEGMENT_PART_RULE: &str =
    "1 to 64 bytes without `:`, `*`, `{`, `}` or control characters";

impl Segment {
    /// The segment of a call started with `parameters`: their `country` and
    /// `industry`, each falling back to `defaults` (the TOML's). A value that
    /// cannot be part of a key ([`is_segment_part`]) is ignored with a
    /// warning.
    pub fn resolve(parameters: &BTreeMap<String, String>, defaults: &Segment) -> Segment {
        let pick = |name: &str, default: &Option<String>| {
            parameters
                .get(name)
                .and_then(|value| {
                    let value = value.trim();
                    let usable = is_segment_part(value);
                    if !usable {
                        tracing::warn!(
                            parameter = name,
                            value = %value.escape_debug(),
                            rule = SEGMENT_PART_RULE,
                            "segment parameter ignored"
                        );
                    }
                    usable.then(|| value.to_owned())
                })
                .or_else(|| default.clone())
        };
        Segment {
            country: pick("country", &defaults.country),
            industry: pick("industry", &defaults.industry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_part_refuses_only_what_breaks_keys() {
        let defaults = Segment {
            country: Some("US".into()),
            industry: Some("retail".into()),
        };
        let resolve = |country: &str, industry: &str| {
            let parameters = BTreeMap::from([
                ("country".to_owned(), country.to_owned()),
                ("industry".to_owned(), industry.to_owned()),
            ]);
            Segment::resolve(&parameters, &defaults)
        };
        let kept = resolve(" DE ", "home-care_2");
        assert_eq!(kept.country.as_deref(), Some("DE"));
        assert_eq!(kept.industry.as_deref(), Some("home-care_2"));
        for good in ["real estate", "b2b.saas", "health/care", "Zürich"] {
            let kept = resolve("US", good);
            assert_eq!(kept.industry.as_deref(), Some(good), "{good:?}");
        }
        for bad in [
            "{US}",
            "U}S",
            "a:b",
            "*",
            "x\u{7}y",
            "x\ny",
            "",
            &"x".repeat(65),
        ] {
            assert_eq!(resolve(bad, bad), defaults, "{bad:?}");
        }
    }
    use crate::store::{CallChange, TwilioReport};

    #[test]
    fn status_only_moves_forward_and_unknown_fields_survive() {
        let json = r#"{"call_id":"c1","transport":"twilio","status":"pending",
            "created_at":"x","updated_at":"x","room_url":"https://example.test/r"}"#;
        let mut call: CallRecord = serde_json::from_str(json).unwrap();
        call.apply(&CallChange::Started { at_ms: 0 }, 0);
        call.apply(
            &CallChange::Ended {
                reason: "hangup".into(),
                at_ms: 1000,
            },
            1000,
        );
        call.apply(&CallChange::Started { at_ms: 2000 }, 2000);
        assert_eq!(call.status, CallStatus::Completed);
        assert_eq!(call.started_at.as_deref(), Some("1970-01-01T00:00:00.000Z"));
        assert_eq!(call.end_reason.as_deref(), Some("hangup"));
        let back = serde_json::to_value(&call).unwrap();
        assert_eq!(back["room_url"], "https://example.test/r");
        assert_eq!(back["status"], "completed");
    }

    #[test]
    fn the_first_verdict_stays_unless_one_is_asked_for_afresh() {
        let mut call = CallRecord::pending("c1", "twilio", Segment::default(), BTreeMap::new(), 0);
        let verdict = |outcome: Outcome, score: f64| Evaluation::Evaluated {
            outcome,
            score,
            tactics: Vec::new(),
            reason: String::new(),
            model: "m".into(),
            at: String::new(),
        };
        call.apply(&CallChange::Evaluated(verdict(Outcome::Success, 0.9)), 0);
        call.apply(&CallChange::Evaluated(verdict(Outcome::Failure, 0.1)), 0);
        assert_eq!(call.evaluation, Some(verdict(Outcome::Success, 0.9)));
        assert_eq!(
            (call.outcome, call.score),
            (Some(Outcome::Success), Some(0.9))
        );
        call.apply(&CallChange::Reevaluated(verdict(Outcome::Failure, 0.1)), 0);
        assert_eq!(call.evaluation, Some(verdict(Outcome::Failure, 0.1)));
        assert_eq!(
            (call.outcome, call.score),
            (Some(Outcome::Failure), Some(0.1))
        );
    }

    #[test]
    fn a_waiting_lesson_moves_on_once_and_the_first_final_one_stays() {
        let mut call = CallRecord::pending("c1", "twilio", Segment::default(), BTreeMap::new(), 0);
        let waiting = |model: &str| Learned::Waiting {
            pairs: Vec::new(),
            test_cases_added: 1,
            model: model.into(),
            attempts: 1,
            at: String::new(),
        };
        let nothing = |reason: &str| Learned::Nothing {
            reason: reason.into(),
            attempts: 0,
            at: String::new(),
        };
        call.apply(&CallChange::Learned(waiting("first")), 0);
        call.apply(&CallChange::Learned(waiting("second")), 0);
        assert_eq!(call.learned, Some(waiting("first")));
        call.apply(&CallChange::Learned(nothing("given up")), 0);
        call.apply(&CallChange::Learned(nothing("later")), 0);
        call.apply(&CallChange::Learned(waiting("third")), 0);
        assert_eq!(call.learned, Some(nothing("given up")));
        let json = serde_json::to_value(&call).unwrap();
        assert_eq!(json["learned"]["status"], "nothing");
    }

    fn outbound_call() -> CallRecord {
        let mut call = CallRecord::pending("c2", "twilio", Segment::default(), BTreeMap::new(), 0);
        call.status = CallStatus::Queued;
        call.direction = Some(CallDirection::Outbound);
        call
    }

    fn report(status: CallStatus, sequence: u64) -> CallChange {
        CallChange::TwilioReported(TwilioReport {
            status: Some(status),
            sequence: Some(sequence),
            twilio_sid: Some("CA01".into()),
            at_ms: 1000 * sequence,
            ..TwilioReport::default()
        })
    }

    #[test]
    fn an_unanswered_call_ends_with_its_final_status_and_never_moves_back() {
        let mut call = outbound_call();
        call.apply(
            &CallChange::Dialled {
                twilio_sid: "CA01".into(),
                at_ms: 0,
            },
            0,
        );
        assert_eq!(call.status, CallStatus::Initiated);
        call.apply(&report(CallStatus::Busy, 2), 2000);
        call.apply(&report(CallStatus::Ringing, 1), 3000);
        assert_eq!(call.status, CallStatus::Busy);
        assert_eq!(call.end_reason.as_deref(), Some("busy"));
        assert_eq!(call.ended_at.as_deref(), Some("1970-01-01T00:00:02.000Z"));
        let outbound = call.outbound.as_ref().unwrap();
        assert_eq!(outbound.callback_sequence, Some(2));
        assert_eq!(outbound.twilio_sid.as_deref(), Some("CA01"));
        call.apply(
            &CallChange::Unconnected {
                status: CallStatus::Failed,
                error: Some("late".into()),
                at_ms: 4000,
            },
            4000,
        );
        assert_eq!(call.status, CallStatus::Busy);
    }

    #[test]
    fn an_answered_call_is_active_then_completed_by_its_session() {
        let mut call = outbound_call();
        call.apply(&report(CallStatus::Ringing, 1), 1000);
        let mut answered = report(CallStatus::Active, 2);
        if let CallChange::TwilioReported(report) = &mut answered {
            report.answered_by = Some("human".into());
        }
        call.apply(&answered, 2000);
        call.apply(&CallChange::Started { at_ms: 2100 }, 2100);
        assert_eq!(call.status, CallStatus::Active);
        assert!(call.started_at.is_some());
        call.apply(&report(CallStatus::Completed, 3), 9000);
        call.apply(
            &CallChange::Ended {
                reason: "hangup".into(),
                at_ms: 9100,
            },
            9100,
        );
        assert_eq!(call.status, CallStatus::Completed);
        assert_eq!(call.end_reason.as_deref(), Some("hangup"));
        let outbound = call.outbound.as_ref().unwrap();
        assert_eq!(outbound.answered_by.as_deref(), Some("human"));
        assert_eq!(
            outbound.answered_at.as_deref(),
            Some("1970-01-01T00:00:02.000Z")
        );
    }
}
