//! The phone hashes' salt, as the agent runtime (stored objects) and the
//! dialler (records, rate limits, logs) read it: one lookup, so the two
//! agree. `[outbound] phone_hash_salt_env` naming a variable that is not
//! set is a configuration error at start, named by its key, in both; with
//! no salt at all, stored objects write numbers `redacted`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use support::processors::registry;
use voxpipe::agent::{AgentError, AgentRuntime};
use voxpipe::outbound::{OutboundSetupError, TwilioDialer};
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::{PipelineConfig, parse_pipeline};
use voxpipe::store::{PhoneHasher, Segment};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const NUMBER: &str = "+15551230001";

fn pipeline(outbound: &str) -> PipelineConfig {
    let toml = format!(
        "[pipeline]\nname = \"salted\"\nsample_rate = 16000\n\n[[processor]]\ntype = \"parrot\"\n\n\
         [transport.twilio]\nauth_token_env = \"TWILIO_AUTH_TOKEN\"\naccount_sid_env = \"TWILIO_ACCOUNT_SID\"\n\n\
         {outbound}"
    );
    parse_pipeline(Path::new("salted.toml"), &toml, &registry()).unwrap()
}

fn env(vars: &[(&str, &str)]) -> EnvSource {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    EnvSource::Fixed(Arc::new(vars))
}

fn dialer(
    config: &PipelineConfig,
    env: &EnvSource,
    runtime: Arc<AgentRuntime>,
) -> Result<TwilioDialer, OutboundSetupError> {
    TwilioDialer::from_sections(
        config.outbound.as_ref().unwrap(),
        &config.transport.twilio,
        Some("voice.example.test"),
        Segment::default(),
        env,
        runtime,
        Vec::new(),
    )
}

const SALTED: &str = "[outbound]\nfrom = \"+15550009999\"\nphone_hash_salt_env = \"PHONE_SALT\"\n";

#[tokio::test]
async fn a_salt_variable_that_is_not_set_is_refused_by_the_runtime_and_the_dialler() {
    let config = pipeline(SALTED);
    let unsalted = env(&[("TWILIO_AUTH_TOKEN", "token"), ("TWILIO_ACCOUNT_SID", SID)]);
    match config.agent_runtime(&unsalted) {
        Err(AgentError::MissingEnv { key, var }) => {
            assert_eq!(key, "outbound.phone_hash_salt_env");
            assert_eq!(var, "PHONE_SALT");
        }
        Err(other) => panic!("another error: {other}"),
        Ok(_) => panic!("the runtime was built without its salt"),
    }
    // An empty variable is no salt either.
    let empty = env(&[
        ("TWILIO_AUTH_TOKEN", "token"),
        ("TWILIO_ACCOUNT_SID", SID),
        ("PHONE_SALT", ""),
    ]);
    assert!(matches!(
        config.agent_runtime(&empty),
        Err(AgentError::MissingEnv { .. })
    ));
    let salted = env(&[
        ("TWILIO_AUTH_TOKEN", "token"),
        ("TWILIO_ACCOUNT_SID", SID),
        ("PHONE_SALT", "pepper"),
    ]);
    let runtime = Arc::new(config.agent_runtime(&salted).unwrap());
    match dialer(&config, &unsalted, runtime) {
        Err(OutboundSetupError::MissingEnv { key, var }) => {
            assert_eq!(key, "outbound.phone_hash_salt_env");
            assert_eq!(var, "PHONE_SALT");
        }
        Err(other) => panic!("another error: {other}"),
        Ok(_) => panic!("the dialler was built without its salt"),
    }
}

#[tokio::test]
async fn the_runtime_and_the_dialler_hash_a_number_alike() {
    // The configured salt, else the auth token.
    for (outbound, salt) in [
        (SALTED, "pepper"),
        ("[outbound]\nfrom = \"+15550009999\"\n", "token"),
    ] {
        let config = pipeline(outbound);
        let env = env(&[
            ("TWILIO_AUTH_TOKEN", "token"),
            ("TWILIO_ACCOUNT_SID", SID),
            ("PHONE_SALT", "pepper"),
        ]);
        let runtime = Arc::new(config.agent_runtime(&env).unwrap());
        let dialer = dialer(&config, &env, Arc::clone(&runtime)).unwrap();
        let expected = PhoneHasher::new(salt.as_bytes()).hash(NUMBER);
        assert_eq!(dialer.hasher().hash(NUMBER), expected, "{outbound}");
        let stored = runtime.phone_hasher().map(|h| h.hash(NUMBER));
        assert_eq!(stored.as_deref(), Some(expected.as_str()), "{outbound}");
    }
}

#[tokio::test]
async fn with_no_salt_at_all_stored_numbers_are_redacted() {
    // No `[outbound]` and no auth token: nothing to salt with, and nothing
    // refused (a pipeline that places no calls needs none).
    let config = pipeline("");
    let runtime = config.agent_runtime(&env(&[])).unwrap();
    assert!(runtime.phone_hasher().is_none());
}
