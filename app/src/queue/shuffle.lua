-- Shuffle the pre-queue once, when a `random` queue opens: everyone who joined before
-- opensAt gets a uniformly random place among the pre-queue's places; later joins keep
-- their FIFO places behind them. Superseded list elements keep their slots (the line skips
-- them), so positions stay `head + index`.
-- KEYS: 1 line, 2 head, 3 pre-queue mark, 4 done flag
-- ARGV: 1 seed, 2 entry bucket key prefix, 3 bucket size, 4 flag ttl (s)
-- Returns the number of places shuffled, or -1 when already done.
if redis.call('EXISTS', KEYS[4]) == 1 then return -1 end
redis.call('SET', KEYS[4], 1, 'EX', tonumber(ARGV[4]))
local pre = tonumber(redis.call('GET', KEYS[3]) or '0')
local head = tonumber(redis.call('GET', KEYS[2]) or '0')
local k = pre - head
if k <= 1 then return 0 end
local size = tonumber(ARGV[3])
local items = redis.call('LRANGE', KEYS[1], 0, k - 1)
local slots, uids, seen = {}, {}, {}
for i, uid in ipairs(items) do
  local id = tonumber(uid)
  local v = redis.call('HGET', ARGV[2] .. string.format('%d', math.floor(id / size)), string.format('%d', id % size))
  if v then
    local p, s = string.match(v, '^(%d+):(%d+)$')
    if tonumber(p) == head + i then
      slots[#slots + 1] = i
      uids[#uids + 1] = uid
      seen[#seen + 1] = s
    end
  end
end
-- Redis seeds math.random identically on every call, so use a Park-Miller generator
-- seeded by the caller.
local state = (tonumber(ARGV[1]) % 2147483646) + 1
local function rnd(n)
  state = (state * 16807) % 2147483647
  return (state % n) + 1
end
for i = #uids, 2, -1 do
  local j = rnd(i)
  uids[i], uids[j] = uids[j], uids[i]
  seen[i], seen[j] = seen[j], seen[i]
end
for j, i in ipairs(slots) do
  local uid = uids[j]
  items[i] = uid
  local id = tonumber(uid)
  redis.call('HSET', ARGV[2] .. string.format('%d', math.floor(id / size)), string.format('%d', id % size), (head + i) .. ':' .. seen[j])
end
redis.call('LTRIM', KEYS[1], k, -1)
local hi = #items
while hi >= 1 do
  local lo = math.max(1, hi - 499)
  local chunk = {}
  for i = hi, lo, -1 do chunk[#chunk + 1] = items[i] end
  redis.call('LPUSH', KEYS[1], unpack(chunk))
  hi = lo - 1
end
return #uids
