//! `Idempotency-Key`: a client that retries a request after a lost answer
//! sends the key again, and the resource the first request made is the
//! one the retry gets. The resource's id is made from the key, so the
//! store, which writes an id once, does the rest.

use axum::http::HeaderMap;

/// The longest `Idempotency-Key` taken.
const MAX_KEY: usize = 255;

/// The request's `Idempotency-Key`, if it sent one: 1 to 255 visible
/// ASCII characters (why not, otherwise).
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, &'static str> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key)
            if (1..=MAX_KEY).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key))
        }
        _ => Err("Idempotency-Key must be 1 to 255 visible ASCII characters"),
    }
}

/// The id a request of `kind` (`call`, `campaign`) with `key` makes: the
/// same for every retry, and never the id another kind makes from it.
/// The first `bytes` bytes of a SHA-256 of the kind and key, in hex (16
/// bytes for a call id, 8 for a campaign id: the forms their random ids
/// have).
pub(crate) fn id_of_key(kind: &str, key: &str, bytes: usize) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("voxpipe api {kind}\0{key}").as_bytes(),
    );
    digest.as_ref()[..bytes.min(32)]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(key: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(key) {
            headers.insert("idempotency-key", value);
        }
        headers
    }

    #[test]
    fn a_key_is_visible_ascii_of_1_to_255_bytes() {
        assert_eq!(idempotency_key(&HeaderMap::new()), Ok(None));
        assert_eq!(idempotency_key(&headers(b"order-17")), Ok(Some("order-17")));
        assert!(idempotency_key(&headers(b"two words")).is_err());
        assert!(idempotency_key(&headers(&[b'k'; 256])).is_err());
        assert!(idempotency_key(&headers("caf\u{e9}".as_bytes())).is_err());
    }

    #[test]
    fn one_key_makes_one_id_per_kind() {
        let call = id_of_key("call", "order-17", 16);
        assert_eq!(call, id_of_key("call", "order-17", 16));
        assert_eq!(call.len(), 32);
        assert_ne!(call, id_of_key("call", "order-18", 16));
        let campaign = id_of_key("campaign", "order-17", 8);
        assert_eq!(campaign.len(), 16);
        assert!(!call.starts_with(&campaign));
    }
}
