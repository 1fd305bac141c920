//! [`MessageSender`]: answers sent through Twilio's Messages resource.

use std::time::Duration;

use crate::transport::twilio::messaging::CreateMessage;
use crate::transport::twilio::{CreateCallError, TwilioRest};

/// Sends messages through Twilio's Messages resource for the account.
#[derive(Debug, Clone)]
pub(crate) struct MessageSender {
    pub(crate) rest: TwilioRest,
    pub(crate) account_sid: String,
}

/// How many times a message is tried while Twilio is rate limiting or down.
const ATTEMPTS: u32 = 4;

/// The longest wait between two tries.
const MAX_WAIT: Duration = Duration::from_secs(5);

impl MessageSender {
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
