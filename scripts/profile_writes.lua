-- wrk script of scripts/profile.sh (P2, P5): each request carries the next access token of
-- TOKENS_FILE (round robin), a fresh Idempotency-Key (as the bench's generator sends) and the
-- JSON body WRK_BODY, POSTed. Keys are unique per wrk run: RUN_ID (profile.sh sets a new one
-- for each), the thread and a counter.
local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  threads[#threads + 1] = thread
end

function init(args)
  tokens = {}
  for line in io.lines(os.getenv("TOKENS_FILE")) do tokens[#tokens + 1] = line end
  i = 0
  n = 0
  run = os.getenv("RUN_ID") or "run"
end

function request()
  i = i % #tokens + 1
  n = n + 1
  local headers = {
    ["Authorization"] = "Bearer " .. tokens[i],
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = string.format("%s-%d-%d", run, id, n),
  }
  return wrk.format("POST", nil, headers, os.getenv("WRK_BODY"))
end
