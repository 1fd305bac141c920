//! The JSON documents a call leaves in object storage: the transcript, the
//! profile and the audit record, built from the stored call alone (no
//! clock, no randomness), so that writing one twice writes the same bytes.

use serde_json::{Value, json};

use crate::agent::redact::redacted_parameters;
use crate::store::{CallRecord, Extraction, Interaction, PhoneHasher};

/// The extracted data, when the extraction succeeded.
fn extracted_data(call: &CallRecord) -> Option<&Value> {
    match &call.extraction {
        Some(Extraction::Extracted { data, .. }) => Some(data),
        _ => None,
    }
}

/// `transcript.json`: the turns and the call's metadata.
pub(crate) fn transcript(
    call: &CallRecord,
    turns: &[Interaction],
    hasher: Option<&PhoneHasher>,
) -> Value {
    json!({
        "call_id": call.call_id,
        "transport": call.transport,
        "created_at": call.created_at,
        "started_at": call.started_at,
        "ended_at": call.ended_at,
        "end_reason": call.end_reason,
        "segment": call.segment,
        "parameters": redacted_parameters(&call.custom_parameters, hasher),
        "outcome": call.outcome,
        "score": call.score,
        "turns": turns,
    })
}

/// `profile.json`: the extraction's data, when the call was extracted.
pub(crate) fn profile(call: &CallRecord) -> Option<Value> {
    let Some(Extraction::Extracted {
        data,
        model,
        attempts,
        at,
    }) = &call.extraction
    else {
        return None;
    };
    Some(json!({
        "call_id": call.call_id,
        "profile": data,
        "model": model,
        "attempts": attempts,
        "at": at,
    }))
}

/// The audit record: who called whom (phone numbers hashed; an outbound
/// call's `direction` and the `phone_hash` it dialled), when, the consent
/// the extraction found, and what was stored where.
pub(crate) fn audit(call: &CallRecord, storage_url: &str, hasher: Option<&PhoneHasher>) -> Value {
    let status = match &call.extraction {
        Some(Extraction::Extracted { .. }) => "extracted",
        Some(Extraction::Unextracted { .. }) => "unextracted",
        None => "none",
    };
    json!({
        "call_id": call.call_id,
        "transport": call.transport,
        "direction": call.direction,
        "phone_hash": call.outbound.as_ref().map(|o| &o.phone_hash),
        "parameters": redacted_parameters(&call.custom_parameters, hasher),
        "created_at": call.created_at,
        "started_at": call.started_at,
        "ended_at": call.ended_at,
        "end_reason": call.end_reason,
        "consent": consent(extracted_data(call)),
        "extraction": status,
        "storage": storage_url,
        "objects": {
            "recording": call.objects.recording,
            "transcript": call.objects.transcript,
            "profile": call.objects.profile,
        },
    })
}

/// `given`, `refused` or `unknown`, from the extraction's `consent` (or
/// seed 002's `consent_given`) when it is a yes or no.
fn consent(data: Option<&Value>) -> &'static str {
    let answer = data.and_then(|d| d.get("consent").or_else(|| d.get("consent_given")));
    match answer {
        Some(Value::Bool(true)) => "given",
        Some(Value::Bool(false)) => "refused",
        Some(Value::String(s)) if matches!(s.as_str(), "yes" | "given" | "true") => "given",
        Some(Value::String(s)) if matches!(s.as_str(), "no" | "refused" | "false") => "refused",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn extracted(data: Value) -> Extraction {
        Extraction::Extracted {
            data,
            model: "m".into(),
            attempts: 1,
            at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn call(extraction: Option<Extraction>) -> CallRecord {
        let mut call = CallRecord::pending(
            "c1",
            "twilio",
            Default::default(),
            BTreeMap::from([
                ("to".to_owned(), "+1 615 484 6056".to_owned()),
                ("lead".to_owned(), "+16154846056".to_owned()),
                ("campaign".to_owned(), "spring".to_owned()),
            ]),
            0,
        );
        call.extraction = extraction;
        call
    }

    #[test]
    fn phone_numbers_are_hashed_the_same_however_written() {
        let hasher = PhoneHasher::new(b"salt");
        let params = redacted_parameters(&call(None).custom_parameters, Some(&hasher));
        assert_eq!(params["campaign"], "spring");
        assert_eq!(params["to"], params["lead"]);
        assert!(!format!("{params:?}").contains("484"));
    }

    #[test]
    fn phone_numbers_get_the_deployments_salted_hash() {
        let hasher = PhoneHasher::new(b"salt");
        let params = redacted_parameters(&call(None).custom_parameters, Some(&hasher));
        // The hash logs and rate limits know the number by: salted, so not
        // found by hashing every phone number.
        assert_eq!(params["to"], hasher.hash("+16154846056"));
        let other = redacted_parameters(
            &call(None).custom_parameters,
            Some(&PhoneHasher::new(b"other")),
        );
        assert_ne!(params["to"], other["to"]);
        let unsalted = redacted_parameters(&call(None).custom_parameters, None);
        assert_eq!(unsalted["to"], "redacted");
        assert_eq!(unsalted["lead"], "redacted");
    }

    #[test]
    fn the_audit_says_whom_an_outbound_call_dialled() {
        let mut outbound = call(None);
        outbound.direction = Some(crate::store::CallDirection::Outbound);
        outbound.outbound = Some(crate::store::OutboundCall {
            to: "+16154846056".into(),
            phone_hash: "0123456789abcdef".into(),
            ..Default::default()
        });
        let audit = audit(&outbound, "x", None);
        assert_eq!(audit["direction"], "outbound");
        assert_eq!(audit["phone_hash"], "0123456789abcdef");
        assert!(!audit.to_string().contains("4846056"), "{audit}");
    }

    #[test]
    fn consent_and_profile_come_from_an_extracted_call_only() {
        let extracted = call(Some(extracted(json!({"name": "Ann", "consent": true}))));
        assert_eq!(audit(&extracted, "x", None)["consent"], "given");
        assert_eq!(audit(&extracted, "x", None)["extraction"], "extracted");
        let profile = profile(&extracted).unwrap();
        assert_eq!(profile["profile"]["name"], "Ann");
        assert_eq!(profile["model"], "m");

        let unextracted = call(Some(Extraction::Unextracted {
            reason: "no".into(),
            attempts: 3,
            at: "2026-01-01T00:00:00Z".into(),
        }));
        assert_eq!(audit(&unextracted, "x", None)["consent"], "unknown");
        assert!(super::profile(&unextracted).is_none());
        assert_eq!(audit(&call(None), "x", None)["extraction"], "none");
    }
}
