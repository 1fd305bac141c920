//! A tool of your own for the LLM: `order_status` looks an order up in a
//! table held in memory. It implements [`Tool`], is registered in a
//! [`ToolRegistry`] put in the session's resources, and is named by the
//! LLM's `tools = [...]` in a pipeline written in TOML. Building that
//! pipeline's processors shows the LLM finds it (and that an unregistered
//! name is refused); the tool is then called as the model would call it.
//! Nothing here needs the network or a key: a provider is only called when
//! a session runs.
//!
//! Run with: `cargo run --example custom_tool`

#![allow(clippy::print_stdout)] // an example reports on stdout

use std::collections::HashMap;
use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use voxpipe::pipeline::SessionSetup;
use voxpipe::pipeline_file::parse_pipeline;
use voxpipe::processors::ProcessorRegistry;
use voxpipe::services::llm::tools::{Tool, ToolError, ToolOutcome, ToolRegistry, ToolSpec};

/// An LLM that may look orders up, and hang up.
const PIPELINE: &str = r#"
[pipeline]
name = "order-desk"

[[processor]]
type = "llm"
provider = "openai"
model = "gpt-4o-mini"
system_prompt = "You answer questions about orders."
tools = ["order_status", "end_call"]
"#;

/// Looks an order up by its number.
struct OrderStatus {
    spec: ToolSpec,
    orders: HashMap<String, &'static str>,
}

impl OrderStatus {
    fn new() -> Self {
        OrderStatus {
            spec: ToolSpec {
                name: "order_status".to_owned(),
                description: "The status of an order, by its number.".to_owned(),
                // A JSON schema: the LLM checks the model's arguments
                // against it before `call` sees them.
                parameters: json!({
                    "type": "object",
                    "properties": {"order": {"type": "string", "description": "The order number."}},
                    "required": ["order"]
                }),
            },
            orders: HashMap::from([
                ("A-1001".to_owned(), "shipped on Monday"),
                ("A-1002".to_owned(), "waiting for stock"),
            ]),
        }
    }
}

#[async_trait]
impl Tool for OrderStatus {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: Value) -> Result<ToolOutcome, ToolError> {
        let order = arguments["order"].as_str().unwrap_or_default();
        match self.orders.get(order) {
            Some(status) => Ok(ToolOutcome::result(
                json!({"order": order, "status": status}).to_string(),
            )),
            // The model reads the error and can ask the caller again.
            None => Err(ToolError::Failed(format!("no order numbered {order:?}"))),
        }
    }
}

/// Builds every processor of `setup`'s session of the pipeline.
fn build_all(setup: &SessionSetup) -> Result<usize, Box<dyn Error>> {
    let config = parse_pipeline(
        Path::new("order-desk.toml"),
        PIPELINE,
        &ProcessorRegistry::builtin(),
    )?;
    for entry in &config.processors {
        entry.factory.build(setup)?;
    }
    Ok(config.processors.len())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let tool = Arc::new(OrderStatus::new());

    // Without the tool registered, the session refuses to start.
    let bare = SessionSetup::new("example", 16_000);
    match build_all(&bare) {
        Err(refused) => println!("without registering: {refused}"),
        Ok(_) => return Err("an unknown tool was accepted".into()),
    }

    // The built-in tools plus ours, where the LLM looks for them.
    let mut tools = ToolRegistry::builtin();
    tools.register(Arc::clone(&tool) as Arc<dyn Tool>);
    let setup = SessionSetup::new("example", 16_000);
    setup.resources.insert(ToolRegistry::RESOURCE, tools);
    let built = build_all(&setup)?;
    println!("with `order_status` registered: {built} processor(s) built");

    // What the LLM does when the model asks for the tool.
    for arguments in [json!({"order": "A-1001"}), json!({"order": "Z-9"})] {
        match tool.call(arguments.clone()).await {
            Ok(outcome) => println!("order_status({arguments}) -> {}", outcome.result),
            Err(error) => println!("order_status({arguments}) failed: {error}"),
        }
    }
    Ok(())
}
