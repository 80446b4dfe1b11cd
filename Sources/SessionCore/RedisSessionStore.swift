// Over 300 lines: each store operation sits beside the Lua script it runs (the scripts are the sessions' schema),
// and the near-cache read path beside the uncached one it falls back to.

import Foundation
package import NIOCore
import NIOPosix
public import Redis

/// Sessions in Redis, shared by every instance: one `EVALSHA` per authenticated request — or none, for a session
/// the near cache holds.
///
/// A session is one string keyed by a hash of the token — 28 bytes, then where it was started (`SessionMetadata`, which
/// no verification reads) — with a TTL of the idle timeout (capped by the
/// absolute deadline) that use renews at most once per touch interval (see `SessionConfiguration.touchInterval`); a
/// per-user sorted set indexes a user's sessions for listing and revocation without SCAN. Every script reads Redis'
/// clock (`TIME`), so instances with skewed clocks agree. See `KeySchema` for the keys.
///
/// With a `NearCache` (whose invalidations the client feeds: `RedisClient(onInvalidation:)`), authentication reads a
/// session once with a tracked `GET` + `PTTL` and answers from memory until Redis reports a change; a renewal is sent
/// when the cached TTL falls to the idle timeout. A read-only `GET` is what Redis tracks: a key read inside a script
/// is not.
public struct RedisSessionStore: SessionStore, EventLoopSessionAuthenticating {
    let redis: RedisClient
    let configuration: SessionConfiguration
    let keys: KeySchema
    /// Sessions answered from memory; nil: every authentication asks Redis.
    let nearCache: NearCache?
    /// Where the scripts record lifecycle events (off: they record none).
    public let events: LifecycleEvents
    /// The configuration's times in the units the hot path uses, converted once (`Duration` arithmetic showed in the
    /// cached verification's profile).
    private let idle: TimeAmount
    private let touchInterval: TimeAmount
    private let idleMilliseconds: Int64
    private let renewalMilliseconds: Int64

    /// A store over a running client.
    /// - Parameters:
    ///   - nearCache: a cache fed by `redis`'s invalidations (the same client's `onInvalidation`).
    ///   - events: where lifecycle events go; nil: none are recorded.
    public init(redis: RedisClient, configuration: SessionConfiguration, nearCache: NearCache? = nil, events: LifecycleEvents? = nil) {
        self.redis = redis
        self.events = events ?? LifecycleEvents(redis: redis, keyPrefix: configuration.keyPrefix, maxStreamLength: 0, enabled: false)
        self.configuration = configuration
        self.keys = KeySchema(prefix: configuration.keyPrefix)
        self.nearCache = nearCache
        self.idleMilliseconds = configuration.idleMilliseconds
        self.renewalMilliseconds = configuration.renewalMilliseconds
        self.idle = .milliseconds(configuration.idleMilliseconds)
        self.touchInterval = TimeAmount(configuration.effectiveTouchInterval)
    }

    public func create(for user: UserID) async throws(SessionError) -> (token: SessionToken, session: Session) {
        try await create(for: user, expecting: nil, metadata: nil, level: .password)
    }

    public func create(for user: UserID, expecting stamp: AccountStamp?, metadata: SessionMetadata?, level: AuthenticationLevel)
        async throws(SessionError) -> (
            token: SessionToken, session: Session
        )
    {
        // The token carries the user's tag: the session lands in the slot of the user's index.
        let token = SessionToken.random(for: user)
        let id = token.sessionID
        let reply = try await run(
            Self.createScript,
            keys: [keys.session(id, tag: user.tag), keys.sessionIndex(user), keys.accountState(user)] + events.scriptKeys(for: user),
            arguments: [
                user.bytes, configuration.idleMilliseconds, configuration.absoluteMilliseconds, id.bytes, keys.sessionKeyPrefix(user.tag),
                configuration.maxSessionsPerUser, stamp?.text ?? "*", metadata?.encoded ?? [], level == .secondFactor ? 1 : 0,
            ] + events.scriptArguments(LifecycleEvent(.sessionCreated, user: user, session: id, origin: EventOrigin(metadata))),
            // `DURABLE_LOGINS`: acknowledged only once the replicas have the session and its event (`WAIT`).
            durable: configuration.durableLogins
        )
        await events.moveOutbox(user.tag)
        switch reply.int {
        case -1: throw .accountDisabled
        case -2: throw .invalidCredentials  // the credentials the login proved were changed meanwhile
        default: break
        }
        guard let fields = reply.array, fields.count == 3, let created = fields[0].int, let idleDeadline = fields[1].int else {
            // SET NX failed: a 128-bit collision with a live session. Astronomically unlikely; refuse rather than share.
            throw SessionError.storeUnavailable(nil)
        }
        events.count(.sessionCreated)
        events.count(.sessionEnded, fields[2].int.map(Int.init) ?? 0)
        let absolute = created + configuration.absoluteMilliseconds
        let session = Session(
            id: id, userID: user, createdAt: .milliseconds(created), expiresAt: .milliseconds(min(idleDeadline, absolute)),
            absoluteExpiresAt: .milliseconds(absolute), lastSeenAt: .milliseconds(created), metadata: metadata, level: level
        )
        return (token, session)
    }

    public func authenticate(_ token: SessionToken) async throws(SessionError) -> Session? {
        if nearCache != nil {
            let eventLoop = MultiThreadedEventLoopGroup.singleton.any()
            return try await withCheckedContinuation { continuation in
                authenticate(token, on: eventLoop) { continuation.resume(returning: $0) }
            }.get()
        }
        let id = token.sessionID
        return session(id: id, authenticated: try await run(Self.authenticateScript, keys: [keys.session(id, tag: token.tag)], arguments: renewal))
    }

    /// The same as `authenticate(_:)`, from event-loop code and without a task: the verification fast path. A cached
    /// session is answered before this returns; otherwise the command goes out on a Redis connection of `eventLoop`
    /// when there is one. `completion` runs on `eventLoop`.
    package func authenticate(
        _ token: SessionToken, on eventLoop: any EventLoop, completion: @escaping @Sendable (Result<Session?, SessionError>) -> Void
    ) {
        let id = token.sessionID
        let key = keys.session(id, tag: token.tag)
        guard let nearCache else { return authenticateInRedis(id: id, key: key, on: eventLoop, completion: completion) }
        let now = NIODeadline.now()
        // A renewal is due when the cached TTL has fallen to the idle timeout; at most one per touch interval per
        // entry, so a session whose deadline is capped by its absolute expiry (which no renewal extends, so no
        // invalidation follows) is not touched on every hit.
        if let (entry, touch) = nearCache.lookup(key, now: now, touchDue: idle, touchInterval: touchInterval) {
            completion(.success(cachedSession(id: id, value: entry.value, remaining: entry.deadline - now)))
            if touch { self.touch(key, on: eventLoop) }
            return
        }
        let ticket = nearCache.beginRead(key)
        redis.sendTracked([RedisCommand("GETRANGE", [key, 0, 27]), RedisCommand("PTTL", [key])], on: eventLoop) { result in
            guard case .success(let tracked) = result, let replies = tracked.reply.array, replies.count == 2 else {
                // No tracking now (or a cluster redirect): ask Redis the uncached way; nothing is kept.
                nearCache.cancelRead(key, ticket: ticket)
                return self.authenticateInRedis(id: id, key: key, on: eventLoop, completion: completion)
            }
            guard let value = replies[0].bytes, value.count == 28, let ttl = replies[1].int, ttl > 0 else {
                nearCache.cancelRead(key, ticket: ticket)
                return completion(.success(nil))
            }
            // From when the read was sent, less the millisecond PTTL may round away: never later than Redis' own
            // deadline (which is capped at the absolute one).
            let remaining = TimeAmount.milliseconds(ttl - 1)
            let use = nearCache.completeRead(key, ticket: ticket, value: value, deadline: now + remaining, fetchedAt: now, source: tracked.source)
            // A reply from a pair whose lease ran out may come from a master that is no longer one: ask again.
            guard use != .untrusted else { return self.authenticateInRedis(id: id, key: key, on: eventLoop, completion: completion) }
            completion(.success(self.cachedSession(id: id, value: value, remaining: remaining - (.now() - now))))
            if ttl <= idleMilliseconds { self.touch(key, on: eventLoop) }
        }
    }

    /// Whether a token's session is answered from the near cache now (for tests and diagnostics; counts as a use).
    package func isCached(_ token: SessionToken) -> Bool { cachedRemaining(token) != nil }

    /// The time a cached session has left by its cached deadline; nil when it is not cached.
    package func cachedRemaining(_ token: SessionToken) -> TimeAmount? {
        let now = NIODeadline.now()
        return nearCache?.entry(keys.session(token.sessionID, tag: token.tag), now: now).map { $0.deadline - now }
    }

    /// The authenticate script: one EVALSHA that checks, and renews when due.
    private func authenticateInRedis(
        id: SessionID, key: [UInt8], on eventLoop: any EventLoop, completion: @escaping @Sendable (Result<Session?, SessionError>) -> Void
    ) {
        redis.evaluate(Self.authenticateScript, keys: [key], arguments: renewal, on: eventLoop) { result in
            completion(result.map { self.session(id: id, authenticated: $0) }.mapError(SessionError.init))
        }
    }

    /// Renews a cached session's idle deadline (the authenticate script, whose reply is not needed). Its `PEXPIRE`
    /// invalidates every cached copy, this one too: the next use reads the new deadline.
    private func touch(_ key: [UInt8], on eventLoop: any EventLoop) {
        redis.evaluate(Self.authenticateScript, keys: [key], arguments: renewal, on: eventLoop) { _ in }
    }

    /// The authenticate script's arguments: the TTL a renewal sets, and the TTL at or below which one is due.
    private var renewal: [any RESPArgument] { [renewalMilliseconds, idleMilliseconds] }

    /// The session in the authenticate script's reply, or nil.
    private func session(id: SessionID, authenticated reply: RESPValue) -> Session? {
        guard let fields = reply.array, fields.count == 3, let value = fields[0].bytes, let now = fields[1].int, let ttl = fields[2].int
        else { return nil }
        return decode(id: id, value: value, expiresAt: now + ttl, now: now)
    }

    /// A session from a cached value, in this process' wall clock (only the remaining time came from Redis).
    private func cachedSession(id: SessionID, value: [UInt8], remaining: TimeAmount) -> Session? {
        let now = Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
        return decode(id: id, value: value, expiresAt: now + max(0, remaining.nanoseconds / 1_000_000), now: now)
    }

    public func peek(_ token: SessionToken) async throws(SessionError) -> Session? {
        try await peek(token.sessionID, tag: token.tag)
    }

    public func session(_ id: SessionID, of user: UserID) async throws(SessionError) -> Session? {
        guard let session = try await peek(id, tag: user.tag), session.userID == user else { return nil }
        return session
    }

    public func isLive(_ id: SessionID, of user: UserID) async throws(SessionError) -> Bool {
        let key = keys.session(id, tag: user.tag)
        return try await withStore { try await redis.exists(key) } == 1
    }

    /// 1 EVALSHA, read-only: the deadline stays where it is.
    private func peek(_ id: SessionID, tag: ShardTag) async throws(SessionError) -> Session? {
        let reply = try await run(Self.peekScript, keys: [keys.session(id, tag: tag)], arguments: [])
        guard let fields = reply.array, fields.count == 3, let value = fields[0].bytes, let now = fields[1].int, let deadline = fields[2].int
        else { return nil }
        return decode(id: id, value: value, expiresAt: deadline, now: now)
    }

    public func revoke(_ session: SessionID, of user: UserID, ending: SessionEnd) async throws(SessionError) -> Bool {
        let key = keys.session(session, tag: user.tag)
        let event = LifecycleEvent(.sessionEnded, user: user, session: session, reason: ending.reason.rawValue, origin: ending.origin)
        let reply = try await run(
            Self.revokeScript, keys: [keys.sessionIndex(user), key] + events.scriptKeys(for: user),
            arguments: [session.bytes] + events.scriptArguments(event), durable: true)
        await events.moveOutbox(user.tag)
        // Redis tells every instance's cache, this one's too; this one is told now, before the caller hears "done".
        nearCache?.invalidate(.keys([key]))
        if reply.int == 1 { events.count(.sessionEnded) }
        return reply.int == 1
    }

    public func revokeAll(for user: UserID, ending: SessionEnd) async throws(SessionError) {
        let prefix = keys.sessionKeyPrefix(user.tag)
        let event = LifecycleEvent(.sessionEnded, user: user, reason: ending.reason.rawValue, origin: ending.origin)
        let reply = try await run(
            Self.revokeAllScript, keys: [keys.sessionIndex(user)] + events.scriptKeys(for: user), arguments: [prefix] + events.scriptArguments(event),
            durable: true)
        await events.moveOutbox(user.tag)
        let members = reply.array ?? []
        nearCache?.invalidate(.keys(members.compactMap { $0.bytes.map { prefix + $0 } }))
        events.count(.sessionEnded, members.count)
    }

    public func sessions(for user: UserID, after cursor: SessionCursor?, limit: Int) async throws(SessionError) -> SessionPage {
        let reply = try await run(
            Self.listScript, keys: [keys.sessionIndex(user)],
            arguments: [
                keys.sessionKeyPrefix(user.tag), max(1, limit), cursor.map { String($0.score) } ?? "", cursor?.id.bytes ?? [],
                configuration.maxSessionsPerUser,
            ]
        )
        guard let fields = reply.array, fields.count == 3, let now = fields[0].int, let entries = fields[1].array else {
            return SessionPage(sessions: [], next: nil)
        }
        var sessions: [Session] = []
        var last: SessionCursor?
        var index = 0
        while index + 3 < entries.count {
            defer { index += 4 }
            guard let idBytes = entries[index].bytes, idBytes.count == 16, let value = entries[index + 1].bytes,
                let expiresAt = entries[index + 2].int, let score = entries[index + 3].string.flatMap({ Int64($0) })
            else { continue }
            let id = SessionID(bytes: idBytes)
            last = SessionCursor(score: score, id: id)
            if let session = decode(id: id, value: value, expiresAt: expiresAt, now: now) { sessions.append(session) }
        }
        return SessionPage(sessions: sessions.sorted { $0.createdAt < $1.createdAt }, next: fields[2].int == 1 ? last : nil)
    }

    /// Runs a script, mapping the client's failures to the core's. `durable`: a revocation, acknowledged only once
    /// the replicas Redis is configured to wait for have it (see `RedisClient.evaluate`).
    func run(_ script: RedisScript, keys: [any RESPArgument], arguments: [any RESPArgument], durable: Bool = false) async throws(SessionError)
        -> RESPValue
    {
        try await withStore { try await redis.evaluate(script, keys: keys, arguments: arguments, durable: durable) }
    }

    /// A big-endian 6-byte millisecond timestamp from a session value.
    private static func int48(_ bytes: ArraySlice<UInt8>) -> Int64 {
        bytes.reduce(Int64(0)) { $0 << 8 | Int64($1) }
    }

    /// The top bit of the 6-byte creation time: the login was proved with a second factor (`AuthenticationLevel`). 47
    /// bits of milliseconds last until the year 6429; the flag costs no byte, so the near cache and the fast path
    /// carry it in the same 28 bytes.
    static let secondFactorBit: Int64 = 1 << 47

    private func decode(id: SessionID, value: [UInt8], expiresAt: Int64, now: Int64) -> Session? {
        guard value.count >= 28 else { return nil }
        let absolute = Self.int48(value[0..<6])
        let stamped = Self.int48(value[6..<12])
        let created = stamped & (Self.secondFactorBit - 1)
        let userID = UserID(bytes: value[12..<28])
        // A renewal sets the TTL to idle + touch interval, so the last renewal is the deadline minus that (exact while
        // the deadline is not capped by the absolute one); the last use is at most one touch interval later.
        let lastSeen = max(created, min(now, expiresAt - renewalMilliseconds))
        return Session(
            id: id, userID: userID, createdAt: .milliseconds(created), expiresAt: .milliseconds(min(expiresAt, absolute)),
            absoluteExpiresAt: .milliseconds(absolute), lastSeenAt: .milliseconds(lastSeen), metadata: SessionMetadata(stored: value[28...]),
            level: stamped & Self.secondFactorBit != 0 ? .secondFactor : .password
        )
    }
}

extension Date {
    static func milliseconds(_ value: Int64) -> Date { Date(timeIntervalSince1970: Double(value) / 1000) }
}

extension RedisSessionStore {
    // Each script states its keys (KEYS) and arguments (ARGV). `now` is Redis' clock, in milliseconds.

    /// KEYS: session, index, account state. ARGV: user ID (16 bytes), idle ms, absolute ms, session ID (16 bytes),
    /// session key prefix, max sessions per user, the account state the login read before checking the password (`*`:
    /// any), the session's metadata (`SessionMetadata`, stored after its 28 bytes; may be empty), 1 when a second factor
    /// proved the login (the creation time's top bit: `secondFactorBit`); then the events' keys and arguments
    /// (`Lua.events`: `session.created`, and `session.ended` `evicted` per session the cap ends). Returns {created, idle deadline}; nil when the
    /// session key already exists; -1 when the account is disabled or being deleted; -2 when its credentials changed
    /// since the login read the state.
    static let createScript = RedisScript(
        name: "create",
        Lua.redisTime + Lua.events + """
            local state = redis.call('GET', KEYS[3]) or '0'
            local mark = string.sub(state, 1, 1)
            if mark == 'd' or mark == 'x' then return -1 end
            if ARGV[7] ~= '*' and state ~= ARGV[7] then return -2 end
            local now = redisTime()
            -- Creation times never tie within a user: a login in the same millisecond as the user's latest session is
            -- dated a millisecond later, so the cap below always knows which session is the oldest. (The latest
            -- session has the highest score: absolute expiry = creation + the absolute timeout.)
            local top = redis.call('ZRANGE', KEYS[2], '+inf', '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, 1, 'WITHSCORES')
            if top[2] then
                for _, id in ipairs(redis.call('ZRANGE', KEYS[2], top[2], top[2], 'BYSCORE')) do
                    local latest = redis.call('GET', ARGV[5] .. id)
                    if latest then
                        local created = struct.unpack('>I6', latest, 7) % 140737488355328
                        if created >= now then now = created + 1 end
                    end
                end
            end
            local idle = tonumber(ARGV[2])
            local absolute = now + tonumber(ARGV[3])
            local ttl = math.min(idle, absolute - now)
            local stamped = now
            if ARGV[9] == '1' then stamped = now + 140737488355328 end
            local value = struct.pack('>I6I6', absolute, stamped) .. ARGV[1] .. ARGV[8]
            if not redis.call('SET', KEYS[1], value, 'PX', ttl, 'NX') then return nil end
            if eventTemplate ~= '' then
                local origin = cjson.decode(eventTemplate)
                emit({new_device = isNewDevice(origin.ip, origin.device)})
            end
            redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. math.floor(now / 1000))
            redis.call('ZADD', KEYS[2], math.ceil(absolute / 1000), ARGV[4])
            local evicted = 0
            local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
            if extra > 0 then
                -- Over the cap: end the oldest sessions, never the new one. Index scores are whole seconds, so the
                -- candidates are every session up to the extra-th lowest score, ordered by their creation time.
                local bound = redis.call('ZRANGE', KEYS[2], extra - 1, extra - 1, 'WITHSCORES')[2]
                local aged = {}
                for _, id in ipairs(redis.call('ZRANGE', KEYS[2], '-inf', bound, 'BYSCORE')) do
                    if id ~= ARGV[4] then
                        local old = redis.call('GET', ARGV[5] .. id)
                        table.insert(aged, {id, old and struct.unpack('>I6', old, 7) % 140737488355328 or 0})
                    end
                end
                table.sort(aged, function(a, b) return a[2] < b[2] or (a[2] == b[2] and a[1] < b[1]) end)
                for i = 1, math.min(extra, #aged) do
                    redis.call('ZREM', KEYS[2], aged[i][1])
                    if redis.call('DEL', ARGV[5] .. aged[i][1]) == 1 then
                        emit({type = 'session.ended', reason = 'evicted', session_id = hexID(aged[i][1])})
                        evicted = evicted + 1
                    end
                end
            end
            local indexDeadline = redis.call('PEXPIRETIME', KEYS[2])
            if indexDeadline < absolute then redis.call('PEXPIREAT', KEYS[2], absolute) end
            return {now, now + ttl, evicted}
            """
    )

    /// KEYS: session. ARGV: renewal TTL ms (idle + touch interval), idle ms. Returns {the session's 28 bytes, now, ttl},
    /// or nil (its metadata is not read: a verification never needs it).
    /// Renews only when due — the TTL has fallen to the idle timeout, i.e. no renewal within the last touch interval —
    /// and only to extend it: most uses write nothing (nothing to replicate, no cached copy invalidated).
    static let authenticateScript = RedisScript(
        name: "authenticate",
        Lua.redisTime + """
            local value = redis.call('GETRANGE', KEYS[1], 0, 27)
            if #value < 28 then return nil end
            local now = redisTime()
            local remaining = struct.unpack('>I6', value) - now
            if remaining <= 0 then
                redis.call('DEL', KEYS[1])
                return nil
            end
            local ttl = redis.call('PTTL', KEYS[1])
            local renewed = math.min(tonumber(ARGV[1]), remaining)
            if ttl <= tonumber(ARGV[2]) and renewed > ttl then
                redis.call('PEXPIRE', KEYS[1], renewed)
                ttl = renewed
            end
            return {value, now, ttl}
            """
    )

    /// KEYS: session. Returns {value, now, idle deadline} without renewing anything, or nil.
    static let peekScript = RedisScript(
        name: "peek",
        Lua.redisTime + """
            local value = redis.call('GET', KEYS[1])
            if not value then return nil end
            local now = redisTime()
            if struct.unpack('>I6', value) <= now then return nil end
            return {value, now, redis.call('PEXPIRETIME', KEYS[1])}
            """
    )

    /// KEYS: index, session, then the events' (`Lua.events`). ARGV: session ID, then the events' (its `session.ended`).
    /// Returns 1 when a live session of that user was ended.
    static let revokeScript = RedisScript(
        name: "revoke",
        Lua.events + """
            if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
            redis.call('ZREM', KEYS[1], ARGV[1])
            local ended = redis.call('DEL', KEYS[2])
            if ended == 1 then emit({}) end
            return ended
            """
    )

    /// KEYS: index, then the events'. ARGV: session key prefix, then the events' (`session.ended` without its
    /// `session_id`, added per session). Ends every session in the index, and the index; returns the session IDs.
    static let revokeAllScript = RedisScript(
        name: "revoke_all",
        Lua.events + """
            local members = redis.call('ZRANGE', KEYS[1], 0, -1)
            for _, id in ipairs(members) do
                if redis.call('DEL', ARGV[1] .. id) == 1 then emit({session_id = hexID(id)}) end
            end
            redis.call('DEL', KEYS[1])
            return members
            """
    )

    /// KEYS: index. ARGV: session key prefix, limit, cursor score ('' from the start), cursor ID, max sessions per
    /// user. Prunes ended sessions; returns {now, {id, value, deadline, score, …}, more (1 or 0)}. Reads at most
    /// limit + 1 + max entries: the cursor's equal-score predecessors are at most a user's sessions.
    static let listScript = RedisScript(
        name: "list",
        Lua.redisTime + """
            local now = redisTime()
            redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. math.floor(now / 1000))
            local limit = tonumber(ARGV[2])
            local from = '-inf'
            if ARGV[3] ~= '' then from = ARGV[3] end
            local entries = redis.call('ZRANGE', KEYS[1], from, '+inf', 'BYSCORE', 'WITHSCORES', 'LIMIT', 0, limit + 1 + tonumber(ARGV[5]))
            local result = {}
            local count = 0
            local more = 0
            for i = 1, #entries, 2 do
                local id, score = entries[i], entries[i + 1]
                if ARGV[3] == '' or tonumber(score) > tonumber(ARGV[3]) or id > ARGV[4] then
                    if count == limit then
                        more = 1
                        break
                    end
                    local key = ARGV[1] .. id
                    local value = redis.call('GET', key)
                    if value then
                        table.insert(result, id)
                        table.insert(result, value)
                        table.insert(result, redis.call('PEXPIRETIME', key))
                        table.insert(result, score)
                        count = count + 1
                    else
                        redis.call('ZREM', KEYS[1], id)
                    end
                end
            end
            return {now, result, more}
            """
    )
}
