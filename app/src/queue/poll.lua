-- A waiting user's poll: status, and proof of life (resets the abandonment clock).
-- KEYS: 1 active sessions, 2 the user's entry bucket, 3 head, 4 waiting count, 5 stats
-- ARGV: 1 user id, 2 field, 3 now (ms), 4 abandonAfter (s), 5 place ttl (s)
-- Returns {2, session expiry ms, 0, rate} admitted; {1, position, head, rate} waiting;
-- {0, dropped, 0, rate} expired (dropped = 1 when this poll found the place abandoned).
local now = tonumber(ARGV[3])
local rate = redis.call('HGET', KEYS[5], 'rate') or '0'
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) > now then
  return {2, tonumber(s), 0, rate}
end
local v = redis.call('HGET', KEYS[2], ARGV[2])
if not v then
  return {0, 0, 0, rate}
end
local pos, seen = string.match(v, '^(%d+):(%d+)$')
local sec = math.floor(now / 1000)
if sec - tonumber(seen) > tonumber(ARGV[4]) then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('DECR', KEYS[4])
  redis.call('HINCRBY', KEYS[5], 'abandoned', 1)
  return {0, 1, 0, rate}
end
redis.call('HSET', KEYS[2], ARGV[2], pos .. ':' .. sec)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
local head = tonumber(redis.call('GET', KEYS[3]) or '0')
return {1, tonumber(pos), head, rate}
