-- POST a login for one of LOGIN_USERS users (LOGIN_PREFIX0 … LOGIN_PREFIX<n-1>, password LOGIN_PASSWORD), in turn.
local users = tonumber(os.getenv("LOGIN_USERS"))
local prefix, password = os.getenv("LOGIN_PREFIX"), os.getenv("LOGIN_PASSWORD")
dofile(os.getenv("BENCH_WRK_DIR") .. "/threads.lua")
function request()
    position = position + 2
    return wrk.format("POST", "/v1/login", { ["Content-Type"] = "application/json" },
        string.format('{"username":"%s%d","password":"%s"}', prefix, position % users, password))
end
dofile(os.getenv("BENCH_WRK_DIR") .. "/result.lua")
