-- wrk script shared by every target: the same OpenAI chat request, and one machine-readable
-- line at the end so run.sh never has to parse wrk's human output (units vary: us/ms/s).
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}'
wrk.headers["Content-Type"] = "application/json"

-- No response() hook on purpose: defining one makes wrk parse every body and costs client CPU.
-- Non-2xx answers are still counted by wrk itself (summary.errors.status).

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "PERF requests=%d duration_us=%d bytes=%d err_connect=%d err_read=%d err_write=%d " ..
      "err_timeout=%d err_status=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d mean_us=%.1f max_us=%d\n",
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.timeout, e.status, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9), latency.mean, latency.max))
end
