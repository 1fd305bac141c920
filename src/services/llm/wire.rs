//! The provider-neutral side of an LLM wire: what a request asks for, what
//! a streamed event says ([`ChatDelta`]), and the [`ChatWire`] a provider
//! implements (build the streaming request, parse each event's data). The
//! driver speaks only these; `openai.rs` is one provider of them.

use crate::conversation::Message;
use crate::services::ServiceError;

use super::tools::ToolSpec;

/// Whether the model may call tools in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// The model must answer in text (the tool-round cap was reached).
    None,
}

/// What to ask for, besides the messages.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest<'a> {
    /// The model name.
    pub model: &'a str,
    /// Sampling temperature, if set.
    pub temperature: Option<f64>,
    /// The longest answer, in tokens, if set.
    pub max_tokens: Option<u32>,
    /// The tools offered.
    pub tools: &'a [ToolSpec],
    /// Whether tools may be called.
    pub tool_choice: ToolChoice,
    /// A `response_format` (e.g. a strict `json_schema`), for the router's
    /// and the reviewer's requests.
    pub response_format: Option<&'a serde_json::Value>,
}

/// One thing a streamed chunk says.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatDelta {
    /// More of the answer's text.
    Text(String),
    /// A fragment of tool call `index`: the first usually carries the id and
    /// the name, the rest pieces of the JSON arguments.
    ToolCall {
        /// Which call of the response this fragment belongs to; `None`
        /// when the server did not say (some send each call whole, or in
        /// pieces, without an index): the assembler tells calls apart by
        /// their ids and names.
        index: Option<u32>,
        /// The call's id, when given.
        id: Option<String>,
        /// (A piece of) the tool's name, when given.
        name: Option<String>,
        /// A piece of the JSON arguments, when given.
        arguments: Option<String>,
    },
    /// Why the model stopped (`stop`, `tool_calls`, `length`, ...).
    Finish(String),
    /// `[DONE]`: the stream is complete.
    Done,
}

/// How a provider's chat API is spoken: building a streaming request and
/// parsing the `data` of each event.
pub(crate) trait ChatWire: Send + Sync + std::fmt::Debug {
    /// The provider's name for errors and logs.
    fn provider(&self) -> &'static str;

    /// A streaming request for `messages`.
    fn request(
        &self,
        client: &reqwest::Client,
        request: &ChatRequest<'_>,
        messages: &[Message],
    ) -> reqwest::RequestBuilder;

    /// What one event's data says.
    fn parse(&self, data: &str) -> Result<Vec<ChatDelta>, ServiceError>;
}
