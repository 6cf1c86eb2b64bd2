-- First come, first served, decided atomically: the fast gate. A grant it accepts is written
-- to PostgreSQL (group commit) before the caller hears 201; the pending set tracks it until
-- then, so a grant whose writer died can be released (coupons::reconciler).
-- KEYS[1]: campaign meta hash {total, starts, ends}, KEYS[2]: set of holders,
-- KEYS[3]: sorted set of pending grants (user -> accepted at, ms)
-- ARGV[1]: user id, ARGV[2]: now (ms)
-- Returns {1} accepted | {0} already holds one | {-1} campaign not loaded
--         {-2} not started | {-3} ended | {-4} sold out
local meta = redis.call('HMGET', KEYS[1], 'total', 'starts', 'ends')
if not meta[1] then
  return {-1}
end
local now = tonumber(ARGV[2])
if now < tonumber(meta[2]) then
  return {-2}
end
if now >= tonumber(meta[3]) then
  return {-3}
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return {0}
end
if redis.call('SCARD', KEYS[2]) >= tonumber(meta[1]) then
  return {-4}
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return {1}
