//! The salted hash that stands for a phone number in logs, metrics,
//! rate-limit keys, call records and the objects a call leaves in storage.
//! Here, below the agent and outbound layers, so both hash alike: the
//! salt is looked up once, by [`PhoneSalt::hasher`], for the agent runtime
//! (stored objects) and the dialler (records, rate limits, logs).

use ring::hmac;

use crate::config::TwilioSection;

/// The key whose variable holds the salt.
const SALT_KEY: &str = "outbound.phone_hash_salt_env";

/// Where a deployment's phone-hash salt comes from: the variable `[outbound]
/// phone_hash_salt_env` names, else the Twilio auth token (`[transport.twilio]
/// auth_token_env`), which every server of a deployment shares.
#[derive(Debug, Clone, Copy, Default)]
pub struct PhoneSalt<'a> {
    /// `[outbound] phone_hash_salt_env`, if set.
    pub salt_env: Option<&'a str>,
    /// `[transport.twilio] auth_token_env`, if set.
    pub auth_token_env: Option<&'a str>,
}

/// `[outbound] phone_hash_salt_env` names a variable that is not set (or
/// is empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var} (named by `{key}`) is not set")]
pub struct MissingSalt {
    /// The key: `outbound.phone_hash_salt_env`.
    pub key: &'static str,
    /// The variable it names.
    pub var: String,
}

impl<'a> PhoneSalt<'a> {
    /// The salt of a pipeline with `salt_env` (`[outbound]
    /// phone_hash_salt_env`, if any) and `twilio`.
    pub fn new(salt_env: Option<&'a str>, twilio: &'a TwilioSection) -> Self {
        PhoneSalt {
            salt_env,
            auth_token_env: twilio.auth_token_env.as_deref(),
        }
    }

    /// The hasher, reading variables through `env`; `None` when there is
    /// no salt (no `phone_hash_salt_env`, and no auth token set), and
    /// numbers are to be written `redacted`.
    ///
    /// A `phone_hash_salt_env` naming a variable that is not set is an
    /// error, not a fall back to the auth token: hashes would silently
    /// change, and servers of one deployment that differ in it would
    /// disagree. An auth token that is not set is no salt here: whoever
    /// needs the token (the server, the dialler) refuses it as its own key.
    pub fn hasher(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<PhoneHasher>, MissingSalt> {
        let set = |var: &str| env(var).filter(|value| !value.is_empty());
        let salt = match self.salt_env {
            Some(var) => Some(set(var).ok_or_else(|| MissingSalt {
                key: SALT_KEY,
                var: var.to_owned(),
            })?),
            None => self.auth_token_env.and_then(set),
        };
        Ok(salt.map(|salt| PhoneHasher::new(salt.as_bytes())))
    }
}

/// Hashes phone numbers with a secret salt: the same number always gets the
/// same hash (rate limits and logs can follow it), and the hash cannot be
/// turned back into the number without the salt (HMAC-SHA-256, the first 16
/// hex digits).
#[derive(Clone)]
pub struct PhoneHasher {
    key: hmac::Key,
}

impl PhoneHasher {
    /// A hasher salted with `salt`.
    pub fn new(salt: &[u8]) -> PhoneHasher {
        PhoneHasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, salt),
        }
    }

    /// `number`'s hash (an E.164 number, `+` and digits): 16 lowercase hex
    /// digits.
    pub fn hash(&self, number: &str) -> String {
        let tag = hmac::sign(&self.key, number.as_bytes());
        tag.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The HMAC-SHA-256 of `parts` under the salt, each part followed by a
    /// newline, after `domain` and a newline (so that what is keyed for
    /// one use never equals what is keyed for another, e.g. a text
    /// conversation's participants and a number's hash).
    pub fn keyed(&self, domain: &str, parts: &[&str]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(domain.as_bytes());
        ctx.update(b"\n");
        for part in parts {
            ctx.update(part.as_bytes());
            ctx.update(b"\n");
        }
        ctx.sign()
    }
}

impl std::fmt::Debug for PhoneHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PhoneHasher")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NUMBER: &str = "+15551230001";

    fn hash_with(
        salt: PhoneSalt<'_>,
        vars: &[(&str, &str)],
    ) -> Result<Option<String>, MissingSalt> {
        let env = |var: &str| {
            vars.iter()
                .find(|(name, _)| *name == var)
                .map(|(_, value)| (*value).to_owned())
        };
        salt.hasher(env)
            .map(|hasher| hasher.map(|h| h.hash(NUMBER)))
    }

    fn hash(salt: &str) -> Option<String> {
        Some(PhoneHasher::new(salt.as_bytes()).hash(NUMBER))
    }

    #[test]
    fn the_salt_variable_wins_and_must_be_set() {
        let both = PhoneSalt {
            salt_env: Some("PHONE_SALT"),
            auth_token_env: Some("TWILIO_AUTH_TOKEN"),
        };
        let vars = [("PHONE_SALT", "pepper"), ("TWILIO_AUTH_TOKEN", "token")];
        assert_eq!(hash_with(both, &vars), Ok(hash("pepper")));
        let missing = MissingSalt {
            key: "outbound.phone_hash_salt_env",
            var: "PHONE_SALT".to_owned(),
        };
        // Not set, or empty: refused, never the auth token instead.
        assert_eq!(
            hash_with(both, &[("TWILIO_AUTH_TOKEN", "token")]),
            Err(missing.clone())
        );
        assert_eq!(
            hash_with(both, &[("PHONE_SALT", ""), ("TWILIO_AUTH_TOKEN", "token")]),
            Err(missing.clone())
        );
        assert!(
            missing
                .to_string()
                .contains("`outbound.phone_hash_salt_env`")
        );
    }

    #[test]
    fn without_a_salt_variable_the_auth_token_salts_else_nothing_does() {
        let token_only = PhoneSalt {
            salt_env: None,
            auth_token_env: Some("TWILIO_AUTH_TOKEN"),
        };
        assert_eq!(
            hash_with(token_only, &[("TWILIO_AUTH_TOKEN", "token")]),
            Ok(hash("token"))
        );
        assert_eq!(hash_with(token_only, &[]), Ok(None));
        assert_eq!(
            hash_with(PhoneSalt::default(), &[("PHONE_SALT", "x")]),
            Ok(None)
        );
    }
}
