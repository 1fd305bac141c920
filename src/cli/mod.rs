//! Argument parsing, logging and dispatch to the subcommands.

mod call;
mod call_objects;
mod calls;
mod campaign;
mod chat;
mod check;
mod evaluate;
mod learn;
mod logging;
mod prompts;
mod run;
mod serve;
mod setup;
mod skills;
mod store_args;
mod tactics;
mod webhook;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// voxpipe: a real-time voice-AI pipeline engine.
///
/// A pipeline is a TOML file listing processors (VAD, speech-to-text, LLM,
/// text-to-speech, ...). `voxpipe run` runs one session of it over a WAV
/// file; `voxpipe serve` serves it to phone callers, a session per call;
/// `voxpipe check` validates pipeline files without running them.
#[derive(Debug, Parser)]
#[command(name = "voxpipe", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,

    /// Log level or filter (like RUST_LOG, which takes precedence), e.g.
    /// `debug` or `voxpipe=trace`.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate pipeline files without running them.
    ///
    /// Prints each file's problems with the file, line and key. Exits 0 only
    /// when every file is valid. Secrets (`*_env` variables) are not needed:
    /// they are looked up when a session starts.
    Check(check::CheckArgs),
    /// Chat with a pipeline in the terminal, through its text path.
    ///
    /// Each line of stdin is a message; the answer streams back with the
    /// tools it calls. No audio, no STT or TTS key: only the LLM's.
    Chat(chat::ChatArgs),
    /// Run one session of a pipeline over a WAV file.
    ///
    /// The input is converted to the pipeline's sample rate and pushed in
    /// 20 ms frames, as fast as the pipeline takes them (or in real time with
    /// --realtime); the bot's audio is written to --output at the session
    /// time it was played, so input and output line up.
    Run(run::RunArgs),
    /// Serve a pipeline to callers: each Twilio media stream is a fresh
    /// session of it.
    ///
    /// Point a Twilio number's voice webhook at `https://HOST/twilio/voice`.
    /// `GET /health` and `GET /metrics` report on the server. SIGTERM or
    /// ctrl-c shut down gracefully: calls in progress may finish, up to
    /// `[server] shutdown_deadline_secs`.
    Serve(serve::ServeArgs),
    /// Place one outbound call through the pipeline's `[outbound]` dialler
    /// and print its id and Twilio SID (`--follow`: then its status until
    /// it ends). The server at `[server] public_host` takes the call.
    Call(call::CallArgs),
    /// Show stored calls: `voxpipe calls show ID`, their objects:
    /// `voxpipe calls objects ID`, `voxpipe calls fetch ID KIND -o FILE`.
    Calls(calls::CallsArgs),
    /// List or add refinement-loop tactics.
    Tactics(tactics::TacticsArgs),
    /// Add or search learned skills (objection → rebuttal).
    Skills(skills::SkillsArgs),
    /// Segment prompts: list, show, history, rollback (and set, trace,
    /// add-case) for the prompt optimiser.
    Prompts(prompts::PromptsArgs),
    /// Judge a stored call again and record the result.
    Evaluate(evaluate::EvaluateArgs),
    /// Learn skills and test cases from a transcript of a call handled
    /// elsewhere (by a person, or another AI agent).
    Learn(learn::LearnArgs),
    /// Run evaluation jobs, webhook deliveries and skill refreshes on a
    /// shared store until interrupted.
    Worker(worker::WorkerArgs),
    /// Queue a campaign from a CSV of numbers in the pipeline's store; the
    /// `voxpipe serve` processes on that store dial it.
    Campaign(campaign::CampaignArgs),
    /// The webhook outbox: `voxpipe webhook status`, and `voxpipe webhook
    /// redrive` to put dead letters back in the outbox.
    Webhook(webhook::WebhookArgs),
}

/// Parses the command line and runs the command.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, &cli.log_level);
    match cli.command {
        Command::Check(args) => check::check(&args),
        Command::Chat(args) => report(chat::chat(&args)),
        Command::Run(args) => run::run(args),
        Command::Serve(args) => serve::serve(args),
        Command::Call(args) => report(call::call(&args)),
        Command::Calls(args) => report(calls::calls(&args)),
        Command::Tactics(args) => report(tactics::tactics(&args)),
        Command::Skills(args) => report(skills::skills(&args)),
        Command::Prompts(args) => report(prompts::prompts(&args)),
        Command::Evaluate(args) => report(evaluate::evaluate(&args)),
        Command::Learn(args) => report(learn::learn(&args)),
        Command::Worker(args) => report(worker::worker(&args)),
        Command::Campaign(args) => report(campaign::campaign(&args)),
        Command::Webhook(args) => report(webhook::webhook(&args)),
    }
}

/// Exit status 0, or 1 with the error on stderr.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("voxpipe: {err:#}");
            ExitCode::FAILURE
        }
    }
}
