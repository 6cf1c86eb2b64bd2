-- First come, first served, decided atomically.
-- KEYS[1]: campaign meta hash {total, starts, ends}, KEYS[2]: set of holders, KEYS[3]: stream
-- ARGV[1]: user id, ARGV[2]: now (ms)
-- Returns {1, stream id} issued | {0} already holds one | {-1} campaign not loaded
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
-- in the same atomic step as the SADD: what is acknowledged is always in the stream
local id = redis.call('XADD', KEYS[3], '*', 'u', ARGV[1], 't', ARGV[2])
return {1, id}
