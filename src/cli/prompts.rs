//! `voxpipe prompts list|show|history|rollback|set|trace|add-case`: the
//! segment prompts, their versions and the optimiser's traces.

#![allow(clippy::print_stdout)]

use anyhow::{Context as _, anyhow};
use voxpipe::agent::optimiser::{mean_of, rollback, set_prompt_version};
use voxpipe::store::{OptimisationTrace, PromptKey, TestCase};

use super::store_args::StoreArgs;

#[derive(Debug, clap::Args)]
pub(crate) struct PromptsArgs {
    #[command(subcommand)]
    command: PromptsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum PromptsCommand {
    /// Print every stored prompt key with its version.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print a prompt key's live text and version.
    Show {
        /// `prompt:base`, `prompt:segment:*:{industry}` or
        /// `prompt:segment:{country}:{industry}`.
        key: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print a prompt key's versions, oldest first.
    History {
        /// The prompt key.
        key: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Make an earlier version live again (as a new version).
    Rollback {
        /// The prompt key.
        key: String,
        /// The version to restore; the one before the live one by default.
        #[arg(long)]
        to: Option<u64>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set a prompt key's text (as a new version).
    Set {
        /// The prompt key.
        key: String,
        /// The text.
        text: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print an optimisation's trace (its id is the failed call's).
    Trace {
        /// The optimisation's id.
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Add a test case to `test_cases:list` (skipped if its objection is
    /// listed).
    AddCase {
        /// The customer's objection.
        #[arg(long)]
        input: String,
        /// What a good answer does.
        #[arg(long)]
        target: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn prompt_key(name: &str) -> anyhow::Result<PromptKey> {
    PromptKey::parse(name).ok_or_else(|| {
        anyhow!(
            "{name:?} is not a prompt key: expected prompt:base, prompt:segment:*:INDUSTRY \
             or prompt:segment:COUNTRY:INDUSTRY (COUNTRY and INDUSTRY: {})",
            voxpipe::store::SEGMENT_PART_RULE
        )
    })
}

pub(crate) fn prompts(args: &PromptsArgs) -> anyhow::Result<()> {
    match &args.command {
        PromptsCommand::List { store } => {
            let operator = store.open()?;
            let store = operator.context.store();
            operator.block_on(async {
                for key in store.prompt_keys().await? {
                    let state = store.prompt_state(&key).await?;
                    let text = state.text.unwrap_or_default();
                    let first = text.lines().next().unwrap_or_default();
                    println!("{key}\tv{}\t{} bytes\t{first}", state.version, text.len());
                }
                anyhow::Ok(())
            })?;
        }
        PromptsCommand::Show { key, store } => {
            let key = prompt_key(key)?;
            let operator = store.open()?;
            let state = operator.block_on(operator.context.store().prompt_state(&key))?;
            let text = state
                .text
                .filter(|t| !t.trim().is_empty())
                .with_context(|| format!("{key} holds no prompt"))?;
            println!("{key} (version {})\n{text}", state.version);
        }
        PromptsCommand::History { key, store } => {
            let key = prompt_key(key)?;
            let operator = store.open()?;
            let history = operator.block_on(operator.context.store().prompt_history(&key))?;
            if history.is_empty() {
                println!("{key} has no versions yet");
            }
            for version in history {
                println!(
                    "v{}\t{}\tmean {}\tcall {}\toptimisation {}\t{}",
                    version.version,
                    version.deployed_at,
                    mean_of(version.scores.as_ref()),
                    version.call_id.as_deref().unwrap_or("-"),
                    version.optimisation.as_deref().unwrap_or("-"),
                    version.reason
                );
                for line in version.prompt.lines() {
                    println!("    {line}");
                }
            }
        }
        PromptsCommand::Rollback { key, to, store } => {
            let key = prompt_key(key)?;
            let operator = store.open()?;
            let version = operator.block_on(rollback(&**operator.context.store(), &key, *to))?;
            println!(
                "{key} is at version {} ({})",
                version.version, version.reason
            );
        }
        PromptsCommand::Set { key, text, store } => {
            let key = prompt_key(key)?;
            let operator = store.open()?;
            let version =
                operator.block_on(set_prompt_version(&**operator.context.store(), &key, text))?;
            println!("{key} is at version {}", version.version);
        }
        PromptsCommand::Trace { id, store } => {
            let operator = store.open()?;
            let trace = operator
                .block_on(operator.context.store().optimisation(id))?
                .with_context(|| format!("no optimisation {id}"))?;
            print_trace(&trace);
        }
        PromptsCommand::AddCase {
            input,
            target,
            store,
        } => {
            let operator = store.open()?;
            let case = TestCase {
                input: input.clone(),
                target: target.clone(),
            };
            let added = operator.block_on(operator.context.store().add_test_cases(&[case]))?;
            println!(
                "{}",
                if added == 1 {
                    "test case added to test_cases:list"
                } else {
                    "test_cases:list already holds this objection"
                }
            );
        }
    }
    Ok(())
}

fn print_trace(trace: &OptimisationTrace) {
    println!(
        "optimisation {} of {} (call {}), against version {}",
        trace.id, trace.key, trace.call_id, trace.base_version
    );
    println!("decision: {} ({})", trace.decision.as_str(), trace.reason);
    if let Some(version) = trace.deployed_version {
        println!("deployed as version {version}");
    }
    println!(
        "means: candidate {}, current {}, threshold {:.3}; {} model requests",
        mean_of(trace.candidate_scores.as_ref()),
        mean_of(trace.current_scores.as_ref()),
        trace.threshold,
        trace.llm_calls
    );
    for (name, scores) in [
        ("candidate", &trace.candidate_scores),
        ("current", &trace.current_scores),
    ] {
        for case in scores.iter().flat_map(|s| &s.cases) {
            println!(
                "  {name}\t{:.3}\t{:?}: {}",
                case.score, case.input, case.reason
            );
        }
    }
    println!("candidate:");
    for line in trace.candidate.lines() {
        println!("    {line}");
    }
}
