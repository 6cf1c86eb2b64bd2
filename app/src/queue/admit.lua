-- One admission tick of one queue (run by the lease holder only).
-- Ends expired sessions, then moves up to min(budget, maxActive - active) live users from
-- the front of the line into sessions, skipping places that were left, superseded or
-- abandoned (no poll for abandonAfter) so they never occupy a slot.
-- KEYS: 1 line, 2 head, 3 waiting count, 4 active sessions, 5 stats
-- ARGV: 1 now (ms), 2 budget, 3 maxActiveUsers, 4 sessionTtl (ms), 5 abandonAfter (s),
--       6 max places examined, 7 entry bucket key prefix, 8 bucket size, 9 measured rate
-- Entry buckets are derived from user ids, so their keys are built here; they share the
-- queue's hash tag and therefore its cluster slot.
-- Returns {admitted, abandoned, active, waiting, head}.
local now = tonumber(ARGV[1])
local sec = math.floor(now / 1000)
local session = tonumber(ARGV[4])
local abandon = tonumber(ARGV[5])
local size = tonumber(ARGV[8])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local active = redis.call('ZCARD', KEYS[4])
local want = math.min(tonumber(ARGV[2]), tonumber(ARGV[3]) - active)
local admitted, abandoned, scanned = 0, 0, 0
local limit = tonumber(ARGV[6])
while admitted < want and scanned < limit do
  local uid = redis.call('LPOP', KEYS[1])
  if not uid then break end
  scanned = scanned + 1
  local pos = redis.call('INCR', KEYS[2])
  local id = tonumber(uid)
  local bucket = ARGV[7] .. string.format('%d', math.floor(id / size))
  local field = string.format('%d', id % size)
  local v = redis.call('HGET', bucket, field)
  if v then
    local p, seen = string.match(v, '^(%d+):(%d+)$')
    if tonumber(p) == pos then
      redis.call('HDEL', bucket, field)
      redis.call('DECR', KEYS[3])
      if sec - tonumber(seen) > abandon then
        abandoned = abandoned + 1
      else
        redis.call('ZADD', KEYS[4], now + session, uid)
        admitted = admitted + 1
      end
    end
  end
end
if admitted > 0 then
  redis.call('PEXPIRE', KEYS[4], session + 60000)
  redis.call('HINCRBY', KEYS[5], 'admitted', admitted)
end
if abandoned > 0 then
  redis.call('HINCRBY', KEYS[5], 'abandoned', abandoned)
end
redis.call('HSET', KEYS[5], 'rate', ARGV[9])
local waiting = tonumber(redis.call('GET', KEYS[3]) or '0')
local head = tonumber(redis.call('GET', KEYS[2]) or '0')
return {admitted, abandoned, active + admitted, waiting, head}
