-- Each request carries a bearer token drawn at random from TOKENS_FILE (one per line); METHOD (default GET).
dofile(os.getenv("BENCH_WRK_DIR") .. "/token-file.lua")

local method = os.getenv("METHOD") or "GET"

function request()
    return wrk.format(method, wrk.path, { ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)] })
end
dofile(os.getenv("BENCH_WRK_DIR") .. "/result.lua")
