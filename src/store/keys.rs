//! Key names, exactly as `docs/architecture.md` lists them, behind one configurable
//! prefix so several deployments can share a Redis.
//!
//! | key | type |
//! |---|---|
//! | `call:{id}` | string (JSON [`CallRecord`](crate::store::CallRecord)) |
//! | `call:{id}:interactions` | list of JSON [`Interaction`](crate::store::Interaction)s |
//! | `agent:tactics`, `agent:winning_tactics`, `agent:failed_tactics` | lists |
//! | `session:{id}:tactics` | list |
//! | `prompt:segment:{country}:{industry}`, `prompt:segment:*:{industry}`, `prompt:base` | strings |
//! | `skill:{hash}` | hash: `trigger`, `rebuttal`, `vector` |
//! | `test_cases:list` | list of JSON `{"input", "target"}` |
//! | `{prompt key}:version`, `{prompt key}:history` | string (counter), list of JSON [`PromptVersion`](crate::store::PromptVersion)s |
//! | `{prompt key}:optimisations`, `{prompt key}:failures` | sorted sets (optimisation ids, failed call ids, by Unix ms) |
//! | `optimisation:{id}` | string (JSON [`OptimisationTrace`](crate::store::OptimisationTrace)) |
//! | `calls:by_created` | sorted set: call ids by creation time (Unix ms) |
//! | `rate_limit:{phone_hash}` | string: the call id holding the number's limit |
//! | `calls:lost_sessions` | sorted set: lost-session checks (`{call id}\n{final status ms}`, or a session lease `{call id}\nlease`) by due time, or a claim's lease end |
//! | `{calls:lost_sessions}:lease:{id}` | hash: a session lease's holds (writer id → `{renewed ms}:{due ms}`) |
//!
//! voxpipe adds three keys of its own for work that must survive a restart:
//! `eval:jobs` (the evaluation stream, consumer group `evaluators`),
//! `webhook:outbox` (sorted set of pending deliveries by due time) with one
//! `webhook:event:{id}` string per delivery, and `webhook:dead` (a list of
//! deliveries that ran out of attempts).
//!
//! Text conversations (see `TextStore`) keep `{text:active}:conversation:{key}`
//! (string: the open conversation's id; `{key}` is `{channel}:{hash}`, the
//! hash keyed by the deployment's phone-hash salt when it has one), `text:active` (sorted set: keys
//! by last message), `{text:active}:ending` (sorted set: ends closed but
//! not yet recorded, by when each is due), `{text:active}:ending:tries`
//! and `{text:active}:ending:claims` (hashes: failed attempts, and who is
//! recording an end), `{text:active}:ending:set_aside` (sorted set: ends
//! that failed every attempt) and `text:message:{id}` (string, with a TTL:
//! a message id seen).
//!
//! Campaigns (see `CampaignStore`) keep
//! `campaign:{id}` (hash: settings, state, counts, the rate's next slot),
//! `campaign:{id}:entries` (hash: entry → JSON number and parameters),
//! `campaign:{id}:due` and `campaign:{id}:leases` (sorted sets of entries by
//! due time and by lease end), `campaign:{id}:attempts` (hash: entry → its
//! try), `campaign:{id}:done` (hash: entry → final status) and
//! `campaigns:active` (sorted set of unfinished campaigns by creation).

use crate::store::TacticsList;

/// Builds key names under a prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (may be empty; e.g. `acme:` gives `acme:call:…`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Keys {
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, name: std::fmt::Arguments<'_>) -> String {
        format!("{}{name}", self.prefix)
    }

    /// `call:{id}`: the call's state.
    pub fn call(&self, call_id: &str) -> String {
        self.key(format_args!("call:{call_id}"))
    }

    /// `calls:by_created`: every call id, scored by its creation time (Unix
    /// ms), for finding calls by time; members older than the call TTL are
    /// trimmed as calls are created.
    pub fn calls_by_created(&self) -> String {
        self.key(format_args!("calls:by_created"))
    }

    /// `call:{id}:interactions`: the transcript.
    pub fn interactions(&self, call_id: &str) -> String {
        self.key(format_args!("call:{call_id}:interactions"))
    }

    /// `agent:tactics`, `agent:winning_tactics` or `agent:failed_tactics`.
    pub fn tactics(&self, list: TacticsList) -> String {
        self.key(format_args!("{}", list.key_name()))
    }

    /// `{agent:winning_tactics}:calls` (for each list): per tactic
    /// identity, the distinct calls that named it (JSON array of ids), in
    /// the list's Cluster slot: one script writes both.
    pub fn tactic_calls(&self, list: TacticsList) -> String {
        part_of(&self.tactics(list), format_args!("calls"))
    }

    /// `test_cases:list`: the learning loop's test cases.
    pub fn test_cases(&self) -> String {
        self.key(format_args!("test_cases:list"))
    }

    /// `session:{id}:tactics`: the tactics one session used.
    pub fn session_tactics(&self, call_id: &str) -> String {
        self.key(format_args!("session:{call_id}:tactics"))
    }

    /// `prompt:segment:{country}:{industry}`; `country` `*` is the industry
    /// fallback.
    pub fn segment_prompt(&self, country: &str, industry: &str) -> String {
        self.key(format_args!("prompt:segment:{country}:{industry}"))
    }

    /// `prompt:base`.
    pub fn base_prompt(&self) -> String {
        self.key(format_args!("prompt:base"))
    }

    /// `optimisation:{id}`: one prompt optimisation's trace.
    pub fn optimisation(&self, id: &str) -> String {
        self.key(format_args!("optimisation:{id}"))
    }

    /// The glob matching every prompt key (and the optimiser's keys beside
    /// them).
    pub fn prompt_pattern(&self) -> String {
        self.key(format_args!("prompt:*"))
    }

    /// `skill:{hash}`.
    pub fn skill(&self, hash: &str) -> String {
        self.key(format_args!("skill:{hash}"))
    }

    /// `skills:by_added`: every skill's hash by when it was last stored
    /// (Unix ms), so the oldest can go ([`crate::store::MAX_SKILLS_KEPT`]).
    pub fn skills_by_added(&self) -> String {
        self.key(format_args!("skills:by_added"))
    }

    /// The glob matching every skill key.
    pub fn skill_pattern(&self) -> String {
        self.key(format_args!("skill:*"))
    }

    /// The skill hash in a skill key, if it is one.
    pub fn skill_hash<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix("skill:")
    }

    /// `eval:jobs`: the evaluation job stream.
    pub fn eval_jobs(&self) -> String {
        self.key(format_args!("eval:jobs"))
    }

    /// `webhook:outbox`: pending deliveries by due time.
    pub fn outbox(&self) -> String {
        self.key(format_args!("webhook:outbox"))
    }

    /// `{webhook:outbox}:event:<id>`: one pending delivery, in the
    /// outbox's slot.
    pub fn outbox_event(&self, event_id: &str) -> String {
        part_of(&self.outbox(), format_args!("event:{event_id}"))
    }

    /// `campaign:<id>`, or one of its parts `{campaign:<id>}:<part>`
    /// (`entries`, `due`, `leases`, `attempts`, `done`), in its slot.
    pub fn campaign(&self, campaign_id: &str, part: Option<&str>) -> String {
        let campaign = self.key(format_args!("campaign:{campaign_id}"));
        match part {
            None => campaign,
            Some(part) => part_of(&campaign, format_args!("{part}")),
        }
    }

    /// `campaigns:active`: unfinished campaigns by creation time.
    pub fn active_campaigns(&self) -> String {
        self.key(format_args!("campaigns:active"))
    }

    /// `calls:lost_sessions`: started calls whose final status came with
    /// nobody ending them (`{call id}\n{that status's Unix ms}`), by when
    /// they are to be checked (or a claim's lease end).
    pub fn lost_sessions(&self) -> String {
        self.key(format_args!("calls:lost_sessions"))
    }

    /// `{calls:lost_sessions}:lease:{id}`: the holds on a call's session
    /// lease, one per writer (writer id → `{renewed ms}:{due ms}`), in the
    /// slot of `calls:lost_sessions`, which they are written with.
    pub fn lease_holds(&self, call_id: &str) -> String {
        part_of(&self.lost_sessions(), format_args!("lease:{call_id}"))
    }

    /// `rate_limit:{phone_hash}`: the call that holds a number's limit.
    pub fn rate_limit(&self, phone_hash: &str) -> String {
        self.key(format_args!("rate_limit:{phone_hash}"))
    }

    /// `{text:active}:conversation:{key}`: the id of the text conversation
    /// open for a channel and its participants (`{channel}:{hash}`), in
    /// `text:active`'s slot (the scripts that open and close a conversation
    /// write both).
    pub fn text_conversation(&self, key: &str) -> String {
        part_of(&self.text_active(), format_args!("conversation:{key}"))
    }

    /// `{text:active}:ending`: text conversations closed whose end is not
    /// yet recorded (sorted set: `{call id}\n{reason}` by when it is due,
    /// Unix ms: the end's time, later after a failed attempt), in
    /// `text:active`'s slot (the closing script writes both).
    pub fn text_ending(&self) -> String {
        part_of(&self.text_active(), format_args!("ending"))
    }

    /// `{text:active}:ending:tries`: the ends (members of
    /// [`text_ending`](Self::text_ending) or
    /// [`text_ending_set_aside`](Self::text_ending_set_aside)) that failed:
    /// hash, member → `{attempts} {end's Unix ms}`.
    pub fn text_ending_tries(&self) -> String {
        part_of(&self.text_active(), format_args!("ending:tries"))
    }

    /// `{text:active}:ending:claims`: who is recording an end now: hash,
    /// member → `{claim's end, Unix ms} {owner}`.
    pub fn text_ending_claims(&self) -> String {
        part_of(&self.text_active(), format_args!("ending:claims"))
    }

    /// `{text:active}:ending:set_aside`: ends that failed every attempt,
    /// no longer tried (sorted set: member by the end's Unix ms).
    pub fn text_ending_set_aside(&self) -> String {
        part_of(&self.text_active(), format_args!("ending:set_aside"))
    }

    /// `stream:token:{id}`: a Twilio call whose stream started (its id is a
    /// hash of the account and the call), for a day or until its token
    /// expires.
    pub fn stream_token(&self, id: &str) -> String {
        self.key(format_args!("stream:token:{id}"))
    }

    /// `text:active`: open text conversation keys by their last message
    /// (Unix ms), for the idle sweep.
    pub fn text_active(&self) -> String {
        self.key(format_args!("text:active"))
    }

    /// `text:message:{id}`: a provider's message id already taken.
    pub fn text_message(&self, message_id: &str) -> String {
        self.key(format_args!("text:message:{message_id}"))
    }

    /// `{webhook:outbox}:dead`: deliveries that ran out of attempts, in the
    /// outbox's slot.
    pub fn dead_letters(&self) -> String {
        part_of(&self.outbox(), format_args!("dead"))
    }
}

/// `{owner}:part`: a key that Redis Cluster keeps in `owner`'s slot (a
/// key's slot is its hash tag's, the text between its first `{` and `}`;
/// `owner`, untagged, hashes whole). What a Lua script or transaction
/// writes together is named this way.
pub(crate) fn part_of(owner: &str, part: std::fmt::Arguments<'_>) -> String {
    format!("{{{owner}}}:{part}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_schema_under_the_prefix() {
        let bare = Keys::default();
        assert_eq!(bare.call("abc"), "call:abc");
        assert_eq!(bare.interactions("abc"), "call:abc:interactions");
        assert_eq!(bare.tactics(TacticsList::Base), "agent:tactics");
        assert_eq!(bare.tactics(TacticsList::Winning), "agent:winning_tactics");
        assert_eq!(bare.tactics(TacticsList::Failed), "agent:failed_tactics");
        assert_eq!(bare.session_tactics("abc"), "session:abc:tactics");
        assert_eq!(
            bare.segment_prompt("US", "healthcare"),
            "prompt:segment:US:healthcare"
        );
        assert_eq!(
            bare.segment_prompt("*", "healthcare"),
            "prompt:segment:*:healthcare"
        );
        assert_eq!(bare.base_prompt(), "prompt:base");
        assert_eq!(bare.skill("f00d"), "skill:f00d");
        assert_eq!(bare.campaign("c1", None), "campaign:c1");
        assert_eq!(bare.campaign("c1", Some("due")), "{campaign:c1}:due");
        assert_eq!(bare.outbox_event("e1"), "{webhook:outbox}:event:e1");
        assert_eq!(bare.dead_letters(), "{webhook:outbox}:dead");
        assert_eq!(bare.active_campaigns(), "campaigns:active");
        assert_eq!(bare.lost_sessions(), "calls:lost_sessions");
        assert_eq!(bare.lease_holds("c1"), "{calls:lost_sessions}:lease:c1");

        let acme = Keys::new("acme:");
        assert_eq!(acme.call("abc"), "acme:call:abc");
        assert_eq!(acme.skill_pattern(), "acme:skill:*");
        assert_eq!(acme.skill_hash("acme:skill:f00d"), Some("f00d"));
        assert_eq!(acme.skill_hash("skill:f00d"), None);
        assert_eq!(acme.campaign("c1", Some("due")), "{acme:campaign:c1}:due");
    }
}
