import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Redis
import TestSupport
import Testing

@testable import SessionCore

/// The cache's own rules, without Redis: each interleaving forced by hand.
@Suite struct NearCacheTests {
    static let key: [UInt8] = Array("ss:{0001}s-key".utf8)
    static let value = [UInt8](repeating: 7, count: 28)

    @Test func anInvalidationThatOvertakesItsReadVoidsIt() {
        let cache = NearCache()
        let now = NIODeadline.now()
        // The read is sent, the invalidation arrives, then the reply: the reply serves its request and is not kept.
        let ticket = cache.beginRead(Self.key)
        cache.invalidate(.keys([Self.key]))
        #expect(!cache.completeRead(Self.key, ticket: ticket, value: Self.value, deadline: now + .seconds(60), fetchedAt: now))
        #expect(cache.entry(Self.key, now: now) == nil)
        // The same with a flush (tracking lost) in between.
        let second = cache.beginRead(Self.key)
        cache.invalidate(.all)
        #expect(!cache.completeRead(Self.key, ticket: second, value: Self.value, deadline: now + .seconds(60), fetchedAt: now))
        // A later read of the same key wins over an older one still in flight.
        let older = cache.beginRead(Self.key)
        let newer = cache.beginRead(Self.key)
        #expect(!cache.completeRead(Self.key, ticket: older, value: Self.value, deadline: now + .seconds(60), fetchedAt: now))
        #expect(cache.completeRead(Self.key, ticket: newer, value: Self.value, deadline: now + .seconds(60), fetchedAt: now))
        #expect(cache.entry(Self.key, now: now)?.value == Self.value)
        cache.invalidate(.keys([Self.key]))
        #expect(cache.entry(Self.key, now: now) == nil && cache.count == 0)
    }

    @Test func anEntryEndsAtItsDeadlineAndAtItsMaximumAge() {
        let cache = NearCache(maxAge: .seconds(10))
        let now = NIODeadline.now()
        cache.completeRead(Self.key, ticket: cache.beginRead(Self.key), value: Self.value, deadline: now + .seconds(2), fetchedAt: now)
        #expect(cache.entry(Self.key, now: now + .milliseconds(1999)) != nil)
        #expect(cache.entry(Self.key, now: now + .seconds(2)) == nil)
        cache.completeRead(Self.key, ticket: cache.beginRead(Self.key), value: Self.value, deadline: now + .seconds(60), fetchedAt: now)
        #expect(cache.entry(Self.key, now: now + .milliseconds(9999)) != nil)
        #expect(cache.entry(Self.key, now: now + .seconds(10)) == nil)
    }

    @Test func clockEvictionKeepsRecentlyUsedEntries() {
        let cache = NearCache(maxEntries: 4)
        let now = NIODeadline.now()
        func put(_ index: Int) {
            let key = Array("k\(index)".utf8)
            cache.completeRead(key, ticket: cache.beginRead(key), value: Self.value, deadline: now + .seconds(60), fetchedAt: now)
        }
        for index in 0..<4 { put(index) }
        // k0 and k2 are used: the next two insertions evict k1 and k3, the unused ones.
        _ = cache.entry(Array("k0".utf8), now: now)
        _ = cache.entry(Array("k2".utf8), now: now)
        put(4)
        put(5)
        #expect(cache.count == 4)
        #expect(cache.entry(Array("k1".utf8), now: now) == nil && cache.entry(Array("k3".utf8), now: now) == nil)
        for kept in [0, 2, 4, 5] { #expect(cache.entry(Array("k\(kept)".utf8), now: now) != nil, "k\(kept)") }
    }
}

/// The near cache against real Redis: two "instances" (two clients, two caches) on a private redis-server, which
/// these tests flush, kill, restart and reconfigure.
@Suite struct NearCacheCoherenceTests {
    /// An instance: a client whose invalidations feed its cache, and the store over both.
    struct Instance: Sendable {
        let redis: RedisClient
        let cache: NearCache
        let store: RedisSessionStore
    }

    static func withInstances(
        _ server: RedisServerProcess, _ sessions: SessionConfiguration, _ body: @Sendable ([Instance], RedisClient) async throws -> Void
    ) async throws {
        var configuration = try RedisConfiguration(url: server.url)
        configuration.commandTimeout = .milliseconds(500)
        configuration.connectTimeout = .milliseconds(500)
        try await withInstances(configuration, sessions, body)
    }

    static func withInstances(
        _ configuration: RedisConfiguration, _ sessions: SessionConfiguration, _ body: @Sendable ([Instance], RedisClient) async throws -> Void
    ) async throws {
        let instances = (0..<2).map { _ in
            let cache = NearCache()
            let redis = RedisClient(configuration: configuration, onInvalidation: { cache.invalidate($0) })
            return Instance(redis: redis, cache: cache, store: RedisSessionStore(redis: redis, configuration: sessions, nearCache: cache))
        }
        try await instances[0].redis.withRunning {
            try await instances[1].redis.withRunning {
                try await TestRedis.withClient(configuration) { admin in try await body(instances, admin) }
            }
        }
    }

    static func sessions(idle: Duration = .seconds(1800), absolute: Duration = .seconds(86400), touch: Duration? = nil) -> SessionConfiguration {
        var configuration = SessionConfiguration(idleTimeout: idle, absoluteTimeout: absolute, keyPrefix: "nc\(UUID().uuidString.prefix(6)):")
        configuration.touchInterval = touch
        return configuration
    }

    /// Uses the token on `instance` until the session stays answered from its cache: tracking takes a moment to come
    /// up, and a fresh session's first use renews it (its TTL is the idle timeout), whose invalidation drops the first
    /// copy — stable is a copy read after that renewal (more than the idle timeout left), or one that needs none (a
    /// session whose absolute expiry comes first).
    static func warm(_ instance: Instance, _ token: SessionToken) async throws {
        let idle = TimeAmount(instance.store.configuration.idleTimeout)
        let renews = instance.store.configuration.absoluteTimeout > instance.store.configuration.idleTimeout
        for _ in 0..<300 {
            #expect(try await instance.store.authenticate(token) != nil)
            if let remaining = instance.store.cachedRemaining(token), remaining > idle || !renews { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("the session never got cached")
    }

    /// Waits until `condition` holds (an invalidation arriving), at most a second.
    static func eventually(_ condition: () -> Bool) async throws -> Bool {
        for _ in 0..<200 {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(5))
        }
        return condition()
    }

    @Test func aRevocationOnOneInstanceIsRefusedByTheOtherAtOnce() async throws {
        let server = try await RedisServerProcess.started()
        try await Self.withInstances(server, Self.sessions()) { instances, _ in
            let (a, b) = (instances[0], instances[1])
            let user = UserID.random()
            var tokens: [SessionToken] = []
            for _ in 0..<3 { tokens.append(try await a.store.create(for: user).token) }
            let other = try await a.store.create(for: UserID.random()).token
            for token in tokens + [other] { try await Self.warm(b, token) }
            // Logout (one session): refused by B as soon as A's call returned, and by A at once.
            #expect(try await a.store.revoke(tokens[0].sessionID, of: user))
            #expect(try await Self.eventually { !b.store.isCached(tokens[0]) })
            #expect(try await b.store.authenticate(tokens[0]) == nil)
            #expect(try await a.store.authenticate(tokens[0]) == nil)
            // Logout everywhere: every session of the user, on both; another user's stays cached.
            try await a.store.revokeAll(for: user)
            #expect(try await Self.eventually { !b.store.isCached(tokens[1]) && !b.store.isCached(tokens[2]) })
            for token in tokens { #expect(try await b.store.authenticate(token) == nil) }
            #expect(b.store.isCached(other))
            #expect(try await b.store.authenticate(other) != nil)
        }
        await server.stop()
    }

    /// The shared Sentinel and Cluster shapes of scripts/test (nothing is flushed or reconfigured here): a listener per
    /// master, and a logout on one instance refused by the other.
    @Test(arguments: ["sentinel", "cluster"])
    func everyTopologyKeepsTheCacheCoherent(shape: String) async throws {
        let configuration = try shape == "sentinel" ? TestRedis.sentinelConfiguration() : TestRedis.clusterConfiguration()
        try await Self.withInstances(configuration, Self.sessions()) { instances, _ in
            let (a, b) = (instances[0], instances[1])
            var sessions: [(SessionToken, UserID)] = []
            for _ in 0..<12 {
                let user = UserID.random()
                sessions.append((try await a.store.create(for: user).token, user))
            }
            for (token, _) in sessions { try await Self.warm(b, token) }
            for (token, user) in sessions {
                #expect(try await a.store.revoke(token.sessionID, of: user))
                #expect(try await Self.eventually { !b.store.isCached(token) })
                #expect(try await b.store.authenticate(token) == nil)
            }
        }
    }

    @Test func flushAllEmptiesEveryCache() async throws {
        let server = try await RedisServerProcess.started()
        try await Self.withInstances(server, Self.sessions()) { instances, admin in
            let token = try await instances[0].store.create(for: UserID.random()).token
            try await Self.warm(instances[1], token)
            _ = try await admin.send("FLUSHALL")
            #expect(try await Self.eventually { instances[1].cache.count == 0 })
            #expect(try await instances[1].store.authenticate(token) == nil)
        }
        await server.stop()
    }

    @Test func aKilledInvalidationConnectionNeverLeavesAStaleAccept() async throws {
        let server = try await RedisServerProcess.started()
        try await Self.withInstances(server, Self.sessions()) { instances, admin in
            let (a, b) = (instances[0], instances[1])
            let user = UserID.random()
            let token = try await a.store.create(for: user).token
            try await Self.warm(b, token)
            // Kill every subscriber (the listeners of both instances): from now on Redis can tell B nothing. B notices
            // when its event loop reads the close (a ping timeout would catch a silent partition), empties its cache,
            // and verifies uncached until a new pair is up — so a revocation now is refused.
            let clients = try await admin.send("CLIENT", "LIST").string ?? ""
            let listeners = clients.split(separator: "\n").filter { $0.contains(" sub=1 ") }.compactMap { line in
                line.split(separator: " ").first { $0.hasPrefix("id=") }.map { String($0.dropFirst(3)) }
            }
            #expect(listeners.count == 2, "\(clients)")
            let killed = ContinuousClock.now
            for id in listeners { _ = try await admin.send("CLIENT", "KILL", "ID", id) }
            #expect(try await Self.eventually { !b.store.isCached(token) })
            let noticed = ContinuousClock.now - killed
            #expect(noticed < .milliseconds(500), "\(noticed)")
            #expect(try await a.store.revoke(token.sessionID, of: user))
            #expect(try await b.store.authenticate(token) == nil)
            // Tracking comes back by itself, and caching with it.
            let fresh = try await a.store.create(for: user).token
            try await Self.warm(b, fresh)
        }
        await server.stop()
    }

    @Test func aRedisRestartEmptiesTheCache() async throws {
        let server = try await RedisServerProcess.started()
        try await Self.withInstances(server, Self.sessions()) { instances, _ in
            let token = try await instances[0].store.create(for: UserID.random()).token
            try await Self.warm(instances[1], token)
            await server.stop()
            #expect(try await Self.eventually { instances[1].cache.count == 0 })
            try await server.start()  // no persistence: the session is gone
            for _ in 0..<200 {
                if let answer = try? await instances[1].store.authenticate(token) {
                    #expect(answer == nil)
                    break
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(!instances[1].store.isCached(token))
        }
        await server.stop()
    }

    @Test func evictionsFromATinyTrackingTableAreInvalidations() async throws {
        let server = try await RedisServerProcess.started(arguments: ["--tracking-table-max-keys", "5"])
        try await Self.withInstances(server, Self.sessions()) { instances, _ in
            let (a, b) = (instances[0], instances[1])
            let user = UserID.random()
            var tokens: [SessionToken] = []
            for _ in 0..<20 { tokens.append(try await a.store.create(for: user).token) }
            for token in tokens { _ = try await b.store.authenticate(token) }
            // Redis tracks at most 5 keys; evicting one from the table tells its clients to drop it.
            #expect(try await Self.eventually { b.cache.count <= 6 }, "\(b.cache.count) cached")
            try await a.store.revokeAll(for: user)
            for token in tokens { #expect(try await b.store.authenticate(token) == nil) }
        }
        await server.stop()
    }

    @Test func theAbsoluteExpiryHoldsFromTheCache() async throws {
        let server = try await RedisServerProcess.started()
        try await Self.withInstances(server, Self.sessions(absolute: .milliseconds(1500))) { instances, _ in
            let (token, session) = try await instances[0].store.create(for: UserID.random())
            try await Self.warm(instances[1], token)
            // Each acceptance is dated by when its call began: the decision came after that, while a clock read after
            // the call returns also counts the task's wait to be resumed (10 ms once, on a loaded CI machine).
            var lastAccepted = Date.distantPast
            while Date() < session.absoluteExpiresAt + 0.7 {
                let asked = Date()
                if try await instances[1].store.authenticate(token) != nil { lastAccepted = asked }
                try await Task.sleep(for: .milliseconds(10))
            }
            // Accepted until shortly before the absolute expiry (Redis' clock and ours are this machine's), never after
            // it: the cache's deadline is Redis' TTL, read at the read, which Redis caps at the absolute expiry. (Redis
            // works in whole milliseconds: 2 ms of slack.)
            #expect(lastAccepted <= session.absoluteExpiresAt + 0.002, "\(lastAccepted.timeIntervalSince(session.absoluteExpiresAt))")
            #expect(lastAccepted > session.absoluteExpiresAt - 0.5, "\(lastAccepted.timeIntervalSince(session.absoluteExpiresAt))")
        }
        await server.stop()
    }

    /// The documented bound: with touch interval I, a session lives at least the idle timeout after its last use and
    /// at most idle + I.
    @Test func theIdleExpiryStaysWithinTheDocumentedBound() async throws {
        let server = try await RedisServerProcess.started()
        let idle = Duration.milliseconds(1000)
        let touch = Duration.milliseconds(400)
        try await Self.withInstances(server, Self.sessions(idle: idle, touch: touch)) { instances, _ in
            let (a, b) = (instances[0], instances[1])
            // Kept busy on alternating instances for 3 s (3 idle timeouts): never refused.
            let busy = try await a.store.create(for: UserID.random()).token
            let start = ContinuousClock.now
            var round = 0
            while ContinuousClock.now - start < .seconds(3) {
                #expect(try await [a, b][round % 2].store.authenticate(busy) != nil, "round \(round)")
                round += 1
                try await Task.sleep(for: .milliseconds(150))
            }
            // Used once, then left: alive just under the idle timeout later, dead past idle + I.
            let alive = try await a.store.create(for: UserID.random()).token
            let dead = try await a.store.create(for: UserID.random()).token
            // The uses happen between `used` and `settled` (their renewals are sent after the reply, so a little later):
            // the bound is checked from the safe end of each.
            let used = ContinuousClock.now
            #expect(try await b.store.authenticate(alive) != nil)
            #expect(try await b.store.authenticate(dead) != nil)
            try await Task.sleep(for: .milliseconds(50))
            let settled = ContinuousClock.now
            try await Task.sleep(until: used + idle - .milliseconds(150))
            #expect(try await b.store.authenticate(alive) != nil)
            try await Task.sleep(until: settled + idle + touch + .milliseconds(150))
            #expect(try await b.store.authenticate(dead) == nil)
            #expect(try await a.store.authenticate(dead) == nil)
        }
        await server.stop()
    }
}
