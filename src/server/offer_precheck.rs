//! A first look at a WebRTC offer, without I/O, before it may take a
//! session slot: what no browser's offer lacks. An offer failing it gets
//! 400 at once instead of holding a slot while the WebRTC stack works out
//! that it cannot be answered.

/// The most media sections an offer may have (a browser call has one or
/// two).
const MAX_MEDIA_SECTIONS: usize = 16;

/// Why an offer is not even looked at; `None` when it may go on.
pub(crate) fn offer_problem(kind: &str, sdp: &str) -> Option<&'static str> {
    if kind != "offer" {
        return Some("`type` must be `offer`");
    }
    if !sdp.starts_with("v=0") {
        return Some("the SDP must start with `v=0`");
    }
    if sdp
        .chars()
        .any(|c| c.is_control() && c != '\r' && c != '\n')
    {
        return Some("the SDP holds control characters");
    }
    let lines = || sdp.lines().map(str::trim_end);
    let media = lines().filter(|l| l.starts_with("m=")).count();
    if media > MAX_MEDIA_SECTIONS {
        return Some("the SDP has too many media sections");
    }
    if !lines().any(|l| l.starts_with("m=audio ")) {
        return Some("the SDP offers no audio");
    }
    for (prefix, problem) in [
        ("a=ice-ufrag:", "the SDP has no ICE credentials"),
        ("a=ice-pwd:", "the SDP has no ICE credentials"),
        ("a=fingerprint:", "the SDP has no DTLS fingerprint"),
    ] {
        if !lines().any(|l| l.starts_with(prefix) && l.len() > prefix.len()) {
            return Some(problem);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=fingerprint:sha-256 AB:CD\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
        c=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef0123\r\n\
        a=setup:actpass\r\na=rtpmap:111 opus/48000/2\r\n";

    #[test]
    fn a_browser_like_offer_goes_on() {
        assert_eq!(offer_problem("offer", OFFER), None);
    }

    #[test]
    fn offers_no_browser_sends_are_refused() {
        assert!(offer_problem("answer", OFFER).is_some());
        assert!(offer_problem("offer", "").is_some());
        assert!(offer_problem("offer", &OFFER.replace("v=0", "v=1")).is_some());
        assert!(offer_problem("offer", &OFFER.replace("m=audio", "m=video")).is_some());
        assert!(offer_problem("offer", &OFFER.replace("a=ice-pwd:", "a=x:")).is_some());
        assert!(
            offer_problem(
                "offer",
                &OFFER.replace("a=fingerprint:sha-256 AB:CD", "a=fingerprint:")
            )
            .is_some()
        );
        assert!(offer_problem("offer", &format!("{OFFER}a=x:\u{0}\r\n")).is_some());
        let many = format!("{OFFER}{}", "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n".repeat(20));
        assert!(offer_problem("offer", &many).is_some());
    }
}
