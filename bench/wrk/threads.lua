-- Shared by the wrk scripts that walk a sequence: each of wrk's threads starts at its own offset (0, 1, …) and steps by
-- 2 (scripts/bench* run 2 threads), so the threads never send the same item.
local counter = 0
function setup(thread)
    thread:set("offset", counter)
    counter = counter + 1
end
function init(args)
    position = offset or 0
end
