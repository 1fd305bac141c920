//! Twilio's status and answering-machine callbacks, read without I/O.
//!
//! The dialler points `StatusCallback` (and `AsyncAmdStatusCallback`) at
//! `https://PUBLIC_HOST/twilio/status?call_id={id}`: the query names the
//! call (Twilio signs the whole URL, so it cannot be changed on the way).
//! The form carries `CallSid`, `CallStatus` (`queued`, `initiated`,
//! `ringing`, `in-progress`, `completed`, `busy`, `no-answer`, `failed`,
//! `canceled`), `SequenceNumber`, `CallDuration` once completed, and
//! `AnsweredBy` when machine detection ran (`human`, `machine_start`,
//! `machine_end_beep`, `machine_end_silence`, `machine_end_other`, `fax`,
//! `unknown`). The AMD callback has `AnsweredBy` and no `CallStatus`.

use crate::store::{CallStatus, TwilioReport};

use super::twilio_dialer::CALL_ID_PARAMETER;

/// A callback, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCallback {
    /// voxpipe's call id, from the URL.
    pub call_id: String,
    /// What Twilio said.
    pub report: TwilioReport,
}

/// Why a callback cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// The URL names no call.
    #[error("the callback URL names no call_id")]
    MissingCallId,
    /// `CallStatus` is not one Twilio documents.
    #[error("unknown CallStatus `{0}`")]
    UnknownStatus(String),
    /// Neither a status nor an answering-machine verdict.
    #[error("the callback carries neither CallStatus nor AnsweredBy")]
    Empty,
}

/// Twilio's `CallStatus` as a [`CallStatus`].
pub(super) fn call_status(twilio: &str) -> Option<CallStatus> {
    Some(match twilio {
        "queued" => CallStatus::Queued,
        "initiated" => CallStatus::Initiated,
        "ringing" => CallStatus::Ringing,
        "in-progress" | "answered" => CallStatus::Active,
        "completed" => CallStatus::Completed,
        "busy" => CallStatus::Busy,
        "no-answer" => CallStatus::NoAnswer,
        "failed" => CallStatus::Failed,
        "canceled" => CallStatus::Canceled,
        _ => return None,
    })
}

impl StatusCallback {
    /// Reads the callback made to a URL with `query`, with body `form`,
    /// received at `now_ms`.
    pub fn parse(
        query: Option<&str>,
        form: &[(String, String)],
        now_ms: u64,
    ) -> Result<StatusCallback, StatusError> {
        let call_id = query
            .into_iter()
            .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
            .find(|(name, _)| name == CALL_ID_PARAMETER)
            .map(|(_, value)| value.into_owned())
            .filter(|id| !id.is_empty())
            .ok_or(StatusError::MissingCallId)?;
        let field = |name: &str| {
            form.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.trim())
                .filter(|value| !value.is_empty())
        };
        let status = field("CallStatus")
            .map(|s| {
                call_status(s)
                    .ok_or_else(|| StatusError::UnknownStatus(s.chars().take(32).collect()))
            })
            .transpose()?;
        let answered_by = field("AnsweredBy").map(str::to_owned);
        if status.is_none() && answered_by.is_none() {
            return Err(StatusError::Empty);
        }
        let number = |name: &str| field(name).and_then(|v| v.parse::<u64>().ok());
        let error = field("ErrorCode").map(|code| match field("ErrorMessage") {
            Some(message) => format!("Twilio error {code}: {message}"),
            None => format!("Twilio error {code}"),
        });
        Ok(StatusCallback {
            call_id,
            report: TwilioReport {
                status,
                sequence: number("SequenceNumber"),
                twilio_sid: field("CallSid").map(str::to_owned),
                answered_by,
                call_duration_secs: number("CallDuration"),
                error,
                at_ms: now_ms,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::form_fields as form;

    #[test]
    fn reads_a_status_callback() {
        let callback = StatusCallback::parse(
            Some("call_id=abc-1"),
            &form(&[
                ("CallSid", "CA0123"),
                ("CallStatus", "completed"),
                ("SequenceNumber", "3"),
                ("CallDuration", "42"),
                ("AnsweredBy", "human"),
            ]),
            7,
        )
        .unwrap();
        assert_eq!(callback.call_id, "abc-1");
        assert_eq!(callback.report.status, Some(CallStatus::Completed));
        assert_eq!(callback.report.sequence, Some(3));
        assert_eq!(callback.report.call_duration_secs, Some(42));
        assert_eq!(callback.report.answered_by.as_deref(), Some("human"));
        assert_eq!(callback.report.at_ms, 7);
    }

    #[test]
    fn maps_every_status_and_refuses_the_unusable() {
        for (twilio, ours) in [
            ("in-progress", CallStatus::Active),
            ("no-answer", CallStatus::NoAnswer),
            ("canceled", CallStatus::Canceled),
            ("busy", CallStatus::Busy),
            ("failed", CallStatus::Failed),
            ("ringing", CallStatus::Ringing),
        ] {
            assert_eq!(call_status(twilio), Some(ours));
        }
        let amd = StatusCallback::parse(
            Some("call_id=x"),
            &form(&[("AnsweredBy", "machine_end_beep")]),
            0,
        )
        .unwrap();
        assert_eq!(amd.report.status, None);
        assert_eq!(
            StatusCallback::parse(None, &form(&[("CallStatus", "ringing")]), 0),
            Err(StatusError::MissingCallId)
        );
        assert_eq!(
            StatusCallback::parse(Some("call_id=x"), &form(&[("CallStatus", "exploded")]), 0),
            Err(StatusError::UnknownStatus("exploded".into()))
        );
        assert_eq!(
            StatusCallback::parse(Some("call_id=x"), &form(&[]), 0),
            Err(StatusError::Empty)
        );
    }
}
