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

/// How many times a rate-limited message is tried.
const ATTEMPTS: u32 = 3;

impl MessageSender {
    /// Sends one message; a 429 (not taken) is tried again after its
    /// `Retry-After` (at most 5 s); anything else is not, so a message
    /// whose answer was lost is never sent twice.
    pub(crate) async fn send(
        &self,
        message: &CreateMessage<'_>,
    ) -> Result<String, CreateCallError> {
        let mut attempt = 1;
        loop {
            match self.rest.create_message(&self.account_sid, message).await {
                Err(CreateCallError::RateLimited { retry_after }) if attempt < ATTEMPTS => {
                    let wait = retry_after
                        .unwrap_or(Duration::from_secs(1))
                        .min(Duration::from_secs(5));
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}
