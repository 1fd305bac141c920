//! `[text]`: how text conversations behave.
//!
//! ```toml
//! [text]
//! idle_timeout_secs = 1800   # a conversation ends after this long without a message
//! max_message_chars = 4000   # longer messages are cut, with a notice
//! reply_budget_secs = 10     # the messaging webhook waits this long for the answer, from its arrival
//! history_max_messages = 40  # the model reads at most the latest 40 messages
//! history_max_chars = 24000  # and at most this many characters of them
//! max_messages_in_flight = 200  # more at once are refused (429, or the apology by SMS)
//! ```

use serde::{Deserialize, Deserializer};

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
    /// How long `POST /twilio/messaging` waits for the answer, counted
    /// from the request's arrival (store round trips included), before it
    /// answers Twilio with an empty TwiML and sends the answer through the
    /// Messages REST resource instead (Twilio waits 15 s for a webhook).
    /// From 0 to 14 s; default 10.
    pub reply_budget_secs: Seconds<0, 14>,
    /// What is sent when the model cannot answer (down, refusing).
    pub apology: String,
    /// What is sent for a message with media and no text.
    pub media_reply: String,
    /// The most stored messages (user, assistant, tool calls and results)
    /// the model reads back with a message: the latest ones, cut before a
    /// user message where possible and never between a tool call and its
    /// result; the system prompt is always sent. From 2 to 1,000; default 40.
    #[serde(deserialize_with = "history_messages")]
    pub history_max_messages: usize,
    /// The most characters of stored history the model reads back with a
    /// message (as `history_max_messages`). From 1,000 to 1,000,000;
    /// default 24,000 (about 6,000 tokens).
    #[serde(deserialize_with = "history_chars")]
    pub history_max_chars: usize,
    /// The most messages the process answers at once, waiting included
    /// (from admission until the answer is delivered): past it a message
    /// is refused at once, `POST /api/chat` with 429, `POST
    /// /twilio/messaging` with `apology` as its answer and the message
    /// left unmarked. From 1 to 100,000; default 200.
    #[serde(deserialize_with = "in_flight")]
    pub max_messages_in_flight: usize,
}

fn in_flight<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    within(deserializer, 1, 100_000)
}

fn history_messages<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    within(deserializer, 2, 1_000)
}

fn history_chars<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    within(deserializer, 1_000, 1_000_000)
}

/// A whole number from `min` to `max`: out of range, an error the file
/// reader reports with its file, line and key.
fn within<'de, D: Deserializer<'de>>(
    deserializer: D,
    min: usize,
    max: usize,
) -> Result<usize, D::Error> {
    let n = u64::deserialize(deserializer)?;
    match usize::try_from(n) {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(serde::de::Error::custom(format!(
            "expected a whole number from {min} to {max}, not {n}"
        ))),
    }
}

impl Default for TextSection {
    fn default() -> Self {
        TextSection {
            idle_timeout_secs: Seconds::from_millis(1_800_000),
            max_message_chars: 4_000,
            reply_budget_secs: Seconds::from_millis(10_000),
            apology: "Sorry, I can't answer right now. Please try again in a few minutes.".into(),
            media_reply: "Sorry, I can only read text messages. Please write your question.".into(),
            history_max_messages: 40,
            history_max_chars: 24_000,
            max_messages_in_flight: 200,
        }
    }
}
