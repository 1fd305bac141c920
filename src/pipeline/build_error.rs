//! Errors starting a session.

/// A processor could not be built for a session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A `*_env` key names a variable that is not set.
    #[error("environment variable {var} (named by `{key}`) is not set")]
    MissingEnv {
        /// The config key, e.g. `api_key_env`.
        key: String,
        /// The variable, e.g. `DEEPGRAM_API_KEY`.
        var: String,
    },
    /// The config is valid TOML but cannot work, e.g. an unsupported rate.
    #[error("{0}")]
    Invalid(String),
    /// Anything else that stopped the processor from being built.
    #[error(transparent)]
    Other(#[from] Box<dyn std::error::Error + Send + Sync>),
}
