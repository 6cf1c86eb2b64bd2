-- KEYS[1]: sold-out flag, KEYS[2]: its generation. ARGV[1]: generation seen before the
-- failed attempt ('' for none), ARGV[2]: ttl ms. Marks the goods sold out unless stock was
-- restored (generation bumped) since the attempt began.
local gen = redis.call('GET', KEYS[2]) or ''
if gen ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
return 1
