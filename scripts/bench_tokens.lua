-- wrk script: each request carries the next access token of TOKENS_FILE (round robin) and
-- the method/body given by WRK_METHOD/WRK_BODY; an optional X-Queue-Token comes from
-- QUEUE_TOKEN. Prints per-status counts at the end so the report can tell answers apart.
local threads = {}
local known = { 200, 201, 401, 403, 404, 409, 410, 422, 429, 500, 503 }

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  tokens = {}
  for line in io.lines(os.getenv("TOKENS_FILE")) do tokens[#tokens + 1] = line end
  i = 0
  for _, s in ipairs(known) do _G["c" .. s] = 0 end
  other = 0
end

function request()
  i = i % #tokens + 1
  local headers = { ["Authorization"] = "Bearer " .. tokens[i], ["Content-Type"] = "application/json" }
  local q = os.getenv("QUEUE_TOKEN")
  if q and q ~= "" then headers["X-Queue-Token"] = q end
  return wrk.format(os.getenv("WRK_METHOD") or "GET", nil, headers, os.getenv("WRK_BODY"))
end

function response(status, headers, body)
  local k = "c" .. status
  if _G[k] ~= nil then _G[k] = _G[k] + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  for _, s in ipairs(known) do
    local n = 0
    for _, t in ipairs(threads) do n = n + t:get("c" .. s) end
    if n > 0 then io.write(string.format("status %d %d\n", s, n)) end
  end
  io.write(string.format("p99_ms %.3f\n", latency:percentile(99) / 1000))
end
