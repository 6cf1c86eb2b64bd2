-- Read a versioned cache entry: the family's current version and the entry stored under it.
-- KEYS: 1 version key; ARGV: 1 entry key prefix (same hash tag), 2 entry key suffix.
-- Returns {version, bytes or false}.
local v = redis.call('GET', KEYS[1]) or '0'
return {v, redis.call('GET', ARGV[1] .. v .. ARGV[2])}
