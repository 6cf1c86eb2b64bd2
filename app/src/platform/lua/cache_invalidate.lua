-- KEYS[1]: data hash, KEYS[2]: generation counter. Bumps the generation (so in-flight loads
-- will not fill) and drops every cached field of the family.
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], 86400000)
redis.call('DEL', KEYS[1])
return 1
