#!lua name=pushloop
-- pushloop's Redis functions (Redis 7+: FUNCTION LOAD REPLACE at every connect).
--
-- Per channel <ch> (names are [A-Za-z0-9_.:-], so the braces are unambiguous):
--   pushloop:{<ch>}:seq   the last id (INCR)
--   pushloop:{<ch>}:h     history: a list of entries "<id>:<t|b><payload>", oldest first
--   pushloop:{<ch>}:b     payload bytes in the history list
--   pushloop:{<ch>}:p     presence: node -> "<websocket> <sse> <long_poll> <expires ms>"
--   pushloop:m:<ch>       the pub/sub channel: "<node>:<except>|<entry>"
-- and pushloop:channels, a sorted set of channel names scored by when they expire (ms).

local function expire_at_least(key, at, now)
  local ttl = redis.call('PTTL', key)
  if ttl < 0 or now + ttl < at then
    redis.call('PEXPIREAT', key, at)
  end
end

-- Members present now: the sum of the unexpired nodes' counts.
local function members(presence, now)
  local n = 0
  for _, v in ipairs(redis.call('HVALS', presence)) do
    local ws, sse, lp, exp = string.match(v, '^(%d+) (%d+) (%d+) (%d+)$')
    if exp and tonumber(exp) > now then
      n = n + tonumber(ws) + tonumber(sse) + tonumber(lp)
    end
  end
  return n
end

-- KEYS: seq, history, bytes, presence, channels
-- ARGV: channel, kind (t|b), payload, keep messages, keep bytes, ttl s, now ms, origin
-- Gives the message the channel's next id, keeps it within the bounds, publishes it;
-- returns {id, members}.
redis.register_function('pushloop_publish', function(keys, args)
  local channel, kind, data = args[1], args[2], args[3]
  local keep, keep_bytes = tonumber(args[4]), tonumber(args[5])
  local ttl, now = tonumber(args[6]), tonumber(args[7])
  local id = redis.call('INCR', keys[1])
  local entry = string.format('%d:%s', id, kind) .. data
  if keep > 0 then
    redis.call('RPUSH', keys[2], entry)
    local total = redis.call('INCRBY', keys[3], #data)
    local n = redis.call('LLEN', keys[2])
    -- The newest message stays even alone over the byte budget.
    while n > keep or (n > 1 and total > keep_bytes) do
      local old = redis.call('LPOP', keys[2])
      local colon = string.find(old, ':', 1, true)
      total = redis.call('INCRBY', keys[3], -(#old - colon - 1))
      n = n - 1
    end
    redis.call('EXPIRE', keys[2], ttl)
    redis.call('EXPIRE', keys[3], ttl)
  end
  redis.call('EXPIRE', keys[1], ttl)
  redis.call('ZADD', keys[5], 'GT', now + ttl * 1000, channel)
  redis.call('PUBLISH', 'pushloop:m:' .. channel, args[8] .. '|' .. entry)
  return {id, members(keys[4], now)}
end)

-- KEYS: seq, history
-- ARGV: since (-1: from now on), all ('1': when since is ahead of the channel, as
-- after Redis lost its data, every entry kept rather than none)
-- Returns {last id, truncated (0|1), entries after since...}.
redis.register_function('pushloop_replay', function(keys, args)
  local since = tonumber(args[1])
  local last = tonumber(redis.call('GET', keys[1]) or '0')
  if since < 0 then
    return {last, 0}
  end
  local ahead = 0
  if since > last then
    if args[2] ~= '1' then
      return {last, 1}
    end
    since, ahead = 0, 1
  end
  if since >= last then
    return {last, ahead}
  end
  local oldest = last + 1
  local first = redis.call('LINDEX', keys[2], 0)
  if first then
    oldest = tonumber(string.match(first, '^(%d+):'))
  end
  local skip, truncated = since + 1 - oldest, ahead
  if skip < 0 then
    skip, truncated = 0, 1
  end
  local out = redis.call('LRANGE', keys[2], skip, -1)
  table.insert(out, 1, truncated)
  table.insert(out, 1, last)
  return out
end)

-- KEYS: presence, channels
-- ARGV: channel, node, counts ("<ws> <sse> <lp>", or "" when none are left), expires ms, now ms
redis.register_function('pushloop_presence', function(keys, args)
  local exp, now = tonumber(args[4]), tonumber(args[5])
  if args[3] == '' then
    redis.call('HDEL', keys[1], args[2])
  else
    redis.call('HSET', keys[1], args[2], args[3] .. ' ' .. exp)
    expire_at_least(keys[1], exp, now)
    redis.call('ZADD', keys[2], 'GT', exp, args[1])
  end
  return 1
end)

-- KEYS: channels
-- ARGV: now ms
-- Every channel alive: {name, websocket, sse, long_poll, last id, ...}; forgets the
-- channels and nodes that expired.
redis.register_function('pushloop_channels', function(keys, args)
  local now = tonumber(args[1])
  redis.call('ZREMRANGEBYSCORE', keys[1], '-inf', now)
  local out = {}
  for _, name in ipairs(redis.call('ZRANGE', keys[1], 0, -1)) do
    local presence = 'pushloop:{' .. name .. '}:p'
    local ws, sse, lp = 0, 0, 0
    local fields = redis.call('HGETALL', presence)
    for i = 1, #fields, 2 do
      local w, s, l, exp = string.match(fields[i + 1], '^(%d+) (%d+) (%d+) (%d+)$')
      if exp and tonumber(exp) > now then
        ws, sse, lp = ws + tonumber(w), sse + tonumber(s), lp + tonumber(l)
      else
        redis.call('HDEL', presence, fields[i])
      end
    end
    local last = tonumber(redis.call('GET', 'pushloop:{' .. name .. '}:seq') or '0')
    table.insert(out, name)
    table.insert(out, ws)
    table.insert(out, sse)
    table.insert(out, lp)
    table.insert(out, last)
  end
  return out
end)
