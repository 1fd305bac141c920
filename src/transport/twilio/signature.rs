//! `X-Twilio-Signature`: how Twilio signs its webhook requests, without
//! I/O.
//!
//! Twilio takes the full URL it requested (scheme, host, path and query),
//! appends each POST parameter's name and value with no separators, sorted
//! by name (then value), computes an HMAC-SHA1 of the result keyed by the
//! account's auth token, and sends it base64-encoded. A media stream's
//! WebSocket upgrade is signed the same way: the URL is the `wss://` one
//! of the TwiML's `<Stream>`, and a GET has no parameters. Like Twilio's own
//! helper libraries, verification also accepts the URL with the default
//! port written out or left out, since proxies differ on that.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::hmac;

/// The signature Twilio would send for a request to `url` with the form
/// `params`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    BASE64.encode(hmac::sign(&key, &signed_text(url, params)).as_ref())
}

/// Whether `header` is Twilio's signature of a request to `url` (or the
/// same URL with the default port added or removed) with the form
/// `params`. The comparison takes constant time.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], header: &str) -> bool {
    let Ok(tag) = BASE64.decode(header.trim()) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    url_variants(url)
        .iter()
        .any(|candidate| hmac::verify(&key, &signed_text(candidate, params), &tag).is_ok())
}

fn signed_text(url: &str, params: &[(String, String)]) -> Vec<u8> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut text = url.as_bytes().to_vec();
    for (name, value) in sorted {
        text.extend_from_slice(name.as_bytes());
        text.extend_from_slice(value.as_bytes());
    }
    text
}

/// `url` as given, then with its scheme's default port removed or added.
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let default_port = match scheme {
        "https" | "wss" => "443",
        "http" | "ws" => "80",
        _ => return variants,
    };
    let (authority, path) = rest
        .find(['/', '?'])
        .map_or((rest, ""), |i| rest.split_at(i));
    let bracket_end = authority.rfind(']').unwrap_or(0);
    match authority.rfind(':').filter(|&i| i > bracket_end) {
        Some(i) if &authority[i + 1..] == default_port => {
            variants.push(format!("{scheme}://{}{path}", &authority[..i]));
        }
        Some(_) => {}
        None => variants.push(format!("{scheme}://{authority}:{default_port}{path}")),
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs_params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    // The example from Twilio's webhook security documentation.
    const DOCS_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const DOCS_TOKEN: &str = "12345";
    const DOCS_SIGNATURE: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

    #[test]
    fn matches_the_example_in_twilios_documentation() {
        assert_eq!(
            signature(DOCS_TOKEN, DOCS_URL, &docs_params()),
            DOCS_SIGNATURE
        );
        let mut shuffled = docs_params();
        shuffled.reverse();
        assert!(verify(DOCS_TOKEN, DOCS_URL, &shuffled, DOCS_SIGNATURE));
    }

    #[test]
    fn any_change_breaks_the_signature() {
        assert!(!verify("54321", DOCS_URL, &docs_params(), DOCS_SIGNATURE));
        assert!(!verify(
            DOCS_TOKEN,
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &docs_params(),
            DOCS_SIGNATURE
        ));
        let mut params = docs_params();
        params[2].1 = "1235".into();
        assert!(!verify(DOCS_TOKEN, DOCS_URL, &params, DOCS_SIGNATURE));
        assert!(!verify(DOCS_TOKEN, DOCS_URL, &docs_params(), ""));
        assert!(!verify(DOCS_TOKEN, DOCS_URL, &docs_params(), "not base64!"));
    }

    #[test]
    fn the_default_port_may_be_written_or_not() {
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        let signed = signature(DOCS_TOKEN, with_port, &docs_params());
        assert!(verify(DOCS_TOKEN, DOCS_URL, &docs_params(), &signed));
        assert!(verify(
            DOCS_TOKEN,
            with_port,
            &docs_params(),
            DOCS_SIGNATURE
        ));
        assert_eq!(
            url_variants("https://[::1]/x"),
            ["https://[::1]/x", "https://[::1]:443/x"]
        );
        assert_eq!(url_variants("https://h:8443/x"), ["https://h:8443/x"]);
        assert_eq!(
            url_variants("wss://h/twilio/ws"),
            ["wss://h/twilio/ws", "wss://h:443/twilio/ws"]
        );
    }
}
