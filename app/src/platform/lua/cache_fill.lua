-- KEYS[1]: data hash, KEYS[2]: generation counter.
-- ARGV[1]: field, ARGV[2]: value, ARGV[3]: ttl ms, ARGV[4]: generation seen before loading
-- ('' when there was none). Stores only if no write happened since the load began, so a slow
-- reader can never put pre-write data back after the writer invalidated.
local gen = redis.call('GET', KEYS[2]) or ''
if gen ~= ARGV[4] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
-- LT: the family lives no longer than its shortest-lived field (a field may carry a bound
-- of its own, such as the next seat-hold expiry it shows)
redis.call('PEXPIRE', KEYS[1], ARGV[3], 'LT')
return 1
