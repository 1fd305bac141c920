//! The Redis store: the key schema of `docs/architecture.md` on a real Redis, through
//! the `redis` crate's reconnecting connection manager.
//!
//! Conditional writes are Lua scripts (atomic on the server): a turn is
//! appended only at its index, a call is updated by compare-and-set, a
//! tactic is merged only if the list lacks it. Evaluation jobs use a Redis
//! Stream with the consumer group `evaluators` (XREADGROUP, XAUTOCLAIM,
//! XACK), so any worker of any process can run them.

mod calls;
mod campaign_writes;
mod campaigns;
mod connection;
mod jobs;
mod lost_sessions;
mod number_limits;
mod outbox;
mod prompt_history;
mod refinement;
mod scripts;
mod skills;
mod store;
mod stream_tokens;
mod test_cases;
mod text;

pub use store::RedisStore;
