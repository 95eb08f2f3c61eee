-- wrk: GET /work/{id} for every seeded id in turn (each thread walks them all), to warm a cache.
local rows = tonumber(os.getenv("PP_BENCH_ROWS") or "100000")
local next_id = 0
request = function()
  next_id = next_id % rows + 1
  return wrk.format("GET", "/work/" .. next_id)
end
