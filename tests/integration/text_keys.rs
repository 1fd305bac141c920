//! Text conversations' keys, over the embedded store and a real Redis:
//! keyed with the deployment's phone-hash salt (so the store holds no
//! hash of the participants that anyone can recompute), different for
//! two salts, and unsalted without a salt. A conversation opened under
//! the unsalted key before the upgrade continues after it: its next
//! message moves it to the keyed key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::sync::Arc;

use support::fake::openai::{FakeOpenAi, Reply, text_answer};
use support::redis_server::RedisServer;
use support::text::{config, runtime};
use voxpipe::store::{CallStatus, EndClaim, PhoneHasher, Store};
use voxpipe::text::{Channel, ConversationKey, Inbound, TextConversations};

const USER: &str = "+15551230001";
const AGENT: &str = "+15557654321";

/// Where a test's conversations are kept: the embedded store in a file,
/// or a real Redis.
enum Kept {
    Memory(tempfile::TempDir),
    Redis(RedisServer),
}

impl Kept {
    fn both() -> [Kept; 2] {
        [
            Kept::Memory(tempfile::tempdir().unwrap()),
            Kept::Redis(RedisServer::start()),
        ]
    }

    fn log(&self) -> Option<std::path::PathBuf> {
        match self {
            Kept::Memory(dir) => Some(dir.path().join("context.jsonl")),
            Kept::Redis(_) => None,
        }
    }

    /// A deployment's text conversations over this store, answered by
    /// `openai`, its phone-hash salt `salt` (as its Twilio auth token;
    /// `None`: no salt at all).
    fn deployment(&self, openai: &FakeOpenAi, salt: Option<&str>) -> TextConversations {
        let mut toml = format!(
            "[pipeline]\nname = \"text\"\n\n[[processor]]\ntype = \"user_context\"\n\n\
             [[processor]]\ntype = \"llm\"\nprovider = \"openai\"\nbase_url = \"{}\"\nmodel = \"m\"\n\
             system_prompt = \"You are a shop assistant.\"\nconnection = {{ max_retries = 0 }}\n\n\
             [[processor]]\ntype = \"assistant_context\"\n\n",
            openai.base_url
        );
        let mut env = Vec::new();
        match self {
            Kept::Memory(_) => {
                let log = self.log().unwrap().display().to_string();
                toml.push_str(&format!(
                    "[context]\nstore = \"memory\"\npath = {log:?}\n\n"
                ));
            }
            Kept::Redis(redis) => {
                toml.push_str("[context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\n\n");
                env.push(("TEST_REDIS", redis.url()));
            }
        }
        if let Some(salt) = salt {
            toml.push_str("[transport.twilio]\nauth_token_env = \"TWILIO_AUTH_TOKEN\"\n");
            env.push(("TWILIO_AUTH_TOKEN", salt.to_owned()));
        }
        let config = config(&toml);
        TextConversations::new(
            &config.processors,
            config.session_setup("text"),
            runtime(&config, &env),
            config.text.clone(),
        )
        .unwrap()
    }

    /// Every key name the store holds, and the members of `text:active`
    /// (the keys of open conversations), as one text; for the embedded
    /// store, its whole log.
    async fn everything(&self) -> String {
        match self {
            Kept::Memory(_) => std::fs::read_to_string(self.log().unwrap()).unwrap(),
            Kept::Redis(redis) => {
                let mut client = redis.client().await;
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg("*")
                    .query_async(&mut client)
                    .await
                    .unwrap();
                let members: Vec<String> = redis::cmd("ZRANGE")
                    .arg("text:active")
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut client)
                    .await
                    .unwrap();
                format!("{keys:?} {members:?}")
            }
        }
    }
}

impl std::fmt::Display for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kept::Memory(_) => "memory",
            Kept::Redis(_) => "redis",
        })
    }
}

/// A message from USER to AGENT by SMS, keyed as `conversations` keys it.
fn sms(conversations: &TextConversations, text: &str) -> Inbound {
    Inbound {
        key: conversations.key(Channel::Sms, &[USER, AGENT]),
        text: text.to_owned(),
        media: 0,
        parameters: [("channel".to_owned(), "sms".to_owned())].into(),
    }
}

/// The hash part of a `{channel}:{hash}` key.
fn hash_of(key: &str) -> &str {
    key.split_once(':').unwrap().1
}

/// The keys of the conversations open in `store`.
async fn open_keys(store: &Arc<dyn Store>) -> Vec<String> {
    let mut keys = store.idle_text_conversations(u64::MAX, 100).await.unwrap();
    keys.sort();
    keys
}

#[tokio::test]
async fn a_salted_deployment_keeps_no_unsalted_hash_of_the_participants() {
    for kept in Kept::both() {
        let openai = FakeOpenAi::start().await;
        let conversations = kept.deployment(&openai, Some("pepper"));
        openai.push_chat(Reply::Sse(text_answer("Hello!")));
        conversations
            .message(sms(&conversations, "Hi"), None)
            .await
            .unwrap();

        let unsalted = ConversationKey::new(Channel::Sms, &[USER, AGENT]);
        let salted = ConversationKey::keyed(
            Channel::Sms,
            &[USER, AGENT],
            Some(&PhoneHasher::new(b"pepper")),
        );
        assert_ne!(salted.as_str(), unsalted.as_str(), "{kept}");
        let store = conversations.runtime().store();
        assert_eq!(open_keys(store).await, [salted.as_str()], "{kept}");
        let everything = kept.everything().await;
        assert!(everything.contains(hash_of(salted.as_str())), "{kept}");
        assert!(
            !everything.contains(hash_of(unsalted.as_str())),
            "{kept}: the unsalted hash is in the store"
        );
    }
}

#[tokio::test]
async fn two_deployments_with_different_salts_key_the_same_participants_apart() {
    for kept in Kept::both() {
        let openai = FakeOpenAi::start().await;
        let first = kept.deployment(&openai, Some("salt-of-a"));
        let second = kept.deployment(&openai, Some("salt-of-b"));
        let (a, b) = (sms(&first, "Hi"), sms(&second, "Hi"));
        assert_ne!(a.key.as_str(), b.key.as_str(), "{kept}");
        openai.push_chat(Reply::Sse(text_answer("Hello from a.")));
        openai.push_chat(Reply::Sse(text_answer("Hello from b.")));
        let in_a = first.message(a.clone(), None).await.unwrap();
        let in_b = second.message(b.clone(), None).await.unwrap();
        assert_ne!(in_a.call_id, in_b.call_id, "{kept}");
        let mut expected = vec![a.key.as_str().to_owned(), b.key.as_str().to_owned()];
        expected.sort();
        assert_eq!(open_keys(first.runtime().store()).await, expected, "{kept}");
        let unsalted = ConversationKey::new(Channel::Sms, &[USER, AGENT]);
        assert!(
            !expected.iter().any(|key| key == unsalted.as_str()),
            "{kept}"
        );
    }
}

#[tokio::test]
async fn a_conversation_opened_before_salting_continues_after_the_upgrade() {
    for kept in Kept::both() {
        let openai = FakeOpenAi::start().await;
        // Before: no salt, the unsalted key (today's behaviour without one).
        let before = kept.deployment(&openai, None);
        let unsalted = ConversationKey::new(Channel::Sms, &[USER, AGENT]);
        assert_eq!(sms(&before, "Hi").key, unsalted, "{kept}");
        openai.push_chat(Reply::Sse(text_answer("Hello!")));
        let first = before.message(sms(&before, "Hi"), None).await.unwrap();
        let store = Arc::clone(before.runtime().store());
        assert_eq!(open_keys(&store).await, [unsalted.as_str()], "{kept}");
        drop(before);

        // After: salted (the server restarted with a salt).
        let after = kept.deployment(&openai, Some("pepper"));
        let inbound = sms(&after, "Are you open today?");
        assert_eq!(inbound.key.legacy(), Some(unsalted.as_str()), "{kept}");
        openai.push_chat(Reply::Sse(text_answer("Until six.")));
        let next = after.message(inbound.clone(), None).await.unwrap();
        assert_eq!(next.call_id, first.call_id, "{kept}: the same conversation");
        // The model read the conversation so far.
        let sent = openai.chat_requests().pop().unwrap();
        let said: Vec<&str> = sent["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            said,
            [
                "You are a shop assistant.",
                "Hi",
                "Hello!",
                "Are you open today?"
            ],
            "{kept}"
        );
        // Moved: only the salted key is left.
        let store = after.runtime().store();
        assert_eq!(open_keys(store).await, [inbound.key.as_str()], "{kept}");
        if let Kept::Redis(_) = kept {
            // (The embedded store's log keeps what was written before.)
            assert!(
                !kept.everything().await.contains(hash_of(unsalted.as_str())),
                "the unsalted key is still in Redis"
            );
        }
        openai.push_chat(Reply::Sse(text_answer("You're welcome.")));
        let last = after.message(sms(&after, "Thanks"), None).await.unwrap();
        assert_eq!(last.call_id, first.call_id, "{kept}");
    }
}

#[tokio::test]
async fn a_conversation_opened_before_salting_is_finished_after_the_upgrade() {
    for kept in Kept::both() {
        let openai = FakeOpenAi::start().await;
        let before = kept.deployment(&openai, None);
        openai.push_chat(Reply::Sse(text_answer("Hello!")));
        let first = before.message(sms(&before, "Hi"), None).await.unwrap();
        drop(before);

        let after = kept.deployment(&openai, Some("pepper"));
        let key = after.key(Channel::Sms, &[USER, AGENT]);
        assert!(after.finish(&key, "chat_closed").await.unwrap(), "{kept}");
        let store = after.runtime().store();
        assert!(open_keys(store).await.is_empty(), "{kept}");
        let call = store.call(&first.call_id).await.unwrap().unwrap();
        assert_eq!(call.status, CallStatus::Completed, "{kept}");
        assert_eq!(call.end_reason.as_deref(), Some("chat_closed"), "{kept}");
        assert!(!after.finish(&key, "chat_closed").await.unwrap(), "{kept}");
    }
}

#[tokio::test]
async fn the_store_moves_a_legacy_conversation_once_and_prefers_the_keyed_one() {
    for kept in Kept::both() {
        let openai = FakeOpenAi::start().await;
        let conversations = kept.deployment(&openai, None);
        let store = conversations.runtime().store();
        let open = async |key: &str, legacy: Option<&str>, candidate: &str, at: u64| {
            store
                .open_text_conversation(key, legacy, candidate, at)
                .await
                .unwrap()
        };
        assert_eq!(open("sms:old", None, "c1", 1_000).await, "c1");
        // Moved, its last message now.
        assert_eq!(open("sms:new", Some("sms:old"), "c2", 2_000).await, "c1");
        assert_eq!(open_keys(store).await, ["sms:new"], "{kept}");
        assert!(
            store
                .idle_text_conversations(1_999, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // A server not yet upgraded opens a new one under the legacy key:
        // the keyed one wins, the legacy one is left to the idle sweep.
        assert_eq!(open("sms:old", None, "c3", 3_000).await, "c3");
        assert_eq!(open("sms:new", Some("sms:old"), "c4", 4_000).await, "c1");
        assert_eq!(open_keys(store).await, ["sms:new", "sms:old"], "{kept}");
        let claim = EndClaim {
            owner: "test".into(),
            ttl_ms: 60_000,
        };
        let closed = store
            .close_text_conversation("sms:old", 3_000, "idle_timeout", 5_000, &claim)
            .await
            .unwrap();
        assert_eq!(closed.as_deref(), Some("c3"), "{kept}");
        // Nothing left under the legacy key: a new conversation.
        assert_eq!(open("sms:x", Some("sms:old"), "c5", 6_000).await, "c5");
    }
}
