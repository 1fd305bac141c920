//! What of a call may leave the store: phone numbers and caller names
//! replaced by the deployment's salted hash (the same 16 hex digits as an
//! outbound call's `phone_hash` and the logs, however the number is
//! written, so calls of one number still match) or, with no salt, by
//! `redacted`; and turns described by their index, role and length
//! instead of their words. Used by the object-storage documents and by
//! every log line that mentions a call record or a turn (which say
//! `redacted`: an unsalted hash of a phone number is undone by trying
//! every number).

use std::collections::BTreeMap;

use crate::conversation::Turn;
use crate::store::{CallRecord, PhoneHasher};

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
/// that looks like one) and caller name replaced by its salted hash
/// (`hasher`), enough to match calls of one number and never the number
/// itself; or, with no salt, by [`REDACTED`].
pub(crate) fn redacted_parameters(
    parameters: &BTreeMap<String, String>,
    hasher: Option<&PhoneHasher>,
) -> BTreeMap<String, String> {
    parameters
        .iter()
        .map(|(key, value)| {
            let name = key.to_ascii_lowercase();
            let phone = PHONE_PARAMETERS.contains(&name.as_str()) || looks_like_phone(value);
            let value = match (phone, hasher) {
                (false, _) => value.clone(),
                (true, Some(hasher)) => hasher.hash(&hashed_form(&name, value)),
                (true, None) => REDACTED.to_owned(),
            };
            (key.clone(), value)
        })
        .collect()
}

/// What stands for a phone number when no salt is at hand.
pub(crate) const REDACTED: &str = "redacted";

/// The call record as a log line may show it (JSON): phone numbers and
/// caller names `redacted` (an outbound call keeps its salted
/// `phone_hash`).
pub(crate) fn record_for_log(record: &CallRecord) -> String {
    let mut record = record.clone();
    record.custom_parameters = redacted_parameters(&record.custom_parameters, None);
    if let Some(outbound) = &mut record.outbound {
        outbound.to = REDACTED.to_owned();
        outbound.from = outbound.from.as_ref().map(|_| REDACTED.to_owned());
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

/// What is hashed of a parameter's value: a number as E.164 would write
/// it (`+` and digits, separators dropped, so one number however it is
/// written hashes alike); a name, or any other value (`anonymous`,
/// `sip:alice@example.com`, `1-800-555-CALL`, whose letters are part of
/// it), trimmed and in lower case, so different callers differ.
fn hashed_form(parameter: &str, value: &str) -> String {
    if parameter.ends_with("name") || !looks_like_phone(value) {
        return value.trim().to_lowercase();
    }
    value
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .collect()
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
        assert!(logged.contains("redacted"), "{logged}");
        let hasher = PhoneHasher::new(b"salt");
        let hashed = redacted_parameters(&record.custom_parameters, Some(&hasher));
        assert_eq!(hashed["From"], hashed["lead"], "one number, one hash");
        assert!(!hashed["From"].contains("484"));
    }

    #[test]
    fn different_callers_hash_differently_and_one_caller_alike() {
        let hasher = PhoneHasher::new(b"salt");
        let hash = |name: &str, value: &str| {
            let parameters = BTreeMap::from([(name.to_owned(), value.to_owned())]);
            redacted_parameters(&parameters, Some(&hasher))[name].clone()
        };
        let ann = hash("CallerName", "Ann Smith");
        assert_ne!(ann, hash("CallerName", "Bob Jones"));
        assert_eq!(ann, hash("CallerName", " ann smith "));
        assert!(!ann.to_lowercase().contains("ann"), "{ann}");
        let alice = hash("From", "sip:alice@example.com");
        assert_ne!(alice, hash("From", "sip:bob@example.com"));
        assert_ne!(alice, hash("From", "anonymous"));
        assert_eq!(
            hash("From", "+1 615 484 6056"),
            hash("Caller", "+16154846056")
        );
        // Letters are part of a vanity number: two of them differ.
        assert_ne!(hash("To", "1-800-555-CALL"), hash("To", "1-800-555-HELP"));
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
