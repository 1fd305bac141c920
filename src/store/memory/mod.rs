//! The embedded store: Redis's key schema and semantics in this process.
//!
//! It is the default when no Redis is configured. With `path` set, every
//! change is also appended to a log file, so the store survives a restart
//! and the operator commands (`voxpipe calls show`, `tactics add`, ...)
//! work on it from another process. One server process per file: several
//! writers are safe (the file is locked per write) but each holds the whole
//! keyspace in memory and hands out jobs independently. Use Redis to scale.

mod calls;
mod campaigns;
mod jobs;
mod keyspace;
mod lost_sessions;
mod number_limits;
mod oplog;
mod outbox;
mod prompt_history;
mod refinement;
mod skills;
mod store;
mod stream_tokens;
mod test_cases;
mod text;
mod text_claims;

pub use store::MemoryStore;
