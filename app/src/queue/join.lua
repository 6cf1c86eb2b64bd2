-- Join a waiting room, or get one's existing place back. One decision, atomically.
-- KEYS: 1 seq, 2 head, 3 line, 4 waiting count, 5 active sessions, 6 the user's entry
--       bucket, 7 pre-queue mark, 8 stats
-- ARGV: 1 user id, 2 field in the bucket, 3 now (ms), 4 place ttl (s),
--       5 '1' before opensAt, 6 '1' after closesAt, 7 abandonAfter (s)
-- Returns {2, session expiry ms} already admitted, {1, position} waiting, {3, 0} closed;
-- the third element is 1 when a stale (abandoned) place was dropped on the way.
local now = tonumber(ARGV[3])
local sec = math.floor(now / 1000)
local ttl = tonumber(ARGV[4])
local dropped = 0
local s = redis.call('ZSCORE', KEYS[5], ARGV[1])
if s and tonumber(s) > now then
  return {2, tonumber(s), 0}
end
local v = redis.call('HGET', KEYS[6], ARGV[2])
if v then
  local pos, seen = string.match(v, '^(%d+):(%d+)$')
  if sec - tonumber(seen) <= tonumber(ARGV[7]) then
    redis.call('HSET', KEYS[6], ARGV[2], pos .. ':' .. sec)
    redis.call('EXPIRE', KEYS[6], ttl)
    return {1, tonumber(pos), 0}
  end
  -- the place was abandoned: it is lost, the line will skip it
  redis.call('HDEL', KEYS[6], ARGV[2])
  redis.call('DECR', KEYS[4])
  redis.call('HINCRBY', KEYS[8], 'abandoned', 1)
  dropped = 1
end
if ARGV[6] == '1' then
  return {3, 0, dropped}
end
local pos = redis.call('INCR', KEYS[1])
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('INCR', KEYS[4])
redis.call('SETNX', KEYS[2], 0)
redis.call('HSET', KEYS[6], ARGV[2], pos .. ':' .. sec)
-- the whole line expires a place-ttl after the last join, so nothing outlives its users
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ttl) end
redis.call('EXPIRE', KEYS[6], ttl)
if ARGV[5] == '1' then
  redis.call('SET', KEYS[7], pos, 'EX', ttl)
end
return {1, pos, dropped}
