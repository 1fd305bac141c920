//! What the operator commands share: the pipeline file whose `[context]`
//! (and `[evaluator]`, `[webhook]`) sections name the store to work on.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use voxpipe::agent::{AgentRuntime, StoreKind};
use voxpipe::config::Override;
use voxpipe::pipeline::EnvSource;
use voxpipe::pipeline_file::{PipelineConfig, load_pipeline};
use voxpipe::processors::ProcessorRegistry;

#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// The pipeline file whose `[context]` section names the store (Redis,
    /// or the embedded store's file).
    #[arg(long, short, env = "VOXPIPE_PIPELINE", value_name = "FILE")]
    pipeline: PathBuf,

    /// Override a value of the pipeline file, e.g. `--set context.store=redis`.
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    overrides: Vec<Override>,
}

/// What an operator command works with: the pipeline, its agent runtime,
/// and the async runtime they live on (Redis connections belong to it).
pub(crate) struct Operator {
    pub(crate) config: PipelineConfig,
    pub(crate) context: AgentRuntime,
    tokio: tokio::runtime::Runtime,
}

impl Operator {
    /// Runs `future` to completion.
    pub(crate) fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.tokio.block_on(future)
    }
}

/// Refuses a pipeline whose context store lives in this process's memory
/// only: what a command run beside a server writes there (a campaign, a
/// call's record) or reads (the server's calls) would be in no other
/// process.
pub(crate) fn require_shared_store(
    config: &PipelineConfig,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    if config.context.store == StoreKind::Memory && config.context.path.is_none() {
        bail!(
            "{}: the context store is in memory only, so another process cannot read it; \
             set `context.path` to keep it in a file, or use Redis (`context.store = \"redis\"`)",
            file.display()
        );
    }
    Ok(())
}

impl StoreArgs {
    /// The pipeline's agent runtime. The embedded store must be kept in a
    /// file: an in-memory one would be empty in this process.
    pub(crate) fn open(&self) -> anyhow::Result<Operator> {
        let config = load_pipeline(
            &self.pipeline,
            &self.overrides,
            &ProcessorRegistry::builtin(),
        )
        .map_err(|errors| anyhow::anyhow!("{errors}"))?;
        require_shared_store(&config, &self.pipeline)?;
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let context = {
            // Redis connections start their tasks on this runtime.
            let _entered = tokio.enter();
            config.agent_runtime(&EnvSource::Process).with_context(|| {
                format!("{}: cannot open the context store", self.pipeline.display())
            })?
        };
        tokio
            .block_on(context.store().check_topology())
            .with_context(|| format!("{}: context store", self.pipeline.display()))?;
        Ok(Operator {
            config,
            context,
            tokio,
        })
    }
}
