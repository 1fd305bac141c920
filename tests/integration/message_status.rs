//! Twilio's status callbacks for the answers it sends
//! (`POST /twilio/messages/status`): every answer asks for them, by TwiML
//! or REST; a signed `failed`/`undelivered` one is recorded in the
//! conversation's record, an unsigned one refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::support::fake::openai::{Reply, text_answer};
use crate::support::fake::twilio_rest::ACCOUNT_SID;
use crate::support::text::{config, env, runtime};
use crate::twilio_messaging::{AGENT, Rig, USER, WAIT, messages_of};
use voxpipe::store::{CallRecord, MAX_UNDELIVERED_KEPT, Segment, Store, UndeliveredMessage};

/// The status callback URL (`action`, posted to) of the TwiML's one
/// `<Message>`.
fn status_callback_of(twiml: &str) -> String {
    let (_, rest) = twiml
        .split_once(r#"<Message action=""#)
        .unwrap_or_else(|| panic!("no action in {twiml}"));
    let (url, rest) = rest.split_once('"').unwrap();
    assert!(rest.starts_with(r#" method="POST">"#), "{twiml}");
    url.replace("&amp;", "&")
}

/// A status callback's form, as Twilio posts it for an answer.
fn status_form<'a>(sid: &'a str, status: &'a str, code: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("AccountSid", ACCOUNT_SID),
        ("MessageSid", sid),
        ("SmsSid", sid),
        ("MessageStatus", status),
        ("SmsStatus", status),
        ("ErrorCode", code),
        ("From", AGENT),
        ("To", USER),
        ("ApiVersion", "2010-04-01"),
    ]
}

fn call_id_of(url: &str) -> String {
    url.split_once("call_id=").unwrap().1.to_owned()
}

async fn undelivered(store: &Arc<dyn Store>, call_id: &str) -> Vec<UndeliveredMessage> {
    store.call(call_id).await.unwrap().unwrap().undelivered
}

#[tokio::test]
async fn an_answer_twilio_could_not_deliver_is_recorded_and_an_unsigned_report_refused() {
    let rig = Rig::new("").await;
    let server = rig.server().await;
    let store = Arc::clone(runtime(&config(&rig.toml), &env(&rig.redis.url())).store());
    rig.openai.push_chat(Reply::Sse(text_answer("Hello!")));
    let (status, twiml) = rig.say("SM00000000000000000000000000000101", "Hi").await;
    assert_eq!(status, 200);
    assert_eq!(messages_of(&twiml), ["Hello!"]);
    let url = status_callback_of(&twiml);
    assert!(
        url.starts_with("https://text.example.com/twilio/messages/status?call_id="),
        "{url}"
    );
    let call_id = call_id_of(&url);
    let answer_sid = "SM000000000000000000000000000000a1";
    let failed = status_form(answer_sid, "undelivered", "63016");

    // Unsigned, or signed with another token: refused, nothing recorded.
    assert_eq!(rig.twilio.post_signed(&url, &failed, Some("")).await, 403);
    assert_eq!(
        rig.twilio.post_signed(&url, &failed, Some("forged")).await,
        403
    );
    assert!(undelivered(&store, &call_id).await.is_empty());

    // A delivery is only noted; a failure is recorded, once.
    let delivered = status_form("SM000000000000000000000000000000a0", "delivered", "");
    assert_eq!(rig.twilio.post_signed(&url, &delivered, None).await, 200);
    assert_eq!(rig.twilio.post_signed(&url, &failed, None).await, 200);
    let first = store.call(&call_id).await.unwrap().unwrap();
    assert_eq!(rig.twilio.post_signed(&url, &failed, None).await, 200);
    let recorded = undelivered(&store, &call_id).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].message_sid, answer_sid);
    assert_eq!(recorded[0].status, "undelivered");
    assert_eq!(recorded[0].error_code, Some(63016));
    // The repeat wrote nothing, and was not counted.
    let again = store.call(&call_id).await.unwrap().unwrap();
    assert_eq!(again.updated_at, first.updated_at);
    assert_eq!(server.metric(UNDELIVERED).await, 1.0);

    // Up to the cap, each is recorded and counted; past it, nothing.
    for n in 2..=MAX_UNDELIVERED_KEPT + 1 {
        let sid = format!("SM{n:032x}");
        let failed = status_form(&sid, "failed", "30003");
        assert_eq!(rig.twilio.post_signed(&url, &failed, None).await, 200);
        if n == MAX_UNDELIVERED_KEPT {
            assert_eq!(undelivered(&store, &call_id).await.len(), n);
        }
    }
    let capped = store.call(&call_id).await.unwrap().unwrap();
    assert_eq!(capped.undelivered.len(), MAX_UNDELIVERED_KEPT);
    assert_eq!(
        server.metric(UNDELIVERED).await,
        MAX_UNDELIVERED_KEPT as f64
    );
    assert_eq!(rig.twilio.post_signed(&url, &failed, None).await, 200);
    let after = store.call(&call_id).await.unwrap().unwrap();
    assert_eq!(after.updated_at, capped.updated_at);
    server.shutdown(WAIT).await.unwrap();
}

/// The count of recorded undelivered answers.
const UNDELIVERED: &str = r#"voxpipe_errors_total{kind="message_undelivered",source="twilio"}"#;

#[tokio::test]
async fn reports_are_signed_whenever_a_token_checks_them_and_name_text_conversations_only() {
    let mut rig = Rig::new("").await;
    rig.toml = rig.toml.replace(
        "[transport.twilio]\n",
        "[transport.twilio]\nmessaging_signature = false\n",
    );
    assert!(rig.toml.contains("messaging_signature = false"));
    let server = rig.server().await;
    let store = Arc::clone(runtime(&config(&rig.toml), &env(&rig.redis.url())).store());
    // A voice call's record.
    let voice = "0123456789abcdef0123456789abcdef";
    let record = CallRecord::pending(voice, "twilio", Segment::default(), BTreeMap::new(), 1_000);
    assert!(store.create_call(&record).await.unwrap());
    let url = format!("https://text.example.com/twilio/messages/status?call_id={voice}");
    let sid = "SM0123456789abcdef0123456789abcdef";
    let failed = status_form(sid, "failed", "30003");

    // Unsigned or forged: refused although `messaging_signature = false`.
    assert_eq!(rig.twilio.post_signed(&url, &failed, Some("")).await, 403);
    assert_eq!(
        rig.twilio.post_signed(&url, &failed, Some("forged")).await,
        403
    );
    // Signed, on a voice call's record: nothing written.
    assert_eq!(rig.twilio.post_signed(&url, &failed, None).await, 200);
    let kept = store.call(voice).await.unwrap().unwrap();
    assert!(kept.undelivered.is_empty(), "{kept:?}");
    assert_eq!(kept.updated_at, record.updated_at);
    assert_eq!(server.metric(UNDELIVERED).await, 0.0);

    // Ids not of the forms issued: 400, signed or not.
    let base = "https://text.example.com/twilio/messages/status?call_id=";
    for call_id in ["c1", "0123456789ABCDEF0123456789ABCDEF", "call%3A1"] {
        let url = format!("{base}{call_id}");
        assert_eq!(
            rig.twilio.post_signed(&url, &failed, None).await,
            400,
            "{call_id}"
        );
    }
    for sid in [
        "SM1",
        "CA0123456789abcdef0123456789abcdef",
        "SM0123456789abcdef0123456789abcdeg",
    ] {
        let failed = status_form(sid, "failed", "30003");
        assert_eq!(
            rig.twilio.post_signed(&url, &failed, None).await,
            400,
            "{sid}"
        );
    }
    server.shutdown(WAIT).await.unwrap();
}

#[tokio::test]
async fn an_answer_sent_by_rest_asks_for_its_status_and_its_failure_is_recorded() {
    let rig = Rig::new("[text]\nreply_budget_secs = 0.2\n").await;
    let server = rig.server().await;
    let store = Arc::clone(runtime(&config(&rig.toml), &env(&rig.redis.url())).store());
    let release = rig.answer_when_released("Sorry for the wait: yes.");
    let (status, twiml) = rig
        .say("SM00000000000000000000000000000102", "Are you open?")
        .await;
    assert_eq!(status, 200);
    assert!(messages_of(&twiml).is_empty(), "{twiml}");
    release.notify_one();
    let sent = rig.twilio.wait_messages(1, WAIT).await;
    let url = sent[0].status_callback.clone().expect("no StatusCallback");
    let call_id = call_id_of(&url);
    let failed = status_form(&sent[0].sid, "failed", "30003");
    assert_eq!(rig.twilio.post_signed(&url, &failed, None).await, 200);
    let recorded = undelivered(&store, &call_id).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].message_sid, sent[0].sid);
    assert_eq!(recorded[0].status, "failed");
    assert_eq!(recorded[0].error_code, Some(30003));
    server.shutdown(WAIT).await.unwrap();
}

#[tokio::test]
async fn an_answer_whose_status_callback_twilio_refuses_is_sent_without_it() {
    let rig = Rig::new("[text]\nreply_budget_secs = 0.2\n").await;
    let server = rig.server().await;
    // Twilio finds the callback URL invalid (say, a hostname with `_`).
    rig.twilio.refuse_status_callbacks();
    let answer = "word ".repeat(400);
    let release = rig.answer_when_released(&answer);
    let (status, twiml) = rig
        .say("SM00000000000000000000000000000103", "Tell me more")
        .await;
    assert_eq!(status, 200);
    assert!(messages_of(&twiml).is_empty(), "{twiml}");
    release.notify_one();
    // Both parts go out, without a callback; only the first asked for one.
    let sent = rig.twilio.wait_messages(2, WAIT).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.iter().all(|m| m.status_callback.is_none()), "{sent:?}");
    assert_eq!(
        sent.iter()
            .map(|m| m.body.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        answer.trim()
    );
    assert_eq!(rig.twilio.refused_callbacks(), 1);
    server.shutdown(WAIT).await.unwrap();
}
