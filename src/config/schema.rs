//! The pipeline file's sections, as serde reads them.
//!
//! ```toml
//! [pipeline]
//! name = "parrot"
//! sample_rate = 16000          # 8000, 16000, 24000 or 48000
//! allow_interruptions = true
//! first_message = "Hello!"     # the bot speaks first (or llm_opens = true)
//!
//! [interruption]
//! min_secs = 0.3               # user speech over the bot before it yields
//!
//! [[processor]]
//! type = "parrot"              # see `voxpipe check --list-types`
//! name = "echo"                # optional label for logs and metrics
//! ```
//!
//! `[[processor]]` tables are read by the processor registry according to
//! their `type`, when the whole file is put together (`pipeline_file`).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::seconds::Seconds;

use super::twilio::TwilioSection;
use super::webrtc::WebRtcSection;

/// The rates a pipeline can run at internally.
pub const SUPPORTED_SAMPLE_RATES: [u32; 4] = [8_000, 16_000, 24_000, 48_000];

/// A validated internal sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u32")]
pub struct SampleRate(u32);

impl SampleRate {
    /// Hertz.
    pub fn hz(self) -> u32 {
        self.0
    }
}

impl Default for SampleRate {
    fn default() -> Self {
        SampleRate(16_000)
    }
}

impl TryFrom<u32> for SampleRate {
    type Error = String;

    fn try_from(hz: u32) -> Result<Self, Self::Error> {
        if SUPPORTED_SAMPLE_RATES.contains(&hz) {
            Ok(SampleRate(hz))
        } else {
            Err(format!(
                "unsupported sample rate {hz}; expected one of 8000, 16000, 24000, 48000"
            ))
        }
    }
}

/// `[pipeline]`: what the pipeline is and how it runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// A name for logs and metrics.
    pub name: String,
    /// What the pipeline does, for people.
    #[serde(default)]
    pub description: Option<String>,
    /// The internal sample rate; transports convert at the edges.
    #[serde(default)]
    pub sample_rate: SampleRate,
    /// Whether the user may interrupt the bot.
    #[serde(default = "default_true")]
    pub allow_interruptions: bool,
    /// Words the bot says as soon as the caller can hear it, recorded as
    /// the conversation's first assistant turn (spoken by the `tts`
    /// processor; `user_context` starts it). Unset: the caller speaks first.
    #[serde(default)]
    pub first_message: Option<String>,
    /// The LLM opens the conversation: it is asked for a reply to its
    /// context (the system prompt) as soon as the caller can hear the bot,
    /// before they speak. Not with `first_message`. Default false.
    #[serde(default)]
    pub llm_opens: bool,
}

/// Who opens a conversation when the bot should speak first, from
/// `[pipeline] first_message` or `llm_opens` (Pipecat's pattern of queueing
/// speech or an LLM run when the client connects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// The bot says these words.
    Message(Arc<str>),
    /// The LLM writes the first words.
    Llm,
}

impl PipelineSection {
    /// The pipeline's opening; `None` when the caller speaks first. A
    /// validated pipeline never has both keys set.
    pub fn opening(&self) -> Option<Opening> {
        match &self.first_message {
            Some(text) => Some(Opening::Message(Arc::from(text.trim()))),
            None => self.llm_opens.then_some(Opening::Llm),
        }
    }
}

fn default_true() -> bool {
    true
}

/// `[transport]`: options of the transports a session may be bound to. A
/// pipeline never names its transport; these only tune them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportSection {
    /// `[transport.twilio]`.
    #[serde(default)]
    pub twilio: TwilioSection,
    /// `[transport.webrtc]`.
    #[serde(default)]
    pub webrtc: WebRtcSection,
}

/// `[interruption]`: how the user barges in on the bot, when
/// `[pipeline] allow_interruptions` lets them. The `vad` processor applies
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InterruptionSection {
    /// How long the user must have spoken over the bot before it is
    /// interrupted, in seconds (0 to 10): shorter sounds (a cough, a
    /// "mm-hm") never cut it off. Default 0.3.
    pub min_secs: Seconds<0, 10>,
}

impl InterruptionSection {
    /// `min_secs` as a duration.
    pub fn min_speech(&self) -> Duration {
        self.min_secs.duration()
    }
}

impl Default for InterruptionSection {
    fn default() -> Self {
        InterruptionSection {
            min_secs: Seconds::from_millis(300),
        }
    }
}
