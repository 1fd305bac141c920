//! `search_context` as an LLM tool.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::library::{
    SEARCH_CONTEXT, SEARCH_CONTEXT_DESCRIPTION, SkillError, SkillLibrary, search_context_parameters,
};
use crate::services::llm::tools::{Tool, ToolError, ToolOutcome, ToolSpec};

/// The `search_context` tool: the rebuttals that worked against the
/// objection the model passes, from the [`SkillLibrary`].
pub struct SearchContextTool {
    library: Arc<SkillLibrary>,
    spec: ToolSpec,
}

impl SearchContextTool {
    /// The tool over `library`.
    pub fn new(library: Arc<SkillLibrary>) -> Self {
        SearchContextTool {
            library,
            spec: ToolSpec {
                name: SEARCH_CONTEXT.to_owned(),
                description: SEARCH_CONTEXT_DESCRIPTION.to_owned(),
                parameters: search_context_parameters(),
            },
        }
    }
}

#[async_trait]
impl Tool for SearchContextTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    /// A lookup: a preemptive reply that is discarded changed nothing.
    fn safe_to_run_early(&self) -> bool {
        true
    }

    async fn call(&self, arguments: Value) -> Result<ToolOutcome, ToolError> {
        match self.library.search_context(arguments).await {
            Ok(result) => Ok(ToolOutcome::result(result)),
            Err(SkillError::Embed(err)) => Err(ToolError::Service(err)),
            Err(err) => Err(ToolError::Failed(err.to_string())),
        }
    }
}

/// A tool with `search_context`'s name and parameters that no session ever
/// calls: what `voxpipe check` builds an LLM naming `search_context`
/// with, when `[context.skills]` is set (a session gets the real tool from
/// the runtime, which needs the store and the embedder).
pub fn search_context_stand_in() -> Arc<dyn Tool> {
    Arc::new(StandIn(ToolSpec {
        name: SEARCH_CONTEXT.to_owned(),
        description: SEARCH_CONTEXT_DESCRIPTION.to_owned(),
        parameters: search_context_parameters(),
    }))
}

struct StandIn(ToolSpec);

#[async_trait]
impl Tool for StandIn {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }

    async fn call(&self, _arguments: Value) -> Result<ToolOutcome, ToolError> {
        Err(ToolError::Failed(
            "search_context is served by the agent runtime, not this check".into(),
        ))
    }
}
