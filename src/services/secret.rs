//! [`ApiKey`]: a credential that never reaches a log.

use std::fmt;
use std::sync::Arc;

use crate::pipeline::{BuildError, SessionSetup};

/// An API key read from the environment. Its `Debug` output is redacted,
/// so a config or a client printed in a log never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(Arc<str>);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        ApiKey(key.into())
    }

    /// The key itself, for the one place it is sent.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads the key from the variable `var`, which the config key `key`
    /// names (`api_key_env`); no variable named means no key.
    pub fn from_env(
        setup: &SessionSetup,
        key: &str,
        var: Option<&str>,
    ) -> Result<Option<ApiKey>, BuildError> {
        var.map(|var| setup.env_var(key, var).map(ApiKey::new))
            .transpose()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn keys_come_from_the_named_variable_and_never_show_in_debug() {
        let mut setup = SessionSetup::new("s", 16_000);
        setup.env = crate::pipeline::EnvSource::Fixed(Arc::new(HashMap::from([(
            "MY_KEY".to_owned(),
            "sk-secret".to_owned(),
        )])));
        let key = ApiKey::from_env(&setup, "api_key_env", Some("MY_KEY"))
            .unwrap()
            .unwrap();
        assert_eq!(key.expose(), "sk-secret");
        assert!(!format!("{key:?}").contains("secret"));
        assert!(
            ApiKey::from_env(&setup, "api_key_env", None)
                .unwrap()
                .is_none()
        );
        let missing = ApiKey::from_env(&setup, "api_key_env", Some("NOPE")).unwrap_err();
        assert!(missing.to_string().contains("NOPE"));
    }
}
