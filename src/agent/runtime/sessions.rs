//! A runtime's sessions: opening a session's memory (its prompt, its
//! writer, its lease) and waiting for the writers at shutdown.

use std::sync::Arc;
use std::time::Duration;

use super::AgentRuntime;
use crate::agent::lost_sessions::new_lease_holder;
use crate::agent::memory::SessionMemory;
use crate::agent::prompt::SessionPrompt;
use crate::agent::skills::SearchContextTool;
use crate::agent::writer::{WriterDone, spawn_writer};
use crate::pipeline::{SessionResources, SessionSetup};
use crate::services::llm::tools::ToolRegistry;
use crate::store::time::unix_ms;
use crate::store::{CallRecord, Segment};

impl AgentRuntime {
    /// Adds the tools this runtime serves (`search_context`, when
    /// `[context.skills]` is set) to the tool registry in `resources`, where
    /// the LLM finds the tools its `tools = [...]` names.
    pub fn install_tools(&self, resources: &SessionResources) {
        let Some(skills) = &self.skills else {
            return;
        };
        let mut registry = resources
            .get::<ToolRegistry>(ToolRegistry::RESOURCE)
            .map_or_else(ToolRegistry::builtin, |r| ToolRegistry::clone(&r));
        registry.register(Arc::new(SearchContextTool::new(Arc::clone(skills))));
        resources.insert(ToolRegistry::RESOURCE, registry);
    }

    /// Opens the memory of the session `setup` describes, bound to
    /// `transport` (`twilio`, `webrtc`, `file`): resolves its segment from
    /// `setup.custom_parameters` (else `[context]`), reads its system prompt
    /// and tactics (for at most `prompt_timeout_ms`; on failure the session
    /// uses the pipeline's prompt), and starts its writer, which stores the
    /// call as pending. Its tools go into `setup.resources`.
    /// The session keeps a lease in the store while its writer runs: if
    /// its process stops mid-call, another process's sweep ends the call
    /// once `[context] lost_session_grace_secs` has passed (see
    /// [`LostSessionSweeper`](crate::agent::LostSessionSweeper)); not in an
    /// embedded store without a file, which dies with the process.
    pub async fn open_session(&self, setup: &SessionSetup, transport: &str) -> SessionMemory {
        self.open(setup, transport, true).await
    }

    /// Opens the memory of one message's session of a text conversation
    /// on `channel`, as [`open_session`](Self::open_session) does, but
    /// without a lease: the conversation goes on between messages, and
    /// its end is the idle sweep's, not a lost session's.
    pub async fn open_text_session(&self, setup: &SessionSetup, channel: &str) -> SessionMemory {
        self.open(setup, channel, false).await
    }

    async fn open(&self, setup: &SessionSetup, transport: &str, leased: bool) -> SessionMemory {
        self.install_tools(&setup.resources);
        let call_id = setup.session_id.to_string();
        let segment = Segment::resolve(&setup.custom_parameters, &self.section.default_segment());
        let limit = Duration::from_millis(self.section.prompt_timeout_ms);
        let heading = &self.section.tactics_heading;
        let prompt = match tokio::time::timeout(
            limit,
            SessionPrompt::load_promoted(
                &*self.store,
                &segment,
                heading,
                self.section.tactic_min_calls,
            ),
        )
        .await
        {
            Ok(Ok(prompt)) => prompt,
            Ok(Err(err)) => {
                tracing::warn!(call_id, error = %err, "cannot read the prompt and tactics; using the pipeline's prompt");
                fallback_prompt(heading)
            }
            Err(_) => {
                tracing::warn!(
                    call_id,
                    ?limit,
                    "the prompt and tactics took too long; using the pipeline's prompt"
                );
                fallback_prompt(heading)
            }
        };
        let mut record = CallRecord::pending(
            call_id,
            transport,
            segment.clone(),
            setup.custom_parameters.clone(),
            unix_ms(),
        );
        record.prompt_source = Some(prompt.source());
        // Each writer holds the call's lease on its own: a reconnect's
        // second writer keeps it after the first one has finished.
        let lease_holder = (leased && self.keeps_leases).then(new_lease_holder);
        let mut writer = self.writer.clone();
        writer.lease_holder.clone_from(&lease_holder);
        let (recorder, done) = spawn_writer(Arc::clone(&self.store), record, writer);
        if let Some(holder) = lease_holder {
            let call_id = recorder.call_id().to_owned();
            let lease = self.lost_sessions.keep_lease(call_id, holder, done.clone());
            let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
            leases.retain(|lease| !lease.is_finished());
            leases.push(lease);
        }
        {
            let mut writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
            writers.retain(|w| w.borrow().done.is_none());
            writers.push(done.clone());
        }
        let uploads = self.uploader.as_ref().map(|uploader| uploader.notifier());
        SessionMemory::new(recorder, prompt, segment, done, uploads)
    }

    /// Waits for every session writer to stop (for a graceful shutdown), and
    /// then for their leases' keepers, at most `limit` in all; returns how
    /// many writers were still writing at the end.
    pub async fn drain_writers(&self, limit: Duration) -> usize {
        let writers: Vec<WriterDone> = self
            .writers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let all = futures_util::future::join_all(writers.into_iter().map(|mut w| async move {
            // A writer whose task is gone counts as stopped.
            let _stopped = w.wait_for(|s| s.done.is_some()).await;
        }));
        let started = tokio::time::Instant::now();
        let _all_stopped = tokio::time::timeout(limit, all).await;
        // Then their leases' keepers, which forget the leases of calls
        // whose end is written.
        let leases = std::mem::take(&mut *self.leases.lock().unwrap_or_else(|e| e.into_inner()));
        // A keeper whose call's end waits in the turn spool keeps its lease
        // long after: not waited for past a few seconds.
        let left = limit
            .saturating_sub(started.elapsed())
            .min(Duration::from_secs(5));
        let _leases_done = tokio::time::timeout(left, futures_util::future::join_all(leases)).await;
        self.writers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|w| w.borrow().done.is_none())
            .count()
    }
}

fn fallback_prompt(heading: &str) -> SessionPrompt {
    SessionPrompt {
        stored: None,
        tactics: Vec::new(),
        tactics_heading: heading.to_owned(),
    }
}
