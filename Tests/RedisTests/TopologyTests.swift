import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TestSupport
import Testing

@testable import Redis

@Suite struct HashSlotTests {
    @Test func crc16AndSlotsMatchTheClusterSpec() {
        #expect(HashSlot.crc16(Array("123456789".utf8)) == 0x31C3)
        #expect(HashSlot.of(Array("foo".utf8)) == 12182)
        #expect(HashSlot.of(Array("{user1000}.following".utf8)) == HashSlot.of(Array("{user1000}.followers".utf8)))
        // An empty tag does not count: the whole key is hashed. Only the first {…} counts.
        #expect(HashSlot.of(Array("foo{}{bar}".utf8)) == HashSlot.crc16(Array("foo{}{bar}".utf8)) & 16383)
        #expect(HashSlot.of(Array("foo{{bar}}zap".utf8)) == HashSlot.of(Array("{bar".utf8)))
        #expect(HashSlot.of(Array("foo{bar}{zap}".utf8)) == HashSlot.of(Array("bar".utf8)))
    }

    @Test func commandsAreRoutedByTheirFirstKey() {
        #expect(RedisCommand("GET", ["foo"]).hashSlot == 12182)
        #expect(RedisCommand("EVALSHA", ["abc", 1, "foo", "arg"]).hashSlot == 12182)
        #expect(RedisCommand("EVALSHA", ["abc", 0, "arg"]).hashSlot == nil)
        #expect(RedisCommand("PING").hashSlot == nil)
        #expect(RedisCommand("WAIT", [1, 100]).hashSlot == nil)
    }

    @Test func slotsAgreeWithTheRealClusterOnAThousandKeys() async throws {
        try await TestRedis.withClient(try await TestRedis.clusterConfiguration()) { (redis: RedisClient) async throws in
            for index in 0..<1000 {
                let key = index % 3 == 0 ? "k\(index)" : index % 3 == 1 ? "{t\(index % 97)}x\(index)" : UUID().uuidString
                let theirs = try await redis.send("CLUSTER", "KEYSLOT", key).int
                #expect(theirs == Int64(HashSlot.of(Array(key.utf8))), "slot of \(key)")
            }
        }
    }
}

@Suite struct RedisURLTopologyTests {
    @Test func sentinelURLsUseLettuceSyntax() throws {
        let configuration = try RedisConfiguration(url: "redis-sentinel://app:s%40cret@10.0.0.1,10.0.0.2:26380,[::1]/2#mymaster")
        #expect(
            configuration.topology
                == .sentinel(
                    masterName: "mymaster",
                    sentinels: [.tcp(host: "10.0.0.1", port: 26379), .tcp(host: "10.0.0.2", port: 26380), .tcp(host: "::1", port: 26379)]
                )
        )
        #expect(configuration.username == "app")
        #expect(configuration.password == "s@cret")
        #expect(configuration.database == 2)
        #expect(configuration.tls == nil)
        #expect(configuration.effectiveMinReplicas == 1)
        #expect(!configuration.description.contains("cret"))
    }

    @Test func clusterAndTLSURLs() throws {
        let cluster = try RedisConfiguration(url: "rediss-cluster://:pw@a.example:7000,b.example")
        #expect(cluster.topology == .cluster(seeds: [.tcp(host: "a.example", port: 7000), .tcp(host: "b.example", port: 6379)]))
        #expect(cluster.tls != nil)
        #expect(cluster.effectiveMinReplicas == 1)
        let single = try RedisConfiguration(url: "rediss://cache.example:6380/1")
        #expect(single.topology == .single(.tcp(host: "cache.example", port: 6380)))
        #expect(single.tls != nil)
        #expect(single.effectiveMinReplicas == 0)
        #expect(try RedisConfiguration(url: "redis-sentinel://s1#m").sentinelPassword == nil)
    }

    @Test(arguments: [
        "redis-sentinel://s1:26379", "redis-sentinel://s1#", "redis-cluster://a:7000/1", "redis://a,b", "redis-cluster://a,,b",
        "redis://a#name", "redis-cluster://a:0", "valkey://a",
    ])
    func malformedTopologyURLsAreConfigurationErrors(url: String) {
        #expect(redisErrorCode { try RedisConfiguration(url: url) } == .configuration)
    }
}

@Suite struct SentinelTests {
    @Test func theMasterIsFoundThroughSentinelAndDurableWritesWaitForAReplica() async throws {
        try await TestRedis.withClient(try await TestRedis.sentinelConfiguration()) { (redis: RedisClient) async throws in
            let key = TestRedis.uniqueKey("sentinel")
            let script = RedisScript("return redis.call('SET', KEYS[1], ARGV[1])")
            #expect(try await redis.evaluate(script, keys: [key], arguments: ["v1"], durable: true) == .simpleString("OK"))
            // The connection behind the client is the master's.
            #expect(try await redis.send("ROLE").array?.first?.string == "master")
        }
        var demanding = try await TestRedis.sentinelConfiguration()
        demanding.minReplicas = 3  // the shape has two replicas
        try await TestRedis.withClient(demanding) { (redis: RedisClient) async throws in
            let key = TestRedis.uniqueKey("sentinel")
            let script = RedisScript("return redis.call('SET', KEYS[1], ARGV[1])")
            let code = await redisErrorCode { try await redis.evaluate(script, keys: [key], arguments: ["v2"], durable: true) }
            #expect(code == .notReplicated)
            // It ran on the master; only the confirmation was missing.
            #expect(try await redis.get(key).map { String(buffer: $0) } == "v2")
        }
    }

    @Test func aReplicaIsNeverTakenForTheMaster() async throws {
        let configuration = try await TestRedis.sentinelConfiguration()
        guard case .sentinel(let name, let sentinels) = configuration.topology else { throw RedisError(.configuration) }
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let sentinel = try await RedisConnection.connect(to: sentinels[0], configuration: configuration, purpose: .sentinel, on: loop)
        let replicas = try await sentinel.send(RedisCommand("SENTINEL", ["replicas", name])).array ?? []
        await sentinel.close()
        let fields = try #require(replicas.first?.array)
        let port = try #require(zip(fields, fields.dropFirst()).first { $0.0.string == "port" }?.1.int)
        let replica = RedisConfiguration.Endpoint.tcp(host: "127.0.0.1", port: Int(port))
        await #expect(throws: RedisError.self) {
            _ = try await RedisConnection.connect(to: replica, configuration: configuration, purpose: .master, on: loop)
        }
        // As a plain data node it answers: the refusal above is the ROLE check, not a dead port.
        let plain = try await RedisConnection.connect(to: replica, configuration: configuration, purpose: .data, on: loop)
        await plain.close()
    }
}

@Suite struct ClusterTests {
    @Test func everyCommandGoesStraightToItsSlotsMasterAndKeysSpreadOverAllMasters() async throws {
        try await TestRedis.withClient(try await TestRedis.clusterConfiguration()) { (redis: RedisClient) async throws in
            let shards = try #require(try await redis.send("CLUSTER", "SHARDS").array)
            let map = RedisCluster.parse(shards: shards, tls: false)
            #expect(Set(map.map(\.master)).count == 3)
            let prefix = TestRedis.uniqueKey("spread")
            var owners: [RedisConfiguration.Endpoint: Int] = [:]
            for index in 0..<300 {
                let key = "\(prefix):\(index)"
                try await redis.set(key, to: "v\(index)")
                let slot = Int(HashSlot.of(Array(key.utf8)))
                if let owner = map.first(where: { $0.range.contains(slot) })?.master { owners[owner, default: 0] += 1 }
            }
            for index in 0..<300 { #expect(try await redis.get("\(prefix):\(index)").map { String(buffer: $0) } == "v\(index)") }
            #expect(owners.count == 3 && owners.values.allSatisfy { $0 > 50 }, "keys per master: \(owners)")
            // With the map known, no command needed a redirect.
            #expect(redis.redirectsFollowed.moved == 0)
            // A pipeline whose keys live in different slots is refused before anything is sent.
            let code = await redisErrorCode { try await redis.pipeline([RedisCommand("GET", ["a"]), RedisCommand("GET", ["b"])]) }
            #expect(code == .server)
        }
    }

    /// A slot migrated under load (`CLUSTER SETSLOT … IMPORTING/MIGRATING` + `MIGRATE`, then `SETSLOT … NODE`): reads
    /// and writes of that slot keep working throughout, through `ASK` while it moves and `MOVED` after.
    @Test func aSlotMigratedUnderLoadIsFollowedThroughAskThenMoved() async throws {
        var configuration = try await TestRedis.migrationClusterConfiguration()
        configuration.connectionCount = 1
        try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in
            let tag = "{mig\(UUID().uuidString.prefix(6))}"
            let slot = HashSlot.of(Array(tag.utf8))
            let keys = (0..<400).map { "\(tag):\($0)" }
            for (index, key) in keys.enumerated() { try await redis.set(key, to: "v\(index)") }

            let shards = try #require(try await redis.send("CLUSTER", "SHARDS").array)
            let nodes = Self.masters(shards)
            let source = try #require(nodes.first { $0.ranges.contains { $0.contains(Int(slot)) } })
            let target = try #require(nodes.first { $0.id != source.id })
            let adminPassword = try await TestRedis.haAdminPassword()
            let admin = { (port: Int) in
                RedisClient(
                    configuration: RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: port), password: adminPassword))
            }
            let sourceAdmin = admin(source.port)
            let targetAdmin = admin(target.port)
            let otherAdmins = nodes.filter { $0.id != source.id && $0.id != target.id }.map { admin($0.port) }

            try await sourceAdmin.withRunning(waitingUpTo: .seconds(20)) {
                try await targetAdmin.withRunning(waitingUpTo: .seconds(20)) {
                    let failures = try await withThrowingTaskGroup(of: Int.self) { group in
                        let stop = NIOLockedValueBox(false)
                        for worker in 0..<4 {
                            group.addTask {
                                var failures = 0
                                var round = 0
                                while !stop.withLockedValue({ $0 }) {
                                    let index = (worker * 97 + round * 13) % keys.count
                                    round += 1
                                    do {
                                        let value = try await redis.get(keys[index]).map { String(buffer: $0) }
                                        if value != "v\(index)" { failures += 1 }
                                        // New keys land on whichever node owns them at that moment (ASK sends them on).
                                        try await redis.set("\(tag):new-\(worker)-\(round)", to: "n")
                                    } catch {
                                        failures += 1
                                    }
                                }
                                return failures
                            }
                        }
                        _ = try await targetAdmin.send("CLUSTER", "SETSLOT", Int(slot), "IMPORTING", source.id)
                        _ = try await sourceAdmin.send("CLUSTER", "SETSLOT", Int(slot), "MIGRATING", target.id)
                        while true {
                            let batch = try await sourceAdmin.send("CLUSTER", "GETKEYSINSLOT", Int(slot), 20).array ?? []
                            if batch.isEmpty { break }
                            var migrate = RedisCommand(
                                "MIGRATE", ["127.0.0.1", target.port, "", 0, 5000, "AUTH", adminPassword, "KEYS"]
                            )
                            for key in batch { if let key = key.bytes { migrate.append(key) } }
                            _ = try await sourceAdmin.send(migrate)
                            // Leave the load a moment with the keys split between the nodes.
                            try await Task.sleep(for: .milliseconds(20))
                        }
                        for client in [targetAdmin, sourceAdmin] {
                            _ = try await client.send("CLUSTER", "SETSLOT", Int(slot), "NODE", target.id)
                        }
                        for client in otherAdmins {
                            try await client.withRunning(waitingUpTo: .seconds(20)) {
                                _ = try await client.send("CLUSTER", "SETSLOT", Int(slot), "NODE", target.id)
                            }
                        }
                        try await Task.sleep(for: .milliseconds(300))
                        stop.withLockedValue { $0 = true }
                        return try await group.reduce(0, +)
                    }
                    #expect(failures == 0)
                }
            }
            #expect(redis.redirectsFollowed.ask > 0, "ASK was followed while the slot moved")
            #expect(redis.redirectsFollowed.moved > 0, "MOVED was followed after it moved")
            for (index, key) in keys.enumerated() { #expect(try await redis.get(key).map { String(buffer: $0) } == "v\(index)") }
        }
    }

    private struct Master {
        let id: String
        let port: Int
        let ranges: [ClosedRange<Int>]
    }

    private static func masters(_ shards: [RESPValue]) -> [Master] {
        func dictionary(_ value: RESPValue) -> [String: RESPValue] {
            let items = value.array ?? []
            return Dictionary(
                stride(from: 0, to: items.count - 1, by: 2).compactMap { index in items[index].string.map { ($0, items[index + 1]) } },
                uniquingKeysWith: { first, _ in first }
            )
        }
        return shards.compactMap { shard in
            let fields = dictionary(shard)
            let ranges = (fields["slots"]?.array ?? []).compactMap(\.int).map(Int.init)
            guard let node = fields["nodes"]?.array?.map(dictionary).first(where: { $0["role"]?.string == "master" }),
                let id = node["id"]?.string, let port = node["port"]?.int
            else { return nil }
            return Master(id: id, port: Int(port), ranges: stride(from: 0, to: ranges.count - 1, by: 2).map { ranges[$0]...ranges[$0 + 1] })
        }
    }
}
