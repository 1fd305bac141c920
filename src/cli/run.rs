//! `voxpipe run FILE --input IN.wav [--output OUT.wav] [--realtime] [--events]`

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use voxpipe::agent::{AgentRuntime, SessionMemory};
use voxpipe::audio::{resample::resample_all, wav::read_wav};
use voxpipe::config::Override;
use voxpipe::events::EventWriter;
use voxpipe::pipeline::{EnvSource, new_session_id};
use voxpipe::pipeline::{NamedProcessor, Observer, SessionClock};
use voxpipe::pipeline_file::PipelineConfig;
use voxpipe::session::{SessionOptions, SessionReport, run_session};
use voxpipe::store::time::unix_ms;
use voxpipe::transport::TransportEnds;
use voxpipe::transport::file::{FileInput, WavSink};
use voxpipe::transport::{AudioSink, OutputTransport, Pacing};

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The pipeline file.
    file: PathBuf,

    /// The user's audio: a WAV file (any common rate, mono or stereo).
    #[arg(long, short)]
    input: PathBuf,

    /// Where to write the bot's audio: a mono WAV at the pipeline's rate,
    /// as long as the input at least, silent where the bot was silent.
    #[arg(long, short)]
    output: Option<PathBuf>,

    /// Push the input in real time instead of as fast as possible.
    #[arg(long)]
    realtime: bool,

    /// Print one JSON object per line on stdout for each notable event
    /// (`t_ms`, `event`, fields); logs stay on stderr.
    #[arg(long)]
    events: bool,

    /// Override a value of the pipeline file by its dotted path, e.g.
    /// `--set processor.0.gain_db=-6` or `--set pipeline.sample_rate=8000`.
    /// Repeatable.
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    overrides: Vec<Override>,

    /// The session id (default: a fresh random id).
    #[arg(long)]
    session_id: Option<String>,

    /// A call parameter, as Twilio's `customParameters` would bring it, e.g.
    /// `--param country=US --param industry=retail` (they pick the segment
    /// prompt). Repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
}

fn parse_param(spec: &str) -> Result<(String, String), String> {
    match spec.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got {spec:?}")),
    }
}

pub(crate) fn run(args: RunArgs) -> ExitCode {
    let (config, runtime) = match (
        super::setup::load(&args.file, &args.overrides),
        super::setup::runtime(),
    ) {
        (Ok(config), Ok(runtime)) => (config, runtime),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    match runtime.block_on(run_file_session(&config, &args)) {
        Ok(report) => match &report.fatal_error {
            None => ExitCode::SUCCESS,
            Some(error) => {
                eprintln!(
                    "voxpipe: session ended by an error in {}: {}",
                    error.processor, error.message
                );
                ExitCode::FAILURE
            }
        },
        Err(err) => {
            eprintln!("voxpipe: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Discards bot audio (no `--output`); speaking state still follows it.
struct DiscardSink;

impl AudioSink for DiscardSink {
    fn write(
        &mut self,
        _audio: &voxpipe::frame::AudioFrame,
    ) -> Result<(), voxpipe::pipeline::ProcessorError> {
        Ok(())
    }
}

async fn run_file_session(
    config: &PipelineConfig,
    args: &RunArgs,
) -> anyhow::Result<SessionReport> {
    let rate = config.pipeline.sample_rate.hz();
    let wav = read_wav(&args.input)?;
    let samples = resample_all(&wav.to_mono(), wav.sample_rate, rate)
        .with_context(|| format!("{}: cannot convert to {rate} Hz", args.input.display()))?;
    let input_length = Duration::from_micros(samples.len() as u64 * 1_000_000 / u64::from(rate));
    let pacing = Pacing::InboundAudio {
        realtime: args.realtime,
    };
    let output = match &args.output {
        Some(path) => NamedProcessor::new(
            "transport.output",
            OutputTransport::new(
                WavSink::create(path, rate)?.with_min_length(input_length),
                pacing,
            ),
        ),
        None => NamedProcessor::new(
            "transport.output",
            OutputTransport::new(DiscardSink, pacing),
        ),
    };
    let ends = TransportEnds {
        input: NamedProcessor::new(
            "transport.input",
            FileInput::new(samples, rate, args.realtime),
        ),
        output,
    };
    let events = args
        .events
        .then(|| Arc::new(EventWriter::new(std::io::stdout())));
    let mut observers: Vec<Arc<dyn Observer>> = Vec::new();
    if let Some(events) = &events {
        observers.push(events.clone());
    }
    let context = config
        .agent_runtime(&EnvSource::Process)
        .context("cannot set up the context store")?;
    let session_id = args.session_id.clone().unwrap_or_else(new_session_id);
    let span = tracing::info_span!("session", call_id = %session_id);
    let _entered = span.enter();
    tracing::info!(pipeline = %config.pipeline.name, input = %args.input.display(), store = context.store().backend(), "session starting");
    let mut setup = config.session_setup(session_id);
    setup.custom_parameters = args.params.iter().cloned().collect();
    if let Some(skills) = context.skills() {
        // `serve` refreshes in the background; a file run loads them once.
        match skills.refresh().await {
            Ok(loaded) => tracing::info!(skills = loaded.total, "skills loaded"),
            Err(err) => tracing::warn!(error = %err, "cannot load the skills"),
        }
    }
    let memory = context.open_session(&setup, "file").await;
    let report = run_session(
        &config.processors,
        ends,
        SessionOptions {
            setup,
            clock: SessionClock::audio(),
            observers,
            memory: Some(memory.clone()),
        },
    )
    .await?;
    tracing::info!(reason = %report.end_reason, duration = ?report.duration, "session ended");
    if let Some(events) = events {
        events.flush();
    }
    // The writer gives up by itself `flush_timeout` after the end.
    let flush = config.context.flush_timeout_secs.duration();
    finish_context(&context, &memory, flush + Duration::from_secs(5)).await;
    Ok(report)
}

/// After a file session: wait for its writer, then (the embedded store
/// lives only as long as this process) run its evaluation and one webhook
/// delivery pass here. With Redis, `voxpipe worker` or the server's workers
/// take them from the queue.
async fn finish_context(context: &AgentRuntime, memory: &SessionMemory, limit: Duration) {
    match memory.finished(limit).await {
        Some(report) if report.unwritten.is_empty() && report.spooled.is_empty() => {
            tracing::info!(turns = report.turns_written, "call stored");
        }
        Some(report) if report.unwritten.is_empty() => {
            let spool = context.spool_dir().unwrap_or(std::path::Path::new(""));
            tracing::warn!(
                spooled = ?report.spooled,
                spool = %spool.display(),
                "parts of the call wait in the turn spool; a `voxpipe serve` on this directory writes them once the store is back"
            );
        }
        Some(report) => {
            tracing::error!(unwritten = ?report.unwritten, "parts of the call could not be stored");
        }
        None => tracing::error!("the call's writer did not finish"),
    }
    // The session's lease keeper forgets the lease of a call stored whole.
    context.drain_writers(Duration::from_secs(5)).await;
    // The recording is in this process's spool whatever the store: upload
    // it before the evaluation, so the webhook names it.
    if let Some(uploader) = context.recording_uploader() {
        let scan = uploader.scan().await;
        if scan.waiting > 0 {
            tracing::warn!(
                waiting = scan.waiting,
                "recordings wait in the spool for the next start"
            );
        }
    }
    if context.store().backend() != "memory" {
        return;
    }
    if let Some(worker) = context.worker("voxpipe-run") {
        match worker.drain().await {
            Ok(ran) => tracing::info!(jobs = ran, "evaluation done"),
            Err(err) => tracing::error!(error = %err, "evaluation failed"),
        }
    }
    match context.deliverer() {
        Ok(Some(deliverer)) => match deliverer.deliver_due(unix_ms()).await {
            Ok(pass) if pass.retrying > 0 => {
                tracing::warn!("the webhook failed; it stays in the outbox")
            }
            Ok(_) => {}
            Err(err) => tracing::error!(error = %err, "cannot deliver the webhook"),
        },
        Ok(None) => {}
        Err(err) => tracing::error!(error = %err, "cannot deliver the webhook"),
    }
}
