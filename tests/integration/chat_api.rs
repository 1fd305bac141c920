//! `POST /api/chat` (server-sent events) and `voxpipe chat` (the terminal
//! chat, stdin piped) holding conversations with tool calls, against the
//! fake OpenAI server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::fake::openai::{FakeOpenAi, Part, Reply, finish_chunk, text_answer, tool_chunk};
use support::fake::twilio_rest::FakeTwilioRest;
use support::redis_server::RedisServer;
use support::server::{Setup, TestServer};
use support::text::{AUTH_TOKEN, config, env, pipeline_toml, runtime};

const WAIT: Duration = Duration::from_secs(20);

fn price_call(id: &str, item: &str) -> Reply {
    Reply::Sse(vec![
        Part::Data(tool_chunk(
            0,
            Some(id),
            Some("price"),
            &json!({ "item": item }).to_string(),
        )),
        Part::Data(finish_chunk("tool_calls")),
        Part::Data("[DONE]".into()),
    ])
}

/// The `(event, data)` pairs of a server-sent event stream.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = Some(serde_json::from_str(v.trim()).unwrap());
                }
            }
            Some((name?, data?))
        })
        .collect()
}

#[tokio::test]
async fn the_chat_api_streams_answers_and_tool_calls_and_keeps_the_conversation() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::start().await;
    let twilio = FakeTwilioRest::start(AUTH_TOKEN).await;
    let toml = pipeline_toml(&openai, &twilio.base_url, "");
    let env = env(&redis.url());
    let context = runtime(&config(&toml), &env);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start(Setup {
        toml: Some(&toml),
        path: "text.toml",
        env: &env_refs,
        context: Some(context),
        ..Setup::default()
    })
    .await;
    let http = reqwest::Client::new();
    let chat = |body: Value| {
        let request = http.post(server.url("/api/chat")).json(&body);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    openai.push_chat(price_call("call_1", "apples"));
    openai.push_tool(Reply::Json(json!({ "price": "2 EUR/kg" })));
    openai.push_chat(Reply::Sse(text_answer("Apples cost 2 EUR a kilo.")));
    let (status, body) = chat(json!({ "text": "How much are apples?" })).await;
    assert_eq!(status, 200, "{body}");
    let first = events(&body);
    let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"tool_call"), "{names:?}");
    assert_eq!(names[1], "tool_result");
    assert!(names[2..names.len() - 1].iter().all(|n| *n == "delta"));
    assert_eq!(names.last(), Some(&"turn"));
    assert_eq!(first[0].1["name"], "price");
    assert_eq!(first[0].1["arguments"], r#"{"item":"apples"}"#);
    assert!(first[1].1["result"].as_str().unwrap().contains("2 EUR/kg"));
    let deltas: String = first
        .iter()
        .filter(|(n, _)| n == "delta")
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "Apples cost 2 EUR a kilo.");
    let turn = &first.last().unwrap().1;
    assert_eq!(turn["text"], "Apples cost 2 EUR a kilo.");
    assert_eq!(turn["failed"], false);
    let conversation_id = turn["conversation_id"].as_str().unwrap().to_owned();

    // The same conversation: the model sees the call, its result, the answer.
    openai.push_chat(Reply::Sse(text_answer("Then 4 EUR for two kilos.")));
    let (_, body) =
        chat(json!({ "conversation_id": conversation_id, "text": "And two kilos?" })).await;
    let second = events(&body);
    assert_eq!(second.last().unwrap().1["call_id"], turn["call_id"]);
    let request = openai.chat_requests().pop().unwrap();
    let messages = request["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "assistant", "user"]
    );
    assert_eq!(messages[2]["tool_calls"][0]["function"]["name"], "price");
    assert!(
        messages[3]["content"]
            .as_str()
            .unwrap()
            .contains("2 EUR/kg")
    );

    // Bad input.
    let (status, _) = chat(json!({ "text": "   " })).await;
    assert_eq!(status, 400);
    let (status, _) = chat(json!({ "conversation_id": "../x", "text": "hi" })).await;
    assert_eq!(status, 400);
    let (status, _) = chat(json!({ "txt": "hi" })).await;
    assert_eq!(status, 400);
    server.shutdown(WAIT).await.unwrap();
}

#[tokio::test]
async fn the_chat_api_follows_the_api_access_rule() {
    let openai = FakeOpenAi::start().await;
    let toml = pipeline_toml(&openai, "http://127.0.0.1:9", "")
        .replace("api_open = true", "api_token_env = \"API_KEY\"")
        .replace("store = \"redis\"", "store = \"memory\"");
    let env = env("redis://unused");
    let context = runtime(&config(&toml), &env);
    let mut env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env_refs.push(("API_KEY", "k3y"));
    let server = TestServer::start(Setup {
        toml: Some(&toml),
        path: "text.toml",
        env: &env_refs,
        context: Some(context),
        ..Setup::default()
    })
    .await;
    let http = reqwest::Client::new();
    let refused = http
        .post(server.url("/api/chat"))
        .json(&json!({ "text": "hi" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let allowed = http
        .post(server.url("/api/chat"))
        .bearer_auth("k3y")
        .json(&json!({ "text": "hi" }))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status().as_u16(), 200);
    let body = allowed.text().await.unwrap();
    assert_eq!(events(&body).last().unwrap().1["text"], "OK.");
    server.shutdown(WAIT).await.unwrap();
}

#[tokio::test]
async fn past_the_text_bounds_chat_messages_are_refused_with_429() {
    let openai = FakeOpenAi::start().await;
    let toml = pipeline_toml(
        &openai,
        "http://127.0.0.1:9",
        "[text]\nmax_messages_in_flight = 10\n",
    )
    .replace("store = \"redis\"", "store = \"memory\"");
    let env = env("redis://unused");
    let context = runtime(&config(&toml), &env);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start(Setup {
        toml: Some(&toml),
        path: "text.toml",
        env: &env_refs,
        context: Some(context),
        ..Setup::default()
    })
    .await;
    let http = reqwest::Client::new();
    let send = |conversation_id: &str| {
        http.post(server.url("/api/chat"))
            .json(&json!({ "conversation_id": conversation_id, "text": "hi" }))
            .send()
    };
    // Answers held until released.
    let held = |text: &str| {
        let release = std::sync::Arc::new(tokio::sync::Notify::new());
        let mut parts = vec![Part::WaitFor(std::sync::Arc::clone(&release), "the test")];
        parts.extend(text_answer(text));
        openai.push_chat(Reply::Sse(parts));
        release
    };
    // The first answer is held; the conversation's next 8 wait their turn.
    let first = held("First.");
    let other_answer = held("Other.");
    let mut open = Vec::new();
    for _ in 0..9 {
        let response = send("busy").await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        open.push(response);
    }
    let refused = send("busy").await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("conversation"),
        "{body}"
    );
    // Another conversation takes the last of the 10 places in flight (the
    // held answer already being made); a third finds none.
    openai
        .wait_for_requests("/v1/chat/completions", 1, WAIT)
        .await;
    let other = send("other").await.unwrap();
    assert_eq!(other.status().as_u16(), 200);
    open.push(other);
    assert_eq!(send("third").await.unwrap().status().as_u16(), 429);
    let overloaded = r#"voxpipe_errors_total{kind="text_overloaded",source="chat"}"#;
    assert_eq!(server.metric(overloaded).await, 2.0);
    // Released, every message admitted is answered.
    first.notify_one();
    other_answer.notify_one();
    for response in open {
        let body = response.text().await.unwrap();
        assert_eq!(events(&body).last().unwrap().0, "turn", "{body}");
    }
    assert_eq!(send("third").await.unwrap().status().as_u16(), 200);
    server.shutdown(WAIT).await.unwrap();
}

/// `voxpipe chat` over `openai`, with `input` piped: its stdout.
async fn chat_in_terminal(openai: &FakeOpenAi, input: &'static [u8]) -> String {
    let toml = pipeline_toml(openai, "http://127.0.0.1:9", "")
        .replace("store = \"redis\"", "store = \"memory\"")
        .replace("[transport.twilio]", "[transport.twilio.unused]");
    // A text pipeline with no Twilio section and a memory store.
    let toml = toml
        .split("[transport.twilio.unused]")
        .next()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("text.toml");
    std::fs::write(&file, toml).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_voxpipe"))
            .arg("chat")
            .arg(&file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn voxpipe_chat_holds_a_conversation_with_tool_calls_from_piped_stdin() {
    let openai = FakeOpenAi::start().await;
    openai.push_chat(price_call("call_9", "pears"));
    openai.push_tool(Reply::Json(json!({ "price": "3 EUR/kg" })));
    openai.push_chat(Reply::Sse(text_answer("Pears cost 3 EUR a kilo.")));
    openai.push_chat(Reply::Sse(text_answer("You asked about pears.")));
    let stdout = chat_in_terminal(&openai, b"How much are pears?\nWhat did I ask?\n").await;
    assert!(
        stdout.contains(r#"[tool] price {"item":"pears"}"#),
        "{stdout}"
    );
    assert!(stdout.contains("[tool result] price:"), "{stdout}");
    assert!(stdout.contains("Pears cost 3 EUR a kilo."), "{stdout}");
    assert!(stdout.contains("You asked about pears."), "{stdout}");
    let last = openai.chat_requests().pop().unwrap();
    let contents = last["messages"].to_string();
    assert!(contents.contains("How much are pears?") && contents.contains("3 EUR/kg"));
}

#[tokio::test]
async fn voxpipe_chat_prints_the_apology_once_after_an_answer_that_failed_partway() {
    let openai = FakeOpenAi::start().await;
    openai.push_chat(Reply::Sse(vec![
        Part::Data(support::fake::openai::text_chunk("Let me check.")),
        Part::Data(tool_chunk(
            0,
            Some("call_1"),
            Some("price"),
            r#"{"item":"figs"}"#,
        )),
        Part::Data(finish_chunk("tool_calls")),
        Part::Data("[DONE]".into()),
    ]));
    openai.push_tool(Reply::Json(json!({ "price": "9 EUR/kg" })));
    openai.push_chat(Reply::error(400, "bad request", "invalid_request_error"));
    let stdout = chat_in_terminal(&openai, b"How much are figs?\n").await;
    assert_eq!(stdout.matches("Let me check.").count(), 1, "{stdout}");
    assert!(
        stdout.contains("Sorry, I can't answer right now."),
        "{stdout}"
    );
}
