-- wrk: GET a random key of KEYS (default 100000) in bucket "bench": the keys 0 to KEYS-1 that
-- `rill bench --preload` writes.
local keys = tonumber(os.getenv("KEYS") or "100000")
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  math.randomseed(os.time() * 16 + (id or 0))
end

function request()
  return wrk.format("GET", "/buckets/bench/keys/" .. (math.random(keys) - 1))
end
