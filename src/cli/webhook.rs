//! `voxpipe webhook redrive|status`: the webhook outbox's dead letters.

#![allow(clippy::print_stdout)]

use voxpipe::agent::webhook::redrive_dead_letters;
use voxpipe::store::time::unix_ms;

use super::store_args::StoreArgs;

#[derive(Debug, clap::Args)]
pub(crate) struct WebhookArgs {
    #[command(subcommand)]
    command: WebhookCommand,
}

#[derive(Debug, clap::Subcommand)]
enum WebhookCommand {
    /// Print how many deliveries wait in the outbox and the dead letters.
    Status {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Put dead letters (deliveries out of attempts) back in the outbox,
    /// the oldest first, with a fresh set of attempts, due now.
    Redrive {
        /// The most dead letters moved.
        #[arg(long, default_value_t = 10_000)]
        max: usize,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub(crate) fn webhook(args: &WebhookArgs) -> anyhow::Result<()> {
    match &args.command {
        WebhookCommand::Status { store } => {
            let operator = store.open()?;
            let store = operator.context.store();
            let outbox = operator.block_on(store.outbox_len())?;
            let dead = operator.block_on(store.dead_letters_len())?;
            println!("outbox: {outbox}\ndead letters: {dead}");
        }
        WebhookCommand::Redrive { max, store } => {
            let operator = store.open()?;
            let store = operator.context.store();
            let done = operator.block_on(redrive_dead_letters(&**store, *max, unix_ms()))?;
            println!("{} put back in the outbox", done.queued);
            if done.skipped > 0 {
                println!(
                    "{} dropped: their events were queued or delivered already",
                    done.skipped
                );
            }
            if done.unreadable > 0 {
                println!("{} unreadable, left in the dead letters", done.unreadable);
            }
        }
    }
    Ok(())
}
