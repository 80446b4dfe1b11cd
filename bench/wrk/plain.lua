-- A plain GET, with the shared RESULT line.
dofile(os.getenv("BENCH_WRK_DIR") .. "/result.lua")
