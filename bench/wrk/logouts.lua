-- POST /v1/logout once with each token of TOKENS_FILE (each of the 2 threads takes every other one); a file with more
-- tokens than the run sends keeps every logout a real one.
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do
    if #line > 0 then tokens[#tokens + 1] = line end
end
dofile(os.getenv("BENCH_WRK_DIR") .. "/threads.lua")
function request()
    position = position + 2
    return wrk.format("POST", "/v1/logout", { ["Authorization"] = "Bearer " .. tokens[position % #tokens + 1] })
end
dofile(os.getenv("BENCH_WRK_DIR") .. "/result.lua")
