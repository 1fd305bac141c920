//! A resumed session: the new session of a Pipecat client reconnecting
//! after its call ended, which will not say `client-ready` again.

use super::*;

#[test]
fn a_resumed_session_speaks_rtvi_from_the_clients_keepalive_without_bot_ready() {
    let mut session = RtviSession::resumed("s2".into());
    session.handle_event("bot_started_speaking", &json!({}), 0);
    assert!(!session.is_active());
    assert!(
        drain(&mut session).is_empty(),
        "silent until the client speaks"
    );
    session.handle_keepalive();
    assert!(session.is_active());
    let sent = drain(&mut session);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["type"], "bot-started-speaking", "what came before");
    session.handle_keepalive();
    session.handle_event("bot_stopped_speaking", &json!({}), 0);
    let sent = drain(&mut session);
    assert_eq!(sent.len(), 1, "no bot-ready, ever: {sent:?}");
    assert_eq!(sent[0]["type"], "bot-stopped-speaking");
    assert_eq!(sent[0]["label"], "rtvi-ai");
}

#[test]
fn a_resumed_session_speaks_rtvi_from_any_rtvi_message() {
    let mut session = RtviSession::resumed("s2".into());
    let info =
        r#"{"label":"rtvi-ai","type":"client-message","id":"i","data":{"t":"session-info"}}"#;
    session.handle_inbound(inbound(info), Duration::ZERO);
    assert!(session.is_active());
    let sent = drain(&mut session);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["type"], "server-response");
    // A client-ready still gets its bot-ready.
    let mut session = RtviSession::resumed("s3".into());
    session.handle_inbound(inbound(READY), Duration::ZERO);
    assert_eq!(drain(&mut session)[0]["type"], "bot-ready");
}

#[test]
fn a_keepalive_does_not_make_a_new_session_speak_rtvi() {
    let mut session = RtviSession::new("s1".into());
    session.handle_keepalive();
    session.handle_event("bot_started_speaking", &json!({}), 0);
    assert!(!session.is_active());
    assert!(drain(&mut session).is_empty());
}
