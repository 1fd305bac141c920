//! `POST /twilio/messaging`: SMS and WhatsApp conversations through the
//! text path, against a fake Twilio (signed webhooks, `Messages.json`), the
//! fake OpenAI server and a real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands as _;
use support::fake::openai::{FakeOpenAi, Part, Reply, text_answer};
use support::fake::twilio_rest::FakeTwilioRest;
use support::redis_server::RedisServer;
use support::server::{Setup, TestServer};
use support::text::{AUTH_TOKEN, MESSAGING_URL, config, env, pipeline_toml, runtime, salted_key};
use tokio::sync::Notify;
use voxpipe::store::CallStatus;
use voxpipe::text::Channel;

pub(crate) const USER: &str = "whatsapp:+15551230001";
pub(crate) const AGENT: &str = "whatsapp:+15557650002";
pub(crate) const WAIT: Duration = Duration::from_secs(20);

pub(crate) struct Rig {
    pub(crate) redis: RedisServer,
    pub(crate) openai: FakeOpenAi,
    pub(crate) twilio: FakeTwilioRest,
    pub(crate) toml: String,
}

impl Rig {
    pub(crate) async fn new(extra: &str) -> Rig {
        let redis = RedisServer::start();
        let openai = FakeOpenAi::start().await;
        let twilio = FakeTwilioRest::start(AUTH_TOKEN).await;
        let toml = pipeline_toml(&openai, &twilio.base_url, extra);
        Rig {
            redis,
            openai,
            twilio,
            toml,
        }
    }

    pub(crate) async fn server(&self) -> TestServer {
        let config = config(&self.toml);
        let env = env(&self.redis.url());
        let context = runtime(&config, &env);
        let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = TestServer::start(Setup {
            toml: Some(&self.toml),
            path: "text.toml",
            env: &env_refs,
            context: Some(context),
            ..Setup::default()
        })
        .await;
        self.twilio.deliver_to(server.addr);
        server
    }

    /// The model's next answer, `text`, held back until the returned
    /// `Notify` is told (so that it misses the webhook's wait).
    pub(crate) fn answer_when_released(&self, text: &str) -> Arc<Notify> {
        let release = Arc::new(Notify::new());
        let mut parts = vec![Part::WaitFor(Arc::clone(&release), "the webhook answered")];
        parts.extend(text_answer(text));
        self.openai.push_chat(Reply::Sse(parts));
        release
    }

    pub(crate) async fn say(&self, sid: &str, body: &str) -> (u16, String) {
        self.twilio
            .message(MESSAGING_URL, sid, (USER, AGENT), body, 0)
            .await
    }

    /// The stored transcript of the conversation open between USER and
    /// AGENT: (role, text) pairs.
    async fn transcript(&self, store: &Arc<dyn voxpipe::store::Store>) -> Vec<(String, String)> {
        let key = salted_key(Channel::WhatsApp, &[USER, AGENT]);
        let mut redis = self.redis.client().await;
        let id: String = redis
            .get(format!("{{text:active}}:conversation:{}", key.as_str()))
            .await
            .unwrap();
        store
            .turns(&id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.speaker().to_owned(), t.text))
            .collect()
    }
}

pub(crate) fn messages_of(twiml: &str) -> Vec<String> {
    twiml
        .split("<Message")
        .skip(1)
        .filter_map(|part| part.split_once('>')?.1.split_once("</Message>"))
        .map(|(m, _)| m.to_owned())
        .collect()
}

#[tokio::test]
async fn a_whatsapp_conversation_keeps_its_history_across_a_restart_and_retries_answer_once() {
    let rig = Rig::new("").await;
    let server = rig.server().await;
    rig.openai
        .push_chat(Reply::Sse(text_answer("Hello! How can I help?")));
    rig.openai
        .push_chat(Reply::Sse(text_answer("Apples are in stock.")));
    let (status, twiml) = rig.say("SM00000000000000000000000000000001", "Hi").await;
    assert_eq!(status, 200);
    assert_eq!(messages_of(&twiml), ["Hello! How can I help?"]);
    let (_, twiml) = rig
        .say("SM00000000000000000000000000000002", "Do you have apples?")
        .await;
    assert_eq!(messages_of(&twiml), ["Apples are in stock."]);
    server.shutdown(WAIT).await.unwrap();

    // A new server on the same Redis: the conversation goes on.
    let server = rig.server().await;
    // Twilio retries the second message: it was answered already.
    let (status, twiml) = rig
        .say("SM00000000000000000000000000000002", "Do you have apples?")
        .await;
    assert_eq!(status, 200);
    assert!(messages_of(&twiml).is_empty(), "{twiml}");
    rig.openai
        .push_chat(Reply::Sse(text_answer("Two euros a kilo.")));
    let (_, twiml) = rig
        .say("SM00000000000000000000000000000003", "How much?")
        .await;
    assert_eq!(messages_of(&twiml), ["Two euros a kilo."]);
    let chats = rig.openai.chat_requests();
    assert_eq!(chats.len(), 3, "one model request per new message");
    let contents: Vec<String> = chats[2]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        contents,
        [
            "You are a shop assistant.",
            "Hi",
            "Hello! How can I help?",
            "Do you have apples?",
            "Apples are in stock.",
            "How much?"
        ]
    );
    let config = config(&rig.toml);
    let store = Arc::clone(runtime(&config, &env(&rig.redis.url())).store());
    // The last answer's turns are written behind the reply.
    support::wait::eventually(WAIT, async || rig.transcript(&store).await.len() >= 6).await;
    let transcript = rig.transcript(&store).await;
    assert_eq!(transcript.len(), 6, "{transcript:?}");
    assert_eq!(
        transcript[5],
        ("assistant".into(), "Two euros a kilo.".into())
    );
    assert!(
        rig.twilio.messages().is_empty(),
        "every answer went by TwiML"
    );
    server.shutdown(WAIT).await.unwrap();
}

#[tokio::test]
async fn a_slow_answer_goes_out_through_the_messages_resource() {
    let rig = Rig::new("[text]\nreply_budget_secs = 0.2\n").await;
    let server = rig.server().await;
    let release = rig.answer_when_released("Sorry for the wait: yes.");
    let (status, twiml) = rig
        .say("SM00000000000000000000000000000011", "Are you open?")
        .await;
    assert_eq!(status, 200);
    assert!(messages_of(&twiml).is_empty(), "{twiml}");
    release.notify_one();
    let sent = rig.twilio.wait_messages(1, WAIT).await;
    assert_eq!(sent[0].body, "Sorry for the wait: yes.");
    assert_eq!(sent[0].to, USER);
    assert_eq!(sent[0].from, AGENT);
    server.shutdown(WAIT).await.unwrap();
}

#[tokio::test]
async fn an_answer_waits_out_twilio_being_down() {
    let rig = Rig::new("[text]\nreply_budget_secs = 0.2\n").await;
    let server = rig.server().await;
    let release = rig.answer_when_released("We open at nine.");
    rig.twilio.fail_next_messages(2);
    let (status, _) = rig
        .say("SM00000000000000000000000000000013", "When do you open?")
        .await;
    assert_eq!(status, 200);
    release.notify_one();
    // Two 503s (nothing created), then taken: sent once.
    let sent = rig.twilio.wait_messages(1, WAIT).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body, "We open at nine.");
    server.shutdown(WAIT).await.unwrap();
    assert_eq!(rig.twilio.messages().len(), 1);
}

#[tokio::test]
async fn an_answer_twilio_keeps_refusing_is_tried_four_times_then_given_up() {
    let rig = Rig::new("[text]\nreply_budget_secs = 0.2\n").await;
    let server = rig.server().await;
    let release = rig.answer_when_released("We open at nine.");
    rig.twilio.fail_next_messages(10);
    let (status, _) = rig
        .say("SM00000000000000000000000000000014", "When do you open?")
        .await;
    assert_eq!(status, 200);
    release.notify_one();
    // A graceful shutdown waits for the answer's tries to end.
    server.shutdown(WAIT).await.unwrap();
    assert_eq!(rig.twilio.refused_messages(), 4, "four tries, then none");
    assert!(rig.twilio.messages().is_empty());
}

#[tokio::test]
async fn a_graceful_shutdown_waits_for_an_answer_still_on_its_way() {
    let rig = Rig::new("[text]\nreply_budget_secs = 0.2\n").await;
    let server = rig.server().await;
    let release = Arc::new(Notify::new());
    let mut parts = vec![Part::WaitFor(
        Arc::clone(&release),
        "the server is stopping",
    )];
    parts.extend(text_answer("Yes, we deliver."));
    rig.openai.push_chat(Reply::Sse(parts));
    let (status, _) = rig
        .say("SM00000000000000000000000000000051", "Do you deliver?")
        .await;
    assert_eq!(status, 200, "answered empty: the answer goes by REST");
    let mut stopping = Box::pin(server.shutdown(WAIT));
    // Without the answer sent, the server does not stop (a server with
    // nothing to wait for stops in milliseconds).
    let early = tokio::time::timeout(Duration::from_millis(500), &mut stopping).await;
    assert!(early.is_err(), "stopped with an answer on its way");
    release.notify_one();
    stopping.await.unwrap();
    let sent = rig.twilio.messages();
    assert_eq!(sent.len(), 1, "sent before the server stopped");
    assert_eq!(sent[0].body, "Yes, we deliver.");
}

#[tokio::test]
async fn a_message_the_store_failed_to_answer_is_taken_again_when_twilio_retries_it() {
    let rig = Rig::new("").await;
    let server = rig.server().await;
    rig.openai.push_chat(Reply::Sse(text_answer("Hello!")));
    let (_, twiml) = rig.say("SM00000000000000000000000000000041", "Hi").await;
    assert_eq!(messages_of(&twiml), ["Hello!"]);
    let config = config(&rig.toml);
    let store = Arc::clone(runtime(&config, &env(&rig.redis.url())).store());
    support::wait::eventually(WAIT, async || rig.transcript(&store).await.len() >= 2).await;

    // The conversation's transcript cannot be read (a real Redis error:
    // its key holds the wrong type).
    let key = salted_key(Channel::WhatsApp, &[USER, AGENT]);
    let mut redis = rig.redis.client().await;
    let id: String = redis
        .get(format!("{{text:active}}:conversation:{}", key.as_str()))
        .await
        .unwrap();
    let turns = format!("call:{id}:interactions");
    let kept = format!("{turns}:kept");
    let () = redis.rename(&turns, &kept).await.unwrap();
    let () = redis.set(&turns, "not a list").await.unwrap();
    let sid = "SM00000000000000000000000000000042";
    let (status, _) = rig.say(sid, "Are you open today?").await;
    assert_eq!(status, 503, "not answered: Twilio is asked to retry");
    assert_eq!(
        rig.openai.chat_requests().len(),
        1,
        "the model was asked again"
    );

    // Redis is right again; Twilio retries the message: answered, once.
    let () = redis.del(&turns).await.unwrap();
    let () = redis.rename(&kept, &turns).await.unwrap();
    rig.openai
        .push_chat(Reply::Sse(text_answer("Yes, until six.")));
    let (status, twiml) = rig.say(sid, "Are you open today?").await;
    assert_eq!(status, 200);
    assert_eq!(messages_of(&twiml), ["Yes, until six."]);
    let (_, twiml) = rig.say(sid, "Are you open today?").await;
    assert!(messages_of(&twiml).is_empty(), "answered twice: {twiml}");
    support::wait::eventually(WAIT, async || rig.transcript(&store).await.len() >= 4).await;
    let transcript = rig.transcript(&store).await;
    assert_eq!(transcript[2].1, "Are you open today?");
    assert_eq!(transcript[3].1, "Yes, until six.");
    server.shutdown(WAIT).await.unwrap();
}

#[tokio::test]
async fn a_long_answer_goes_out_in_parts_of_at_most_1600_characters() {
    let rig = Rig::new("").await;
    let server = rig.server().await;
    let long = "lorem ipsum ".repeat(300);
    rig.openai.push_chat(Reply::Sse(text_answer(&long)));
    let (_, twiml) = rig
        .say("SM00000000000000000000000000000021", "Tell me everything")
        .await;
    assert!(messages_of(&twiml).is_empty(), "{twiml}");
    let sent = rig.twilio.wait_messages(3, WAIT).await;
    assert!(sent.iter().all(|m| m.body.chars().count() <= 1_600));
    let joined: Vec<&str> = sent.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(joined.join(" "), long.trim());
    server.shutdown(WAIT).await.unwrap();
}

#[tokio::test]
async fn bad_webhooks_are_refused_and_odd_messages_answered() {
    let rig = Rig::new("[text]\nmax_message_chars = 50\n").await;
    let server = rig.server().await;
    // Unsigned, and signed with the wrong token.
    let form = [
        ("MessageSid", "SM00000000000000000000000000000031"),
        ("From", USER),
        ("To", AGENT),
        ("Body", "hi"),
    ];
    assert_eq!(
        rig.twilio.post_signed(MESSAGING_URL, &form, Some("")).await,
        403
    );
    assert_eq!(
        rig.twilio
            .post_signed(MESSAGING_URL, &form, Some("bm90IGEgc2lnbmF0dXJl"))
            .await,
        403
    );
    // Empty: nothing to answer.
    let (status, twiml) = rig.say("SM00000000000000000000000000000032", "  ").await;
    assert_eq!(status, 200);
    assert!(messages_of(&twiml).is_empty());
    // Media only: a clear answer, no model.
    let (_, twiml) = rig
        .twilio
        .message(
            MESSAGING_URL,
            "SM00000000000000000000000000000033",
            (USER, AGENT),
            "",
            1,
        )
        .await;
    assert_eq!(
        messages_of(&twiml),
        ["Sorry, I can only read text messages. Please write your question."]
    );
    assert!(rig.openai.chat_requests().is_empty());
    // An opt-out keyword by SMS: Twilio answers it and blocks answers; no
    // model. (On WhatsApp, with no keyword filtering by default, "Stop"
    // may be an answer: only Advanced Opt-Out's `OptOutType` counts.)
    let (status, twiml) = rig
        .twilio
        .message(
            MESSAGING_URL,
            "SM00000000000000000000000000000036",
            ("+15551230001", "+15557650002"),
            " stop ",
            0,
        )
        .await;
    assert_eq!(status, 200);
    assert!(messages_of(&twiml).is_empty(), "{twiml}");
    assert!(
        rig.openai.chat_requests().is_empty(),
        "STOP reached the model"
    );
    // Absurdly long: cut, and the model is told.
    rig.openai.push_chat(Reply::Sse(text_answer("Noted.")));
    let (_, twiml) = rig
        .say("SM00000000000000000000000000000034", &"x".repeat(10_000))
        .await;
    assert_eq!(messages_of(&twiml), ["Noted."]);
    let chats = rig.openai.chat_requests();
    let last = chats[0]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let content = last["content"].as_str().unwrap();
    assert!(content.starts_with(&"x".repeat(50)));
    assert!(!content.contains(&"x".repeat(51)));
    assert!(content.contains("longer than 50 characters"));
    // The model down: a short apology, and the turn recorded.
    rig.openai.push_chat(Reply::error(
        400,
        "model unavailable",
        "invalid_request_error",
    ));
    let (_, twiml) = rig
        .say("SM00000000000000000000000000000035", "Still there?")
        .await;
    assert_eq!(
        messages_of(&twiml),
        ["Sorry, I can&apos;t answer right now. Please try again in a few minutes."]
    );
    let config = config(&rig.toml);
    let store = Arc::clone(runtime(&config, &env(&rig.redis.url())).store());
    // The apology is written behind the reply (the session's writer).
    support::wait::eventually(WAIT, async || rig.transcript(&store).await.len() >= 6).await;
    let transcript = rig.transcript(&store).await;
    let roles: Vec<&str> = transcript.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "user",
            "assistant",
            "user",
            "assistant"
        ],
        "{transcript:?}"
    );
    assert_eq!(transcript[4].1, "Still there?");
    assert!(transcript[5].1.starts_with("Sorry, I can't answer"));
    let key = salted_key(Channel::WhatsApp, &[USER, AGENT]);
    let mut redis = rig.redis.client().await;
    let id: String = redis
        .get(format!("{{text:active}}:conversation:{}", key.as_str()))
        .await
        .unwrap();
    let call = store.call(&id).await.unwrap().unwrap();
    assert_eq!(call.transport, "whatsapp");
    assert_eq!(call.status, CallStatus::Active);
    server.shutdown(WAIT).await.unwrap();
}

#[tokio::test]
async fn an_answer_sent_by_rest_arrives_before_the_conversations_next_answer() {
    let rig = Rig::new("[text]\nreply_budget_secs = 0.2\n").await;
    let server = rig.server().await;
    let release = rig.answer_when_released("First answer.");
    // The first answer's sending waits out two 503s (1 s, then 2 s).
    rig.twilio.fail_next_messages(2);
    let (status, _) = rig
        .say("SM00000000000000000000000000000051", "First?")
        .await;
    assert_eq!(status, 200);
    release.notify_one();
    assert!(support::wait::eventually(WAIT, async || rig.twilio.refused_messages() >= 1).await);
    // The second message comes while the first answer is on its way: its
    // answer, ready at once, waits for the first to be sent.
    rig.openai
        .push_chat(Reply::Sse(text_answer("Second answer.")));
    let (status, twiml) = rig
        .say("SM00000000000000000000000000000052", "Second?")
        .await;
    assert_eq!(status, 200);
    assert!(
        messages_of(&twiml).is_empty(),
        "overtook the first: {twiml}"
    );
    let sent = rig.twilio.wait_messages(2, WAIT).await;
    let bodies: Vec<&str> = sent.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["First answer.", "Second answer."]);
    server.shutdown(WAIT).await.unwrap();
}

const APOLOGY_XML: &str =
    "Sorry, I can&apos;t answer right now. Please try again in a few minutes.";

/// Posts an incoming message as anyone on the network could: unsigned.
async fn post_unsigned(server: &TestServer, sid: &str, body: &str) -> (u16, String) {
    let form = [
        ("MessageSid", sid),
        ("From", USER),
        ("To", AGENT),
        ("Body", body),
    ];
    let response = reqwest::Client::new()
        .post(server.url("/twilio/messaging"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn without_an_auth_token_unsigned_messages_are_refused_unless_taken_on_purpose() {
    let mut rig = Rig::new("").await;
    rig.toml = rig
        .toml
        .replace("auth_token_env = \"TWILIO_AUTH_TOKEN\"\n", "");
    let server = rig.server().await;
    // Anyone could write as the user and read their conversation's answer.
    let (status, _) = post_unsigned(&server, "SM00000000000000000000000000000061", "Hi").await;
    assert_eq!(status, 403);
    assert!(rig.openai.chat_requests().is_empty(), "the model was asked");
    let refused = r#"voxpipe_errors_total{kind="no_auth_token",source="twilio"}"#;
    assert_eq!(server.metric(refused).await, 1.0);
    server.shutdown(WAIT).await.unwrap();

    // Taken on purpose, to test locally.
    rig.toml = rig.toml.replace(
        "[transport.twilio]\n",
        "[transport.twilio]\nmessaging_signature = false\n",
    );
    let server = rig.server().await;
    rig.openai.push_chat(Reply::Sse(text_answer("Hello!")));
    let (status, twiml) = post_unsigned(&server, "SM00000000000000000000000000000062", "Hi").await;
    assert_eq!(status, 200, "{twiml}");
    assert_eq!(messages_of(&twiml), ["Hello!"]);
    server.shutdown(WAIT).await.unwrap();
}

#[tokio::test]
async fn past_the_text_bounds_a_message_gets_the_apology_and_is_answered_when_retried() {
    let mut rig = Rig::new("[text]\nreply_budget_secs = 0.2\nmax_messages_in_flight = 1\n").await;
    let server = rig.server().await;
    let release = rig.answer_when_released("First answer.");
    let (status, twiml) = rig
        .say("SM00000000000000000000000000000071", "First?")
        .await;
    assert_eq!(status, 200);
    assert!(messages_of(&twiml).is_empty(), "{twiml}");
    // Another user writes while the first answer is in flight: refused at
    // once, told so, the model not asked.
    let other = ("whatsapp:+15551230009", AGENT);
    let second = "SM00000000000000000000000000000072";
    let (status, twiml) = rig
        .twilio
        .message(MESSAGING_URL, second, other, "Second?", 0)
        .await;
    assert_eq!(status, 200);
    assert_eq!(messages_of(&twiml), [APOLOGY_XML]);
    let overloaded = r#"voxpipe_errors_total{kind="text_overloaded",source="twilio"}"#;
    assert_eq!(server.metric(overloaded).await, 1.0);
    release.notify_one();
    let sent = rig.twilio.wait_messages(1, WAIT).await;
    assert_eq!(sent[0].body, "First answer.");
    server.shutdown(WAIT).await.unwrap();

    // The refused message was not noted: Twilio's retry of it (or a replay
    // from its error log) is answered, by any server.
    rig.toml = rig
        .toml
        .replace("reply_budget_secs = 0.2", "reply_budget_secs = 10");
    let server = rig.server().await;
    rig.openai
        .push_chat(Reply::Sse(text_answer("Second answer.")));
    let (status, twiml) = rig
        .twilio
        .message(MESSAGING_URL, second, other, "Second?", 0)
        .await;
    assert_eq!(status, 200);
    assert_eq!(messages_of(&twiml), ["Second answer."]);
    assert_eq!(rig.openai.chat_requests().len(), 2);
    server.shutdown(WAIT).await.unwrap();
}

#[tokio::test]
async fn an_answer_with_emoji_is_cut_as_twilio_counts_and_every_part_is_taken() {
    let rig = Rig::new("").await;
    let server = rig.server().await;
    // 900 characters, 1,800 UTF-16 units: over one message.
    let answer = "🍎 ".repeat(600);
    rig.openai.push_chat(Reply::Sse(text_answer(&answer)));
    let (status, twiml) = rig
        .say("SM00000000000000000000000000000081", "Apples?")
        .await;
    assert_eq!(status, 200);
    assert!(
        messages_of(&twiml).is_empty(),
        "one message too long: {twiml}"
    );
    let sent = rig.twilio.wait_messages(2, WAIT).await;
    assert_eq!(rig.twilio.refused_messages(), 0);
    assert!(sent.iter().all(|m| m.body.encode_utf16().count() <= 1_600));
    let bodies: Vec<&str> = sent.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies.join(" "), answer.trim());
    server.shutdown(WAIT).await.unwrap();
}

#[tokio::test]
async fn help_and_opt_in_keywords_twilio_flagged_are_left_to_it() {
    let rig = Rig::new("").await;
    let server = rig.server().await;
    let sms = ("+15551230001", "+15557650002");
    for (n, (from_to, body, extra)) in [
        (sms, "HELP", Some("HELP")),
        (sms, "start", Some("START")),
        ((USER, AGENT), "ayuda", Some("HELP")),
        ((USER, AGENT), "START", Some("START")),
    ]
    .into_iter()
    .enumerate()
    {
        let sid = format!("SM{:032}", 90 + n);
        let extra: Vec<(&str, &str)> = extra.map(|kind| ("OptOutType", kind)).into_iter().collect();
        let (status, twiml) = rig
            .twilio
            .message_with(MESSAGING_URL, &sid, from_to, body, 0, &extra)
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(messages_of(&twiml).is_empty(), "{body}: {twiml}");
    }
    assert!(
        rig.openai.chat_requests().is_empty(),
        "a keyword reached the model"
    );
    // Unflagged, or inside a sentence, they are the user's: "yes" answers
    // the agent's question.
    for (n, body) in ["help me choose", "yes"].into_iter().enumerate() {
        rig.openai
            .push_chat(Reply::Sse(text_answer("Here to help.")));
        let (_, twiml) = rig
            .twilio
            .message(MESSAGING_URL, &format!("SM{:032}", 98 + n), sms, body, 0)
            .await;
        assert_eq!(messages_of(&twiml), ["Here to help."], "{body}");
    }
    server.shutdown(WAIT).await.unwrap();
}

#[tokio::test]
async fn the_reply_budget_counts_from_the_webhooks_arrival() {
    let rig = Rig::new("[text]\nreply_budget_secs = 0.5\n").await;
    let server = rig.server().await;
    rig.openai
        .push_chat(Reply::Sse(text_answer("Open until six.")));
    // The store is slow: its writes wait 1.5 s, longer than the budget.
    let mut redis = rig.redis.client().await;
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1_500)
        .arg("WRITE")
        .query_async(&mut redis)
        .await
        .unwrap();
    let (status, twiml) = rig
        .say("SM00000000000000000000000000000101", "Open today?")
        .await;
    assert_eq!(status, 200);
    // Past the budget when the store answered: Twilio is answered at once,
    // and the answer goes by REST.
    assert!(
        messages_of(&twiml).is_empty(),
        "answered late by TwiML: {twiml}"
    );
    let sent = rig.twilio.wait_messages(1, WAIT).await;
    assert_eq!(sent[0].body, "Open until six.");
    server.shutdown(WAIT).await.unwrap();
}
