//! Whole sessions of the connection, scripted from Deepgram's messages
//! with explicit instants.

use crate::services::stt::deepgram::DeepgramListen;

use super::*;

const RATE: u32 = 16_000;

/// Deepgram's own messages, as its socket sends them.
fn result(text: &str, start: f64, duration: f64, is_final: bool) -> String {
    format!(
        r#"{{"type":"Results","channel_index":[0,1],"duration":{duration},"start":{start},"is_final":{is_final},"speech_final":{is_final},"channel":{{"alternatives":[{{"transcript":"{text}","confidence":0.98,"words":[]}}]}}}}"#
    )
}
const METADATA: &str = r#"{"type":"Metadata","transaction_key":"deprecated","request_id":"r","sha256":"s","created":"2024-08-29T22:37:55.202Z","duration":0.0,"channels":0}"#;
const KEEPALIVE: &str = r#"{"type":"KeepAlive"}"#;
const FINALIZE: &str = r#"{"type":"Finalize"}"#;
const CLOSE_STREAM: &str = r#"{"type":"CloseStream"}"#;

fn connection() -> SttConnection {
    let options = Connection {
        read_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(4),
            ..RetryPolicy::default()
        },
        ..Connection::default()
    };
    SttConnection::new(
        Box::new(DeepgramListen::fixture()),
        options,
        Duration::from_secs(4),
        Duration::from_secs(1),
        RATE,
    )
}

/// `ms` milliseconds of audio, every byte `fill`.
fn audio(ms: u64, fill: u8) -> Bytes {
    Bytes::from(vec![fill; (ms * u64::from(RATE) / 1000 * 2) as usize])
}

fn actions(c: &mut SttConnection) -> Vec<SttAction> {
    std::iter::from_fn(|| c.poll_action()).collect()
}

/// What went out on the socket, audio as (length, fill byte).
#[derive(Debug, PartialEq)]
enum Sent {
    Audio(usize, u8),
    Control(&'static str),
}

fn sent(actions: &[SttAction]) -> Vec<Sent> {
    actions
        .iter()
        .filter_map(|a| match a {
            SttAction::Send(Outgoing::Audio(a)) => Some(Sent::Audio(a.len(), a[0])),
            SttAction::Send(Outgoing::Control(c)) => Some(Sent::Control(
                [KEEPALIVE, FINALIZE, CLOSE_STREAM]
                    .into_iter()
                    .find(|known| known == c)
                    .unwrap_or("?"),
            )),
            _ => None,
        })
        .collect()
}

fn transcripts(actions: &[SttAction]) -> Vec<(bool, &str)> {
    actions
        .iter()
        .filter_map(|a| match a {
            SttAction::Transcript { text, is_final } => Some((*is_final, text.as_str())),
            _ => None,
        })
        .collect()
}

/// A connection whose first socket is open at `t0`.
fn open(t0: Instant) -> SttConnection {
    let mut c = connection();
    assert!(matches!(actions(&mut c)[..], [SttAction::Connect]));
    c.handle_connected(t0);
    assert!(actions(&mut c).is_empty());
    c
}

#[test]
fn audio_streams_and_results_become_interim_then_final_transcripts() {
    let t0 = Instant::now();
    let mut c = open(t0);
    c.handle_audio(audio(100, 1), t0);
    c.handle_message(&result("Hel", 0.0, 0.1, false), t0);
    c.handle_message(METADATA, t0);
    c.handle_message(&result("  ", 0.0, 0.1, false), t0);
    c.handle_finalize(t0);
    c.handle_message(&result("Hello.", 0.0, 0.1, true), t0);
    let done = actions(&mut c);
    assert_eq!(sent(&done), [Sent::Audio(3200, 1), Sent::Control(FINALIZE)]);
    assert_eq!(transcripts(&done), [(false, "Hel"), (true, "Hello.")]);
    assert!(c.unconfirmed.is_empty(), "the final covered the audio");
}

#[test]
fn a_reconnect_replays_only_the_audio_no_final_covered() {
    let t0 = Instant::now();
    let mut c = open(t0);
    for fill in 1..=3 {
        c.handle_audio(audio(100, fill), t0);
    }
    // The first 0.1 s is final; the rest is heard but not finalised.
    c.handle_message(&result("one", 0.0, 0.1, true), t0);
    actions(&mut c);
    c.handle_socket_lost(&ServiceError::Connect("reset".into()), t0);
    // Audio and a finalize while the socket is down wait for the next.
    c.handle_audio(audio(100, 4), t0);
    c.handle_finalize(t0);
    assert!(sent(&actions(&mut c)).is_empty());
    assert_eq!(c.poll_timeout(), Some(t0), "reconnects at once");
    c.handle_timeout(t0);
    assert!(matches!(actions(&mut c)[..], [SttAction::Connect]));
    c.handle_connected(t0);
    assert_eq!(
        sent(&actions(&mut c)),
        [
            Sent::Audio(3200, 2),
            Sent::Audio(3200, 3),
            Sent::Audio(3200, 4),
            Sent::Control(FINALIZE)
        ]
    );
    // The new socket's times count from the replay's start: 0.2 s in
    // it is the end of the third chunk of the session.
    c.handle_message(&result("two three", 0.0, 0.2, true), t0);
    assert_eq!(transcripts(&actions(&mut c)), [(true, "two three")]);
    assert_eq!(c.unconfirmed.len(), 1);
    assert_eq!(c.unconfirmed[0].1[0], 4);
}

#[test]
fn queued_sends_for_a_lost_socket_are_dropped_not_replayed_twice() {
    let t0 = Instant::now();
    let mut c = open(t0);
    c.handle_audio(audio(100, 1), t0);
    c.handle_audio(audio(100, 2), t0);
    // The driver's first send failed: the second is not tried on it.
    assert!(matches!(c.poll_action(), Some(SttAction::Send(_))));
    c.handle_socket_lost(&ServiceError::Connect("broken pipe".into()), t0);
    assert!(actions(&mut c).is_empty());
    let again = c.poll_timeout().unwrap();
    c.handle_timeout(again);
    actions(&mut c);
    c.handle_connected(again);
    assert_eq!(
        sent(&actions(&mut c)),
        [Sent::Audio(3200, 1), Sent::Audio(3200, 2)]
    );
}

#[test]
fn sockets_lost_before_any_result_back_off_instead_of_replaying_in_a_loop() {
    let t0 = Instant::now();
    let mut c = open(t0);
    c.handle_audio(audio(100, 1), t0);
    actions(&mut c);
    let mut now = t0;
    let mut waits = Vec::new();
    for _ in 0..3 {
        // The provider accepts the socket, then drops it on the replay.
        c.handle_socket_lost(&ServiceError::Connect("reset".into()), now);
        let at = c.poll_timeout().unwrap();
        waits.push(at - now);
        c.handle_timeout(at);
        assert!(matches!(actions(&mut c)[..], [SttAction::Connect]));
        c.handle_connected(at);
        actions(&mut c);
        now = at;
    }
    assert!(waits.iter().all(|w| !w.is_zero()), "{waits:?}");
    assert!(waits[0] < waits[1] && waits[1] < waits[2], "{waits:?}");
    // A socket that brought a result had worked: losing it reconnects at
    // once, and the next run of failures starts again from the first wait.
    c.handle_message(METADATA, now);
    c.handle_socket_lost(&ServiceError::Connect("reset".into()), now);
    assert_eq!(c.poll_timeout(), Some(now));
}

#[test]
fn unconfirmed_audio_is_kept_up_to_max_replay() {
    let t0 = Instant::now();
    let mut c = open(t0);
    for fill in 1..=12 {
        c.handle_audio(audio(100, fill), t0);
    }
    // 1 s of replay at most: the oldest chunks went.
    let kept: u64 = c.unconfirmed.iter().map(|(_, a)| a.len() as u64).sum();
    assert!(kept <= 32_000, "{kept}");
    assert_eq!(c.unconfirmed.front().map(|(_, a)| a[0]), Some(3));
}

#[test]
fn a_quiet_socket_is_kept_alive() {
    let t0 = Instant::now();
    let mut c = open(t0);
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(4)));
    // Audio pushes the keep-alive back.
    let t1 = t0 + Duration::from_secs(3);
    c.handle_audio(audio(20, 1), t1);
    actions(&mut c);
    c.handle_timeout(t0 + Duration::from_secs(4));
    assert!(actions(&mut c).is_empty(), "too early");
    let due = t1 + Duration::from_secs(4);
    assert_eq!(c.poll_timeout(), Some(due));
    c.handle_timeout(due);
    assert_eq!(sent(&actions(&mut c)), [Sent::Control(KEEPALIVE)]);
    assert_eq!(c.poll_timeout(), Some(due + Duration::from_secs(4)));
}

#[test]
fn failed_connections_back_off_and_only_the_first_is_reported() {
    let t0 = Instant::now();
    let mut c = connection();
    actions(&mut c);
    let refused = || ServiceError::Status {
        status: 503,
        message: "busy".into(),
        retry_after: None,
    };
    let mut now = t0;
    let mut waits = Vec::new();
    for attempt in 0..4 {
        c.handle_connect_failed(refused(), 1.0, now);
        let done = actions(&mut c);
        let reported = done.iter().any(|a| matches!(a, SttAction::Report(_)));
        assert_eq!(reported, attempt == 0, "attempt {attempt}");
        let at = c.poll_timeout().unwrap();
        waits.push(at - now);
        c.handle_timeout(at - Duration::from_millis(1));
        assert!(actions(&mut c).is_empty(), "not before the backoff");
        c.handle_timeout(at);
        assert!(matches!(actions(&mut c)[..], [SttAction::Connect]));
        now = at;
    }
    assert_eq!(
        waits,
        [250, 500, 1000, 2000].map(Duration::from_millis),
        "doubling, with full jitter"
    );
    c.handle_connected(now);
    c.handle_message(METADATA, now);
    c.handle_socket_lost(&ServiceError::Connect("reset".into()), now);
    c.handle_timeout(now);
    actions(&mut c);
    c.handle_connect_failed(refused(), 1.0, now);
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_millis(250)));
    assert!(
        actions(&mut c)
            .iter()
            .any(|a| matches!(a, SttAction::Report(_))),
        "a new run of failures is reported again"
    );
}

#[test]
fn refused_credentials_are_reported_and_stop_the_connection() {
    let t0 = Instant::now();
    let mut c = connection();
    actions(&mut c);
    c.handle_connect_failed(
        ServiceError::Status {
            status: 401,
            message: "bad key".into(),
            retry_after: None,
        },
        0.5,
        t0,
    );
    assert!(matches!(actions(&mut c)[..], [SttAction::Fail(_)]));
    assert!(c.is_stopped());
    assert_eq!(c.poll_timeout(), None);
    c.handle_audio(audio(20, 1), t0);
    assert!(actions(&mut c).is_empty());
}

#[test]
fn a_handshake_refused_for_good_stops_but_a_rate_limit_is_retried() {
    let t0 = Instant::now();
    let status = |status| ServiceError::Status {
        status,
        message: "no such model".into(),
        retry_after: None,
    };
    for refused in [400, 402, 404] {
        let mut c = connection();
        actions(&mut c);
        c.handle_connect_failed(status(refused), 0.5, t0);
        assert!(matches!(actions(&mut c)[..], [SttAction::Fail(_)]));
        assert!(c.is_stopped(), "{refused} stops: asking again cannot help");
    }
    for passing in [408, 409, 429, 503] {
        let mut c = connection();
        actions(&mut c);
        c.handle_connect_failed(status(passing), 0.5, t0);
        assert!(!c.is_stopped(), "{passing} is tried again");
        assert!(c.poll_timeout().is_some());
    }
    // Once a socket has worked, the same request refused (a proxy's 404
    // mid-deploy) is tried again; refused credentials still stop.
    let mut c = open(t0);
    c.handle_message(METADATA, t0);
    c.handle_socket_lost(&ServiceError::Connect("reset".into()), t0);
    c.handle_timeout(t0);
    actions(&mut c);
    c.handle_connect_failed(status(404), 0.5, t0);
    assert!(
        !c.is_stopped(),
        "a session that worked is not ended by a 404"
    );
    assert!(matches!(actions(&mut c)[..], [SttAction::Report(_)]));
    c.handle_timeout(c.poll_timeout().unwrap());
    actions(&mut c);
    c.handle_connect_failed(status(401), 0.5, t0);
    assert!(matches!(actions(&mut c)[..], [SttAction::Fail(_)]));
    assert!(c.is_stopped());
}

#[test]
fn a_malformed_message_is_reported_and_the_stream_goes_on() {
    let t0 = Instant::now();
    let mut c = open(t0);
    c.handle_message("{", t0);
    c.handle_message(r#"{"type":"Error","description":"bad audio"}"#, t0);
    c.handle_message(&result("still here", 0.0, 0.1, false), t0);
    let done = actions(&mut c);
    assert!(matches!(
        &done[..],
        [SttAction::Report(ServiceError::Protocol(_)), SttAction::Report(ServiceError::Remote(m)), SttAction::Transcript { .. }]
        if m == "bad audio"
    ));
}

#[test]
fn the_end_closes_the_stream_and_pushes_its_last_results() {
    let t0 = Instant::now();
    let mut c = open(t0);
    c.handle_audio(audio(100, 1), t0);
    actions(&mut c);
    let t1 = t0 + Duration::from_secs(1);
    c.handle_end(t1);
    assert_eq!(sent(&actions(&mut c)), [Sent::Control(CLOSE_STREAM)]);
    assert_eq!(
        c.poll_timeout(),
        Some(t1 + Duration::from_secs(5)),
        "no keep-alive"
    );
    c.handle_message(&result("Last words.", 0.0, 0.1, true), t1);
    assert_eq!(transcripts(&actions(&mut c)), [(true, "Last words.")]);
    c.handle_closed(Some(1000), "", t1);
    assert!(c.is_stopped());
}

#[test]
fn a_socket_lost_while_finishing_is_reopened_once_with_the_replay() {
    let t0 = Instant::now();
    let mut c = open(t0);
    c.handle_audio(audio(100, 1), t0);
    c.handle_end(t0);
    actions(&mut c);
    c.handle_socket_lost(&ServiceError::Connect("reset".into()), t0);
    assert!(matches!(actions(&mut c)[..], [SttAction::Connect]));
    c.handle_connected(t0);
    assert_eq!(
        sent(&actions(&mut c)),
        [Sent::Audio(3200, 1), Sent::Control(CLOSE_STREAM)]
    );
    c.handle_socket_lost(&ServiceError::Connect("reset".into()), t0);
    assert!(actions(&mut c).is_empty());
    assert!(c.is_stopped(), "only once");
}

#[test]
fn the_end_with_the_socket_down_reconnects_at_once_only_for_unconfirmed_audio() {
    let t0 = Instant::now();
    let mut c = open(t0);
    c.handle_socket_lost(&ServiceError::Connect("reset".into()), t0);
    c.handle_end(t0);
    assert!(c.is_stopped(), "nothing to finish");

    let mut c = open(t0);
    c.handle_audio(audio(100, 1), t0);
    actions(&mut c);
    c.handle_socket_lost(&ServiceError::Connect("reset".into()), t0);
    c.handle_timeout(t0);
    c.handle_connect_failed(ServiceError::Connect("refused".into()), 0.0, t0);
    actions(&mut c);
    // In the backoff: the end does not wait for it.
    c.handle_end(t0);
    assert!(matches!(actions(&mut c)[..], [SttAction::Connect]));
    c.handle_connect_failed(ServiceError::Connect("refused".into()), 0.0, t0);
    assert!(matches!(actions(&mut c)[..], [SttAction::Report(_)]));
    assert!(c.is_stopped());
}

#[test]
fn a_provider_that_never_closes_is_given_up_on() {
    let t0 = Instant::now();
    let mut c = open(t0);
    c.handle_end(t0);
    actions(&mut c);
    let deadline = t0 + Duration::from_secs(5);
    c.handle_timeout(deadline - Duration::from_millis(1));
    assert!(!c.is_stopped());
    c.handle_timeout(deadline);
    assert!(matches!(actions(&mut c)[..], [SttAction::Disconnect]));
    assert!(c.is_stopped());
}

#[test]
fn result_times_map_to_session_bytes_without_overflow() {
    assert_eq!(
        session_offset(3200, Duration::from_millis(500), 16_000),
        3200 + 16_000
    );
    assert_eq!(session_offset(3200, Duration::MAX, 16_000), u64::MAX);
    assert_eq!(
        session_offset(u64::MAX - 1, Duration::from_secs(1), 8_000),
        u64::MAX
    );
}

#[test]
fn a_socket_that_answers_nothing_while_sent_audio_is_replaced() {
    let t0 = Instant::now();
    let mut c = open(t0);
    c.handle_message(METADATA, t0);
    let ms = |n| t0 + Duration::from_millis(n);
    // A provider that answers keeps its socket, however long the stream.
    for n in 0..100u64 {
        c.handle_audio(audio(100, 1), ms(n * 100));
        if n % 20 == 19 {
            c.handle_message(&result("", 0.0, 0.1, false), ms(n * 100));
        }
        assert!(
            !actions(&mut c)
                .iter()
                .any(|a| matches!(a, SttAction::Report(_) | SttAction::Disconnect))
        );
    }
    // Then it goes silent: 5 s (the read timeout) after the first audio it
    // did not answer, the socket is dropped and another opened.
    let first = ms(10_000);
    for n in 0..50u64 {
        c.handle_audio(audio(100, 2), first + Duration::from_millis(n * 100));
    }
    actions(&mut c);
    assert_eq!(c.poll_timeout(), Some(first + Duration::from_secs(5)));
    c.handle_timeout(first + Duration::from_secs(5));
    assert!(matches!(
        &actions(&mut c)[..],
        [
            SttAction::Report(ServiceError::Timeout { .. }),
            SttAction::Disconnect
        ]
    ));
    c.handle_timeout(first + Duration::from_secs(5));
    assert!(matches!(actions(&mut c)[..], [SttAction::Connect]));
    c.handle_connected(first + Duration::from_secs(6));
    let replayed = sent(&actions(&mut c));
    assert!(
        !replayed.is_empty() && replayed.iter().all(|s| matches!(s, Sent::Audio(_, 2))),
        "the audio it never answered goes again: {replayed:?}"
    );
}
