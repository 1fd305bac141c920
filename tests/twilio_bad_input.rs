//! Bad input from a stream never takes the server down, never touches other
//! calls, and never loses a spoken turn: a message that cannot be used is
//! skipped (the call goes on and is still heard), and a stream that cannot
//! go on ends its own session gracefully (drained, not cancelled).
//!
//! Every scenario runs at once on one server, next to a well-behaved call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use support::fake::twilio_media::{CallConfig, FakeCall, Record};
use support::fake::twilio_rest::FakeTwilioRest;
use support::mulaw::{decode, loud_frames, silence, tone, tone_amplitude};
use support::server::{SessionRecord, TestServer, twilio_rest_section};

const WAIT: Duration = Duration::from_secs(40);
const LOUD: f64 = 1_000.0;

fn pipeline(rest: &FakeTwilioRest) -> String {
    format!(
        r#"
[pipeline]
name = "parrot-with-turns"

[server]
idle_timeout_secs = 2

{}
[[processor]]
type = "test_turns"

[[processor]]
type = "parrot"
"#,
        twilio_rest_section(&rest.base_url)
    )
}

fn heard_ms(record: &Record) -> usize {
    loud_frames(&decode(&record.heard), LOUD) * 20
}

fn freq_of(n: u32) -> f64 {
    300.0 + 90.0 * f64::from(n)
}

fn media(sid: &str, payload: &[u8]) -> String {
    json!({
        "event": "media",
        "sequenceNumber": "99",
        "media": {
            "track": "inbound", "chunk": "99", "timestamp": "1980",
            "payload": base64::engine::general_purpose::STANDARD.encode(payload),
        },
        "streamSid": sid,
    })
    .to_string()
}

/// A call sends its bad input, then speaks, and must hear itself back.
async fn skipped(server: &TestServer, n: u32, name: &str) -> (String, Record) {
    let mut config = CallConfig::new(n).signed("secret-token");
    config.start = name != "media_before_start";
    let call = FakeCall::connect(server.addr, config.clone()).await;
    let sid = config.stream_sid.clone();
    let loud = tone(freq_of(n), 800, 8_000.0);
    match name {
        "not_json" => {
            call.send_raw("hello");
            call.send_raw(r#"{"event": "media", "#);
            call.send_raw("[1, 2]");
        }
        "unknown_event" => call.send_raw(json!({"event": "dance", "streamSid": sid}).to_string()),
        "bad_base64" => call.send_raw(
            json!({"event": "media", "streamSid": sid, "media": {"payload": "!!not base64!!"}})
                .to_string(),
        ),
        "binary_message" => call.send_binary(vec![1, 2, 3]),
        "foreign_marks" => {
            // Marks we never sent, far more than the echo queue holds.
            for i in 0..1_000 {
                call.send_raw(
                    json!({"event": "mark", "streamSid": sid, "mark": {"name": format!("junk-{i}")}})
                        .to_string(),
                );
            }
        }
        "other_stream" => {
            for chunk in tone(3_000.0, 400, 8_000.0).chunks(160) {
                call.send_raw(media("MZ0000000000000000000000000000ffff", chunk));
            }
        }
        "duplicate_start" => call.send_raw(
            json!({"event": "start", "start": {"streamSid": sid, "callSid": config.call_sid}})
                .to_string(),
        ),
        "media_before_start" => {
            // The fake streams silence from the start; `start` comes late.
            call.send_raw(
                json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}).to_string(),
            );
            call.say(silence(200));
            call.said(WAIT).await;
            call.send_raw(
                json!({
                    "event": "start",
                    "sequenceNumber": "1",
                    "start": {
                        "streamSid": sid, "callSid": config.call_sid,
                        "accountSid": config.account_sid, "tracks": ["inbound"],
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                        "customParameters": call.config.custom_parameters.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                    },
                    "streamSid": sid,
                })
                .to_string(),
            );
        }
        "odd_sizes" => {
            // The whole utterance in payloads of odd sizes, queued as one
            // stream (sent one by one, never with silence between them,
            // which would split the tone however loaded the machine is).
            let mut payloads = Vec::new();
            let mut at = 0;
            for size in [7, 161, 1, 333, 0, 159, 2_000].iter().cycle() {
                if at >= loud.len() {
                    break;
                }
                let end = (at + size).min(loud.len());
                payloads.push(loud[at..end].to_vec());
                at = end;
            }
            call.say_payloads(payloads);
            call.say(silence(600));
            let record = call.wait_until(WAIT, |r| !r.marks_echoed.is_empty()).await;
            return (name.to_owned(), record);
        }
        other => panic!("no scenario {other}"),
    }
    call.say([loud, silence(600)].concat());
    let record = call.wait_until(WAIT, |r| !r.marks_echoed.is_empty()).await;
    call.stop();
    (name.to_owned(), record)
}

/// A call whose stream cannot go on; returns its SIDs and what it saw.
async fn ended(server: &TestServer, n: u32, name: &str) -> (String, CallConfig, Record) {
    let config = CallConfig::new(n).signed("secret-token");
    let call = FakeCall::connect(server.addr, config.clone()).await;
    call.say(tone(freq_of(n), 400, 8_000.0));
    call.said(WAIT).await;
    match name {
        "message_too_large" => call.send_raw("x".repeat(100 * 1024)),
        "disconnected" => call.drop_socket(),
        "idle_timeout" => call.freeze(),
        other => panic!("no scenario {other}"),
    }
    let record = call.closed(WAIT).await;
    (name.to_owned(), config, record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_skipped_or_ends_only_its_own_session() {
    let rest = FakeTwilioRest::start("secret-token").await;
    let server = TestServer::with_toml(
        &pipeline(&rest),
        &[],
        &[("TWILIO_AUTH_TOKEN", "secret-token")],
    )
    .await;

    let good = async {
        let call = FakeCall::connect(server.addr, CallConfig::new(0).signed("secret-token")).await;
        call.say([tone(freq_of(0), 800, 8_000.0), silence(600)].concat());
        let record = call.wait_until(WAIT, |r| !r.marks_echoed.is_empty()).await;
        // Still there once every bad call is over: answer once more.
        (call, record)
    };
    let skips = [
        "not_json",
        "unknown_event",
        "bad_base64",
        "binary_message",
        "foreign_marks",
        "other_stream",
        "duplicate_start",
        "media_before_start",
        "odd_sizes",
    ];
    let ends = ["message_too_large", "disconnected", "idle_timeout"];
    let (skipped_calls, ended_calls, (good_call, good_record)) = tokio::join!(
        futures_util::future::join_all(skips.iter().enumerate().map(|(i, name)| skipped(
            &server,
            1 + i as u32,
            name
        ))),
        futures_util::future::join_all(ends.iter().enumerate().map(|(i, name)| ended(
            &server,
            20 + i as u32,
            name
        ))),
        good,
    );

    // Skipped input: each of those calls went on and heard its own words.
    for (i, (name, record)) in skipped_calls.iter().enumerate() {
        let freq = freq_of(1 + i as u32);
        let ms = heard_ms(record);
        assert!((700..=900).contains(&ms), "{name}: heard {ms} ms");
        let pcm = decode(&record.heard);
        assert!(
            tone_amplitude(&pcm, freq) > 3_000.0,
            "{name}: hears its own {freq} Hz"
        );
        if *name == "other_stream" {
            assert!(
                tone_amplitude(&pcm, 3_000.0) < 300.0,
                "another stream's audio is not this call's"
            );
        }
        assert!(record.close.is_none(), "{name}: still connected");
    }

    // Streams that could not go on ended their own sessions, gracefully.
    let sessions = server.sessions.ended(skips.len() + ends.len(), WAIT).await;
    let session_of = |config: &CallConfig| -> SessionRecord {
        sessions
            .iter()
            .find(|s| s.custom_parameters.get("From") == Some(&config.custom_parameters[0].1))
            .cloned()
            .unwrap_or_else(|| panic!("no session for {}", config.call_sid))
    };
    let hang_ups = rest.wait_for(ends.len(), WAIT).await;
    for (name, config, record) in &ended_calls {
        let session = session_of(config);
        assert_eq!(session.end_reason.as_deref(), Some(name.as_str()));
        assert!(!session.cancelled, "{name}: drained, so its turns are kept");
        assert!(
            hang_ups.iter().any(|h| h.call_sid == config.call_sid),
            "{name}: the call was hung up, since Twilio might still hold it"
        );
        let expected_close = match name.as_str() {
            "message_too_large" => Some(1009),
            "idle_timeout" => Some(1000),
            _ => None,
        };
        if expected_close.is_some() {
            assert_eq!(record.close.as_ref().map(|c| c.0), expected_close, "{name}");
        }
    }

    // The well-behaved call never noticed.
    assert!(heard_ms(&good_record) >= 700);
    assert!(tone_amplitude(&decode(&good_record.heard), freq_of(0)) > 3_000.0);
    good_call.say([tone(freq_of(0), 500, 8_000.0), silence(600)].concat());
    good_call
        .wait_until(WAIT, |r| r.marks_echoed.len() == 2)
        .await;
    let (status, health) = server.get("/health").await;
    assert_eq!(status, 200, "{health}");

    // Every kind of bad input was counted.
    let (_, metrics) = server.get("/metrics").await;
    for kind in [
        "not_json",
        "bad_shape",
        "unknown_event",
        "bad_base64",
        "binary_message",
        "other_stream",
        "duplicate_start",
        "before_start",
        "message_too_large",
        "disconnected",
        "idle_timeout",
    ] {
        assert!(
            metrics.contains(&format!(
                r#"voxpipe_errors_total{{kind="{kind}",source="twilio"}}"#
            )),
            "{kind} counted:\n{metrics}"
        );
    }
    good_call.stop();
    server
        .sessions
        .ended(skips.len() + ends.len() + 1, WAIT)
        .await;
}
