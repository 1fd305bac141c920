//! What of a call may leave the store: phone numbers and caller names
//! replaced by a hash (`sha256:` and 16 hex digits, the same however the
//! number is written, so calls of one number still match), and turns
//! described by their index, role and length instead of their words.
//! Used by the object-storage documents and by every log line that
//! mentions a call record or a turn.

use std::collections::BTreeMap;

use crate::conversation::Turn;
use crate::store::CallRecord;

/// Custom parameter names (compared in lower case) that hold phone
/// numbers or who is calling (Twilio's `From`, `To`, `Caller`,
/// `CallerName`).
const PHONE_PARAMETERS: &[&str] = &[
    "from",
    "to",
    "caller",
    "called",
    "callername",
    "caller_name",
    "phone",
    "phone_number",
    "number",
];

/// The custom parameters with every phone number (by name, or any value
/// that looks like one) and caller name replaced by its hash: enough to
/// match calls of one number, never the number itself.
pub(crate) fn redacted_parameters(
    parameters: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    parameters
        .iter()
        .map(|(key, value)| {
            let phone = PHONE_PARAMETERS.contains(&key.to_ascii_lowercase().as_str())
                || looks_like_phone(value);
            let value = if phone {
                phone_hash(value)
            } else {
                value.clone()
            };
            (key.clone(), value)
        })
        .collect()
}

/// The call record as a log line may show it (JSON): custom parameters
/// redacted as [`redacted_parameters`], an outbound call's numbers
/// replaced by their hash.
pub(crate) fn record_for_log(record: &CallRecord) -> String {
    let mut record = record.clone();
    record.custom_parameters = redacted_parameters(&record.custom_parameters);
    if let Some(outbound) = &mut record.outbound {
        outbound.to = phone_hash(&outbound.to);
        outbound.from = outbound.from.as_deref().map(phone_hash);
    }
    serde_json::to_string(&record).unwrap_or_default()
}

/// A turn as a log line may show it: its index, role, length and tool
/// calls' names, never its words.
pub(crate) fn turn_for_log(index: u64, turn: &Turn) -> String {
    let tools: Vec<&str> = turn.tool_calls.iter().map(|c| c.name.as_str()).collect();
    format!(
        "turn {index} ({:?}, {} chars{}{})",
        turn.role,
        turn.text.chars().count(),
        if turn.interrupted {
            ", interrupted"
        } else {
            ""
        },
        if tools.is_empty() {
            String::new()
        } else {
            format!(", tools {}", tools.join(" "))
        }
    )
}

fn looks_like_phone(value: &str) -> bool {
    let digits = value.bytes().filter(u8::is_ascii_digit).count();
    digits >= 7
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b' ' | b'-' | b'(' | b')' | b'.'))
}

fn phone_hash(number: &str) -> String {
    let normalised: String = number
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .collect();
    let digest = ring::digest::digest(&ring::digest::SHA256, normalised.as_bytes());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::conversation::Role;
    use crate::store::OutboundCall;

    #[test]
    fn a_logged_record_shows_no_phone_number_or_caller_name() {
        let record = CallRecord::pending(
            "c1",
            "twilio",
            Default::default(),
            BTreeMap::from([
                ("From".to_owned(), "+1 615 484 6056".to_owned()),
                ("To".to_owned(), "+16155550100".to_owned()),
                ("CallerName".to_owned(), "Ann Smith".to_owned()),
                ("lead".to_owned(), "+1 (615) 484-6056".to_owned()),
                ("campaign".to_owned(), "spring".to_owned()),
            ]),
            0,
        );
        let mut record = record;
        record.outbound = Some(OutboundCall {
            to: "+16157770199".into(),
            from: Some("+16158880123".into()),
            ..OutboundCall::default()
        });
        let logged = record_for_log(&record);
        for secret in ["484", "6056", "5550100", "Ann Smith", "7770199", "8880123"] {
            assert!(!logged.contains(secret), "{secret} in {logged}");
        }
        assert!(logged.contains("\"campaign\":\"spring\""), "{logged}");
        assert!(logged.contains("sha256:"), "{logged}");
        let hashed = redacted_parameters(&record.custom_parameters);
        assert_eq!(hashed["From"], hashed["lead"], "one number, one hash");
    }

    #[test]
    fn a_logged_turn_shows_its_index_and_length_not_its_words() {
        let turn = Turn::completed(
            0,
            Role::User,
            "My number is 615 484 6056".into(),
            Duration::ZERO,
        );
        let logged = turn_for_log(7, &turn);
        assert_eq!(logged, "turn 7 (User, 25 chars)");
    }
}
