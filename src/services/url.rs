//! Checking the URLs a pipeline file gives its services.

use crate::pipeline::BuildError;

/// Checks that `url` is an http(s) URL, naming `key` if not.
pub(crate) fn check_http_url(key: &str, url: &str) -> Result<(), BuildError> {
    check(key, url, &["http://", "https://"])
}

/// Checks that `url` is a ws(s) URL, naming `key` if not.
pub(crate) fn check_ws_url(key: &str, url: &str) -> Result<(), BuildError> {
    check(key, url, &["ws://", "wss://"])
}

fn check(key: &str, url: &str, schemes: &[&str]) -> Result<(), BuildError> {
    if schemes
        .iter()
        .any(|s| url.starts_with(s) && url.len() > s.len())
    {
        Ok(())
    } else {
        Err(BuildError::Invalid(format!(
            "{key} must start with {}, not `{url}`",
            schemes.join(" or ")
        )))
    }
}
