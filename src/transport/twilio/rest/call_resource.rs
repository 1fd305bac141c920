//! A call as a read of Twilio's Calls resource answers it
//! (`GET …/Calls/{CallSid}.json`).

use serde::Deserialize;

/// A call as Twilio's Calls resource has it (the fields read of it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CallResource {
    /// `queued`, `ringing`, `in-progress`, `canceled`, `completed`,
    /// `failed`, `busy` or `no-answer`.
    pub status: String,
    /// How long it was connected, in seconds, once over (Twilio writes it
    /// as a string).
    #[serde(default, deserialize_with = "seconds")]
    pub duration: Option<u64>,
    /// The answering-machine verdict, when detection ran.
    #[serde(default)]
    pub answered_by: Option<String>,
}

/// Twilio's `duration`: a number in a string, or null.
fn seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Text(String),
        Number(u64),
    }
    Ok(match Option::<Seconds>::deserialize(deserializer)? {
        Some(Seconds::Text(text)) => text.trim().parse().ok(),
        Some(Seconds::Number(n)) => Some(n),
        None => None,
    })
}
