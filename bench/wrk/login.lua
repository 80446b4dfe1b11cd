-- POST a login for one user (LOGIN_USER / LOGIN_PASSWORD) on every request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format('{"username":"%s","password":"%s"}', os.getenv("LOGIN_USER"), os.getenv("LOGIN_PASSWORD"))
dofile(os.getenv("BENCH_WRK_DIR") .. "/result.lua")
