//! The context store in the server: each session's memory, the store's
//! readiness in `/health`, and the writers drained at shutdown.

use std::sync::Arc;

use async_trait::async_trait;

use super::health::ReadinessCheck;
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
