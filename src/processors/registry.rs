//! The registry from a processor `type` in TOML to the code that builds it.
//!
//! Building is two steps. When a pipeline file is loaded, each
//! `[[processor]]` table is deserialized into its type's config struct
//! (unknown keys and wrong types are errors that name the line); the config
//! is a [`ProcessorFactory`]. When a session starts, the factory builds a
//! fresh processor for it, resolving `*_env` variables then, so that
//! `voxpipe check` needs no secrets.
//!
//! A type may have **providers** (`type = "stt"` with `provider =
//! "deepgram"` or `"openai"`): each provider registers its own config struct
//! with [`ProcessorRegistry::register_provider`], and the loader picks it by
//! the table's `provider` key before deserializing, so every provider's
//! mistakes are still reported with their line and key.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::pipeline::ProcessorFactory;

type ParseFn =
    fn(toml::de::ValueDeserializer<'_>) -> Result<Arc<dyn ProcessorFactory>, toml::de::Error>;

fn parse_as<C>(
    value: toml::de::ValueDeserializer<'_>,
) -> Result<Arc<dyn ProcessorFactory>, toml::de::Error>
where
    C: DeserializeOwned + ProcessorFactory + 'static,
{
    let config = C::deserialize(value)?;
    Ok(Arc::new(config))
}

/// Processor types by name. Open: code can register its own.
#[derive(Clone, Default)]
pub struct ProcessorRegistry {
    types: BTreeMap<String, ParseFn>,
    providers: BTreeMap<String, BTreeMap<String, ParseFn>>,
}

impl fmt::Debug for ProcessorRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.type_names()).finish()
    }
}

impl ProcessorRegistry {
    /// A registry with no types.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A registry with every built-in processor type.
    pub fn builtin() -> Self {
        let mut registry = Self::empty();
        super::register_builtin(&mut registry);
        registry
    }

    /// Registers `type_name`, whose TOML table deserializes into `C`.
    /// Replaces an earlier registration of the same name.
    pub fn register<C>(&mut self, type_name: &str)
    where
        C: DeserializeOwned + ProcessorFactory + 'static,
    {
        self.types.insert(type_name.to_owned(), parse_as::<C>);
    }

    /// Registers `provider` of `type_name` (a table with `type =
    /// "{type_name}"` and `provider = "{provider}"`), whose other keys
    /// deserialize into `C`. Replaces an earlier registration of the pair.
    pub fn register_provider<C>(&mut self, type_name: &str, provider: &str)
    where
        C: DeserializeOwned + ProcessorFactory + 'static,
    {
        self.providers
            .entry(type_name.to_owned())
            .or_default()
            .insert(provider.to_owned(), parse_as::<C>);
    }

    /// The registered type names, sorted.
    pub fn type_names(&self) -> impl Iterator<Item = &str> {
        let mut names: Vec<&str> = self
            .types
            .keys()
            .chain(self.providers.keys())
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names.dedup();
        names.into_iter()
    }

    /// The providers of `type_name`, sorted; empty for a type without
    /// providers.
    pub fn provider_names(&self, type_name: &str) -> impl Iterator<Item = &str> {
        self.providers
            .get(type_name)
            .into_iter()
            .flat_map(|providers| providers.keys().map(String::as_str))
    }

    /// Whether `type_name` is chosen by provider.
    pub(crate) fn has_providers(&self, type_name: &str) -> bool {
        self.providers.contains_key(type_name)
    }

    /// Deserializes a processor table of type `type_name`, or `None` if the
    /// type is unknown.
    pub(crate) fn parse(
        &self,
        type_name: &str,
        table: toml::de::ValueDeserializer<'_>,
    ) -> Option<Result<Arc<dyn ProcessorFactory>, toml::de::Error>> {
        self.types.get(type_name).map(|parse| parse(table))
    }

    /// Deserializes a table of `provider` of `type_name`, or `None` if the
    /// pair is unknown.
    pub(crate) fn parse_provider(
        &self,
        type_name: &str,
        provider: &str,
        table: toml::de::ValueDeserializer<'_>,
    ) -> Option<Result<Arc<dyn ProcessorFactory>, toml::de::Error>> {
        self.providers
            .get(type_name)
            .and_then(|providers| providers.get(provider))
            .map(|parse| parse(table))
    }
}
