-- wrk script for perf/passthrough.sh: one script for every path, so each pays the same client
-- cost. The path is wrk's first script argument (`wrk ... -s passthrough-post.lua URL -- PATH`):
--
--   openai      POST /v1/chat/completions, model gpt-4o-mini (post.lua's request: the OpenAI
--               byte path, the reference)
--   anthropic   POST /v1/messages, model claude-x (Anthropic passthrough)
--   gemini      POST /v1beta/models/gemini-x:generateContent (Gemini passthrough; the model is
--               in the URL, which passthrough.sh gives)
--   translated  POST /v1/chat/completions, model claude-x (OpenAI -> Anthropic -> OpenAI)
--   responses   POST /v1/responses, model gpt-chat (Responses -> chat -> Responses)
--
-- A second argument `capture` adds a response() hook that prints the first non-2xx answers
-- (diagnostics only: the hook makes wrk parse every body, which costs client CPU).
-- The last line is post.lua's machine-readable PERF line, field for field.

local bodies = {
   openai = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}',
   anthropic = '{"model":"claude-x","max_tokens":64,"messages":[{"role":"user","content":"Say hello"}]}',
   gemini = '{"contents":[{"role":"user","parts":[{"text":"Say hello"}]}]}',
   translated = '{"model":"claude-x","messages":[{"role":"user","content":"Say hello"}]}',
   responses = '{"model":"gpt-chat","input":"Say hello"}',
}

local shown = 0

-- wrk calls init(args) before it formats the request, so the body and headers set here are the
-- ones sent (the request stays static: no request() hook).
function init(args)
   local path = args[1] or "openai"
   local body = bodies[path]
   if body == nil then
      error("passthrough-post.lua: unknown path '" .. path .. "'")
   end
   wrk.method = "POST"
   wrk.body = body
   wrk.headers["Content-Type"] = "application/json"
   if path == "anthropic" then
      wrk.headers["anthropic-version"] = "2023-06-01"
   end
   if args[2] == "capture" then
      response = function(status, headers, rbody)
         if (status < 200 or status >= 300) and shown < 5 then
            shown = shown + 1
            local h = {}
            for k, v in pairs(headers) do h[#h + 1] = k .. ": " .. v end
            io.write(string.format("NON2XX %d\n%s\n%s\n\n", status, table.concat(h, "\n"), rbody))
         end
      end
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "PERF requests=%d duration_us=%d bytes=%d err_connect=%d err_read=%d err_write=%d " ..
      "err_timeout=%d err_status=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d mean_us=%.1f max_us=%d\n",
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.timeout, e.status, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9), latency.mean, latency.max))
end
