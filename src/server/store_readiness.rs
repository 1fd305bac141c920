//! The context store's readiness check: `/health` asks whether the store
//! answers (registered by `ServerBuilder::context`).

use std::sync::Arc;

use async_trait::async_trait;

use super::readiness::ReadinessCheck;
use crate::agent::AgentRuntime;

/// `/health`'s `store` check: ready when the context store answers.
pub(crate) struct StoreReadiness(pub(crate) Arc<AgentRuntime>);

#[async_trait]
impl ReadinessCheck for StoreReadiness {
    fn name(&self) -> &str {
        "store"
    }

    async fn check(&self) -> Result<(), String> {
        self.0
            .ready()
            .await
            .map_err(|err| format!("{} store: {err}", self.0.store().backend()))
    }
}
