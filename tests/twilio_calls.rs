//! Phone calls end to end: a fake Twilio calls the server over loopback and
//! listens to what comes back.
//!
//! Until the VAD processor exists, pipelines that need turns put
//! `test_turns` (a loudness detector, `tests/support/processors.rs`) where
//! `vad` will go; `pipelines/parrot.toml` itself, with no VAD, repeats the
//! whole call once the session ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::fake::twilio_media::{CallConfig, FakeCall};
use support::fake::twilio_rest::FakeTwilioRest;
use support::mulaw::{decode, loud_frames, silence, speech, tone, tone_amplitude};
use support::server::{TestServer, twilio_rest_section};

/// `pipelines/parrot.toml` with a stand-in for the VAD in front.
const PARROT_WITH_TURNS: &str = r#"
[pipeline]
name = "parrot-with-turns"
sample_rate = 16000

[[processor]]
type = "test_turns"

[[processor]]
type = "parrot"
"#;

const WAIT: Duration = Duration::from_secs(30);
/// Loudness (sample units) above which a heard frame is the bot speaking.
const LOUD: f64 = 1_000.0;

fn heard_ms(record: &support::fake::twilio_media::Record) -> usize {
    loud_frames(&decode(&record.heard), LOUD) * 20
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hears_each_utterance_back_and_marks_follow_playback() {
    let server = TestServer::with_toml(PARROT_WITH_TURNS, &[], &[]).await;
    let mut config = CallConfig::new(1);
    config
        .custom_parameters
        .push(("segment".into(), "retail".into()));
    let call = FakeCall::connect(server.addr, config).await;

    call.say([tone(440.0, 800, 8_000.0), silence(600)].concat());
    let record = call
        .wait_until(WAIT, |r| heard_ms(r) >= 700 && !r.marks_echoed.is_empty())
        .await;
    let heard = decode(&record.heard);
    let echo: Vec<i16> = heard
        .chunks(160)
        .filter(|f| loud_frames(f, LOUD) == 1)
        .flatten()
        .copied()
        .collect();
    assert!(
        tone_amplitude(&echo, 440.0) > 5_000.0,
        "the caller hears its own 440 Hz back"
    );
    assert_eq!(
        record.marks_received,
        ["voxpipe-1"],
        "one mark per utterance"
    );
    assert_eq!(record.marks_echoed, ["voxpipe-1"]);
    assert_eq!(record.clears, 0);
    assert!(record.unexpected.is_empty(), "{:?}", record.unexpected);
    // Audio continuing what the caller hears is sent ahead, by at most
    // `send_ahead_secs` (0.5 s; Twilio buffers it), so a late wake-up
    // leaves no gap. (The reply's first frame leaves at its time, so a late
    // one adds to the lead measured: hence the slack above 0.5 s.)
    assert!(
        (Duration::from_millis(300)..=Duration::from_millis(550)).contains(&record.media_early_max),
        "sent ahead by {:?}",
        record.media_early_max
    );

    let ended = second_reply_then_stop(&call, &server).await;
    assert!(!ended[0].cancelled);
    assert_eq!(ended[0].custom_parameters["segment"], "retail");
    assert_eq!(ended[0].custom_parameters["From"], "+15550000001");
    let record = call.closed(WAIT).await;
    assert_eq!(record.close.as_ref().map(|c| c.0), Some(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_stops_sending_after_speaking_still_hears_its_reply() {
    // Twilio sends silence all the time; a driver at the end of its file
    // may send nothing at all, the socket open. The turn must still end.
    let server =
        TestServer::with_toml(PARROT_WITH_TURNS, &["server.idle_timeout_secs=60"], &[]).await;
    let call = FakeCall::connect(server.addr, CallConfig::new(9)).await;
    call.say(tone(440.0, 800, 8_000.0));
    call.said(WAIT).await;
    call.freeze();
    let record = call
        .wait_until(Duration::from_secs(10), |r| heard_ms(r) >= 700)
        .await;
    assert!(!record.ended, "the call goes on");
    assert!(server.sessions.all()[0].end_reason.is_none());
    call.drop_socket();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_parrot_toml_answers_a_call_and_the_caller_hears_its_words_back() {
    // Without a VAD, parrot repeats the call once it ends: Twilio's `stop`
    // ends the session gracefully, so the reply is still produced and, the
    // fake keeping its socket open, heard. With a VAD, parrot answers each
    // utterance during the call; either way every word comes back. Twilio
    // ended the call, so the server does not hang up.
    let rest = FakeTwilioRest::start("secret-token").await;
    let base = format!("transport.twilio.api_base_url={}", rest.base_url);
    let server = TestServer::start(support::server::Setup {
        overrides: &["transport.twilio.auth_token_env=TWILIO_AUTH_TOKEN", &base],
        env: &[("TWILIO_AUTH_TOKEN", "secret-token")],
        ..support::server::Setup::default()
    })
    .await;
    let call = FakeCall::connect(server.addr, CallConfig::new(2).signed("secret-token")).await;
    let words = speech(1_400, 3_400);
    call.say([words.clone(), silence(1_500)].concat());
    call.said(WAIT).await;
    call.stop();
    let record = call.closed(WAIT).await;

    let said = decode(&words);
    let threshold = 0.1
        * said
            .chunks(160)
            .map(support::signal::rms)
            .fold(0.0, f64::max);
    // After its own `stop` a real Twilio plays nothing: what counts here is
    // what the server sent, played or still in the fake's buffer when the
    // server closed (which depends on how late the fake ran under load).
    let sent = [record.heard.as_slice(), &record.unplayed_at_close].concat();
    let (said_ms, heard_ms) = (
        loud_frames(&said, threshold) * 20,
        loud_frames(&decode(&sent), threshold) * 20,
    );
    assert!(said_ms > 1_000, "the words last {said_ms} ms");
    assert!(
        heard_ms.abs_diff(said_ms) <= said_ms / 10,
        "said {said_ms} ms of words, heard {heard_ms} ms back"
    );
    let ended = server.sessions.ended(1, WAIT).await;
    assert_eq!(ended[0].end_reason.as_deref(), Some("hangup"));
    assert!(!ended[0].cancelled);
    assert!(rest.requests().is_empty(), "no hang-up after Twilio's stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barge_in_clears_the_reply_being_played() {
    let server = TestServer::with_toml(PARROT_WITH_TURNS, &[], &[]).await;
    let call = FakeCall::connect(server.addr, CallConfig::new(3)).await;
    call.say([tone(440.0, 2_000, 8_000.0), silence(500)].concat());
    // The caller talks over the reply once it has heard 300 ms of it.
    call.wait_until(WAIT, |r| heard_ms(r) >= 300).await;
    call.say([tone(880.0, 600, 8_000.0), silence(600)].concat());
    let at_clear = call.wait_until(WAIT, |r| r.clears >= 1).await;
    assert_eq!(at_clear.clears, 1);
    let first_reply = heard_ms(&at_clear);
    assert!(
        first_reply < 1_500,
        "the 2 s reply was cut, heard {first_reply} ms"
    );
    // Marks go out when an utterance has been sent whole: the interrupted
    // one never had one.
    assert!(
        at_clear.marks_received.is_empty(),
        "{:?}",
        at_clear.marks_received
    );

    // The barge-in is a turn of its own: it comes back at 880 Hz.
    let record = call.wait_until(WAIT, |r| !r.marks_echoed.is_empty()).await;
    let after = decode(&record.heard[at_clear.heard.len()..]);
    assert!(
        tone_amplitude(&after, 880.0) > 3.0 * tone_amplitude(&after, 440.0),
        "the reply after the barge-in is the barge-in"
    );
    let sessions = server.sessions.all();
    assert_eq!(sessions[0].interruptions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_call_plays_the_goodbye_then_hangs_up_through_the_rest_api() {
    let rest = FakeTwilioRest::start("secret-token").await;
    let toml = format!(
        r##"
[pipeline]
name = "hang-up"

{}
[[processor]]
type = "parrot"

[[processor]]
type = "test_end_on_key"
key = "#"
"##,
        twilio_rest_section(&rest.base_url)
    );
    let server = TestServer::with_toml(&toml, &[], &[("TWILIO_AUTH_TOKEN", "secret-token")]).await;
    let config = CallConfig::new(4).signed("secret-token");
    let call = FakeCall::connect(server.addr, config.clone()).await;
    call.say(tone(600.0, 600, 8_000.0));
    call.said(WAIT).await;
    call.press('#');

    let record = call.closed(WAIT).await;
    let requests = rest.wait_for(1, WAIT).await;
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        request.path,
        format!(
            "/2010-04-01/Accounts/{}/Calls/{}.json",
            config.account_sid, config.call_sid
        )
    );
    assert_eq!(
        request.form,
        [("Status".to_owned(), "completed".to_owned())]
    );
    assert_eq!(
        request.username.as_deref(),
        Some(config.account_sid.as_str())
    );
    assert_eq!(request.password.as_deref(), Some("secret-token"));
    assert!(
        request.at <= record.ended_at.unwrap(),
        "hung up before the stream closed"
    );
    // The pipeline finished its reply (parrot, with no VAD, repeats the
    // call) before hanging up.
    let heard = heard_ms(&record);
    assert!((500..=700).contains(&heard), "heard {heard} ms");
    assert_eq!(record.close.as_ref().map(|c| c.0), Some(1000));

    let ended = server.sessions.ended(1, WAIT).await;
    assert_eq!(ended[0].end_reason.as_deref(), Some("end_call"));
    assert_eq!(ended[0].keys, ['#']);
    assert_eq!(
        server
            .metric(r#"voxpipe_twilio_hangups_total{result="completed"}"#)
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_in_one_big_frame_at_another_rate_is_heard_whole() {
    // A TTS at 24 kHz that delivers two seconds in one frame: it leaves as
    // a burst of 100 media messages, and every one of them is heard.
    let toml = r##"
[pipeline]
name = "big-reply"

[[processor]]
type = "test_say_on_key"
key = "1"
secs = 2.0
rate = 24000
freq = 500.0
"##;
    let server = TestServer::with_toml(toml, &[], &[]).await;
    let call = FakeCall::connect(server.addr, CallConfig::new(5)).await;
    call.press('1');
    let record = call.wait_until(WAIT, |r| !r.marks_echoed.is_empty()).await;
    assert_eq!(record.media_received, 101, "2 s and the resampler's tail");
    let heard = heard_ms(&record);
    assert!((1_980..=2_020).contains(&heard), "heard {heard} ms");
    assert!(tone_amplitude(&decode(&record.heard), 500.0) > 6_000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_each_hear_their_own_words() {
    const CALLS: u32 = 50;
    let server = TestServer::with_toml(PARROT_WITH_TURNS, &[], &[]).await;
    let mut calls = Vec::new();
    for n in 0..CALLS {
        let call = FakeCall::connect(server.addr, CallConfig::new(100 + n)).await;
        let freq = 300.0 + 40.0 * f64::from(n);
        call.say([tone(freq, 800, 8_000.0), silence(600)].concat());
        calls.push((call, freq));
    }
    let heard =
        futures_util::future::join_all(calls.iter().map(|(call, _)| {
            call.wait_until(Duration::from_secs(60), |r| !r.marks_echoed.is_empty())
        }))
        .await;
    for ((call, freq), record) in calls.iter().zip(&heard) {
        let ms = heard_ms(record);
        assert!(
            (700..=900).contains(&ms),
            "{}: heard {ms} ms",
            call.config.call_sid
        );
        let pcm = decode(&record.heard);
        let own = tone_amplitude(&pcm, *freq);
        let other = tone_amplitude(&pcm, freq + 40.0).max(tone_amplitude(&pcm, freq - 40.0));
        assert!(
            own > 3.0 * other,
            "{}: hears its own {freq} Hz ({own:.0} vs {other:.0})",
            call.config.call_sid
        );
    }
    for (call, _) in &calls {
        call.stop();
    }
    let ended = server
        .sessions
        .ended(CALLS as usize, Duration::from_secs(60))
        .await;
    assert!(
        ended
            .iter()
            .all(|s| s.end_reason.as_deref() == Some("hangup") && !s.cancelled)
    );
    assert_eq!(
        server
            .metric(r#"voxpipe_sessions_total{reason="hangup",transport="twilio"}"#)
            .await,
        f64::from(CALLS)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_read_as_each_message_arrives_loses_nothing_and_hangs_up_on_stop() {
    // The other tests read every 40 ms (the default), two messages a
    // wake-up; this one reads each message as it arrives.
    let server = TestServer::with_toml(
        PARROT_WITH_TURNS,
        &["transport.twilio.read_interval_secs=0"],
        &[],
    )
    .await;
    let call = FakeCall::connect(server.addr, CallConfig::new(1)).await;
    call.say([tone(440.0, 800, 8_000.0), silence(600)].concat());
    let record = call
        .wait_until(WAIT, |r| heard_ms(r) >= 700 && !r.marks_echoed.is_empty())
        .await;
    assert_eq!(record.marks_echoed, ["voxpipe-1"]);
    assert!(record.unexpected.is_empty(), "{:?}", record.unexpected);
    second_reply_then_stop(&call, &server).await;
}

/// A second utterance: a second reply, a second mark; then the caller's
/// `stop` ends the session as a hang-up.
async fn second_reply_then_stop(
    call: &FakeCall,
    server: &TestServer,
) -> Vec<support::server::SessionRecord> {
    call.say([tone(660.0, 500, 8_000.0), silence(600)].concat());
    let record = call.wait_until(WAIT, |r| r.marks_echoed.len() == 2).await;
    assert!(heard_ms(&record) >= 1_100, "heard {} ms", heard_ms(&record));
    call.stop();
    let ended = server.sessions.ended(1, WAIT).await;
    assert_eq!(ended[0].end_reason.as_deref(), Some("hangup"));
    ended
}
