//! The store traits: one per concept, all implemented by both backends.
//!
//! Every write is idempotent, so any caller may retry after an error whose
//! outcome it cannot know (a reply lost when Redis went away): a retried
//! append finds its turn already at its index, a retried tactics merge finds
//! its tactics already listed, a retried delivery enqueue finds its id.

use std::time::Duration;

use async_trait::async_trait;

use crate::store::{CallChange, CallRecord, Interaction, PromptKey, TacticsList};
use crate::store::{
    CampaignCommand, CampaignProgress, CampaignState, CampaignWrite, Deployed, EntryOutcome,
    LeaseRequest, LeasedEntry, NewCampaign, OptimisationTrace, PromptState, PromptVersion, Skill,
    TestCase,
};

use super::error::StoreError;
use super::lost_session_store::LostSessionStore;
use super::text_store::TextStore;

/// What an idempotent append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The turn was added at its index.
    Added,
    /// A turn was already stored at its index (a retry whose first attempt
    /// landed, or another writer): nothing written. The transcript holds
    /// `stored` turns.
    AlreadyStored {
        /// How many turns the transcript holds.
        stored: u64,
    },
    /// The transcript holds only `stored` turns, fewer than the index: the
    /// earlier ones are gone (deleted, expired, or a Redis restart without
    /// persistence). The turn was added at position `stored`.
    AddedAfterGap {
        /// How many turns the transcript held.
        stored: u64,
    },
}

/// Calls and their transcripts: `call:{id}`, `call:{id}:interactions`.
#[async_trait]
pub trait CallStore: Send + Sync {
    /// Stores `record` unless a call with its id exists (a retry, or another
    /// process, never resets a call). True when it was created.
    async fn create_call(&self, record: &CallRecord) -> Result<bool, StoreError>;

    /// The call, if stored.
    async fn call(&self, call_id: &str) -> Result<Option<CallRecord>, StoreError>;

    /// Applies `change` atomically (concurrent updates of other fields are
    /// kept) and refreshes the call's TTL. `None` when no such call.
    async fn update_call(
        &self,
        call_id: &str,
        change: &CallChange,
    ) -> Result<Option<CallRecord>, StoreError> {
        Ok(self
            .change_call(call_id, change)
            .await?
            .map(|(record, _)| record))
    }

    /// As [`Self::update_call`], with whether `change` changed the record
    /// ([`CallRecord::apply`]): when it did not, nothing is written and
    /// the TTL is left as it was.
    async fn change_call(
        &self,
        call_id: &str,
        change: &CallChange,
    ) -> Result<Option<(CallRecord, bool)>, StoreError>;

    /// Appends `turn` at position `turn.index` (see [`Appended`]) and
    /// refreshes the transcript's TTL.
    async fn append_turn(&self, call_id: &str, turn: &Interaction) -> Result<Appended, StoreError>;

    /// The transcript, in order.
    async fn turns(&self, call_id: &str) -> Result<Vec<Interaction>, StoreError>;

    /// The calls created from `from_ms` to `to_ms` (Unix ms, both
    /// included), oldest first, at most `limit`: read from the
    /// `calls:by_created` index (which [`Self::create_call`] writes), not by
    /// scanning calls. Calls whose record has expired, or cannot be read,
    /// are left out.
    async fn calls_between(
        &self,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> Result<Vec<CallRecord>, StoreError>;
}

/// The refinement loop's state: tactics lists and segment prompts.
#[async_trait]
pub trait RefinementStore: Send + Sync {
    /// One agent-wide tactics list, in order.
    async fn tactics(&self, list: TacticsList) -> Result<Vec<String>, StoreError>;

    /// Appends the tactics `list` does not hold yet (see
    /// [`tactic_identity`](crate::store::tactic_identity)); returns how
    /// many were added.
    async fn add_tactics(&self, list: TacticsList, tactics: &[String])
    -> Result<usize, StoreError>;

    /// As [`Self::add_tactics`], and notes `call_id` among the distinct
    /// calls that named each tactic (up to
    /// [`MAX_CALLS_NOTED_PER_TACTIC`](crate::store::MAX_CALLS_NOTED_PER_TACTIC);
    /// the same call again is not counted twice). One script on Redis; the
    /// embedded store writes the list, then the calls (noting is additive,
    /// so nothing is lost between the two).
    async fn add_call_tactics(
        &self,
        list: TacticsList,
        call_id: &str,
        tactics: &[String],
    ) -> Result<usize, StoreError>;

    /// Per tactic identity of `list`, how many distinct calls named it
    /// (noted by [`Self::add_call_tactics`]; tactics added otherwise have
    /// none).
    async fn tactic_calls(
        &self,
        list: TacticsList,
    ) -> Result<std::collections::HashMap<String, u64>, StoreError>;

    /// Takes the tactic with `tactic`'s identity out of `list` (and its
    /// noted calls); false when the list does not hold it.
    async fn remove_tactic(&self, list: TacticsList, tactic: &str) -> Result<bool, StoreError>;

    /// Replaces `session:{id}:tactics` (with its 24 h TTL).
    async fn set_session_tactics(
        &self,
        call_id: &str,
        tactics: &[String],
    ) -> Result<(), StoreError>;

    /// `session:{id}:tactics`.
    async fn session_tactics(&self, call_id: &str) -> Result<Vec<String>, StoreError>;

    /// The first of `candidates` that holds a non-empty prompt, with its
    /// text; one round trip.
    async fn first_prompt(
        &self,
        candidates: &[PromptKey],
    ) -> Result<Option<(PromptKey, String)>, StoreError>;

    /// Stores a prompt.
    async fn set_prompt(&self, key: &PromptKey, text: &str) -> Result<(), StoreError>;
}

/// Learned skills: `skill:{hash}`.
#[async_trait]
pub trait SkillStore: Send + Sync {
    /// Stores (or replaces) a skill, noted as the newest; past
    /// [`MAX_SKILLS_KEPT`](crate::store::MAX_SKILLS_KEPT) the oldest are
    /// deleted. Skills stored before the index existed are not counted.
    async fn put_skill(&self, skill: &Skill) -> Result<(), StoreError>;

    /// The hash of every stored skill (a key scan: for index refreshes, never
    /// per query).
    async fn skill_hashes(&self) -> Result<Vec<String>, StoreError>;

    /// The skills with these hashes, in order; `None` for one that is gone
    /// or malformed (logged).
    async fn skills(&self, hashes: &[String]) -> Result<Vec<Option<Skill>>, StoreError>;
}

/// The learning loop's test cases: `test_cases:list`.
#[async_trait]
pub trait TestCaseStore: Send + Sync {
    /// Appends the cases whose objection (see [`TestCase::identity`]) is not
    /// listed yet, in order; returns how many were added. Atomic: two
    /// writers adding the same objection add it once.
    async fn add_test_cases(&self, cases: &[TestCase]) -> Result<usize, StoreError>;

    /// Every test case, in the order added (malformed entries skipped,
    /// logged).
    async fn test_cases(&self) -> Result<Vec<TestCase>, StoreError>;
}

/// The prompt optimiser's state: versions of prompt keys (the live key,
/// `{key}:version`, `{key}:history`), optimisation traces
/// (`optimisation:{id}`), and per segment the optimisations of the last
/// window (`{key}:optimisations`) and the failures not yet acted on
/// (`{key}:failures`).
#[async_trait]
pub trait PromptHistoryStore: Send + Sync {
    /// The live text of `key` and its version; one round trip.
    async fn prompt_state(&self, key: &PromptKey) -> Result<PromptState, StoreError>;

    /// Makes `entry` live at `key` if the key is still at version
    /// `expected` (compare-and-set), atomically with its history entry,
    /// the version counter and, if given, the trace (the memory store;
    /// Redis writes the trace just after, in its own slot, and returns its
    /// error if it cannot: the history entry then stands for it).
    /// `entry.version` must be `expected + 1`. A conflict also when the
    /// history already holds a version deployed by `entry.optimisation`
    /// (a duplicate run of one optimisation deploys once). The first
    /// deployment also records what the key held before as version 0.
    async fn deploy_prompt(
        &self,
        key: &PromptKey,
        expected: u64,
        entry: &PromptVersion,
        trace: Option<&OptimisationTrace>,
    ) -> Result<Deployed, StoreError>;

    /// Every version of `key`, oldest first (malformed entries skipped,
    /// logged).
    async fn prompt_history(&self, key: &PromptKey) -> Result<Vec<PromptVersion>, StoreError>;

    /// Every prompt key holding a text (a key scan: for the operator).
    async fn prompt_keys(&self) -> Result<Vec<PromptKey>, StoreError>;

    /// Stores (or replaces) an optimisation's trace, unless the stored one
    /// is [`Decision::Deployed`](crate::store::Decision::Deployed): a
    /// duplicate run's later trace never replaces a deployment's.
    async fn put_optimisation(&self, trace: &OptimisationTrace) -> Result<(), StoreError>;

    /// An optimisation's trace, if stored.
    async fn optimisation(&self, id: &str) -> Result<Option<OptimisationTrace>, StoreError>;

    /// Counts optimisation `id` against `key`'s limit of `max` in the
    /// `window_ms` before `now_ms`: true if it is counted (now or
    /// already), false if the limit is reached. Atomic and idempotent.
    async fn take_optimisation_slot(
        &self,
        key: &PromptKey,
        id: &str,
        now_ms: u64,
        window_ms: u64,
        max: u64,
    ) -> Result<bool, StoreError>;

    /// Gives back the slot optimisation `id` took against `key`'s limit
    /// (nothing if it holds none): a deferred optimisation holds no slot
    /// while it waits, and takes one again when it runs.
    async fn give_back_optimisation_slot(
        &self,
        key: &PromptKey,
        id: &str,
    ) -> Result<(), StoreError>;

    /// Notes that a run of optimisation `id` of `key` was deferred after a
    /// model had answered (its candidate slot stays spent); returns how
    /// many of its runs were. Kept a day.
    async fn note_cut_short_optimisation(
        &self,
        key: &PromptKey,
        id: &str,
    ) -> Result<u64, StoreError>;

    /// How many runs of optimisation `id` of `key` were deferred after a
    /// model had answered ([`Self::note_cut_short_optimisation`]).
    async fn cut_short_optimisations(&self, key: &PromptKey, id: &str) -> Result<u64, StoreError>;

    /// Notes that `call_id` failed under `key` (idempotent); returns every
    /// failure noted and not cleared, oldest first.
    async fn note_failure(
        &self,
        key: &PromptKey,
        call_id: &str,
        now_ms: u64,
    ) -> Result<Vec<String>, StoreError>;

    /// Forgets these failures of `key` (they were acted on).
    async fn clear_failures(&self, key: &PromptKey, call_ids: &[String]) -> Result<(), StoreError>;
}

/// Campaigns shared by every server (see [`crate::store`]'s campaign
/// module for the entry states). Each change is one atomic step (a Lua
/// script in Redis), so two servers never lease the same entry and a
/// settlement heard twice counts once.
#[async_trait]
pub trait CampaignStore: Send + Sync {
    /// Stores a campaign, running, every entry due at its creation, unless
    /// its id holds one already: a campaign is written once, so a request
    /// retried with the id it had (`Idempotency-Key`) creates nothing more.
    /// A campaign stored but not yet listed for the runners (the store
    /// failed in between) is listed by the retry.
    async fn create_campaign(&self, campaign: &NewCampaign) -> Result<CampaignWrite, StoreError>;

    /// The campaign's state and progress, if stored.
    async fn campaign(&self, campaign_id: &str) -> Result<Option<CampaignProgress>, StoreError>;

    /// The campaign's state alone, if stored: read before each dial, so
    /// a store may answer it more cheaply than [`Self::campaign`].
    async fn campaign_state(&self, campaign_id: &str) -> Result<Option<CampaignState>, StoreError> {
        Ok(self
            .campaign(campaign_id)
            .await?
            .map(|progress| progress.state))
    }

    /// The campaigns not finished yet (running, paused, or canceled with
    /// calls still live).
    async fn active_campaigns(&self) -> Result<Vec<String>, StoreError>;

    /// Takes an ended campaign (canceled or finished) without live calls
    /// out of [`Self::active_campaigns`], where a failed step may have
    /// left it listed; a campaign running, paused or with live calls stays.
    async fn unlist_ended_campaign(&self, campaign_id: &str) -> Result<(), StoreError>;

    /// Pauses, resumes or cancels; answers the state after (`None` when no
    /// such campaign). A canceled or finished campaign stays so.
    async fn command_campaign(
        &self,
        campaign_id: &str,
        command: CampaignCommand,
    ) -> Result<Option<CampaignState>, StoreError>;

    /// Leases entries due at `request.now_ms`, if the campaign is running,
    /// as [`LeaseRequest`] says.
    async fn lease_entries(
        &self,
        campaign_id: &str,
        request: &LeaseRequest,
    ) -> Result<Vec<LeasedEntry>, StoreError>;

    /// Up to `max` entries whose lease ended before `now_ms` (their server
    /// died, or their call never settled), leased again until `lease_until_ms`.
    async fn reclaim_entries(
        &self,
        campaign_id: &str,
        now_ms: u64,
        lease_until_ms: u64,
        max: usize,
    ) -> Result<Vec<LeasedEntry>, StoreError>;

    /// Extends a held lease (a dialled entry waits for its call to settle).
    async fn extend_lease(
        &self,
        campaign_id: &str,
        entry: u64,
        until_ms: u64,
    ) -> Result<(), StoreError>;

    /// Ends try `attempt` of a leased entry; false (nothing changed) when
    /// the entry is not leased at that try (settled already).
    async fn finish_entry(
        &self,
        campaign_id: &str,
        entry: u64,
        attempt: u32,
        outcome: EntryOutcome,
    ) -> Result<bool, StoreError>;

    /// Holds every server's next dial of the campaign until `until_ms`
    /// (Twilio answered 429).
    async fn back_off_campaign(&self, campaign_id: &str, until_ms: u64) -> Result<(), StoreError>;
}

/// The per-number limit of outbound calls: `rate_limit:{phone_hash}` holds
/// the id of the call that last reached the number, for as long as the
/// limit lasts. While it is held, no other call dials the number (which
/// also keeps to one live call per number).
#[async_trait]
pub trait NumberLimitStore: Send + Sync {
    /// Holds `phone_hash`'s limit for `call_id` for `ttl_ms`, unless another
    /// call holds it. True when `call_id` holds it (now or already: a retry
    /// of the same call). Atomic: of two calls racing for a number, one wins.
    async fn claim_number(
        &self,
        phone_hash: &str,
        call_id: &str,
        ttl_ms: u64,
    ) -> Result<bool, StoreError>;

    /// Lets the number go, if `call_id` holds it (a call that never reached
    /// the person: the number may be dialled again).
    async fn release_number(&self, phone_hash: &str, call_id: &str) -> Result<(), StoreError>;
}

/// Single-use stream tokens across servers: the per-call token of a Twilio
/// media stream (`transport::twilio::stream_token`) opens one stream in the
/// whole deployment, not one per server behind the load balancer.
#[async_trait]
pub trait StreamTokenStore: Send + Sync {
    /// Notes the use of the stream token `token_id` for `ttl_ms` (its time
    /// left); true the first time (atomic: of two servers given the same
    /// token at once, one is first).
    async fn first_use_of_stream_token(
        &self,
        token_id: &str,
        ttl_ms: u64,
    ) -> Result<bool, StoreError>;
}

/// One delivery of a queued job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDelivery {
    /// The job's id in the queue (a stream entry id).
    pub id: String,
    /// What was queued.
    pub payload: String,
    /// How many times the job has been handed to a worker, this time
    /// included.
    pub deliveries: u64,
}

/// The evaluation job queue: a stream with one consumer group. A job handed
/// to a worker stays pending until acknowledged; a worker that dies leaves
/// it pending, and another worker reclaims it once it has been idle long
/// enough.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Queues a job; returns its id.
    async fn push_job(&self, payload: &str) -> Result<String, StoreError>;

    /// Up to `max` jobs never handed out before, waiting up to `wait` for
    /// one to arrive.
    ///
    /// # Cancel safety
    /// Not cancel safe: a job handed out while the future is dropped stays
    /// pending under `consumer` until reclaimed.
    async fn read_jobs(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<JobDelivery>, StoreError>;

    /// Up to `max` jobs pending (handed out, not acknowledged) for at least
    /// `min_idle`, now handed to `consumer`.
    async fn reclaim_jobs(
        &self,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<JobDelivery>, StoreError>;

    /// Acknowledges (and removes) a job: call only after its writes.
    async fn ack_job(&self, id: &str) -> Result<(), StoreError>;

    /// Resets the idle time of job `id` if `consumer` still holds it (the
    /// owner's `XCLAIM … JUSTID`, which does not count a delivery), so a
    /// job still running is not reclaimed by another worker. False when
    /// the job is acknowledged or another consumer holds it now.
    async fn keep_job(&self, consumer: &str, id: &str) -> Result<bool, StoreError>;
}

/// A pending webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The delivery's id (unique per event).
    pub id: String,
    /// The delivery's state, as JSON.
    pub payload: String,
}

/// What queuing a webhook delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Enqueued {
    /// Added, due as asked.
    Queued,
    /// Not added: the event waits in the outbox already.
    Pending,
    /// Not added: the event was delivered (its key stays, emptied, until
    /// its TTL).
    Delivered,
}

impl Enqueued {
    /// Whether the delivery was added.
    pub fn is_queued(self) -> bool {
        self == Enqueued::Queued
    }
}

/// The most dead letters kept: the oldest go first.
pub const DEAD_LETTERS_MAX: usize = 10_000;

/// The webhook outbox: deliveries by due time, claimed under a lease so a
/// deliverer that dies mid-delivery leaves the entry to be claimed again.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Adds a delivery due at `due_ms` unless one with `id` exists, pending
    /// or delivered.
    async fn enqueue_delivery(
        &self,
        id: &str,
        payload: &str,
        due_ms: u64,
    ) -> Result<Enqueued, StoreError>;

    /// Up to `max` deliveries due at `now_ms`, each leased until
    /// `now_ms + lease_ms` (no one else claims it before).
    async fn claim_deliveries(
        &self,
        now_ms: u64,
        lease_ms: u64,
        max: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Stores the delivery's new state and makes it due at `due_ms`.
    async fn reschedule_delivery(
        &self,
        id: &str,
        payload: &str,
        due_ms: u64,
    ) -> Result<(), StoreError>;

    /// Removes a delivered entry.
    async fn complete_delivery(&self, id: &str) -> Result<(), StoreError>;

    /// Moves an entry that ran out of attempts to the dead letters, which
    /// keep the newest [`DEAD_LETTERS_MAX`] for `outbox_ttl` after the
    /// last one.
    async fn bury_delivery(&self, id: &str, payload: &str) -> Result<(), StoreError>;

    /// How many deliveries wait in the outbox.
    async fn outbox_len(&self) -> Result<u64, StoreError>;

    /// How many dead letters are kept.
    async fn dead_letters_len(&self) -> Result<u64, StoreError>;

    /// The oldest `max` dead letters, as buried.
    async fn dead_letters(&self, max: usize) -> Result<Vec<String>, StoreError>;

    /// Puts a dead letter back in the outbox, in one atomic step: the
    /// `buried` payload leaves the dead letters and, if it was there and
    /// delivery `id` is neither queued nor delivered, `payload` is stored
    /// as that delivery, due at `due_ms`. True when queued: two redrives of
    /// one letter at once, or a letter buried twice, queue it once.
    async fn redrive_delivery(
        &self,
        buried: &str,
        id: &str,
        payload: &str,
        due_ms: u64,
    ) -> Result<bool, StoreError>;
}

/// A context store: everything voxpipe keeps between turns and sessions.
#[async_trait]
pub trait Store:
    CallStore
    + RefinementStore
    + SkillStore
    + TestCaseStore
    + PromptHistoryStore
    + NumberLimitStore
    + JobQueue
    + Outbox
    + CampaignStore
    + TextStore
    + StreamTokenStore
    + LostSessionStore
{
    /// `redis` or `memory`, for logs and `/health`.
    fn backend(&self) -> &'static str;

    /// Which store this is, to tell it from others (the turn spool keeps
    /// each store's files apart): its kind, a hash of its address and its
    /// key prefix. Never a password.
    fn identity(&self) -> String;

    /// Succeeds when the store answers: readiness for `/health`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Fails when the store's server is not deployed as configured (a
    /// cluster node used as a standalone Redis, or the reverse): checked
    /// once at start, so the mistake is a clear error, not refused writes.
    async fn check_topology(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
