-- Shared by the wrk scripts: one machine-readable line for scripts/bench:
-- RESULT <req/s> <p50 ms> <p99 ms> <p99.9 ms> <requests> <errors (non-2xx, socket)>
function done(summary, latency, requests)
    local e = summary.errors
    io.stderr:write(string.format("RESULT %.1f %.3f %.3f %.3f %d %d\n",
        summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
        summary.requests, e.status + e.connect + e.read + e.write + e.timeout))
end
