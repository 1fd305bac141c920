//! `voxpipe learn TRANSCRIPT_FILE --outcome closed_deal|lost_deal --agent
//! human|ai`: learn skills and test cases from a call handled elsewhere.

#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use voxpipe::agent::learning::{DealOutcome, HandledBy, Submission, parse_transcript};

use super::store_args::StoreArgs;

/// The largest transcript file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, clap::Args)]
pub(crate) struct LearnArgs {
    /// The transcript: a JSON list of turns `[{"role": "agent"|"customer",
    /// "text": "..."}]`, or text lines starting `Agent:` or `Customer:`.
    transcript_file: PathBuf,
    /// How the call ended: a closed deal teaches skills and test cases, a
    /// lost deal test cases only (the objections the agent did not
    /// overcome).
    #[arg(long, value_enum)]
    outcome: OutcomeArg,
    /// Who handled the call.
    #[arg(long, value_enum)]
    agent: AgentArg,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum OutcomeArg {
    ClosedDeal,
    LostDeal,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum AgentArg {
    Human,
    Ai,
}

pub(crate) fn learn(args: &LearnArgs) -> anyhow::Result<()> {
    let file = &args.transcript_file;
    let shown = file.display();
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {shown}"))?
        .len();
    if size > MAX_FILE_BYTES {
        bail!("{shown}: {size} bytes; a transcript is at most {MAX_FILE_BYTES}");
    }
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {shown}"))?;
    let turns = parse_transcript(&text).with_context(|| format!("{shown}"))?;
    let outcome = match args.outcome {
        OutcomeArg::ClosedDeal => DealOutcome::Closed,
        OutcomeArg::LostDeal => DealOutcome::Lost,
    };
    let agent = match args.agent {
        AgentArg::Human => HandledBy::Human,
        AgentArg::Ai => HandledBy::Ai,
    };
    let submission =
        Submission::new(turns, outcome, agent).map_err(|err| anyhow::anyhow!("{shown}: {err}"))?;
    let operator = args.store.open()?;
    let Some(learner) = operator.context.learner() else {
        bail!("the pipeline has no enabled [learning] section");
    };
    let report = operator.block_on(learner.learn_submission(&submission))?;
    if let Some(reason) = &report.nothing {
        println!("learned nothing: {reason}");
        return Ok(());
    }
    println!(
        "learned {} pair(s) from a {} ({} agent): {} skill(s) stored, {} new test case(s)",
        report.pairs.len(),
        report.outcome,
        report.agent,
        report.skills.len(),
        report.test_cases_added
    );
    for pair in &report.pairs {
        println!("  \"{}\"\n    → {}", pair.objection, pair.rebuttal);
    }
    Ok(())
}
