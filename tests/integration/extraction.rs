//! Structured extraction after a call (`[extraction]`), against a real
//! redis-server, a fake OpenAI-compatible model and a fake webhook
//! receiver: the result in `call:{id}` and the webhook, answers asked
//! again, the JSON-mode fallback, a worker killed mid-extraction, a model
//! that is down, and a schema that `voxpipe check` refuses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::fake::openai::{FakeOpenAi, Reply, verdict};
use support::fake::webhook_receiver::WebhookReceiver;
use support::processors::registry;
use support::redis_server::RedisServer;
use support::turns::converse;
use voxpipe::agent::AgentRuntime;
use voxpipe::agent::eval::queue_evaluation;
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::store::time::unix_ms;
use voxpipe::store::{Extraction, Outcome, Store};

/// Seed 002's profile, cut down to what the tests need.
fn profile_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "adversarial_score": {"type": "number", "minimum": 0, "maximum": 10},
            "consent_given": {"type": "boolean"}
        },
        "required": ["name", "adversarial_score", "consent_given"],
        "additionalProperties": false
    })
}

fn good_profile() -> Value {
    json!({"name": "Ann Lee", "adversarial_score": 2.5, "consent_given": true})
}

const CALL: &[&str] = &[
    "assistant: May I record your work history?",
    "user: Yes. I'm Ann Lee, a welder since 2004.",
];

struct Setup {
    redis: RedisServer,
    model: FakeOpenAi,
    hook: WebhookReceiver,
    runtime: AgentRuntime,
    /// Holds the pipeline file and its schema file.
    dir: tempfile::TempDir,
}

impl Setup {
    fn store(&self) -> Arc<dyn Store> {
        self.runtime.store().clone()
    }

    async fn extraction(&self, call_id: &str) -> Option<Extraction> {
        self.store()
            .call(call_id)
            .await
            .unwrap()
            .unwrap()
            .extraction
    }

    /// Delivers the outbox now; the bodies the receiver got.
    async fn delivered(&self) -> Vec<(String, Value)> {
        let deliverer = self.runtime.deliverer().unwrap().unwrap();
        deliverer.deliver_due(unix_ms()).await.unwrap();
        self.hook
            .received()
            .iter()
            .map(|r| {
                let event = r.headers["x-voxpipe-event"].to_str().unwrap().to_owned();
                (event, serde_json::from_slice(&r.body).unwrap())
            })
            .collect()
    }
}

/// A pipeline at `dir/agent.toml` on Redis, posting to a webhook, with
/// `[extraction]` reading `schemas/profile.json` next to it, plus `extra`
/// (more extraction keys, then other sections; `{model}` stands for the
/// fake model's URL).
async fn setup(extra: &str) -> Setup {
    let redis = RedisServer::start();
    let model = FakeOpenAi::judge().await;
    let hook = WebhookReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("schemas")).unwrap();
    std::fs::write(
        dir.path().join("schemas/profile.json"),
        profile_schema().to_string(),
    )
    .unwrap();
    let toml = format!(
        "[pipeline]\nname = \"agent\"\n\n[context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\n\n\
         [webhook]\nurl = \"{}\"\n\n\
         [extraction]\nschema_file = \"schemas/profile.json\"\nschema_name = \"worker_profile\"\n\
         base_url = \"{}\"\nmodel = \"extractor-1\"\n\
         connection = {{ response_timeout_secs = 5, max_retries = 0 }}\n{}\n",
        hook.url(),
        model.base_url,
        extra.replace("{model}", &model.base_url),
    );
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, &toml).unwrap();
    let config = parse_pipeline(&path, &toml, &registry()).unwrap();
    let env = EnvSource::Fixed(Arc::new(HashMap::from([(
        "TEST_REDIS".to_owned(),
        redis.url(),
    )])));
    let runtime = config.agent_runtime(&env).unwrap();
    Setup {
        redis,
        model,
        hook,
        runtime,
        dir,
    }
}

fn answer(value: &Value) -> Reply {
    Reply::Completion(value.to_string())
}

fn message(request: &Value, index: usize) -> String {
    request["messages"][index]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_call_is_extracted_into_its_record_and_the_webhook_without_an_evaluator() {
    let s = setup("webhook_event = \"worker_profile_completed\"").await;
    s.model.push_chats([answer(&good_profile())]);
    converse(&s.runtime, "c1", "twilio", CALL, "hangup").await;
    assert_eq!(
        s.store().outbox_len().await.unwrap(),
        0,
        "the webhook waits for the extraction"
    );
    assert!(s.runtime.evaluator().is_none(), "nothing judges the call");
    let worker = s.runtime.worker("w1").expect("a worker runs the job");
    assert_eq!(worker.drain().await.unwrap(), 1);

    match s.extraction("c1").await {
        Some(Extraction::Extracted {
            data,
            model,
            attempts,
            ..
        }) => {
            assert_eq!(data, good_profile());
            assert_eq!((model.as_str(), attempts), ("extractor-1", 1));
        }
        other => panic!("{other:?}"),
    }
    // Structured outputs, strict, with the schema; the schema and the
    // transcript in the messages.
    let request = &s.model.chat_requests()[0];
    assert_eq!(
        request["response_format"],
        json!({"type": "json_schema", "json_schema": {
            "name": "worker_profile", "schema": profile_schema(), "strict": true}})
    );
    assert!(message(request, 0).contains("\"adversarial_score\""));
    assert!(message(request, 1).contains("user: Yes. I'm Ann Lee, a welder since 2004.\n"));

    let delivered = s.delivered().await;
    assert_eq!(delivered.len(), 1);
    let (event, body) = &delivered[0];
    assert_eq!(event, "worker_profile_completed");
    assert_eq!(body["event_type"], "worker_profile_completed");
    assert_eq!(body["event_id"], "worker_profile_completed:c1");
    assert_eq!(body["extraction"]["status"], "extracted");
    assert_eq!(body["extraction"]["data"], good_profile());
    assert_eq!(body["call"]["extraction"]["data"], good_profile());
    assert!(body["evaluation"].is_null());

    // The operator sees it.
    let shown = calls_show(&s, "c1");
    assert!(
        shown.contains("  extraction by extractor-1 (1 attempt):\n"),
        "{shown}"
    );
    assert!(shown.contains("    \"name\": \"Ann Lee\",\n"), "{shown}");
}

/// `voxpipe calls show ID` against the setup's pipeline and Redis.
fn calls_show(s: &Setup, id: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .args(["calls", "show", id, "-p"])
        .arg(s.dir.path().join("agent.toml"))
        .env("TEST_REDIS", s.redis.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn with_an_evaluator_the_verdict_comes_first_and_the_event_name_stays() {
    let s = setup("\n[evaluator]\nbase_url = \"{model}\"\nmodel = \"judge-1\"\n").await;
    s.model.push_chats([
        verdict("success", 0.9, &["Ask first"]),
        answer(&good_profile()),
    ]);
    converse(&s.runtime, "c1", "twilio", CALL, "hangup").await;
    s.runtime.worker("w1").unwrap().drain().await.unwrap();
    let call = s.store().call("c1").await.unwrap().unwrap();
    assert_eq!(call.outcome, Some(Outcome::Success));
    assert!(matches!(
        call.extraction,
        Some(Extraction::Extracted { .. })
    ));
    let models: Vec<Value> = s
        .model
        .chat_requests()
        .iter()
        .map(|r| r["model"].clone())
        .collect();
    assert_eq!(models, ["judge-1", "extractor-1"]);
    let (event, body) = &s.delivered().await[0];
    assert_eq!(event, "call_completed");
    assert_eq!(body["evaluation"]["outcome"], "success");
    assert_eq!(body["extraction"]["data"]["name"], "Ann Lee");
}

#[tokio::test]
async fn answers_that_are_not_json_or_break_the_schema_are_asked_again_with_the_errors() {
    let s = setup("").await;
    let breaking = json!({"name": 5, "adversarial_score": 11, "consent_given": true});
    s.model.push_chats([
        Reply::Completion("Sure! Ann Lee, a welder.".into()),
        answer(&breaking),
        answer(&good_profile()),
    ]);
    converse(&s.runtime, "c1", "twilio", CALL, "hangup").await;
    s.runtime.worker("w1").unwrap().drain().await.unwrap();
    match s.extraction("c1").await {
        Some(Extraction::Extracted { data, attempts, .. }) => {
            assert_eq!((data, attempts), (good_profile(), 3));
        }
        other => panic!("{other:?}"),
    }
    let requests = s.model.chat_requests();
    let second = &requests[1];
    assert_eq!(message(second, 2), "Sure! Ann Lee, a welder.");
    assert!(
        message(second, 3).contains("the answer is not JSON"),
        "{}",
        message(second, 3)
    );
    let told = message(&requests[2], 5);
    assert!(
        told.starts_with("That answer cannot be used: the answer breaks the schema"),
        "{told}"
    );
    assert!(
        told.contains("/name") && told.contains("/adversarial_score"),
        "{told}"
    );
}

#[tokio::test]
async fn answers_that_never_fit_are_recorded_as_unextracted_with_the_reason() {
    let s = setup("max_attempts = 2").await;
    s.model.push_chats([
        Reply::Completion("no".into()),
        answer(&json!({"name": "Ann"})),
    ]);
    converse(&s.runtime, "c1", "twilio", CALL, "hangup").await;
    s.runtime.worker("w1").unwrap().drain().await.unwrap();
    assert_eq!(s.model.chat_requests().len(), 2);
    match s.extraction("c1").await {
        Some(Extraction::Unextracted {
            reason, attempts, ..
        }) => {
            assert_eq!(attempts, 2);
            assert!(
                reason.starts_with("no schema-valid answer after 2 attempts"),
                "{reason}"
            );
            assert!(reason.contains("adversarial_score"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let (_, body) = &s.delivered().await[0];
    assert_eq!(body["extraction"]["status"], "unextracted");
    assert!(
        body["extraction"]["reason"]
            .as_str()
            .unwrap()
            .contains("after 2 attempts")
    );
    assert_eq!(s.redis.pending_jobs().await, 0);
}

#[tokio::test]
async fn a_server_refusing_json_schema_is_asked_in_json_mode_from_then_on() {
    let s = setup("").await;
    s.model.refuse_json_schema();
    s.model
        .push_chats([answer(&good_profile()), answer(&good_profile())]);
    converse(&s.runtime, "c1", "twilio", CALL, "hangup").await;
    converse(&s.runtime, "c2", "twilio", CALL, "hangup").await;
    s.runtime.worker("w1").unwrap().drain().await.unwrap();
    let kinds: Vec<Value> = s
        .model
        .response_formats()
        .iter()
        .map(|f| f["type"].clone())
        .collect();
    assert_eq!(kinds, ["json_schema", "json_object", "json_object"]);
    for id in ["c1", "c2"] {
        match s.extraction(id).await {
            Some(Extraction::Extracted { attempts, .. }) => assert_eq!(attempts, 1, "{id}"),
            other => panic!("{id}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_worker_killed_mid_extraction_has_its_job_taken_over_and_the_result_stored_once() {
    let s = setup("").await;
    // The first worker's request never gets an answer.
    s.model.push_chats([Reply::Hang]);
    s.model.chat_fallback(answer(&good_profile()));
    converse(&s.runtime, "c1", "twilio", CALL, "hangup").await;

    let doomed = s.runtime.worker("doomed").unwrap();
    let running = tokio::spawn(async move { doomed.run(std::future::pending()).await });
    s.model
        .wait_for_requests("chat/completions", 1, Duration::from_secs(10))
        .await;
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    assert_eq!(
        s.redis.pending_jobs().await,
        1,
        "pending under the dead worker"
    );
    assert!(s.extraction("c1").await.is_none());

    let store = s.store();
    let rescuer = s.runtime.worker("rescuer").unwrap();
    let taken = store
        .reclaim_jobs("rescuer", Duration::ZERO, 8)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    rescuer.process(&taken[0]).await.unwrap();
    assert_eq!(s.redis.pending_jobs().await, 0);
    let first = s.extraction("c1").await;
    assert!(
        matches!(first, Some(Extraction::Extracted { attempts: 1, .. })),
        "{first:?}"
    );

    // The same job again (a worker that wrote and died before its ack, or
    // a repeated queueing): the stored result stays, the model is not asked.
    queue_evaluation(&*store, "c1").await.unwrap();
    assert_eq!(rescuer.drain().await.unwrap(), 1);
    assert_eq!(s.model.chat_requests().len(), 2);
    assert_eq!(s.extraction("c1").await, first);
    let delivered = s.delivered().await;
    assert_eq!(delivered.len(), 1, "one webhook for the call");
}

#[tokio::test]
async fn a_model_that_is_down_leaves_the_job_pending_until_it_is_back() {
    let s = setup("").await;
    s.model
        .push_chats([Reply::error(503, "overloaded", "server_error")]);
    converse(&s.runtime, "c1", "twilio", CALL, "hangup").await;
    let worker = s.runtime.worker("w1").unwrap();
    let err = worker.drain().await.unwrap_err();
    assert!(err.to_string().contains("extraction"), "{err}");
    assert_eq!(s.redis.pending_jobs().await, 1);
    assert!(
        s.extraction("c1").await.is_none(),
        "down is not a bad answer"
    );
    assert_eq!(s.store().outbox_len().await.unwrap(), 0, "no webhook yet");

    s.model.push_chats([answer(&good_profile())]);
    let taken = s
        .store()
        .reclaim_jobs("w2", Duration::ZERO, 8)
        .await
        .unwrap();
    s.runtime
        .worker("w2")
        .unwrap()
        .process(&taken[0])
        .await
        .unwrap();
    assert!(matches!(
        s.extraction("c1").await,
        Some(Extraction::Extracted { .. })
    ));
    assert_eq!(s.redis.pending_jobs().await, 0);
    assert_eq!(s.store().outbox_len().await.unwrap(), 1);
}

#[tokio::test]
async fn a_job_given_up_records_the_call_as_unextracted() {
    let s = setup("").await;
    converse(&s.runtime, "c1", "twilio", CALL, "hangup").await;
    let store = s.store();
    // Delivered twice to workers that never finish; the third gives up.
    store.read_jobs("first", 1, Duration::ZERO).await.unwrap();
    store
        .reclaim_jobs("second", Duration::ZERO, 1)
        .await
        .unwrap();
    // Each began running (noted on the call) before its worker died.
    for _ in 0..2 {
        store
            .update_call("c1", &voxpipe::store::CallChange::PostCallBegun)
            .await
            .unwrap();
    }
    let third = store
        .reclaim_jobs("third", Duration::ZERO, 1)
        .await
        .unwrap();
    s.runtime
        .worker("third")
        .unwrap()
        .process(&third[0])
        .await
        .unwrap();
    assert!(s.model.chat_requests().is_empty());
    match s.extraction("c1").await {
        Some(Extraction::Unextracted {
            reason,
            attempts: 0,
            ..
        }) => {
            assert!(reason.contains("after 2 deliveries"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.delivered().await[0].1["extraction"]["status"],
        "unextracted"
    );
}

/// Writes `toml` to `dir/name` and runs `voxpipe check` on it.
fn check(dir: &Path, name: &str, toml: &str) -> (bool, String) {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn voxpipe_check_names_the_file_line_and_key_of_a_bad_schema() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"type": "object", "properties": {"a": {"type": "strnig"}}}"#,
    )
    .unwrap();
    let head = "[pipeline]\nname = \"x\"\n\n[extraction]\n";

    let (ok, err) = check(
        dir.path(),
        "file.toml",
        &format!("{head}schema_file = \"bad.json\"\n"),
    );
    assert!(!ok);
    let file = dir.path().join("file.toml");
    assert!(
        err.contains(&format!(
            "{}:5:1: key `extraction.schema_file`: ",
            file.display()
        )),
        "{err}"
    );
    assert!(err.contains("bad.json: not a valid JSON Schema"), "{err}");

    let (ok, err) = check(
        dir.path(),
        "inline.toml",
        &format!("{head}model = \"m\"\nschema = {{ type = \"object\", required = \"name\" }}\n"),
    );
    assert!(!ok);
    assert!(
        err.contains("inline.toml:6:1: key `extraction.schema`: not a valid JSON Schema"),
        "{err}"
    );

    let (ok, err) = check(
        dir.path(),
        "missing.toml",
        &format!("{head}schema_file = \"nope.json\"\n"),
    );
    assert!(!ok);
    assert!(
        err.contains("key `extraction.schema_file`: cannot read"),
        "{err}"
    );

    let (ok, err) = check(dir.path(), "none.toml", head);
    assert!(!ok);
    assert!(
        err.contains("key `extraction`: missing required key `schema`"),
        "{err}"
    );

    std::fs::write(dir.path().join("good.json"), profile_schema().to_string()).unwrap();
    let (ok, err) = check(
        dir.path(),
        "good.toml",
        &format!("{head}schema_file = \"good.json\"\n"),
    );
    assert!(ok, "{err}");
}

#[test]
fn the_shipped_outbound_profile_pipeline_holds_seed_002s_profile() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/outbound_profile.toml");
    let config = voxpipe::pipeline_file::load_pipeline(&path, &[], &registry()).unwrap();
    let extraction = config.extraction.expect("[extraction] is on");
    assert_eq!(
        extraction.section.webhook_event.as_deref(),
        Some("worker_profile_completed")
    );
    let profile = json!({
        "name": "John Smith",
        "current_job": {"title": "Engineer", "company": "Tech Corp", "start_year": 2004},
        "employment_history": [
            {"title": "Machinist", "company": "Acme", "start_year": 1970, "end_year": 1977},
            {"title": "Engineer", "company": "Tech Corp", "start_year": 2004, "end_year": null}
        ],
        "employment_gaps": [{"start_year": 1977, "end_year": 2004, "explanation": null}],
        "skills": ["Python", "welding"],
        "adversarial_score": 2.5,
        "confidence_score": 0.85,
        "consent_given": true
    });
    let schema = &extraction.schema;
    assert_eq!(schema.check(&profile.to_string()).unwrap(), profile);
    let mut hostile = profile.clone();
    hostile["adversarial_score"] = json!(11);
    assert!(
        schema.check(&hostile.to_string()).is_err(),
        "scores stop at 10"
    );
    let mut unsure = profile.clone();
    unsure.as_object_mut().unwrap().remove("consent_given");
    assert!(
        schema.check(&unsure.to_string()).is_err(),
        "consent is required"
    );
}
