//! `voxpipe skills add|search`: learned objection/rebuttal pairs.

#![allow(clippy::print_stdout)]

use anyhow::{Context as _, bail};
use voxpipe::agent::AgentRuntime;
use voxpipe::agent::skills::SkillLibrary;

use super::store_args::StoreArgs;

#[derive(Debug, clap::Args)]
pub(crate) struct SkillsArgs {
    #[command(subcommand)]
    command: SkillsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SkillsCommand {
    /// Embed an objection and store it with its rebuttal (`skill:{hash}`).
    Add {
        /// The customer's objection.
        #[arg(long)]
        trigger: String,
        /// What to answer.
        #[arg(long)]
        rebuttal: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the stored rebuttals closest to a query, as `search_context`
    /// would return them.
    Search {
        /// The objection to look up.
        query: String,
        /// How many.
        #[arg(long, short, default_value_t = 3)]
        k: usize,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub(crate) fn skills(args: &SkillsArgs) -> anyhow::Result<()> {
    match &args.command {
        SkillsCommand::Add {
            trigger,
            rebuttal,
            store,
        } => {
            let operator = store.open()?;
            let library = library(&operator.context)?;
            let skill = operator.block_on(library.add(trigger, rebuttal))?;
            println!(
                "stored skill:{} ({} dimensions)",
                skill.hash,
                skill.vector.len()
            );
        }
        SkillsCommand::Search { query, k, store } => {
            let operator = store.open()?;
            let library = library(&operator.context)?;
            let hits = operator.block_on(async {
                library.refresh().await.context("cannot load the skills")?;
                library.search(query, *k).await.context("search failed")
            })?;
            if hits.is_empty() {
                println!("no skills stored");
            }
            for hit in hits {
                println!(
                    "{:.3}  {}\n       → {}",
                    hit.similarity, hit.trigger, hit.rebuttal
                );
            }
        }
    }
    Ok(())
}

fn library(runtime: &AgentRuntime) -> anyhow::Result<&SkillLibrary> {
    match runtime.skills() {
        Some(library) => Ok(library),
        None => bail!("the pipeline has no [context.skills] section (the embeddings endpoint)"),
    }
}
