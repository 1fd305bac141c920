//! Tools from MCP servers, end to end: a real MCP server written with the
//! official SDK (`tests/support/fake/mcp_server.rs`), over stdio and over
//! streamable HTTP, called from LLM turns scripted on the fake OpenAI
//! server, whose next request shows what the model was told.
//!
//! The stdio server is this test binary run again by the LLM, with a
//! variable that makes it serve MCP instead of testing. So the binary has
//! its own `main` (`harness = false`, with libtest-mimic for the usual
//! command line): under libtest, the harness would print to the stdout the
//! protocol runs on before any code of ours could run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libtest_mimic::{Arguments, Trial};
use serde_json::{Value, json};
use support::fake::mcp_server::{HTTP_TOKEN, HttpMcpServer, SERVE_STDIO_ENV, serve_stdio};
use support::fake::openai::{FakeOpenAi, Part, Reply, finish_chunk, text_answer, tool_chunk};
use support::session::{Live, unique};
use voxpipe::conversation::{Message, Role};
use voxpipe::frame::FrameBody;
use voxpipe::pipeline::{EnvSource, NamedProcessor, ProcessorFactory, SessionSetup};
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::processors::ProcessorRegistry;
use voxpipe::services::llm::{OpenAiLlmConfig, TOOL_CANCELLED};
use voxpipe::testing::run_test;

/// Trials of async test functions, named after them.
macro_rules! async_trials {
    ($($test:ident),* $(,)?) => {
        vec![$(trial(stringify!($test), $test)),*]
    };
}

fn main() {
    if std::env::var_os(SERVE_STDIO_ENV).is_some() {
        serve_stdio();
        return;
    }
    // `TEST_LOG=voxpipe=debug,rmcp=debug` shows what the client and the
    // server did.
    let filter = std::env::var("TEST_LOG").unwrap_or_else(|_| "off".to_owned());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    let args = Arguments::from_args();
    let mut trials = async_trials![
        stdio_tools_are_listed_and_called_in_an_llm_turn_over_one_shared_child,
        stdio_a_timeout_an_error_result_bad_arguments_and_garbage_cost_one_call_each,
        stdio_a_crash_mid_call_is_a_tool_error_and_the_next_call_restarts_the_server,
        http_tools_are_listed_called_timed_out_and_survive_a_server_crash,
        a_server_is_started_when_the_pipeline_is_built_before_any_session,
        a_server_first_built_by_the_start_check_is_started_by_the_warm_up,
        an_interruption_cancels_the_call_on_the_server,
        a_server_that_cannot_be_reached_costs_the_session_its_tools_only,
        a_child_writing_bytes_that_are_not_utf8_to_its_stderr_keeps_working,
    ];
    trials.push(Trial::test(
        "mcp_tables_are_checked_when_the_file_is_read_and_no_server_is_started",
        || {
            mcp_tables_are_checked_when_the_file_is_read_and_no_server_is_started();
            Ok(())
        },
    ));
    libtest_mimic::run(&args, trials).exit();
}

/// A trial running `test` on a runtime of its own.
fn trial<F: Future<Output = ()>>(name: &str, test: impl FnOnce() -> F + Send + 'static) -> Trial {
    Trial::test(name, move || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(test());
        Ok(())
    })
}

/// `[[mcp_servers]]` for this binary serving MCP on stdio, its tools
/// prefixed `calc_`.
fn stdio_server(extra: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    format!(
        "[[mcp_servers]]\nname = \"calc\"\ncommand = {}\nenv = {{ {SERVE_STDIO_ENV} = \"1\" }}\n\
         tool_prefix = \"calc_\"\n{extra}\n",
        toml::Value::from(exe.to_str().unwrap())
    )
}

fn llm_config(openai: &FakeOpenAi, servers: &str) -> OpenAiLlmConfig {
    let table = format!(
        "base_url = \"{}\"\nmodel = \"m\"\ntool_timeout_secs = 20\n{servers}",
        openai.base_url
    );
    toml::from_str(&table).unwrap_or_else(|e| panic!("{e}"))
}

/// The LLM of one session built from `config`, as each call of a server
/// builds it from the one config it loaded.
fn session_llm(config: &OpenAiLlmConfig, env: &[(&str, &str)]) -> NamedProcessor {
    let mut setup = SessionSetup::new("test-session", 16_000);
    setup.env = EnvSource::Fixed(Arc::new(
        env.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    ));
    NamedProcessor {
        name: "llm".to_owned(),
        processor: config.build(&setup).unwrap_or_else(|e| panic!("{e}")),
    }
}

/// A model turn calling `calls` (id, tool, arguments) at once.
fn calling(calls: &[(&str, &str, &str)]) -> Reply {
    let mut parts: Vec<Part> = calls
        .iter()
        .enumerate()
        .map(|(i, (id, name, arguments))| {
            Part::Data(tool_chunk(i as u32, Some(id), Some(name), arguments))
        })
        .collect();
    parts.push(Part::Data(finish_chunk("tool_calls")));
    parts.push(Part::Data("[DONE]".into()));
    Reply::Sse(parts)
}

fn user(text: &str) -> FrameBody {
    FrameBody::LlmMessages(Arc::new(vec![Message::text(Role::User, text)]))
}

/// The names of the tools a chat request offered.
fn offered(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// What the model was told call `id` returned, in the next chat request.
fn told(openai: &FakeOpenAi, id: &str) -> String {
    for request in openai.chat_requests() {
        for message in request["messages"].as_array().unwrap() {
            if message["role"] == "tool" && message["tool_call_id"] == id {
                return message["content"].as_str().unwrap().to_owned();
            }
        }
    }
    panic!(
        "the model was never told the result of `{id}`: {:#?}",
        openai.chat_requests()
    )
}

fn error_of(result: &str) -> String {
    let value: Value = serde_json::from_str(result).unwrap_or_else(|_| panic!("{result}"));
    value["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {result}"))
        .to_owned()
}

/// Plays `turns` (user text, model replies ending in a one-word answer)
/// in one live session, each answered before the next.
async fn live_turns(openai: &FakeOpenAi, llm: NamedProcessor, turns: Vec<(&str, Vec<Reply>)>) {
    live_turns_then(openai, llm, turns, async |_| {}).await;
}

/// [`live_turns`], running `after(n)` once the `n`th turn is answered.
async fn live_turns_then(
    openai: &FakeOpenAi,
    llm: NamedProcessor,
    turns: Vec<(&str, Vec<Reply>)>,
    mut after: impl AsyncFnMut(usize),
) {
    let live = Live::start(vec![llm]);
    for (n, (text, replies)) in turns.into_iter().enumerate() {
        openai.push_chats(replies);
        live.handle.queue_frame(user(text)).await;
        live.wait_until("the answer", |pushes| answers(pushes) > n)
            .await;
        after(n).await;
    }
    let frames = unique(&live.finish().await);
    assert!(
        !frames
            .iter()
            .any(|f| matches!(&f.body, FrameBody::Error(_))),
        "no error frame: {frames:?}"
    );
}

/// The answers in text so far (a turn's tool rounds say nothing).
fn answers(pushes: &[(String, voxpipe::frame::Direction, voxpipe::frame::Frame)]) -> usize {
    pushes
        .iter()
        .filter(|(_, _, f)| matches!(f.body, FrameBody::LlmText(_)))
        .map(|(_, _, f)| f.id)
        .collect::<std::collections::HashSet<_>>()
        .len()
}

async fn stdio_tools_are_listed_and_called_in_an_llm_turn_over_one_shared_child() {
    let openai = FakeOpenAi::start().await;
    let config = llm_config(&openai, &stdio_server(""));
    openai.push_chats([
        calling(&[
            ("c1", "calc_add", "{\"a\": 2, \"b\": 3}"),
            ("c2", "calc_whoami", "{}"),
        ]),
        Reply::Sse(text_answer("Five.")),
    ]);
    run_test(vec![session_llm(&config, &[])], vec![user("2 + 3?")]).await;

    let first = &openai.chat_requests()[0];
    assert_eq!(
        offered(first),
        [
            "calc_add",
            "calc_whoami",
            "calc_slow",
            "calc_fail",
            "calc_crash",
            "calc_garbage"
        ]
    );
    let add = &first["tools"][0]["function"];
    assert_eq!(add["description"], json!("Adds two integers."));
    assert_eq!(add["parameters"]["required"], json!(["a", "b"]));
    assert_eq!(told(&openai, "c1"), "{\"sum\":5}");
    let child = told(&openai, "c2");
    assert_ne!(child, std::process::id().to_string(), "a child answers");

    // A second session of the same pipeline reuses the child.
    openai.push_chats([
        calling(&[("c3", "calc_whoami", "{}")]),
        Reply::Sse(text_answer("Same.")),
    ]);
    run_test(vec![session_llm(&config, &[])], vec![user("Who?")]).await;
    assert_eq!(told(&openai, "c3"), child);
}

async fn stdio_a_timeout_an_error_result_bad_arguments_and_garbage_cost_one_call_each() {
    let openai = FakeOpenAi::start().await;
    let config = llm_config(&openai, &stdio_server("timeout_secs = 1"));
    openai.push_chats([
        calling(&[
            ("slow", "calc_slow", "{}"),
            ("fail", "calc_fail", "{}"),
            ("bad", "calc_add", "{\"a\": \"two\", \"b\": 3}"),
            ("junk", "calc_garbage", "{}"),
        ]),
        Reply::Sse(text_answer("Failed.")),
        calling(&[("add", "calc_add", "{\"a\": 1, \"b\": 1}")]),
        Reply::Sse(text_answer("Two.")),
    ]);
    let llm = session_llm(&config, &[]);
    live_turns(
        &openai,
        llm,
        vec![("Try everything.", Vec::new()), ("1 + 1?", Vec::new())],
    )
    .await;
    assert_eq!(
        error_of(&told(&openai, "slow")),
        "the MCP server `calc` gave no result within 1s"
    );
    assert_eq!(
        error_of(&told(&openai, "fail")),
        "the flux capacitor is empty"
    );
    assert_eq!(
        error_of(&told(&openai, "bad")),
        "the arguments do not match the tool's schema: /a: \"two\" is not of type \"integer\""
    );
    assert_eq!(
        error_of(&told(&openai, "junk")),
        "the MCP server `calc` answered with something that is not a result: a response of the \
         wrong kind"
    );
    // The same session, the same server: still answering.
    assert_eq!(told(&openai, "add"), "{\"sum\":2}");
}

async fn stdio_a_crash_mid_call_is_a_tool_error_and_the_next_call_restarts_the_server() {
    let openai = FakeOpenAi::start().await;
    let config = llm_config(&openai, &stdio_server(""));
    let answered = |text: &str| Reply::Sse(text_answer(text));
    live_turns(
        &openai,
        session_llm(&config, &[]),
        vec![
            (
                "Who?",
                vec![calling(&[("who1", "calc_whoami", "{}")]), answered("Me.")],
            ),
            (
                "Crash.",
                vec![calling(&[("boom", "calc_crash", "{}")]), answered("Oops.")],
            ),
            (
                "Who now?",
                vec![
                    calling(&[("who2", "calc_whoami", "{}")]),
                    answered("Another."),
                ],
            ),
        ],
    )
    .await;
    let crash = error_of(&told(&openai, "boom"));
    assert!(
        crash.starts_with("the MCP server `calc` closed the connection during the call"),
        "{crash}"
    );
    let (before, after) = (told(&openai, "who1"), told(&openai, "who2"));
    assert_ne!(before, after, "a new child answers");
}

async fn http_tools_are_listed_called_timed_out_and_survive_a_server_crash() {
    let openai = FakeOpenAi::start().await;
    let mut mcp = HttpMcpServer::start().await;
    let config = llm_config(
        &openai,
        &format!(
            "[[mcp_servers]]\nname = \"remote\"\nurl = \"{}\"\nbearer_token_env = \"MCP_TOKEN\"\n\
             tools = [\"add\", \"whoami\", \"slow\", \"crash\"]\ntimeout_secs = 1\n",
            mcp.url
        ),
    );
    let env = [("MCP_TOKEN", HTTP_TOKEN)];
    let answered = |text: &str| Reply::Sse(text_answer(text));
    live_turns_then(
        &openai,
        session_llm(&config, &env),
        vec![
            (
                "2 + 3?",
                vec![
                    calling(&[("add", "add", "{\"a\": 2, \"b\": 3}")]),
                    answered("5."),
                ],
            ),
            (
                "Slow?",
                vec![calling(&[("slow", "slow", "{}")]), answered("Slow.")],
            ),
            (
                "Crash.",
                vec![calling(&[("boom", "crash", "{}")]), answered("Oops.")],
            ),
        ],
        // The cancellation is a notification of its own: it must reach
        // the server before `crash` takes the server down, or nothing
        // counts it.
        async |turn| {
            if turn == 1 {
                mcp.wait_slow_cancelled(1).await;
            }
        },
    )
    .await;
    assert_eq!(
        offered(&openai.chat_requests()[0]),
        ["add", "whoami", "slow", "crash"],
        "the allow-list keeps `fail` and `garbage` out"
    );
    assert_eq!(told(&openai, "add"), "{\"sum\":5}");
    assert_eq!(
        error_of(&told(&openai, "slow")),
        "the MCP server `remote` gave no result within 1s"
    );
    let crash = error_of(&told(&openai, "boom"));
    assert!(
        crash.starts_with("the MCP server `remote` closed the connection during the call"),
        "{crash}"
    );

    // The server comes back on the same port: a new session's call reaches it.
    mcp.restart().await;
    live_turns(
        &openai,
        session_llm(&config, &env),
        vec![(
            "Who?",
            vec![calling(&[("who", "whoami", "{}")]), answered("Second.")],
        )],
    )
    .await;
    assert_eq!(told(&openai, "who"), "http-2");
}

/// An LLM config whose MCP server is this binary behind a shell that
/// creates the file the returned path names as it starts.
fn marking_server(openai: &FakeOpenAi, dir: &tempfile::TempDir) -> (OpenAiLlmConfig, PathBuf) {
    let marker = dir.path().join("started");
    let exe = std::env::current_exe().unwrap();
    // The shell marks the start (with a builtin: the child has no PATH
    // here), then becomes the server.
    let args = toml::Value::from(vec![
        "-c".to_owned(),
        ": > \"$1\"; exec \"$0\"".to_owned(),
        exe.to_str().unwrap().to_owned(),
        marker.to_str().unwrap().to_owned(),
    ]);
    let config = llm_config(
        openai,
        &format!(
            "[[mcp_servers]]\nname = \"calc\"\ncommand = \"/bin/sh\"\nargs = {args}\n\
             env = {{ {SERVE_STDIO_ENV} = \"1\" }}\n"
        ),
    );
    (config, marker)
}

async fn a_server_is_started_when_the_pipeline_is_built_before_any_session() {
    let openai = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, marker) = marking_server(&openai, &dir);
    let _built = session_llm(&config, &[]);
    assert!(
        support::wait::eventually(Duration::from_secs(10), async || marker.exists()).await,
        "the server was started before any session"
    );
}

async fn a_server_first_built_by_the_start_check_is_started_by_the_warm_up() {
    let openai = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, marker) = marking_server(&openai, &dir);
    // As `voxpipe serve` checks the file at start: every processor built
    // once in a runtime of its own that runs nothing and is dropped.
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let check = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _entered = check.enter();
            drop(session_llm(&config, &[]));
        });
    });
    assert!(!marker.exists(), "the check's runtime ran nothing");
    // `voxpipe serve` warms up in its own runtime.
    config.warm_up(&SessionSetup::new("warm-up", 16_000));
    assert!(
        support::wait::eventually(Duration::from_secs(10), async || marker.exists()).await,
        "the warm-up started the server before any session"
    );
}

async fn an_interruption_cancels_the_call_on_the_server() {
    let openai = FakeOpenAi::start().await;
    let mcp = HttpMcpServer::start().await;
    let config = llm_config(
        &openai,
        &format!(
            "[[mcp_servers]]\nname = \"remote\"\nurl = \"{}\"\nbearer_token_env = \"MCP_TOKEN\"\n",
            mcp.url
        ),
    );
    openai.push_chat(calling(&[("slow", "slow", "{}")]));
    let live = Live::start(vec![session_llm(&config, &[("MCP_TOKEN", HTTP_TOKEN)])]);
    live.handle.queue_frame(user("Take your time.")).await;
    live.wait_for("the call", |b| {
        matches!(b, FrameBody::FunctionCallInProgress(_))
    })
    .await;
    mcp.wait_slow_begun(1).await;
    live.handle.queue_frame(FrameBody::Interruption).await;
    mcp.wait_slow_cancelled(1).await;
    let frames = unique(&live.finish().await);
    let results: Vec<&str> = frames
        .iter()
        .filter_map(|f| match &f.body {
            FrameBody::FunctionCallResult { result, .. } => Some(result.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(results, [TOOL_CANCELLED]);
}

async fn a_server_that_cannot_be_reached_costs_the_session_its_tools_only() {
    let openai = FakeOpenAi::start().await;
    let closed = support::net::free_port();
    let config = llm_config(
        &openai,
        &format!(
            "tools = [\"end_call\"]\n[[mcp_servers]]\nname = \"gone\"\nurl = \"http://127.0.0.1:{closed}/mcp\"\n\
             [[mcp_servers]]\nname = \"missing\"\ncommand = \"/nonexistent/mcp-server\"\n"
        ),
    );
    openai.push_chat(Reply::Sse(text_answer("Hello.")));
    let out = run_test(vec![session_llm(&config, &[])], vec![user("Hi")]).await;
    assert_eq!(offered(&openai.chat_requests()[0]), ["end_call"]);
    assert!(
        out.downstream
            .iter()
            .any(|f| matches!(&f.body, FrameBody::LlmText(t) if t.contains("Hello")))
    );
}

async fn a_child_writing_bytes_that_are_not_utf8_to_its_stderr_keeps_working() {
    let openai = FakeOpenAi::start().await;
    let exe = std::env::current_exe().unwrap();
    // Bytes that are not UTF-8 first, then more than a pipe holds: had the
    // reader of its stderr given up at the first line, these writes would
    // kill the shell (SIGPIPE) before it became the server. Builtins only:
    // the child has no PATH here.
    let script = "printf '\\377\\376 not UTF-8\\n' >&2; i=0; \
                  while [ $i -lt 2000 ]; do \
                  printf '%s\\n' 'chatter chatter chatter chatter chatter chatter chatter chatter' >&2; \
                  i=$((i+1)); done; exec \"$0\"";
    let args = toml::Value::from(vec![
        "-c".to_owned(),
        script.to_owned(),
        exe.to_str().unwrap().to_owned(),
    ]);
    let config = llm_config(
        &openai,
        &format!(
            "[[mcp_servers]]\nname = \"calc\"\ncommand = \"/bin/sh\"\nargs = {args}\n\
             env = {{ {SERVE_STDIO_ENV} = \"1\" }}\ntool_prefix = \"calc_\"\n"
        ),
    );
    openai.push_chats([
        calling(&[("c1", "calc_add", "{\"a\": 2, \"b\": 3}")]),
        Reply::Sse(text_answer("Five.")),
    ]);
    run_test(vec![session_llm(&config, &[])], vec![user("2 + 3?")]).await;
    assert_eq!(told(&openai, "c1"), "{\"sum\":5}");
}

fn mcp_tables_are_checked_when_the_file_is_read_and_no_server_is_started() {
    let file = |servers: &str| {
        format!(
            "[pipeline]\nname = \"t\"\n\n[[processor]]\ntype = \"llm\"\nprovider = \"openai\"\n\
             model = \"m\"\n\n[[processor.mcp_servers]]\n{servers}"
        )
    };
    let errors = |servers: &str| -> Vec<String> {
        match parse_pipeline(
            Path::new("p.toml"),
            &file(servers),
            &ProcessorRegistry::builtin(),
        ) {
            Ok(_) => panic!("expected errors for:\n{servers}"),
            Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
        }
    };
    let unknown = errors("name = \"a\"\ncommand = \"x\"\ntimeout = 3\n");
    assert!(
        unknown[0].starts_with(
            "p.toml:12:1: key `processor.0.mcp_servers.0.timeout`: unknown key `timeout`"
        ),
        "{unknown:?}"
    );
    let wrong = errors("name = \"a\"\ncommand = \"x\"\ntimeout_secs = \"soon\"\n");
    assert!(
        wrong[0].starts_with("p.toml:12:16: key `processor.0.mcp_servers.0.timeout_secs`"),
        "{wrong:?}"
    );
    let both = errors("name = \"a\"\ncommand = \"x\"\nurl = \"http://h/mcp\"\n");
    assert!(
        both[0].contains("mcp server `a`: set `command`") && both[0].contains("not both"),
        "{both:?}"
    );
    let neither = errors("name = \"a\"\n");
    assert!(neither[0].contains("set `command`"), "{neither:?}");
    let mixed = errors("name = \"a\"\nurl = \"http://h/mcp\"\nargs = [\"-v\"]\n");
    assert!(
        mixed[0].contains("`args` is for a server with a `command`"),
        "{mixed:?}"
    );
    let scheme = errors("name = \"a\"\nurl = \"ftp://h/mcp\"\n");
    assert!(scheme[0].contains("url must start with http"), "{scheme:?}");

    // Variables are read when a session is built, as every `*_env` key.
    let config: OpenAiLlmConfig = toml::from_str(
        "model = \"m\"\n[[mcp_servers]]\nname = \"a\"\ncommand = \"x\"\npass_env = [\"MCP_SECRET\"]\n",
    )
    .unwrap();
    let error = config
        .build(&SessionSetup::new("s", 16_000))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        error.as_deref(),
        Some("environment variable MCP_SECRET (named by `pass_env`) is not set")
    );

    // A valid file passes `voxpipe check` without its server being run.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        file(&format!(
            "name = \"a\"\ncommand = \"/bin/sh\"\nargs = [\"-c\", \"touch {}\"]\n",
            marker.display()
        )),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_voxpipe"))
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!marker.exists(), "the server was not started");
}
