-- Shared by the wrk scripts: one machine-readable line at the end.
done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT rps=%.1f p99_ms=%.2f requests=%d errors=%d\n",
    summary.requests / seconds, latency:percentile(99) / 1000, summary.requests, errors))
end
