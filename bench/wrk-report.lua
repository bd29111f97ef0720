-- Prints wrk's totals as one JSON line so run.py need not parse the
-- human-readable report (which omits error lines when they are zero).
--
-- With WRK_MEAN_DELAY_MS set (figure 2), each connection waits a random
-- 1 .. 2*mean-1 ms before each request: a steady rate well below
-- saturation. The delay is random so the connections drift apart instead
-- of firing in step, which would queue requests behind each other and
-- measure bursts rather than the proxy.
local mean_delay = tonumber(os.getenv("WRK_MEAN_DELAY_MS"))
if mean_delay then
  delay = function()
    return math.random(1, 2 * mean_delay - 1)
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %.0f, "duration_us": %.0f, "bytes": %.0f, ' ..
    '"connect": %.0f, "read": %.0f, "write": %.0f, "status": %.0f, ' ..
    '"timeout": %.0f, "p50_us": %.0f, "p99_us": %.0f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
