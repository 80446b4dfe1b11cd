-- Each request carries a bearer token drawn Zipf-distributed (exponent ZIPF_S, default 1.1) over the tokens of
-- TOKENS_FILE (one per line, rank 1 first: shuffle the file to spread the hot ranks over users). Each thread keeps the
-- cumulative distribution (one float per token) and draws by binary search.
dofile(os.getenv("BENCH_WRK_DIR") .. "/token-file.lua")
local s = tonumber(os.getenv("ZIPF_S") or "1.1")
local cdf, total = {}, 0
for rank = 1, #tokens do
    total = total + rank ^ -s
    cdf[rank] = total
end

local function draw()
    local target, low, high = math.random() * total, 1, #tokens
    while low < high do
        local middle = math.floor((low + high) / 2)
        if cdf[middle] < target then low = middle + 1 else high = middle end
    end
    return tokens[low]
end

function request()
    return wrk.format("GET", wrk.path, { ["Authorization"] = "Bearer " .. draw() })
end
dofile(os.getenv("BENCH_WRK_DIR") .. "/result.lua")
