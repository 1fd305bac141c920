//! Specialist agents and the router that picks one per user turn.
//!
//! ```toml
//! [[processor]]
//! type = "llm"
//! # ... model, tools (the pool the agents draw from) ...
//!
//! [processor.router]            # optional; these are the defaults
//! default_agent = "information" # who answers when the router names nobody (default: the first agent)
//! classify = true               # ask a model when no keyword rule matches
//! # model, base_url, api_key_env, prompt, history = 6
//! # timeout_secs = 10          # the classification's limit, retries included
//! # max_tokens = 200           # cap on its answer; default none
//!
//! [[processor.agents]]
//! name = "finance"
//! description = "Loans, instalments, interest."
//! system_prompt = "You are the finance specialist..."
//! tools = ["loan_payment"]      # names from the LLM's tools
//! keywords = ["loan", "interest rate"]  # optional rules, checked first
//! # model = "gpt-4o"            # optional, on the LLM's endpoint
//! ```
//!
//! Each response to a user turn is routed before it starts: the first
//! agent with a keyword whose words all occur in the user's last message;
//! else (with `classify`) a classification request that must answer a JSON
//! object `{"agent": name}` (a strict `json_schema` response format, the
//! answer validated anyway: servers without structured outputs get the
//! schema in the prompt); else, or when the answer names no agent or the
//! request fails, the default agent. The chosen agent answers with the
//! shared history under its own system prompt, tools and model; the LLM
//! pushes `AgentSelected`, which the assistant turn records.
//!
//! This file is sans-IO: the driver sends the request it builds.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Seconds;
use crate::conversation::{Message, Role};
use crate::pipeline::{BuildError, SessionSetup};

use super::side_model::{
    SideModel, default_limit, json_object, json_schema_format, side_max_tokens,
};
use super::tools::words::words;

/// The classifier's instructions when the TOML gives none.
pub const DEFAULT_ROUTER_PROMPT: &str = "\
You route a customer's message to the specialist agent best placed to answer it. \
Read the conversation, then pick one agent from the list by its description.";

/// `[[processor.agents]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// How the router and the turn records name it.
    pub name: String,
    /// What it handles, for the router.
    pub description: String,
    /// Its instructions, after the LLM's `system_prompt` when there is one.
    pub system_prompt: String,
    /// The tools it may call, by name, from the LLM's tools (registered,
    /// HTTP, client, document, CSV, MCP).
    #[serde(default)]
    pub tools: Vec<String>,
    /// Its model on the LLM's endpoint; default the LLM's.
    #[serde(default)]
    pub model: Option<String>,
    /// Words or phrases that route a message to it without asking a model.
    #[serde(default)]
    pub keywords: Vec<String>,
}

/// `[processor.router]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// The agent that answers when the router names none. Default: the
    /// first agent.
    #[serde(default)]
    pub default_agent: Option<String>,
    /// Ask a model when no keyword rule matches. Default true.
    #[serde(default = "yes")]
    pub classify: bool,
    /// The classifier's instructions (the agents' list and the answer's
    /// shape are added).
    #[serde(default)]
    pub prompt: Option<String>,
    /// The classifier's model; default the LLM's.
    #[serde(default)]
    pub model: Option<String>,
    /// The classifier's endpoint; default the LLM's.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The variable holding the classifier endpoint's key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The longest the classification request may take, retries included, in
    /// seconds (above 0, at most 120); past it the response goes on
    /// with the default agent. Default 10.
    #[serde(default = "default_limit")]
    pub timeout_secs: Seconds<1, 120>,
    /// The longest answer of the classifier, in tokens (1 to 100,000), sent as
    /// `max_tokens`. Default: none (the server's).
    #[serde(default, deserialize_with = "side_max_tokens")]
    pub max_tokens: Option<u32>,
    /// The most recent messages the classifier reads, 1 to 50. Default 6.
    #[serde(default = "default_history")]
    pub history: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            default_agent: None,
            classify: true,
            prompt: None,
            model: None,
            base_url: None,
            api_key_env: None,
            timeout_secs: default_limit(),
            max_tokens: None,
            history: default_history(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_history() -> usize {
    6
}

/// One agent, ready for a session.
#[derive(Debug)]
pub(crate) struct Agent {
    pub(crate) name: Arc<str>,
    description: String,
    pub(crate) system_prompt: String,
    pub(crate) tools: Vec<String>,
    pub(crate) model: Option<String>,
    /// Each keyword's words.
    keywords: Vec<Vec<String>>,
}

/// How a response's agent was chosen, as the `AgentSelected` frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoutedBy {
    Keywords,
    Llm,
    Default,
}

impl RoutedBy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RoutedBy::Keywords => "keywords",
            RoutedBy::Llm => "llm",
            RoutedBy::Default => "default",
        }
    }
}

/// The agents and how to choose among them. See the module docs.
#[derive(Debug)]
pub(crate) struct Router {
    pub(crate) agents: Vec<Agent>,
    default: usize,
    /// The classification request's model, when the router asks one.
    pub(crate) classifier: Option<SideModel>,
    prompt: String,
    history: usize,
    pub(crate) response_format: Value,
}

impl Router {
    /// The router of `agents`; `known_tool` says whether the LLM has a
    /// tool of that name.
    pub(crate) fn build(
        setup: &SessionSetup,
        config: &RouterConfig,
        agents: &[AgentConfig],
        known_tool: impl Fn(&str) -> bool,
    ) -> Result<Self, BuildError> {
        let invalid = |message: String| BuildError::Invalid(message);
        if !(1..=50).contains(&config.history) {
            return Err(invalid(format!(
                "router.history must be between 1 and 50, not {}",
                config.history
            )));
        }
        let mut built: Vec<Agent> = Vec::with_capacity(agents.len());
        for agent in agents {
            let name = agent.name.trim();
            if name.is_empty() || name.eq_ignore_ascii_case("none") {
                return Err(invalid(format!(
                    "agents: `{}` cannot name an agent",
                    agent.name
                )));
            }
            if built.iter().any(|a| a.name.eq_ignore_ascii_case(name)) {
                return Err(invalid(format!("agents: two agents are named `{name}`")));
            }
            if let Some(tool) = agent.tools.iter().find(|t| !known_tool(t)) {
                return Err(invalid(format!(
                    "agent `{name}`: unknown tool `{tool}`; an agent's tools must be the LLM's \
                     (`tools`, `http_tools`, `client_tools`, `document_tools`, `csv_tools`, or \
                     an MCP server's: its `tool_prefix`, then a name on its `tools` list)"
                )));
            }
            built.push(Agent {
                name: name.into(),
                description: agent.description.clone(),
                system_prompt: agent.system_prompt.clone(),
                tools: agent.tools.clone(),
                model: agent.model.clone(),
                keywords: agent
                    .keywords
                    .iter()
                    .map(|k| words(k).collect::<Vec<_>>())
                    .filter(|k| !k.is_empty())
                    .collect(),
            });
        }
        let default = match &config.default_agent {
            None => 0,
            Some(wanted) => built
                .iter()
                .position(|a| a.name.eq_ignore_ascii_case(wanted.trim()))
                .ok_or_else(|| {
                    invalid(format!(
                        "router.default_agent `{wanted}` is not one of the agents ({})",
                        built
                            .iter()
                            .map(|a| &*a.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?,
        };
        let classifier = if config.classify {
            Some(
                SideModel::build(
                    setup,
                    "router",
                    config.model.as_deref(),
                    config.base_url.as_deref(),
                    config.api_key_env.as_deref(),
                )?
                .bounded(config.timeout_secs, config.max_tokens),
            )
        } else {
            None
        };
        let mut names: Vec<Value> = built.iter().map(|a| json!(&*a.name)).collect();
        names.push(json!("none"));
        let response_format = json_schema_format(
            "route",
            json!({
                "type": "object",
                "properties": {"agent": {"type": "string", "enum": names}},
                "required": ["agent"],
                "additionalProperties": false
            }),
        );
        Ok(Router {
            agents: built,
            default,
            classifier,
            prompt: config
                .prompt
                .clone()
                .unwrap_or_else(|| DEFAULT_ROUTER_PROMPT.to_owned()),
            history: config.history,
            response_format,
        })
    }

    /// The agent that answers when nobody is named.
    pub(crate) fn default_agent(&self) -> usize {
        self.default
    }

    /// The first agent with a keyword whose words all occur in the last
    /// user message of `context`.
    pub(crate) fn by_keywords(&self, context: &[Message]) -> Option<usize> {
        let said: Vec<String> = words(last_user_text(context)?).collect();
        self.agents.iter().position(|agent| {
            agent
                .keywords
                .iter()
                .any(|keyword| keyword.iter().all(|w| said.contains(w)))
        })
    }

    /// The classification request for `context`.
    pub(crate) fn classification(&self, context: &[Message]) -> Vec<Message> {
        let mut instructions = format!("{}\n\nAgents:\n", self.prompt);
        for agent in &self.agents {
            instructions.push_str(&format!("- {}: {}\n", agent.name, agent.description));
        }
        instructions.push_str(
            "\nAnswer with one JSON object and nothing else: {\"agent\": \"<name>\"}, \
             the name exactly as listed, or \"none\" when no agent fits.",
        );
        let recent: Vec<&Message> = context
            .iter()
            .filter(|m| matches!(m.role, Role::User | Role::Assistant))
            .filter(|m| m.content.as_deref().is_some_and(|c| !c.trim().is_empty()))
            .collect();
        let recent = &recent[recent.len().saturating_sub(self.history)..];
        let mut conversation = String::from("The conversation, latest message last:\n");
        for message in recent {
            let who = if message.role == Role::User {
                "user"
            } else {
                "assistant"
            };
            conversation.push_str(&format!(
                "{who}: {}\n",
                message.content.as_deref().unwrap_or_default()
            ));
        }
        vec![
            Message::text(Role::System, instructions),
            Message::text(Role::User, conversation),
        ]
    }

    /// The agent a classifier's `answer` names, if it names one.
    pub(crate) fn named_in(&self, answer: &str) -> Option<usize> {
        let object = json_object(answer)?;
        let name = object.get("agent")?.as_str()?.trim();
        self.agents
            .iter()
            .position(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// The text of the last user message, if the context ends a user turn.
fn last_user_text(context: &[Message]) -> Option<&str> {
    context
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .and_then(|m| m.content.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::SessionSetup;

    fn agent(name: &str, keywords: &[&str]) -> AgentConfig {
        AgentConfig {
            name: name.into(),
            description: format!("{name} questions"),
            system_prompt: format!("You are {name}."),
            tools: vec![],
            model: None,
            keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    fn router(config: &RouterConfig) -> Result<Router, BuildError> {
        Router::build(
            &SessionSetup::new("test", 16_000),
            config,
            &[
                agent("information", &[]),
                agent("catalogue", &["price list", "stock"]),
                agent("finance", &["loan"]),
            ],
            |tool| tool == "loan_payment",
        )
    }

    fn user(text: &str) -> Vec<Message> {
        vec![Message::text(Role::User, text)]
    }

    #[test]
    fn keyword_rules_need_all_their_words() {
        let router = router(&RouterConfig::default()).unwrap();
        assert_eq!(router.by_keywords(&user("Can I get a LOAN?")), Some(2));
        assert_eq!(router.by_keywords(&user("send the list of prices")), None);
        assert_eq!(router.by_keywords(&user("the price list please")), Some(1));
        assert_eq!(router.by_keywords(&[]), None);
    }

    #[test]
    fn the_classifier_answer_is_validated() {
        let router = router(&RouterConfig::default()).unwrap();
        assert_eq!(router.named_in(r#"{"agent": "finance"}"#), Some(2));
        assert_eq!(router.named_in(r#"{"agent": " Catalogue "}"#), Some(1));
        assert_eq!(router.named_in(r#"{"agent": "none"}"#), None);
        assert_eq!(router.named_in(r#"{"agent": "sales"}"#), None);
        assert_eq!(router.named_in(r#"{"agent": 3}"#), None);
        assert_eq!(router.named_in("finance"), None);
        assert_eq!(router.default_agent(), 0);
        assert_eq!(
            router.response_format["json_schema"]["schema"]["properties"]["agent"]["enum"],
            json!(["information", "catalogue", "finance", "none"])
        );
    }

    #[test]
    fn the_classification_lists_the_agents_and_the_recent_conversation() {
        let router = router(&RouterConfig {
            history: 2,
            ..RouterConfig::default()
        })
        .unwrap();
        let context = vec![
            Message::text(Role::System, "secret instructions"),
            Message::text(Role::User, "hello"),
            Message::text(Role::Assistant, "Hi, how can I help?"),
            Message::text(Role::User, "how much is a kettle?"),
        ];
        let request = router.classification(&context);
        let system = request[0].content.as_deref().unwrap();
        assert!(system.contains("- catalogue: catalogue questions"));
        let conversation = request[1].content.as_deref().unwrap();
        assert!(!conversation.contains("hello") && !conversation.contains("secret"));
        assert!(conversation.ends_with("user: how much is a kettle?\n"));
    }

    #[test]
    fn bad_agent_lists_are_refused() {
        let unknown = RouterConfig {
            default_agent: Some("sales".into()),
            ..RouterConfig::default()
        };
        let error = router(&unknown).unwrap_err().to_string();
        assert!(error.contains("router.default_agent `sales`"), "{error}");
        let setup = SessionSetup::new("test", 16_000);
        let config = RouterConfig::default();
        let twice = [agent("a", &[]), agent("A", &[])];
        let error = Router::build(&setup, &config, &twice, |_| true).unwrap_err();
        assert!(error.to_string().contains("two agents"));
        let mut tooled = agent("a", &[]);
        tooled.tools = vec!["nope".into()];
        let error = Router::build(&setup, &config, &[tooled], |_| false).unwrap_err();
        assert!(error.to_string().contains("unknown tool `nope`"));
        let error = Router::build(&setup, &config, &[agent("none", &[])], |_| true).unwrap_err();
        assert!(error.to_string().contains("cannot name an agent"));
    }
}
