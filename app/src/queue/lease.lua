-- Take or renew a lease: succeeds when the key is free or already ours.
-- KEYS: 1 lease key; ARGV: 1 holder id, 2 ttl (ms). Returns 1 when held by us.
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
