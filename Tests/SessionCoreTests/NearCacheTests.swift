// Over 300 lines: the near cache's unit tests and its coherence tests on private redis-servers share the instance
// fixtures (two stores, one admin client) they need.

import Atomics
import Dispatch
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Redis
import TestSupport
import Testing

@testable import SessionCore

/// The cache's own rules, without Redis: each interleaving forced by hand.
@Suite struct NearCacheTests {
    static let key: [UInt8] = Array("ss:{0001}s-key".utf8)
    static let value = [UInt8](repeating: 7, count: 28)
    static let source = TrackingSource(id: 1)

    /// A cache whose tracking source 1 holds a lease of an hour from `now`.
    static func confirmedCache(maxEntries: Int = 100_000, maxAge: TimeAmount = .seconds(10), now: NIODeadline) -> NearCache {
        let cache = NearCache(maxEntries: maxEntries, maxAge: maxAge)
        cache.invalidate(.confirmed(source: source, until: now + .hours(1)))
        return cache
    }

    static func put(_ cache: NearCache, _ key: [UInt8], deadline: NIODeadline, now: NIODeadline) -> NearCache.StateMachine.Completion {
        cache.completeRead(key, ticket: cache.beginRead(key), value: value, deadline: deadline, fetchedAt: now, source: source, now: now)
    }

    @Test func anInvalidationThatOvertakesItsReadVoidsIt() {
        let now = NIODeadline.now()
        let cache = Self.confirmedCache(now: now)
        let ticket = cache.beginRead(Self.key)
        cache.invalidate(.keys([Self.key]))
        #expect(
            cache.completeRead(
                Self.key, ticket: ticket, value: Self.value, deadline: now + .seconds(60), fetchedAt: now, source: Self.source, now: now) == .usedOnce
        )
        #expect(cache.entry(Self.key, now: now) == nil)
        // A flush voids reads in progress too.
        let second = cache.beginRead(Self.key)
        cache.invalidate(.all)
        #expect(
            cache.completeRead(
                Self.key, ticket: second, value: Self.value, deadline: now + .seconds(60), fetchedAt: now, source: Self.source, now: now) == .usedOnce
        )
        // Of two overlapping reads, only the later one is kept.
        let older = cache.beginRead(Self.key)
        let newer = cache.beginRead(Self.key)
        #expect(
            cache.completeRead(
                Self.key, ticket: older, value: Self.value, deadline: now + .seconds(60), fetchedAt: now, source: Self.source, now: now) == .usedOnce)
        #expect(
            cache.completeRead(
                Self.key, ticket: newer, value: Self.value, deadline: now + .seconds(60), fetchedAt: now, source: Self.source, now: now) == .kept)
        #expect(cache.entry(Self.key, now: now)?.value == Self.value)
        cache.invalidate(.keys([Self.key]))
        #expect(cache.entry(Self.key, now: now) == nil && cache.count == 0)
    }

    /// The defect the model test was written for: a flush used to reset the ticket counter, so a read begun before it
    /// could complete with the number handed to a read begun after it, and its pre-flush value was kept.
    @Test func aReadBegunBeforeAFlushIsNeverKeptAfterIt() {
        let now = NIODeadline.now()
        let cache = Self.confirmedCache(now: now)
        let before = cache.beginRead(Self.key)
        cache.invalidate(.all)
        let after = cache.beginRead(Self.key)
        #expect(before != after)
        #expect(
            cache.completeRead(
                Self.key, ticket: before, value: Self.value, deadline: now + .seconds(60), fetchedAt: now, source: Self.source, now: now) == .usedOnce
        )
        #expect(cache.entry(Self.key, now: now) == nil)
    }

    @Test func entriesAreServedOnlyWithinTheirConnectionsLease() {
        let now = NIODeadline.now()
        let cache = NearCache()
        // No lease yet: a reply is not to be used at all.
        #expect(Self.put(cache, Self.key, deadline: now + .seconds(60), now: now) == .untrusted)
        cache.invalidate(.confirmed(source: Self.source, until: now + .milliseconds(500)))
        #expect(Self.put(cache, Self.key, deadline: now + .seconds(60), now: now) == .kept)
        #expect(cache.entry(Self.key, now: now + .milliseconds(499)) != nil)
        // The lease ran out: not served, though nothing invalidated it.
        #expect(cache.entry(Self.key, now: now + .milliseconds(500)) == nil)
        // A value read under another (ended) connection is never served under a new one.
        #expect(Self.put(cache, Self.key, deadline: now + .seconds(60), now: now) == .kept)
        cache.invalidate(.ended(source: Self.source))
        #expect(cache.count == 0)
        #expect(Self.put(cache, Self.key, deadline: now + .seconds(60), now: now) == .untrusted)
    }

    @Test func aCappedSessionIsTouchedAtMostOncePerTouchInterval() {
        let now = NIODeadline.now()
        let cache = Self.confirmedCache(now: now)
        // Its deadline (capped by the absolute expiry) is below the idle timeout: a renewal is due, and stays due.
        _ = Self.put(cache, Self.key, deadline: now + .seconds(5), now: now)
        var touches = 0
        for step in 0..<100 {
            let at = now + .milliseconds(Int64(step) * 40)
            if cache.lookup(Self.key, now: at, touchDue: .seconds(10), touchInterval: .seconds(1))?.touch == true { touches += 1 }
        }
        // 4 s of hits at 25 per second: the read itself counts as the first touch, then one per second.
        #expect(touches == 3, "\(touches)")
    }

    @Test func anEntryEndsAtItsDeadlineAndAtItsMaximumAge() {
        let now = NIODeadline.now()
        let cache = Self.confirmedCache(maxAge: .seconds(10), now: now)
        _ = Self.put(cache, Self.key, deadline: now + .seconds(2), now: now)
        #expect(cache.entry(Self.key, now: now + .milliseconds(1999)) != nil)
        #expect(cache.entry(Self.key, now: now + .seconds(2)) == nil)
        _ = Self.put(cache, Self.key, deadline: now + .seconds(60), now: now)
        #expect(cache.entry(Self.key, now: now + .milliseconds(9999)) != nil)
        #expect(cache.entry(Self.key, now: now + .seconds(10)) == nil)
    }

    @Test func clockEvictionKeepsRecentlyUsedEntries() {
        let now = NIODeadline.now()
        let cache = Self.confirmedCache(maxEntries: 4, now: now)
        func put(_ index: Int) {
            _ = Self.put(cache, Array("k\(index)".utf8), deadline: now + .seconds(60), now: now)
        }
        for index in 0..<4 { put(index) }
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
        // Short enough that a stopped server is noticed quickly, long enough for a loaded CI machine (500 ms timed out).
        configuration.commandTimeout = .seconds(2)
        configuration.connectTimeout = .seconds(2)
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
        try await instances[0].redis.withRunning(waitingUpTo: .seconds(20)) {
            try await instances[1].redis.withRunning(waitingUpTo: .seconds(20)) {
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
            #expect(try await a.store.revoke(tokens[0].sessionID, of: user, ending: SessionEnd(.logout)))
            #expect(!b.store.isCached(tokens[0]))
            #expect(try await b.store.authenticate(tokens[0]) == nil)
            #expect(try await a.store.authenticate(tokens[0]) == nil)
            // Logout everywhere: every session of the user, on both; another user's stays cached.
            try await a.store.revokeAll(for: user, ending: SessionEnd(.revokedAll))
            #expect(!b.store.isCached(tokens[1]) && !b.store.isCached(tokens[2]))
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
        let configuration = try await shape == "sentinel" ? TestRedis.sentinelConfiguration() : TestRedis.clusterConfiguration()
        try await Self.withInstances(configuration, Self.sessions()) { instances, _ in
            let (a, b) = (instances[0], instances[1])
            var sessions: [(SessionToken, UserID)] = []
            for _ in 0..<12 {
                let user = UserID.random()
                sessions.append((try await a.store.create(for: user).token, user))
            }
            for (token, _) in sessions { try await Self.warm(b, token) }
            for (token, user) in sessions {
                #expect(try await a.store.revoke(token.sessionID, of: user, ending: SessionEnd(.logout)))
                #expect(!b.store.isCached(token))
                #expect(try await b.store.authenticate(token) == nil)
            }
        }
    }

    /// The race the cache lost under load: the invalidation is in this host's kernel when the revoking call returns,
    /// but the listener's event loop has not read it (busy, preempted — here: held), and a request for the revoked
    /// session arrives on another thread. The hit must see the unread bytes and ask Redis.
    @Test func anInvalidationNotYetReadIsNeverOvertakenByAHit() async throws {
        let server = try await RedisServerProcess.started()
        let configuration = try RedisConfiguration(url: server.url)
        // B's own single loop, so that holding it holds its listener.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let cache = NearCache()
        let redis = RedisClient(configuration: configuration, eventLoopGroup: group, onInvalidation: { cache.invalidate($0) })
        let b = Instance(redis: redis, cache: cache, store: RedisSessionStore(redis: redis, configuration: Self.sessions(), nearCache: cache))
        try await Self.withInstances(server, b.store.configuration) { instances, _ in
            try await redis.withRunning(waitingUpTo: .seconds(20)) {
                let a = instances[0]
                let user = UserID.random()
                let token = try await a.store.create(for: user).token
                try await Self.warm(b, token)
                // Hold B's loop (a test's stand-in for a starved or preempted loop; nothing else runs on it).
                let holding = ManagedAtomic(false)
                let release = DispatchSemaphore(value: 0)
                group.next().execute {
                    holding.store(true, ordering: .sequentiallyConsistent)
                    release.wait()
                }
                while !holding.load(ordering: .sequentiallyConsistent) { try await Task.sleep(for: .milliseconds(1)) }
                #expect(try await a.store.revoke(token.sessionID, of: user, ending: SessionEnd(.logout)))
                // The entry is still there (nothing has read the invalidation)…
                #expect(cache.count == 1)
                // …and is not served: the listener's socket holds bytes its pipeline has not handled.
                #expect(!b.store.isCached(token))
                release.signal()
                #expect(try await Self.eventually { cache.count == 0 })
                #expect(try await b.store.authenticate(token) == nil)
            }
        }
        try await group.shutdownGracefully()
        await server.stop()
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
            for id in listeners { _ = try await admin.send("CLIENT", "KILL", "ID", id) }
            // How soon is the machine's business (0.7 s once beside a release build); that it empties before the
            // revocation below, and that the revocation is then refused, is the cache's.
            #expect(try await Self.eventually { !b.store.isCached(token) })
            #expect(try await a.store.revoke(token.sessionID, of: user, ending: SessionEnd(.logout)))
            #expect(try await b.store.authenticate(token) == nil)
            // Tracking comes back by itself, and caching with it.
            let fresh = try await a.store.create(for: user).token
            try await Self.warm(b, fresh)
        }
        await server.stop()
    }

    /// `CLIENT KILL` of the tracked readers only (flag `t`): their listeners stay subscribed and would hear nothing of the
    /// keys read on a new reader — the pair ends together, the cache empties, and a revocation is refused.
    @Test func killingOnlyTheTrackedReadersEndsTheirPairs() async throws {
        let server = try await RedisServerProcess.started()
        try await Self.withInstances(server, Self.sessions()) { instances, admin in
            let (a, b) = (instances[0], instances[1])
            let user = UserID.random()
            let token = try await a.store.create(for: user).token
            try await Self.warm(b, token)
            let clients = try await admin.send("CLIENT", "LIST").string ?? ""
            let readers = clients.split(separator: "\n").filter { line in
                line.split(separator: " ").contains { $0.hasPrefix("flags=") && $0.contains("t") }
            }.compactMap { line in line.split(separator: " ").first { $0.hasPrefix("id=") }.map { String($0.dropFirst(3)) } }
            // B's reader for sure (B is warm); A's too once its tracking is up.
            #expect(!readers.isEmpty, "\(clients)")
            for id in readers { _ = try await admin.send("CLIENT", "KILL", "ID", id) }
            #expect(try await Self.eventually { !b.store.isCached(token) })
            #expect(try await a.store.revoke(token.sessionID, of: user, ending: SessionEnd(.logout)))
            #expect(try await b.store.authenticate(token) == nil)
        }
        await server.stop()
    }

    /// A frozen node answers no ping: within one lease nothing it read is served, before any timeout notices, and a
    /// late answer after the thaw does not bring the old entries back.
    @Test func aFrozenNodeStopsServingTheCacheWithinTheLease() async throws {
        let server = try await RedisServerProcess.started()
        try await Self.withInstances(server, Self.sessions()) { instances, _ in
            let token = try await instances[0].store.create(for: UserID.random()).token
            try await Self.warm(instances[1], token)
            server.freeze()
            defer { server.thaw() }
            // 500 ms lease from the last answered ping's send time: past it, no entry is usable.
            try await Task.sleep(for: .milliseconds(600))
            #expect(!instances[1].store.isCached(token))
            server.thaw()
            try await Task.sleep(for: .milliseconds(200))
            #expect(!instances[1].store.isCached(token))
            // Tracking comes back by itself, confirmed anew.
            try await Self.warm(instances[1], token)
        }
        await server.stop()
    }

    /// A restart from an older snapshot: what Redis says afterwards is the truth. A session created after the snapshot is
    /// gone from Redis and must not be served from any cache once the old connection's lease is over; one in the snapshot
    /// is still valid. (Before that, a restart faster than the event loop reading the closed connection — seen on a
    /// loaded machine — can still be served for the rest of the lease: the README's one timing assumption.)
    @Test func aRestartFromAnOldSnapshotIsNotServedFromTheCache() async throws {
        let server = try await RedisServerProcess.started()
        try await Self.withInstances(server, Self.sessions()) { instances, admin in
            let (a, b) = (instances[0], instances[1])
            let kept = try await a.store.create(for: UserID.random()).token
            _ = try await admin.send("SAVE")
            let lost = try await a.store.create(for: UserID.random()).token
            try await Self.warm(b, kept)
            try await Self.warm(b, lost)
            let killed = ContinuousClock.now
            await server.kill()
            try await server.start()  // loads dump.rdb: `kept` only
            try await Task.sleep(until: killed + .milliseconds(550))  // the 500 ms lease, whenever the close was read
            var answered = false
            var lastError: (any Error)?
            for _ in 0..<500 {
                do {
                    #expect(try await b.store.authenticate(lost) == nil)
                    answered = true
                    break
                } catch {
                    lastError = error
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(answered, "\(String(describing: lastError))")
            #expect(!b.store.isCached(lost))
            #expect(try await b.store.authenticate(kept) != nil)
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
            var answered = false
            for _ in 0..<200 where !answered {
                do {
                    // (`try?` would flatten the Session? and `== nil` could never hold.)
                    let answer = try await instances[1].store.authenticate(token)
                    #expect(answer == nil)
                    answered = true
                } catch {
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
            #expect(answered)
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
            try await a.store.revokeAll(for: user, ending: SessionEnd(.revokedAll))
            for token in tokens { #expect(try await b.store.authenticate(token) == nil) }
        }
        await server.stop()
    }

    @Test func theAbsoluteExpiryHoldsFromTheCache() async throws {
        let server = try await RedisServerProcess.started()
        // 4 s: instances must connect, track and warm the session before it ends, and on a loaded CI machine (every
        // suite starting at once) that took over 1.5 s.
        try await Self.withInstances(server, Self.sessions(absolute: .seconds(4))) { instances, _ in
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
