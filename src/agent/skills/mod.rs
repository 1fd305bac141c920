//! Learned skills and the `search_context` tool: objections and the
//! rebuttals that answered them, found by the cosine similarity of their
//! embeddings.

mod embedder;
mod index;
mod library;

mod tool;

pub use embedder::{Embedder, OpenAiEmbedder};
pub use index::{IndexError, SkillHit, SkillIndex};
pub use library::{
    Refresh, SEARCH_CONTEXT, SEARCH_CONTEXT_DESCRIPTION, SkillError, SkillLibrary,
    search_context_parameters,
};

pub use tool::{SearchContextTool, search_context_stand_in};
