//! Object storage's check: `/health` asks whether the storage answers and
//! takes the credentials (registered by `ServerBuilder::context` when
//! `[storage]` is set). Not required: calls go on while it fails, and
//! their objects wait (in the evaluation job, in the recording spool).

use async_trait::async_trait;

use super::readiness::ReadinessCheck;
use crate::objects::ObjectStorage;

/// `/health`'s `storage` check.
pub(crate) struct StorageReadiness(pub(crate) ObjectStorage);

#[async_trait]
impl ReadinessCheck for StorageReadiness {
    fn name(&self) -> &str {
        "storage"
    }

    async fn check(&self) -> Result<(), String> {
        // Not logged here: a load balancer polls this; the uploads log
        // their own failures.
        self.0
            .probe()
            .await
            .map_err(|err| format!("{}: {err}", self.0.url()))
    }

    fn required(&self) -> bool {
        false
    }
}
