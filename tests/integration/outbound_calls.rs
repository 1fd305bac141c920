//! Outbound calls, one at a time: `POST /api/calls` places a call through a
//! fake Twilio (`tests/support/fake/twilio_rest.rs`) that dials the callee,
//! posts signed status callbacks and opens the media stream like Twilio;
//! the record in a real Redis follows the call to its final status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::fake::openai::{FakeOpenAi, Part, Reply, finish_chunk, text_chunk};
use support::fake::twilio_rest::{ACCOUNT_SID, Callee, FakeTwilioRest, Outcome};
use support::fake::webhook_receiver::WebhookReceiver;
use support::mulaw::{silence, tone};
use support::processors::registry;
use support::redis_server::RedisServer;
use support::server::{Setup, TestServer};
use support::wait::until_notified;
use tokio::sync::Notify;
use voxpipe::agent::AgentRuntime;
use voxpipe::outbound::CallSettled;
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::store::{CallRecord, CallStatus, Segment, Store};

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "twilio-secret";
const API_KEY: &str = "api-key";
const HOST: &str = "voice.example.test";
const CALLEE: &str = "+15551230001";

/// Remembers every settled call.
#[derive(Default)]
struct Settled {
    calls: Mutex<Vec<CallRecord>>,
    changed: Notify,
}

#[async_trait::async_trait]
impl CallSettled for Settled {
    async fn call_settled(&self, call: &CallRecord) {
        self.calls.lock().unwrap().push(call.clone());
        self.changed.notify_waiters();
    }
}

impl Settled {
    async fn wait(&self, call_id: &str) -> CallRecord {
        until_notified(&self.changed, WAIT, || {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .find(|c| c.call_id == call_id)
                .cloned()
        })
        .await
        .unwrap_or_else(|| panic!("call {call_id} never settled"))
    }
}

struct Rig {
    _redis: RedisServer,
    /// The turn spool: writers still running when the test's Redis goes
    /// keep what they hold here, not in the crate's directory.
    _spool: tempfile::TempDir,
    twilio: FakeTwilioRest,
    server: TestServer,
    runtime: Arc<AgentRuntime>,
    settled: Arc<Settled>,
    webhook: WebhookReceiver,
    http: reqwest::Client,
}

const PARROT: &str = "[pipeline]\nname = \"outbound\"\nsample_rate = 16000\n\n[[processor]]\ntype = \"test_turns\"\n\n[[processor]]\ntype = \"parrot\"\n";

impl Rig {
    /// A server of `pipeline` (its `[pipeline]` and processors) with
    /// `[outbound]` plus `outbound` keys, on a real Redis.
    async fn start(pipeline: &str, outbound: &str) -> Rig {
        let redis = RedisServer::start();
        let spool = tempfile::tempdir().unwrap();
        let twilio = FakeTwilioRest::start(TOKEN).await;
        let webhook = WebhookReceiver::start().await;
        let toml = format!(
            "{pipeline}\n[server]\npublic_host = \"{HOST}\"\napi_token_env = \"API_KEY\"\n\n\
             [context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\nspool_dir = {:?}\n\n\
             [webhook]\nurl = \"{}\"\n\n\
             [transport.twilio]\nauth_token_env = \"TWILIO_AUTH_TOKEN\"\naccount_sid_env = \"TWILIO_ACCOUNT_SID\"\napi_base_url = \"{}\"\n\n\
             [outbound]\nfrom = \"+15550009999\"\nphone_hash_salt_env = \"PHONE_SALT\"\n{outbound}\n",
            spool.path(),
            webhook.url(),
            twilio.base_url
        );
        let env = [
            ("TEST_REDIS", redis.url()),
            ("TWILIO_AUTH_TOKEN", TOKEN.to_owned()),
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.to_owned()),
            ("API_KEY", API_KEY.to_owned()),
            ("PHONE_SALT", "pepper".to_owned()),
            ("OPENAI_API_KEY", "sk-test".to_owned()),
        ];
        let config = parse_pipeline(Path::new("outbound.toml"), &toml, &registry()).unwrap();
        let vars: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let runtime = Arc::new(
            config
                .agent_runtime(&EnvSource::Fixed(Arc::new(vars)))
                .unwrap(),
        );
        let settled = Arc::new(Settled::default());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = TestServer::start(Setup {
            toml: Some(&toml),
            path: "outbound.toml",
            env: &env,
            context: Some(Arc::clone(&runtime)),
            settled: vec![Arc::clone(&settled) as Arc<dyn CallSettled>],
            ..Setup::default()
        })
        .await;
        twilio.deliver_to(server.addr);
        Rig {
            _redis: redis,
            _spool: spool,
            twilio,
            server,
            runtime,
            settled,
            webhook,
            http: reqwest::Client::new(),
        }
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.runtime.store()
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, self.server.url(path))
            .bearer_auth(API_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Places a call to `to`; its id.
    async fn call(&self, to: &str) -> String {
        self.call_with(json!({"to": to, "parameters": {"country": "US"}, "metadata": {"crm": 7}}))
            .await
    }

    /// Places the call `body` asks for; its id.
    async fn call_with(&self, body: Value) -> String {
        let (status, body) = self
            .api(reqwest::Method::POST, "/api/calls", Some(body))
            .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["status"], "queued");
        body["call_id"].as_str().unwrap().to_owned()
    }

    /// The SID Twilio gave the `n`th call (1-based).
    async fn sid(&self, n: usize) -> String {
        let creates = self.twilio.wait_creates(n, WAIT).await;
        creates[n - 1].sid.clone().expect("Twilio took the call")
    }

    /// Delivers the webhooks due now; the bodies received so far.
    async fn webhooks(&self) -> Vec<Value> {
        let deliverer = self.runtime.deliverer().unwrap().unwrap();
        deliverer
            .deliver_due(voxpipe::store::time::unix_ms())
            .await
            .unwrap();
        self.webhook
            .received()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }
}

fn agent_pipeline(openai: &FakeOpenAi) -> String {
    format!(
        r#"[pipeline]
name = "outbound-agent"
sample_rate = 16000

[[processor]]
type = "test_turns"

[[processor]]
type = "stt"
provider = "openai"
base_url = "{base}"
api_key_env = "OPENAI_API_KEY"

[[processor]]
type = "user_context"

[[processor]]
type = "llm"
provider = "openai"
base_url = "{base}"
model = "gpt-test"
api_key_env = "OPENAI_API_KEY"
system_prompt = "You call people for Acme."

[[processor]]
type = "tts"
provider = "openai"
base_url = "{base}"
api_key_env = "OPENAI_API_KEY"

[[processor]]
type = "assistant_context"
"#,
        base = openai.base_url
    )
}

fn speech_reply(secs: f64) -> Reply {
    Reply::Pcm(vec![Part::Raw(support::signal::tone_pcm(24_000, secs))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_placed_answered_talked_through_and_completed() {
    let openai = FakeOpenAi::start().await;
    openai.push_transcription(Reply::Json(json!({"text": "Hello, who is this?"})));
    openai.push_chat(Reply::Sse(vec![
        Part::Data(text_chunk("This is Acme calling.")),
        Part::Data(finish_chunk("stop")),
        Part::Data("[DONE]".into()),
    ]));
    openai.push_speech(speech_reply(0.8));
    let rig = Rig::start(&agent_pipeline(&openai), "").await;
    rig.twilio.script(
        CALLEE,
        Outcome::Human(Callee {
            says: [tone(440.0, 800, 8_000.0), silence(800)].concat(),
            hang_up_after_heard_ms: Some(600),
        }),
    );

    let call_id = rig.call(CALLEE).await;
    let sid = rig.sid(1).await;
    let create = &rig.twilio.creates()[0];
    assert_eq!(create.field("To"), Some(CALLEE));
    assert_eq!(create.field("From"), Some("+15550009999"));
    assert_eq!(create.field("Timeout"), Some("30"));
    assert_eq!(create.field("StatusCallbackMethod"), Some("POST"));
    assert_eq!(
        create.fields("StatusCallbackEvent"),
        ["initiated", "ringing", "answered", "completed"]
    );
    assert_eq!(
        create.field("StatusCallback").unwrap(),
        format!("https://{HOST}/twilio/status?call_id={call_id}")
    );
    assert_eq!(create.field("MachineDetection"), None);

    let placed = rig.twilio.wait_final(&sid, WAIT).await;
    assert_eq!(placed.final_status.as_deref(), Some("completed"));
    assert!(
        placed.callbacks.iter().all(|c| c.answer == 200),
        "{:?}",
        placed.callbacks
    );
    let parameters = placed.stream_parameters.unwrap();
    assert!(parameters.contains(&("call_id".to_owned(), call_id.clone())));
    assert!(parameters.contains(&("country".to_owned(), "US".to_owned())));
    let heard = placed.media.unwrap();
    assert!(heard.heard.len() >= 600 * 8, "the callee heard the bot");

    // The stream ran as the call's own session.
    let sessions = rig.server.sessions.ended(1, WAIT).await;
    assert_eq!(sessions[0].session_id, call_id);
    rig.settled.wait(&call_id).await;
    assert_eq!(rig.runtime.drain_writers(WAIT).await, 0);
    let (status, record) = rig
        .api(reqwest::Method::GET, &format!("/api/calls/{call_id}"), None)
        .await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["status"], "completed");
    assert_eq!(record["direction"], "outbound");
    assert_eq!(record["outbound"]["twilio_sid"], sid.as_str());
    assert_eq!(record["outbound"]["to"], CALLEE);
    assert_eq!(record["outbound"]["metadata"]["crm"], 7);
    assert!(record["outbound"]["call_duration_secs"].as_u64().unwrap() >= 1);
    assert!(record["outbound"]["answered_at"].is_string());
    assert!(record["started_at"].is_string());
    assert_eq!(record["segment"]["country"], "US");
    let turns = record["turns"].as_array().unwrap();
    assert!(!turns.is_empty(), "{record}");
    let text = record["turns"].to_string();
    assert!(text.contains("Hello, who is this?"), "{text}");
    // The callee hung up 600 ms into the 800 ms answer: what played was
    // heard, the rest never was.
    let answer = turns
        .iter()
        .find(|turn| turn["role"] == "assistant")
        .unwrap_or_else(|| panic!("no answer: {text}"));
    let said = answer["text"].as_str().unwrap();
    assert!(
        said.starts_with("This is") && said.len() < "This is Acme calling.".len(),
        "{text}"
    );
    assert!("This is Acme calling.".starts_with(said), "{text}");
    assert_eq!(answer["interrupted"], true, "{text}");
    let hash = record["outbound"]["phone_hash"].as_str().unwrap();
    assert_eq!(hash.len(), 16);
    assert!(!hash.contains("555"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_never_connect_end_with_their_final_status_and_their_webhook() {
    let rig = Rig::start(PARROT, "").await;
    let cases = [
        ("+15551230002", Outcome::Busy, "busy"),
        ("+15551230003", Outcome::NoAnswer, "no-answer"),
        ("+15551230004", Outcome::Failed, "failed"),
        ("+15551230005", Outcome::InvalidNumber, "failed"),
    ];
    let mut ids = Vec::new();
    for (to, outcome, _) in &cases {
        rig.twilio.script(to, outcome.clone());
        ids.push(rig.call(to).await);
    }
    // A call with its own webhook endpoint.
    let own = WebhookReceiver::start().await;
    rig.twilio.script("+15551230007", Outcome::NoAnswer);
    let own_id = rig
        .call_with(json!({"to": "+15551230007", "webhook_url": own.url()}))
        .await;
    rig.settled.wait(&own_id).await;
    for ((_, _, status), call_id) in cases.iter().zip(&ids) {
        let settled = rig.settled.wait(call_id).await;
        assert_eq!(settled.status.as_str(), *status, "{settled:?}");
        let stored = rig.store().call(call_id).await.unwrap().unwrap();
        assert_eq!(stored.status.as_str(), *status);
        assert_eq!(stored.end_reason.as_deref(), Some(*status));
        assert!(stored.ended_at.is_some());
        assert!(stored.started_at.is_none());
    }
    let refused = rig.store().call(&ids[3]).await.unwrap().unwrap();
    let error = refused.outbound.unwrap().error.unwrap();
    // Twilio's code, not its message: that names the number.
    assert!(error.contains("21211"), "{error}");
    assert!(!error.contains("+1555"), "{error}");
    // No call reached anyone: every number may be dialled again.
    assert!(
        rig.store()
            .claim_number(&rig_hash(&rig, &ids[0]).await, "another", 1_000)
            .await
            .unwrap()
    );

    // Each got its call-completed webhook, with its final status.
    let hooks = rig.webhooks().await;
    for ((_, _, status), call_id) in cases.iter().zip(&ids) {
        let hook = hooks
            .iter()
            .find(|h| h.to_string().contains(call_id.as_str()))
            .unwrap_or_else(|| panic!("no webhook for {call_id}: {hooks:?}"));
        assert!(
            hook.to_string().contains(&format!("\"{status}\"")),
            "{hook}"
        );
    }
    assert!(
        !hooks
            .iter()
            .any(|h| h.to_string().contains(own_id.as_str()))
    );
    let own_hooks = own.received();
    assert_eq!(own_hooks.len(), 1);
    assert!(String::from_utf8_lossy(&own_hooks[0].body).contains(own_id.as_str()));
}

async fn rig_hash(rig: &Rig, call_id: &str) -> String {
    let call = rig.store().call(call_id).await.unwrap().unwrap();
    call.outbound.unwrap().phone_hash
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_number_twilio_refuses_is_not_dialled_again_whatever_the_retry_policy() {
    let rig = Rig::start(PARROT, "").await;
    rig.twilio.script("+15551230005", Outcome::InvalidNumber);
    let (status, created) = rig
        .api(
            reqwest::Method::POST,
            "/api/campaigns",
            Some(json!({
                "numbers": [{"to": "+15551230005"}],
                "retry": {"attempts": 3, "backoff_secs": 1, "on": ["failed"]}
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["campaign_id"].as_str().unwrap().to_owned();
    let path = format!("/api/campaigns/{id}");
    let ended = support::wait::eventually(WAIT, async || {
        let (_, progress) = rig.api(reqwest::Method::GET, &path, None).await;
        progress["done"] == 1
    })
    .await;
    assert!(ended, "the campaign ends");
    // A retry, had one been scheduled, is due a second later.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (_, progress) = rig.api(reqwest::Method::GET, &path, None).await;
    assert_eq!(progress["by_status"]["failed"], 1, "{progress}");
    assert_eq!(progress["scheduled_retries"], 0, "{progress}");
    let creates = rig.twilio.creates();
    assert_eq!(
        creates.len(),
        1,
        "dialled once: a refused number is not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringing_call_is_canceled_and_a_live_one_hung_up_through_delete() {
    let rig = Rig::start(PARROT, "").await;
    rig.twilio.script(CALLEE, Outcome::RingsUntilCanceled);
    let call_id = rig.call(CALLEE).await;
    let sid = rig.sid(1).await;
    rig.twilio
        .wait_call(&sid, WAIT, |c| {
            c.callbacks
                .iter()
                .any(|cb| cb.field("CallStatus") == Some("ringing"))
        })
        .await;
    let (status, body) = rig
        .api(
            reqwest::Method::DELETE,
            &format!("/api/calls/{call_id}"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let cancel = rig.twilio.wait_for(1, WAIT).await;
    assert_eq!(cancel[0].call_sid, sid);
    assert!(
        cancel[0]
            .form
            .contains(&("Status".into(), "canceled".into()))
    );
    let settled = rig.settled.wait(&call_id).await;
    assert_eq!(settled.status, CallStatus::Canceled);
    let (status, _) = rig
        .api(
            reqwest::Method::DELETE,
            &format!("/api/calls/{call_id}"),
            None,
        )
        .await;
    assert_eq!(status, 409, "an ended call cannot be ended again");

    // A live call is hung up.
    let live = "+15551230006";
    rig.twilio.script(live, Outcome::Human(Callee::default()));
    let call_id = rig.call(live).await;
    let sid = rig.sid(2).await;
    rig.server.sessions.wait_started(&call_id, WAIT).await;
    let (status, _) = rig
        .api(
            reqwest::Method::DELETE,
            &format!("/api/calls/{call_id}"),
            None,
        )
        .await;
    assert_eq!(status, 202);
    let requests = rig.twilio.wait_for(2, WAIT).await;
    assert!(
        requests[1]
            .form
            .contains(&("Status".into(), "completed".into()))
    );
    assert_eq!(requests[1].call_sid, sid);
    let settled = rig.settled.wait(&call_id).await;
    assert_eq!(settled.status, CallStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_is_hung_up_on_under_the_hang_up_policy() {
    let rig = Rig::start(PARROT, "machine_detection = \"hang_up\"\n").await;
    rig.twilio.script(
        CALLEE,
        Outcome::Machine {
            answered_by: "machine_start".into(),
            callee: Callee::default(),
        },
    );
    let call_id = rig.call(CALLEE).await;
    let sid = rig.sid(1).await;
    assert_eq!(
        rig.twilio.creates()[0].field("MachineDetection"),
        Some("Enable")
    );
    let hang_up = rig.twilio.wait_for(1, WAIT).await;
    assert_eq!(hang_up[0].call_sid, sid);
    assert!(
        hang_up[0]
            .form
            .contains(&("Status".into(), "completed".into()))
    );
    let settled = rig.settled.wait(&call_id).await;
    assert_eq!(settled.status, CallStatus::Completed);
    assert_eq!(
        settled.outbound.unwrap().answered_by.as_deref(),
        Some("machine_start")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_create_answer_never_came_is_not_dialled_again() {
    // Twilio queues calls over the account's rate: the create request's
    // answer comes after the dialler's 5 s timeout, and so do the call's
    // callbacks. Dialling again would ring the person twice.
    let rig = Rig::start(PARROT, "").await;
    rig.twilio
        .script(CALLEE, Outcome::SlowNoAnswer(Duration::from_secs(10)));
    let call_id = rig.call(CALLEE).await;
    let settled = rig.settled.wait(&call_id).await;
    assert_eq!(
        settled.status,
        CallStatus::NoAnswer,
        "its callbacks settle it"
    );
    assert_eq!(rig.twilio.creates().len(), 1, "dialled once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fax_is_hung_up_on_even_under_the_voicemail_policy() {
    let rig = Rig::start(
        PARROT,
        "machine_detection = \"voicemail\"\nvoicemail_message = \"Hi.\"\namd = \"async\"\n",
    )
    .await;
    rig.twilio.script(
        CALLEE,
        Outcome::Machine {
            answered_by: "fax".into(),
            callee: Callee::default(),
        },
    );
    let call_id = rig.call(CALLEE).await;
    let sid = rig.sid(1).await;
    let hang_up = rig.twilio.wait_for(1, WAIT).await;
    assert_eq!(hang_up[0].call_sid, sid);
    let settled = rig.settled.wait(&call_id).await;
    assert_eq!(
        settled.outbound.unwrap().answered_by.as_deref(),
        Some("fax")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_gets_the_voicemail_message_after_the_beep() {
    let openai = FakeOpenAi::start().await;
    openai.push_speech(speech_reply(0.4));
    openai.push_speech(speech_reply(0.4));
    let rig = Rig::start(
        &agent_pipeline(&openai),
        "machine_detection = \"voicemail\"\nvoicemail_message = \"Hi, this is Acme. Please call us back.\"\namd = \"async\"\n",
    )
    .await;
    rig.twilio.script(
        CALLEE,
        Outcome::Machine {
            answered_by: "machine_end_beep".into(),
            callee: Callee::default(),
        },
    );
    let call_id = rig.call(CALLEE).await;
    let sid = rig.sid(1).await;
    let create = &rig.twilio.creates()[0];
    assert_eq!(create.field("MachineDetection"), Some("DetectMessageEnd"));
    assert_eq!(create.field("AsyncAmd"), Some("true"));
    assert_eq!(
        create.field("AsyncAmdStatusCallback").unwrap(),
        format!("https://{HOST}/twilio/amd?call_id={call_id}")
    );
    // The session speaks the message and ends the call itself.
    let placed = rig.twilio.wait_final(&sid, WAIT).await;
    let sessions = rig.server.sessions.ended(1, WAIT).await;
    assert_eq!(sessions[0].end_reason.as_deref(), Some("voicemail_left"));
    let spoken: String = openai
        .received("audio/speech")
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(
        spoken.contains("Hi, this is Acme.") && spoken.contains("Please call us back."),
        "the TTS spoke the message: {spoken}"
    );
    let media = placed.media.unwrap();
    assert!(media.heard.len() + media.unplayed_at_close.len() > 0);
    let settled = rig.settled.wait(&call_id).await;
    assert_eq!(settled.status, CallStatus::Completed);
    assert_eq!(
        settled.outbound.unwrap().answered_by.as_deref(),
        Some("machine_end_beep")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_signed_known_and_never_move_a_call_back() {
    let rig = Rig::start(PARROT, "").await;
    rig.twilio.script(CALLEE, Outcome::Busy);
    let call_id = rig.call(CALLEE).await;
    let sid = rig.sid(1).await;
    rig.settled.wait(&call_id).await;
    let url = format!("https://{HOST}/twilio/status?call_id={call_id}");
    let ringing = [
        ("CallSid", sid.as_str()),
        ("AccountSid", ACCOUNT_SID),
        ("CallStatus", "ringing"),
        ("SequenceNumber", "1"),
    ];
    assert_eq!(
        rig.twilio
            .post_signed(&url, &ringing, Some("bm9wZQ=="))
            .await,
        403
    );
    assert_eq!(rig.twilio.post_signed(&url, &ringing, Some("")).await, 403);
    // Signed for another URL (another call): refused too.
    let other = format!("https://{HOST}/twilio/status?call_id=someone-else");
    let forged = support::fake::twilio_rest::sign(
        TOKEN,
        &other,
        &ringing
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        rig.twilio.post_signed(&url, &ringing, Some(&forged)).await,
        403
    );
    // Late and out of order: accepted, and the call stays busy.
    assert_eq!(rig.twilio.post_signed(&url, &ringing, None).await, 200);
    let stored = rig.store().call(&call_id).await.unwrap().unwrap();
    assert_eq!(stored.status, CallStatus::Busy);
    // An unknown call: 200, ignored.
    let unknown = format!("https://{HOST}/twilio/status?call_id=nobody");
    assert_eq!(rig.twilio.post_signed(&unknown, &ringing, None).await, 200);
    assert!(rig.store().call("nobody").await.unwrap().is_none());
    // Not a status Twilio has: 400.
    let bad = [("CallSid", sid.as_str()), ("CallStatus", "exploded")];
    assert_eq!(rig.twilio.post_signed(&url, &bad, None).await, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_reached_is_not_called_again_within_its_limit() {
    let rig = Rig::start(PARROT, "").await;
    rig.twilio.script(
        CALLEE,
        Outcome::Human(Callee {
            says: Vec::new(),
            hang_up_after_heard_ms: Some(0),
        }),
    );
    let first = rig.call(CALLEE).await;
    assert_eq!(rig.settled.wait(&first).await.status, CallStatus::Completed);
    let second = rig.call(CALLEE).await;
    let settled = rig.settled.wait(&second).await;
    assert_eq!(settled.status, CallStatus::Failed);
    assert!(
        settled
            .outbound
            .unwrap()
            .error
            .unwrap()
            .starts_with("rate_limited")
    );
    assert_eq!(rig.twilio.creates().len(), 1, "Twilio was asked once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_what_it_cannot_use() {
    let rig = Rig::start(PARROT, "").await;
    let url = rig.server.url("/api/calls");
    let anonymous = rig
        .http
        .post(&url)
        .json(&json!({"to": CALLEE}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let (status, body) = rig
        .api(
            reqwest::Method::POST,
            "/api/calls",
            Some(json!({"to": CALLEE, "colour": "red"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("colour"), "{body}");
    let (status, body) = rig
        .api(
            reqwest::Method::POST,
            "/api/calls",
            Some(json!({"to": "555-1234"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("E.164"), "{body}");
    // Parameters too long for the call's TwiML (Twilio takes 4,000
    // characters): refused now, not failed at Twilio later.
    let (status, body) = rig
        .api(
            reqwest::Method::POST,
            "/api/calls",
            Some(json!({"to": CALLEE, "parameters": {"notes": "x".repeat(4_000)}})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("TwiML"), "{body}");
    let (status, _) = rig.api(reqwest::Method::GET, "/api/calls/nope", None).await;
    assert_eq!(status, 404);
    let (status, _) = rig
        .api(reqwest::Method::DELETE, "/api/calls/nope", None)
        .await;
    assert_eq!(status, 404);
    // A body not sent as JSON: a web page's form post or `no-cors` fetch
    // (no CORS preflight) places nothing.
    let form = rig
        .http
        .post(&url)
        .bearer_auth(API_KEY)
        .header("content-type", "text/plain")
        .body(json!({"to": CALLEE}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(form.status().as_u16(), 415);
    let error: Value = form.json().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("JSON"), "{error}");
    // An inbound (or browser) call's record is not the API's to end.
    let inbound = CallRecord::pending(
        "inbound-1",
        "twilio",
        Segment::default(),
        Default::default(),
        voxpipe::store::time::unix_ms(),
    );
    assert!(rig.store().create_call(&inbound).await.unwrap());
    let (status, body) = rig
        .api(reqwest::Method::DELETE, "/api/calls/inbound-1", None)
        .await;
    assert_eq!(status, 409, "{body}");
    let call = rig.store().call("inbound-1").await.unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Pending, "left as it was");
    assert!(rig.twilio.creates().is_empty());

    // A server whose API is off answers 403, with a JSON reason.
    let closed = TestServer::parrot(&[]).await;
    let response = rig
        .http
        .post(closed.url("/api/calls"))
        .json(&json!({"to": CALLEE}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("api_token_env"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_one_idempotency_key_place_one_call() {
    let rig = Rig::start(PARROT, "").await;
    rig.twilio.script_default(Outcome::RingsUntilCanceled);
    let post = |key: &'static str, to: &'static str| {
        let request = rig
            .http
            .post(rig.server.url("/api/calls"))
            .bearer_auth(API_KEY)
            .header("idempotency-key", key)
            .json(&json!({ "to": to }));
        async move {
            let response = request.send().await.unwrap();
            let replayed = response.headers().get("idempotent-replayed").is_some();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, replayed, body)
        }
    };
    let (status, replayed, first) = post("order-17", CALLEE).await;
    assert_eq!((status, replayed), (202, false), "{first}");
    let call_id = first["call_id"].as_str().unwrap().to_owned();
    assert_eq!(call_id.len(), 32, "a call id like any other: {call_id}");
    rig.sid(1).await;
    // The client's answer was lost: it sends the request again, and again.
    for _ in 0..2 {
        let (status, replayed, again) = post("order-17", CALLEE).await;
        assert_eq!((status, replayed), (202, true), "{again}");
        assert_eq!(again["call_id"], call_id.as_str());
    }
    // The key names that call only.
    let (status, _, other) = post("order-17", "+15551239999").await;
    assert_eq!(status, 422, "{other}");
    let (status, _, bad) = post(" ", CALLEE).await;
    assert_eq!(status, 400, "{bad}");
    let (status, replayed, second) = post("order-18", CALLEE).await;
    assert_eq!((status, replayed), (202, false), "{second}");
    assert_ne!(second["call_id"], call_id.as_str());
    // A second key is a second call: it finds its number held by the
    // first and fails before Twilio. One create request in all.
    let refused = rig.settled.wait(second["call_id"].as_str().unwrap()).await;
    assert_eq!(refused.status, CallStatus::Failed);
    let creates = rig.twilio.creates();
    assert_eq!(creates.len(), 1, "{creates:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_places_a_call_through_the_same_dialler() {
    let twilio = FakeTwilioRest::start(TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("outbound.toml");
    std::fs::write(
        &file,
        format!(
            "[pipeline]\nname = \"cli\"\n\n[[processor]]\ntype = \"parrot\"\n\n[server]\npublic_host = \"{HOST}\"\n\n\
             [transport.twilio]\nauth_token_env = \"TWILIO_AUTH_TOKEN\"\naccount_sid_env = \"TWILIO_ACCOUNT_SID\"\napi_base_url = \"{}\"\n\n\
             [outbound]\nfrom = \"+15550009999\"\n",
            twilio.base_url
        ),
    )
    .unwrap();
    // A record in this process's memory would reach no server: refused.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .args(["call", "--to", CALLEE])
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("in memory only"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(twilio.creates().is_empty());
    let mut toml = std::fs::read_to_string(&file).unwrap();
    toml.push_str("\n[context]\npath = \"context.jsonl\"\n");
    std::fs::write(&file, toml).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_voxpipe"));
    command
        .args(["call", "--to", CALLEE, "--param", "country=US"])
        .arg(&file)
        .current_dir(dir.path())
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("TWILIO_ACCOUNT_SID", ACCOUNT_SID);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (call_id, sid) = stdout.trim().split_once('\t').unwrap();
    let creates = twilio.creates();
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0].sid.as_deref(), Some(sid));
    assert_eq!(creates[0].field("To"), Some(CALLEE));
    assert!(
        creates[0]
            .field("Twiml")
            .unwrap()
            .contains(&format!(r#"<Parameter name="call_id" value="{call_id}"/>"#))
    );

    // Not E.164: refused before anything is asked of Twilio.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .args(["call", "--to", "5551234"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("E.164"));
    assert_eq!(twilio.creates().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_rate_limiting_is_waited_out_until_the_call_is_placed() {
    let rig = Rig::start(PARROT, "").await;
    rig.twilio.script(CALLEE, Outcome::RateLimited);
    let call_id = rig.call(CALLEE).await;
    // More 429s than the four tries the API once gave up after, each
    // waited for at least its Retry-After (1 s), and backed off beyond it.
    let creates = rig.twilio.wait_creates(5, WAIT).await;
    assert!(creates.iter().all(|c| c.status == 429));
    for pair in creates.windows(2) {
        assert!(
            pair[1].at.duration_since(pair[0].at) >= Duration::from_millis(950),
            "Retry-After (1 s) is honoured"
        );
    }
    assert!(
        creates[4].at.duration_since(creates[3].at) >= Duration::from_millis(7_500),
        "backed off (1, 2, 4, 8 s)"
    );
    let call = rig.store().call(&call_id).await.unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Queued, "still waiting");
    // Twilio takes calls again: placed once.
    rig.twilio.script(CALLEE, Outcome::Busy);
    let settled = rig.settled.wait(&call_id).await;
    assert_eq!(settled.status, CallStatus::Busy);
    let placed: Vec<_> = rig
        .twilio
        .creates()
        .into_iter()
        .filter(|c| c.status == 201)
        .collect();
    assert_eq!(placed.len(), 1);
    // Never reached: the number is free again.
    let hash = settled.outbound.unwrap().phone_hash;
    assert!(
        rig.store()
            .claim_number(&hash, "next", 1_000)
            .await
            .unwrap()
    );
}

#[test]
fn the_fake_reads_the_stream_and_its_parameters_from_the_twiml() {
    use support::fake::twilio_rest::{path_and_query, read_stream_twiml};
    let twiml = voxpipe::transport::twilio::twiml::connect_stream(
        "wss://h.example/twilio/ws",
        &[
            ("call_id".to_owned(), "abc".to_owned()),
            ("note".to_owned(), "a & \"b\"".to_owned()),
        ],
    );
    let (url, parameters) = read_stream_twiml(&twiml).unwrap();
    assert_eq!(url, "wss://h.example/twilio/ws");
    assert_eq!(
        parameters,
        vec![
            ("call_id".to_owned(), "abc".to_owned()),
            ("note".to_owned(), "a & \"b\"".to_owned())
        ]
    );
    assert_eq!(
        path_and_query("https://h.example/twilio/status?call_id=x"),
        "/twilio/status?call_id=x"
    );
}
