//! Context stores: where turns, call state, tactics, prompts, skills,
//! evaluation jobs and webhook deliveries live between turns and sessions.
//!
//! The records kept ([`CallRecord`], [`Interaction`], [`Skill`], the
//! tactics lists, [`PromptKey`]) are defined here, beside the key schema
//! ([`Keys`]; `docs/architecture.md` lists it); what the agent does with
//! them (prompts, skills search, evaluation) lives in the agent layer above.
//!
//! Two backends implement the same traits ([`Store`] and its parts) with
//! the same key schema ([`Keys`]): [`RedisStore`] for deployments, and
//! [`MemoryStore`], the embedded default when no Redis is configured
//! (optionally kept in a file). Every write is idempotent, which is what
//! lets callers retry freely while Redis is down or slow.

mod api;
mod call;
mod call_change;
mod call_stats;
mod call_status;
mod campaign;
mod campaign_codec;
pub(crate) mod codec;
mod error;
mod interaction;
mod keys;
mod learned;
mod lost_session_store;
mod memory;
mod outbound_call;
mod phone_hash;
mod prompt_key;
mod prompt_version;
mod recording;
mod redis;
pub(crate) mod settings;
mod skill;
mod stored_objects;
mod tactics;
mod test_case;
mod text_store;
pub mod time;
mod undelivered;

pub use self::redis::RedisStore;
pub use api::{
    Appended, CallStore, CampaignStore, DEAD_LETTERS_MAX, Enqueued, JobDelivery, JobQueue,
    NumberLimitStore, Outbox, OutboxEntry, PromptHistoryStore, RefinementStore, SkillStore, Store,
    StreamTokenStore, TestCaseStore,
};
pub use call::{
    CallDirection, CallRecord, Evaluation, Extraction, Outcome, SEGMENT_PART_RULE, Segment,
    is_segment_part,
};
pub use call_change::{CallChange, RequestNote};
pub use call_stats::{
    BadSegment, CallStats, CallStatsBuilder, Coverage, DirectionCounts, OutcomeCounts, Percentiles,
    SegmentFilter, StatsQuery, StatusCounts, gather_call_stats,
};
pub use call_status::CallStatus;
pub use campaign::{
    CAMPAIGN_CLAIM_MS, CampaignCommand, CampaignEntry, CampaignProgress, CampaignState,
    CampaignWrite, EntryOutcome, LeaseRequest, LeasedEntry, MAX_SLOT_INTERVAL_US, NewCampaign,
};
pub use error::StoreError;
pub use interaction::Interaction;
pub use keys::Keys;
pub use learned::{Learned, LearnedPair};
pub(crate) use lost_session_store::HOLDS_KEPT_MS;
pub use lost_session_store::{LeaseHold, LostSessionCheck, LostSessionSource, LostSessionStore};
pub use memory::MemoryStore;
pub use outbound_call::{CampaignAttempt, OutboundCall, TwilioReport};
pub use phone_hash::{MissingSalt, PhoneHasher, PhoneSalt};
pub use prompt_key::PromptKey;
pub use prompt_version::{
    CaseScore, Decision, Deployed, MAX_PROMPT_HISTORY, OPTIMISATION_TRACE_TTL_MS,
    OptimisationTrace, PromptScores, PromptState, PromptVersion,
};
pub use recording::{CallRecording, RecordingStatus};
pub use settings::StoreSettings;
pub use skill::{MAX_SKILLS_KEPT, Skill, pack_vector, trigger_hash, unpack_vector};
pub use stored_objects::StoredObjects;
pub use tactics::{
    MAX_CALLS_NOTED_PER_TACTIC, MAX_TACTIC_CHARS, MAX_TACTICS_IN_PROMPT, MAX_TACTICS_KEPT,
    MAX_TACTICS_PER_CALL, TacticsList, bounded_tactics, clean_tactic, merge_tactics,
    tactic_identity,
};
pub use test_case::{MAX_TEST_CASES_KEPT, TestCase};
pub use text_store::{EndClaim, TextEnd, TextStore};
pub use undelivered::{MAX_UNDELIVERED_KEPT, UndeliveredMessage};
