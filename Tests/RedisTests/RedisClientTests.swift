// Over 300 lines: the client's command-level suites (commands, pipelines, scripts, databases, AUTH) share their
// helpers; each suite is a struct of its own.

import Foundation
import NIOCore
import NIOPosix
import Redis
import TestSupport
import Testing

@Suite struct RedisCommandTests {
    let configuration: RedisConfiguration

    init() async throws { configuration = try await TestRedis.configuration() }

    @Test func pingGetSetAndDelete() async throws {
        try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in
            let key = TestRedis.uniqueKey()
            #expect(try await redis.ping())
            #expect(try await redis.get(key) == nil)
            #expect(try await redis.set(key, to: "value"))
            #expect(try await redis.get(key) == ByteBuffer(string: "value"))
            #expect(try await redis.exists(key, TestRedis.uniqueKey()) == 1)
            #expect(try await redis.del(key) == 1)
            #expect(try await redis.exists(key) == 0)
        }
    }

    @Test func setOptionsExpireAndConditions() async throws {
        try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in
            let key = TestRedis.uniqueKey()
            defer { Task { _ = try? await redis.del(key) } }
            #expect(try await redis.set(key, to: "a", condition: .ifExists) == false)
            #expect(try await redis.set(key, to: "a", condition: .ifAbsent, expiration: .seconds(100)))
            #expect(try await redis.set(key, to: "b", condition: .ifAbsent) == false)
            #expect((99...100).contains(try await redis.ttl(key)))
            #expect(try await redis.set(key, to: "c", condition: .ifExists, expiration: .keepTTL))
            #expect((99...100).contains(try await redis.ttl(key)))
            try await redis.set(key, to: "d", expiration: .milliseconds(50_000))
            #expect((49_000...50_000).contains(try await redis.pttl(key)))
            try await redis.set(key, to: "e")
            #expect(try await redis.ttl(key) == -1)
            #expect(try await redis.ttl(TestRedis.uniqueKey()) == -2)
            #expect(try await redis.expire(key, seconds: 30))
            #expect((29...30).contains(try await redis.ttl(key)))
            #expect(try await redis.pexpire(key, milliseconds: 20_000))
            #expect((19_000...20_000).contains(try await redis.pttl(key)))
            #expect(try await redis.expire(TestRedis.uniqueKey(), seconds: 30) == false)
        }
    }

    @Test func getexChangesExpiryAndGetdelRemoves() async throws {
        try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in
            let key = TestRedis.uniqueKey()
            try await redis.set(key, to: "v")
            #expect(try await redis.getex(key, expiration: .seconds(60)) == ByteBuffer(string: "v"))
            #expect((59...60).contains(try await redis.ttl(key)))
            #expect(try await redis.getex(key, expiration: .milliseconds(5000)) == ByteBuffer(string: "v"))
            #expect((4000...5000).contains(try await redis.pttl(key)))
            #expect(try await redis.getex(key, expiration: .persist) == ByteBuffer(string: "v"))
            #expect(try await redis.ttl(key) == -1)
            #expect(try await redis.getex(key) == ByteBuffer(string: "v"))
            #expect(try await redis.getdel(key) == ByteBuffer(string: "v"))
            #expect(try await redis.getdel(key) == nil)
            #expect(try await redis.getex(key, expiration: .seconds(1)) == nil)
        }
    }

    @Test func counters() async throws {
        try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in
            let key = TestRedis.uniqueKey()
            defer { Task { _ = try? await redis.del(key) } }
            #expect(try await redis.incr(key) == 1)
            #expect(try await redis.incrby(key, 41) == 42)
            #expect(try await redis.incrby(key, -50) == -8)
        }
    }

    @Test func hashes() async throws {
        try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in
            let key = TestRedis.uniqueKey()
            defer { Task { _ = try? await redis.del(key) } }
            #expect(try await redis.hset(key, [("a", "1"), ("b", [UInt8]([0, 1, 2]))]) == 2)
            #expect(try await redis.hset(key, field: "a", to: "2") == false)
            #expect(try await redis.hget(key, field: "a") == ByteBuffer(string: "2"))
            #expect(try await redis.hget(key, field: "zz") == nil)
            #expect(try await redis.hgetall(key) == ["a": ByteBuffer(string: "2"), "b": ByteBuffer(bytes: [0, 1, 2])])
            #expect(try await redis.hdel(key, fields: "a", "zz") == 1)
            #expect(try await redis.hgetall(key).keys.sorted() == ["b"])
        }
    }

    @Test func sortedSets() async throws {
        try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in
            let key = TestRedis.uniqueKey()
            defer { Task { _ = try? await redis.del(key) } }
            #expect(try await redis.zadd(key, [(1, "one"), (2, "two"), (3, "three"), (4.5, "four")]) == 4)
            #expect(try await redis.zcard(key) == 4)
            #expect(try await redis.zrangebyscore(key, min: "2", max: "+inf").map { String(buffer: $0) } == ["two", "three", "four"])
            #expect(try await redis.zrangebyscore(key, min: "(1", max: "4", limit: (0, 1)).map { String(buffer: $0) } == ["two"])
            #expect(try await redis.zrem(key, members: "two", "nope") == 1)
            #expect(try await redis.zremrangebyscore(key, min: "-inf", max: "3") == 2)
            #expect(try await redis.zrangebyscore(key, min: "-inf", max: "+inf").map { String(buffer: $0) } == ["four"])
        }
    }

    @Test func scanFindsEveryMatchingKey() async throws {
        try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in
            let prefix = TestRedis.uniqueKey("scan")
            let keys = (0..<25).map { "\(prefix):\($0)" }
            for key in keys { try await redis.set(key, to: "x") }
            var cursor = "0"
            var found: Set<String> = []
            repeat {
                let page = try await redis.scan(cursor: cursor, match: "\(prefix):*", count: 10)
                cursor = page.cursor
                found.formUnion(page.keys.map { String(buffer: $0) })
            } while cursor != "0"
            #expect(found == Set(keys))
            for key in keys { try await redis.del(key) }
        }
    }

    /// SCRIPT FLUSH empties every script of a server: a private one, so no parallel test sees its scripts vanish.
    @Test func scriptsRunByHashAndFallBackToSourceAfterScriptFlush() async throws {
        let server = try await RedisServerProcess.started()
        try await TestRedis.withClient(try RedisConfiguration(url: server.url)) { (redis: RedisClient) async throws in
            let script = RedisScript("return {KEYS[1], ARGV[1], tonumber(ARGV[2]) * 2, '\(UUID().uuidString)'}")
            let first = try await redis.evaluate(script, keys: ["k"], arguments: ["a", 21])
            #expect(first.array?.prefix(3).map(\.string) == ["k", "a", "42"])
            let loaded = try await redis.send("SCRIPT", "EXISTS", script.sha1)
            #expect(loaded == .array([.integer(1)]))
            _ = try await redis.send("SCRIPT", "FLUSH")
            let again = try await redis.evaluate(script, keys: ["k"], arguments: ["b", 1])
            #expect(again.array?.prefix(3).map(\.string) == ["k", "b", "2"])
        }
        await server.stop()
    }

    @Test func transactionRunsAtomicallyAndReportsPerCommandErrors() async throws {
        try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in
            let key = TestRedis.uniqueKey()
            defer { Task { _ = try? await redis.del(key) } }
            let replies = try await redis.transaction([
                RedisCommand("SET", [key, "1"]), RedisCommand("INCR", [key]), RedisCommand("HGET", [key, "f"]),
            ])
            #expect(replies.count == 3)
            #expect(replies[0] == .simpleString("OK"))
            #expect(replies[1] == .integer(2))
            if case .error(let message) = replies[2] { #expect(message.hasPrefix("WRONGTYPE")) } else { Issue.record("expected WRONGTYPE") }
            #expect(
                await redisErrorCode {
                    try await redis.transaction([RedisCommand("NOSUCHCOMMAND")])
                } == .server)
        }
    }

    @Test func infoAndRawSendAndServerErrors() async throws {
        try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in
            #expect(try await redis.info("server").contains("redis_version:"))
            #expect(try await redis.send("ECHO", "hi") == .bulkString(ByteBuffer(string: "hi")))
            let key = TestRedis.uniqueKey()
            try await redis.set(key, to: "string")
            defer { Task { _ = try? await redis.del(key) } }
            do {
                _ = try await redis.hget(key, field: "x")
                Issue.record("expected WRONGTYPE")
            } catch let error as RedisError {
                #expect(error.code == .server)
                #expect(error.serverErrorPrefix == "WRONGTYPE")
            } catch {
                Issue.record("unexpected \(error)")
            }
        }
    }

    @Test func binaryKeysAndValuesRoundTrip() async throws {
        try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in
            let key: [UInt8] = Array(TestRedis.uniqueKey().utf8) + [0, 13, 10, 255, 0]
            let small: [UInt8] = [0, 13, 10, 36, 42, 43, 45, 58, 255, 0, 0]
            try await redis.set(key, to: small)
            #expect(try await redis.get(key).map { Array($0.readableBytesView) } == small)
            let large = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ ($0 >> 8)) }
            try await redis.set(key, to: large)
            #expect(try await redis.get(key).map { Array($0.readableBytesView) } == large)
            #expect(try await redis.del(key) == 1)
        }
    }

    @Test func tenThousandConcurrentCommandsEachGetTheirOwnReply() async throws {
        try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in
            let prefix = TestRedis.uniqueKey("pipe")
            try await withThrowingTaskGroup(of: Void.self) { group in
                for task in 0..<100 {
                    group.addTask {
                        for index in 0..<100 {
                            let value = "\(task)-\(index)"
                            let echoed = try await redis.send("ECHO", value)
                            #expect(echoed.string == value)
                        }
                    }
                }
                try await group.waitForAll()
            }
            // And interleaved writes and reads of distinct keys.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<2_000 {
                    group.addTask {
                        let key = "\(prefix):\(index)"
                        try await redis.set(key, to: "\(index)", expiration: .seconds(60))
                        #expect(try await redis.get(key) == ByteBuffer(string: "\(index)"))
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    @Test func pipelineRepliesComeBackInOrder() async throws {
        try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in
            let commands = (0..<500).map { RedisCommand("ECHO", ["\($0)"]) }
            let replies = try await redis.pipeline(commands)
            #expect(replies.map(\.string) == (0..<500).map { "\($0)" })
        }
    }

    @Test func selectChoosesTheDatabase() async throws {
        let key = TestRedis.uniqueKey()
        var db5 = configuration
        db5.database = 5
        try await TestRedis.withClient(db5) { (redis: RedisClient) async throws in try await redis.set(key, to: "in-5", expiration: .seconds(60)) }
        try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in #expect(try await redis.get(key) == nil) }
        try await TestRedis.withClient(db5) { (redis: RedisClient) async throws in
            #expect(try await redis.get(key) == ByteBuffer(string: "in-5"))
            try await redis.del(key)
        }
    }
}

@Suite struct RedisAuthTests {
    let host: String
    let port: Int

    init() async throws {
        host = try await TestServers.value("TEST_REDIS_AUTH_HOST", from: .auth)
        port = try await Int(TestServers.value("TEST_REDIS_AUTH_PORT", from: .auth)) ?? 0
    }

    @Test func passwordOnlyAuth() async throws {
        let configuration = try RedisConfiguration(url: "redis://:test-default-pass@\(host):\(port)/0")
        try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in #expect(try await redis.ping()) }
    }

    @Test func aclUserAuth() async throws {
        let configuration = try RedisConfiguration(url: "redis://tester:tester-pass@\(host):\(port)/2")
        try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in
            #expect(try await redis.send("ACL", "WHOAMI").string == "tester")
        }
    }

    @Test func wrongPasswordNeverConnectsAndSaysWhy() async throws {
        let configuration = try RedisConfiguration(url: "redis://tester:wrong-pass@\(host):\(port)/0")
        let failures = FailureLog()
        let client = RedisClient(configuration: configuration) { event in
            if case .connectFailed(_, _, let error) = event { failures.append(error) }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await client.run() }
            // Wait for the first refused attempt (slow under sanitizers), at most 5 s.
            for _ in 0..<250 where failures.errors.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
            #expect(client.isConnected == false)
            #expect(await redisErrorCode { try await client.ping() } == .unavailable)
            group.cancelAll()
        }
        let first = try #require(failures.errors.first)
        #expect(first.serverErrorPrefix == "WRONGPASS")
        #expect(!first.message.contains("wrong-pass"))
    }

    @Test func missingPasswordIsRefused() async throws {
        let configuration = try RedisConfiguration(url: "redis://\(host):\(port)/0")
        let client = RedisClient(configuration: configuration)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await client.run() }
            try await Task.sleep(for: .milliseconds(300))
            // The handshake's PING gets NOAUTH, so the connection is never handed out.
            #expect(client.isConnected == false)
            group.cancelAll()
        }
    }
}

/// Collects connection failures from the client's event callback.
final class FailureLog: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLock()
    private var stored: [RedisError] = []
    func append(_ error: RedisError) { lock.withLock { stored.append(error) } }
    var errors: [RedisError] { lock.withLock { stored } }
}

/// The event-loop API the verification fast path uses: no task, the command on a connection of the caller's loop.
@Suite struct RedisEventLoopSendTests {
    /// Sends from `loop` and waits for the completion, recording whether it ran on `loop`.
    static func send(_ redis: RedisClient, _ command: RedisCommand, from loop: any EventLoop) async -> (Result<RESPValue, RedisError>, onLoop: Bool) {
        await withCheckedContinuation { continuation in
            loop.execute {
                redis.send(command, on: loop) { result in continuation.resume(returning: (result, loop.inEventLoop)) }
            }
        }
    }

    @Test func eachLoopUsesItsOwnConnectionAndIsAnsweredOnIt() async throws {
        let loops = Array(MultiThreadedEventLoopGroup.singleton.makeIterator())
        var configuration = try await TestRedis.configuration()
        configuration.connectionCount = loops.count
        try await TestRedis.withClient(configuration) { (redis: RedisClient) async throws in
            // Wait until every slot is up, not just the first.
            for _ in 0..<200 {
                var ids = Set<Int64>()
                for loop in loops {
                    if case (.success(.integer(let id)), _) = await Self.send(redis, RedisCommand("CLIENT", ["ID"]), from: loop) { ids.insert(id) }
                }
                if ids.count == loops.count { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            var idByLoop: [Int64] = []
            for loop in loops {
                let (first, firstOnLoop) = await Self.send(redis, RedisCommand("CLIENT", ["ID"]), from: loop)
                let (second, secondOnLoop) = await Self.send(redis, RedisCommand("CLIENT", ["ID"]), from: loop)
                #expect(firstOnLoop && secondOnLoop, "completions run on the caller's loop")
                guard case .success(.integer(let id)) = first, case .success(.integer(let again)) = second else {
                    Issue.record("CLIENT ID failed: \(first) \(second)")
                    continue
                }
                #expect(id == again, "one loop, one connection")
                idByLoop.append(id)
            }
            #expect(Set(idByLoop).count == loops.count, "every loop has a connection of its own")
        }
    }

    /// A private server: SCRIPT FLUSH (see above).
    @Test func scriptsFallBackToSourceAndErrorRepliesFail() async throws {
        let server = try await RedisServerProcess.started()
        try await TestRedis.withClient(try RedisConfiguration(url: server.url)) { (redis: RedisClient) async throws in
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            let script = RedisScript("return ARGV[1] .. '\(UUID().uuidString)'")
            _ = try await redis.send("SCRIPT", "FLUSH")
            let reply: Result<RESPValue, RedisError> = await withCheckedContinuation { continuation in
                loop.execute { redis.evaluate(script, arguments: ["x"], on: loop) { continuation.resume(returning: $0) } }
            }
            #expect(try reply.get().string?.hasPrefix("x") == true)
            let (error, _) = await Self.send(redis, RedisCommand("NOSUCHCOMMAND"), from: loop)
            guard case .failure(let failure) = error else { Issue.record("an error reply must fail"); return }
            #expect(failure.code == .server)
        }
        await server.stop()
    }

    @Test func withoutAConnectionItFailsAtOnce() async throws {
        var configuration = try RedisConfiguration(url: "redis://127.0.0.1:1")
        configuration.connectTimeout = .milliseconds(100)
        let redis = RedisClient(configuration: configuration)
        try await redis.withRunning(waitingUpTo: nil) {
            let (result, onLoop) = await Self.send(redis, RedisCommand("PING"), from: MultiThreadedEventLoopGroup.singleton.next())
            #expect(onLoop)
            guard case .failure(let error) = result else { Issue.record("no connection, yet \(result)"); return }
            #expect(error.code == .unavailable)
        }
    }
}
