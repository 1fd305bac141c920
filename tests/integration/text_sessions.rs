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
use voxpipe::store::{CallStatus, EndClaim, Outcome, TextEnd};
use voxpipe::text::{
    Channel, ConversationKey, Inbound, MAX_END_ATTEMPTS, TextConversations, TextEvent, text_path,
};

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

/// Where the ends tests keep their conversations: the embedded store in a
/// file (so a test can corrupt a record as another process would), or a
/// real Redis.
enum Kept {
    Memory(tempfile::TempDir),
    Redis(RedisServer),
}

impl Kept {
    fn memory() -> Self {
        Kept::Memory(tempfile::tempdir().unwrap())
    }

    fn log(&self) -> Option<std::path::PathBuf> {
        match self {
            Kept::Memory(dir) => Some(dir.path().join("context.jsonl")),
            Kept::Redis(_) => None,
        }
    }

    /// Two sweepers (two servers' `TextConversations`) over one store,
    /// with evaluation jobs queued when a call completes.
    fn sweepers(&self) -> [Arc<TextConversations>; 2] {
        let openai_free = "http://127.0.0.1:9";
        let mut toml = format!(
            "[pipeline]\nname = \"text\"\n\n[[processor]]\ntype = \"user_context\"\n\n\
             [[processor]]\ntype = \"llm\"\nprovider = \"openai\"\nbase_url = \"{openai_free}\"\nmodel = \"m\"\n\n\
             [[processor]]\ntype = \"assistant_context\"\n\n\
             [evaluator]\nbase_url = \"{openai_free}\"\nmodel = \"judge-1\"\n\n"
        );
        let env = match self {
            Kept::Memory(_) => {
                let log = self.log().unwrap();
                toml.push_str(&format!(
                    "[context]\nstore = \"memory\"\npath = {:?}\n",
                    log.display().to_string()
                ));
                Vec::new()
            }
            Kept::Redis(redis) => {
                toml.push_str("[context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\n");
                env(&redis.url())
            }
        };
        let config = config(&toml);
        let agent = runtime(&config, &env);
        [(), ()].map(|()| {
            Arc::new(
                TextConversations::new(
                    &config.processors,
                    config.session_setup("text"),
                    Arc::clone(&agent),
                    config.text.clone(),
                )
                .unwrap(),
            )
        })
    }

    /// Makes `call_id`'s record unreadable: every update of it fails.
    async fn break_call(&self, call_id: &str) {
        use redis::AsyncCommands as _;
        match self {
            Kept::Memory(_) => append_op(
                &self.log().unwrap(),
                serde_json::json!({"op": "set", "key": format!("call:{call_id}"), "value": "not a record"}),
            ),
            Kept::Redis(redis) => {
                let mut client = redis.client().await;
                let () = client
                    .rpush(format!("call:{call_id}"), "not a record")
                    .await
                    .unwrap();
            }
        }
    }

    /// Takes the unreadable record away again.
    async fn fix_call(&self, call_id: &str) {
        use redis::AsyncCommands as _;
        match self {
            Kept::Memory(_) => append_op(
                &self.log().unwrap(),
                serde_json::json!({"op": "del", "key": format!("call:{call_id}")}),
            ),
            Kept::Redis(redis) => {
                let mut client = redis.client().await;
                let () = client.del(format!("call:{call_id}")).await.unwrap();
            }
        }
    }
}

/// Appends `op` to the embedded store's log, as another process would.
fn append_op(log: &Path, op: serde_json::Value) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    writeln!(file, "{op}").unwrap();
}

/// The call ids of the evaluation jobs queued so far, each as often as it
/// was queued.
async fn evaluations_queued(conversations: &TextConversations) -> Vec<String> {
    let jobs = conversations
        .runtime()
        .store()
        .read_jobs("ends-test", 10_000, Duration::ZERO)
        .await
        .unwrap();
    let mut ids: Vec<String> = jobs
        .iter()
        .map(|job| {
            let job: serde_json::Value = serde_json::from_str(&job.payload).unwrap();
            job["call_id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids
}

/// The claim of a server that died at once: it holds nothing back.
fn lapsed() -> EndClaim {
    EndClaim {
        owner: "gone".into(),
        ttl_ms: 0,
    }
}

/// Ends noted as pending by a server that closed them and died before
/// recording them; two servers' sweeps then run at once.
async fn two_sweeps_at_once_record_each_end_once(kept: Kept) {
    const ENDS: usize = 100;
    let [a, b] = kept.sweepers();
    let store = Arc::clone(a.runtime().store());
    let mut ids = Vec::new();
    for n in 0..ENDS {
        let key = format!("chat:at-once-{n}");
        let id = format!("at-once-{n:02}");
        store
            .open_text_conversation(&key, &id, 1_000)
            .await
            .unwrap();
        let closed = store
            .close_text_conversation(&key, 1_000, "idle_timeout", 2_000, &lapsed())
            .await
            .unwrap();
        assert_eq!(closed.as_deref(), Some(id.as_str()));
        ids.push(id);
    }
    let ended = match kept {
        // The embedded store answers without waiting: the two sweeps run
        // on two threads, really at once.
        Kept::Memory(_) => {
            let start = Arc::new(std::sync::Barrier::new(2));
            let sweeps = [a, b].map(|sweeper| {
                let start = Arc::clone(&start);
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    start.wait();
                    runtime.block_on(sweeper.sweep(10_000)).unwrap()
                })
            });
            sweeps.into_iter().map(|s| s.join().unwrap()).sum::<usize>()
        }
        // Each sweep waits on Redis between its steps: as two servers'.
        Kept::Redis(_) => {
            let (a, b) = tokio::join!(a.sweep(10_000), b.sweep(10_000));
            a.unwrap() + b.unwrap()
        }
    };
    let [a, _] = kept.sweepers();
    assert_eq!(
        evaluations_queued(&a).await,
        ids,
        "each end's hooks queued once"
    );
    assert_eq!(ended, ENDS);
}

#[tokio::test]
async fn two_sweeps_at_once_record_each_end_once_in_memory() {
    two_sweeps_at_once_record_each_end_once(Kept::memory()).await;
}

#[tokio::test]
async fn two_sweeps_at_once_record_each_end_once_in_redis() {
    two_sweeps_at_once_record_each_end_once(Kept::Redis(RedisServer::start())).await;
}

/// A full batch of ends that always fail, and a newer end that failed
/// once: the newer one is recorded all the same.
async fn ends_that_always_fail_hold_back_no_newer_end(kept: Kept) {
    const BROKEN: usize = 100;
    let [sweeper, _] = kept.sweepers();
    let store = Arc::clone(sweeper.runtime().store());
    let idle_ms = sweeper.section().idle_timeout_secs.duration().as_millis() as u64;
    for n in 0..BROKEN {
        let id = format!("broken-{n:03}");
        store
            .open_text_conversation(&format!("chat:broken-{n}"), &id, 1_000)
            .await
            .unwrap();
        kept.break_call(&id).await;
    }
    let t1 = 1_000 + idle_ms;
    assert_eq!(sweeper.sweep(t1).await.unwrap(), 0, "every end fails");
    store
        .open_text_conversation("chat:late", "late", t1)
        .await
        .unwrap();
    kept.break_call("late").await;
    let t2 = t1 + idle_ms;
    assert_eq!(sweeper.sweep(t2).await.unwrap(), 0, "every end fails");
    // The late end's failure was passing; the others' is not.
    kept.fix_call("late").await;
    let mut ended = 0;
    for step in 1..=4 {
        ended += sweeper.sweep(t2 + step * 10_000).await.unwrap();
    }
    assert_eq!(ended, 1, "the late end is recorded");
    assert_eq!(evaluations_queued(&sweeper).await, ["late"]);

    // The broken ends are tried until their attempts run out, then set
    // aside: listed, no longer pending, no longer tried.
    let mut now = t2 + 40_000;
    let mut sweeps = 0;
    while !store
        .pending_text_ends(u64::MAX, 1)
        .await
        .unwrap()
        .is_empty()
    {
        now += 3_600_000;
        assert_eq!(sweeper.sweep(now).await.unwrap(), 0);
        sweeps += 1;
        assert!(sweeps <= MAX_END_ATTEMPTS, "set aside after its attempts");
    }
    let set_aside = store.set_aside_text_ends(1_000).await.unwrap();
    assert_eq!(set_aside.len(), BROKEN);
    assert!(
        set_aside
            .iter()
            .all(|end| end.attempts == MAX_END_ATTEMPTS && end.at_ms == t1),
        "{set_aside:?}"
    );
    assert_eq!(sweeper.sweep(now + 3_600_000).await.unwrap(), 0);
    assert!(evaluations_queued(&sweeper).await.is_empty());
    let metrics = sweeper.render_metrics();
    for counted in [
        "voxpipe_text_ends_total{result=\"recorded\"} 1",
        "voxpipe_text_ends_total{result=\"set_aside\"} 100",
    ] {
        assert!(metrics.contains(counted), "{metrics}");
    }
}

#[tokio::test]
async fn ends_that_always_fail_hold_back_no_newer_end_in_memory() {
    ends_that_always_fail_hold_back_no_newer_end(Kept::memory()).await;
}

#[tokio::test]
async fn ends_that_always_fail_hold_back_no_newer_end_in_redis() {
    ends_that_always_fail_hold_back_no_newer_end(Kept::Redis(RedisServer::start())).await;
}

/// The claims on ends, as a store keeps them: one holder at a time, only
/// the holder reschedules, a lapsed claim is taken over, a recorded end is
/// claimed by no one.
async fn claims_on_ends_hold_one_at_a_time(kept: Kept) {
    let [sweeper, _] = kept.sweepers();
    let store = Arc::clone(sweeper.runtime().store());
    let claim = |owner: &str| EndClaim {
        owner: owner.to_owned(),
        ttl_ms: 60_000,
    };
    let mut ends = Vec::new();
    for (call, at_ms) in [("c1", 100), ("c2", 500), ("c3", 100)] {
        let key = format!("chat:{call}");
        store.open_text_conversation(&key, call, 0).await.unwrap();
        store
            .close_text_conversation(&key, 0, "idle_timeout", at_ms, &lapsed())
            .await
            .unwrap();
        ends.push(untried_end(call, at_ms));
    }
    let [end, early, other] = ends.try_into().unwrap();
    assert_eq!(
        store.pending_text_ends(100, 10).await.unwrap(),
        [end.clone(), other.clone()]
    );
    assert!(store.claim_text_end(&end, &claim("a"), 100).await.unwrap());
    assert!(!store.claim_text_end(&end, &claim("b"), 100).await.unwrap());
    assert!(
        !store
            .claim_text_end(&early, &claim("b"), 499)
            .await
            .unwrap()
    );
    let failed = TextEnd {
        attempts: 1,
        ..end.clone()
    };
    assert!(
        !store
            .text_end_failed(&failed, "b", Some(200))
            .await
            .unwrap()
    );
    assert!(
        store
            .text_end_failed(&failed, "a", Some(200))
            .await
            .unwrap()
    );
    assert_eq!(
        store.pending_text_ends(199, 10).await.unwrap(),
        std::slice::from_ref(&other)
    );
    assert_eq!(
        store.pending_text_ends(200, 10).await.unwrap(),
        [other.clone(), failed.clone()]
    );
    assert!(
        store
            .claim_text_end(&failed, &claim("b"), 200)
            .await
            .unwrap()
    );
    store.text_end_recorded(&failed, "b").await.unwrap();
    assert!(
        !store
            .claim_text_end(&failed, &claim("c"), u64::MAX)
            .await
            .unwrap()
    );
    // A lapsed claim is taken over.
    assert!(store.claim_text_end(&other, &lapsed(), 100).await.unwrap());
    assert!(
        store
            .claim_text_end(&other, &claim("d"), 100)
            .await
            .unwrap()
    );
    let last = TextEnd {
        attempts: MAX_END_ATTEMPTS,
        ..other.clone()
    };
    assert!(store.text_end_failed(&last, "d", None).await.unwrap());
    assert_eq!(
        store.pending_text_ends(u64::MAX, 10).await.unwrap(),
        [early]
    );
    assert_eq!(store.set_aside_text_ends(10).await.unwrap(), [last]);
}

/// A pending end as the store lists it before any attempt.
fn untried_end(call: &str, at_ms: u64) -> TextEnd {
    TextEnd {
        call_id: call.to_owned(),
        reason: "idle_timeout".to_owned(),
        at_ms,
        attempts: 0,
    }
}

#[tokio::test]
async fn claims_on_ends_hold_one_at_a_time_in_memory() {
    claims_on_ends_hold_one_at_a_time(Kept::memory()).await;
}

#[tokio::test]
async fn claims_on_ends_hold_one_at_a_time_in_redis() {
    claims_on_ends_hold_one_at_a_time(Kept::Redis(RedisServer::start())).await;
}

/// An attempt that outlived its claim: its failure still counts, and its
/// claim, lapsed, is let go when the end is recorded. The claims left in
/// the store, when it can tell.
async fn a_lapsed_claims_attempt_still_counts(kept: &Kept) {
    let [sweeper, _] = kept.sweepers();
    let store = Arc::clone(sweeper.runtime().store());
    store
        .open_text_conversation("chat:c9", "c9", 0)
        .await
        .unwrap();
    store
        .close_text_conversation("chat:c9", 0, "idle_timeout", 100, &lapsed())
        .await
        .unwrap();
    let end = untried_end("c9", 100);
    let failed = TextEnd {
        attempts: 1,
        ..end.clone()
    };
    assert!(
        store
            .text_end_failed(&failed, "gone", Some(200))
            .await
            .unwrap(),
        "the attempt counts"
    );
    assert!(store.pending_text_ends(199, 10).await.unwrap().is_empty());
    assert_eq!(
        store.pending_text_ends(200, 10).await.unwrap(),
        std::slice::from_ref(&failed)
    );
    // Another's claim that holds: that attempt decides.
    let live = EndClaim {
        owner: "live".to_owned(),
        ttl_ms: 60_000,
    };
    assert!(store.claim_text_end(&failed, &live, 200).await.unwrap());
    let again = TextEnd {
        attempts: 2,
        ..end.clone()
    };
    assert!(
        !store
            .text_end_failed(&again, "gone", Some(300))
            .await
            .unwrap()
    );
    assert!(
        store
            .text_end_failed(&again, "live", Some(300))
            .await
            .unwrap()
    );
    // Claimed again, lapsing at once, then recorded: the claim is gone.
    assert!(store.claim_text_end(&again, &lapsed(), 300).await.unwrap());
    store.text_end_recorded(&again, "gone").await.unwrap();
    assert!(
        store
            .pending_text_ends(u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_lapsed_claims_attempt_still_counts_in_memory() {
    a_lapsed_claims_attempt_still_counts(&Kept::memory()).await;
}

#[tokio::test]
async fn a_lapsed_claims_attempt_still_counts_and_its_claim_is_let_go_in_redis() {
    let kept = Kept::Redis(RedisServer::start());
    a_lapsed_claims_attempt_still_counts(&kept).await;
    let Kept::Redis(redis) = &kept else {
        unreachable!()
    };
    let mut client = redis.client().await;
    let claims: i64 = redis::cmd("HLEN")
        .arg("{text:active}:ending:claims")
        .query_async(&mut client)
        .await
        .unwrap();
    assert_eq!(claims, 0, "a lapsed claim left behind");
}
