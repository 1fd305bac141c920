//! `[text]`: how text conversations behave.
//!
//! ```toml
//! [text]
//! idle_timeout_secs = 1800   # a conversation ends after this long without a message
//! max_message_chars = 4000   # longer messages are cut, with a notice
//! reply_budget_secs = 10     # the messaging webhook waits this long for the answer
//! ```

use serde::Deserialize;

use crate::config::Seconds;

/// `[text]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextSection {
    /// After this long without a message, a conversation ends: the call is
    /// completed and evaluated, extracted and posted as a call is. From
    /// 0.1 s to 7 days; default 1800 (30 minutes).
    pub idle_timeout_secs: Seconds<100, 604_800>,
    /// The longest message handled, in characters; a longer one is cut
    /// there and the model is told so. Default 4000.
    pub max_message_chars: usize,
    /// How long `POST /twilio/messaging` waits for the answer before it
    /// answers Twilio with an empty TwiML and sends the answer through the
    /// Messages REST resource instead (Twilio waits 15 s for a webhook).
    /// From 0 to 14 s; default 10.
    pub reply_budget_secs: Seconds<0, 14>,
    /// What is sent when the model cannot answer (down, refusing).
    pub apology: String,
    /// What is sent for a message with media and no text.
    pub media_reply: String,
}

impl Default for TextSection {
    fn default() -> Self {
        TextSection {
            idle_timeout_secs: Seconds::from_millis(1_800_000),
            max_message_chars: 4_000,
            reply_budget_secs: Seconds::from_millis(10_000),
            apology: "Sorry, I can't answer right now. Please try again in a few minutes.".into(),
            media_reply: "Sorry, I can only read text messages. Please write your question.".into(),
        }
    }
}
