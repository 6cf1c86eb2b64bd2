-- Give a lease up, only if still ours. KEYS: 1 lease key; ARGV: 1 holder id.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
