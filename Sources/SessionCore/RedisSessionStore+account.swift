public import Redis

// The account's side of the session store: the state session creation checks, and the changes that end sessions
// with it (password change and reset, disable, enable, delete) — each one script in the slot of the user's sessions.
//
// Why this keeps "a disable (or a password change, or a delete) that returned leaves no session alive", on Cluster
// too, where the user record lives in another slot: a login reads the account state *before* the password hash, and
// its session is created by a script that compares that state. A change writes the record first, then — in one
// script, in the sessions' slot — the new state and the end of the sessions. A login whose create ran before that
// script has its session ended by it; one whose create runs after it sees the new state (disabled, or credentials
// changed since it read the state) and gets no session. A login that read the state after the change's script also
// read the record after the change's first write: the new hash, the disabled flag.

extension RedisSessionStore {
    public func accountStamp(of user: UserID) async throws(SessionError) -> AccountStamp {
        let key = keys.accountState(user)
        let value = try await withStore { try await redis.send(RedisCommand("GET", [key])) }
        return AccountStamp(text: value.string ?? "0")
    }

    @discardableResult
    public func changeAccount(of user: UserID, _ change: AccountChange, keeping: SessionID?, origin: EventOrigin) async throws(SessionError)
        -> [SessionID]
    {
        let prefix = keys.sessionKeyPrefix(user.tag)
        let reply = try await run(
            Self.accountScript, keys: [keys.sessionIndex(user), keys.accountState(user), keys.secondFactor(user)] + events.scriptKeys(for: user),
            arguments: [prefix, change.rawValue, keeping?.bytes ?? []]
                + events.scriptArguments(LifecycleEvent(change.eventType, user: user, origin: origin)),
            durable: true
        )
        await events.moveOutbox(user.tag)
        let ended = (reply.array ?? []).compactMap { $0.bytes }.filter { $0.count == 16 }
        if change != .purge, change != .enable { events.count(change.eventType) }
        events.count(.sessionEnded, ended.count)
        // Redis tells every instance's cache; this one's is told now, before the caller hears "done".
        nearCache?.invalidate(.keys(ended.map { prefix + $0 }))
        return ended.map(SessionID.init(bytes:))
    }

    public func liveSessionCount(for user: UserID) async throws(SessionError) -> Int {
        let reply = try await run(Self.countScript, keys: [keys.sessionIndex(user)], arguments: [keys.sessionKeyPrefix(user.tag)])
        return Int(reply.int ?? 0)
    }

    /// KEYS: index, account state, TOTP factor (purged with the rest), then the events' (`Lua.events`; the user's list
    /// is purged too). ARGV: session key prefix, change (`AccountChange`), the session to keep (16 bytes, or empty), then
    /// the events' (the change's own event; each ended session's `session.ended` is made from it). Returns the IDs of the
    /// sessions it ended.
    static let accountScript = RedisScript(
        name: "account",
        Lua.events + """
            local state = redis.call('GET', KEYS[2]) or '0'
            local mark = string.sub(state, 1, 1)
            local count = tonumber((mark == 'd' or mark == 'x') and string.sub(state, 2) or state) or 0
            local change = ARGV[2]
            local function settle(value)
                if value == '0' then redis.call('DEL', KEYS[2]) else redis.call('SET', KEYS[2], value) end
            end
            if change == 'enable' then
                if mark == 'd' then
                    settle(tostring(count))
                    emit({})
                end
                return {}
            end
            if change == 'purge' then
                redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], eventList)
                return {}
            end
            -- The change's own event first, then one per session it ends.
            if change == 'disable' and mark ~= 'd' and mark ~= 'x' then emit({}) end
            if change == 'credentials' or change == 'credentials_keep' or change == 'delete' then emit({}) end
            local reasons = {credentials = 'password_changed', disable = 'account_disabled', delete = 'admin'}
            local ended = {}
            if change ~= 'credentials_keep' then
                for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
                    if id ~= ARGV[3] then
                        local live = redis.call('DEL', ARGV[1] .. id)
                        redis.call('ZREM', KEYS[1], id)
                        table.insert(ended, id)
                        if live == 1 then
                            emit({type = 'session.ended', reason = reasons[change] or 'admin', session_id = hexID(id)})
                        end
                    end
                end
            end
            if change == 'credentials' or change == 'credentials_keep' then
                if mark ~= 'x' then settle((mark == 'd' and 'd' or '') .. tostring(count + 1)) end
            elseif change == 'disable' then
                if mark ~= 'x' then settle('d' .. tostring(count)) end
            elseif change == 'delete' then
                redis.call('SET', KEYS[2], 'x')
            end
            return ended
            """
    )

    /// KEYS: index. ARGV: session key prefix. Returns how many of the indexed sessions are live (`PTTL`, not `EXISTS`: the
    /// service's ACL has no `EXISTS`).
    static let countScript = RedisScript(
        name: "count",
        """
        local live = 0
        for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
            if redis.call('PTTL', ARGV[1] .. id) ~= -2 then live = live + 1 end
        end
        return live
        """
    )
}
