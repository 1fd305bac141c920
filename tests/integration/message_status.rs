//! Twilio's status callbacks for the answers it sends
//! (`POST /twilio/messages/status`): every answer asks for them, by TwiML
//! or REST; a signed `failed`/`undelivered` one is recorded in the
//! conversation's record, an unsigned one refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use crate::support::fake::openai::{Reply, text_answer};
use crate::support::fake::twilio_rest::ACCOUNT_SID;
use crate::support::text::{config, env, runtime};
use crate::twilio_messaging::{AGENT, Rig, USER, WAIT, messages_of};
use voxpipe::store::{Store, UndeliveredMessage};

/// The `statusCallback` URL of the TwiML's one `<Message>`.
fn status_callback_of(twiml: &str) -> String {
    let (_, rest) = twiml
        .split_once(r#"<Message statusCallback=""#)
        .unwrap_or_else(|| panic!("no statusCallback in {twiml}"));
    rest.split_once('"').unwrap().0.replace("&amp;", "&")
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
    assert_eq!(rig.twilio.post_signed(&url, &failed, None).await, 200);
    let recorded = undelivered(&store, &call_id).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].message_sid, answer_sid);
    assert_eq!(recorded[0].status, "undelivered");
    assert_eq!(recorded[0].error_code, Some(63016));
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
