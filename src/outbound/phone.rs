//! Phone numbers: E.164 checked once at the edge, and the salted hash that
//! stands for a number in logs, metrics and rate-limit keys.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not an E.164 number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Not `+` followed by 8 to 15 digits, the first not 0.
    #[error("not an E.164 phone number (`+` and 8 to 15 digits, e.g. +15551234567)")]
    NotE164,
}

/// A phone number in E.164 form: `+`, a country code, the number; 8 to 15
/// digits in all, the first not 0.
///
/// Its `Debug` form hides the digits, so a number in a struct never reaches
/// a log by accident; [`PhoneNumber::as_str`] is for Twilio and the store.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Checks `text` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<PhoneNumber, PhoneError> {
        let text = text.trim();
        let digits = text.strip_prefix('+').ok_or(PhoneError::NotE164)?;
        let valid = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if valid {
            Ok(PhoneNumber(text.to_owned()))
        } else {
            Err(PhoneError::NotE164)
        }
    }

    /// The number, e.g. `+15551234567`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PhoneNumber(<redacted>)")
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        PhoneNumber::parse(&text)
    }
}

impl From<PhoneNumber> for String {
    fn from(number: PhoneNumber) -> String {
        number.0
    }
}

pub use crate::store::PhoneHasher;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_e164_only() {
        assert_eq!(
            PhoneNumber::parse(" +15551234567 ").map(|n| n.as_str().to_owned()),
            Ok("+15551234567".to_owned())
        );
        for bad in [
            "15551234567",
            "+0555123456",
            "+1555",
            "+1555123456789012",
            "+1555-123-4567",
            "",
            "+",
        ] {
            assert_eq!(PhoneNumber::parse(bad), Err(PhoneError::NotE164), "{bad}");
        }
    }

    #[test]
    fn debug_hides_the_digits_and_hashes_depend_on_the_salt() {
        let number = PhoneNumber::parse("+15551234567").unwrap();
        assert!(!format!("{number:?}").contains("555"));
        let a = PhoneHasher::new(b"salt-a");
        let b = PhoneHasher::new(b"salt-b");
        assert_eq!(a.hash(number.as_str()), a.hash(number.as_str()));
        assert_eq!(a.hash(number.as_str()).len(), 16);
        assert_ne!(a.hash(number.as_str()), b.hash(number.as_str()));
    }
}
