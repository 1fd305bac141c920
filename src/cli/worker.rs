//! `voxpipe worker`: background work on a shared store, without serving
//! calls: evaluation jobs (verdicts, extraction), webhook deliveries, skill
//! index refreshes.

use anyhow::bail;

use super::store_args::StoreArgs;

#[derive(Debug, clap::Args)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    store: StoreArgs,
}

pub(crate) fn worker(args: &WorkerArgs) -> anyhow::Result<()> {
    let operator = args.store.open()?;
    let config = &operator.config;
    let evaluates = config.evaluator.as_ref().is_some_and(|e| e.enabled);
    let extracts = config
        .extraction
        .as_ref()
        .is_some_and(|e| e.section.enabled);
    if !evaluates && !extracts && config.webhook.is_none() && config.storage.is_none() {
        bail!(
            "nothing to do: the pipeline has no enabled [evaluator] or [extraction], no [webhook] and no [storage]"
        );
    }
    operator.block_on(async {
        // SIGTERM (a container stopped, a rolling restart) or ctrl-c: no
        // new work is taken; what is left waits in the store.
        let shutdown = async {
            voxpipe::server::shutdown::signal().await;
            tracing::info!("stopping");
        };
        let shutdown = futures_util::FutureExt::shared(Box::pin(shutdown));
        // A worker ends lost sessions too, as every server does: the calls
        // of a server that died are ended while none runs.
        let (background, ()) = tokio::join!(
            operator.context.run_background(shutdown.clone()),
            operator.context.sweep_lost_sessions(shutdown)
        );
        background
    })?;
    Ok(())
}
