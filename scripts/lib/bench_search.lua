-- wrk script of `scripts/bench search`. BENCH_BODY (a file): POST it as
-- JSON (the direct OpenSearch case), else GET the URL. BENCH_AUTH_FILE (a
-- 0600 file holding "user:password"): HTTP basic auth, so the password is
-- never on a command line. BENCH_HOST: the Host header (the LB's public
-- name). Prints one line: RESULT req/s p50-ms p95-ms failed.
local function read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

local function b64(data)
  local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  return ((data:gsub(".", function(x)
    local r, byte = "", x:byte()
    for i = 8, 1, -1 do r = r .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end

local body = os.getenv("BENCH_BODY")
if body and body ~= "" then
  wrk.method = "POST"
  wrk.body = read(body)
  wrk.headers["Content-Type"] = "application/json"
end
local auth = os.getenv("BENCH_AUTH_FILE")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = "Basic " .. b64((read(auth):gsub("%s+$", "")))
end
local host = os.getenv("BENCH_HOST")
if host and host ~= "" then
  wrk.headers["Host"] = host
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.0f %.1f %.1f %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    e.connect + e.read + e.write + e.status + e.timeout))
end
