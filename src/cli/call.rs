//! `voxpipe call --to NUMBER [--from NUMBER] [--param KEY=VALUE]... [--follow] FILE`:
//! places one outbound call through the pipeline's `[outbound]` dialler
//! (the code `POST /api/calls` runs) and prints its id. The status
//! callbacks and the media stream go to the server at `[server]
//! public_host`, which must be running on the same store; `--follow`
//! prints the call's status as that server records it, until it ends.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use voxpipe::config::Override;
use voxpipe::outbound::{CallRequest, DialError, Dialer as _, PhoneNumber, TwilioDialer};
use voxpipe::pipeline::{EnvSource, new_session_id};

/// How often `--follow` reads the call.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
pub(crate) struct CallArgs {
    /// The pipeline file (with `[outbound]`).
    file: PathBuf,

    /// The number to call, E.164 (e.g. +15551234567).
    #[arg(long)]
    to: String,

    /// The caller id, E.164; `[outbound] from` by default.
    #[arg(long)]
    from: Option<String>,

    /// A custom parameter of the session (`country=US` picks the segment).
    /// Repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,

    /// Print the call's status as it changes, until it ends.
    #[arg(long)]
    follow: bool,

    /// Override a value of the pipeline file by its dotted path. Repeatable.
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    overrides: Vec<Override>,
}

fn parameters(params: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    params
        .iter()
        .map(|param| {
            let (key, value) = param
                .split_once('=')
                .ok_or_else(|| anyhow!("--param `{param}` is not KEY=VALUE"))?;
            Ok((key.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

pub(crate) fn call(args: &CallArgs) -> anyhow::Result<()> {
    let to = PhoneNumber::parse(&args.to).context("--to")?;
    let from = args
        .from
        .as_deref()
        .map(PhoneNumber::parse)
        .transpose()
        .context("--from")?;
    let parameters = parameters(&args.params)?;
    voxpipe::outbound::check_parameters(&parameters).context("--param")?;
    let config = super::setup::load(&args.file, &args.overrides)
        .map_err(|_| anyhow!("the pipeline file is not valid"))?;
    let Some(section) = &config.outbound else {
        bail!("{} has no [outbound] section", args.file.display());
    };
    // The call's record must reach the server its stream and status
    // callbacks go to.
    super::store_args::require_shared_store(&config, &args.file)?;
    let runtime = super::setup::runtime().map_err(|_| anyhow!("cannot start the runtime"))?;
    runtime.block_on(async {
        let context = Arc::new(config.agent_runtime(&EnvSource::Process)?);
        let dialer = TwilioDialer::from_sections(
            section,
            &config.transport.twilio,
            config.server.public_host.as_ref().map(|host| host.as_str()),
            config.context.default_segment(),
            &EnvSource::Process,
            Arc::clone(&context),
            Vec::new(),
        )?;
        let request = CallRequest {
            to,
            from,
            parameters,
            webhook_url: None,
            metadata: serde_json::Map::new(),
            campaign: None,
        };
        let call_id = new_session_id();
        let placed = match dialer.dial(&call_id, &request).await {
            Ok(placed) => placed,
            Err(err @ (DialError::RateLimited { .. } | DialError::Unavailable(_))) => {
                // Not placed, and nobody will try again: the record says so
                // now rather than staying queued.
                let why = format!("not placed: {err}");
                if let Err(store_err) = dialer.fail_undialled(&call_id, &why).await {
                    tracing::warn!(call_id, error = %store_err, "cannot mark the call failed");
                }
                return Err(err.into());
            }
            Err(err) => return Err(err.into()),
        };
        println!("{}\t{}", placed.call_id, placed.twilio_sid);
        if !args.follow {
            return Ok(());
        }
        let mut last = None;
        loop {
            let call = dialer
                .store()
                .call(&call_id)
                .await?
                .ok_or_else(|| anyhow!("the call {call_id} is gone from the store"))?;
            if last != Some(call.status) {
                println!("{}", call.status.as_str());
                last = Some(call.status);
            }
            if call.status.is_final() {
                return Ok(());
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    })
}
