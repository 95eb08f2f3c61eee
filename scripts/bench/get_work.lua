-- wrk: GET /work/{id} over the seeded ids (PP_BENCH_ROWS of them).
local rows = tonumber(os.getenv("PP_BENCH_ROWS") or "100000")
request = function()
  return wrk.format("GET", "/work/" .. math.random(1, rows))
end
