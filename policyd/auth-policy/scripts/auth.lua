-- Brute-force state for Dovecot's auth policy: one atomic call per policy request.
--
-- Failures live in sorted sets scored by the caller's clock (milliseconds, passed in so tests can
-- move time): a sliding window without a timer. Each set is trimmed to the newest `cap` entries
-- (the highest threshold that reads it), so an attacker cannot grow a key without bound, and every
-- write refreshes a TTL of one window, so idle keys disappear on their own.
--
-- KEYS[1] ip failures       (zset: failure id -> time)
-- KEYS[2] login failures    (zset: failure id -> time)
-- KEYS[3] logins per ip     (zset: login -> last failure time)   password spraying from one source
-- KEYS[4] logins per pwhash (zset: login -> last failure time)   one password across many logins
-- KEYS[5] ip hostile until  (string: time)
-- KEYS[6] pwhash sprayed until (string: time)
--
-- ARGV[1] mode: allow (read only) | fail (wrong credentials) | blocked (failed because we said
--         -1: counts for the source only) | success (resets the login, not the source)
-- ARGV[2] now (ms)   ARGV[3] window (ms)   ARGV[4] unique failure id
-- ARGV[5..7] '1' when the ip / login / pwhash is known   ARGV[8] login (normalised)
-- ARGV[9] ip cap   ARGV[10] login cap   ARGV[11] distinct logins that count as spraying
--
-- Returns {ip failures, login failures, ip hostile 0/1, pwhash sprayed 0/1,
--          spraying by pwhash detected now 0/1, spraying by source detected now 0/1}.

local mode = ARGV[1]
local now = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local failId = ARGV[4]
local hasIp, hasLogin, hasPw = ARGV[5] == '1', ARGV[6] == '1', ARGV[7] == '1'
local login = ARGV[8]
local ipCap, loginCap, sprayLogins = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])

-- Entries at or before this instant are outside the window.
local oldest = now - window

local function record(key, member, cap)
  redis.call('ZADD', key, now, member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', oldest)
  redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
  redis.call('PEXPIRE', key, window)
  return redis.call('ZCARD', key)
end

local function live(key)
  return redis.call('ZCOUNT', key, '(' .. oldest, '+inf')
end

local function flagged(key)
  local v = redis.call('GET', key)
  return v and tonumber(v) and tonumber(v) > now
end

local function flag(key)
  redis.call('SET', key, now + window, 'PX', window)
end

local pwSprayNow, ipSprayNow = 0, 0

if mode == 'fail' then
  if hasIp then record(KEYS[1], failId, ipCap) end
  if hasLogin then record(KEYS[2], failId, loginCap) end
  if hasIp and hasLogin and record(KEYS[3], login, sprayLogins) >= sprayLogins then
    if not flagged(KEYS[5]) then ipSprayNow = 1 end
    flag(KEYS[5])
  end
  if hasPw and hasLogin and record(KEYS[4], login, sprayLogins) >= sprayLogins then
    if not flagged(KEYS[6]) then pwSprayNow = 1 end
    flag(KEYS[6])
    if hasIp then flag(KEYS[5]) end
  end
elseif mode == 'blocked' then
  -- A source that keeps knocking while refused stays refused; its tries say nothing about a
  -- password, so the login and pwhash state is left alone.
  if hasIp then record(KEYS[1], failId, ipCap) end
elseif mode == 'success' then
  if hasLogin then redis.call('DEL', KEYS[2]) end
end

local ipCount, loginCount, hostile, sprayed = 0, 0, 0, 0
if hasIp then
  ipCount = live(KEYS[1])
  if flagged(KEYS[5]) then hostile = 1 end
end
if hasLogin then loginCount = live(KEYS[2]) end
if hasPw and flagged(KEYS[6]) then sprayed = 1 end

return {ipCount, loginCount, hostile, sprayed, pwSprayNow, ipSprayNow}
