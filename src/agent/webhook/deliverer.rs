//! Delivering the outbox: claim what is due, POST it, and record the
//! result.
//!
//! A claimed delivery is leased (its due time moved past the attempt's
//! timeout) before the POST, so a deliverer that dies mid-attempt leaves it
//! to be claimed again once the lease runs out: a restart never loses a
//! delivery, and delivery is at least once (receivers deduplicate by the
//! `X-Voxpipe-Event-Id` header). A failed attempt is rescheduled with
//! exponential backoff; after `max_attempts` the delivery moves to
//! `webhook:dead` and an error is logged. Each attempt is counted in
//! `voxpipe_webhook_deliveries_total{result}` (see `metrics`).
//!
//! Redirects are not followed: a 3xx is a failed attempt, retried like a
//! 5xx, and logged with its status only (never the URL, which may carry a
//! token).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ring::hmac;

use super::config::CALL_COMPLETED;
use super::config::WebhookSettings;
use super::event::PendingDelivery;
use crate::services::ServiceError;
use crate::services::http::client_without_redirects;
use crate::store::codec::encode;
use crate::store::settings::millis;
use crate::store::time::unix_ms;
use crate::store::{OutboxEntry, Store, StoreError};

/// What one pass over the due deliveries did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryPass {
    /// Answered 2xx.
    pub delivered: usize,
    /// Failed and rescheduled.
    pub retrying: usize,
    /// Failed for the last time: moved to the dead letters.
    pub dead: usize,
}

/// Delivers the webhook outbox.
pub struct WebhookDeliverer {
    store: Arc<dyn Store>,
    settings: Arc<WebhookSettings>,
    http: &'static reqwest::Client,
    /// Deliveries attempted at once.
    batch: usize,
    /// Pause between passes when nothing was due.
    poll: Duration,
}

impl WebhookDeliverer {
    /// A deliverer for `store`'s outbox.
    pub fn new(
        store: Arc<dyn Store>,
        settings: Arc<WebhookSettings>,
    ) -> Result<Self, ServiceError> {
        Ok(WebhookDeliverer {
            http: client_without_redirects()?,
            store,
            settings,
            batch: 16,
            poll: Duration::from_secs(1),
        })
    }

    /// Delivers until `shutdown` resolves (an attempt under way when it does
    /// is abandoned; its lease makes it due again).
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut failing = false;
        let mut sizes_read: Option<tokio::time::Instant> = None;
        loop {
            if sizes_read.is_none_or(|at| at.elapsed() >= super::metrics::SIZES_PERIOD) {
                sizes_read = Some(tokio::time::Instant::now());
                if let Err(err) = self.refresh_sizes().await {
                    tracing::debug!(error = %err, "cannot read the webhook outbox's size");
                }
            }
            let pass = tokio::select! {
                () = &mut shutdown => return,
                pass = self.deliver_due(unix_ms()) => pass,
            };
            let busy = match pass {
                Ok(pass) => {
                    failing = false;
                    pass.delivered + pass.retrying + pass.dead == self.batch
                }
                Err(err) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %err, "cannot read the webhook outbox");
                    }
                    false
                }
            };
            if !busy {
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(self.poll) => {}
                }
            }
        }
    }

    /// Attempts every delivery due at `now_ms` (up to one batch), at once.
    pub async fn deliver_due(&self, now_ms: u64) -> Result<DeliveryPass, StoreError> {
        let lease = self
            .settings
            .timeout
            .saturating_add(Duration::from_secs(30));
        let claimed = self
            .store
            .claim_deliveries(now_ms, millis(lease), self.batch)
            .await?;
        let results =
            futures_util::future::join_all(claimed.iter().map(|entry| self.attempt(entry, now_ms)))
                .await;
        let mut pass = DeliveryPass::default();
        let mut failed = None;
        for result in results {
            match result {
                Ok(Attempt::Delivered) => pass.delivered += 1,
                Ok(Attempt::Retrying) => pass.retrying += 1,
                Ok(Attempt::Dead) => pass.dead += 1,
                Err(err) => failed = Some(err),
            }
        }
        self.settings
            .metrics
            .attempted(pass.delivered, pass.retrying, pass.dead);
        failed.map_or(Ok(pass), Err)
    }

    /// Reads the outbox's and dead letters' sizes into the metrics.
    pub async fn refresh_sizes(&self) -> Result<(), StoreError> {
        let (outbox, dead) =
            tokio::try_join!(self.store.outbox_len(), self.store.dead_letters_len())?;
        self.settings.metrics.sizes(outbox, dead);
        Ok(())
    }

    async fn attempt(&self, entry: &OutboxEntry, now_ms: u64) -> Result<Attempt, StoreError> {
        let mut delivery: PendingDelivery = match serde_json::from_str(&entry.payload) {
            Ok(delivery) => delivery,
            Err(err) => {
                tracing::error!(id = %entry.id, error = %err, "unreadable webhook delivery; moved to the dead letters");
                self.store.bury_delivery(&entry.id, &entry.payload).await?;
                return Ok(Attempt::Dead);
            }
        };
        let error = match self.post(&delivery).await {
            Ok(()) => {
                self.store.complete_delivery(&entry.id).await?;
                tracing::info!(id = %delivery.id, attempts = delivery.attempts + 1, "webhook delivered");
                return Ok(Attempt::Delivered);
            }
            Err(error) => error,
        };
        delivery.attempts += 1;
        delivery.last_error = Some(error.clone());
        let payload = encode(&entry.id, &delivery)?;
        if delivery.attempts >= self.settings.max_attempts {
            tracing::error!(id = %delivery.id, attempts = delivery.attempts, error, "webhook delivery failed for good; moved to the dead letters");
            self.store.bury_delivery(&entry.id, &payload).await?;
            return Ok(Attempt::Dead);
        }
        let wait = self.settings.backoff(delivery.attempts);
        tracing::warn!(id = %delivery.id, attempts = delivery.attempts, retry_in = ?wait, error, "webhook delivery failed");
        self.store
            .reschedule_delivery(&entry.id, &payload, now_ms.saturating_add(millis(wait)))
            .await?;
        Ok(Attempt::Retrying)
    }

    async fn post(&self, delivery: &PendingDelivery) -> Result<(), String> {
        let body = serde_json::to_vec(&delivery.body).map_err(|e| e.to_string())?;
        let mut request = self
            .http
            .post(&delivery.url)
            .header("content-type", "application/json")
            .header("x-voxpipe-event", event_type(&delivery.body))
            .header("x-voxpipe-event-id", &delivery.id)
            .header("x-voxpipe-attempt", (delivery.attempts + 1).to_string());
        if let Some(secret) = &self.settings.secret {
            request = request.header("x-voxpipe-signature", signature(secret, &body));
        }
        let timeout = self.settings.timeout;
        let response = match tokio::time::timeout(timeout, request.body(body).send()).await {
            Err(_) => return Err(format!("no answer within {timeout:?}")),
            // Without the URL: it may carry a token.
            Ok(Err(err)) => return Err(crate::pipeline::error_chain(&err.without_url())),
            Ok(Ok(response)) => response,
        };
        // A 3xx is a failure like any other: redirects are not followed
        // (a followed 302 would GET the landing page and count its 200).
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    }
}

enum Attempt {
    Delivered,
    Retrying,
    Dead,
}

/// `sha256=` and the hex HMAC-SHA256 of `body` keyed by `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The event a queued body carries (deliveries queued under another
/// `webhook_event` keep theirs).
fn event_type(body: &serde_json::Value) -> &str {
    body["event_type"].as_str().unwrap_or(CALL_COMPLETED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
