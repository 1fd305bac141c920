//! The Lua scripts that make the store's conditional writes atomic.
//!
//! `redis::Script` sends `EVALSHA` and falls back to `EVAL` when the server
//! does not know the script (after a restart), so they survive failovers.

use std::sync::LazyLock;

use redis::Script;

/// Appends a turn only at its index.
/// KEYS: transcript. ARGV: index, item, ttl ms.
/// Returns `-(length + 1)` when a turn is already stored there (nothing
/// written), else the length before the append (equal to the index unless
/// turns are missing).
pub(super) static APPEND_TURN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local stored = redis.call('LLEN', KEYS[1])
if stored > tonumber(ARGV[1]) then return -stored - 1 end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return stored
",
    )
});

/// Compare-and-set of a string, with a TTL.
/// KEYS: key. ARGV: expected value, new value, ttl ms. Returns 1 if set.
pub(super) static COMPARE_AND_SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
",
    )
});

/// The start of the tactics scripts: `identity` (as
/// `crate::store::tactic_identity`), `stored` (the list's tactics by
/// identity), and the `done` and `added` the merge fills.
const TACTICS_PRELUDE: &str = r"
local function identity(s)
  local words = {}
  for word in string.gmatch(s, '%S+') do words[#words + 1] = word end
  return string.lower(table.concat(words, ' '))
end
local stored = {}
for _, tactic in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  stored[identity(tactic)] = tactic
end
local done = {}
local added = 0
";

/// Appends the tactics a list does not hold yet and moves to the end the
/// ones it holds (LREM + RPUSH, the stored text kept), so a tactic that
/// keeps winning stays among the newest; then keeps the newest ARGV[1]
/// (LTRIM). Identity as `crate::store::tactic_identity`: words joined by
/// one space, ASCII lower case. KEYS: list. ARGV: how many to keep, then
/// the tactics. Returns how many were added (moves not counted).
pub(super) static ADD_TACTICS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TACTICS_PRELUDE}{}",
        r"
for i = 2, #ARGV do
  local id = identity(ARGV[i])
  if id ~= '' and not done[id] then
    done[id] = true
    local old = stored[id]
    if old then
      redis.call('LREM', KEYS[1], 0, old)
      redis.call('RPUSH', KEYS[1], old)
    else
      redis.call('RPUSH', KEYS[1], ARGV[i])
      added = added + 1
    end
  end
end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
return added
",
    ))
});

/// [`ADD_TACTICS`], and notes the call among the distinct calls that named
/// each tactic: KEYS[2] is a hash (same slot) from a tactic's identity to
/// a JSON array of call ids, at most ARGV[3] of them; the fields of
/// tactics trimmed off the list go once the hash holds more than the list
/// keeps. KEYS: list, calls. ARGV: how many to keep, call id, calls noted
/// per tactic, then the tactics. Returns how many were added.
pub(super) static ADD_CALL_TACTICS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TACTICS_PRELUDE}{}",
        r"
for i = 4, #ARGV do
  local id = identity(ARGV[i])
  if id ~= '' and not done[id] then
    done[id] = true
    local old = stored[id]
    if old then
      redis.call('LREM', KEYS[1], 0, old)
      redis.call('RPUSH', KEYS[1], old)
    else
      redis.call('RPUSH', KEYS[1], ARGV[i])
      added = added + 1
    end
    local noted = {}
    local raw = redis.call('HGET', KEYS[2], id)
    if raw then
      local ok, calls = pcall(cjson.decode, raw)
      if ok and type(calls) == 'table' then noted = calls end
    end
    local seen = false
    for _, call in ipairs(noted) do
      if call == ARGV[2] then seen = true end
    end
    if not seen and #noted < tonumber(ARGV[3]) then
      noted[#noted + 1] = ARGV[2]
      redis.call('HSET', KEYS[2], id, cjson.encode(noted))
    end
  end
end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
if redis.call('HLEN', KEYS[2]) > tonumber(ARGV[1]) then
  local kept = {}
  for _, tactic in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
    kept[identity(tactic)] = true
  end
  for _, field in ipairs(redis.call('HKEYS', KEYS[2])) do
    if not kept[field] then redis.call('HDEL', KEYS[2], field) end
  end
end
return added
",
    ))
});

/// Takes a tactic out of a list by identity (as [`ADD_TACTICS`]), and its
/// noted calls. KEYS: list, calls. ARGV: the tactic. Returns how many
/// entries went.
pub(super) static REMOVE_TACTIC: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local function identity(s)
  local words = {}
  for word in string.gmatch(s, '%S+') do words[#words + 1] = word end
  return string.lower(table.concat(words, ' '))
end
local id = identity(ARGV[1])
local removed = 0
for _, tactic in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if identity(tactic) == id then
    removed = removed + redis.call('LREM', KEYS[1], 0, tactic)
  end
end
redis.call('HDEL', KEYS[2], id)
return removed
",
    )
});

/// Resets a pending job's idle time if its consumer still holds it
/// (`XCLAIM … JUSTID`: no delivery counted). KEYS: stream. ARGV: group,
/// consumer, id. Returns 1 if kept, 0 if acknowledged or held by another.
pub(super) static KEEP_JOB: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
",
    )
});

/// Adds a webhook delivery unless its id exists.
/// KEYS: event key, outbox. ARGV: payload, ttl ms, due ms, id. Returns 1 if
/// added, 0 if pending, 2 if delivered (its key emptied).
pub(super) static ENQUEUE_DELIVERY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('GET', KEYS[1]) == '' then return 2 end
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
",
    )
});

/// Puts a dead letter back in the outbox: only if this call took it out
/// of the dead letters, and its event is neither queued nor delivered (a
/// delivered event keeps its key, emptied), so two redrives at once, or a
/// letter buried twice, deliver it once. KEYS: dead letters, event key,
/// outbox. ARGV: the buried letter, payload, ttl ms, due ms, id. Returns 1
/// if queued.
pub(super) static REDRIVE_DELIVERY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
return 1
",
    )
});

/// Leases the members of a sorted set due now (the outbox's deliveries,
/// the lost-session checks), oldest first. KEYS: the set. ARGV: now ms,
/// lease end ms, max. Returns the leased members.
pub(super) static CLAIM_DELIVERIES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
",
    )
});

/// `calls:lost_sessions`: claims up to ARGV[3] members due at ARGV[1],
/// moving each to ARGV[2] (its lease's end), as [`CLAIM_DELIVERIES`] does,
/// and returns them with the scores they had (a session lease's due time,
/// which the call is ended by).
pub(super) static CLAIM_LOST_SESSIONS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[3])
for i = 1, #due, 2 do redis.call('ZADD', KEYS[1], ARGV[2], due[i]) end
return due
",
    )
});

/// The lease check's due time after its holds changed: the latest hold's
/// (as its text, so that no number goes through Lua's floats and back).
const LATEST_HOLD: &str = r"
local function latest_hold(key)
  local due, latest = nil, -1
  for _, hold in ipairs(redis.call('HVALS', key)) do
    local at = string.match(hold, ':(%d+)$')
    if at and tonumber(at) > latest then due, latest = at, tonumber(at) end
  end
  return due
end
";

/// A session lease's hold renewed. KEYS: `calls:lost_sessions`, the
/// call's holds. ARGV: the lease's member, the holder, its hold
/// (`{renewed ms}:{due ms}`), `1` to renew only a hold still noted, when
/// the holds expire (ms). The lease is due with its latest hold. Returns
/// 1 when the hold is noted after it.
pub(super) static RENEW_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{LATEST_HOLD}
if ARGV[4] == '1' and redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIREAT', KEYS[2], ARGV[5])
redis.call('ZADD', KEYS[1], latest_hold(KEYS[2]), ARGV[1])
return 1
"
    ))
});

/// A session lease's hold forgotten. KEYS: `calls:lost_sessions`, the
/// call's holds. ARGV: the lease's member, the holder (empty: a writer of
/// an older build, which kept none). The lease goes with its last hold;
/// with holds left it is due with the latest (if it is still noted), and
/// a holder-less forget leaves it to them.
pub(super) static FORGET_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{LATEST_HOLD}
if ARGV[2] ~= '' then redis.call('HDEL', KEYS[2], ARGV[2]) end
local due = latest_hold(KEYS[2])
if not due then
  redis.call('ZREM', KEYS[1], ARGV[1])
elseif ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[1], 'XX', due, ARGV[1])
end
return 1
"
    ))
});

/// `test_cases:list`: ARGV[1] is how many to keep (the newest), then
/// (identity, JSON) pairs; a pair whose identity a listed case (or an
/// earlier pair) has is skipped. Returns how many were added.
pub(super) static ADD_TEST_CASES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local function identity(s)
  local words = {}
  for word in string.gmatch(s, '%S+') do words[#words + 1] = word end
  return string.lower(table.concat(words, ' '))
end
local seen = {}
for _, item in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local ok, case = pcall(cjson.decode, item)
  if ok and type(case) == 'table' and type(case.input) == 'string' then
    seen[identity(case.input)] = true
  end
end
local added = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if id ~= '' and not seen[id] then
    seen[id] = true
    redis.call('RPUSH', KEYS[1], ARGV[i + 1])
    added = added + 1
  end
end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
return added
",
    )
});

/// Deploys a prompt version by compare-and-set on its version counter.
/// KEYS: live key, version counter, history (one slot). ARGV: expected
/// version, history entry JSON, prompt, now RFC 3339, now ms, the
/// optimisation's id ('' for none), how many versions the history keeps
/// (the newest). Returns the new version, or
/// `-(current + 1)` when the counter is not at the expected version, or
/// when the history already holds a version deployed by this optimisation
/// (a duplicate run of it: deploying again would put two versions down
/// to one failed call); nothing is written then. The first deployment
/// records what the live key held as version 0.
pub(super) static DEPLOY_PROMPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if current ~= tonumber(ARGV[1]) then return -current - 1 end
if ARGV[6] ~= '' then
  for _, item in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
    local ok, entry = pcall(cjson.decode, item)
    if ok and type(entry) == 'table' and entry.optimisation == ARGV[6] then
      return -current - 1
    end
  end
end
if current == 0 and redis.call('LLEN', KEYS[3]) == 0 then
  local before = redis.call('GET', KEYS[1]) or ''
  redis.call('RPUSH', KEYS[3], cjson.encode({version = 0, prompt = before,
    deployed_at = ARGV[4], deployed_at_ms = tonumber(ARGV[5]),
    reason = 'the text before the first versioned deployment'}))
end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], current + 1)
redis.call('RPUSH', KEYS[3], ARGV[2])
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[7]), -1)
return current + 1
",
    )
});

/// Holds a number's limit for a call unless another call holds it.
/// KEYS: `rate_limit:{phone_hash}`. ARGV: call id, ttl ms. Returns 1 when
/// the call holds it.
pub(super) static CLAIM_NUMBER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then return 1 end
return 0
",
    )
});

/// Stores an optimisation's trace unless the one stored says it was
/// deployed: a deployment stands, and a duplicate run of the same
/// optimisation (rejected, rate limited, or superseded by that very
/// deployment) must not explain it away. KEYS: the trace. ARGV: JSON, TTL
/// ms.
/// Returns 1 if written, 0 if a deployed trace was kept.
pub(super) static PUT_TRACE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local old = redis.call('GET', KEYS[1])
if old then
  local ok, trace = pcall(cjson.decode, old)
  if ok and type(trace) == 'table' and trace.decision == 'deployed' then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
",
    )
});

/// Counts an optimisation against a segment's rate limit.
/// KEYS: the segment's optimisations. ARGV: id, now ms, window ms, max.
/// Returns 1 if counted (now or before), 0 if the limit is reached.
pub(super) static TAKE_SLOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(ARGV[2]) - tonumber(ARGV[3])))
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
",
    )
});

/// Deletes a number's limit if the call holds it.
/// KEYS: `rate_limit:{phone_hash}`. ARGV: call id. Returns 1 if deleted.
pub(super) static RELEASE_NUMBER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
",
    )
});

/// The text conversation open for a key, opening `candidate` when none is;
/// its last message is now. One open for the legacy (unsalted) key, when
/// given and none is open for the key, is moved to the key.
/// KEYS: `{text:active}:conversation:{key}`, `text:active`, and
/// `{text:active}:conversation:{legacy}` if there is a legacy key. ARGV:
/// key, candidate id, now ms, legacy key (if any). Returns the open
/// conversation's id.
pub(super) static OPEN_TEXT_CONVERSATION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local id = redis.call('GET', KEYS[1])
if id == false and KEYS[3] then
  id = redis.call('GET', KEYS[3])
  if id ~= false then
    redis.call('SET', KEYS[1], id)
    redis.call('DEL', KEYS[3])
    redis.call('ZREM', KEYS[2], ARGV[4])
  end
end
if id == false then
  id = ARGV[2]
  redis.call('SET', KEYS[1], id)
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return id
",
    )
});

/// Lua: `now_ms()`, Redis's clock in Unix ms (one clock for every
/// server's claims), `holder(claims, member, now)`, the owner of a claim
/// on a text end that still holds (`{until ms} {owner}`), or nil,
/// `owner_of(claims, member)`, the owner it names, held or lapsed, and
/// `claim(claims, member, owner, ttl_ms, now)`, which gives it to `owner`.
const TEXT_END_CLAIMS: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function holder(claims, member, now)
  local entry = redis.call('HGET', claims, member)
  if not entry then return nil end
  local space = string.find(entry, ' ', 1, true)
  if not space then return nil end
  local until_ms = tonumber(string.sub(entry, 1, space - 1))
  if until_ms == nil or until_ms <= now then return nil end
  return string.sub(entry, space + 1)
end
local function owner_of(claims, member)
  local entry = redis.call('HGET', claims, member)
  if not entry then return nil end
  local space = string.find(entry, ' ', 1, true)
  if not space then return nil end
  return string.sub(entry, space + 1)
end
local function claim(claims, member, owner, ttl_ms, now)
  redis.call('HSET', claims, member, string.format('%.0f', now + tonumber(ttl_ms)) .. ' ' .. owner)
end
";

/// Closes a text conversation whose last message is at or before a time,
/// noting its end as pending and claimed by the closer.
/// KEYS: `{text:active}:conversation:{key}`, `text:active`,
/// `{text:active}:ending`, `{text:active}:ending:claims`. ARGV: key, before
/// ms, reason, end ms, claim owner, claim ttl ms.
/// Returns the closed conversation's id, or nil when not closed here.
pub(super) static CLOSE_TEXT_CONVERSATION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{TEXT_END_CLAIMS}
local last = redis.call('ZSCORE', KEYS[2], ARGV[1])
if last == false or tonumber(last) > tonumber(ARGV[2]) then return false end
local id = redis.call('GET', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
if id then
  local member = id .. '\n' .. ARGV[3]
  redis.call('ZADD', KEYS[3], ARGV[4], member)
  claim(KEYS[4], member, ARGV[5], ARGV[6], now_ms())
end
return id
"
    ))
});

/// The pending text ends due at a time, soonest first, with their tries.
/// KEYS: `{text:active}:ending`, `{text:active}:ending:tries`. ARGV: now
/// ms, max. Returns member, due ms, tries (empty when none), flat.
pub(super) static PENDING_TEXT_ENDS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])
local out = {}
for i = 1, #due, 2 do
  out[#out + 1] = due[i]
  out[#out + 1] = due[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], due[i]) or ''
end
return out
",
    )
});

/// Claims a pending text end due at a time, unless another claim holds.
/// KEYS: `{text:active}:ending`, `{text:active}:ending:claims`. ARGV:
/// member, owner, ttl ms, now ms (for due). Returns 1 when claimed.
pub(super) static CLAIM_TEXT_END: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{TEXT_END_CLAIMS}
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if due == false or tonumber(due) > tonumber(ARGV[4]) then return 0 end
local now = now_ms()
if holder(KEYS[2], ARGV[1], now) then return 0 end
claim(KEYS[2], ARGV[1], ARGV[2], ARGV[3], now)
return 1
"
    ))
});

/// A text end is recorded: no longer pending, its tries forgotten, its
/// claim let go whoever holds it (an attempt that outlived its claim may
/// record the end under another's: that other's claim, on an end no longer
/// pending, would be left for good, as no script takes a claim off an end
/// that is not pending).
/// KEYS: `{text:active}:ending`, `{text:active}:ending:tries`,
/// `{text:active}:ending:claims`. ARGV: member.
pub(super) static TEXT_END_RECORDED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
",
    )
});

/// An attempt at a text end failed: due again later, or set aside; only
/// while the end's claim still names the attempt, lapsed or not. Once
/// another attempt claimed it since, the tries this one read may be stale:
/// written back, they would undo that attempt's count, so that attempt
/// decides. The claim is let go.
/// KEYS: `{text:active}:ending`, `{text:active}:ending:tries`,
/// `{text:active}:ending:claims`, `{text:active}:ending:set_aside`. ARGV:
/// member, owner, tries (`{attempts} {end ms}`), end ms, retry at ms (empty:
/// set aside). Returns 1 when done.
pub(super) static TEXT_END_FAILED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{TEXT_END_CLAIMS}
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then return 0 end
if owner_of(KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if ARGV[5] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[5], ARGV[1])
end
return 1
"
    ))
});
