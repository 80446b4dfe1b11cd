-- Walks TOKENS_FILE in order (each of the 2 threads takes every other token, round and round): every token is used.
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do
    if #line > 0 then tokens[#tokens + 1] = line end
end
dofile(os.getenv("BENCH_WRK_DIR") .. "/threads.lua")

function request()
    position = position + 2
    return wrk.format("GET", wrk.path, { ["Authorization"] = "Bearer " .. tokens[position % #tokens + 1] })
end
dofile(os.getenv("BENCH_WRK_DIR") .. "/result.lua")
