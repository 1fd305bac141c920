//! [`MessageSender`]: answers sent through Twilio's Messages resource.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::transport::twilio::messaging::CreateMessage;
use crate::transport::twilio::{CreateCallError, TwilioRest};

/// Sends messages through Twilio's Messages resource for the account.
#[derive(Debug, Clone)]
pub(crate) struct MessageSender {
    pub(crate) rest: TwilioRest,
    pub(crate) account_sid: String,
    /// Set once Twilio refused a `StatusCallback` as invalid (21609): the
    /// same URL would be refused again, so answers stop asking for one
    /// for the rest of the process.
    pub(crate) callbacks_refused: Arc<AtomicBool>,
}

/// How many times a message is tried while Twilio is rate limiting or down.
const ATTEMPTS: u32 = 4;

/// The longest wait between two tries.
const MAX_WAIT: Duration = Duration::from_secs(5);

impl MessageSender {
    /// A sender through `rest` for `account_sid`.
    pub(crate) fn new(rest: TwilioRest, account_sid: String) -> Self {
        MessageSender {
            rest,
            account_sid,
            callbacks_refused: Arc::default(),
        }
    }

    /// Whether Twilio refused this server's `StatusCallback` (21609).
    pub(crate) fn callbacks_refused(&self) -> bool {
        self.callbacks_refused.load(Ordering::Relaxed)
    }

    /// Notes that Twilio refused this server's `StatusCallback` (21609);
    /// logged once.
    pub(crate) fn refuse_callbacks(&self) {
        if !self.callbacks_refused.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "Twilio refused the answers' StatusCallback as invalid (21609): answers are sent without one \
                 from now on, so undelivered ones are not recorded; give [server] public_host a valid hostname \
                 (no `_`) and restart"
            );
        }
    }

    /// Sends one message. A 429 is tried again after its `Retry-After`, and
    /// a 503 or a connection never made (nothing created) after 1, 2, then
    /// 4 s, each wait at most 5 s; a request whose answer was lost, or
    /// another 5xx (perhaps taken), is not, so a message is never sent
    /// twice.
    pub(crate) async fn send(
        &self,
        message: &CreateMessage<'_>,
    ) -> Result<String, CreateCallError> {
        let mut attempt = 1;
        loop {
            let result = self.rest.create_message(&self.account_sid, message).await;
            let wait = match &result {
                Err(CreateCallError::RateLimited { retry_after }) => {
                    retry_after.unwrap_or(Duration::from_secs(1))
                }
                Err(
                    err @ (CreateCallError::Unavailable(_)
                    | CreateCallError::ServerError { status: 503 }),
                ) => {
                    tracing::warn!(attempt, error = %err, "Twilio is unavailable; the message waits");
                    Duration::from_secs(1 << (attempt - 1))
                }
                _ => return result,
            };
            if attempt == ATTEMPTS {
                return result;
            }
            tokio::time::sleep(wait.min(MAX_WAIT)).await;
            attempt += 1;
        }
    }
}
