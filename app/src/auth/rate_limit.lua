-- Fixed-window counter. KEYS[1]: the counter; ARGV[1]: window in milliseconds.
-- Returns {count in this window, milliseconds until the window resets}.
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  -- a counter left without expiry (e.g. written by hand) must not block forever
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
