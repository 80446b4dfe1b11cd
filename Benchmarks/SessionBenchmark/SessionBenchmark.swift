import Foundation
import Redis
import SessionCore

/// Seeds live sessions for the HTTP benchmark, and measures Redis memory per session.
///
///     session-bench seed REDIS_URL KEY_PREFIX USERS SESSIONS_PER_USER TOKENS_FILE
///         creates USERS users (records only, no password) with SESSIONS_PER_USER sessions each, through the real
///         store (one EVALSHA each, 64 at a time), and writes the tokens one per line.
///     session-bench memory REDIS_URL SESSIONS [USER_AGENT_BYTES]
///         prints Redis' used_memory growth per session over SESSIONS new sessions (100 per user), then removes them;
///         with USER_AGENT_BYTES, each session records an address and a User-Agent of that length (issue 24).
///     session-bench expiry REDIS_URL SESSIONS USER_AGENT_BYTES
///         starts SESSIONS sessions with metadata and a 2 s idle and absolute timeout, waits for Redis to expire them,
///         and prints DBSIZE and used_memory before, with them, and after.
///         The keys carry the service's default prefix, so the database must be empty.
/// REDIS_URL may be any topology (`redis-sentinel://…` reads `REDIS_SENTINEL_PASSWORD`).
@main
struct SessionBenchmark {
    static func main() async throws {
        let arguments = CommandLine.arguments
        guard arguments.count >= 4 else {
            print(
                "usage: session-bench seed REDIS_URL KEY_PREFIX USERS SESSIONS_PER_USER TOKENS_FILE | memory REDIS_URL SESSIONS [UA_BYTES]"
                    + " | expiry REDIS_URL SESSIONS UA_BYTES")
            exit(2)
        }
        var configuration = try RedisConfiguration(url: arguments[2])
        configuration.sentinelPassword = ProcessInfo.processInfo.environment["REDIS_SENTINEL_PASSWORD"]
        let client = RedisClient(configuration: configuration)
        try await client.withRunning {
            switch arguments[1] {
            case "seed":
                let prefix = arguments[3]
                let users = Int(arguments[4])!
                let perUser = Int(arguments[5])!
                let tokens = try await seed(client, prefix: prefix, users: users, perUser: perUser)
                try tokens.map(\.text).joined(separator: "\n").appending("\n").write(toFile: arguments[6], atomically: true, encoding: .utf8)
            case "memory":
                let count = Int(arguments[3])!
                // The service's default prefix, so keys are as long as in a deployment; hence an empty database only.
                guard case .integer(0) = try await client.send("DBSIZE") else {
                    print("session-bench memory: the database is not empty; use an empty one (the keys are removed afterwards)")
                    exit(2)
                }
                let prefix = SessionConfiguration().keyPrefix
                let before = try await usedMemory(client)
                let metadata = arguments.count > 4 ? Self.metadata(userAgentBytes: Int(arguments[4])!) : nil
                let tokens = try await seed(
                    client, prefix: prefix, users: max(1, count / 100), perUser: min(100, count), records: false, metadata: metadata)
                // Steady state: Redis grows its hash tables incrementally, and while it rehashes both tables are
                // allocated; wait until used_memory stops falling (active rehashing runs in the server's cron).
                var after = try await usedMemory(client)
                for _ in 0..<50 {
                    try await Task.sleep(for: .milliseconds(200))
                    let now = try await usedMemory(client)
                    if now >= after { break }
                    after = now
                }
                print(String(format: "%.1f", Double(after - before) / Double(tokens.count)))
                var cursor = "0"
                repeat {
                    let page = try await client.scan(cursor: cursor, match: "\(prefix)*", count: 10_000)
                    cursor = page.cursor
                    if !page.keys.isEmpty { _ = try await client.send(RedisCommand("UNLINK", page.keys)) }
                } while cursor != "0"
            case "expiry":
                let count = Int(arguments[3])!
                let prefix = SessionConfiguration().keyPrefix
                let (keysBefore, memoryBefore) = (try await client.send("DBSIZE").int ?? -1, try await usedMemory(client))
                let configuration = SessionConfiguration(idleTimeout: .seconds(2), absoluteTimeout: .seconds(2), keyPrefix: prefix)
                _ = try await seed(
                    client, prefix: prefix, users: max(1, count / 100), perUser: min(100, count), records: false,
                    metadata: Self.metadata(userAgentBytes: Int(arguments[4])!), configuration: configuration)
                let (keysWith, memoryWith) = (try await client.send("DBSIZE").int ?? -1, try await usedMemory(client))
                var keysAfter = keysWith
                for _ in 0..<300 where keysAfter > keysBefore {
                    try await Task.sleep(for: .milliseconds(100))
                    keysAfter = try await client.send("DBSIZE").int ?? -1
                }
                try await Task.sleep(for: .seconds(1))
                print(
                    "DBSIZE \(keysBefore) → \(keysWith) → \(keysAfter); used_memory \(memoryBefore) → \(memoryWith) → \(try await usedMemory(client))"
                )
            default:
                print("unknown mode \(arguments[1])")
                exit(2)
            }
        }
    }

    /// An address and a User-Agent of `userAgentBytes` bytes, as a login records them.
    static func metadata(userAgentBytes: Int) -> SessionMetadata {
        let agent = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0 "
        return SessionMetadata(ip: "203.0.113.7", userAgent: String((agent + String(repeating: "x", count: 256)).prefix(userAgentBytes)))
    }

    static func seed(
        _ client: RedisClient, prefix: String, users: Int, perUser: Int, records: Bool = true, metadata: SessionMetadata? = nil,
        configuration: SessionConfiguration? = nil
    ) async throws -> [SessionToken] {
        let store = RedisSessionStore(redis: client, configuration: configuration ?? .init(keyPrefix: prefix))
        let keys = KeySchema(prefix: prefix)
        var tokens: [SessionToken] = []
        for userIndex in 0..<users {
            let user = UserID.random()
            if records { try await client.hset(keys.user(user), [("name", "bench\(userIndex)"), ("pw", "x")]) }
            try await withThrowingTaskGroup(of: SessionToken.self) { group in
                for _ in 0..<perUser {
                    group.addTask { try await store.create(for: user, expecting: nil, metadata: metadata, level: .password).token }
                }
                for try await token in group { tokens.append(token) }
            }
        }
        return tokens
    }

    static func usedMemory(_ client: RedisClient) async throws -> Int {
        let info = try await client.info("memory")
        let line = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("used_memory:") }!
        return Int(line.dropFirst("used_memory:".count))!
    }
}
