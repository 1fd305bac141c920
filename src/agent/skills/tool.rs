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

    async fn call(&self, arguments: Value) -> Result<ToolOutcome, ToolError> {
        match self.library.search_context(arguments).await {
            Ok(result) => Ok(ToolOutcome::result(result)),
            Err(SkillError::Embed(err)) => Err(ToolError::Service(err)),
            Err(err) => Err(ToolError::Failed(err.to_string())),
        }
    }
}
