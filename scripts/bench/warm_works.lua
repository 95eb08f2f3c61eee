-- wrk: GET /work/{id} for every seeded id, to warm a cache. The ids are split between the
-- threads; once a thread has sent its share it repeats its last id, and it stops when every
-- request of its share must have been answered (its share and one more per connection), so the
-- warm-up covers every work however fast the machine is (run it with a generous -d as a
-- ceiling).
local rows = tonumber(os.getenv("PP_BENCH_ROWS") or "100000")
local threads = tonumber(os.getenv("PP_BENCH_WRK_THREADS") or "2")
local connections = tonumber(os.getenv("PP_BENCH_WRK_CONNECTIONS") or "32")
local started = 0

setup = function(thread)
  thread:set("index", started)
  started = started + 1
end

local next_id, last_id, answered, share

init = function(args)
  share = math.ceil(rows / threads)
  next_id = index * share + 1
  last_id = math.min(rows, (index + 1) * share)
  share = last_id - next_id + 1
  answered = 0
end

request = function()
  local id = next_id
  if next_id < last_id then
    next_id = next_id + 1
  end
  return wrk.format("GET", "/work/" .. id)
end

response = function(status, headers, body)
  answered = answered + 1
  if answered >= share + math.ceil(connections / threads) then
    wrk.thread:stop()
  end
end
