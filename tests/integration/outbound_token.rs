//! An outbound call's stream token outlives its rings: it is issued when
//! the call is asked of Twilio and checked when the answered call's stream
//! starts, so a call allowed to ring `[outbound] timeout_secs` (up to
//! 600 s) must not carry a token of `stream_token_ttl_secs` (300 s by
//! default).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use support::fake::twilio_rest::{ACCOUNT_SID, FakeTwilioRest, Outcome};
use support::processors::registry;
use voxpipe::outbound::{CallRequest, Dialer, PhoneNumber, TwilioDialer};
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::store::Segment;
use voxpipe::store::time::unix_ms;
use voxpipe::transport::twilio::stream_token::{STREAM_TOKEN_PARAMETER, StreamTokenKey};

const TOKEN: &str = "twilio-secret";

#[tokio::test]
async fn a_call_that_may_ring_ten_minutes_carries_a_token_that_lasts_them() {
    let twilio = FakeTwilioRest::start(TOKEN).await;
    twilio.script_default(Outcome::RingsUntilCanceled);
    let toml = format!(
        "[pipeline]\nname = \"outbound\"\nsample_rate = 16000\n\n[[processor]]\ntype = \"parrot\"\n\n\
         [transport.twilio]\nauth_token_env = \"TWILIO_AUTH_TOKEN\"\naccount_sid_env = \"TWILIO_ACCOUNT_SID\"\napi_base_url = \"{}\"\n\n\
         [outbound]\nfrom = \"+15550009999\"\ntimeout_secs = 600\n",
        twilio.base_url
    );
    let config = parse_pipeline(Path::new("outbound.toml"), &toml, &registry()).unwrap();
    let vars: HashMap<String, String> = [
        ("TWILIO_AUTH_TOKEN", TOKEN),
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let env = EnvSource::Fixed(Arc::new(vars));
    let runtime = Arc::new(config.agent_runtime(&env).unwrap());
    let dialer = TwilioDialer::from_sections(
        config.outbound.as_ref().unwrap(),
        &config.transport.twilio,
        Some("voice.example.test"),
        Segment::default(),
        &env,
        runtime,
        Vec::new(),
    )
    .unwrap();
    let request = CallRequest {
        to: PhoneNumber::parse("+15551230001").unwrap(),
        from: None,
        parameters: BTreeMap::new(),
        webhook_url: None,
        metadata: serde_json::Map::new(),
        campaign: None,
    };
    let asked = unix_ms() / 1000;
    dialer.dial("ringing-long", &request).await.unwrap();
    let twiml = twilio.creates()[0].field("Twiml").unwrap().to_owned();
    let marker = format!("name=\"{STREAM_TOKEN_PARAMETER}\" value=\"");
    let start = twiml.find(&marker).expect("a stream token in the TwiML") + marker.len();
    let token = &twiml[start..start + twiml[start..].find('"').unwrap()];
    let key = StreamTokenKey::from_auth_token(TOKEN);
    // Answered on the ring timeout's last second (and a minute later):
    // still a valid token for this call.
    let claims = key.verify(token, asked + 600 + 60).unwrap();
    assert_eq!(claims.call_id, "ringing-long");
}
