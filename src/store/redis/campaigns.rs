//! Campaigns in Redis: each change one Lua script, so servers sharing a
//! campaign never lease one entry twice.

use std::sync::LazyLock;

use async_trait::async_trait;
use redis::Script;

use super::store::RedisStore;
use crate::store::{
    CampaignCommand, CampaignProgress, CampaignState, CampaignStore, CampaignWrite, EntryOutcome,
    LeaseRequest, LeasedEntry, NewCampaign, StoreError,
};

/// Leases due entries. KEYS: campaign, due, leases, entries, attempts.
/// ARGV: now ms, max, lease ms, max concurrent, slot interval µs, horizon
/// ms. The rate is a shared "next slot" (`tat_us`, in µs): each entry
/// leased takes the next slot, none beyond the horizon. Returns flat
/// (entry, attempt, slot ms, entry JSON) quadruples.
static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return {} end
local now = tonumber(ARGV[1])
local want = math.min(tonumber(ARGV[4]) - redis.call('ZCARD', KEYS[3]), tonumber(ARGV[2]))
if want <= 0 then return {} end
local interval = tonumber(ARGV[5])
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat_us') or '0')
if tat < now * 1000 then tat = now * 1000 end
local horizon = (now + tonumber(ARGV[6])) * 1000
if tat > horizon then return {} end
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, want)
local out = {}
for _, id in ipairs(ids) do
  if tat > horizon then break end
  local slot = math.floor(tat / 1000)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[3], slot + tonumber(ARGV[3]), id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[5], id) or '1'
  out[#out + 1] = string.format('%d', slot)
  out[#out + 1] = redis.call('HGET', KEYS[4], id) or ''
  tat = tat + interval
end
redis.call('HSET', KEYS[1], 'tat_us', string.format('%d', tat))
return out
",
    )
});

/// Leases again the entries whose lease ended. KEYS: leases, entries,
/// attempts. ARGV: now ms, new lease end ms, max. Returns quadruples as
/// [`LEASE`] does (slot: now).
static RECLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[3])
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[3], id) or '1'
  out[#out + 1] = ARGV[1]
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
end
return out
",
    )
});

/// Ends a leased entry's try. KEYS: campaign, leases, attempts, done, due
/// (one slot). ARGV: entry, attempt, mode (`done`, `retry`, `release`),
/// final status or due ms. Returns 0 if not applied, 1 if applied, 2 if
/// applied and the campaign has nothing left to dial (then the caller
/// takes it out of `campaigns:active`, in another slot). A campaign whose
/// last entry is done becomes `finished`.
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
if (redis.call('HGET', KEYS[3], ARGV[1]) or '1') ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
local state = redis.call('HGET', KEYS[1], 'state')
local mode = ARGV[3]
if state == 'canceled' and mode ~= 'done' then
  redis.call('HSET', KEYS[4], ARGV[1], 'canceled')
  redis.call('HINCRBY', KEYS[1], 'done:canceled', 1)
elseif mode == 'done' then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
  redis.call('HINCRBY', KEYS[1], 'done:' .. ARGV[4], 1)
else
  if mode == 'retry' then
    redis.call('HSET', KEYS[3], ARGV[1], tonumber(ARGV[2]) + 1)
  end
  redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
end
if redis.call('ZCARD', KEYS[5]) == 0 and redis.call('ZCARD', KEYS[2]) == 0 then
  if state ~= 'canceled' then redis.call('HSET', KEYS[1], 'state', 'finished') end
  return 2
end
return 1
",
    )
});

/// Pauses, resumes or cancels. KEYS: campaign, due, done, leases (one
/// slot). ARGV: command (`pause`, `resume`, `cancel`). Returns the state
/// after and 1 when a cancel left nothing leased (the caller then takes
/// the campaign out of `campaigns:active`), or false when there is no
/// campaign.
static COMMAND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
if state == 'canceled' or state == 'finished' then return {state, 0} end
local over = 0
if ARGV[1] == 'pause' then state = 'paused'
elseif ARGV[1] == 'resume' then state = 'running'
else
  state = 'canceled'
  local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
  for _, id in ipairs(ids) do redis.call('HSET', KEYS[3], id, 'canceled') end
  redis.call('HINCRBY', KEYS[1], 'done:canceled', #ids)
  redis.call('DEL', KEYS[2])
  if redis.call('ZCARD', KEYS[4]) == 0 then over = 1 end
end
redis.call('HSET', KEYS[1], 'state', state)
return {state, over}
",
    )
});

/// Moves the rate's next slot to at least ARGV[1] µs. KEYS: campaign.
static BACK_OFF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if not redis.call('EXISTS', KEYS[1]) then return 0 end
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat_us') or '0')
if tat < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'tat_us', ARGV[1]) end
return 1
",
    )
});

#[async_trait]
impl CampaignStore for RedisStore {
    /// Claimed, then written by the claim's owner only: see
    /// `campaign_writes`.
    async fn create_campaign(&self, campaign: &NewCampaign) -> Result<CampaignWrite, StoreError> {
        self.claim_and_write_campaign(campaign).await
    }

    async fn campaign(&self, campaign_id: &str) -> Result<Option<CampaignProgress>, StoreError> {
        let keys = &self.settings.keys;
        let key = keys.campaign(campaign_id, None);
        let due = keys.campaign(campaign_id, Some("due"));
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL")
            .arg(&key)
            .cmd("ZCARD")
            .arg(&due)
            .cmd("ZCOUNT")
            .arg(&due)
            .arg(format!("({}", crate::store::time::unix_ms()))
            .arg("+inf")
            .cmd("ZCARD")
            .arg(keys.campaign(campaign_id, Some("leases")));
        let (fields, pending, scheduled, active): (
            std::collections::HashMap<String, String>,
            u64,
            u64,
            u64,
        ) = self.query_pipe(&pipe).await?;
        super::super::campaign_codec::progress(&key, fields, pending, scheduled, active)
    }

    async fn campaign_state(&self, campaign_id: &str) -> Result<Option<CampaignState>, StoreError> {
        let key = self.settings.keys.campaign(campaign_id, None);
        let state: Option<String> = self
            .query(redis::cmd("HGET").arg(&key).arg("state"))
            .await?;
        state
            .map(|name| {
                CampaignState::parse(&name)
                    .ok_or_else(|| StoreError::corrupt(&key, format!("unknown state {name:?}")))
            })
            .transpose()
    }

    async fn active_campaigns(&self) -> Result<Vec<String>, StoreError> {
        self.query(
            redis::cmd("ZRANGE")
                .arg(self.settings.keys.active_campaigns())
                .arg(0)
                .arg(-1),
        )
        .await
    }

    async fn unlist_ended_campaign(&self, campaign_id: &str) -> Result<(), StoreError> {
        self.unlist_if_ended(campaign_id).await
    }

    async fn command_campaign(
        &self,
        campaign_id: &str,
        command: CampaignCommand,
    ) -> Result<Option<CampaignState>, StoreError> {
        let keys = &self.settings.keys;
        let key = keys.campaign(campaign_id, None);
        let mut invocation = COMMAND.key(&key);
        invocation
            .key(keys.campaign(campaign_id, Some("due")))
            .key(keys.campaign(campaign_id, Some("done")))
            .key(keys.campaign(campaign_id, Some("leases")))
            .arg(match command {
                CampaignCommand::Pause => "pause",
                CampaignCommand::Resume => "resume",
                CampaignCommand::Cancel => "cancel",
            });
        let answer: Option<(String, i64)> = self.invoke(&invocation).await?;
        if let Some((_, 1)) = answer {
            self.retire_campaign(campaign_id).await?;
        }
        answer
            .map(|(name, _)| {
                CampaignState::parse(&name)
                    .ok_or_else(|| StoreError::corrupt(&key, format!("unknown state {name:?}")))
            })
            .transpose()
    }

    async fn lease_entries(
        &self,
        campaign_id: &str,
        request: &LeaseRequest,
    ) -> Result<Vec<LeasedEntry>, StoreError> {
        let keys = &self.settings.keys;
        let entries_key = keys.campaign(campaign_id, Some("entries"));
        let mut invocation = LEASE.key(keys.campaign(campaign_id, None));
        invocation
            .key(keys.campaign(campaign_id, Some("due")))
            .key(keys.campaign(campaign_id, Some("leases")))
            .key(&entries_key)
            .key(keys.campaign(campaign_id, Some("attempts")))
            .arg(request.now_ms)
            .arg(request.max)
            .arg(request.lease_ms)
            .arg(request.max_concurrent)
            .arg(
                request
                    .interval_us
                    .clamp(1, crate::store::MAX_SLOT_INTERVAL_US),
            )
            .arg(request.horizon_ms);
        let flat: Vec<String> = self.invoke(&invocation).await?;
        super::super::campaign_codec::leased(&entries_key, &flat)
    }

    async fn reclaim_entries(
        &self,
        campaign_id: &str,
        now_ms: u64,
        lease_until_ms: u64,
        max: usize,
    ) -> Result<Vec<LeasedEntry>, StoreError> {
        let keys = &self.settings.keys;
        let entries_key = keys.campaign(campaign_id, Some("entries"));
        let mut invocation = RECLAIM.key(keys.campaign(campaign_id, Some("leases")));
        invocation
            .key(&entries_key)
            .key(keys.campaign(campaign_id, Some("attempts")))
            .arg(now_ms)
            .arg(lease_until_ms)
            .arg(max);
        let flat: Vec<String> = self.invoke(&invocation).await?;
        super::super::campaign_codec::leased(&entries_key, &flat)
    }

    async fn extend_lease(
        &self,
        campaign_id: &str,
        entry: u64,
        until_ms: u64,
    ) -> Result<(), StoreError> {
        let key = self.settings.keys.campaign(campaign_id, Some("leases"));
        self.query::<i64>(
            redis::cmd("ZADD")
                .arg(key)
                .arg("XX")
                .arg(until_ms)
                .arg(entry),
        )
        .await
        .map(drop)
    }

    async fn finish_entry(
        &self,
        campaign_id: &str,
        entry: u64,
        attempt: u32,
        outcome: EntryOutcome,
    ) -> Result<bool, StoreError> {
        let keys = &self.settings.keys;
        let (mode, value) = match outcome {
            EntryOutcome::Done(status) => ("done", status.as_str().to_owned()),
            EntryOutcome::Retry { due_ms } => ("retry", due_ms.to_string()),
            EntryOutcome::Release { due_ms } => ("release", due_ms.to_string()),
        };
        let mut invocation = FINISH.key(keys.campaign(campaign_id, None));
        invocation
            .key(keys.campaign(campaign_id, Some("leases")))
            .key(keys.campaign(campaign_id, Some("attempts")))
            .key(keys.campaign(campaign_id, Some("done")))
            .key(keys.campaign(campaign_id, Some("due")))
            .arg(entry)
            .arg(attempt)
            .arg(mode)
            .arg(value);
        let applied: i64 = self.invoke(&invocation).await?;
        if applied == 2 {
            self.retire_campaign(campaign_id).await?;
        }
        Ok(applied > 0)
    }

    async fn back_off_campaign(&self, campaign_id: &str, until_ms: u64) -> Result<(), StoreError> {
        let mut invocation = BACK_OFF.key(self.settings.keys.campaign(campaign_id, None));
        invocation.arg(until_ms.saturating_mul(1000));
        self.invoke::<i64>(&invocation).await.map(drop)
    }
}

impl RedisStore {
    /// Takes a campaign with nothing left to dial out of
    /// `campaigns:active`.
    async fn retire_campaign(&self, campaign_id: &str) -> Result<(), StoreError> {
        self.query::<i64>(
            redis::cmd("ZREM")
                .arg(self.settings.keys.active_campaigns())
                .arg(campaign_id),
        )
        .await
        .map(drop)
    }
}
