//! A connection's `pc_id`: whoever names it may renegotiate the call,
//! replace its connection (`restart_pc`) or trickle candidates to it, so it
//! is a capability, given only in the answer to the page that offered.
//! Hence 128 random bits from the operating system, and not the call's id,
//! which logs, the store, analytics and webhooks all carry.

use ring::rand::{SecureRandom, SystemRandom};

use super::signalling::SignallingError;

/// A fresh `pc_id`: `pc-` and 32 hex digits.
///
/// # Errors
/// [`SignallingError::Internal`] if the system's random source fails.
pub(crate) fn new_pc_id() -> Result<String, SignallingError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SignallingError::Internal("no random bytes for a pc_id".into()))?;
    let mut id = String::with_capacity(3 + 2 * bytes.len());
    id.push_str("pc-");
    for byte in bytes {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    Ok(id)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pc_ids_are_long_random_and_distinct() {
        let (a, b) = (new_pc_id().unwrap(), new_pc_id().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 35);
        assert!(a.starts_with("pc-"));
        assert!(a[3..].bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
