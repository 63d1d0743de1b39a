-- wrk: requests to a random key (0 to KEYS-1, KEYS default 100000) in bucket "bench" through
-- Riak's HTTP API (/buckets/B/keys/K), which Rill and Riak both serve: OP=put stores a
-- VALUE_SIZE-byte value (default 100), OP=get reads the key (the keys `rill bench --preload`
-- writes).
local keys = tonumber(os.getenv("KEYS") or "100000")
local put = os.getenv("OP") == "put"
local body = string.rep("v", tonumber(os.getenv("VALUE_SIZE") or "100"))
local headers = { ["Content-Type"] = "application/octet-stream" }
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  -- Each thread has its own Lua state: seed them apart.
  math.randomseed(os.time() * 16 + (id or 0))
end

function request()
  local path = "/buckets/bench/keys/" .. (math.random(keys) - 1)
  if put then
    return wrk.format("PUT", path, headers, body)
  end
  return wrk.format("GET", path)
end
