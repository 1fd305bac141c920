//! `voxpipe chat FILE`: a text conversation with a pipeline in the
//! terminal, through its text path (no audio, no STT or TTS key needed).
//!
//! Each line read from stdin is a message; the answer streams to stdout as
//! the model writes it, with the tools it calls and their results. Works
//! with stdin piped (tests, scripts): the prompt is shown only on a
//! terminal. At the end of input the conversation ends, as an idle one
//! would: completed, evaluated and posted as configured.

#![allow(clippy::print_stdout)]

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use voxpipe::config::Override;
use voxpipe::pipeline::{EnvSource, new_session_id};
use voxpipe::text::{Channel, Inbound, TextConversations, TextEvent};

#[derive(Debug, clap::Args)]
pub(crate) struct ChatArgs {
    /// The pipeline file.
    file: PathBuf,

    /// Continue (or start) the conversation with this id; default: a new
    /// one.
    #[arg(long)]
    conversation: Option<String>,

    /// Override a value of the pipeline file by its dotted path.
    /// Repeatable.
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    overrides: Vec<Override>,
}

pub(crate) fn chat(args: &ChatArgs) -> anyhow::Result<()> {
    let config = voxpipe::pipeline_file::load_pipeline(
        &args.file,
        &args.overrides,
        &voxpipe::processors::ProcessorRegistry::builtin(),
    )
    .map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let agent = Arc::new(
            config
                .agent_runtime(&EnvSource::Process)
                .context("context store")?,
        );
        let mut base = config.session_setup("chat");
        base.env = EnvSource::Process;
        let conversations = TextConversations::new(
            &config.processors,
            base,
            Arc::clone(&agent),
            config.text.clone(),
        )?;
        let id = args.conversation.clone().unwrap_or_else(new_session_id);
        let key = conversations.key(Channel::Chat, &[&id]);
        let interactive = std::io::stdin().is_terminal();
        let (lines_tx, mut lines) = mpsc::unbounded_channel::<String>();
        // stdin blocks: it is read on a thread of its own.
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            if interactive {
                print!("you> ");
                std::io::stdout().flush()?;
            }
            let Some(line) = lines.recv().await else {
                break;
            };
            if line.trim().is_empty() {
                continue;
            }
            let inbound = Inbound {
                key: key.clone(),
                text: line,
                media: 0,
                parameters: [("channel".to_owned(), "chat".to_owned())].into(),
            };
            let (events, mut heard) = mpsc::unbounded_channel();
            let printing = async {
                print!("bot> ");
                let mut said = String::new();
                while let Some(event) = heard.recv().await {
                    print_event(&event, &mut said);
                    if matches!(event, TextEvent::Done(_)) {
                        break;
                    }
                }
                let _ = std::io::stdout().flush();
            };
            let (answered, ()) =
                tokio::join!(conversations.message(inbound, Some(events)), printing);
            if let Err(err) = answered {
                eprintln!("voxpipe: {err}");
            }
        }
        if conversations.finish(&key, "chat_ended").await? {
            eprintln!("voxpipe: conversation {id} ended");
        }
        let writing = agent.drain_writers(Duration::from_secs(10)).await;
        if writing > 0 {
            eprintln!("voxpipe: {writing} conversation(s) still being stored at exit");
        }
        Ok(())
    })
}

/// Prints `event`; `said` keeps the answer's text printed so far.
fn print_event(event: &TextEvent, said: &mut String) {
    match event {
        TextEvent::Delta(text) => {
            said.push_str(text);
            print!("{text}");
        }
        TextEvent::ToolCall(call) => print!("\n  [tool] {} {}\n", call.name, call.arguments),
        TextEvent::ToolResult { call, result } => {
            println!("  [tool result] {}: {result}", call.name);
        }
        TextEvent::Done(reply) => {
            if reply.failed {
                // The apology, after what was printed before the failure.
                let rest = reply.text.strip_prefix(said.trim()).unwrap_or(&reply.text);
                print!("{rest}");
            }
            println!();
        }
    }
    let _ = std::io::stdout().flush();
}
