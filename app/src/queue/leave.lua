-- Leave the line or end an admitted session; frees the slot at once.
-- KEYS: 1 active sessions, 2 the user's entry bucket, 3 waiting count
-- ARGV: 1 user id, 2 field
-- Returns 1 when a session or a place was removed.
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('HDEL', KEYS[2], ARGV[2]) == 1 then
  redis.call('DECR', KEYS[3])
  removed = 1
end
return removed
