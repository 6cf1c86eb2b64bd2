-- Settles a committed grant batch in Redis.
-- KEYS[1]: meta hash, KEYS[2]: holders set, KEYS[3]: pending grants (sorted set)
-- ARGV[1]: n settled users, ARGV[2]: m refused-as-sold-out users, ARGV[3]: 1 to resync
-- ARGV[4 .. 3+n]: settled users (leave the pending set)
-- ARGV[4+n .. 3+n+m]: refused as sold out (PostgreSQL has no room: they are not holders)
-- ARGV[4+n+m ..]: PostgreSQL's holders when resyncing (Redis had lost some)
local n, m = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 4, 3 + n, 1000 do
  redis.call('ZREM', KEYS[3], unpack(ARGV, i, math.min(i + 999, 3 + n)))
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  -- not loaded (lost): the next issue attempt loads it from PostgreSQL
  return 0
end
for i = 4 + n, 3 + n + m, 1000 do
  redis.call('SREM', KEYS[2], unpack(ARGV, i, math.min(i + 999, 3 + n + m)))
end
if ARGV[3] == '1' then
  for i = 4 + n + m, #ARGV, 1000 do
    redis.call('SADD', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
end
return 1
