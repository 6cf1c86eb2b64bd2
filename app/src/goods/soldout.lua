-- KEYS[1]: the sold-out set, KEYS[2]: its generation. ARGV[1]: generation seen before the
-- failed attempt ('' for none), ARGV[2]: ttl ms, ARGV[3..]: every keyed order of the goods as
-- '<user>:<Idempotency-Key>', read from PostgreSQL after it found the stock at 0.
-- Closes the gate unless stock was restored (generation bumped) since the attempt began. The
-- set is the flag: it exists only with its members in it (a '-' member, never a pair, keeps
-- it non-empty), so losing the key loses the flag with it. Members are added to what is there
-- (a union of complete lists is complete), never removed but by a restock's clear or the
-- expiry.
local gen = redis.call('GET', KEYS[2]) or ''
if gen ~= ARGV[1] then
  return 0
end
redis.call('SADD', KEYS[1], '-')
for i = 3, #ARGV, 1000 do
  redis.call('SADD', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
