-- wrk script of the custom-llm-proxy benchmark: every connection POSTs one OpenAI chat request,
-- waits for the whole answer, and sends the next (closed loop).
--   wrk -t1 -c16 -d15s --latency --timeout 30s -s bench/chat.lua http://127.0.0.1:14001/v1/chat/completions
-- Environment, all optional:
--   BENCH_MODEL   the "model" field                                      [llama]
--   BENCH_KEY     sent as "Authorization: Bearer <key>"                  [sk-bench-1234]
--   BENCH_STREAM  "1" adds "stream": true
--   BENCH_CHECK   "1" looks at every response (this costs wrk CPU, so the direct baseline rows
--                 leave it off): counts the non-2xx ones and the 2xx bodies that are wrong, i.e.
--   BENCH_EXPECT  lack this text                                         [none]
--   BENCH_SUFFIX  or do not end with this text (trailing whitespace ignored)    [none]
--   BENCH_FORBID  or contain this text                                   [none]
-- At the end it prints one line of JSON after "BENCH_RESULT ", and the first bad answer, if any,
-- after "BENCH_FIRST_BAD ". When checking, also the good answers of each second of the clock
-- (os.time()) after "BENCH_PER_SECOND ", as a JSON object {"<unix second>": count}: the rate
-- after a warm-up (bench/inflight.py --warmup).

local env = os.getenv
local model = env("BENCH_MODEL") or "llama"
local check = env("BENCH_CHECK") == "1"
local expect = env("BENCH_EXPECT") or ""
local suffix = env("BENCH_SUFFIX") or ""
local forbid = env("BENCH_FORBID") or ""

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (env("BENCH_KEY") or "sk-bench-1234")
wrk.body = '{"model": "' .. model .. '", "messages": [{"role": "user", '
  .. '"content": "The capital of France is P"}], "max_tokens": 32'
  .. (env("BENCH_STREAM") == "1" and ', "stream": true}' or '}')

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  bad_bodies = 0
  first_bad = nil
  good_by_second = {}
end

local function ends_with(body, tail)
  local last = #body
  while last > 0 and string.find(string.sub(body, last, last), "^%s$") do
    last = last - 1
  end
  return last >= #tail and string.sub(body, last - #tail + 1, last) == tail
end

local function body_is_good(body)
  return (expect == "" or string.find(body, expect, 1, true) ~= nil)
    and (suffix == "" or ends_with(body, suffix))
    and (forbid == "" or string.find(body, forbid, 1, true) == nil)
end

-- Defined only when checking: with a response() callback wrk hands every body to Lua.
if check then
  function response(status, headers, body)
    local good_status = status >= 200 and status < 300
    if not good_status then
      non2xx = non2xx + 1
    elseif not body_is_good(body) then
      bad_bodies = bad_bodies + 1
    else
      local second = os.time()
      good_by_second[second] = (good_by_second[second] or 0) + 1
      return
    end
    if first_bad == nil then
      first_bad = status .. " " .. string.sub(string.gsub(body, "%s+", " "), 1, 400)
    end
  end
end

function done(summary, latency, requests)
  local counted_non2xx, bad, sample, by_second = 0, 0, nil, {}
  for _, thread in ipairs(threads) do
    counted_non2xx = counted_non2xx + (thread:get("non2xx") or 0)
    bad = bad + (thread:get("bad_bodies") or 0)
    sample = sample or thread:get("first_bad")
    for second, count in pairs(thread:get("good_by_second") or {}) do
      by_second[second] = (by_second[second] or 0) + count
    end
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_s": %.3f, "p50_ms": %.3f, "p90_ms": %.3f, '
      .. '"p99_ms": %.3f, "max_ms": %.3f, "non2xx": %d, "socket_errors": %d, "bad_bodies": %d, '
      .. '"checked": %s}\n',
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    -- without the check only wrk's own count is known: statuses above 399
    check and counted_non2xx or errors.status,
    errors.connect + errors.read + errors.write + errors.timeout, bad,
    tostring(check)))
  if sample then
    io.write("BENCH_FIRST_BAD " .. sample .. "\n")
  end
  if check then
    local parts = {}
    for second, count in pairs(by_second) do
      table.insert(parts, string.format('"%d": %d', second, count))
    end
    io.write("BENCH_PER_SECOND {" .. table.concat(parts, ", ") .. "}\n")
  end
end
