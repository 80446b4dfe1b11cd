-- Shared by the token scripts: TOKENS_FILE's tokens (one per line) in `tokens`, and a random seed per wrk thread.
tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do
    if #line > 0 then tokens[#tokens + 1] = line end
end

function setup(thread)
    thread:set("seed", math.random(1, 1000000))
end

function init(args)
    math.randomseed(seed or os.time())
end
