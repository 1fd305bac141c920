//! `[[processor]] type = "llm", provider = "openai"`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde::Deserialize;

use crate::config::Seconds;
use crate::pipeline::Processor;
use crate::pipeline::ProcessorFactory;
use crate::pipeline::{BuildError, SessionSetup};
use crate::services::url::check_http_url;
use crate::services::{ApiKey, ConnectionOptions};

use super::driver::Responder;
use super::openai::OpenAiChat;
use super::reflection::{ReflectionConfig, Reviewer};
use super::router::{AgentConfig, Router, RouterConfig};
use super::service::LlmService;
use super::tool_schema::check_schema;
use super::tools::mcp::McpServerConfig;
use super::tools::{
    ClientToolCalls, ClientToolConfig, CsvToolConfig, DocumentToolConfig, HttpToolConfig, Tool,
    ToolRegistry,
};

/// An OpenAI-compatible chat-completions LLM (OpenAI, vLLM, llama.cpp,
/// Ollama, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiLlmConfig {
    /// The API root; `/chat/completions` is added. Default
    /// `https://api.openai.com/v1`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The model name.
    pub model: String,
    /// The variable holding the API key, sent as a bearer token; none for
    /// servers without keys.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Put first when the context has no system message of its own. With a
    /// context store, a stored segment prompt replaces it and the winning
    /// and base tactics follow (the agent layer's session prompt).
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Sampling temperature, 0 to 2.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// The longest answer, in tokens.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Registered tools the model may call, by name (`end_call`, and tools
    /// added in code).
    #[serde(default)]
    pub tools: Vec<String>,
    /// Tools served over HTTP, declared here.
    #[serde(default)]
    pub http_tools: Vec<HttpToolConfig>,
    /// Tools the client app runs (over RTVI), declared here.
    #[serde(default)]
    pub client_tools: Vec<ClientToolConfig>,
    /// Search over markdown documents (BM25), declared here.
    #[serde(default)]
    pub document_tools: Vec<DocumentToolConfig>,
    /// Lookup in a CSV table, declared here.
    #[serde(default)]
    pub csv_tools: Vec<CsvToolConfig>,
    /// MCP servers whose tools the model may call; their tools are listed
    /// when a session starts.
    #[serde(default)]
    pub mcp_servers: Vec<McpServerConfig>,
    /// Specialist agents: each user turn is answered by one, chosen by the
    /// router. Without agents the LLM answers with all its tools.
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
    /// How the agent of each turn is chosen (needs `agents`).
    #[serde(default)]
    pub router: Option<RouterConfig>,
    /// A reviewer that checks each answer before it goes out.
    #[serde(default)]
    pub reflection: Option<ReflectionConfig>,
    /// Rounds of tool calls per response; the round after the last one
    /// must answer in text. Default 5.
    #[serde(default = "default_max_tool_rounds")]
    pub max_tool_rounds: u32,
    /// The longest a tool call may take, in seconds, unless the tool says
    /// otherwise. Default 10.
    #[serde(default = "default_tool_timeout")]
    pub tool_timeout_secs: Seconds<1, 300>,
    /// Timeouts and retries.
    #[serde(default)]
    pub connection: ConnectionOptions,
    /// Set once a session has checked the agents' tools against those the
    /// MCP servers listed (shared by the sessions built from this config).
    #[serde(skip)]
    agent_tools_checked: Arc<AtomicBool>,
}

fn default_base_url() -> String {
    "https://api.openai.com/v1".to_owned()
}

/// The session's system prompt: with a context store, its segment prompt
/// (else `configured`) followed by the refinement loop's tactics; without
/// one, `configured`.
fn session_system_prompt(setup: &SessionSetup, configured: Option<&str>) -> Option<String> {
    match &setup.system_prompt {
        Some(source) => {
            Some(source.system_prompt(configured.unwrap_or_default())).filter(|p| !p.is_empty())
        }
        None => configured.map(str::to_owned),
    }
}

fn default_max_tool_rounds() -> u32 {
    5
}

fn default_tool_timeout() -> Seconds<1, 300> {
    Seconds::from_millis(10_000)
}

impl ProcessorFactory for OpenAiLlmConfig {
    fn build(&self, setup: &SessionSetup) -> Result<Box<dyn Processor>, BuildError> {
        check_http_url("base_url", &self.base_url)?;
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(BuildError::Invalid(format!(
                "temperature must be between 0 and 2, not {t}"
            )));
        }
        if self.max_tool_rounds > 20 {
            return Err(BuildError::Invalid(format!(
                "max_tool_rounds must be at most 20, not {}",
                self.max_tool_rounds
            )));
        }
        let registry = setup
            .resources
            .get::<ToolRegistry>(ToolRegistry::RESOURCE)
            .map_or_else(ToolRegistry::builtin, |r| ToolRegistry::clone(&r));
        let mut tools: Vec<Arc<dyn Tool>> = Vec::new();
        for name in &self.tools {
            let tool = registry.get(name).ok_or_else(|| {
                BuildError::Invalid(format!(
                    "unknown tool `{name}`; registered tools: {}",
                    registry.names().collect::<Vec<_>>().join(", ")
                ))
            })?;
            // Tools added in code: a schema that does not compile would
            // leave their arguments unchecked.
            check_schema(&tool.spec().parameters).map_err(|e| {
                BuildError::Invalid(format!(
                    "tool `{name}`: its parameters are not a valid JSON Schema: {e}"
                ))
            })?;
            tools.push(tool);
        }
        for http in &self.http_tools {
            tools.push(Arc::new(http.build(setup)?));
        }
        let client_calls = Arc::new(ClientToolCalls::default());
        for client in &self.client_tools {
            tools.push(Arc::new(client.build(Arc::clone(&client_calls))?));
        }
        for documents in &self.document_tools {
            tools.push(Arc::new(documents.build()?));
        }
        for table in &self.csv_tools {
            tools.push(Arc::new(table.build()?));
        }
        let specs: Vec<_> = tools.iter().map(|t| t.spec().clone()).collect();
        for (i, spec) in specs.iter().enumerate() {
            if specs[..i].iter().any(|s| s.name == spec.name) {
                return Err(BuildError::Invalid(format!(
                    "two tools are named `{}`",
                    spec.name
                )));
            }
        }
        for (i, server) in self.mcp_servers.iter().enumerate() {
            if self.mcp_servers[..i].iter().any(|s| s.name == server.name) {
                return Err(BuildError::Invalid(format!(
                    "two MCP servers are named `{}`",
                    server.name
                )));
            }
        }
        let mcp_servers = self
            .mcp_servers
            .iter()
            .map(|server| server.build(setup))
            .collect::<Result<Vec<_>, _>>()?;
        let router = match (&self.router, self.agents.is_empty()) {
            (Some(_), true) => {
                return Err(BuildError::Invalid(
                    "[processor.router] needs [[processor.agents]] to route to".into(),
                ));
            }
            (_, true) => None,
            (config, false) => {
                let default = RouterConfig::default();
                // MCP tools are listed when a session starts: a name is
                // refused here only if no server could offer it (the LLM
                // warns once the servers have listed theirs).
                let known = |name: &str| {
                    specs.iter().any(|s| s.name == name)
                        || self.mcp_servers.iter().any(|s| s.may_provide(name))
                };
                Some(Router::build(
                    setup,
                    config.as_ref().unwrap_or(&default),
                    &self.agents,
                    known,
                )?)
            }
        };
        let reviewer = self
            .reflection
            .as_ref()
            .map(|config| Reviewer::build(setup, config))
            .transpose()?;
        let api_key = ApiKey::from_env(setup, "api_key_env", self.api_key_env.as_deref())?;
        let responder = Responder {
            wire: Box::new(OpenAiChat::new(&self.base_url, api_key)),
            model: self.model.clone(),
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            system_prompt: session_system_prompt(setup, self.system_prompt.as_deref()),
            tools,
            specs,
            max_tool_rounds: self.max_tool_rounds,
            tool_timeout: self.tool_timeout_secs.duration(),
            connection: self.connection.resolve()?,
            router,
            reviewer,
        };
        Ok(Box::new(
            LlmService::new(
                responder,
                mcp_servers,
                Arc::clone(&self.agent_tools_checked),
            )
            .with_client_tool_calls(client_calls),
        ))
    }

    /// Connects to the MCP servers (a child started with `npx` takes
    /// seconds, which the first call should not wait for).
    fn warm_up(&self, setup: &SessionSetup) {
        for server in &self.mcp_servers {
            // Building starts the connection; a variable not set is
            // reported by the sessions' builds.
            let _ = server.build(setup);
        }
    }
}
