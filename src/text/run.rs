//! One run of the text path: a message in, its answer out (or the
//! apology, after what was said, when the model fails).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::error::TextError;
use super::reply::{Reply, TextEvent};
use super::tap::TextTap;
use crate::agent::SessionMemory;
use crate::conversation::{Role, Turn};
use crate::frame::{FrameBody, TranscriptionFrame};
use crate::pipeline::{NamedProcessor, PipelineParams, PipelineTask, ProcessorEntry, SessionSetup};

/// Runs `path` once on `text`, for the call `call_id` set up as `setup`,
/// streaming what happens to `events`. A model that answers nothing, or
/// fails, gets `apology` (after what it said), recorded as its own turn.
pub(super) async fn run(
    path: &[ProcessorEntry],
    apology: &str,
    setup: &SessionSetup,
    memory: &SessionMemory,
    call_id: &str,
    text: &str,
    events: Option<mpsc::UnboundedSender<TextEvent>>,
) -> Result<Reply, TextError> {
    let mut setup = setup.clone();
    setup.system_prompt = Some(memory.prompt_source());
    let mut chain = Vec::with_capacity(path.len());
    for entry in path {
        let processor = entry
            .factory
            .build(&setup)
            .map_err(|source| TextError::Build {
                processor: entry.name.clone(),
                source,
            })?;
        chain.push(NamedProcessor {
            name: entry.name.clone(),
            processor,
        });
    }
    let last = chain.last().map(|p| p.name.clone()).unwrap_or_default();
    let tap = Arc::new(TextTap::new(last, events));
    let mut params = PipelineParams::new(Arc::clone(&setup.session_id), setup.sample_rate);
    params.allow_interruptions = false;
    params.measure = false;
    params.observers = vec![memory.observer(), Arc::clone(&tap) as _];
    params.resources = setup.resources.clone();
    let task = PipelineTask::new(chain, params);
    let handle = task.handle();
    handle
        .queue_frame(FrameBody::Transcription(TranscriptionFrame {
            text: text.to_owned(),
            user_id: None,
            language: None,
            at: Duration::ZERO,
        }))
        .await;
    handle.end("message answered").await;
    let outcome = task.run().await;
    let heard = tap.take();
    let answer = heard.text.trim();
    let failed = heard.failed || outcome.fatal_error.is_some();
    if !answer.is_empty() && !failed {
        return Ok(Reply {
            call_id: call_id.to_owned(),
            text: answer.to_owned(),
            failed: false,
        });
    }
    let why = heard
        .error
        .or(outcome.fatal_error.map(|e| e.message))
        .unwrap_or_else(|| "the model answered nothing".to_owned());
    // What was said before a failure stays said (and recorded by the
    // assistant aggregator); the apology follows it, as its own turn.
    let text = if answer.is_empty() {
        tracing::warn!(call_id, reason = %why, "no answer from the model; apologising");
        apology.to_owned()
    } else {
        tracing::warn!(call_id, reason = %why, "the answer failed partway; apologising after it");
        format!("{answer}\n\n{apology}")
    };
    memory.record_turn(Arc::new(Turn::completed(
        u64::MAX,
        Role::Assistant,
        apology.to_owned(),
        Duration::ZERO,
    )));
    Ok(Reply {
        call_id: call_id.to_owned(),
        text,
        failed: true,
    })
}
