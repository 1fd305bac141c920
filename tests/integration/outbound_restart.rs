//! Outbound calls a stopped server left behind, in a real Redis: a call
//! asked of Twilio whose answer was never stored is not dialled again by a
//! later try, and calls left `queued` are ended `failed` by the next
//! server to start, never left queued for ever.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::fake::twilio_rest::{ACCOUNT_SID, FakeTwilioRest};
use support::fake::webhook_receiver::WebhookReceiver;
use support::processors::registry;
use support::redis_server::RedisServer;
use support::server::{Setup, TestServer};
use voxpipe::agent::AgentRuntime;
use voxpipe::outbound::{CallRequest, DialError, Dialer, PhoneNumber, TwilioDialer};
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::{PipelineConfig, parse_pipeline};
use voxpipe::store::time::{rfc3339, unix_ms};
use voxpipe::store::{CallDirection, CallRecord, CallStatus, OutboundCall, Segment};

const TOKEN: &str = "twilio-secret";
const MINUTE: u64 = 60_000;

struct Rig {
    redis: RedisServer,
    twilio: FakeTwilioRest,
    toml: String,
    env: Vec<(&'static str, String)>,
    config: PipelineConfig,
    runtime: Arc<AgentRuntime>,
}

impl Rig {
    async fn new() -> Rig {
        Self::with("").await
    }

    /// A rig whose pipeline has `extra` appended.
    async fn with(extra: &str) -> Rig {
        Self::with_context("", extra).await
    }

    /// A rig whose `[context]` has `context` appended, and its pipeline
    /// `extra`.
    async fn with_context(context: &str, extra: &str) -> Rig {
        let redis = RedisServer::start();
        let twilio = FakeTwilioRest::start(TOKEN).await;
        let toml = format!(
            "[pipeline]\nname = \"outbound\"\nsample_rate = 16000\n\n[[processor]]\ntype = \"parrot\"\n\n\
             [server]\npublic_host = \"voice.example.test\"\napi_token_env = \"API_KEY\"\n\n\
             [context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\n{context}\n\
             [transport.twilio]\nauth_token_env = \"TWILIO_AUTH_TOKEN\"\naccount_sid_env = \"TWILIO_ACCOUNT_SID\"\napi_base_url = \"{}\"\n\n\
             [outbound]\nfrom = \"+15550009999\"\n{extra}",
            twilio.base_url
        );
        let env = vec![
            ("TEST_REDIS", redis.url()),
            ("TWILIO_AUTH_TOKEN", TOKEN.to_owned()),
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.to_owned()),
            ("API_KEY", "api-key".to_owned()),
        ];
        let config = parse_pipeline(Path::new("outbound.toml"), &toml, &registry()).unwrap();
        let runtime = Arc::new(config.agent_runtime(&Self::source(&env)).unwrap());
        Rig {
            redis,
            twilio,
            toml,
            env,
            config,
            runtime,
        }
    }

    fn source(env: &[(&'static str, String)]) -> EnvSource {
        let vars: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        EnvSource::Fixed(Arc::new(vars))
    }

    /// A server of this deployment, which Twilio's callbacks reach.
    async fn server(&self) -> TestServer {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = TestServer::start(Setup {
            toml: Some(&self.toml),
            path: "outbound.toml",
            env: &env,
            context: Some(Arc::clone(&self.runtime)),
            ..Setup::default()
        })
        .await;
        self.twilio.deliver_to(server.addr);
        server
    }

    /// A dialler of this deployment, as another server has it.
    fn dialer(&self) -> TwilioDialer {
        TwilioDialer::from_sections(
            self.config.outbound.as_ref().unwrap(),
            &self.config.transport.twilio,
            Some("voice.example.test"),
            Segment::default(),
            &Self::source(&self.env),
            Arc::clone(&self.runtime),
            Vec::new(),
        )
        .unwrap()
    }

    /// The record of an API call to `to` created `age` minutes ago,
    /// `queued`; asked of Twilio `asked` minutes ago, if at all.
    async fn left_queued(&self, call_id: &str, to: &str, age: u64, asked: Option<u64>) {
        let now = unix_ms();
        let mut call = CallRecord::pending(
            call_id,
            "twilio",
            Segment::default(),
            BTreeMap::new(),
            now - age * MINUTE,
        );
        call.status = CallStatus::Queued;
        call.direction = Some(CallDirection::Outbound);
        call.outbound = Some(OutboundCall {
            to: to.to_owned(),
            phone_hash: "h".to_owned(),
            asked_at: asked.map(|m| rfc3339(now - m * MINUTE)),
            ..OutboundCall::default()
        });
        assert!(self.runtime.store().create_call(&call).await.unwrap());
    }

    /// What a server killed during an answered call leaves: `call_id`
    /// started half a minute ago, never ended, nobody running its session.
    async fn left_lost(&self, call_id: &str, sid: &str) {
        let started_at = unix_ms() - 30_000;
        let mut call = CallRecord::pending(
            call_id,
            "twilio",
            Segment::default(),
            BTreeMap::new(),
            started_at - MINUTE,
        );
        call.status = CallStatus::Active;
        call.direction = Some(CallDirection::Outbound);
        call.started_at = Some(rfc3339(started_at));
        call.outbound = Some(OutboundCall {
            to: "+15551230010".to_owned(),
            phone_hash: "h".to_owned(),
            twilio_sid: Some(sid.to_owned()),
            answered_at: Some(rfc3339(started_at)),
            ..OutboundCall::default()
        });
        assert!(self.runtime.store().create_call(&call).await.unwrap());
    }

    /// What a callback lost on its way leaves: `call_id` dialled `age`
    /// minutes ago as `sid`, `ringing`, never started.
    async fn left_ringing(&self, call_id: &str, sid: &str, age: u64) {
        let dialled = unix_ms() - age * MINUTE;
        let mut call = CallRecord::pending(
            call_id,
            "twilio",
            Segment::default(),
            BTreeMap::new(),
            dialled,
        );
        call.status = CallStatus::Ringing;
        call.direction = Some(CallDirection::Outbound);
        call.outbound = Some(OutboundCall {
            to: "+15551230011".to_owned(),
            phone_hash: "h".to_owned(),
            twilio_sid: Some(sid.to_owned()),
            dialled_at: Some(rfc3339(dialled)),
            ..OutboundCall::default()
        });
        assert!(self.runtime.store().create_call(&call).await.unwrap());
    }

    /// Delivers the webhooks queued, as a server's deliverer does, until
    /// the sender is used; the delivering task.
    fn deliver_webhooks(
        &self,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let deliverer = self.runtime.deliverer().unwrap().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let delivering = tokio::spawn(async move {
            deliverer
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        });
        (stop, delivering)
    }

    async fn status(&self, call_id: &str) -> (CallStatus, Option<String>) {
        let call = self.runtime.store().call(call_id).await.unwrap().unwrap();
        (call.status, call.outbound.and_then(|o| o.error))
    }
}

/// The SID of the calls whose session was lost.
const SID: &str = "CA0000000000000000000000000000001f";

/// Twilio's final status callback for `call_id` (`completed`), its URL and
/// form.
fn completed(call_id: &str, sid: &'static str) -> (String, [(&'static str, &'static str); 6]) {
    let url = format!("https://voice.example.test/twilio/status?call_id={call_id}");
    let form = [
        ("AccountSid", ACCOUNT_SID),
        ("CallSid", sid),
        ("CallStatus", "completed"),
        ("CallDuration", "31"),
        ("Direction", "outbound-api"),
        ("SequenceNumber", "3"),
    ];
    (url, form)
}

fn request(to: &str) -> CallRequest {
    CallRequest {
        to: PhoneNumber::parse(to).unwrap(),
        from: None,
        parameters: BTreeMap::new(),
        webhook_url: None,
        metadata: serde_json::Map::new(),
        campaign: None,
    }
}

#[tokio::test]
async fn a_call_asked_of_twilio_by_a_stopped_server_is_not_dialled_again() {
    let rig = Rig::new().await;
    // The server that asked stopped before Twilio's answer was stored.
    rig.left_queued("asked", "+15551230001", 0, Some(0)).await;
    rig.left_queued("never-asked", "+15551230002", 0, None)
        .await;
    let dialer = rig.dialer();
    let again = dialer.dial("asked", &request("+15551230001")).await;
    assert!(
        matches!(again, Err(DialError::AlreadyAsked(_))),
        "{again:?}"
    );
    assert!(rig.twilio.creates().is_empty(), "dialled again");
    // One never asked of Twilio is dialled, and its record says so.
    let placed = dialer
        .dial("never-asked", &request("+15551230002"))
        .await
        .unwrap();
    assert_eq!(rig.twilio.creates().len(), 1);
    let call = rig
        .runtime
        .store()
        .call("never-asked")
        .await
        .unwrap()
        .unwrap();
    let outbound = call.outbound.unwrap();
    assert_eq!(
        outbound.twilio_sid.as_deref(),
        Some(placed.twilio_sid.as_str())
    );
    assert!(outbound.asked_at.is_some());
}

#[tokio::test]
async fn calls_a_stopped_server_left_queued_end_failed_when_a_server_starts() {
    let rig = Rig::new().await;
    rig.left_queued("never-dialled", "+15551230001", 11, None)
        .await;
    rig.left_queued("never-confirmed", "+15551230002", 30, Some(29))
        .await;
    rig.left_queued("just-queued", "+15551230003", 1, None)
        .await;
    rig.left_queued("just-asked", "+15551230004", 2, Some(1))
        .await;
    let server = rig.server().await;
    let ended = support::wait::eventually(Duration::from_secs(20), async || {
        rig.status("never-confirmed").await.0 == CallStatus::Failed
            && rig.status("never-dialled").await.0 == CallStatus::Failed
    })
    .await;
    assert!(ended, "stranded calls still queued");
    let (_, why) = rig.status("never-dialled").await;
    assert!(why.unwrap().starts_with("not dialled"));
    let (_, why) = rig.status("never-confirmed").await;
    assert_eq!(why.as_deref(), Some("Twilio never confirmed the call"));
    // What may still be dialled or ring is left alone, and nothing is
    // dialled by the sweep.
    assert_eq!(rig.status("just-queued").await.0, CallStatus::Queued);
    assert_eq!(rig.status("just-asked").await.0, CallStatus::Queued);
    assert!(rig.twilio.creates().is_empty());
    server.shutdown(Duration::from_secs(20)).await.unwrap();
    drop(rig.redis);
}

#[tokio::test]
async fn two_servers_trying_the_same_call_at_once_dial_it_once() {
    // A campaign entry whose lease came back while its server was stalled:
    // that server and another both try the call.
    let rig = Rig::new().await;
    let (a, b) = (rig.dialer(), rig.dialer());
    for n in 0..8 {
        let call_id = format!("race-{n}");
        let to = format!("+1555123100{n}");
        rig.left_queued(&call_id, &to, 0, None).await;
        let asked = request(&to);
        let (first, second) = tokio::join!(a.dial(&call_id, &asked), b.dial(&call_id, &asked));
        assert!(first.is_ok() || second.is_ok(), "{first:?} {second:?}");
    }
    let creates = rig.twilio.creates();
    let mut numbers: Vec<String> = creates
        .iter()
        .filter_map(|c| {
            c.form
                .iter()
                .find(|(k, _)| k == "To")
                .map(|(_, v)| v.clone())
        })
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(creates.len(), 8, "a number was dialled twice");
    assert_eq!(numbers.len(), 8);
}

#[tokio::test]
async fn a_call_twilio_placed_after_it_was_canceled_is_ended_at_twilio() {
    // DELETE came while the create request's answer was lost: the record
    // says canceled, with no SID. Twilio placed it after all, and its
    // status callback names it live.
    let rig = Rig::new().await;
    rig.left_queued("late", "+15551230009", 0, Some(0)).await;
    let canceled = rig.dialer().cancel_queued("late").await.unwrap().unwrap();
    assert_eq!(canceled.status, CallStatus::Canceled);
    let server = rig.server().await;
    let sid = "CA000000000000000000000000000000ff";
    let url = "https://voice.example.test/twilio/status?call_id=late";
    let form = [
        ("AccountSid", ACCOUNT_SID),
        ("CallSid", sid),
        ("CallStatus", "ringing"),
        ("Direction", "outbound-api"),
        ("SequenceNumber", "1"),
    ];
    assert_eq!(rig.twilio.post_signed(url, &form, None).await, 200);
    let ended = rig.twilio.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(ended[0].call_sid, sid);
    assert!(
        ended[0]
            .form
            .iter()
            .any(|(k, v)| k == "Status" && v == "canceled"),
        "{:?}",
        ended[0].form
    );
    server.shutdown(Duration::from_secs(20)).await.unwrap();
}

#[tokio::test]
async fn a_call_canceled_while_twilio_was_asked_is_ended_when_its_answer_comes() {
    // DELETE comes while the create request is out: the record is
    // canceled with no SID; Twilio's answer then brings one, and the call
    // it placed is ended there.
    let rig = Rig::new().await;
    rig.twilio.script(
        "+15551230010",
        support::fake::twilio_rest::Outcome::SlowNoAnswer(Duration::from_millis(500)),
    );
    rig.left_queued("slow", "+15551230010", 0, None).await;
    let dialer = Arc::new(rig.dialer());
    let dialling = {
        let dialer = Arc::clone(&dialer);
        tokio::spawn(async move { dialer.dial("slow", &request("+15551230010")).await })
    };
    let created = rig.twilio.wait_creates(1, Duration::from_secs(20)).await;
    let sid = created[0].sid.clone().expect("the fake placed the call");
    let canceled = dialer.cancel_queued("slow").await.unwrap().unwrap();
    assert_eq!(canceled.status, CallStatus::Canceled);
    let placed = dialling.await.unwrap().unwrap();
    assert_eq!(placed.twilio_sid, sid);
    let ended = rig.twilio.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(ended[0].call_sid, sid);
    assert!(
        ended[0]
            .form
            .iter()
            .any(|(k, v)| k == "Status" && v == "canceled"),
        "{:?}",
        ended[0].form
    );
    assert_eq!(rig.status("slow").await.0, CallStatus::Canceled);
}

#[tokio::test]
async fn a_placed_call_whose_final_callback_never_came_is_ended_from_twilio_once() {
    let receiver = WebhookReceiver::start().await;
    let rig = Rig::with(&format!("\n[webhook]\nurl = \"{}\"\n", receiver.url())).await;
    // Twilio's `no-answer` callback found the store down (answered 503,
    // not retried): the record still says ringing a quarter of an hour on.
    let unanswered = "CA00000000000000000000000000000a01";
    rig.left_ringing("unanswered", unanswered, 15).await;
    rig.twilio
        .has_call(unanswered, "+15551230011", "no-answer", 0);
    // One still ringing at Twilio (held in its queue) is left to its
    // callback, and one too young to have rung out is not read at all.
    let queued = "CA00000000000000000000000000000a02";
    rig.left_ringing("held", queued, 14).await;
    rig.twilio.has_call(queued, "+15551230011", "ringing", 0);
    rig.left_ringing("young", "CA00000000000000000000000000000a03", 1)
        .await;

    let dialer = rig.dialer();
    let stopping = std::sync::atomic::AtomicBool::new(false);
    let window = (unix_ms() - 60 * MINUTE, unix_ms());
    // Twilio down for the sweep's three tries: nothing changes, and the
    // window is to be swept again.
    rig.twilio.fail_next_reads(3);
    let failed = dialer.sweep_calls(window.0, window.1, &stopping).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(rig.status("unanswered").await.0, CallStatus::Ringing);

    let ended = dialer
        .sweep_calls(window.0, window.1, &stopping)
        .await
        .unwrap();
    assert_eq!(ended, 1);
    assert_eq!(rig.status("unanswered").await.0, CallStatus::NoAnswer);
    assert_eq!(rig.status("held").await.0, CallStatus::Ringing);
    assert_eq!(rig.status("young").await.0, CallStatus::Ringing);
    // Three refused tries of the first, then one read of each overdue
    // call a sweep: the young one is never read.
    assert_eq!(rig.twilio.reads(), 3 + 1 + 2);

    // Its after-call work runs as for a callback: the webhook, once,
    // however often it is swept or the callback comes late after all.
    assert_eq!(
        dialer
            .sweep_calls(window.0, window.1, &stopping)
            .await
            .unwrap(),
        0
    );
    let server = rig.server().await;
    let url = "https://voice.example.test/twilio/status?call_id=unanswered";
    let late = [
        ("AccountSid", ACCOUNT_SID),
        ("CallSid", unanswered),
        ("CallStatus", "no-answer"),
        ("Direction", "outbound-api"),
        ("SequenceNumber", "2"),
    ];
    assert_eq!(rig.twilio.post_signed(url, &late, None).await, 200);
    let (stop, delivering) = rig.deliver_webhooks();
    let received = receiver.wait_for(1, Duration::from_secs(20)).await;
    let body: serde_json::Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body["call_id"], "unanswered");
    assert_eq!(body["call"]["status"], "no-answer");
    stop.send(()).unwrap();
    delivering.await.unwrap();
    assert_eq!(receiver.received().len(), 1);
    server.shutdown(Duration::from_secs(20)).await.unwrap();
}

#[tokio::test]
async fn a_call_whose_server_died_mid_call_gets_its_webhook_once() {
    let receiver = WebhookReceiver::start().await;
    // Writers that give up at once, so the grace can be short.
    let rig = Rig::with_context(
        "flush_timeout_secs = 0\n",
        &format!(
            "lost_session_grace_secs = 1\n\n[webhook]\nurl = \"{}\"\n",
            receiver.url()
        ),
    )
    .await;
    rig.left_lost("lost", SID).await;
    let store = rig.runtime.store();

    let server = rig.server().await;
    let (url, form) = completed("lost", SID);
    let before = unix_ms();
    assert_eq!(rig.twilio.post_signed(&url, &form, None).await, 200);
    let answered = unix_ms();
    let (stop, delivering) = rig.deliver_webhooks();
    let received = receiver.wait_for(1, Duration::from_secs(20)).await;
    let body: serde_json::Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body["call_id"], "lost");
    assert_eq!(body["call"]["status"], "completed");
    assert_eq!(body["call"]["end_reason"], "session_lost");
    // Ended as of the callback, not a grace later.
    let ended = body["call"]["ended_at"].as_str().unwrap();
    let ended = voxpipe::store::time::parse_rfc3339(ended).unwrap();
    assert!(
        (before..=answered).contains(&ended),
        "{before} {ended} {answered}"
    );

    // Twilio repeats the callback, and the session's writer, alive after
    // all, queues its own after-call work: nothing more is delivered.
    assert_eq!(rig.twilio.post_signed(&url, &form, None).await, 200);
    rig.runtime.queue_after_call("lost").await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), 0);
    stop.send(()).unwrap();
    delivering.await.unwrap();
    assert_eq!(receiver.received().len(), 1);
    server.shutdown(Duration::from_secs(20)).await.unwrap();
}

#[tokio::test]
async fn a_lost_session_is_ended_even_when_the_server_that_heard_of_it_stops_within_the_grace() {
    let receiver = WebhookReceiver::start().await;
    let rig = Rig::with_context(
        "flush_timeout_secs = 0\n",
        &format!(
            "lost_session_grace_secs = 2\n\n[webhook]\nurl = \"{}\"\n",
            receiver.url()
        ),
    )
    .await;
    rig.left_lost("lost", SID).await;

    // The server that takes the final status runs as a process of its
    // own (a runtime on a thread, with its own agent runtime), killed
    // once it has answered: whatever it keeps in memory dies with it.
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (kill, killed) = tokio::sync::oneshot::channel::<()>();
    let toml = rig.toml.clone();
    let env = rig.env.clone();
    let config = rig.config.clone();
    let process = std::thread::spawn(move || {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        tokio.block_on(async move {
            let runtime = Arc::new(config.agent_runtime(&Rig::source(&env)).unwrap());
            let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let server = TestServer::start(Setup {
                toml: Some(&toml),
                path: "outbound.toml",
                env: &vars,
                context: Some(runtime),
                ..Setup::default()
            })
            .await;
            addr_tx.send(server.addr).unwrap();
            let _ = killed.await;
        });
        // Dropping the runtime ends every task the server spawned.
        drop(tokio);
    });
    rig.twilio.deliver_to(addr_rx.await.unwrap());
    let (url, form) = completed("lost", SID);
    let before = unix_ms();
    assert_eq!(rig.twilio.post_signed(&url, &form, None).await, 200);
    let answered = unix_ms();
    kill.send(()).unwrap();
    process.join().unwrap();
    let store = rig.runtime.store();
    let call = store.call("lost").await.unwrap().unwrap();
    assert!(call.ended_at.is_none(), "ended within the grace");

    // Another server (or the same one, restarted) ends it.
    let server = rig.server().await;
    let (stop, delivering) = rig.deliver_webhooks();
    let received = receiver.wait_for(1, Duration::from_secs(20)).await;
    let body: serde_json::Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body["call_id"], "lost");
    assert_eq!(body["call"]["end_reason"], "session_lost");
    let ended = body["call"]["ended_at"].as_str().unwrap();
    let ended = voxpipe::store::time::parse_rfc3339(ended).unwrap();
    assert!(
        (before..=answered).contains(&ended),
        "ended as of the callback: {before} {ended} {answered}"
    );
    stop.send(()).unwrap();
    delivering.await.unwrap();
    server.shutdown(Duration::from_secs(20)).await.unwrap();
}

#[tokio::test]
async fn a_lost_session_the_store_refused_to_note_is_noted_later_and_the_callback_answered_200() {
    let receiver = WebhookReceiver::start().await;
    let rig = Rig::with_context(
        "flush_timeout_secs = 0\n",
        &format!(
            "lost_session_grace_secs = 1\n\n[webhook]\nurl = \"{}\"\n",
            receiver.url()
        ),
    )
    .await;
    rig.left_lost("lost", SID).await;
    // The checks' key holds a string: noting a check fails (WRONGTYPE)
    // until it is removed.
    let mut redis = rig.redis.client().await;
    let _: () = redis::cmd("SET")
        .arg("calls:lost_sessions")
        .arg("in the way")
        .query_async(&mut redis)
        .await
        .unwrap();

    let server = rig.server().await;
    let (url, form) = completed("lost", SID);
    let before = unix_ms();
    // Twilio would not retry a 5xx: the callback is answered 200 all the
    // same, and the call is settled.
    assert_eq!(rig.twilio.post_signed(&url, &form, None).await, 200);
    let answered = unix_ms();
    assert_eq!(rig.status("lost").await.0, CallStatus::Completed);
    let _: () = redis::cmd("DEL")
        .arg("calls:lost_sessions")
        .query_async(&mut redis)
        .await
        .unwrap();

    // Noted in the background once the store takes it: the call is ended
    // after its grace, as of the callback.
    let (stop, delivering) = rig.deliver_webhooks();
    let received = receiver.wait_for(1, Duration::from_secs(20)).await;
    let body: serde_json::Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body["call_id"], "lost");
    assert_eq!(body["call"]["end_reason"], "session_lost");
    let ended = body["call"]["ended_at"].as_str().unwrap();
    let ended = voxpipe::store::time::parse_rfc3339(ended).unwrap();
    assert!(
        (before..=answered).contains(&ended),
        "ended as of the callback: {before} {ended} {answered}"
    );
    stop.send(()).unwrap();
    delivering.await.unwrap();
    server.shutdown(Duration::from_secs(20)).await.unwrap();
}

#[tokio::test]
async fn a_lost_session_whose_record_cannot_be_read_is_dropped_not_claimed_for_ever() {
    let rig = Rig::new().await;
    let mut redis = rig.redis.client().await;
    // A record the store cannot decode: ending it fails, not for now.
    let _: () = redis::cmd("SET")
        .arg("call:broken")
        .arg("not a record")
        .query_async(&mut redis)
        .await
        .unwrap();
    let dialer = rig.dialer();
    let lost = dialer.lost_sessions();
    lost.note("broken", 1_000).await.unwrap();
    let store = rig.runtime.store();
    assert!(store.next_lost_session_due().await.unwrap().is_some());
    assert_eq!(lost.end_due(unix_ms()).await.unwrap(), 0);
    assert_eq!(
        store.next_lost_session_due().await.unwrap(),
        None,
        "claimed again"
    );
}
