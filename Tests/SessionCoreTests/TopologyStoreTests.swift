import Foundation
import TestSupport
import Testing

@testable import Redis
@testable import SessionCore

/// The session store on the shapes users scale onto: a Redis Cluster and a Sentinel-watched master.
@Suite struct TopologyStoreTests {
    private static func store(_ redis: RedisClient, maxSessionsPerUser: Int = 100) -> RedisSessionStore {
        RedisSessionStore(
            redis: redis, configuration: .init(keyPrefix: "t\(UUID().uuidString.prefix(8)):", maxSessionsPerUser: maxSessionsPerUser)
        )
    }

    @Test func sessionsOfTenThousandUsersSpreadOverEveryMasterAndEachVerifies() async throws {
        try await TestRedis.withClient(try await TestRedis.clusterConfiguration()) { (redis: RedisClient) async throws in
            let store = Self.store(redis)
            let users = (0..<10_000).map { _ in UserID.random() }
            let tokens = try await Self.createSessions(store, users)
            #expect(tokens.count == users.count)
            let shards = try #require(try await redis.send("CLUSTER", "SHARDS").array)
            let perMaster = Self.count(users.map { store.keys.sessionIndex($0) }, perMasterOf: shards)
            #expect(perMaster.count == 3, "users per master: \(perMaster)")
            #expect(perMaster.min() ?? 0 > 2_500, "users per master: \(perMaster)")
            var verified = 0
            for token in tokens {
                if try await store.authenticate(token) != nil { verified += 1 }
            }
            #expect(verified == users.count)
        }
    }

    /// How many of the keys each master of the cluster holds.
    private static func count(_ keys: [String], perMasterOf shards: [RESPValue]) -> [Int] {
        let map = RedisCluster.parse(shards: shards, tls: false)
        var perMaster: [RedisConfiguration.Endpoint: Int] = [:]
        for key in keys {
            let slot = Int(HashSlot.of(Array(key.utf8)))
            for (range, master) in map where range.contains(slot) { perMaster[master, default: 0] += 1 }
        }
        return Array(perMaster.values)
    }

    /// One session per user, 20 users at a time.
    private static func createSessions(_ store: RedisSessionStore, _ users: [UserID]) async throws -> [SessionToken] {
        var tokens: [SessionToken] = []
        for batch in stride(from: 0, to: users.count, by: 20) {
            tokens += try await withThrowingTaskGroup(of: SessionToken.self) { group in
                for user in users[batch..<min(batch + 20, users.count)] {
                    group.addTask { try await store.create(for: user).token }
                }
                var created: [SessionToken] = []
                for try await token in group { created.append(token) }
                return created
            }
        }
        return tokens
    }

    @Test func createListRevokeAndEvictOnACluster() async throws {
        try await TestRedis.withClient(try await TestRedis.clusterConfiguration()) { (redis: RedisClient) async throws in
            let store = Self.store(redis, maxSessionsPerUser: 4)
            let user = UserID.random()
            var created: [(token: SessionToken, session: Session)] = []
            for _ in 0..<5 { created.append(try await store.create(for: user)) }
            // The cap ended the oldest: the eviction's session keys are in the index's slot.
            #expect(try await store.authenticate(created[0].token) == nil)
            #expect(try await store.sessions(for: user, after: nil, limit: 10).sessions.count == 4)
            #expect(try await store.revoke(created[1].session.id, of: user, ending: SessionEnd(.logout)))
            #expect(try await store.authenticate(created[1].token) == nil)
            #expect(try await store.sessions(for: user, after: nil, limit: 10).sessions.count == 3)
            try await store.revokeAll(for: user, ending: SessionEnd(.revokedAll))
            for (token, _) in created { #expect(try await store.authenticate(token) == nil) }
        }
    }

    /// Logout-everywhere is one script on one node: a run of verifications sent in one write (Redis runs them in that
    /// order) sees the user's sessions all valid up to some point and all revoked after it, never a valid one after a
    /// revoked one, whatever the order of the tokens.
    @Test func logoutEverywhereIsAtomicWhileTheSessionsAreVerified() async throws {
        var configuration = try await TestRedis.clusterConfiguration()
        configuration.connectionCount = 1
        try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in
            let store = Self.store(redis)
            let user = UserID.random()
            var created: [SessionToken] = []
            for _ in 0..<50 { created.append(try await store.create(for: user).token) }
            let tokens = created
            let rounds = try await withThrowingTaskGroup(of: [[Bool]].self) { group in
                group.addTask {
                    var rounds: [[Bool]] = []
                    while rounds.last?.contains(true) ?? true {
                        let commands = tokens.shuffled().map { token in
                            RedisSessionStore.authenticateScript.command(
                                byHash: false, keys: [store.keys.session(token.sessionID, tag: token.tag)], arguments: [1_860_000, 1_800_000]
                            )
                        }
                        rounds.append(try await redis.pipeline(commands).map { !$0.isNull })
                    }
                    return rounds
                }
                group.addTask {
                    try await Task.sleep(for: .milliseconds(30))
                    try await store.revokeAll(for: user, ending: SessionEnd(.revokedAll))
                    return []
                }
                var all: [[Bool]] = []
                for try await part in group { all += part }
                return all
            }
            #expect(rounds.count > 1)
            for round in rounds {
                let firstRevoked = round.firstIndex(of: false) ?? round.count
                #expect(!round[firstRevoked...].contains(true), "a valid session after a revoked one in one run")
            }
            for token in tokens { #expect(try await store.authenticate(token) == nil) }
        }
    }

    @Test func revocationsAreAcknowledgedOnlyOnceAReplicaHasThem() async throws {
        for configuration in [try await TestRedis.clusterConfiguration(), try await TestRedis.sentinelConfiguration()] {
            // WAIT rides behind the write on the same connection, so the shapes' replicas confirm it.
            try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in
                let store = Self.store(redis)
                let user = UserID.random()
                let (_, session) = try await store.create(for: user)
                #expect(try await store.revoke(session.id, of: user, ending: SessionEnd(.logout)))
            }
            var demanding = configuration
            demanding.minReplicas = 3
            try await TestRedis.withClient(demanding) { (redis: RedisClient) async throws in
                let store = Self.store(redis)
                let user = UserID.random()
                let (token, session) = try await store.create(for: user)
                await #expect(throws: SessionError.self) { _ = try await store.revoke(session.id, of: user, ending: SessionEnd(.logout)) }
                await #expect(throws: SessionError.self) { try await store.revokeAll(for: user, ending: SessionEnd(.revokedAll)) }
                // Not a silent success either way: the caller got 503 and may retry; the master did revoke.
                #expect(try await store.authenticate(token) == nil)
            }
        }
    }
}
