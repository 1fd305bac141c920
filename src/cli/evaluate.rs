//! `voxpipe evaluate ID`: judge a stored call again.

#![allow(clippy::print_stdout)]

use anyhow::bail;
use voxpipe::store::Evaluation;

use super::store_args::StoreArgs;

#[derive(Debug, clap::Args)]
pub(crate) struct EvaluateArgs {
    /// The call (session) id.
    id: String,
    #[command(flatten)]
    store: StoreArgs,
}

pub(crate) fn evaluate(args: &EvaluateArgs) -> anyhow::Result<()> {
    let operator = args.store.open()?;
    let Some(evaluator) = operator.context.evaluator() else {
        bail!("the pipeline has no enabled [evaluator] section");
    };
    match operator.block_on(evaluator.evaluate(&args.id, true))? {
        Evaluation::Evaluated {
            outcome,
            score,
            tactics,
            reason,
            ..
        } => {
            println!("{} (score {score:.2}): {reason}", outcome.as_str());
            for tactic in tactics {
                println!("  - {tactic}");
            }
        }
        Evaluation::Unevaluated { reason, .. } => println!("unevaluated: {reason}"),
    }
    Ok(())
}
