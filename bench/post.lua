-- wrk script: POST a JSON body and print a machine-readable summary.
--
-- Environment:
--   WRK_BODY_FILE  path of the request body (wins over WRK_BODY)
--   WRK_BODY       the request body itself (default: a small non-stream chat request)
--   WRK_KEY        sent as "Authorization: Bearer <key>"
--   WRK_HDRS       extra headers, "k: v|k2: v2"
--   WRK_COUNT_SENT "1": also count the requests written, for done()'s "sent". This
--                  defines request(), so wrk makes one Lua call per request (the
--                  `ledger` group uses it to know how many requests the target got,
--                  those still in flight when wrk stopped included).
--
-- done() prints one line: BENCH_RESULT {json}. Latencies are in milliseconds, from wrk's
-- own histogram (the same numbers --latency prints). There is deliberately no response()
-- callback: defining one makes wrk hand every response body to Lua, which slows it down.

local body = os.getenv("WRK_BODY")
local body_file = os.getenv("WRK_BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  body = f:read("*a")
  f:close()
end
if not body or body == "" then
  body = '{"model":"gpt-bench","messages":[{"role":"user","content":"hi"}],"max_tokens":16}'
end

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

local key = os.getenv("WRK_KEY")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

local hdrs = os.getenv("WRK_HDRS")
if hdrs and hdrs ~= "" then
  for item in string.gmatch(hdrs, "[^|]+") do
    local k, v = string.match(item, "^%s*([^:]+):%s*(.-)%s*$")
    if k then
      wrk.headers[k] = v
    end
  end
end

-- Every thread's script state, so that done() can add up their counters.
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

local count_sent = os.getenv("WRK_COUNT_SENT") == "1"
if count_sent then
  sent = 0
  local req
  function init(args)
    req = wrk.format()
  end
  function request()
    sent = sent + 1
    return req
  end
end

function done(summary, latency, requests)
  local sent_field = ""
  if count_sent then
    local n = 0
    for _, t in ipairs(threads) do
      n = n + (t:get("sent") or 0)
    end
    -- wrk's main() calls request() once on the first thread's script before the run,
    -- to check that the request parses (script_verify_request in wrk.c): not sent.
    sent_field = string.format('"sent":%d,', n - 1)
  end
  local e = summary.errors
  local secs = summary.duration / 1e6
  local rps = 0
  if secs > 0 then
    rps = summary.requests / secs
  end
  io.write(string.format(
    'BENCH_RESULT {"tool":"wrk",%s"reqs":%d,"duration_s":%.4f,"rps":%.3f,' ..
    '"p50_ms":%.4f,"p90_ms":%.4f,"p99_ms":%.4f,"max_ms":%.4f,"mean_ms":%.4f,' ..
    '"non2xx":%d,"sockerr":%d,"connect_err":%d,"read_err":%d,"write_err":%d,' ..
    '"timeouts":%d,"bytes":%d}\n',
    sent_field, summary.requests, secs, rps,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
    e.status, e.connect + e.read + e.write + e.timeout, e.connect, e.read, e.write,
    e.timeout, summary.bytes))
end
