//! Learning from calls (`[learning]`): a call judged a success becomes
//! skills (`skill:{hash}`, found by `search_context` after its next
//! refresh) and test cases (`test_cases:list`); against a real
//! redis-server and a fake OpenAI-compatible server (the judge, the
//! learning model and the embedder). Also: a failed call teaches nothing,
//! malformed answers are asked again then recorded, an embedder that is
//! down defers the skills without asking the model twice, a job run twice
//! writes once, and transcripts of calls handled elsewhere come in through
//! `voxpipe learn` and `POST /api/learn`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::{Value, json};
use support::fake::openai::{FakeOpenAi, Reply, verdict};
use support::processors::registry;
use support::redis_server::RedisServer;
use support::server::{Setup as ServerSetup, TestServer};
use support::turns::converse;
use voxpipe::agent::AgentRuntime;
use voxpipe::agent::eval::queue_evaluation;
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::store::{Learned, Store, TestCase, trigger_hash};

const WON_CALL: &[&str] = &[
    "assistant: Hi, this is Ann from Acme. Do you have a minute?",
    "user: Honestly it is too expensive for us.",
    "assistant: Most clients pay it back in three months; I can show you the numbers.",
    "user: We have no time this quarter.",
    "assistant: Then a two week pilot, set up by us.",
    "user: Fine, book it.",
];

fn pairs_answer(pairs: &[(&str, &str, &str)]) -> Reply {
    let pairs: Vec<Value> = pairs
        .iter()
        .map(|(objection, rebuttal, target)| {
            json!({"objection": objection, "rebuttal": rebuttal, "target": target})
        })
        .collect();
    Reply::Completion(json!({ "pairs": pairs }).to_string())
}

fn won_pairs() -> Reply {
    pairs_answer(&[
        (
            "It is too expensive for us",
            "Show the payback in months",
            "Turns price into return on investment",
        ),
        (
            "We have no time this quarter",
            "Offer a pilot we set up",
            "Removes the effort the customer fears",
        ),
    ])
}

struct Setup {
    redis: RedisServer,
    model: FakeOpenAi,
    runtime: Arc<AgentRuntime>,
    toml: String,
    dir: tempfile::TempDir,
}

impl Setup {
    fn store(&self) -> Arc<dyn Store> {
        self.runtime.store().clone()
    }

    async fn learned(&self, call_id: &str) -> Option<Learned> {
        self.store().call(call_id).await.unwrap().unwrap().learned
    }

    /// `voxpipe ARGS -p agent.toml`, off the test's runtime (the fake
    /// model answers on it).
    async fn voxpipe(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_voxpipe"));
        command
            .args(args)
            .arg("-p")
            .arg(self.dir.path().join("agent.toml"))
            .env("TEST_REDIS", self.redis.url());
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }
}

/// A pipeline on Redis judging calls and learning from them, plus `extra`
/// (more `[learning]` keys, then other sections).
async fn setup(extra: &str) -> Setup {
    let redis = RedisServer::start();
    let model = FakeOpenAi::judge().await;
    let url = &model.base_url;
    let fast = "connection = { response_timeout_secs = 5, max_retries = 0 }";
    let toml = format!(
        "[pipeline]\nname = \"agent\"\n\n[server]\napi_open = true\n\n\
         [context]\nstore = \"redis\"\nurl_env = \"TEST_REDIS\"\n\n\
         [context.skills]\nbase_url = \"{url}\"\nmodel = \"embed-1\"\ntop_k = 1\n{fast}\n\n\
         [evaluator]\nbase_url = \"{url}\"\nmodel = \"judge-1\"\n{fast}\n\n\
         [learning]\nbase_url = \"{url}\"\nmodel = \"learner-1\"\n{fast}\n{extra}\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, &toml).unwrap();
    let config = parse_pipeline(&path, &toml, &registry()).unwrap();
    let env = EnvSource::Fixed(Arc::new(HashMap::from([(
        "TEST_REDIS".to_owned(),
        redis.url(),
    )])));
    let runtime = Arc::new(config.agent_runtime(&env).unwrap());
    Setup {
        redis,
        model,
        runtime,
        toml,
        dir,
    }
}

fn message(request: &Value, index: usize) -> String {
    request["messages"][index]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_successful_call_teaches_skills_and_test_cases_that_search_context_finds() {
    let s = setup("").await;
    s.model
        .push_chats([verdict("success", 0.9, &["pilot"]), won_pairs()]);
    converse(&s.runtime, "c1", "twilio", WON_CALL, "hangup").await;
    let library = s.runtime.skills().unwrap();
    library.refresh().await.unwrap();
    assert!(library.is_empty());

    s.runtime.worker("w1").unwrap().drain().await.unwrap();
    assert_eq!(s.redis.pending_jobs().await, 0);

    // The learning model: strict JSON through a json_schema format, the
    // transcript in the message.
    let requests = s.model.chat_requests();
    assert_eq!(requests.len(), 2, "the judge, then the learning model");
    let learning = &requests[1];
    assert_eq!(learning["model"], "learner-1");
    assert_eq!(learning["response_format"]["type"], "json_schema");
    assert_eq!(
        learning["response_format"]["json_schema"]["name"],
        "objection_pairs"
    );
    assert_eq!(learning["response_format"]["json_schema"]["strict"], true);
    assert!(
        message(learning, 1).contains("Customer: Honestly it is too expensive for us.\n"),
        "{}",
        message(learning, 1)
    );

    // The call says what it taught.
    let expensive = trigger_hash("It is too expensive for us");
    match s.learned("c1").await {
        Some(Learned::Learned {
            pairs,
            skills,
            test_cases_added,
            model,
            attempts,
            ..
        }) => {
            assert_eq!(pairs.len(), 2);
            assert_eq!(
                skills,
                [
                    expensive.clone(),
                    trigger_hash("We have no time this quarter")
                ]
            );
            assert_eq!(
                (test_cases_added, model.as_str(), attempts),
                (2, "learner-1", 1)
            );
        }
        other => panic!("{other:?}"),
    }

    // skill:{hash} with trigger, rebuttal and the embedder's vector.
    let mut redis = s.redis.client().await;
    let fields: HashMap<String, Vec<u8>> =
        redis.hgetall(format!("skill:{expensive}")).await.unwrap();
    assert_eq!(fields["trigger"], b"It is too expensive for us");
    assert_eq!(fields["rebuttal"], b"Show the payback in months");
    assert_eq!(fields["vector"].len(), 4 * support::fake::openai::DIMS);
    assert_eq!(
        s.store().test_cases().await.unwrap(),
        [
            TestCase {
                input: "It is too expensive for us".into(),
                target: "Turns price into return on investment".into(),
            },
            TestCase {
                input: "We have no time this quarter".into(),
                target: "Removes the effort the customer fears".into(),
            },
        ]
    );

    // search_context finds the new skill on its next refresh.
    let refreshed = library.refresh().await.unwrap();
    assert_eq!(refreshed.added, 2);
    let found: Value = serde_json::from_str(
        &library
            .search_context(json!({"query": "that is too expensive"}))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        found["results"][0]["rebuttal"],
        "Show the payback in months"
    );

    // The same objection from another call, spelled differently, updates
    // its skill and adds no test case.
    s.model.push_chats([
        verdict("success", 0.8, &[]),
        pairs_answer(&[("it is TOO  expensive for us", "Offer a smaller plan", "Any")]),
    ]);
    converse(&s.runtime, "c2", "twilio", WON_CALL, "hangup").await;
    s.runtime.worker("w1").unwrap().drain().await.unwrap();
    assert_eq!(s.store().skill_hashes().await.unwrap().len(), 2);
    let rebuttal: String = redis
        .hget(format!("skill:{expensive}"), "rebuttal")
        .await
        .unwrap();
    assert_eq!(rebuttal, "Offer a smaller plan");
    assert_eq!(s.store().test_cases().await.unwrap().len(), 2);
    assert!(matches!(
        s.learned("c2").await,
        Some(Learned::Learned {
            test_cases_added: 0,
            ..
        })
    ));
}

#[tokio::test]
async fn a_failed_call_or_one_without_a_customer_teaches_nothing_and_says_why() {
    let s = setup("").await;
    s.model.push_chats([verdict("failure", 0.2, &[])]);
    converse(&s.runtime, "lost", "twilio", WON_CALL, "hangup").await;
    s.model.push_chats([verdict("success", 0.7, &[])]);
    let silent = ["assistant: Hello?", "assistant: Anyone there?"];
    converse(&s.runtime, "silent", "twilio", &silent, "hangup").await;
    s.runtime.worker("w1").unwrap().drain().await.unwrap();

    let models: Vec<Value> = s
        .model
        .chat_requests()
        .iter()
        .map(|r| r["model"].clone())
        .collect();
    assert_eq!(
        models,
        ["judge-1", "judge-1"],
        "the learning model is not asked"
    );
    for (call, why) in [
        ("lost", "the call was judged a failure"),
        ("silent", "the transcript has no customer turn"),
    ] {
        match s.learned(call).await {
            Some(Learned::Nothing {
                reason,
                attempts: 0,
                ..
            }) => assert_eq!(reason, why),
            other => panic!("{call}: {other:?}"),
        }
    }
    assert!(s.store().skill_hashes().await.unwrap().is_empty());
    assert!(s.store().test_cases().await.unwrap().is_empty());
    assert_eq!(s.redis.pending_jobs().await, 0);
}

#[tokio::test]
async fn malformed_answers_are_asked_again_with_the_errors_then_recorded() {
    let s = setup("max_attempts = 2").await;
    s.model.push_chats([
        verdict("success", 0.9, &[]),
        Reply::Completion("Sure! The customer said it was expensive.".into()),
        Reply::Completion(json!({"pairs": [{"objection": "Too expensive"}]}).to_string()),
    ]);
    converse(&s.runtime, "c1", "twilio", WON_CALL, "hangup").await;
    s.runtime.worker("w1").unwrap().drain().await.unwrap();

    let requests = s.model.chat_requests();
    assert_eq!(requests.len(), 3);
    let told = message(&requests[2], 3);
    assert!(
        told.starts_with("That answer cannot be used: the answer is not JSON"),
        "{told}"
    );
    match s.learned("c1").await {
        Some(Learned::Nothing {
            reason, attempts, ..
        }) => {
            assert_eq!(attempts, 2);
            assert!(
                reason.starts_with("no usable answer after 2 attempts"),
                "{reason}"
            );
            assert!(reason.contains("breaks the schema"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.redis.pending_jobs().await, 0, "recorded and acknowledged");
    assert!(s.store().test_cases().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_embedder_that_is_down_defers_the_skills_and_a_rerun_does_not_ask_the_model_again() {
    let s = setup("").await;
    s.model
        .push_chats([verdict("success", 0.9, &[]), won_pairs()]);
    s.model.embeddings_down(true);
    converse(&s.runtime, "c1", "twilio", WON_CALL, "hangup").await;
    let err = s.runtime.worker("w1").unwrap().drain().await.unwrap_err();
    assert!(
        err.to_string().contains("the embedder unavailable"),
        "{err}"
    );

    // What does not need the embedder is recorded: the verdict, the test
    // cases, the pairs (waiting for their skills).
    let call = s.store().call("c1").await.unwrap().unwrap();
    assert!(call.outcome.is_some());
    assert_eq!(call.post_call_deferrals, 1);
    match &call.learned {
        Some(Learned::Waiting {
            pairs,
            test_cases_added: 2,
            ..
        }) => assert_eq!(pairs.len(), 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.store().test_cases().await.unwrap().len(), 2);
    assert!(s.store().skill_hashes().await.unwrap().is_empty());
    assert_eq!(s.redis.pending_jobs().await, 1);

    s.model.embeddings_down(false);
    let taken = s
        .store()
        .reclaim_jobs("w2", Duration::ZERO, 8)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    s.runtime
        .worker("w2")
        .unwrap()
        .process(&taken[0])
        .await
        .unwrap();
    assert!(matches!(
        s.learned("c1").await,
        Some(Learned::Learned {
            test_cases_added: 2,
            ..
        })
    ));
    assert_eq!(s.store().skill_hashes().await.unwrap().len(), 2);
    assert_eq!(s.model.chat_requests().len(), 2, "neither asked again");
    assert_eq!(s.redis.pending_jobs().await, 0);
}

#[tokio::test]
async fn an_embedder_that_refuses_the_request_is_not_asked_again_for_a_day() {
    let s = setup("").await;
    s.model
        .push_chats([verdict("success", 0.9, &[]), won_pairs()]);
    s.model.refuse_embeddings();
    converse(&s.runtime, "c1", "twilio", WON_CALL, "hangup").await;

    // A 400 is permanent: recorded at once, the job done, not deferred.
    assert_eq!(s.runtime.worker("w1").unwrap().drain().await.unwrap(), 1);

    let call = s.store().call("c1").await.unwrap().unwrap();
    assert_eq!(call.post_call_deferrals, 0);
    match &call.learned {
        Some(Learned::Nothing { reason, .. }) => {
            assert!(reason.contains("2 skills not stored"), "{reason}");
            assert!(reason.contains("the embedder refused"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.model.embedding_requests().len(), 1);
    assert_eq!(s.store().test_cases().await.unwrap().len(), 2, "kept");
    assert!(s.store().skill_hashes().await.unwrap().is_empty());
    assert_eq!(s.redis.pending_jobs().await, 0);
}

#[tokio::test]
async fn a_job_run_twice_learns_once() {
    let s = setup("").await;
    s.model
        .push_chats([verdict("success", 0.9, &[]), won_pairs()]);
    converse(&s.runtime, "c1", "twilio", WON_CALL, "hangup").await;
    let worker = s.runtime.worker("w1").unwrap();
    worker.drain().await.unwrap();
    let first = s.learned("c1").await;
    assert!(matches!(first, Some(Learned::Learned { .. })), "{first:?}");

    // Delivered again (a worker that wrote and died before its ack).
    queue_evaluation(&*s.store(), "c1").await.unwrap();
    assert_eq!(worker.drain().await.unwrap(), 1);
    assert_eq!(s.model.chat_requests().len(), 2);
    assert_eq!(s.model.embedding_requests().len(), 1);
    assert_eq!(s.learned("c1").await, first);
    assert_eq!(s.store().skill_hashes().await.unwrap().len(), 2);
    assert_eq!(s.store().test_cases().await.unwrap().len(), 2);

    // The operator sees what the call taught.
    let out = s.voxpipe(&["calls", "show", "c1"]).await;
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("  learned  2 skill(s) stored, 2 new test case(s):\n    \"It is too expensive for us\" → Show the payback in months\n"),
        "{shown}"
    );
}

#[tokio::test]
async fn voxpipe_learn_ingests_a_human_handled_transcript() {
    let s = setup("").await;
    let file = s.dir.path().join("call.txt");
    std::fs::write(
        &file,
        "Agent: Hi, Bob from Acme.\nCustomer: It is too expensive for us.\n\
         Agent: It pays back in three months.\nCustomer: OK, send the contract.\n",
    )
    .unwrap();
    s.model.push_chats([pairs_answer(&[(
        "It is too expensive for us",
        "Show the payback in months",
        "Turns price into return on investment",
    )])]);
    let out = s
        .voxpipe(&[
            "learn",
            file.to_str().unwrap(),
            "--outcome",
            "closed_deal",
            "--agent",
            "human",
        ])
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("learned 1 pair(s) from a closed_deal (human agent): 1 skill(s) stored, 1 new test case(s)"),
        "{stdout}"
    );
    let request = &s.model.chat_requests()[0];
    assert!(
        message(request, 1)
            .starts_with("A call handled by a human sales rep, who closed the deal.")
    );
    assert!(message(request, 1).contains("Customer: It is too expensive for us.\n"));
    let skills = s
        .store()
        .skills(&[trigger_hash("it is too expensive for us")])
        .await
        .unwrap();
    assert_eq!(
        skills[0].as_ref().unwrap().rebuttal,
        "Show the payback in months"
    );

    // A lost deal, as JSON turns: a test case, no skill.
    let lost = s.dir.path().join("lost.json");
    std::fs::write(
        &lost,
        json!([{"role": "agent", "text": "Shall we start?"}, {"role": "customer", "text": "We already use a competitor."}])
            .to_string(),
    )
    .unwrap();
    s.model.push_chats([pairs_answer(&[(
        "We already use a competitor",
        "Ask what they miss in it",
        "Finds the gap the competitor leaves",
    )])]);
    let out = s
        .voxpipe(&[
            "learn",
            lost.to_str().unwrap(),
            "--outcome",
            "lost_deal",
            "--agent",
            "ai",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(message(&s.model.chat_requests()[1], 0).contains("did not overcome"));
    assert_eq!(
        s.store().skill_hashes().await.unwrap().len(),
        1,
        "no skill from a lost deal"
    );
    let cases = s.store().test_cases().await.unwrap();
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[1].input, "We already use a competitor");

    // Bad input: named, and the model is not asked.
    std::fs::write(&file, "Agent: Hello?\n").unwrap();
    let out = s
        .voxpipe(&[
            "learn",
            file.to_str().unwrap(),
            "--outcome",
            "closed_deal",
            "--agent",
            "human",
        ])
        .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("call.txt: the transcript has no customer turn"),
        "{stderr}"
    );
    std::fs::write(&file, "Hello there\n").unwrap();
    let out = s
        .voxpipe(&[
            "learn",
            file.to_str().unwrap(),
            "--outcome",
            "closed_deal",
            "--agent",
            "human",
        ])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("call.txt: line 1: expected a line starting"),
        "{stderr}"
    );
    let out = s
        .voxpipe(&[
            "learn",
            file.to_str().unwrap(),
            "--outcome",
            "won",
            "--agent",
            "human",
        ])
        .await;
    assert!(!out.status.success());
    assert_eq!(s.model.chat_requests().len(), 2);
}

#[tokio::test]
async fn post_api_learn_ingests_a_transcript_and_names_a_bad_field() {
    let s = setup("").await;
    let toml = s
        .toml
        .replace("api_open = true", "api_token_env = \"LEARN_TOKEN\"");
    let env = [
        ("TEST_REDIS", s.redis.url()),
        ("LEARN_TOKEN", "s3cret".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start(ServerSetup {
        toml: Some(&toml),
        path: "agent.toml",
        env: &env,
        context: Some(Arc::clone(&s.runtime)),
        ..ServerSetup::default()
    })
    .await;
    let client = reqwest::Client::new();
    let post = |body: Value| {
        client
            .post(server.url("/api/learn"))
            .bearer_auth("s3cret")
            .json(&body)
            .send()
    };

    // The management API's key is required.
    let anonymous = client
        .post(server.url("/api/learn"))
        .json(&json!({"transcript": "Customer: hi", "outcome": "closed_deal", "agent": "ai"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    s.model.push_chats([won_pairs()]);
    let response = post(json!({
        "transcript": "Agent: Hello.\nCustomer: It is too expensive for us.\nCustomer: And we have no time this quarter.",
        "outcome": "closed_deal",
        "agent": "human",
    }))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["skills"].as_array().unwrap().len(), 2);
    assert_eq!(report["test_cases_added"], 2);
    assert_eq!(
        report["pairs"][1]["objection"],
        "We have no time this quarter"
    );
    assert_eq!(s.store().skill_hashes().await.unwrap().len(), 2);

    for (body, field) in [
        (
            json!({"transcript": [], "outcome": "won", "agent": "human"}),
            "outcome",
        ),
        (
            json!({"transcript": [{"role": "agent", "text": "hi"}], "outcome": "lost_deal", "agent": "ai"}),
            "transcript",
        ),
        (
            json!({"transcript": [{"role": "boss", "text": "hi"}], "outcome": "lost_deal", "agent": "ai"}),
            "transcript",
        ),
        (
            json!({"transcript": "Customer: no", "outcome": "lost_deal"}),
            "agent",
        ),
    ] {
        let response = post(body.clone()).await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["field"], field, "{error}");
    }
    let response = client
        .post(server.url("/api/learn"))
        .bearer_auth("s3cret")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // The embedder down: 503, and the test cases written stay.
    s.model.embeddings_down(true);
    s.model.push_chats([pairs_answer(&[(
        "We use a competitor",
        "Ask what they miss",
        "Finds the gap",
    )])]);
    let response = post(json!({"transcript": "Customer: We use a competitor.", "outcome": "closed_deal", "agent": "ai"}))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(s.store().test_cases().await.unwrap().len(), 3);
    assert_eq!(
        s.model.chat_requests().len(),
        2,
        "bad requests never reach the model"
    );
}

#[test]
fn voxpipe_check_names_a_learning_section_without_an_embedder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("learn.toml");
    std::fs::write(
        &path,
        "[pipeline]\nname = \"x\"\n\n[learning]\nmodel = \"m\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:4:", path.display())), "{err}");
    assert!(
        err.contains("key `learning`: needs [context.skills]"),
        "{err}"
    );
    std::fs::write(
        &path,
        "[pipeline]\nname = \"x\"\n\n[learning]\nmodle = \"m\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .arg("check")
        .arg(Path::new(&path))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("learning.modle") || err.contains("unknown field `modle`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_job_given_up_records_that_the_call_taught_nothing() {
    let s = setup("").await;
    converse(&s.runtime, "c1", "twilio", WON_CALL, "hangup").await;
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
    match s.learned("c1").await {
        Some(Learned::Nothing {
            reason,
            attempts: 0,
            ..
        }) => assert!(reason.contains("after 2 deliveries"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.redis.pending_jobs().await, 0);
}

#[tokio::test]
async fn a_success_scored_below_min_score_teaches_nothing() {
    let s = setup("min_score = 0.95").await;
    s.model.push_chats([verdict("success", 0.9, &[])]);
    converse(&s.runtime, "c1", "twilio", WON_CALL, "hangup").await;
    s.runtime.worker("w1").unwrap().drain().await.unwrap();
    match s.learned("c1").await {
        Some(Learned::Nothing { reason, .. }) => {
            assert_eq!(reason, "a success scored 0.9, below min_score 0.95");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.model.chat_requests().len(), 1, "only the judge");
    assert!(s.store().test_cases().await.unwrap().is_empty());
}
