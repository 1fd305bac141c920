//! `voxpipe campaign FILE --csv NUMBERS.csv [--calls-per-second N]
//! [--max-concurrent N] [--retry-attempts N] [--retry-backoff-secs N]
//! [--follow]`: queues a campaign in the pipeline's store, through the
//! code `POST /api/campaigns` runs, and prints its id and the rows left
//! out. The `voxpipe serve` processes on that store dial it; `--follow`
//! prints its progress until every number is done.

#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use voxpipe::config::Override;
use voxpipe::outbound::campaign::{CampaignRequest, RetryPolicy, new_campaign_id};
use voxpipe::pipeline::EnvSource;
use voxpipe::store::time::unix_ms;
use voxpipe::store::{CampaignState, CampaignWrite};

/// How often `--follow` reads the campaign.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, clap::Args)]
pub(crate) struct CampaignArgs {
    /// The pipeline file (its `[context]` store is where the servers look).
    file: PathBuf,

    /// The numbers: a CSV file with a `to` column; other columns become
    /// each call's parameters.
    #[arg(long)]
    csv: PathBuf,

    /// New calls per second across every server.
    #[arg(long)]
    calls_per_second: Option<f64>,

    /// Live calls at once across every server.
    #[arg(long)]
    max_concurrent: Option<u64>,

    /// Tries per number, the first included, for busy, no-answer, failed.
    #[arg(long, default_value_t = 1)]
    retry_attempts: u32,

    /// Seconds between a try's end and the next.
    #[arg(long, default_value_t = 300)]
    retry_backoff_secs: u64,

    /// Print the progress until every number is done.
    #[arg(long)]
    follow: bool,

    /// Override a value of the pipeline file by its dotted path. Repeatable.
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    overrides: Vec<Override>,
}

pub(crate) fn campaign(args: &CampaignArgs) -> anyhow::Result<()> {
    let csv = std::fs::read_to_string(&args.csv)
        .with_context(|| format!("cannot read {}", args.csv.display()))?;
    let request = CampaignRequest {
        numbers: None,
        csv: Some(csv),
        calls_per_second: args.calls_per_second,
        max_concurrent: args.max_concurrent,
        retry: Some(RetryPolicy {
            attempts: args.retry_attempts,
            backoff_secs: args.retry_backoff_secs,
            ..RetryPolicy::default()
        }),
        window: None,
        webhook_url: None,
        metadata: serde_json::Map::new(),
    };
    let (campaign, created) = request.plan(new_campaign_id(), unix_ms())?;
    for row in &created.rejected {
        eprintln!("{}:{}: {}", args.csv.display(), row.line, row.reason);
    }
    let config = super::setup::load(&args.file, &args.overrides)
        .map_err(|_| anyhow!("the pipeline file is not valid"))?;
    // The servers that dial it must see the campaign.
    super::store_args::require_shared_store(&config, &args.file)?;
    let runtime = super::setup::runtime().map_err(|_| anyhow!("cannot start the runtime"))?;
    runtime.block_on(async {
        let context = Arc::new(config.agent_runtime(&EnvSource::Process)?);
        let store = context.store();
        let write = store.create_campaign(&campaign).await?;
        if write != CampaignWrite::Created {
            // A fresh random id another campaign holds: not written.
            bail!("campaign id {} is taken; run it again", created.campaign_id);
        }
        println!(
            "{}\tqueued {}\tduplicates {}\trejected {}",
            created.campaign_id,
            created.queued,
            created.duplicates,
            created.rejected.len()
        );
        if !args.follow {
            return Ok(());
        }
        loop {
            let progress = store
                .campaign(&created.campaign_id)
                .await?
                .ok_or_else(|| anyhow!("the campaign is gone from the store"))?;
            let done: Vec<String> = progress
                .done
                .iter()
                .map(|(s, n)| format!("{s} {n}"))
                .collect();
            println!(
                "{}\tpending {}\tactive {}\tdone: {}",
                progress.state.as_str(),
                progress.pending,
                progress.active,
                done.join(", ")
            );
            if matches!(progress.state, CampaignState::Finished)
                || (progress.state == CampaignState::Canceled && progress.active == 0)
            {
                return Ok(());
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    })
}
