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

/// What stands for a phone number in free text ([`redact_contacts`]).
pub(crate) const PHONE_IN_TEXT: &str = "[phone]";
/// What stands for an e-mail address in free text ([`redact_contacts`]).
pub(crate) const EMAIL_IN_TEXT: &str = "[email]";

/// Characters that may surround an e-mail address in a sentence.
fn is_word_edge(c: char) -> bool {
    matches!(
        c,
        '.' | ',' | ';' | ':' | '!' | '?' | '(' | ')' | '<' | '>' | '"' | '\'' | '[' | ']'
    )
}

/// Whether `word` is an e-mail address: a local part, `@`, and a domain
/// with a dot inside it.
fn looks_like_email(word: &str) -> bool {
    match word.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain
                    .trim_matches('.')
                    .split_once('.')
                    .is_some_and(|(host, top)| !host.is_empty() && !top.is_empty())
        }
        None => false,
    }
}

/// `text` with e-mail addresses replaced by [`EMAIL_IN_TEXT`] and phone
/// numbers (a run of 7 or more digits, with the separators numbers are
/// written with: `+`, spaces, `-`, `.`, brackets) by [`PHONE_IN_TEXT`]:
/// for text that came from a call and is kept or shown beyond it (the
/// tactics in every later prompt). Errs towards redacting: a long figure
/// written without separators reads as a number too.
pub(crate) fn redact_contacts(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for piece in text.split_inclusive(char::is_whitespace) {
        let word = piece.trim_end_matches(char::is_whitespace);
        let space = &piece[word.len()..];
        let core = word.trim_matches(is_word_edge);
        if looks_like_email(core) {
            let start = word.find(core).unwrap_or(0);
            out.push_str(&word[..start]);
            out.push_str(EMAIL_IN_TEXT);
            out.push_str(&word[start + core.len()..]);
            out.push_str(space);
        } else {
            out.push_str(piece);
        }
    }
    redact_phone_runs(&out)
}

/// [`redact_contacts`]'s phone numbers.
fn redact_phone_runs(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let is_separator = |c: char| matches!(c, '+' | ' ' | '-' | '.' | '(' | ')');
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        let next_is_digit = chars.get(at + 1).is_some_and(char::is_ascii_digit);
        if !(c.is_ascii_digit() || (matches!(c, '+' | '(') && next_is_digit)) {
            out.push(c);
            at += 1;
            continue;
        }
        // The run: digits and separators, ending at its last digit.
        let (mut end, mut digits) = (at, 0);
        let mut scan = at;
        while scan < chars.len() && (chars[scan].is_ascii_digit() || is_separator(chars[scan])) {
            if chars[scan].is_ascii_digit() {
                digits += 1;
                end = scan + 1;
            }
            scan += 1;
        }
        if digits >= 7 {
            out.push_str(PHONE_IN_TEXT);
        } else {
            out.extend(&chars[at..end]);
        }
        at = end;
    }
    out
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
    fn phone_numbers_and_email_addresses_leave_free_text() {
        assert_eq!(
            redact_contacts("Call me on +1 (615) 484-6056 or 0161.496.0000, ok?"),
            "Call me on [phone] or [phone], ok?"
        );
        assert_eq!(
            redact_contacts("Mail (jane.doe+x@example.co.uk). Then ask for jane@work"),
            "Mail ([email]). Then ask for jane@work"
        );
        assert_eq!(
            redact_contacts("Offer 10% off, 3 seats, from 15 January"),
            "Offer 10% off, 3 seats, from 15 January"
        );
        // Erring towards redacting: an ISO date has a number's digits.
        assert_eq!(redact_contacts("from 2026-01-15"), "from [phone]");
        assert_eq!(
            redact_contacts("Quote 1234567 as the code"),
            "Quote [phone] as the code"
        );
    }

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
