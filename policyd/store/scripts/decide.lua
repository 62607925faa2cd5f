-- decide.lua: one Postfix policy decision (rate limits, then greylisting) as one atomic script,
-- so a decision costs one round trip and two policy processes can never both spend the last unit.
-- Loaded and called by ../redis-store.ts, which builds KEYS and ARGV and decodes the reply.
--
-- KEYS (every key the script touches is declared, as Redis Cluster requires):
--   1..n        one bucket per limit                       (rl:<limit>:<bucket>)
--   n+1         the message instance, when ARGV[3] > 0      (inst:<instance>)
--   next two    triplet, client network, when ARGV[4] = 1   (gl:t:<triplet>, gl:c:<client>)
-- ARGV:
--   1  now in ms, or '' to use the Redis server's clock (tests inject time)
--   2  n, the number of limits
--   3  instance TTL in ms; 0 = no instance key
--   4  1 = check the greylist
--   5  greylist delay ms   6 retry window ms   7 retention ms   8 auto-allow after N passes (0 off)
--   9… four per limit: count, period ms, cost, 1 = consume / 0 = peek
-- Reply: { allowed, duplicate, greylist code, greylist retry s, then per limit: allowed,
--          remaining (-1 = unlimited), retry after s }
-- Greylist codes: 0 not checked, 1 new, 2 early, 3 passed, 4 known, 5 auto-allowed.

local now = tonumber(ARGV[1])
if not now then
  -- Allowed before writes: Redis 7 replicates a script's effects, not the script.
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local n = tonumber(ARGV[2])
local instanceTtl = tonumber(ARGV[3])
local greylist = ARGV[4] == '1'

-- ---- rate limits: GCRA ---------------------------------------------------------------------------
-- Each bucket stores its theoretical arrival time (TAT, ms). With emission interval
-- T = period / count and burst = count, a request of cost c moves the TAT to max(TAT, now) + c*T
-- and is allowed when that lies at most one period ahead of now. One number per bucket, no
-- window edges, and the key can expire at the TAT because an expired bucket is a full bucket.

-- Float noise: a TAT near 1.7e12 ms carries about 1e-4 ms of rounding per update, and T need
-- not be whole (bytes per hour). Each comparison is allowed `eps` of slack: at most 1 ms, and less
-- than half a unit, so the slack can never let a whole extra unit through.
local function slack(T)
  return math.min(1, T / 2)
end

-- Whole units that still fit when the bucket's TAT is `tat`.
local function unitsLeft(l, tat)
  local left = math.floor((l.period - math.max(tat - now, 0) + l.eps) / l.T)
  if left < 0 then return 0 end
  return left
end

local limits = {}
local allowed = true
local duplicate = false
local spendKeys = 0
for i = 1, n do
  local a = 9 + (i - 1) * 4
  local l = {
    key = KEYS[i],
    count = tonumber(ARGV[a]),
    period = tonumber(ARGV[a + 1]),
    cost = tonumber(ARGV[a + 2]),
    consume = ARGV[a + 3] == '1',
  }
  if l.count > 0 then
    l.T = l.period / l.count
    l.eps = slack(l.T)
    l.tat = tonumber(redis.call('GET', l.key)) or now
    l.newTat = math.max(l.tat, now) + l.cost * l.T
    l.ok = l.newTat - now <= l.period + l.eps
    if not l.ok then allowed = false end
    if l.consume then spendKeys = spendKeys + 1 end
  end
  limits[i] = l
end

-- One message, counted once: Postfix sends the same `instance` with every request of a message.
-- A repeat spends nothing and is allowed, because the first one was (the key is only written
-- after an allowed request spent something).
local instanceKey
if instanceTtl > 0 then
  instanceKey = KEYS[n + 1]
  if redis.call('EXISTS', instanceKey) == 1 then
    duplicate = true
    allowed = true
  end
end

local spend = allowed and not duplicate
local reply = { 0, 0, 0, 0 }
for i = 1, n do
  local l = limits[i]
  if l.count <= 0 then
    -- count 0 = unlimited: never looked at, never stored.
    table.insert(reply, 1); table.insert(reply, -1); table.insert(reply, 0)
  elseif duplicate then
    table.insert(reply, 1); table.insert(reply, unitsLeft(l, l.tat)); table.insert(reply, 0)
  elseif not l.ok then
    -- When the same request would fit: once the TAT has drained back to one period ahead.
    local wait = math.ceil((l.newTat - now - l.period - l.eps) / 1000)
    table.insert(reply, 0); table.insert(reply, 0); table.insert(reply, math.max(wait, 1))
  elseif spend and l.consume then
    local ttl = math.ceil(l.newTat - now)
    if ttl > 0 then
      -- %.17g keeps every bit of the float TAT (fractional T for byte limits).
      redis.call('SET', l.key, string.format('%.17g', l.newTat), 'PX', ttl)
    end
    table.insert(reply, 1); table.insert(reply, unitsLeft(l, l.newTat)); table.insert(reply, 0)
  else
    -- A peek, or a consume limit left unspent because another limit refused: what is left now.
    table.insert(reply, 1); table.insert(reply, unitsLeft(l, l.tat)); table.insert(reply, 0)
  end
end

if instanceKey and spend and spendKeys > 0 then
  redis.call('SET', instanceKey, '1', 'PX', instanceTtl, 'NX')
end
reply[1] = allowed and 1 or 0
reply[2] = duplicate and 1 or 0

-- ---- greylisting (postgrey's rules) --------------------------------------------------------------
-- A triplet is a hash: `first` (ms first seen) and, once it got through, `pass` (ms of that).
-- Its TTL is the retry window until it passes, then the retention, renewed on every use, so an
-- abandoned triplet disappears on its own. The client key counts triplets that passed; enough of
-- them and the whole client network skips greylisting (postgrey's --auto-whitelist-clients).
if greylist and allowed then
  local base = instanceKey and n + 1 or n
  local tripletKey, clientKey = KEYS[base + 1], KEYS[base + 2]
  local delay, window, retention = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  local autoAllow = tonumber(ARGV[8])

  local passes = tonumber(redis.call('GET', clientKey)) or 0
  if autoAllow > 0 and passes >= autoAllow then
    redis.call('PEXPIRE', clientKey, retention)
    reply[3] = 5
    return reply
  end

  local state = redis.call('HMGET', tripletKey, 'first', 'pass')
  local first, passed = tonumber(state[1]), tonumber(state[2])
  if passed then
    redis.call('PEXPIRE', tripletKey, retention)
    reply[3] = 4
    return reply
  end

  -- A retry after the window counts as a first attempt again (postgrey discards first-seen);
  -- checked here as well as by the TTL, because the clock may be injected.
  local fresh = not first or now - first > window
  if fresh then first = now end
  local age = now - first
  if age < delay then
    if fresh then
      redis.call('DEL', tripletKey)
      redis.call('HSET', tripletKey, 'first', string.format('%d', first))
      redis.call('PEXPIRE', tripletKey, window)
    end
    reply[3] = fresh and 1 or 2
    reply[4] = math.ceil((delay - age) / 1000)
    return reply
  end

  -- First time through: remember it for the retention period and count it for the client.
  redis.call('HSET', tripletKey, 'first', string.format('%d', first), 'pass', string.format('%d', now))
  redis.call('PEXPIRE', tripletKey, retention)
  redis.call('INCR', clientKey)
  redis.call('PEXPIRE', clientKey, retention)
  reply[3] = 3
end
return reply
