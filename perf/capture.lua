-- Diagnostic run, only when the gateway answered non-2xx under load: same request as post.lua,
-- but prints the status, headers and body of the first few failures (the benchmark itself has no
-- response() hook, because parsing every response costs wrk CPU).
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}'
wrk.headers["Content-Type"] = "application/json"

local shown = 0

function response(status, headers, body)
   if status >= 300 and shown < 5 then
      shown = shown + 1
      local h = {}
      for k, v in pairs(headers) do h[#h + 1] = k .. ": " .. v end
      io.write(string.format("NON2XX %d\n%s\n%s\n\n", status, table.concat(h, "\n"), body))
   end
end

function done(summary, latency, requests)
   io.write(string.format("requests=%d non2xx=%d\n", summary.requests, summary.errors.status))
end
