//! What a request says about how the world reaches this server, behind
//! whatever proxies.

use axum::http::HeaderMap;

use crate::config::{ServerSection, is_url_host};

/// The host callers' providers reach us at: `[server] public_host`, else
/// the first `X-Forwarded-Host`, else `Host`. `None` when none is usable.
pub(crate) fn public_host(config: &ServerSection, headers: &HeaderMap) -> Option<String> {
    if let Some(host) = &config.public_host {
        return Some(host.as_str().to_owned());
    }
    ["x-forwarded-host", "host"]
        .iter()
        .filter_map(|name| headers.get(*name)?.to_str().ok())
        .filter_map(|value| value.split(',').next().map(str::trim))
        .find(|host| is_url_host(host))
        .map(str::to_owned)
}

/// The scheme the request was made with: `X-Forwarded-Proto` if a proxy
/// says, else `https` (Twilio only calls public URLs, through TLS).
pub(crate) fn public_scheme(headers: &HeaderMap) -> &'static str {
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim);
    match forwarded {
        Some(proto) if proto.eq_ignore_ascii_case("http") => "http",
        _ => "https",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn the_configured_host_wins_then_forwarded_then_host() {
        let mut config = ServerSection::default();
        let h = headers(&[
            ("host", "10.0.0.5:8080"),
            ("x-forwarded-host", "abc.ngrok.app, proxy.internal"),
        ]);
        assert_eq!(public_host(&config, &h).as_deref(), Some("abc.ngrok.app"));
        assert_eq!(
            public_host(&config, &headers(&[("host", "10.0.0.5:8080")])).as_deref(),
            Some("10.0.0.5:8080")
        );
        assert_eq!(
            public_host(&config, &headers(&[("host", "evil\"/><x")])),
            None
        );
        config.public_host = Some("voice.example.com".to_owned().try_into().unwrap());
        assert_eq!(
            public_host(&config, &h).as_deref(),
            Some("voice.example.com")
        );
    }

    #[test]
    fn the_scheme_is_https_unless_a_proxy_says_http() {
        assert_eq!(public_scheme(&HeaderMap::new()), "https");
        assert_eq!(
            public_scheme(&headers(&[("x-forwarded-proto", "http")])),
            "http"
        );
        assert_eq!(
            public_scheme(&headers(&[("x-forwarded-proto", "https")])),
            "https"
        );
    }
}
