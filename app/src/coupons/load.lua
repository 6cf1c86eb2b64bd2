-- Loads (or reloads after Redis lost it) a campaign's counters.
-- KEYS[1]: meta hash, KEYS[2]: holders set, KEYS[3]: pending grants (sorted set)
-- ARGV[1]: total, ARGV[2]: starts ms, ARGV[3]: ends ms, ARGV[4]: ttl ms, ARGV[5..]: holders
-- (PostgreSQL's). Grants still pending (accepted, being written) stay holders.
-- Does nothing if the campaign is loaded already (another replica won the race).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('DEL', KEYS[2])
local batch = {}
for i = 5, #ARGV do
  batch[#batch + 1] = ARGV[i]
  if #batch == 1000 then
    redis.call('SADD', KEYS[2], unpack(batch))
    batch = {}
  end
end
if #batch > 0 then
  redis.call('SADD', KEYS[2], unpack(batch))
end
local pending = redis.call('ZRANGE', KEYS[3], 0, -1)
for i = 1, #pending, 1000 do
  redis.call('SADD', KEYS[2], unpack(pending, i, math.min(i + 999, #pending)))
end
redis.call('HSET', KEYS[1], 'total', ARGV[1], 'starts', ARGV[2], 'ends', ARGV[3])
for i = 1, 3 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('PEXPIRE', KEYS[i], ARGV[4])
  end
end
return 1
