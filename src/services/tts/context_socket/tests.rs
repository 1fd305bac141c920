use serde_json::Value;

use super::super::cartesia::CartesiaSpeech;
use super::super::elevenlabs::ElevenLabsSpeech;
use super::*;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Cartesia's own replies, as its socket sends them.
fn chunk(context: &str) -> String {
    format!(
        r#"{{"type":"chunk","data":"AAABAA==","done":false,"status_code":206,"step_time":12,"context_id":"{context}"}}"#
    )
}
fn done(context: &str) -> String {
    format!(r#"{{"type":"done","done":true,"status_code":206,"context_id":"{context}"}}"#)
}

fn socket() -> ContextSocket<CartesiaSpeech> {
    ContextSocket::new(CartesiaSpeech::fixture(), TIMEOUT)
}

fn actions<A: WsSpeech>(s: &mut ContextSocket<A>) -> Vec<SocketAction> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

fn events<A: WsSpeech>(s: &mut ContextSocket<A>) -> Vec<WireEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// (context, transcript, continue) of each generation request sent.
fn sent(actions: &[SocketAction]) -> Vec<(String, String, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            SocketAction::Send(text) => {
                let v: Value = serde_json::from_str(text).ok()?;
                Some((
                    v["context_id"].as_str()?.to_owned(),
                    v["transcript"].as_str().unwrap_or("<cancel>").to_owned(),
                    v["continue"].as_bool().unwrap_or(false),
                ))
            }
            _ => None,
        })
        .collect()
}

fn open(t0: Instant) -> ContextSocket<CartesiaSpeech> {
    let mut s = socket();
    s.handle_warm_up(t0);
    assert_eq!(actions(&mut s), [SocketAction::Connect]);
    s.handle_connected(t0);
    s
}

#[test]
fn text_before_the_socket_opens_waits_for_it_in_order() {
    let t0 = Instant::now();
    let mut s = socket();
    s.handle_text("c1", "Hi.", t0);
    s.handle_text("c1", "Bye.", t0);
    s.handle_finish("c1", t0);
    assert_eq!(actions(&mut s), [SocketAction::Connect], "one socket");
    s.handle_connected(t0);
    assert_eq!(
        sent(&actions(&mut s)),
        [
            ("c1".into(), "Hi. ".into(), true),
            ("c1".into(), "Bye. ".into(), true),
            ("c1".into(), String::new(), false)
        ]
    );
    s.handle_message(&chunk("c1"), t0);
    s.handle_message(&done("c1"), t0);
    assert!(matches!(
        &events(&mut s)[..],
        [WireEvent::Audio { pcm, .. }, WireEvent::Done { context }] if pcm.len() == 4 && context == "c1"
    ));
    assert_eq!(s.poll_timeout(), None, "nothing waits");
}

#[test]
fn a_refused_socket_is_reported_and_a_finish_that_waited_is_done() {
    let t0 = Instant::now();
    let mut s = socket();
    s.handle_text("c1", "Hi.", t0);
    s.handle_finish("c1", t0);
    actions(&mut s);
    s.handle_connect_failed(ServiceError::Connect("refused".into()), t0);
    assert!(matches!(
        &events(&mut s)[..],
        [WireEvent::Failed { context: None, .. }, WireEvent::Done { context }] if context == "c1"
    ));
    // The next text tries a new socket.
    s.handle_text("c2", "Again.", t0);
    assert_eq!(actions(&mut s), [SocketAction::Connect]);
}

#[test]
fn a_lost_socket_fails_and_ends_every_open_context() {
    let t0 = Instant::now();
    let mut s = open(t0);
    s.handle_text("c1", "Hi.", t0);
    s.handle_text("c2", "Hello.", t0);
    // The driver's first send fails: the rest is not tried on it.
    assert!(matches!(s.poll_action(), Some(SocketAction::Send(_))));
    s.handle_socket_lost(ServiceError::Connect("broken pipe".into()), t0);
    assert!(actions(&mut s).is_empty());
    let got = events(&mut s);
    assert!(matches!(got[0], WireEvent::Failed { context: None, .. }));
    let mut ended: Vec<_> = got[1..]
        .iter()
        .filter_map(|e| match e {
            WireEvent::Done { context } => Some(context.as_str()),
            _ => None,
        })
        .collect();
    ended.sort_unstable();
    assert_eq!(ended, ["c1", "c2"]);
    // A finish for a context the socket lost is done at once.
    s.handle_finish("c1", t0);
    assert!(matches!(&events(&mut s)[..], [WireEvent::Done { .. }]));
}

#[test]
fn silence_while_waiting_for_the_last_audio_loses_the_socket() {
    let t0 = Instant::now();
    let mut s = open(t0);
    s.handle_text("c1", "Hi.", t0);
    assert_eq!(s.poll_timeout(), None, "a context taking text may be quiet");
    let t1 = t0 + Duration::from_secs(60);
    s.handle_finish("c1", t1);
    actions(&mut s);
    assert_eq!(s.poll_timeout(), Some(t1 + TIMEOUT));
    // Audio restarts the wait.
    let t2 = t1 + Duration::from_secs(3);
    s.handle_message(&chunk("c1"), t2);
    events(&mut s);
    s.handle_timeout(t1 + TIMEOUT);
    assert!(events(&mut s).is_empty(), "heard from 3 s ago");
    s.handle_timeout(t2 + TIMEOUT);
    assert_eq!(actions(&mut s), [SocketAction::Disconnect]);
    assert!(matches!(
        &events(&mut s)[..],
        [
            WireEvent::Failed {
                error: ServiceError::Timeout { .. },
                ..
            },
            WireEvent::Done { .. }
        ]
    ));
}

#[test]
fn a_ping_does_not_hold_off_the_wait_for_the_last_audio() {
    // A server that pings on and never answers would hold the response
    // for ever.
    let t0 = Instant::now();
    let mut s = open(t0);
    s.handle_text("c1", "Hi.", t0);
    s.handle_finish("c1", t0);
    actions(&mut s);
    s.handle_heard(t0 + Duration::from_secs(3));
    assert_eq!(s.poll_timeout(), Some(t0 + TIMEOUT));
    s.handle_timeout(t0 + TIMEOUT);
    assert_eq!(actions(&mut s), [SocketAction::Disconnect]);
    assert!(matches!(
        &events(&mut s)[..],
        [WireEvent::Failed { .. }, WireEvent::Done { .. }]
    ));
}

#[test]
fn a_cancel_drops_the_context_and_its_pending_done() {
    let t0 = Instant::now();
    let mut s = open(t0);
    s.handle_text("c1", "Hi.", t0);
    s.handle_finish("c1", t0);
    s.handle_message(&done("c1"), t0);
    actions(&mut s);
    s.handle_text("c2", "Long answer.", t0);
    actions(&mut s);
    s.handle_cancel("c1", t0);
    s.handle_cancel("c2", t0);
    assert_eq!(
        sent(&actions(&mut s)),
        [("c2".into(), "<cancel>".into(), false)],
        "only the open context is cancelled at the provider"
    );
    assert!(events(&mut s).is_empty(), "c1's done is no longer wanted");
}

#[test]
fn the_provider_closing_fails_open_contexts_and_the_next_text_reconnects() {
    let t0 = Instant::now();
    let mut s = open(t0);
    s.handle_closed(Some(1011), "internal error", t0);
    assert!(events(&mut s).is_empty(), "nothing was open");
    s.handle_text("c1", "Hi.", t0);
    assert_eq!(actions(&mut s), [SocketAction::Connect]);
    s.handle_connected(t0);
    s.handle_message("not json", t0);
    assert!(matches!(
        &events(&mut s)[..],
        [WireEvent::Failed {
            error: ServiceError::Protocol(_),
            ..
        }]
    ));
    s.handle_close(t0);
    let last = actions(&mut s);
    assert_eq!(last.last(), Some(&SocketAction::Close));
}

/// ElevenLabs' own messages, as its socket sends them.
fn eleven_audio(context: &str) -> String {
    format!(
        r#"{{"audio":"AAABAA==","isFinal":null,"normalizedAlignment":null,"alignment":null,"contextId":"{context}"}}"#
    )
}

/// ElevenLabs audio aligned with `text`, as `sync_alignment` sends it.
fn eleven_aligned(context: &str, text: &str) -> String {
    let chars: Vec<String> = text.chars().map(String::from).collect();
    let times: Vec<u32> = (0..chars.len() as u32).map(|i| i * 10).collect();
    serde_json::json!({
        "audio": "AAABAA==",
        "isFinal": null,
        "alignment": {"chars": chars, "charStartTimesMs": times, "charDurationsMs": vec![10; times.len()]},
        "contextId": context,
    })
    .to_string()
}

fn eleven_final(context: &str) -> String {
    format!(r#"{{"isFinal":true,"contextId":"{context}"}}"#)
}

fn eleven_open(t0: Instant) -> ContextSocket<ElevenLabsSpeech> {
    let mut s = ContextSocket::new(ElevenLabsSpeech::fixture(), TIMEOUT);
    s.handle_warm_up(t0);
    s.poll_action();
    s.handle_connected(t0);
    s
}

/// The contexts closed by the messages sent.
fn closes(s: &mut ContextSocket<ElevenLabsSpeech>) -> Vec<String> {
    std::iter::from_fn(|| s.poll_action())
        .filter_map(|a| match a {
            SocketAction::Send(text) => {
                let v: Value = serde_json::from_str(&text).ok()?;
                (v["close_context"] == true).then(|| v["context_id"].as_str().map(str::to_owned))?
            }
            _ => None,
        })
        .collect()
}

#[test]
fn an_elevenlabs_close_waits_for_audio_after_the_last_sentence() {
    // A close ahead of the synthesis is honoured with no audio (Pipecat
    // #4681, #5271): it goes out once audio came after the last text.
    let t0 = Instant::now();
    let mut s = eleven_open(t0);
    s.handle_text("c1", "Hi.", t0);
    s.handle_finish("c1", t0);
    assert!(closes(&mut s).is_empty(), "held: no audio yet");
    s.handle_message(&eleven_audio("c1"), t0);
    assert_eq!(closes(&mut s), ["c1"]);
    s.handle_message(&eleven_final("c1"), t0);
    assert!(matches!(
        &events(&mut s)[..],
        [WireEvent::Audio { .. }, WireEvent::Done { context }] if context == "c1"
    ));

    // Audio of an earlier sentence is not enough: the last one's is awaited.
    s.handle_text("c2", "One.", t0);
    s.handle_message(&eleven_audio("c2"), t0);
    s.handle_text("c2", "Two.", t0);
    s.handle_finish("c2", t0);
    assert!(closes(&mut s).is_empty());
    // Another context's audio does not release it.
    s.handle_text("c3", "Other.", t0);
    s.handle_message(&eleven_audio("c3"), t0);
    assert!(closes(&mut s).is_empty());
    s.handle_message(&eleven_audio("c2"), t0);
    assert_eq!(closes(&mut s), ["c2"]);
    // Finished once its audio came: closed at once.
    s.handle_finish("c3", t0);
    assert_eq!(closes(&mut s), ["c3"]);
}

#[test]
fn a_held_close_goes_out_at_the_read_timeout_then_the_wait_starts_again() {
    let t0 = Instant::now();
    let mut s = eleven_open(t0);
    s.handle_text("c1", "...", t0);
    s.handle_finish("c1", t0);
    assert!(closes(&mut s).is_empty());
    assert_eq!(s.poll_timeout(), Some(t0 + TIMEOUT));
    let t1 = t0 + TIMEOUT;
    s.handle_timeout(t1);
    assert_eq!(closes(&mut s), ["c1"], "no audio came: closed anyway");
    assert!(events(&mut s).is_empty(), "not lost");
    assert_eq!(s.poll_timeout(), Some(t1 + TIMEOUT));
    s.handle_timeout(t1 + TIMEOUT);
    assert_eq!(actions(&mut s), [SocketAction::Disconnect]);
    assert!(matches!(
        &events(&mut s)[..],
        [WireEvent::Failed { .. }, WireEvent::Done { .. }]
    ));

    // A cancelled context's close is not held: it goes out at once.
    let mut s = eleven_open(t0);
    s.handle_text("c2", "Hi.", t0);
    s.handle_finish("c2", t0);
    s.handle_cancel("c2", t0);
    assert_eq!(closes(&mut s), ["c2"]);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn audio_of_an_earlier_sentence_does_not_release_the_close_of_the_last() {
    // Both sentences flushed, the first one's audio streaming while the
    // last one's synthesis has not started: a close now would lose it.
    let t0 = Instant::now();
    let mut s = eleven_open(t0);
    s.handle_text("c1", "Hello there.", t0);
    s.handle_text("c1", "Bye.", t0);
    s.handle_finish("c1", t0);
    assert!(closes(&mut s).is_empty());
    s.handle_message(&eleven_aligned("c1", "Hello "), t0);
    s.handle_message(&eleven_aligned("c1", "there. "), t0);
    assert!(
        closes(&mut s).is_empty(),
        "the first sentence's audio alone"
    );
    s.handle_message(&eleven_aligned("c1", "B"), t0);
    assert_eq!(closes(&mut s), ["c1"], "the last sentence's audio began");

    // Finished once the last sentence's audio came: closed at once.
    s.handle_text("c2", "One.", t0);
    s.handle_message(&eleven_aligned("c2", "One. "), t0);
    s.handle_text("c2", "Two.", t0);
    s.handle_message(&eleven_aligned("c2", "Tw"), t0);
    s.handle_finish("c2", t0);
    assert_eq!(closes(&mut s), ["c2"]);
}

#[test]
fn each_held_close_has_its_own_deadline_whatever_the_others_do() {
    let t0 = Instant::now();
    let mut s = eleven_open(t0);
    s.handle_text("c1", "...", t0);
    s.handle_finish("c1", t0);
    assert!(closes(&mut s).is_empty());
    // Another response streams on: its traffic does not move c1's deadline.
    let t1 = t0 + Duration::from_secs(2);
    s.handle_text("c2", "Streaming.", t1);
    s.handle_message(&eleven_aligned("c2", "Stream"), t1);
    assert_eq!(s.poll_timeout(), Some(t0 + TIMEOUT));
    let t2 = t0 + TIMEOUT;
    s.handle_message(
        &eleven_aligned("c2", "ing. "),
        t2 - Duration::from_millis(1),
    );
    s.handle_timeout(t2);
    assert_eq!(closes(&mut s), ["c1"], "its own deadline passed");
    assert!(
        !events(&mut s)
            .iter()
            .any(|e| matches!(e, WireEvent::Failed { .. } | WireEvent::Done { .. })),
        "nothing failed"
    );
    // c1's close waits for its end; c2, finished later, is held until its
    // audio, to its own deadline.
    assert_eq!(s.poll_timeout(), Some(t2 + TIMEOUT));
    let t3 = t2 + Duration::from_secs(1);
    s.handle_text("c2", "More.", t3);
    s.handle_finish("c2", t3);
    assert!(closes(&mut s).is_empty());
    s.handle_message(&eleven_final("c1"), t3);
    events(&mut s);
    assert_eq!(s.poll_timeout(), Some(t3 + TIMEOUT), "c2's own deadline");
    s.handle_message(&eleven_aligned("c2", "M"), t3);
    assert_eq!(closes(&mut s), ["c2"]);
}
