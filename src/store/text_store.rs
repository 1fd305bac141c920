//! [`TextStore`]: text conversations' state, and the ends of closed ones
//! still to be recorded, claimed one recorder at a time.

use async_trait::async_trait;

use super::error::StoreError;

/// A closed text conversation whose end is still to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextEnd {
    /// The conversation's call id.
    pub call_id: String,
    /// Why it ended (`idle_timeout`, ...).
    pub reason: String,
    /// When it ended (Unix ms).
    pub at_ms: u64,
    /// Attempts to record it that failed.
    pub attempts: u32,
}

impl TextEnd {
    /// As a member of the pending set: `{call id}\n{reason}`.
    pub(crate) fn member(&self) -> String {
        format!("{}\n{}", self.call_id, self.reason)
    }

    /// From a member of the pending set, its score (when it is due: the
    /// end's time until an attempt failed) and its entry in the tries hash
    /// (`{attempts} {end's ms}`), if it has one.
    pub(crate) fn from_member(member: &str, due_ms: u64, tries: Option<&str>) -> Self {
        let (call_id, reason) = member.split_once('\n').unwrap_or((member, "ended"));
        let (attempts, at_ms) = tries
            .and_then(|tries| {
                let (attempts, at_ms) = tries.split_once(' ')?;
                Some((attempts.parse().ok()?, at_ms.parse().ok()?))
            })
            .unwrap_or((0, due_ms));
        TextEnd {
            call_id: call_id.to_owned(),
            reason: reason.to_owned(),
            at_ms,
            attempts,
        }
    }

    /// Its entry in the tries hash: `{attempts} {end's ms}`.
    pub(crate) fn tries(&self) -> String {
        format!("{} {}", self.attempts, self.at_ms)
    }
}

/// A claim on recording a text conversation's end: while it holds, no one
/// else records it (two servers' sweeps would queue its after-call hooks
/// twice). It lapses after `ttl_ms` on the store's clock, so an owner that
/// dies holds nothing back for longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndClaim {
    /// Who holds it: unique to one attempt at recording.
    pub owner: String,
    /// How long it holds at most.
    pub ttl_ms: u64,
}

/// The owner a claim's entry in the claims hash (`{claim's end ms}
/// {owner}`) names, held or lapsed.
pub(crate) fn claim_owner(entry: &str) -> Option<&str> {
    entry.split_once(' ').map(|(_, owner)| owner)
}

/// The owner of a claim's entry, if the claim still holds at `now_ms`.
pub(crate) fn claim_holder(entry: &str, now_ms: u64) -> Option<&str> {
    let (until_ms, owner) = entry.split_once(' ')?;
    let until_ms: u64 = until_ms.parse().ok()?;
    (until_ms > now_ms).then_some(owner)
}

/// Text conversations (SMS, WhatsApp, the chat API): which conversation
/// is open for a channel and its participants, when each last heard a
/// message, and which provider message ids were already answered. Each
/// change is one atomic step (a Lua script in Redis), so two servers, or a
/// message racing the idle sweep, never split or lose a conversation.
#[async_trait]
pub trait TextStore: Send + Sync {
    /// The id of the conversation open for `key` (`candidate` when none
    /// was, which opens it); its last message is now `now_ms`.
    ///
    /// When none is open for `key` but one is for `legacy` (the unsalted
    /// key of a conversation opened before the deployment's keys were
    /// salted), that one is moved to `key`, in the same step, and its id
    /// returned: the legacy key is gone from the store, as a key and from
    /// the idle set. One open for `key` wins over one for `legacy` (which
    /// is then left to the idle sweep).
    async fn open_text_conversation(
        &self,
        key: &str,
        legacy: Option<&str>,
        candidate: &str,
        now_ms: u64,
    ) -> Result<String, StoreError>;

    /// Notes `now_ms` as the last message of `key`'s conversation, only
    /// while the conversation open for `key` is still `call_id`: false, and
    /// nothing changed, when it was closed since (an idle sweep ended it
    /// while its message was answered; noted, it would be reopened under
    /// its ended id) and the next message starts a new one.
    async fn touch_text_conversation(
        &self,
        key: &str,
        call_id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError>;

    /// Keys of open conversations whose last message was at or before
    /// `before_ms`, oldest first, at most `max`.
    async fn idle_text_conversations(
        &self,
        before_ms: u64,
        max: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// Closes `key`'s conversation if its last message is still at or
    /// before `before_ms`; its id when this call closed it (`None`: closed
    /// by someone else, or a message came since). In the same step the
    /// end (`reason`, at `at_ms`) is noted as pending, until
    /// [`text_end_recorded`](Self::text_end_recorded), and `claim`ed (see
    /// [`claim_text_end`](Self::claim_text_end)): an end that fails midway
    /// is found again by [`pending_text_ends`](Self::pending_text_ends).
    async fn close_text_conversation(
        &self,
        key: &str,
        before_ms: u64,
        reason: &str,
        at_ms: u64,
        claim: &EndClaim,
    ) -> Result<Option<String>, StoreError>;

    /// Ends noted by [`close_text_conversation`](Self::close_text_conversation),
    /// not yet recorded and due at `now_ms` (an end whose attempt failed is
    /// due again later: see [`text_end_failed`](Self::text_end_failed)),
    /// soonest due first, at most `max`. Claimed ones are listed too.
    async fn pending_text_ends(&self, now_ms: u64, max: usize) -> Result<Vec<TextEnd>, StoreError>;

    /// Claims `end` for recording (atomic: of two servers' sweeps, one
    /// has it): true when it is still pending, due at `now_ms`, and no
    /// one else's claim holds.
    async fn claim_text_end(
        &self,
        end: &TextEnd,
        claim: &EndClaim,
        now_ms: u64,
    ) -> Result<bool, StoreError>;

    /// `end` is recorded (the call completed, its after-call hooks
    /// queued): no longer pending, and its claim let go, whoever holds it
    /// (an attempt that outlived its claim may record the end while
    /// another's claim is on it; left, that claim would stay for good).
    async fn text_end_recorded(&self, end: &TextEnd) -> Result<(), StoreError>;

    /// An attempt to record `end` failed; `end.attempts` counts it. Due
    /// again at `retry_at_ms`, or, when `None`, set aside: no longer
    /// pending, listed by [`set_aside_text_ends`](Self::set_aside_text_ends).
    /// Only while the end's claim is still `owner`'s, held or lapsed (an
    /// attempt that outlived its claim, none claiming the end since, still
    /// counts); the claim is then let go. Otherwise false, and nothing
    /// changed: another attempt claimed the end since (and decides: the
    /// attempts `end` read may be fewer than that one counted), or `end`
    /// is no longer pending.
    async fn text_end_failed(
        &self,
        end: &TextEnd,
        owner: &str,
        retry_at_ms: Option<u64>,
    ) -> Result<bool, StoreError>;

    /// Ends set aside after failing every attempt, oldest first, at most
    /// `max`.
    async fn set_aside_text_ends(&self, max: usize) -> Result<Vec<TextEnd>, StoreError>;

    /// Notes the provider's message `message_id` for `ttl_ms` as `owner`'s
    /// (a token unique to one attempt at answering it); true the first
    /// time it is seen (a retried webhook answers false).
    async fn first_sight_of_message(
        &self,
        message_id: &str,
        owner: &str,
        ttl_ms: u64,
    ) -> Result<bool, StoreError>;

    /// Keeps `message_id` noted as `owner`'s for `ttl_ms` from now, seen or
    /// not (its answer was handed on: the short note taken while it was
    /// answered becomes the long one).
    async fn keep_message(
        &self,
        message_id: &str,
        owner: &str,
        ttl_ms: u64,
    ) -> Result<(), StoreError>;

    /// Forgets `message_id`, which could not be answered, so that the
    /// provider's retry of it is taken; only while its note is still
    /// `owner`'s (compare-and-delete, in one step). A note someone else
    /// took since (this one lapsed, or the write that took it timed out
    /// and another server took it after) is theirs: deleting it would let
    /// a retry be answered twice.
    async fn forget_message(&self, message_id: &str, owner: &str) -> Result<(), StoreError>;
}
