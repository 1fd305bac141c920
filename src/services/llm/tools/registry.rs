//! [`ToolRegistry`]: tools by name.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::end_call::EndCall;
use super::loan_payment::LoanPaymentTool;
use super::tool::Tool;

/// Tools by name: the built-ins, plus any added in code.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.tools.keys()).finish()
    }
}

impl ToolRegistry {
    /// The name under which an application puts its registry in
    /// [`SessionResources`](crate::pipeline::SessionResources).
    pub const RESOURCE: &'static str = "tools";

    /// A registry with no tools.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The built-in tools: `end_call`, `loan_payment`.
    pub fn builtin() -> Self {
        let mut registry = Self::empty();
        registry.register(Arc::new(EndCall::new()));
        registry.register(Arc::new(LoanPaymentTool::new()));
        registry
    }

    /// Adds `tool` under its spec's name, replacing one of the same name.
    pub fn register(&mut self, tool: Arc<dyn Tool>) {
        self.tools.insert(tool.spec().name.clone(), tool);
    }

    /// The tool named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        self.tools.get(name).cloned()
    }

    /// Every tool name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }
}
