//! [`OutboundSetupError`]: why the outbound part could not be set up.

use crate::store::MissingSalt;
use crate::transport::twilio::HangUpError;

/// Why the outbound part could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundSetupError {
    /// A `*_env` key names a variable that is not set.
    #[error("environment variable {var} (named by `{key}`) is not set")]
    MissingEnv {
        /// The key.
        key: String,
        /// The variable.
        var: String,
    },
    /// A key that dialling needs is missing.
    #[error("[outbound] needs `{0}`")]
    Missing(&'static str),
    /// The account SID is not `AC` and 32 hex digits.
    #[error("the account SID (from `transport.twilio.account_sid_env`) is not a Twilio SID")]
    BadAccountSid,
    /// The REST client could not be built.
    #[error(transparent)]
    Client(#[from] HangUpError),
}

impl From<MissingSalt> for OutboundSetupError {
    fn from(err: MissingSalt) -> Self {
        OutboundSetupError::MissingEnv {
            key: err.key.to_owned(),
            var: err.var,
        }
    }
}
