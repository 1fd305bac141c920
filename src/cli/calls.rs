//! `voxpipe calls show ID`: a call's state, its extraction and its
//! transcript; `voxpipe calls objects ID`, `voxpipe calls fetch ID KIND`:
//! its objects; `voxpipe calls stats`: what the calls of a time range add
//! up to (the JSON of `GET /api/analytics`).

#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use voxpipe::objects::ObjectKind;
use voxpipe::server::{AnalyticsQuery, analytics_report};
use voxpipe::store::time::unix_ms;
use voxpipe::store::{CallRecord, Evaluation, Extraction, Interaction, Learned};

use super::call_objects::{fetch, key_of, list};
use super::store_args::StoreArgs;

#[derive(Debug, clap::Args)]
pub(crate) struct CallsArgs {
    #[command(subcommand)]
    command: CallsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CallsCommand {
    /// Print a call's state and its transcript.
    Show {
        /// The call (session) id.
        id: String,
        /// Print `{"call": ..., "transcript": [...]}` as JSON instead.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a call's objects in object storage (recording, transcript,
    /// profile, audit record): their keys and sizes.
    Objects {
        /// The call (session) id.
        id: String,
        /// Print them as JSON instead.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// What the calls created in a time range add up to, as JSON: counts
    /// by status, outcome and direction, success rate, mean score,
    /// duration and turn-latency percentiles (as `GET /api/analytics`).
    Stats {
        /// From this RFC 3339 time (default: a day before `--to`).
        #[arg(long)]
        from: Option<String>,
        /// To this RFC 3339 time (default: now).
        #[arg(long)]
        to: Option<String>,
        /// Only this segment: COUNTRY:INDUSTRY, COUNTRY, * for either part.
        #[arg(long)]
        segment: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Fetch one of a call's objects from object storage.
    Fetch {
        /// The call (session) id.
        id: String,
        /// `recording`, `transcript`, `profile` or `audit`.
        kind: String,
        /// Where to write it (`-` for standard output).
        #[arg(long, short)]
        output: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub(crate) fn calls(args: &CallsArgs) -> anyhow::Result<()> {
    let (id, json, store) = match &args.command {
        CallsCommand::Show { id, json, store } => (id, json, store),
        CallsCommand::Objects { id, json, store } => return list(&store.open()?, id, *json),
        CallsCommand::Fetch {
            id,
            kind,
            output,
            store,
        } => return fetch(&store.open()?, id, kind, output),
        CallsCommand::Stats {
            from,
            to,
            segment,
            store,
        } => return stats(from, to, segment, store),
    };
    let operator = store.open()?;
    let store = operator.context.store();
    let (call, turns) =
        operator.block_on(async { tokio::try_join!(store.call(id), store.turns(id)) })?;
    let Some(call) = call else {
        bail!("no call {id} in the {} store", store.backend());
    };
    if *json {
        let value = serde_json::json!({ "call": call, "transcript": turns });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).context("cannot print the call")?
        );
    } else {
        print!("{}", describe(&call, &turns));
    }
    Ok(())
}

fn stats(
    from: &Option<String>,
    to: &Option<String>,
    segment: &Option<String>,
    store: &StoreArgs,
) -> anyhow::Result<()> {
    let params = [("from", from), ("to", to), ("segment", segment)]
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), value.clone()?)));
    let query = AnalyticsQuery::parse(params, unix_ms())
        .map_err(|bad| anyhow::anyhow!("--{}: {}", bad.parameter, bad.message))?;
    let operator = store.open()?;
    let report = operator.block_on(analytics_report(operator.context.store().as_ref(), &query))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&report).context("cannot print the stats")?
    );
    Ok(())
}

fn describe(call: &CallRecord, turns: &[Interaction]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "call {}  {}  over {}\n",
        call.call_id,
        call.status.as_str(),
        call.transport
    ));
    out.push_str(&format!("  created  {}\n", call.created_at));
    if let Some(at) = &call.started_at {
        out.push_str(&format!("  started  {at}\n"));
    }
    if let Some(at) = &call.ended_at {
        let reason = call.end_reason.as_deref().unwrap_or("?");
        out.push_str(&format!("  ended    {at} ({reason})\n"));
    }
    let segment = [&call.segment.country, &call.segment.industry]
        .map(|part| part.as_deref().unwrap_or("*"))
        .join(" / ");
    out.push_str(&format!("  segment  {segment}\n"));
    if let Some(source) = &call.prompt_source {
        out.push_str(&format!("  prompt   {source}\n"));
    }
    for (key, value) in &call.custom_parameters {
        out.push_str(&format!("  param    {key} = {value}\n"));
    }
    match &call.evaluation {
        Some(Evaluation::Evaluated {
            outcome,
            score,
            tactics,
            reason,
            model,
            ..
        }) => {
            out.push_str(&format!(
                "  outcome  {} (score {score:.2}, judged by {model}): {reason}\n",
                outcome.as_str()
            ));
            if !tactics.is_empty() {
                out.push_str(&format!("  tactics  {}\n", tactics.join("; ")));
            }
        }
        Some(Evaluation::Unevaluated { reason, .. }) => {
            out.push_str(&format!("  outcome  unevaluated: {reason}\n"));
        }
        None => out.push_str("  outcome  not evaluated yet\n"),
    }
    describe_extraction(call.extraction.as_ref(), &mut out);
    describe_learned(call.learned.as_ref(), &mut out);
    if !call.objects.is_empty() {
        out.push_str("\nstored objects\n");
        for kind in ObjectKind::ALL {
            let key = key_of(&call.objects, kind).unwrap_or("not stored");
            out.push_str(&format!("  {:<11} {key}\n", kind.as_str()));
        }
    }
    out.push_str(&format!("\ntranscript ({} turns)\n", turns.len()));
    for turn in turns {
        let role = turn.speaker();
        let secs = turn.session_ms as f64 / 1000.0;
        out.push_str(&format!(
            "  [{}] {secs:>7.2}s {role}: {}",
            turn.index, turn.text
        ));
        for call in &turn.tool_calls {
            out.push_str(&format!(" → {}({})", call.name, call.arguments));
        }
        if turn.interrupted {
            out.push_str("  (interrupted)");
        }
        out.push('\n');
    }
    out
}

/// The extraction, its data as indented JSON (nothing when the pipeline
/// has no `[extraction]` or the job has not run yet).
fn describe_extraction(extraction: Option<&Extraction>, out: &mut String) {
    match extraction {
        Some(Extraction::Extracted {
            data,
            model,
            attempts,
            ..
        }) => {
            out.push_str(&format!(
                "  extraction by {model} ({attempts} attempt{}):\n",
                if *attempts == 1 { "" } else { "s" }
            ));
            let pretty = serde_json::to_string_pretty(data).unwrap_or_else(|_| data.to_string());
            for line in pretty.lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
        Some(Extraction::Unextracted { reason, .. }) => {
            out.push_str(&format!("  extraction  unextracted: {reason}\n"));
        }
        None => {}
    }
}

/// What `[learning]` took from the call (nothing when it has not run).
fn describe_learned(learned: Option<&Learned>, out: &mut String) {
    let (pairs, what) = match learned {
        Some(Learned::Learned {
            pairs,
            skills,
            test_cases_added,
            ..
        }) => (
            pairs,
            format!(
                "{} skill(s) stored, {test_cases_added} new test case(s)",
                skills.len()
            ),
        ),
        Some(Learned::Waiting {
            pairs,
            test_cases_added,
            ..
        }) => (
            pairs,
            format!("skills waiting for the embedder, {test_cases_added} new test case(s)"),
        ),
        Some(Learned::Nothing { reason, .. }) => {
            out.push_str(&format!("  learned  nothing: {reason}\n"));
            return;
        }
        None => return,
    };
    out.push_str(&format!("  learned  {what}:\n"));
    for pair in pairs {
        out.push_str(&format!("    \"{}\" → {}\n", pair.objection, pair.rebuttal));
    }
}
