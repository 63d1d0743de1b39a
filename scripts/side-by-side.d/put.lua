-- wrk: PUT a 100-byte value to a random key (0 to KEYS-1, KEYS default 100000) in bucket "bench",
-- through Riak's HTTP API (/buckets/B/keys/K), which Rill and Riak both serve.
local keys = tonumber(os.getenv("KEYS") or "100000")
local body = string.rep("v", tonumber(os.getenv("VALUE_SIZE") or "100"))
local headers = { ["Content-Type"] = "application/octet-stream" }
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  math.randomseed(os.time() * 16 + (id or 0))
end

function request()
  return wrk.format("PUT", "/buckets/bench/keys/" .. (math.random(keys) - 1), headers, body)
end
