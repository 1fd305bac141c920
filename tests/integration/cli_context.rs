//! The operator commands, as an operator runs them: against the embedded
//! store's file and against Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::process::{Command, Output};

use support::fake::openai::{FakeOpenAi, verdict};
use support::redis_server::RedisServer;
use voxpipe::conversation::Role;
use voxpipe::store::{CallChange, CallRecord, Interaction, Segment};
use voxpipe::store::{CallStore, RedisStore, StoreSettings};

fn voxpipe(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("VOXPIPE_PIPELINE")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("voxpipe runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn interaction(index: u64, role: Role, text: &str) -> Interaction {
    Interaction {
        index,
        role,
        text: text.to_owned(),
        timestamp: "2026-01-01T00:00:00.000Z".into(),
        session_ms: 0,
        interrupted: false,
        tool_calls: Vec::new(),
        latency_ms: None,
        agent: None,
        reflection: None,
    }
}

#[test]
fn a_file_run_is_stored_in_the_embedded_file_and_shown_by_calls_show() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.wav");
    support::signal::tone_wav(&input, 16_000, 0.5);
    let file = dir.path().join("ctx.jsonl");
    let path = format!("context.path={}", file.display());
    let store = ["-p", "pipelines/parrot.toml", "--set", &path];

    let out = voxpipe(
        &[
            "run",
            "pipelines/parrot.toml",
            "--input",
            input.to_str().unwrap(),
            "--session-id",
            "run-1",
            "--set",
            &path,
            "--param",
            "industry=insurance",
        ],
        &[],
    );
    ok(&out);
    let mut show = vec!["calls", "show", "run-1"];
    show.extend(store);
    let text = ok(&voxpipe(&show, &[]));
    assert!(
        text.starts_with("call run-1  completed  over file\n"),
        "{text}"
    );
    assert!(text.contains("  ended    "), "{text}");
    assert!(text.contains("(end_of_input)"), "{text}");
    assert!(text.contains("  segment  * / insurance\n"), "{text}");
    assert!(text.contains("  param    industry = insurance\n"), "{text}");
    assert!(text.contains("  prompt   toml\n"), "{text}");
    assert!(text.contains("transcript (0 turns)"), "{text}");

    show.push("--json");
    let json: serde_json::Value = serde_json::from_str(&ok(&voxpipe(&show, &[]))).unwrap();
    assert_eq!(json["call"]["status"], "completed");
    assert_eq!(json["call"]["transport"], "file");

    let mut missing = vec!["calls", "show", "nope"];
    missing.extend(store);
    let out = voxpipe(&missing, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no call nope in the memory store"));
}

#[test]
fn tactics_are_added_once_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let path = format!("context.path={}", dir.path().join("ctx.jsonl").display());
    let store = ["-p", "pipelines/agent.toml", "--set", &path];
    let mut add = vec![
        "tactics",
        "add",
        "Anchor on ROI",
        "anchor  on roi",
        "Offer a pilot",
    ];
    add.extend(store);
    assert_eq!(
        ok(&voxpipe(&add, &[])),
        "2 added to agent:tactics (1 already there)\n"
    );
    let mut add_winning = vec!["tactics", "add", "--list", "winning", "Mirror the buyer"];
    add_winning.extend(store);
    ok(&voxpipe(&add_winning, &[]));
    let mut list = vec!["tactics", "list"];
    list.extend(store);
    assert_eq!(
        ok(&voxpipe(&list, &[])),
        "agent:tactics (2)\n  - Anchor on ROI\n  - Offer a pilot\n\
         agent:winning_tactics (1)\n  - Mirror the buyer\nagent:failed_tactics (0)\n"
    );
    // The winning list by default: the one prompts read from calls.
    let mut remove = vec!["tactics", "remove", "mirror the BUYER", "Never said"];
    remove.extend(store);
    assert_eq!(
        ok(&voxpipe(&remove, &[])),
        "not in agent:winning_tactics: Never said\n1 removed from agent:winning_tactics\n"
    );
    let mut winning = vec!["tactics", "list", "winning"];
    winning.extend(store);
    assert_eq!(ok(&voxpipe(&winning, &[])), "agent:winning_tactics (0)\n");
}

#[test]
fn an_in_memory_store_is_refused_with_a_reason() {
    let out = voxpipe(&["tactics", "list", "-p", "pipelines/parrot.toml"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("set `context.path`"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn evaluate_and_skills_run_against_redis() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::judge().await;
    openai.push_chats([verdict("success", 0.75, &["Offer a pilot"])]);
    // A call stored by a session.
    let store = RedisStore::connect(&redis.url(), "REDIS_URL", StoreSettings::default()).unwrap();
    let record = CallRecord::pending("c7", "twilio", Segment::default(), Default::default(), 0);
    store.create_call(&record).await.unwrap();
    for (index, (role, text)) in [
        (Role::User, "Too pricey."),
        (Role::Assistant, "Try a pilot."),
    ]
    .into_iter()
    .enumerate()
    {
        let turn = interaction(index as u64, role, text);
        store.append_turn("c7", &turn).await.unwrap();
    }
    store
        .update_call(
            "c7",
            &CallChange::Ended {
                reason: "hangup".into(),
                at_ms: 1,
            },
        )
        .await
        .unwrap();

    let url = redis.url();
    let base = openai.base_url.clone();
    let judge = format!("evaluator.base_url={base}");
    let enable = "evaluator.enabled=true".to_owned();
    let skills = format!("context.skills.base_url={base}");
    let run = move |args: Vec<String>| {
        let url = url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
                all.extend(["-p", "pipelines/agent.toml", "--set", "context.store=redis"]);
                voxpipe(&all, &[("REDIS_URL", &url), ("OPENAI_API_KEY", "sk-test")])
            })
            .await
            .unwrap()
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();

    let out = run(args(&["evaluate", "c7", "--set", &enable, "--set", &judge])).await;
    assert_eq!(
        ok(&out),
        "success (score 0.75): as scripted\n  - Offer a pilot\n"
    );
    let shown = ok(&run(args(&["calls", "show", "c7"])).await);
    assert!(
        shown.contains("  outcome  success (score 0.75, judged by gpt-4o-mini): as scripted\n"),
        "{shown}"
    );
    assert!(
        shown.contains("  [1]    0.00s assistant: Try a pilot.\n"),
        "{shown}"
    );
    let winning = ok(&run(args(&["tactics", "list", "winning"])).await);
    assert_eq!(winning, "agent:winning_tactics (1)\n  - Offer a pilot\n");

    let added = ok(&run(args(&[
        "skills",
        "add",
        "--trigger",
        "It costs too much",
        "--rebuttal",
        "Show the ROI",
        "--set",
        &skills,
    ]))
    .await);
    assert!(added.starts_with("stored skill:"), "{added}");
    ok(&run(args(&[
        "skills",
        "add",
        "--trigger",
        "We are busy",
        "--rebuttal",
        "Book 10 minutes",
        "--set",
        &skills,
    ]))
    .await);
    let found = ok(&run(args(&[
        "skills",
        "search",
        "too much money",
        "-k",
        "1",
        "--set",
        &skills,
    ]))
    .await);
    assert!(
        found.ends_with("  It costs too much\n       → Show the ROI\n"),
        "{found}"
    );
    assert_eq!(openai.chat_requests()[0]["model"], "gpt-4o-mini");
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_runs_queued_evaluations_until_interrupted() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::judge().await;
    openai.chat_fallback(verdict("success", 0.6, &["Listen first"]));
    let store = RedisStore::connect(&redis.url(), "REDIS_URL", StoreSettings::default()).unwrap();
    let record = CallRecord::pending("c8", "twilio", Segment::default(), Default::default(), 0);
    store.create_call(&record).await.unwrap();
    let turn = interaction(0, Role::User, "Hello?");
    store.append_turn("c8", &turn).await.unwrap();
    voxpipe::agent::eval::queue_evaluation(&store, "c8")
        .await
        .unwrap();

    let judge = format!("evaluator.base_url={}", openai.base_url);
    let mut worker = Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .args([
            "worker",
            "-p",
            "pipelines/agent.toml",
            "--set",
            "context.store=redis",
            "--set",
            "evaluator.enabled=true",
            "--set",
            &judge,
        ])
        .env("REDIS_URL", redis.url())
        .env("OPENAI_API_KEY", "sk-test")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .spawn()
        .unwrap();
    // A bounded poll: the worker is a child process, whose writes to the
    // store announce themselves to nothing here.
    let evaluated = support::wait::eventually(std::time::Duration::from_secs(20), async || {
        store
            .call("c8")
            .await
            .unwrap()
            .is_some_and(|c| c.outcome.is_some())
    })
    .await;
    let interrupted = Command::new("kill")
        .args(["-INT", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = tokio::task::spawn_blocking(move || worker.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(evaluated, "the worker evaluated the queued call");
    assert!(
        status.success(),
        "the worker stops cleanly on Ctrl-C: {status}"
    );
}
