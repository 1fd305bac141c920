//! [`TextConversations`]: one process's text conversations.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::config::TextSection;
use super::ends::{EndMetrics, MAX_END_ATTEMPTS, Since, new_claim, retry_delay};
use super::error::TextError;
use super::history::{context_of, latest};
use super::key::{Channel, ConversationKey};
use super::path::text_path;
use super::queue::{Held, Overloaded, Queues, Ticket};
use super::reply::{Reply, TextEvent};
use super::run::run;
use crate::agent::{AgentRuntime, SessionMemory};
use crate::conversation::{Role, SharedConversation, Turn};
use crate::pipeline::{ProcessorEntry, SessionResources, SessionSetup, new_session_id};
use crate::store::time::unix_ms;
use crate::store::{CallChange, StoreError, TextEnd};

/// How many idle conversations one sweep closes at most, and how many
/// pending ends it records at most.
const SWEEP_BATCH: usize = 100;
/// The longest wait between two sweeps.
const MAX_SWEEP_PERIOD: Duration = Duration::from_secs(5);
/// How long a message waits for its turns to be written before the next
/// message of the conversation may read them.
const WRITE_WAIT: Duration = Duration::from_secs(10);
/// How many messages of one conversation may wait behind the one being
/// answered; more are refused ([`Overloaded::Conversation`]).
pub const MAX_WAITING_PER_CONVERSATION: usize = 8;

/// One inbound message.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The conversation it belongs to.
    pub key: ConversationKey,
    /// Its text (may be empty when it carries media).
    pub text: String,
    /// How many media items it carries.
    pub media: usize,
    /// Stored with a new conversation's call (its custom parameters; the
    /// segment is read from them).
    pub parameters: BTreeMap<String, String>,
}

/// A message admitted ([`TextConversations::admit`]): its place in its
/// conversation's line is taken, behind every message of the conversation
/// admitted before it.
#[derive(Debug)]
pub struct Admitted {
    inbound: Inbound,
    ticket: Ticket,
}

impl Admitted {
    /// The message.
    pub fn inbound(&self) -> &Inbound {
        &self.inbound
    }
}

/// A conversation's turn: while it is held, the conversation's next
/// message waits, and the message counts as in flight. See
/// [`TextConversations::message_in_turn`].
pub struct ConversationTurn {
    _held: Held,
    _in_flight: OwnedSemaphorePermit,
}

impl std::fmt::Debug for ConversationTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConversationTurn").finish_non_exhaustive()
    }
}

/// The text conversations of one process: answers messages through the
/// pipeline's text path, and ends idle conversations. See the module docs
/// of [`crate::text`].
pub struct TextConversations {
    path: Vec<ProcessorEntry>,
    base: SessionSetup,
    runtime: Arc<AgentRuntime>,
    section: TextSection,
    /// One line per conversation with a message in flight, so the messages
    /// of one conversation are answered in the order they were admitted,
    /// each seeing the last; and the bound on messages in flight.
    queues: Queues,
    /// What recording the conversations' ends did.
    end_metrics: EndMetrics,
}

impl std::fmt::Debug for TextConversations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextConversations")
            .field(
                "path",
                &self.path.iter().map(|p| &p.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl TextConversations {
    /// Conversations over the text path of `processors`, each message's
    /// session set up as `base` says (its id, resources and parameters are
    /// its own), kept in `runtime`'s store.
    pub fn new(
        processors: &[ProcessorEntry],
        base: SessionSetup,
        runtime: Arc<AgentRuntime>,
        section: TextSection,
    ) -> Result<Self, TextError> {
        let path = text_path(processors);
        if path.is_empty() {
            return Err(TextError::NoTextPath);
        }
        // Said at start: processes of one deployment that disagree (an auth
        // token set on one, not on another) key one conversation two ways,
        // and split it.
        if runtime.phone_hasher().is_some() {
            tracing::info!(
                "text conversation keys are salted with the deployment's phone-hash salt"
            );
        } else {
            tracing::warn!(
                "text conversation keys are unsalted hashes of the participants: set [outbound] phone_hash_salt_env (or the Twilio auth token) on every process of the deployment"
            );
        }
        let queues = Queues::new(MAX_WAITING_PER_CONVERSATION, section.max_messages_in_flight);
        Ok(TextConversations {
            path,
            base,
            runtime,
            section,
            queues,
            end_metrics: EndMetrics::default(),
        })
    }

    /// The metrics of this process's sweeps, in the Prometheus text
    /// format: `voxpipe_text_ends_total{result}` (`recorded`, `retrying`,
    /// `set_aside`).
    pub fn render_metrics(&self) -> String {
        self.end_metrics.render()
    }

    /// `[text]`.
    pub fn section(&self) -> &TextSection {
        &self.section
    }

    /// The agent runtime (its store).
    pub fn runtime(&self) -> &Arc<AgentRuntime> {
        &self.runtime
    }

    /// The key of the conversation between `participants` on `channel`:
    /// keyed with the deployment's phone-hash salt when it has one (the
    /// runtime's [`phone_hasher`](AgentRuntime::phone_hasher)), else
    /// unsalted. See [`ConversationKey::keyed`].
    pub fn key(&self, channel: Channel, participants: &[&str]) -> ConversationKey {
        ConversationKey::keyed(channel, participants, self.runtime.phone_hasher())
    }

    /// Admits `inbound`: takes its place in its conversation's line, behind
    /// every message of the conversation admitted before, without waiting.
    /// A handler admits a message before its first `await`, so that the
    /// messages of a conversation are answered in the order they arrived.
    /// Refused when its conversation has [`MAX_WAITING_PER_CONVERSATION`]
    /// messages waiting already, or the process `[text]
    /// max_messages_in_flight` messages in flight.
    pub fn admit(&self, inbound: Inbound) -> Result<Admitted, Overloaded> {
        let ticket = self.queues.admit(inbound.key.as_str())?;
        Ok(Admitted { inbound, ticket })
    }

    /// Answers `inbound`, streaming what happens to `events` (the last
    /// event is [`TextEvent::Done`], sent as soon as the answer is
    /// complete). Returns once the turns are written (or the write wait is
    /// over), so that the conversation's next message reads them. Admits
    /// the message first ([`admit`](Self::admit)).
    pub async fn message(
        &self,
        inbound: Inbound,
        events: Option<mpsc::UnboundedSender<TextEvent>>,
    ) -> Result<Reply, TextError> {
        let admitted = self.admit(inbound)?;
        let (reply, _turn) = self.message_in_turn(admitted, events).await?;
        Ok(reply)
    }

    /// Answers the `admitted` message once its conversation's earlier
    /// messages are, as [`message`](Self::message) does; but the
    /// conversation's turn is kept until the returned [`ConversationTurn`]
    /// is dropped: its next message waits, so that an answer delivered
    /// after this returns (by the Messages REST resource) still arrives
    /// before the next one.
    ///
    /// # Cancel safety
    ///
    /// Cancelled, the message gives up its place (or its turn) to the
    /// conversation's next message.
    pub async fn message_in_turn(
        &self,
        admitted: Admitted,
        events: Option<mpsc::UnboundedSender<TextEvent>>,
    ) -> Result<(Reply, ConversationTurn), TextError> {
        let Admitted { inbound, ticket } = admitted;
        let text = inbound.text.trim();
        if text.is_empty() && inbound.media == 0 {
            return Err(TextError::Empty);
        }
        let (held, in_flight) = ticket.turn().await;
        let in_order = ConversationTurn {
            _held: held,
            _in_flight: in_flight,
        };
        let store = self.runtime.store();
        let key = inbound.key.as_str();
        // A conversation opened before the keys were salted is moved to
        // its salted key by its first message since.
        let legacy = inbound.key.legacy();
        let call_id = store
            .open_text_conversation(key, legacy, &new_session_id(), unix_ms())
            .await?;
        let mut setup = self.base.clone();
        setup.session_id = call_id.as_str().into();
        setup.resources = SessionResources::new();
        setup.custom_parameters = inbound.parameters.clone();
        let turns = store.turns(&call_id).await?;
        let history = SharedConversation::new(latest(
            &context_of(&turns),
            self.section.history_max_messages,
            self.section.history_max_chars,
        ));
        for name in self
            .path
            .iter()
            .filter_map(|p| p.factory.conversation_name())
        {
            setup.resources.insert(name, history.clone());
        }
        let memory = self
            .runtime
            .open_text_session(&setup, inbound.key.channel().name())
            .await;
        memory.started();
        let reply = if text.is_empty() {
            // Media only: no model reads it; the turn says what came.
            let user = format!("[{} media item(s), no text]", inbound.media);
            self.answer_without_model(&memory, &call_id, user, &self.section.media_reply)
        } else {
            let mut text = self.cut(text);
            if inbound.media > 0 {
                // The model cannot see media: it is told some came.
                let items = if inbound.media == 1 { "item" } else { "items" };
                text.push_str(&format!(
                    "\n\n[{} media {items} attached, not shown]",
                    inbound.media
                ));
            }
            let apology = &self.section.apology;
            let run = run(
                &self.path,
                apology,
                &setup,
                &memory,
                &call_id,
                &text,
                events.clone(),
            )
            .await;
            match run {
                Ok(reply) => reply,
                Err(err) => {
                    memory.detached();
                    return Err(err);
                }
            }
        };
        if let Some(events) = &events {
            let _gone = events.send(TextEvent::Done(reply.clone()));
        }
        memory.detached();
        // Only while it is still open as `call_id`: an idle sweep that
        // ended it during the answer must not see it reopened under its
        // ended id; the next message starts a new conversation.
        match store
            .touch_text_conversation(key, &call_id, unix_ms())
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                call_id,
                "the conversation was ended while its message was answered; the next message starts a new one"
            ),
            Err(err) => {
                tracing::warn!(call_id, error = %err, "cannot note the conversation's last message");
            }
        }
        if memory.finished(WRITE_WAIT).await.is_none() {
            tracing::warn!(call_id, "the conversation's turns are still being written");
        }
        Ok((reply, in_order))
    }

    /// The message as the model reads it: at most `max_message_chars`,
    /// with a notice when cut.
    fn cut(&self, text: &str) -> String {
        let max = self.section.max_message_chars;
        match text.char_indices().nth(max) {
            None => text.to_owned(),
            Some((at, _)) => {
                tracing::info!(max, "message cut to its first characters");
                format!(
                    "{}\n\n[The message was cut here: it was longer than {max} characters.]",
                    &text[..at]
                )
            }
        }
    }

    fn answer_without_model(
        &self,
        memory: &SessionMemory,
        call_id: &str,
        user: String,
        answer: &str,
    ) -> Reply {
        for (role, text) in [(Role::User, user), (Role::Assistant, answer.to_owned())] {
            memory.record_turn(Arc::new(Turn::completed(0, role, text, Duration::ZERO)));
        }
        Reply {
            call_id: call_id.to_owned(),
            text: answer.to_owned(),
            failed: false,
        }
    }

    /// How many conversations have an entry in memory: a message in
    /// flight (a conversation at rest has none).
    pub fn in_memory(&self) -> usize {
        self.queues.lines()
    }

    /// Ends the conversations idle at `now_ms` (no message for the idle
    /// timeout): each call is completed (`end_reason` `idle_timeout`) and
    /// its after-call hooks are queued. First, ends closed earlier whose
    /// recording failed (a store error midway, a server gone) are recorded
    /// if due, soonest due first. Returns how many this call ended; another
    /// server's sweep, or a message arriving, makes it fewer.
    ///
    /// Each end is claimed before it is recorded (see
    /// [`TextStore::claim_text_end`](crate::store::TextStore::claim_text_end)),
    /// so two servers' sweeps never record one twice. An end whose
    /// recording fails is logged and due again after a wait that doubles
    /// with each failure, so one that always fails costs little and holds
    /// back no newer one; after [`MAX_END_ATTEMPTS`] it is set aside
    /// (logged as an error, counted in `voxpipe_text_ends_total`).
    pub async fn sweep(&self, now_ms: u64) -> Result<usize, StoreError> {
        let idle_ms = self.section.idle_timeout_secs.duration().as_millis() as u64;
        let before = now_ms.saturating_sub(idle_ms);
        let store = self.runtime.store();
        let mut ended = 0;
        // Failures back off from when they happen, not from the sweep's
        // start: a slow sweep must not leave them due at once.
        let clock = Since::new(now_ms);
        for end in store.pending_text_ends(now_ms, SWEEP_BATCH).await? {
            let claim = new_claim();
            match store.claim_text_end(&end, &claim, now_ms).await {
                Ok(true) => {}
                // Recorded, rescheduled or being recorded by another sweep.
                Ok(false) => continue,
                Err(err) => {
                    tracing::warn!(call_id = %end.call_id, error = %err, "cannot claim a text conversation's end; a later sweep tries again");
                    continue;
                }
            }
            if self.record_end(&end, &claim.owner, clock).await.is_ok() {
                ended += 1;
            }
        }
        for key in store.idle_text_conversations(before, SWEEP_BATCH).await? {
            match self.end(&key, before, clock, "idle_timeout").await {
                Ok(true) => ended += 1,
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "an idle text conversation's end is not recorded; a later sweep tries again");
                }
            }
        }
        Ok(ended)
    }

    /// Ends `key`'s conversation now, whatever its last message (a
    /// terminal chat that is over): completed with `reason`, its after-call
    /// hooks queued. False when no conversation was open (under `key`, or
    /// its legacy unsalted key).
    pub async fn finish(&self, key: &ConversationKey, reason: &str) -> Result<bool, StoreError> {
        let clock = Since::new(unix_ms());
        if self.end(key.as_str(), u64::MAX, clock, reason).await? {
            return Ok(true);
        }
        match key.legacy() {
            Some(legacy) => self.end(legacy, u64::MAX, clock, reason).await,
            None => Ok(false),
        }
    }

    /// Closes `key`'s conversation if it is idle since `before_ms` (the
    /// store notes its end as pending, claimed by this call, in the same
    /// step, so a message arriving now opens a new conversation and none
    /// is lost), then records the end.
    async fn end(
        &self,
        key: &str,
        before_ms: u64,
        clock: Since,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let store = self.runtime.store();
        let claim = new_claim();
        // The end is as of the sweep's time; only a failure's backoff
        // counts from when it happens.
        let now_ms = clock.ms;
        let Some(call_id) = store
            .close_text_conversation(key, before_ms, reason, now_ms, &claim)
            .await?
        else {
            return Ok(false);
        };
        let end = TextEnd {
            call_id,
            reason: reason.to_owned(),
            at_ms: now_ms,
            attempts: 0,
        };
        self.record_end(&end, &claim.owner, clock).await?;
        Ok(true)
    }

    /// Completes the call of a closed conversation and queues its
    /// after-call hooks, then clears the pending end; `owner` holds its
    /// claim. Each step is idempotent, so an end that failed midway is
    /// simply done again; a failure is logged and the end rescheduled (see
    /// [`sweep`](Self::sweep)).
    async fn record_end(&self, end: &TextEnd, owner: &str, clock: Since) -> Result<(), StoreError> {
        let store = self.runtime.store();
        let change = CallChange::Ended {
            reason: end.reason.clone(),
            at_ms: end.at_ms,
        };
        let recorded = async {
            store.update_call(&end.call_id, &change).await?;
            self.runtime.queue_after_call(&end.call_id).await?;
            store.text_end_recorded(end).await
        }
        .await;
        match recorded {
            Ok(()) => {
                self.end_metrics.recorded.inc();
                tracing::info!(call_id = %end.call_id, reason = %end.reason, "text conversation ended");
                Ok(())
            }
            Err(err) => {
                self.end_failed(end, owner, clock.now_ms(), &err).await;
                Err(err)
            }
        }
    }

    /// Reschedules `end`, whose recording failed with `error` at `now_ms`,
    /// or sets it aside after [`MAX_END_ATTEMPTS`].
    async fn end_failed(&self, end: &TextEnd, owner: &str, now_ms: u64, error: &StoreError) {
        let failed = TextEnd {
            attempts: end.attempts.saturating_add(1),
            ..end.clone()
        };
        let retry_at = (failed.attempts < MAX_END_ATTEMPTS).then(|| {
            let wait = retry_delay(failed.attempts).as_millis() as u64;
            now_ms.saturating_add(wait)
        });
        let store = self.runtime.store();
        match store.text_end_failed(&failed, owner, retry_at).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(call_id = %end.call_id, error = %error, "a text conversation's end is not recorded; another attempt claimed it since, or it is no longer pending");
                return;
            }
            Err(err) => {
                // Its claim lapses: the end is tried again then, this
                // attempt uncounted.
                tracing::warn!(call_id = %end.call_id, error = %error, store_error = %err, "a text conversation's end is not recorded, nor rescheduled; tried again when its claim lapses");
                return;
            }
        }
        match retry_at {
            Some(_) => {
                self.end_metrics.retrying.inc();
                tracing::warn!(call_id = %end.call_id, attempts = failed.attempts, error = %error, "a text conversation's end is not recorded; tried again later");
            }
            None => {
                self.end_metrics.set_aside.inc();
                tracing::error!(call_id = %end.call_id, attempts = failed.attempts, error = %error, "a text conversation's end failed every attempt; set aside, no longer tried");
            }
        }
    }

    /// Sweeps for idle conversations until `shutdown` resolves: every
    /// quarter of the idle timeout, at most every 5 s.
    pub async fn run_sweeper(&self, shutdown: impl Future<Output = ()>) {
        let period = (self.section.idle_timeout_secs.duration() / 4).min(MAX_SWEEP_PERIOD);
        let sweeping = async {
            loop {
                tokio::time::sleep(period).await;
                if let Err(err) = self.sweep(unix_ms()).await {
                    tracing::warn!(error = %err, "idle text conversations not swept");
                }
            }
        };
        tokio::select! {
            () = shutdown => {}
            () = sweeping => {}
        }
    }
}
