//! Object storage, end to end: a real redis-server, a real S3-compatible
//! server in process that checks SigV4 signatures (`support::s3_server`),
//! a fake OpenAI-compatible judge. A call's transcript, profile, audit
//! record and recording land at seed 002's keys; storage down, refusing
//! credentials, interrupted mid-upload or a worker killed mid-upload delay
//! them and never duplicate or truncate them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::fake::openai::{FakeOpenAi, verdict};
use support::processors::registry;
use support::redis_server::RedisServer;
use support::s3_server::{ACCESS_KEY, S3Server, SECRET_KEY};
use support::server::{Setup, TestServer};
use support::turns::HandSession;
use support::wait::{eventually, notified_until};
use voxpipe::agent::AgentRuntime;
use voxpipe::agent::eval::{EvaluationWorker, WorkerSettings};
use voxpipe::pipeline::{EnvSource, SessionSetup};
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::store::{CallChange, Extraction, Store};

const PHONE: &str = "+16154846056";
const LINES: &[&str] = &[
    "assistant: Hi, this is the jobs line. May I ask about your work history?",
    "user: Sure. I'm Ann Lee, I weld at Tech Corp since 2019.",
];
const WAIT: Duration = Duration::from_secs(30);

struct World {
    redis: RedisServer,
    s3: S3Server,
    judge: FakeOpenAi,
    runtime: AgentRuntime,
    store: Arc<dyn Store>,
    spool: tempfile::TempDir,
}

/// Redis, the S3 server, the judge, and a runtime storing to
/// `s3://calls/voxpipe` with `secret` as the secret key.
async fn world(secret: &str) -> World {
    let redis = RedisServer::start();
    let s3 = S3Server::start().await;
    let judge = FakeOpenAi::judge().await;
    let spool = tempfile::tempdir().unwrap();
    let toml = format!(
        "[pipeline]\nname = \"agent\"\n\n[context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\n\n\
         [evaluator]\nbase_url = \"{}\"\nmodel = \"judge-1\"\nconnection = {{ response_timeout_secs = 5 }}\n\n\
         [webhook]\nurl = \"http://127.0.0.1:9/hook\"\n\n[transport.twilio]\nauth_token_env = \"TOKEN\"\n\n\
         [storage]\nurl = \"s3://calls/voxpipe\"\nendpoint = \"{}\"\n\
         access_key_id_env = \"TEST_S3_KEY\"\nsecret_access_key_env = \"TEST_S3_SECRET\"\n",
        judge.base_url,
        s3.endpoint()
    );
    let config = parse_pipeline(Path::new("agent.toml"), &toml, &registry()).unwrap();
    let env = EnvSource::Fixed(Arc::new(HashMap::from([
        ("TEST_REDIS".to_owned(), redis.url()),
        ("TEST_S3_KEY".to_owned(), ACCESS_KEY.to_owned()),
        ("TEST_S3_SECRET".to_owned(), secret.to_owned()),
        ("TOKEN".to_owned(), "salt".to_owned()),
    ])));
    let runtime = config
        .agent_runtime(&env)
        .unwrap()
        .with_recording_spool(spool.path());
    let store = runtime.store().clone();
    World {
        redis,
        s3,
        judge,
        runtime,
        store,
        spool,
    }
}

impl World {
    /// A whole phone call, stored; the judge will call it a success.
    async fn call(&self, id: &str) {
        self.judge
            .push_chats([verdict("success", 0.9, &["Ask about history"])]);
        let mut setup = SessionSetup::new(id, 16_000);
        setup.custom_parameters = BTreeMap::from([
            ("to".to_owned(), PHONE.to_owned()),
            ("campaign".to_owned(), "spring".to_owned()),
        ]);
        let memory = self.runtime.open_session(&setup, "twilio").await;
        let session = HandSession::start(&memory);
        for line in LINES {
            session.say(line).await;
        }
        session.end("hangup").await;
        let report = memory.finished(WAIT).await.unwrap();
        assert!(report.unwritten.is_empty(), "{:?}", report.unwritten);
    }

    /// What the extraction step records (written straight into the call,
    /// as another program's field would be).
    async fn extract(&self, id: &str, consent: bool) {
        let extraction = Extraction::Extracted {
            data: json!({"name": "Ann Lee", "current_job": {"title": "Welder"}, "consent": consent}),
            model: "extractor-1".into(),
            attempts: 1,
            at: "2026-01-15T10:30:00Z".into(),
        };
        self.store
            .update_call(id, &CallChange::Extracted(extraction))
            .await
            .unwrap()
            .unwrap();
    }

    /// A finished recording of `id` in the spool, `frames` stereo frames.
    fn record(&self, id: &str, frames: usize) -> (PathBuf, Vec<u8>) {
        let wav = stereo_wav(frames);
        let path = self.spool.path().join(format!("{id}.wav"));
        std::fs::write(&path, &wav).unwrap();
        // A recording still being written is never uploaded.
        std::fs::write(self.spool.path().join("other.wav.part"), b"RIFF").unwrap();
        (path, wav)
    }

    /// A worker that reclaims a stopped worker's job after 100 ms.
    fn worker(&self, name: &str) -> EvaluationWorker {
        EvaluationWorker::new(
            self.store.clone(),
            self.runtime.evaluator().unwrap().clone(),
            name,
            WorkerSettings {
                claim_idle: Duration::from_millis(100),
                max_deliveries: 20,
                batch: 8,
                poll: Duration::ZERO,
            },
        )
    }

    /// The call's keys (relative to the storage URL), read back.
    async fn keys(&self, id: &str) -> voxpipe::store::StoredObjects {
        self.store.call(id).await.unwrap().unwrap().objects
    }

    /// The object at `key` (relative to the storage URL) as JSON.
    fn json(&self, key: &str) -> Value {
        let full = format!("voxpipe/{key}");
        let (_, bytes) = self
            .s3
            .objects()
            .into_iter()
            .find(|(k, _)| *k == full)
            .unwrap_or_else(|| panic!("no object {full}"));
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Every key in the bucket.
    fn bucket_keys(&self) -> Vec<String> {
        self.s3.objects().into_iter().map(|(k, _)| k).collect()
    }
}

/// A WAV file (16 kHz, 16-bit, stereo) of `frames` frames of a ramp.
fn stereo_wav(frames: usize) -> Vec<u8> {
    let data = (frames * 4) as u32;
    let mut wav = Vec::with_capacity(44 + data as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&2u16.to_le_bytes()); // channels
    wav.extend_from_slice(&16_000u32.to_le_bytes());
    wav.extend_from_slice(&64_000u32.to_le_bytes());
    wav.extend_from_slice(&4u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data.to_le_bytes());
    for i in 0..frames {
        let sample = (i % 2000) as i16;
        wav.extend_from_slice(&sample.to_le_bytes());
        wav.extend_from_slice(&(-sample).to_le_bytes());
    }
    wav
}

/// `calls/…/{date}/{id}/…` and the audit key of a call started on `date`.
fn expected_keys(started_at: &str, id: &str) -> [String; 4] {
    let date = &started_at[..10];
    let stamp: String = started_at[..19]
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    [
        format!("calls/audio/{date}/{id}/recording.wav"),
        format!("calls/transcripts/{date}/{id}/transcript.json"),
        format!("calls/profiles/{date}/{id}/profile.json"),
        format!("audit/{date}/audit_{stamp}Z_{id}.json"),
    ]
}

async fn started_at(store: &Arc<dyn Store>, id: &str) -> String {
    store.call(id).await.unwrap().unwrap().started_at.unwrap()
}

fn prefixed(keys: &[String]) -> Vec<String> {
    let mut keys: Vec<String> = keys.iter().map(|k| format!("voxpipe/{k}")).collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_recording_transcript_profile_and_audit_land_at_seed_002s_keys() {
    let w = world(SECRET_KEY).await;
    w.call("c1").await;
    w.extract("c1", true).await;
    let (spooled, wav) = w.record("c1", 16_000);
    let uploader = w.runtime.recording_uploader().unwrap();
    let scan = uploader.scan().await;
    assert_eq!((scan.stored, scan.waiting), (1, 0));
    assert!(!spooled.exists(), "an uploaded recording leaves the spool");
    assert!(
        w.spool.path().join("other.wav.part").exists(),
        "a .part file is never touched"
    );
    assert_eq!(w.worker("w1").drain().await.unwrap(), 1);

    let [recording, transcript, profile, audit] =
        expected_keys(&started_at(&w.store, "c1").await, "c1");
    assert_eq!(
        w.bucket_keys(),
        prefixed(&[
            recording.clone(),
            transcript.clone(),
            profile.clone(),
            audit.clone()
        ])
    );
    let objects = w.keys("c1").await;
    assert_eq!(objects.recording.as_deref(), Some(recording.as_str()));
    assert_eq!(objects.transcript.as_deref(), Some(transcript.as_str()));
    assert_eq!(objects.profile.as_deref(), Some(profile.as_str()));
    assert_eq!(objects.audit.as_deref(), Some(audit.as_str()));

    let stored_wav =
        w.s3.objects()
            .into_iter()
            .find(|(k, _)| *k == format!("voxpipe/{recording}"))
            .unwrap()
            .1;
    assert_eq!(stored_wav, wav, "the recording, byte for byte");
    let transcript_json = w.json(&transcript);
    assert_eq!(transcript_json["call_id"], "c1");
    assert_eq!(transcript_json["turns"].as_array().unwrap().len(), 2);
    assert!(
        transcript_json["turns"][1]["text"]
            .as_str()
            .unwrap()
            .contains("Ann Lee")
    );
    assert_eq!(transcript_json["outcome"], "success");
    let profile_json = w.json(&profile);
    assert_eq!(profile_json["profile"]["name"], "Ann Lee");
    let audit_json = w.json(&audit);
    assert_eq!(audit_json["consent"], "given");
    assert_eq!(audit_json["storage"], "s3://calls/voxpipe");
    assert_eq!(audit_json["objects"]["recording"], recording.as_str());
    assert_eq!(audit_json["objects"]["transcript"], transcript.as_str());
    assert_eq!(audit_json["objects"]["profile"], profile.as_str());
    // The deployment's salted hash (the Twilio token, without [outbound]).
    let hash = voxpipe::store::PhoneHasher::new(b"salt").hash(PHONE);
    assert_eq!(audit_json["parameters"]["to"], hash.as_str());
    for (key, bytes) in w.s3.objects() {
        assert!(
            !String::from_utf8_lossy(&bytes).contains("6154846056"),
            "{key} holds the raw phone number"
        );
    }

    // The webhook carries the keys.
    let mut redis = w.redis.client().await;
    let queued: String = redis::cmd("GET")
        .arg("{webhook:outbox}:event:call_completed:c1")
        .query_async(&mut redis)
        .await
        .unwrap();
    let queued: Value = serde_json::from_str(&queued).unwrap();
    assert_eq!(
        queued["body"]["objects"],
        json!({"recording": recording, "transcript": transcript, "profile": profile, "audit": audit})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_down_during_the_call_then_up_everything_arrives_once() {
    let mut w = world(SECRET_KEY).await;
    w.s3.stop().await;
    w.call("c2").await;
    w.extract("c2", false).await;
    let (spooled, wav) = w.record("c2", 8_000);
    let worker = w.worker("w1");
    assert!(
        worker.drain().await.is_err(),
        "storage down: the job stays pending"
    );
    let scan = w.runtime.recording_uploader().unwrap().scan().await;
    assert_eq!((scan.stored, scan.waiting), (0, 1));
    assert!(spooled.exists(), "the recording waits in the spool");
    assert!(w.keys("c2").await.is_empty());

    w.s3.start_again().await;
    // The job is taken again once idle (Redis's clock): the step's objects
    // first, then the recording, which completes the audit record.
    assert!(eventually(WAIT, async || matches!(worker.drain().await, Ok(1))).await);
    let scan = w.runtime.recording_uploader().unwrap().scan().await;
    assert_eq!((scan.stored, scan.waiting), (1, 0));
    assert!(!spooled.exists());
    // Nothing left to do: more runs add nothing.
    assert_eq!(worker.drain().await.unwrap(), 0);
    assert_eq!(
        w.runtime.recording_uploader().unwrap().scan().await.stored,
        0
    );

    let keys = expected_keys(&started_at(&w.store, "c2").await, "c2");
    assert_eq!(w.bucket_keys(), prefixed(&keys));
    let [recording, transcript, profile, audit] = keys;
    for key in [&recording, &transcript, &profile] {
        assert_eq!(w.s3.writes_of(&format!("voxpipe/{key}")), 1, "{key}");
    }
    assert_eq!(
        w.s3.objects()
            .into_iter()
            .find(|(k, _)| k.ends_with("recording.wav"))
            .unwrap()
            .1,
        wav
    );
    let audit_json = w.json(&audit);
    assert_eq!(audit_json["consent"], "refused");
    assert_eq!(
        audit_json["objects"]["recording"],
        recording.as_str(),
        "the audit record, written before the recording landed, was completed"
    );
    assert_eq!(w.judge.chat_requests().len(), 1, "judged once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_with_storage_down_do_not_count_toward_giving_the_job_up() {
    let mut w = world(SECRET_KEY).await;
    w.s3.stop().await;
    w.call("c6").await;
    // Given up after one crashed delivery; deliveries that saw storage down
    // are not crashes.
    let worker = EvaluationWorker::new(
        w.store.clone(),
        w.runtime.evaluator().unwrap().clone(),
        "strict",
        WorkerSettings {
            claim_idle: Duration::from_millis(100),
            max_deliveries: 1,
            batch: 8,
            poll: Duration::ZERO,
        },
    );
    assert!(worker.drain().await.is_err(), "storage down");
    let deferred = async || {
        let _ = worker.drain().await;
        w.store
            .call("c6")
            .await
            .unwrap()
            .unwrap()
            .post_call_deferrals
            >= 3
    };
    assert!(eventually(WAIT, deferred).await, "taken again and deferred");

    w.s3.start_again().await;
    assert!(eventually(WAIT, async || matches!(worker.drain().await, Ok(1))).await);
    let call = w.store.call("c6").await.unwrap().unwrap();
    assert!(call.objects.transcript.is_some(), "{call:?}");
    assert!(call.objects.audit.is_some(), "{call:?}");
    let evaluation = serde_json::to_string(&call.evaluation).unwrap();
    assert!(!evaluation.contains("abandoned"), "{evaluation}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_interrupted_midway_leaves_no_object_and_is_retried_whole() {
    let w = world(SECRET_KEY).await;
    w.call("c3").await;
    // Over two parts: a multipart upload.
    let frames = voxpipe::objects::PART_BYTES / 4 + 100_000;
    let (spooled, wav) = w.record("c3", frames);
    w.s3.fail_parts(true);
    let uploader = w.runtime.recording_uploader().unwrap();
    assert_eq!(uploader.scan().await.waiting, 1);
    assert!(spooled.exists());
    let requests = w.s3.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.method == "POST" && r.query.starts_with("uploads")),
        "a multipart upload began: {requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.method == "DELETE" && r.query.contains("uploadId")),
        "the interrupted upload was aborted: {requests:#?}"
    );
    assert!(
        !w.bucket_keys().iter().any(|k| k.ends_with("recording.wav")),
        "no partial object"
    );
    assert!(w.keys("c3").await.recording.is_none());

    w.s3.fail_parts(false);
    assert_eq!(uploader.scan().await.stored, 1);
    let stored: Vec<_> =
        w.s3.objects()
            .into_iter()
            .filter(|(k, _)| k.ends_with("recording.wav"))
            .collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1.len(), wav.len());
    assert!(stored[0].1 == wav, "the whole file, byte for byte");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_show_in_health_and_uploads_wait() {
    let w = world("not-the-secret").await;
    let runtime = Arc::new(w.runtime);
    let server = TestServer::start(Setup {
        toml: Some("[pipeline]\nname = \"parrot\"\n\n[[processor]]\ntype = \"parrot\"\n"),
        path: "p.toml",
        context: Some(Arc::clone(&runtime)),
        ..Setup::default()
    })
    .await;
    let (status, body) = server.get("/health").await;
    assert_eq!(
        status, 200,
        "calls still work without storage: ready: {body}"
    );
    let health: Value = serde_json::from_str(&body).unwrap();
    let storage = &health["checks"]["storage"];
    assert_eq!(storage["ok"], false, "{body}");
    assert_eq!(storage["required"], false, "{body}");
    assert!(
        storage["error"]
            .as_str()
            .unwrap()
            .contains("refuses the credentials"),
        "{body}"
    );
    assert!(!body.contains("not-the-secret"));

    w.judge.push_chats([verdict("success", 0.9, &[])]);
    support::turns::converse(&runtime, "c4", "twilio", LINES, "hangup").await;
    let spooled = w.spool.path().join("c4.wav");
    std::fs::write(&spooled, stereo_wav(1_000)).unwrap();
    let worker = EvaluationWorker::new(
        w.store.clone(),
        runtime.evaluator().unwrap().clone(),
        "w1",
        WorkerSettings::default(),
    );
    assert!(worker.drain().await.is_err(), "the job waits");
    let scan = runtime.recording_uploader().unwrap().scan().await;
    assert_eq!((scan.stored, scan.waiting), (0, 1));
    assert!(spooled.exists(), "the recording waits");
    assert!(w.s3.objects().is_empty());
    assert!(w.s3.requests().iter().all(|r| r.status == 403));
    assert!(
        w.store
            .call("c4")
            .await
            .unwrap()
            .unwrap()
            .objects
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_upload_leaves_the_job_to_another_and_objects_are_stored_once() {
    let w = world(SECRET_KEY).await;
    w.call("c5").await;
    w.extract("c5", true).await;
    w.s3.stall(true);
    let first = w.worker("w1");
    let dying = tokio::spawn(async move { first.drain().await });
    notified_until(w.s3.changed(), || (w.s3.arrived() > 0).then_some(())).await;
    dying.abort();
    assert!(dying.await.unwrap_err().is_cancelled(), "killed mid-upload");
    w.s3.stall(false);

    let second = w.worker("w2");
    assert!(eventually(WAIT, async || matches!(second.drain().await, Ok(1))).await);
    let [_, transcript, profile, audit] = expected_keys(&started_at(&w.store, "c5").await, "c5");
    assert_eq!(
        w.bucket_keys(),
        prefixed(&[transcript.clone(), profile.clone(), audit.clone()])
    );
    for key in [&transcript, &profile, &audit] {
        assert_eq!(w.s3.writes_of(&format!("voxpipe/{key}")), 1, "{key}");
    }
    assert_eq!(w.judge.chat_requests().len(), 1, "the verdict was reused");
    assert_eq!(second.drain().await.unwrap(), 0, "the job is acknowledged");
}

#[test]
fn the_local_folder_default_works_with_no_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[pipeline]\nname = \"parrot\"\n\n[[processor]]\ntype = \"parrot\"\n\n\
             [context]\npath = \"{}\"\n\n\
             [evaluator]\nbase_url = \"http://127.0.0.1:9\"\nmodel = \"judge\"\n\n[storage]\n\n\
             [recording]\nenabled = true\n",
            dir.path().join("context.jsonl").display()
        ),
    )
    .unwrap();
    let input = dir.path().join("in.wav");
    voxpipe::audio::write_wav(&input, 16_000, &vec![0i16; 16_000]).unwrap();
    let voxpipe = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_voxpipe"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {stderr}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    voxpipe(&[
        "run",
        "p.toml",
        "--input",
        "in.wav",
        "--session-id",
        "local-1",
    ]);
    let root = dir.path().join("voxpipe-data/objects");
    let listed = voxpipe(&["calls", "objects", "local-1", "--json", "-p", "p.toml"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let transcript = listed["objects"]["transcript"]["key"].as_str().unwrap();
    let audit = listed["objects"]["audit"]["key"].as_str().unwrap();
    assert!(transcript.starts_with("calls/transcripts/"), "{listed}");
    assert!(transcript.ends_with("/local-1/transcript.json"));
    assert!(audit.starts_with("audit/"), "{listed}");
    assert!(root.join(transcript).is_file());
    assert!(root.join(audit).is_file());
    assert!(listed["objects"]["transcript"]["bytes"].as_u64().unwrap() > 0);
    assert!(
        listed["objects"]["profile"]["key"].is_null(),
        "not extracted"
    );
    // The recording went from the default spool to its key, and left it.
    let recording = listed["objects"]["recording"]["key"].as_str().unwrap();
    assert!(recording.ends_with("/local-1/recording.wav"), "{listed}");
    let (rate, channels) = voxpipe::audio::read_wav(&root.join(recording))
        .map(|wav| (wav.sample_rate, wav.channels))
        .unwrap();
    assert_eq!((rate, channels), (16_000, 2));
    assert!(
        !dir.path()
            .join("voxpipe-data/recordings/local-1.wav")
            .exists()
    );

    voxpipe(&[
        "calls",
        "fetch",
        "local-1",
        "transcript",
        "--output",
        "t.json",
        "-p",
        "p.toml",
    ]);
    let fetched: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("t.json")).unwrap()).unwrap();
    assert_eq!(fetched["call_id"], "local-1");
    let shown = voxpipe(&["calls", "show", "local-1", "-p", "p.toml"]);
    assert!(shown.contains("stored objects"), "{shown}");
    assert!(shown.contains(transcript), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_uploader_scans_once_more_so_recordings_finished_while_draining_go_up() {
    let w = world(SECRET_KEY).await;
    w.call("c7").await;
    w.call("c8").await;
    let (first, _) = w.record("c7", 1_000);
    let uploader = w.runtime.recording_uploader().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = uploader.run(
        async {
            let _ = stop_rx.await;
        },
        std::future::pending(),
    );
    // c8's call ends (its file renamed into the spool) after the scan that
    // took c7 had listed the spool, and the uploader stops at once: no
    // scan but the last one after the stop finds it.
    let last = w.spool.path().join("c8.wav");
    let stop = async {
        notified_until(w.s3.changed(), || (w.s3.arrived() > 0).then_some(())).await;
        std::fs::write(&last, stereo_wav(1_000)).unwrap();
        stop_tx.send(()).unwrap();
    };
    tokio::join!(run, stop);

    assert!(!first.exists() && !last.exists(), "both left the spool");
    for id in ["c7", "c8"] {
        let [recording, ..] = expected_keys(&started_at(&w.store, id).await, id);
        assert_eq!(
            w.keys(id).await.recording.as_deref(),
            Some(recording.as_str())
        );
        assert_eq!(w.s3.writes_of(&format!("voxpipe/{recording}")), 1, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cancelled_at_the_deadline_is_aborted_and_its_file_kept() {
    let w = world(SECRET_KEY).await;
    w.call("c9").await;
    let frames = voxpipe::objects::PART_BYTES / 4 + 100_000;
    let (spooled, wav) = w.record("c9", frames);
    w.s3.hold_parts(true);
    let uploader = w.runtime.recording_uploader().unwrap();
    let (cancel_tx, cancel_rx) = tokio::sync::oneshot::channel::<()>();
    let run = uploader.run(std::future::pending(), async {
        let _ = cancel_rx.await;
    });
    let cancel = async {
        // The upload began and a part is on its way: the deadline comes.
        let began = || {
            let began =
                w.s3.requests()
                    .iter()
                    .any(|r| r.method == "POST" && r.query.starts_with("uploads"));
            (began && w.s3.arrived() >= 2).then_some(())
        };
        notified_until(w.s3.changed(), began).await;
        cancel_tx.send(()).unwrap();
    };
    tokio::join!(run, cancel);

    let requests = w.s3.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.method == "DELETE" && r.query.contains("uploadId") && r.status < 300),
        "the multipart upload was aborted: {requests:#?}"
    );
    assert!(spooled.exists(), "the recording stays for the next start");
    assert!(w.keys("c9").await.recording.is_none());
    assert!(
        !w.bucket_keys().iter().any(|k| k.ends_with("recording.wav")),
        "no object"
    );

    // The next start uploads it whole.
    w.s3.hold_parts(false);
    assert_eq!(uploader.scan().await.stored, 1);
    let stored = w.s3.objects();
    let (_, bytes) = stored
        .iter()
        .find(|(k, _)| k.ends_with("recording.wav"))
        .unwrap();
    assert!(*bytes == wav, "the whole file, byte for byte");
}
