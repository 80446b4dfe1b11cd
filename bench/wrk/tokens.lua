-- Each request carries a bearer token drawn at random from TOKENS_FILE (one per line); METHOD (default GET).
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do
    if #line > 0 then tokens[#tokens + 1] = line end
end

function setup(thread)
    thread:set("seed", math.random(1, 1000000))
end

function init(args)
    math.randomseed(seed or os.time())
end

local method = os.getenv("METHOD") or "GET"

function request()
    return wrk.format(method, wrk.path, { ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)] })
end
dofile(os.getenv("BENCH_WRK_DIR") .. "/result.lua")
