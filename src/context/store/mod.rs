//! Context stores: where turns, call state, tactics, prompts, skills,
//! evaluation jobs and webhook deliveries live between turns and sessions.
//!
//! Two backends implement the same traits ([`Store`] and its parts) with
//! the same key schema ([`Keys`]): [`RedisStore`] for deployments, and
//! [`MemoryStore`], the embedded default when no Redis is configured
//! (optionally kept in a file). Every write is idempotent, which is what
//! lets callers retry freely while Redis is down or slow.

mod api;
pub(crate) mod codec;
mod error;
mod keys;
mod memory;
mod redis;
pub(crate) mod settings;

pub use self::redis::RedisStore;
pub use api::{
    Appended, CallStore, JobDelivery, JobQueue, Outbox, OutboxEntry, RefinementStore, SkillStore,
    Store,
};
pub use error::StoreError;
pub use keys::Keys;
pub use memory::MemoryStore;
pub use settings::StoreSettings;
