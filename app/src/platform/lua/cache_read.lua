-- KEYS[1]: data hash, KEYS[2]: generation counter; ARGV[1]: field.
-- Returns {cached value or false, generation or false} in one round trip.
return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('GET', KEYS[2])}
