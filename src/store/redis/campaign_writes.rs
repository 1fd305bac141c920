//! Writing a campaign once per id in Redis: the id is claimed first (the
//! claim names its owner), and the campaign is written only by the claim's
//! owner, so a request whose claim was taken over (it stalled past
//! [`CAMPAIGN_CLAIM_MS`]) writes nothing: one campaign's entries, never
//! two requests' (a second write would make leased entries due again and
//! dial them twice).

use std::sync::LazyLock;

use redis::Script;

use super::store::RedisStore;
use crate::store::codec::encode;
use crate::store::{CAMPAIGN_CLAIM_MS, CampaignState, CampaignWrite, NewCampaign, StoreError};

/// Entries written per command inside [`WRITE`] (Lua's `unpack` takes a
/// few thousand values at most).
const CHUNK: usize = 1000;

/// Claims a campaign id for one campaign before it is written. KEYS:
/// campaign. ARGV: fingerprint, claim ms, unwritten claim TTL ms, owner
/// token. Returns `new` with the claim's `claimed_ms` (claimed by the
/// owner at that time: write it), `existing`
/// (written, the same campaign) with its state, `conflict` (another
/// campaign), or `in_progress` (claimed for the same campaign less than
/// claim ms ago and not written: a request still writing it). A claim
/// older than that whose campaign was never written (its request failed,
/// or stalls) is taken over: the owner and `claimed_ms` change, and the
/// first request's write is refused by [`WRITE`]. Times are Redis's own (`TIME`), so
/// servers whose clocks differ agree on a claim's age; a claim never
/// written expires.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = redis.call('HMGET', KEYS[1], 'fingerprint', 'claimed_ms', 'state')
local fingerprint, claimed, state = held[1], held[2], held[3]
if fingerprint then
  if fingerprint ~= ARGV[1] then return {'conflict'} end
  if state then return {'existing', state} end
  if tonumber(claimed or '0') + tonumber(ARGV[2]) > now then
    return {'in_progress'}
  end
elseif state then
  return {'conflict'}
end
redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'claimed_ms', string.format('%d', now),
  'owner', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'new', string.format('%d', now)}
",
    )
});

/// Writes a claimed campaign if the claim is still the writer's, in one
/// step (a check then a separate write would let a takeover in between).
/// KEYS: campaign, entries, due. ARGV: owner token, the claim's
/// `claimed_ms`, settings, total, rejected, created ms, then each entry's
/// JSON (entry `i` is ARGV[7 + i]). The claim is the writer's when both
/// its owner and its `claimed_ms` are unchanged: a takeover by a server
/// of the release before owners (its claim sets `claimed_ms` only) is
/// seen too. Returns `created`, `existing` with the state (another request
/// wrote it), or `taken` (another request holds the claim and has not
/// written it yet). Written, the claim's expiry and owner go.
///
/// One script holds Redis for the whole write: every other command on
/// that Redis (or cluster shard) waits meanwhile. How long grows with the
/// entries and is not measured (the `campaigns` bench measured the MULTI
/// write this replaced, 64 ms of storing for 10,000 numbers; at that rate
/// a 100,000-number campaign would hold Redis for about 0.6 s).
static WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"
local held = redis.call('HMGET', KEYS[1], 'owner', 'state', 'claimed_ms')
if held[2] then return {{'existing', held[2]}} end
if held[1] ~= ARGV[1] or held[3] ~= ARGV[2] then return {{'taken'}} end
local first = 7
local count = #ARGV - first + 1
for start = 0, count - 1, {CHUNK} do
  local stop = math.min(start + {CHUNK} - 1, count - 1)
  local fields, due = {{}}, {{}}
  for i = start, stop do
    fields[#fields + 1] = string.format('%d', i)
    fields[#fields + 1] = ARGV[first + i]
    due[#due + 1] = ARGV[6]
    due[#due + 1] = string.format('%d', i)
  end
  redis.call('HSET', KEYS[2], unpack(fields))
  redis.call('ZADD', KEYS[3], unpack(due))
end
local state = 'running'
if count == 0 then state = 'finished' end
redis.call('HSET', KEYS[1], 'settings', ARGV[3], 'state', state, 'total', ARGV[4],
  'rejected', ARGV[5], 'created_ms', ARGV[6])
redis.call('HDEL', KEYS[1], 'owner')
redis.call('PERSIST', KEYS[1])
return {{'created'}}
"
    ))
});

/// Whether a campaign still belongs in `campaigns:active`: running or
/// paused, or ended with calls still live (their last one retires it).
/// KEYS: campaign, leases. Returns 1 or 0.
static LIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'running' or state == 'paused' then return 1 end
if state and redis.call('ZCARD', KEYS[2]) > 0 then return 1 end
return 0
",
    )
});

/// How long a claim whose campaign was never written stays (a retry with
/// the same key within it is told the key's campaign, or writes it).
const UNWRITTEN_CLAIM_TTL_MS: u64 = 24 * 3_600 * 1_000;

/// A claim's owner: unpredictable, so two requests never share one.
fn owner_token() -> String {
    format!(
        "{:016x}{:016x}",
        crate::random::random_u64(),
        crate::random::random_u64()
    )
}

impl RedisStore {
    /// Claims `campaign`'s id, then writes it if the claim is still ours
    /// (see [`CampaignStore::create_campaign`](crate::store::CampaignStore)).
    pub(super) async fn claim_and_write_campaign(
        &self,
        campaign: &NewCampaign,
    ) -> Result<CampaignWrite, StoreError> {
        let keys = &self.settings.keys;
        let id = campaign.id.as_str();
        let owner = owner_token();
        let mut claim = CLAIM.key(keys.campaign(id, None));
        claim
            .arg(campaign.fingerprint())
            .arg(CAMPAIGN_CLAIM_MS)
            .arg(UNWRITTEN_CLAIM_TTL_MS)
            .arg(&owner);
        let claimed: Vec<String> = self.invoke(&claim).await?;
        let claimed_ms = match (claimed.first().map(String::as_str), claimed.get(1)) {
            (Some("new"), Some(claimed_ms)) => claimed_ms,
            (Some("existing"), state) => return self.written_before(campaign, state).await,
            (Some("conflict"), _) => return Ok(CampaignWrite::Conflict),
            (Some("in_progress"), _) => return Ok(CampaignWrite::InProgress),
            _ => {
                return Err(StoreError::corrupt(
                    &keys.campaign(id, None),
                    format!("the claim answered {claimed:?}"),
                ));
            }
        };
        let entries_key = keys.campaign(id, Some("entries"));
        let mut write = WRITE.key(keys.campaign(id, None));
        write
            .key(&entries_key)
            .key(keys.campaign(id, Some("due")))
            .arg(&owner)
            .arg(claimed_ms)
            .arg(&campaign.settings)
            .arg(campaign.entries.len())
            .arg(campaign.rejected)
            .arg(campaign.created_ms);
        for entry in &campaign.entries {
            write.arg(encode(&entries_key, entry)?);
        }
        let written: Vec<String> = self.invoke(&write).await?;
        match written.first().map(String::as_str) {
            Some("created") => {}
            Some("existing") => return self.written_before(campaign, written.get(1)).await,
            Some("taken") => {
                // This request stalled past the claim's age and a retry
                // took the claim over: the retry writes it, and this
                // request's client is told to ask again, as for a claim
                // still being written.
                tracing::warn!(
                    campaign_id = id,
                    "the campaign's claim was taken over before it was written; not written twice"
                );
                return Ok(CampaignWrite::InProgress);
            }
            other => {
                return Err(StoreError::corrupt(
                    &keys.campaign(id, None),
                    format!("the write answered {other:?}"),
                ));
            }
        }
        // `campaigns:active` is in another slot: listed once written.
        if !campaign.entries.is_empty() {
            self.list_campaign(campaign).await?;
        }
        Ok(CampaignWrite::Created)
    }

    /// A campaign another request wrote, in `state`: listed again if it
    /// still runs (that request's listing may have failed).
    async fn written_before(
        &self,
        campaign: &NewCampaign,
        state: Option<&String>,
    ) -> Result<CampaignWrite, StoreError> {
        let state = state.and_then(|name| CampaignState::parse(name));
        if matches!(state, Some(CampaignState::Running | CampaignState::Paused)) {
            self.list_campaign(campaign).await?;
        }
        Ok(CampaignWrite::Existing)
    }

    /// Lists a written campaign for the runners (`campaigns:active`, where
    /// a listing already there keeps its place). The listing is in another
    /// slot than the campaign, so it cannot be conditional in one step:
    /// the campaign is listed, then unlisted if it has ended by then. A
    /// campaign that ends sets its state before it is unlisted, so either
    /// this check sees it ended or its own unlisting comes after ours.
    async fn list_campaign(&self, campaign: &NewCampaign) -> Result<(), StoreError> {
        let keys = &self.settings.keys;
        self.query::<i64>(
            redis::cmd("ZADD")
                .arg(keys.active_campaigns())
                .arg("NX")
                .arg(campaign.created_ms)
                .arg(&campaign.id),
        )
        .await?;
        self.unlist_if_ended(&campaign.id).await
    }

    /// Takes a campaign out of `campaigns:active` unless it still belongs
    /// there (see [`LIVE`]): ended, and without live calls. Nothing can
    /// make such a campaign live again, so the check and the removal need
    /// not be one step.
    pub(super) async fn unlist_if_ended(&self, campaign_id: &str) -> Result<(), StoreError> {
        let keys = &self.settings.keys;
        let mut live = LIVE.key(keys.campaign(campaign_id, None));
        live.key(keys.campaign(campaign_id, Some("leases")));
        if self.invoke::<i64>(&live).await? == 0 {
            self.query::<i64>(
                redis::cmd("ZREM")
                    .arg(keys.active_campaigns())
                    .arg(campaign_id),
            )
            .await?;
        }
        Ok(())
    }
}
