//! Text conversations for tests: a text-only pipeline over the fake
//! OpenAI server, kept in a real Redis, served with the fake Twilio.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use voxpipe::agent::AgentRuntime;
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::{PipelineConfig, parse_pipeline};
use voxpipe::store::PhoneHasher;
use voxpipe::text::{Channel, ConversationKey};

use super::fake::openai::FakeOpenAi;
use super::fake::twilio_rest::ACCOUNT_SID;
use super::processors::registry;

/// The auth token the fake Twilio and the server share.
pub const AUTH_TOKEN: &str = "text-test-auth-token";
/// The server's public host, as Twilio would call it.
pub const HOST: &str = "text.example.com";
/// The messaging webhook as Twilio is told it.
pub const MESSAGING_URL: &str = "https://text.example.com/twilio/messaging";

/// A text-only pipeline: `user_context`, an `llm` on `openai` with a
/// `price` HTTP tool, `assistant_context`; kept in the Redis at
/// `TEST_REDIS`; Twilio's REST API at `twilio_base`; `extra` appended
/// (e.g. a `[text]` or `[evaluator]` section).
pub fn pipeline_toml(openai: &FakeOpenAi, twilio_base: &str, extra: &str) -> String {
    format!(
        r#"[pipeline]
name = "text"

[[processor]]
type = "user_context"

[[processor]]
type = "llm"
provider = "openai"
base_url = "{base}"
model = "m"
system_prompt = "You are a shop assistant."
connection = {{ max_retries = 0 }}

[[processor.http_tools]]
name = "price"
description = "the price of an item"
url = "{tool}"
parameters = {{ type = "object", properties = {{ item = {{ type = "string" }} }} }}

[[processor]]
type = "assistant_context"

[context]
store = "redis"
url_env = "TEST_REDIS"

[transport.twilio]
auth_token_env = "TWILIO_AUTH_TOKEN"
account_sid_env = "TWILIO_ACCOUNT_SID"
api_base_url = "{twilio_base}"

[server]
public_host = "{HOST}"
api_open = true

{extra}
"#,
        base = openai.base_url,
        tool = openai.tool_url("price"),
    )
}

/// The key the server of [`pipeline_toml`] keeps the conversation between
/// `participants` on `channel` under: keyed with its phone-hash salt, the
/// auth token.
pub fn salted_key(channel: Channel, participants: &[&str]) -> ConversationKey {
    ConversationKey::keyed(
        channel,
        participants,
        Some(&PhoneHasher::new(AUTH_TOKEN.as_bytes())),
    )
}

/// The pipeline `toml`, validated.
pub fn config(toml: &str) -> PipelineConfig {
    parse_pipeline(Path::new("text.toml"), toml, &registry()).unwrap()
}

/// The variables the pipeline reads.
pub fn env(redis_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TEST_REDIS", redis_url.to_owned()),
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN.to_owned()),
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.to_owned()),
    ]
}

/// The agent runtime of `config` with `env`.
pub fn runtime(config: &PipelineConfig, env: &[(&'static str, String)]) -> Arc<AgentRuntime> {
    let vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    Arc::new(
        config
            .agent_runtime(&EnvSource::Fixed(Arc::new(vars)))
            .unwrap(),
    )
}
