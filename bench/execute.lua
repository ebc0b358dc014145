-- wrk script: POST the same JSON body with a bearer token to the URL given on the
-- command line, and check every answer: HTTP 200 and a task whose status is "completed".
-- Settings come from the environment (set by bench.py):
--   BENCH_TOKEN  bearer token (empty: no Authorization header, for the peers)
--   BENCH_BODY   request body (JSON)
-- At the end one line "BENCH_JSON {...}" gives the counts and latencies for bench.py.

local token = os.getenv("BENCH_TOKEN") or ""
local body = os.getenv("BENCH_BODY") or "{}"

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
if token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  non_200 = 0
  not_completed = 0
end

function response(status, headers, resp_body)
  if status ~= 200 then
    non_200 = non_200 + 1
  elseif resp_body == nil or not string.find(resp_body, '"status"%s*:%s*"completed"') then
    not_completed = not_completed + 1
  else
    ok = ok + 1
  end
end

function done(summary, latency, requests)
  local o, n2, nc = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + (t:get("ok") or 0)
    n2 = n2 + (t:get("non_200") or 0)
    nc = nc + (t:get("not_completed") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "ok": %d, "non_200": %d, ' ..
    '"not_completed": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"timeouts": %d, "wrk_status_errors": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, o, n2, nc, e.connect, e.read, e.write, e.timeout,
    e.status, latency:percentile(50), latency:percentile(99), latency.max))
end
