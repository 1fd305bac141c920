//! `voxpipe tactics list|add|remove`: the refinement loop's tactics lists.

#![allow(clippy::print_stdout)]

use voxpipe::store::TacticsList;

use super::store_args::StoreArgs;

#[derive(Debug, clap::Args)]
pub(crate) struct TacticsArgs {
    #[command(subcommand)]
    command: TacticsCommand,
}

/// Which list: `base` (agent:tactics), `winning` or `failed`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ListName {
    Base,
    Winning,
    Failed,
}

impl From<ListName> for TacticsList {
    fn from(name: ListName) -> Self {
        match name {
            ListName::Base => TacticsList::Base,
            ListName::Winning => TacticsList::Winning,
            ListName::Failed => TacticsList::Failed,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
enum TacticsCommand {
    /// Print the tactics lists (all three, or the one named).
    List {
        /// Only this list.
        #[arg(value_enum)]
        list: Option<ListName>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Add tactics to a list (the base list by default), skipping any the
    /// list already holds.
    Add {
        /// The tactics, one per argument.
        #[arg(required = true)]
        tactics: Vec<String>,
        /// The list to add to.
        #[arg(long, value_enum, default_value = "base")]
        list: ListName,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Take tactics out of a list (the winning list by default: the one
    /// sessions' prompts read from what callers said), matched as the
    /// lists match them (whitespace and ASCII case aside).
    Remove {
        /// The tactics, one per argument.
        #[arg(required = true)]
        tactics: Vec<String>,
        /// The list to remove from.
        #[arg(long, value_enum, default_value = "winning")]
        list: ListName,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub(crate) fn tactics(args: &TacticsArgs) -> anyhow::Result<()> {
    match &args.command {
        TacticsCommand::List { list, store } => {
            let operator = store.open()?;
            let lists = match list {
                Some(list) => vec![TacticsList::from(*list)],
                None => vec![TacticsList::Base, TacticsList::Winning, TacticsList::Failed],
            };
            for list in lists {
                let tactics = operator.block_on(operator.context.store().tactics(list))?;
                println!("{} ({})", list.key_name(), tactics.len());
                for tactic in tactics {
                    println!("  - {tactic}");
                }
            }
        }
        TacticsCommand::Add {
            tactics,
            list,
            store,
        } => {
            let operator = store.open()?;
            let list = TacticsList::from(*list);
            let added = operator.block_on(operator.context.store().add_tactics(list, tactics))?;
            println!(
                "{added} added to {} ({} already there)",
                list.key_name(),
                tactics.len() - added
            );
        }
        TacticsCommand::Remove {
            tactics,
            list,
            store,
        } => {
            let operator = store.open()?;
            let list = TacticsList::from(*list);
            let mut removed = 0;
            for tactic in tactics {
                if operator.block_on(operator.context.store().remove_tactic(list, tactic))? {
                    removed += 1;
                } else {
                    println!("not in {}: {tactic}", list.key_name());
                }
            }
            println!("{removed} removed from {}", list.key_name());
        }
    }
    Ok(())
}
