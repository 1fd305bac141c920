//! Errors starting or running a server.

use crate::outbound::OutboundSetupError;
use crate::pipeline::BuildError;
use crate::transport::twilio::HangUpError;
use crate::transport::webrtc::SettingsError;

/// The server could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A `*_env` key names a variable that is not set.
    #[error("environment variable {var} (named by `{key}`) is not set")]
    MissingEnv {
        /// The config key, e.g. `transport.twilio.auth_token_env`.
        key: String,
        /// The variable, e.g. `TWILIO_AUTH_TOKEN`.
        var: String,
    },
    /// A processor cannot be built for a session (checked at start, so that
    /// a missing secret fails the server rather than every call).
    #[error("processor `{processor}`: {source}")]
    Processor {
        /// The processor's name.
        processor: String,
        /// Why.
        source: BuildError,
    },
    /// The Twilio REST client could not be built.
    #[error("Twilio REST client: {0}")]
    TwilioRest(#[source] HangUpError),
    /// The text conversations could not be set up.
    #[error("text conversations: {0}")]
    Text(#[source] crate::text::TextError),
    /// `[transport.webrtc]` cannot be used (a TURN credential not set).
    #[error(transparent)]
    WebRtc(#[from] SettingsError),
    /// `[outbound]` cannot be used.
    #[error("[outbound]: {0}")]
    Outbound(#[from] OutboundSetupError),
    /// `[outbound]` keeps its calls in the context store.
    #[error("[outbound] needs the context store (the server was built without one)")]
    OutboundWithoutContext,
    /// Listening or serving failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}
