//! Text sessions: a pipeline's text path serving long-lived conversations,
//! kept in a real Redis, ended and evaluated when idle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use support::fake::openai::{
    FakeOpenAi, Part, Reply, finish_chunk, text_answer, text_chunk, tool_chunk, verdict,
};
use support::redis_server::RedisServer;
use support::text::{config, env, pipeline_toml, runtime};
use support::wait::eventually;
use voxpipe::pipeline_file::load_pipeline;
use voxpipe::processors::ProcessorRegistry;
use voxpipe::store::{CallStatus, Outcome};
use voxpipe::text::{Channel, ConversationKey, Inbound, TextConversations, TextEvent, text_path};

const WAIT: Duration = Duration::from_secs(20);

fn inbound(key: &ConversationKey, text: &str) -> Inbound {
    Inbound {
        key: key.clone(),
        text: text.to_owned(),
        media: 0,
        parameters: [("channel".to_owned(), "chat".to_owned())].into(),
    }
}

#[test]
fn a_text_only_pipeline_checks_and_a_voice_pipeline_serves_text_without_its_audio() {
    let registry = ProcessorRegistry::builtin();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = load_pipeline(&root.join("pipelines/text_agent.toml"), &[], &registry).unwrap();
    let names = |config: &voxpipe::pipeline_file::PipelineConfig| -> Vec<String> {
        text_path(&config.processors)
            .into_iter()
            .map(|p| p.type_name)
            .collect()
    };
    assert_eq!(names(&text), ["user_context", "llm", "assistant_context"]);
    let voice = load_pipeline(&root.join("pipelines/agent.toml"), &[], &registry).unwrap();
    assert_eq!(names(&voice), ["user_context", "llm", "assistant_context"]);
    let parrot = load_pipeline(&root.join("pipelines/parrot.toml"), &[], &registry).unwrap();
    assert!(text_path(&parrot.processors).is_empty());
}

#[tokio::test]
async fn an_idle_conversation_ends_and_is_evaluated_and_the_next_message_starts_afresh() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::start().await;
    let judge = FakeOpenAi::judge().await;
    let extra = format!(
        "[text]\nidle_timeout_secs = 0.3\n\n[evaluator]\nbase_url = \"{}\"\nmodel = \"judge-1\"\n",
        judge.base_url
    );
    let toml = pipeline_toml(&openai, "http://127.0.0.1:9", &extra);
    let config = config(&toml);
    let agent = runtime(&config, &env(&redis.url()));
    let conversations = Arc::new(
        TextConversations::new(
            &config.processors,
            config.session_setup("text"),
            Arc::clone(&agent),
            config.text.clone(),
        )
        .unwrap(),
    );
    let key = ConversationKey::new(Channel::Chat, &["idle-test"]);
    openai.push_chat(Reply::Sse(text_answer("Hello there.")));
    openai.push_chat(Reply::Sse(text_answer("Bye.")));
    let first = conversations
        .message(inbound(&key, "Hi"), None)
        .await
        .unwrap();
    let again = conversations
        .message(inbound(&key, "Bye"), None)
        .await
        .unwrap();
    assert_eq!(first.call_id, again.call_id, "one conversation");
    assert_eq!(again.text, "Bye.");

    judge.push_chat(verdict("success", 0.9, &["Greet warmly"]));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = {
        let stopped = stopped.clone();
        move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        }
    };
    let sweeper = tokio::spawn({
        let conversations = Arc::clone(&conversations);
        let shutdown = shutdown.clone();
        async move { conversations.run_sweeper(shutdown()).await }
    });
    let background = tokio::spawn({
        let agent = Arc::clone(&agent);
        async move { agent.run_background(shutdown().shared()).await.unwrap() }
    });
    judge
        .wait_for_requests("/v1/chat/completions", 1, WAIT)
        .await;
    let store = Arc::clone(agent.store());
    let id = first.call_id.clone();
    assert!(
        eventually(WAIT, async || {
            store
                .call(&id)
                .await
                .unwrap()
                .is_some_and(|c| c.outcome.is_some())
        })
        .await
    );
    let call = store.call(&first.call_id).await.unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.end_reason.as_deref(), Some("idle_timeout"));
    assert_eq!(call.outcome, Some(Outcome::Success));
    let judged = judge.chat_requests();
    let transcript = judged[0].to_string();
    assert!(transcript.contains("Hello there.") && transcript.contains("Bye"));
    assert_eq!(store.turns(&first.call_id).await.unwrap().len(), 4);
    // Nothing stays in memory for a conversation at rest.
    conversations.sweep(u64::MAX).await.unwrap();
    assert_eq!(conversations.in_memory(), 0);

    // The next message opens a new conversation, with no history.
    openai.push_chat(Reply::Sse(text_answer("Welcome back.")));
    let next = conversations
        .message(inbound(&key, "Hello again"), None)
        .await
        .unwrap();
    assert_ne!(next.call_id, first.call_id);
    let last = openai.chat_requests().pop().unwrap();
    assert_eq!(last["messages"].as_array().unwrap().len(), 2, "{last}");
    let _ = stop.send(true);
    sweeper.await.unwrap();
    background.await.unwrap();
}

/// The conversations of `toml` over `redis`, with no sweeper.
fn conversations_of(toml: &str, redis: &RedisServer) -> TextConversations {
    let config = config(toml);
    let agent = runtime(&config, &env(&redis.url()));
    TextConversations::new(
        &config.processors,
        config.session_setup("text"),
        agent,
        config.text.clone(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_long_conversation_sends_the_model_only_its_latest_messages() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::start().await;
    let toml = pipeline_toml(
        &openai,
        "http://127.0.0.1:9",
        "[text]\nhistory_max_messages = 4\n",
    );
    let conversations = conversations_of(&toml, &redis);
    let key = ConversationKey::new(Channel::Chat, &["long-talk"]);
    for n in 1..=4 {
        openai.push_chat(Reply::Sse(text_answer(&format!("answer {n}"))));
        conversations
            .message(inbound(&key, &format!("question {n}")), None)
            .await
            .unwrap();
    }
    let last = openai.chat_requests().pop().unwrap();
    let sent: Vec<(String, String)> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("system", "You are a shop assistant."),
        ("user", "question 2"),
        ("assistant", "answer 2"),
        ("user", "question 3"),
        ("assistant", "answer 3"),
        ("user", "question 4"),
    ];
    assert_eq!(sent.len(), expected.len(), "{sent:#?}");
    for ((role, content), (want_role, want)) in sent.iter().zip(expected) {
        assert_eq!(role, want_role, "{sent:#?}");
        assert!(content.starts_with(want), "{sent:#?}");
    }
}

#[tokio::test]
async fn an_answer_failing_after_its_first_words_is_a_failure_with_the_apology() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::start().await;
    let toml = pipeline_toml(&openai, "http://127.0.0.1:9", "");
    let conversations = conversations_of(&toml, &redis);
    let key = ConversationKey::new(Channel::Chat, &["cut-off"]);
    openai.push_chat(Reply::Sse(vec![
        Part::Data(text_chunk("Let me check that for you.")),
        Part::Data(tool_chunk(
            0,
            Some("call_a"),
            Some("price"),
            r#"{"item":"apples"}"#,
        )),
        Part::Data(finish_chunk("tool_calls")),
        Part::Data("[DONE]".into()),
    ]));
    openai.push_tool(Reply::Json(serde_json::json!({"price": "2 EUR/kg"})));
    openai.push_chat(Reply::error(
        400,
        "context too long",
        "invalid_request_error",
    ));
    let reply = conversations
        .message(inbound(&key, "How much are apples?"), None)
        .await
        .unwrap();
    let apology = conversations.section().apology.clone();
    assert!(reply.failed, "{reply:?}");
    assert!(
        reply.text.starts_with("Let me check that for you."),
        "{reply:?}"
    );
    assert!(reply.text.ends_with(&apology), "{reply:?}");
    assert_eq!(openai.chat_requests().len(), 2);
    // Stored as sent: the words said, then the apology.
    let turns = conversations
        .runtime()
        .store()
        .turns(&reply.call_id)
        .await
        .unwrap();
    let said: Vec<&str> = turns
        .iter()
        .filter(|t| t.role == voxpipe::conversation::Role::Assistant)
        .map(|t| t.text.as_str())
        .collect();
    assert_eq!(said.last(), Some(&apology.as_str()), "{said:?}");
    assert!(said.iter().any(|t| t.contains("Let me check")), "{said:?}");
}

#[tokio::test]
async fn a_malformed_event_after_a_complete_answer_is_no_failure_and_no_apology() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::start().await;
    let toml = pipeline_toml(&openai, "http://127.0.0.1:9", "");
    let conversations = conversations_of(&toml, &redis);
    let key = ConversationKey::new(Channel::Chat, &["skipped-event"]);
    // The answer is whole; only its last event before `[DONE]` is bad:
    // reported and skipped, the response does not fail. The bad event is
    // sent once the answer's text has left the text path, so the error
    // surely comes after it.
    let answered = Arc::new(tokio::sync::Notify::new());
    openai.push_chat(Reply::Sse(vec![
        Part::Data(text_chunk("Apples are 2 EUR a kilo.")),
        Part::Data(finish_chunk("stop")),
        Part::WaitFor(Arc::clone(&answered), "the answer's text"),
        Part::Data("{\"choices\": [ this is not json".into()),
        Part::Data("[DONE]".into()),
    ]));
    let (events, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let message = conversations.message(inbound(&key, "How much are apples?"), Some(events));
    let watch = async {
        while let Some(event) = heard.recv().await {
            if matches!(event, TextEvent::Delta(_)) {
                answered.notify_one();
            }
        }
    };
    let (reply, ()) = tokio::join!(message, watch);
    let reply = reply.unwrap();
    let apology = conversations.section().apology.clone();
    assert!(!reply.failed, "{reply:?}");
    assert_eq!(reply.text, "Apples are 2 EUR a kilo.");
    let turns = conversations
        .runtime()
        .store()
        .turns(&reply.call_id)
        .await
        .unwrap();
    assert!(
        turns.iter().all(|t| t.text != apology),
        "{:?}",
        turns.iter().map(|t| &t.text).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn media_with_a_caption_is_noted_for_the_model() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::start().await;
    let toml = pipeline_toml(&openai, "http://127.0.0.1:9", "");
    let conversations = conversations_of(&toml, &redis);
    let key = ConversationKey::new(Channel::Chat, &["captioned"]);
    openai.push_chat(Reply::Sse(text_answer("A nice lamp.")));
    let mut message = inbound(&key, "What is this?");
    message.media = 2;
    conversations.message(message, None).await.unwrap();
    let request = openai.chat_requests().pop().unwrap();
    let messages = request["messages"].as_array().unwrap();
    let user = messages.last().unwrap();
    assert_eq!(user["role"], "user");
    assert_eq!(
        user["content"],
        "What is this?\n\n[2 media items attached, not shown]"
    );
}

#[tokio::test]
async fn an_end_the_store_fails_midway_is_recorded_by_the_next_sweep_and_others_end_meanwhile() {
    use redis::AsyncCommands as _;
    let redis = RedisServer::start();
    let openai = FakeOpenAi::start().await;
    let toml = pipeline_toml(&openai, "http://127.0.0.1:9", "");
    let conversations = conversations_of(&toml, &redis);
    let store = Arc::clone(conversations.runtime().store());
    let mut ids = Vec::new();
    for who in ["first", "second"] {
        let key = ConversationKey::new(Channel::Chat, &[who]);
        let reply = conversations
            .message(inbound(&key, "Hi"), None)
            .await
            .unwrap();
        ids.push(reply.call_id);
    }
    // The first call's record cannot be updated (a real Redis error: its
    // key holds the wrong type).
    let mut client = redis.client().await;
    let record = format!("call:{}", ids[0]);
    let kept = format!("{record}:kept");
    let () = client.rename(&record, &kept).await.unwrap();
    let () = client.rpush(&record, "not a record").await.unwrap();
    // The sweep logs the failure and ends the other conversation.
    assert_eq!(conversations.sweep(u64::MAX).await.unwrap(), 1);
    let second = store.call(&ids[1]).await.unwrap().unwrap();
    assert_eq!(second.status, CallStatus::Completed);

    // Redis is right again: the next sweep records the first end.
    let () = client.del(&record).await.unwrap();
    let () = client.rename(&kept, &record).await.unwrap();
    assert_eq!(conversations.sweep(u64::MAX).await.unwrap(), 1);
    let first = store.call(&ids[0]).await.unwrap().unwrap();
    assert_eq!(first.status, CallStatus::Completed);
    assert_eq!(first.end_reason.as_deref(), Some("idle_timeout"));
    assert_eq!(conversations.sweep(u64::MAX).await.unwrap(), 0);
}

#[tokio::test]
async fn messages_are_answered_in_the_order_they_were_admitted_whichever_starts_first() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::start().await;
    let toml = pipeline_toml(&openai, "http://127.0.0.1:9", "");
    let conversations = conversations_of(&toml, &redis);
    let key = ConversationKey::new(Channel::Chat, &["back-to-back"]);
    openai.push_chat(Reply::Sse(text_answer("answer to the first")));
    openai.push_chat(Reply::Sse(text_answer("answer to the second")));
    // Two messages arrive back to back; the first's handler is the slower
    // to go on (its store check took longer): the second starts answering
    // first.
    let first = conversations.admit(inbound(&key, "first")).unwrap();
    let second = conversations.admit(inbound(&key, "second")).unwrap();
    let mut second = Box::pin(conversations.message_in_turn(second, None));
    assert!(
        (&mut second).now_or_never().is_none(),
        "the second is answered before the first"
    );
    let (reply, turn) = conversations.message_in_turn(first, None).await.unwrap();
    assert_eq!(reply.text, "answer to the first");
    drop(turn);
    let (reply, _turn) = second.await.unwrap();
    assert_eq!(reply.text, "answer to the second");
    let requests = openai.chat_requests();
    let contents = |n: usize| -> Vec<String> {
        requests[n]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(contents(0).last().unwrap(), "first");
    assert_eq!(
        contents(1)[1..],
        ["first", "answer to the first", "second"],
        "the second reads the first's turns"
    );
}

#[tokio::test]
async fn a_conversation_ended_while_its_message_is_answered_is_not_reopened_under_its_id() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::start().await;
    let toml = pipeline_toml(&openai, "http://127.0.0.1:9", "");
    let conversations = conversations_of(&toml, &redis);
    let store = Arc::clone(conversations.runtime().store());
    let key = ConversationKey::new(Channel::Chat, &["ended-while-answering"]);
    let release = Arc::new(tokio::sync::Notify::new());
    let mut held = vec![Part::WaitFor(
        Arc::clone(&release),
        "the conversation ended",
    )];
    held.extend(text_answer("Still here."));
    openai.push_chat(Reply::Sse(held));
    let message = conversations.message(inbound(&key, "Hello?"), None);
    // The idle sweep ends the conversation while the model answers.
    let end_meanwhile = async {
        openai.wait_for_requests("chat/completions", 1, WAIT).await;
        assert!(conversations.finish(&key, "idle_timeout").await.unwrap());
        release.notify_one();
    };
    let (reply, ()) = tokio::join!(message, end_meanwhile);
    let ended = reply.unwrap().call_id;
    let open = store.idle_text_conversations(u64::MAX, 10).await.unwrap();
    assert!(
        !open.contains(&key.as_str().to_owned()),
        "reopened under its ended id {ended}: {open:?}"
    );
    // The next message starts a new conversation.
    openai.push_chat(Reply::Sse(text_answer("Hello again.")));
    let next = conversations
        .message(inbound(&key, "Anyone?"), None)
        .await
        .unwrap();
    assert_ne!(next.call_id, ended);
    let call = store.call(&ended).await.unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Completed);
}
