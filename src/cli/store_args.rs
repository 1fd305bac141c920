//! What the operator commands share: the pipeline file whose `[context]`
//! (and `[evaluator]`, `[webhook]`) sections name the store to work on.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use voxpipe::config::{Override, PipelineConfig, load_pipeline};
use voxpipe::context::{ContextRuntime, StoreKind};
use voxpipe::processors::ProcessorRegistry;
use voxpipe::session::EnvSource;

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

impl StoreArgs {
    /// The pipeline's context runtime. The embedded store must be kept in a
    /// file: an in-memory one would be empty in this process.
    pub(crate) fn runtime(&self) -> anyhow::Result<(PipelineConfig, ContextRuntime)> {
        let config = load_pipeline(
            &self.pipeline,
            &self.overrides,
            &ProcessorRegistry::builtin(),
        )
        .map_err(|errors| anyhow::anyhow!("{errors}"))?;
        if config.context.store == StoreKind::Memory && config.context.path.is_none() {
            bail!(
                "{}: the context store is in memory only, so another process cannot read it; \
                 set `context.path` to keep it in a file, or use Redis (`context.store = \"redis\"`)",
                self.pipeline.display()
            );
        }
        let runtime =
            ContextRuntime::from_config(&config, &EnvSource::Process).with_context(|| {
                format!("{}: cannot open the context store", self.pipeline.display())
            })?;
        Ok((config, runtime))
    }
}

/// A current-thread runtime for one command.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(future))
}
