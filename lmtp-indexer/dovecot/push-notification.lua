-- CEERION push notifications for Dovecot 2.3.19 (push_notification_lua driver, loaded through
-- push-notification.conf). Reports where messages are and what users do to them to the LMTP
-- indexer's POST /push, which records it against the index rows (lmtp-indexer/push).
--
-- What Dovecot hands us (2.3.19, checked against the real server by test/lmtp-indexer/dovecot):
--   begin_txn(user)              once per mailbox transaction, lazily at its first change
--   event_*(ctx, event)          after the commit, per change: event.name, .mailbox, .uid,
--                                .uid_validity (Lua floats), plus per kind the fields below
--   end_txn(ctx, success)        after commit (true) or rollback (false)
-- An IMAP MOVE opens the target's transaction (MessageAppend) and the source's (MessageExpunge)
-- before committing either, so counting open transactions per user and sending when none is left
-- puts a whole command into one POST: the receiver sees the append and the expunge of a move
-- together. A delivery is one transaction (MessageNew).
--
-- HTTP: Dovecot 2.3.19 has dovecot.http.client (lib-lua's dlua-dovecot-http.c). submit() is
-- synchronous: the user's command (or the delivery) waits for the answer, so every request has a
-- short timeout, and failures are logged and dropped. Transport failures come back as statuses
-- >= 9000 (9003 connect failed, 9008 timeout), not as Lua errors.
--
-- Dovecot loads this script afresh for every mail user: once per IMAP session, but once per
-- recipient in LMTP. So the back-off after a failure (no more tries for ceerion_push_backoff_secs)
-- spares a long IMAP session, while each delivery still tries, and waits at most one timeout.
--
-- Only the fields the receiver needs are sent: no subject, sender or snippet leaves Dovecot here.

local SETTING = "ceerion_push_"
-- The receiver takes at most 5,000 events and 8 MiB per POST (lmtp-indexer/push/events.ts).
local MAX_EVENTS_PER_POST = 5000
local MAX_BYTES_PER_POST = 4 * 1024 * 1024
-- A transaction left open (never ended) must not hold a user's events for ever.
local MAX_HOLD_SECS = 30

local http_client = nil
local http_missing_logged = false
-- os.time() until which nothing is sent after a failure, and how many events were dropped
-- meanwhile. Per script instance, i.e. per mail user (see above).
local down_until = 0
local dropped_while_down = 0
-- Per user name: { open = transactions begun and not ended, events = encoded events, since = os.time() of the first }.
local buffers = {}

-- JSON -----------------------------------------------------------------------------------------

local ESCAPES = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }

local function valid_utf8(s)
  if utf8 ~= nil and utf8.len ~= nil then return utf8.len(s) ~= nil end
  return not s:find("[\128-\255]")
end

local function json_string(s)
  s = tostring(s)
  -- Mailbox names are UTF-8 in Dovecot, but Message-ID and keywords are whatever the sender or
  -- client wrote: bytes that are not UTF-8 become U+FFFD rather than invalid JSON.
  if not valid_utf8(s) then s = s:gsub("[\128-\255]", "\239\191\189") end
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESCAPES[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

-- UIDs and UIDVALIDITY arrive as floats (1.0); JSON wants 1. Both fit a double exactly.
local function json_integer(n)
  return string.format("%.0f", n)
end

local function json_string_array(list)
  local out = {}
  if list ~= nil then
    for i = 1, #list do out[i] = json_string(list[i]) end
  end
  return "[" .. table.concat(out, ",") .. "]"
end

local function encode_event(e)
  local f = { '"name":' .. json_string(e.name) }
  if e.mailbox ~= nil then f[#f + 1] = '"mailbox":' .. json_string(e.mailbox) end
  if e.uid ~= nil then f[#f + 1] = '"uid":' .. json_integer(e.uid) end
  if e.uid_validity ~= nil then f[#f + 1] = '"uid_validity":' .. json_integer(e.uid_validity) end
  if e.message_id ~= nil and e.message_id ~= "" then f[#f + 1] = '"message_id":' .. json_string(e.message_id) end
  if e.flags ~= nil then f[#f + 1] = '"flags":' .. json_string_array(e.flags) end
  if e.keywords ~= nil then f[#f + 1] = '"keywords":' .. json_string_array(e.keywords) end
  if e.mailbox_old ~= nil then f[#f + 1] = '"mailbox_old":' .. json_string(e.mailbox_old) end
  return "{" .. table.concat(f, ",") .. "}"
end

-- HTTP -----------------------------------------------------------------------------------------

local function number_setting(user, name, default)
  local n = tonumber(user:plugin_getenv(SETTING .. name) or "")
  if n == nil or n < 0 then return default end
  return math.floor(n)
end

local function settings_of(user)
  local timeout = number_setting(user, "timeout_msecs", 2000)
  local separator = user:plugin_getenv(SETTING .. "separator")
  return {
    url = user:plugin_getenv(SETTING .. "url") or "",
    token = user:plugin_getenv(SETTING .. "token") or "",
    separator = (separator ~= nil and separator ~= "") and separator or ".",
    timeout = timeout,
    backoff = number_setting(user, "backoff_secs", 10),
  }
end

local function client_for(set)
  if http_client == nil then
    http_client = dovecot.http.client({
      user_agent = "ceerion-push/1",
      connect_timeout_msecs = set.timeout,
      request_timeout_msecs = set.timeout,
      -- The one that bounds the whole exchange (connect, 100-continue, answer).
      request_absolute_timeout_msecs = set.timeout,
      max_attempts = 1,
      max_connect_attempts = 1,
      no_auto_retry = true,
      no_auto_redirect = true,
    })
  end
  return http_client
end

-- Returns nil on success, else why not and whether the indexer itself is in trouble (no answer,
-- 5xx: worth backing off) rather than refusing these events (4xx: the next ones may be fine).
local function post(set, body)
  local resp = nil
  local ok, err = pcall(function()
    local req = client_for(set):request({ url = set.url, method = "POST" })
    req:add_header("Content-Type", "application/json")
    if set.token ~= "" then req:add_header("Authorization", "Bearer " .. set.token) end
    req:set_payload(body)
    resp = req:submit()
  end)
  if not ok then return tostring(err), true end
  local status = resp:status()
  if status >= 200 and status < 300 then return nil, false end
  return string.format("HTTP %d %s %s", status, tostring(resp:reason()), tostring(resp:payload()):sub(1, 200)), status >= 500
end

local function send(username, set, events)
  if set.url == "" then
    dovecot.i_error("ceerion push: ceerion_push_url is not set; " .. #events .. " event(s) dropped")
    return
  end
  if dovecot.http == nil then
    if not http_missing_logged then
      dovecot.i_error("ceerion push: this Dovecot has no dovecot.http (2.3.19 or later needed); events are dropped")
      http_missing_logged = true
    end
    return
  end
  local now = os.time()
  if now < down_until then
    dropped_while_down = dropped_while_down + #events
    return
  end
  if dropped_while_down > 0 then
    dovecot.i_warning("ceerion push: " .. dropped_while_down .. " event(s) were dropped while the indexer was unreachable")
    dropped_while_down = 0
  end
  local first = 1
  while first <= #events do
    -- Chunks stay under the receiver's limits (events and bytes per POST).
    local last, bytes = first, #events[first]
    while last < #events and last - first + 1 < MAX_EVENTS_PER_POST and bytes + #events[last + 1] < MAX_BYTES_PER_POST do
      last = last + 1
      bytes = bytes + #events[last] + 1
    end
    local body = '{"v":1,"user":' .. json_string(username) .. ',"separator":' .. json_string(set.separator) .. ',"events":[' .. table.concat(events, ",", first, last) .. "]}"
    local why, indexer_trouble = post(set, body)
    if why ~= nil then
      -- Never fail the user's command or the delivery: the mail is safe in Dovecot, only the
      -- index falls behind.
      if indexer_trouble then
        dovecot.i_warning("ceerion push: " .. (#events - first + 1) .. " event(s) for " .. username .. " not delivered to " .. set.url .. ": " .. why)
        down_until = now + set.backoff
        return
      end
      -- Refused (4xx): these events are lost, the next chunk may still be taken.
      dovecot.i_warning("ceerion push: " .. (last - first + 1) .. " event(s) for " .. username .. " refused by " .. set.url .. ": " .. why)
    end
    first = last + 1
  end
end

-- Dovecot's entry points -----------------------------------------------------------------------

function dovecot_lua_notify_begin_txn(user)
  local name = user.username
  local buf = buffers[name]
  if buf == nil then
    buf = { open = 0, events = {}, since = 0, set = settings_of(user) }
    buffers[name] = buf
  end
  -- Last: Dovecot calls end_txn only if this returned, so the count stays balanced.
  buf.open = buf.open + 1
  return { user = name, buf = buf }
end

local function collect(ctx, event)
  local buf = ctx.buf
  if #buf.events == 0 then buf.since = os.time() end
  buf.events[#buf.events + 1] = encode_event(event)
end

-- new mail delivered (LMTP/LDA); .message_id, .flags, .keywords
dovecot_lua_notify_event_message_new = collect
-- saved over IMAP: APPEND, and the target side of COPY and MOVE; same fields as MessageNew
dovecot_lua_notify_event_message_append = collect
-- .flags / .keywords: only those added (FlagsSet) or removed (FlagsClear), not the full set
dovecot_lua_notify_event_flags_set = collect
dovecot_lua_notify_event_flags_clear = collect
dovecot_lua_notify_event_message_expunge = collect
-- .mailbox is the new name, .mailbox_old the old; children are renamed with it, without events
dovecot_lua_notify_event_mailbox_rename = collect

function dovecot_lua_notify_end_txn(ctx, success)
  local buf = ctx.buf
  if buf.open > 0 then buf.open = buf.open - 1 end
  if #buf.events == 0 then return end
  if buf.open > 0 and os.time() - buf.since < MAX_HOLD_SECS then return end
  local events = buf.events
  buf.events = {}
  local ok, err = pcall(send, ctx.user, buf.set, events)
  if not ok then dovecot.i_error("ceerion push: " .. tostring(err)) end
end

function script_deinit()
  -- The process is going away with events still held (a transaction that never ended).
  for name, buf in pairs(buffers) do
    if #buf.events > 0 then pcall(send, name, buf.set, buf.events) end
  end
  buffers = {}
end
