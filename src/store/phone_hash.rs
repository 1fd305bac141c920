//! The salted hash that stands for a phone number in logs, metrics,
//! rate-limit keys, call records and the objects a call leaves in storage.
//! Here, below the agent and outbound layers, so both hash alike.

use ring::hmac;

/// Hashes phone numbers with a secret salt: the same number always gets the
/// same hash (rate limits and logs can follow it), and the hash cannot be
/// turned back into the number without the salt (HMAC-SHA-256, the first 16
/// hex digits).
#[derive(Clone)]
pub struct PhoneHasher {
    key: hmac::Key,
}

impl PhoneHasher {
    /// A hasher salted with `salt`.
    pub fn new(salt: &[u8]) -> PhoneHasher {
        PhoneHasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, salt),
        }
    }

    /// `number`'s hash (an E.164 number, `+` and digits): 16 lowercase hex
    /// digits.
    pub fn hash(&self, number: &str) -> String {
        let tag = hmac::sign(&self.key, number.as_bytes());
        tag.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl std::fmt::Debug for PhoneHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PhoneHasher")
    }
}
