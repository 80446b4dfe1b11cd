// Over 300 lines: the session store's behaviours against one shared Redis — create, authenticate, renew, expire,
// list, revoke, caps — share one fixture; each is a test of its own.

import Foundation
import HummingbirdBcrypt
import NIOCore
import Redis
import TestSupport
import Testing

@testable import SessionCore

@Suite struct TokenTests {
    @Test func randomTokensAreCanonicalV4AndDistinct() {
        let tokens = (0..<1000).map { _ in SessionToken.random() }
        #expect(Set(tokens).count == 1000)
        for token in tokens.prefix(50) {
            #expect(SessionToken(token.text) == token)
            let uuid = try! #require(UUID(uuidString: token.text))
            #expect(uuid.uuidString.lowercased() == token.text)
        }
    }

    @Test(arguments: [
        "", "not-a-token", "6FCC52A0-34F2-4734-950E-B757473493CB", " 6fcc52a0-34f2-4734-950e-b757473493cb",
        "6fcc52a0-34f2-1734-950e-b757473493cb", "6fcc52a0-34f2-4734-c50e-b757473493cb", "6fcc52a034f24734950eb757473493cb",
        "6fcc52a0-34f2-4734-950e-b757473493cg", "6fcc52a0-34f2-4734-950e-b757473493cb\r\n",
    ])
    func malformedTokensAreRejected(text: String) {
        #expect(SessionToken(text) == nil)
    }

    @Test func sessionIDIsAOneWayHashOfTheToken() {
        let token = SessionToken("6fcc52a0-34f2-4734-950e-b757473493cb")!
        // sha256("6fcc52a0-34f2-4734-950e-b757473493cb") truncated to 16 bytes.
        #expect(token.sessionID.hex.count == 32)
        #expect(token.sessionID == SessionToken("6fcc52a0-34f2-4734-950e-b757473493cb")!.sessionID)
        #expect(!token.sessionID.hex.contains("6fcc52a0"))
        #expect(SessionID(hex: token.sessionID.hex) == token.sessionID)
        #expect(SessionID(hex: "XYZ") == nil)
        #expect("\(token)" == "SessionToken(redacted)")
    }

    @Test func userIDsRoundTripThroughBytes() {
        let id = UserID.random()
        #expect(UserID(bytes: id.bytes) == id)
    }
}

@Suite struct CredentialRuleTests {
    @Test(arguments: ["abc", "alice.smith@example.com", "A_b-c.d@1", String(repeating: "x", count: 64)])
    func validUsernames(name: String) throws {
        try Credentials.validateUsername(name)
    }

    @Test(arguments: ["ab", String(repeating: "x", count: 65), "alice smith", "bob\r\nSET x y", "é-unicode", "nul\u{0}name", "*3\r\n$3"])
    func invalidUsernames(name: String) {
        #expect(throws: SessionError.self) { try Credentials.validateUsername(name) }
    }

    @Test func thePasswordPolicyNamesTheRuleABadPasswordBreaks() throws {
        let policy = PasswordPolicy()
        try policy.check("tr0ub4dor&3x", username: "alice")
        try policy.check(String(repeating: "é", count: 256), username: "alice")
        // Counted as Unicode scalars of the NFC form: 8 decomposed é (16 scalars as typed) are 8 characters.
        try policy.check(String(repeating: "e\u{301}", count: 8), username: "alice")
        func refusal(_ password: String, _ username: String = "alice", _ policy: PasswordPolicy = PasswordPolicy()) -> String? {
            do {
                try policy.check(password, username: username)
                return nil
            } catch { return error.message }
        }
        #expect(refusal("x7#kq2!") == "password must be at least 8 characters")
        #expect(refusal("x7#kq2!vz9", "alice", PasswordPolicy(minimumLength: 12)) == "password must be at least 12 characters")
        #expect(refusal(String(repeating: "a", count: 257)) == "password must be at most 256 characters")
        #expect(refusal("password\u{0}nul") == "password must not contain control characters")
        #expect(refusal("pass\r\nword99") == "password must not contain control characters")
        #expect(refusal("Alice.Smith@x", "alice.smith@X") == "password must not be the username")
        for common in ["password", "12345678", "iloveyou", "Sunshine", "PASSWORD1", "qwertyuiop"] {
            #expect(refusal(common) == "password is one of the 10,000 most common passwords", "\(common)")
        }
        #expect(PasswordPolicy.commonPasswords.count == 10_000)
    }

    @Test func loginHashesOnlyPasswordsThatCouldBeAnyones() {
        #expect(Credentials.isPlausiblePassword("short"))  // set under an older, shorter minimum: still checked
        #expect(!Credentials.isPlausiblePassword(""))
        #expect(!Credentials.isPlausiblePassword(String(repeating: "a", count: 1025)))
        #expect(!Credentials.isPlausiblePassword("pass\u{0}word"))
    }

    @Test func usernamesNormalizeCaseInsensitively() {
        #expect(Credentials.normalize("Alice.SMITH@x") == "alice.smith@x")
    }
}

@Suite struct PasswordHasherTests {
    static let cheap = Argon2id.Parameters(memoryKiB: 1024, iterations: 1, parallelism: 1)
    let hasher = PasswordHasher(scheme: .argon2id(cheap), threads: 1)

    @Test func argon2idHashesArePHCStringsThatVerifyAndAreSalted() async throws {
        let first = try await hasher.hash("correct horse battery")
        let second = try await hasher.hash("correct horse battery")
        #expect(first != second)
        #expect(first.hasPrefix("$argon2id$v=19$m=1024,t=1,p=1$"))
        #expect(first.split(separator: "$").count == 5)
        #expect(try await hasher.verify("correct horse battery", against: first))
        #expect(try await hasher.verify("correct horse batterz", against: first) == false)
        #expect(try await hasher.verify("correct horse battery", against: nil) == false)
        #expect(try await hasher.verify("correct horse battery", against: "$argon2id$v=19$m=1024,t=1,p=1$bad$bad") == false)
        #expect(Argon2id.parameters(of: first) == Self.cheap)
        #expect(!hasher.needsRehash(first))
    }

    /// OWASP's baseline by default; the parameters are read back from the string, so a change of them rehashes.
    @Test func theDefaultsAreOWASPsBaselineAndOtherParametersRehash() async throws {
        let defaults = PasswordHasher(threads: 1)
        #expect(defaults.scheme == .argon2id(Argon2id.Parameters(memoryKiB: 19456, iterations: 2, parallelism: 1)))
        let hash = try await defaults.hash("correct horse battery")
        #expect(hash.hasPrefix("$argon2id$v=19$m=19456,t=2,p=1$"))
        #expect(hasher.needsRehash(hash))
        #expect(try await hasher.verify("correct horse battery", against: hash))
    }

    @Test func bcryptHashesVerifyAndRehashToArgon2id() async throws {
        let bcrypt = PasswordHasher(scheme: .bcrypt(cost: 4), threads: 1)
        let hash = try await bcrypt.hash("correct horse battery")
        #expect(hash.hasPrefix("bcrypt-nfc$$2b$04$"))
        #expect(!bcrypt.needsRehash(hash))
        #expect(PasswordHasher(scheme: .bcrypt(cost: 5), threads: 1).needsRehash(hash))
        #expect(hasher.needsRehash(hash))
        #expect(try await hasher.verify("correct horse battery", against: hash))
        #expect(try await hasher.verify("correct horse batterz", against: hash) == false)
    }

    /// A hash stored before passwords were normalised (`bcrypt-hs256$`, of the password as typed) verifies as it was
    /// made — the decomposed form matches, the composed one does not — and always asks for a rehash (over NFC).
    @Test func hashesFromBeforeNFCVerifyAsMadeAndAskForARehash() async throws {
        let decomposed = "cafe\u{301} au lait"
        let legacy = "bcrypt-hs256$" + Bcrypt.hash(PasswordHasher.prehash(decomposed), cost: 4)
        #expect(try await hasher.verify(decomposed, against: legacy))
        #expect(try await hasher.verify("caf\u{E9} au lait", against: legacy) == false)
        #expect(hasher.needsRehash(legacy))
        #expect(PasswordHasher(scheme: .bcrypt(cost: 4), threads: 1).needsRehash(legacy))
    }

    /// NIST 800-63B: the same password typed composed or decomposed is the same password.
    @Test func passwordsAreNormalisedToNFCBeforeHashing() async throws {
        for scheme in [PasswordHashScheme.argon2id(Self.cheap), .bcrypt(cost: 4)] {
            let hasher = PasswordHasher(scheme: scheme, threads: 1)
            let hash = try await hasher.hash("cafe\u{301} au lait")
            #expect(try await hasher.verify("caf\u{E9} au lait", against: hash))
            #expect(try await hasher.verify("cafe\u{301} au lait", against: hash))
            #expect(try await hasher.verify("cafe au lait", against: hash) == false)
        }
    }

    /// Hashing threads run at nice 10 so that, on contended cores, the event loops win; the loops stay at 0.
    @Test func hashingThreadsYieldTheCPUToEventLoops() async throws {
        _ = try await hasher.hash("correct horse battery")
        var niceByThread: [String: [Int]] = [:]
        for task in try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task") {
            guard let stat = try? String(contentsOfFile: "/proc/self/task/\(task)/stat", encoding: .utf8),
                let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")")
            else { continue }
            let name = String(stat[stat.index(after: open)..<close])
            let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
            niceByThread[name, default: []].append(Int(fields[16]) ?? 0)
        }
        #expect(niceByThread.values.contains { $0.contains(10) }, "a hashing thread at nice 10: \(niceByThread)")
        for (name, nices) in niceByThread where name.hasPrefix("NIO-") {
            #expect(nices.allSatisfy { $0 == 0 }, "event loop \(name) must keep its priority")
        }
    }

    @Test(arguments: [PasswordHashScheme.argon2id(cheap), .bcrypt(cost: 4)])
    func passwordsLongerThan72BytesAreFullyCompared(scheme: PasswordHashScheme) async throws {
        let hasher = PasswordHasher(scheme: scheme, threads: 1)
        let base = String(repeating: "a", count: 80)
        let hash = try await hasher.hash(base + "1")
        #expect(try await hasher.verify(base + "2", against: hash) == false)
        #expect(try await hasher.verify(base + "1", against: hash))
    }
}

@Suite struct RedisSessionStoreTests {
    @Test func createAuthenticateListAndRevoke() async throws {
        try await TestRedis.withClient(try await TestRedis.configuration()) { (redis: RedisClient) async throws in
            let prefix = "t\(UUID().uuidString.prefix(8)):"
            let store = RedisSessionStore(redis: redis, configuration: .init(keyPrefix: prefix))
            let user = UserID.random()
            let (token, created) = try await store.create(for: user)
            let (other, _) = try await store.create(for: user)
            #expect(created.userID == user)
            let authenticated = try #require(try await store.authenticate(token))
            #expect(authenticated.id == created.id)
            #expect(authenticated.userID == user)
            #expect(abs(authenticated.createdAt.timeIntervalSince(created.createdAt)) < 0.002)
            #expect(Set(try await store.sessions(for: user, after: nil, limit: 100).sessions.map(\.id)) == [created.id, other.sessionID])
            #expect(
                try await store.revoke(created.id, of: UserID.random(), ending: SessionEnd(.logout)) == false, "another user's revoke must not work")
            #expect(try await store.revoke(created.id, of: user, ending: SessionEnd(.logout)))
            #expect(try await store.authenticate(token) == nil)
            #expect(try await store.revoke(created.id, of: user, ending: SessionEnd(.logout)) == false)
            try await store.revokeAll(for: user, ending: SessionEnd(.revokedAll))
            #expect(try await store.authenticate(other) == nil)
            #expect(try await store.sessions(for: user, after: nil, limit: 100).sessions.isEmpty)
            #expect(try await redis.scan(match: "\(prefix)*", count: 1000).keys.isEmpty)
        }
    }

    /// Logins in the same millisecond: the cap still ends the oldest, never a newer one (creation times never tie
    /// within a user). Fifty logins at once, each a separate script: many land in the same millisecond.
    @Test func theCapEndsTheOldestEvenWithinOneMillisecond() async throws {
        try await TestRedis.withClient(try await TestRedis.configuration()) { (redis: RedisClient) async throws in
            let store = RedisSessionStore(redis: redis, configuration: .init(keyPrefix: "t\(UUID().uuidString.prefix(8)):", maxSessionsPerUser: 3))
            let user = UserID.random()
            var created: [(token: SessionToken, session: Session)] = []
            for _ in 0..<50 { created.append(try await store.create(for: user)) }
            #expect(Set(created.map(\.session.createdAt)).count == 50, "creation times never tie")
            for (index, entry) in created.enumerated() {
                #expect((try await store.authenticate(entry.token) != nil) == (index >= 47), "session \(index)")
            }
        }
    }

    /// One user cannot grow without bound: past MAX_SESSIONS_PER_USER a login ends the oldest session, never the new
    /// one; pages walk every session once, in order, with a cursor that survives sessions ending between pages.
    @Test func sessionsPerUserAreCappedAndListedInPages() async throws {
        try await TestRedis.withClient(try await TestRedis.configuration()) { (redis: RedisClient) async throws in
            let prefix = "t\(UUID().uuidString.prefix(8)):"
            let store = RedisSessionStore(redis: redis, configuration: .init(keyPrefix: prefix, maxSessionsPerUser: 7))
            let user = UserID.random()
            var created: [(token: SessionToken, session: Session)] = []
            for _ in 0..<10 { created.append(try await store.create(for: user)) }
            // The 3 oldest were ended by the 8th, 9th and 10th logins; the newest always survives.
            for (index, entry) in created.enumerated() {
                #expect((try await store.authenticate(entry.token) != nil) == (index >= 3), "session \(index)")
            }
            #expect(try await redis.zcard(KeySchema(prefix: prefix).sessionIndex(user)) == 7)
            // Pages of 3: 3 + 3 + 1, each session once.
            var seen: [SessionID] = []
            var cursor: SessionCursor?
            var pages = 0
            repeat {
                let page = try await store.sessions(for: user, after: cursor, limit: 3)
                seen += page.sessions.map(\.id)
                cursor = page.next
                pages += 1
                if pages == 1 { _ = try await store.revoke(created[9].session.id, of: user, ending: SessionEnd(.logout)) }  // ends between pages
            } while cursor != nil && pages < 10
            // 7 sessions, one of them ended after the first page: 2 or 3 pages, depending on whether it was on it.
            #expect((2...3).contains(pages))
            #expect(Set(seen).count == seen.count, "no session twice")
            #expect(Set(seen).isSuperset(of: created[3..<9].map(\.session.id)), "every live session listed")
            #expect(SessionCursor(text: "12-\(created[3].session.id.hex)") != nil)
            #expect(SessionCursor(text: "nope") == nil)
            try await store.revokeAll(for: user, ending: SessionEnd(.revokedAll))
        }
    }

    /// The index scores sessions by absolute deadline in whole seconds (rounded up: 4 bytes a session less than
    /// milliseconds in a listpack), and creating a session prunes entries whose deadline has passed.
    @Test func indexScoresAreSecondsAndEndedEntriesArePruned() async throws {
        try await TestRedis.withClient(try await TestRedis.configuration()) { (redis: RedisClient) async throws in
            let keys = KeySchema(prefix: "t\(UUID().uuidString.prefix(8)):")
            let store = RedisSessionStore(redis: redis, configuration: .init(keyPrefix: keys.prefix))
            let user = UserID.random()
            let index = keys.sessionIndex(user)
            _ = try await redis.send("ZADD", index, 1_000_000_000, "ended-long-ago-x", 4_000_000_000, "far-future-entry")
            let (_, session) = try await store.create(for: user)
            let score = try #require(try await redis.send("ZSCORE", index, session.id.bytes).string.flatMap(Double.init))
            #expect(score == (session.absoluteExpiresAt.timeIntervalSince1970).rounded(.up))
            let members = try await redis.send("ZRANGE", index, 0, -1).array?.compactMap(\.string)
            #expect(members?.contains("ended-long-ago-x") == false)
            #expect(members?.contains("far-future-entry") == true)
        }
    }

    @Test func idleDeadlineSlidesButNeverPassesTheAbsoluteOne() async throws {
        try await TestRedis.withClient(try await TestRedis.configuration()) { (redis: RedisClient) async throws in
            let prefix = "t\(UUID().uuidString.prefix(8)):"
            let store = RedisSessionStore(
                redis: redis, configuration: .init(idleTimeout: .milliseconds(2000), absoluteTimeout: .milliseconds(4000), keyPrefix: prefix)
            )
            let user = UserID.random()
            let (token, session) = try await store.create(for: user)
            let key = KeySchema(prefix: prefix).session(session.id, tag: user.tag)
            let index = KeySchema(prefix: prefix).sessionIndex(user)
            // Redis' PEXPIRETIME against what create returned, not TTL windows a loaded machine misses. Within 3 ms:
            // the script reads TIME a moment after Redis fixed the time it computes expiries from.
            func deadline(_ key: some RESPArgument) async throws -> Int64 { try await redis.send("PEXPIRETIME", key).int ?? 0 }
            func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }
            #expect(abs(try await deadline(key) - milliseconds(session.expiresAt)) <= 3)
            #expect(milliseconds(session.expiresAt) - milliseconds(session.createdAt) == 2000)
            #expect(abs(try await deadline(index) - milliseconds(session.absoluteExpiresAt)) <= 3)
            #expect(milliseconds(session.absoluteExpiresAt) - milliseconds(session.createdAt) == 4000)
            // Keep it busy past the idle timeout: each use renews the idle deadline (a use may come up to 1.7 s late)...
            let clock = ContinuousClock()
            let start = clock.now
            while clock.now - start < .milliseconds(2500) {
                try await Task.sleep(for: .milliseconds(300))
                #expect(try await store.authenticate(token) != nil)
            }
            // ...but not past the absolute deadline, and then every key is gone by itself.
            try await Task.sleep(for: .milliseconds(Int(max(0, session.absoluteExpiresAt.timeIntervalSinceNow) * 1000) + 300))
            #expect(try await store.authenticate(token) == nil)
            #expect(try await redis.exists(key) == 0)
            #expect(try await redis.exists(index) == 0)
        }
    }

    @Test func unusedSessionsExpireAfterTheIdleTimeout() async throws {
        try await TestRedis.withClient(try await TestRedis.configuration()) { (redis: RedisClient) async throws in
            let store = RedisSessionStore(
                redis: redis,
                configuration: .init(idleTimeout: .milliseconds(300), absoluteTimeout: .seconds(60), keyPrefix: "t\(UUID().uuidString.prefix(8)):")
            )
            let (token, _) = try await store.create(for: UserID.random())
            try await Task.sleep(for: .milliseconds(450))
            #expect(try await store.authenticate(token) == nil)
        }
    }

    @Test func redisNeverHoldsTheRawToken() async throws {
        try await TestRedis.withClient(try await TestRedis.configuration()) { (redis: RedisClient) async throws in
            let prefix = "t\(UUID().uuidString.prefix(8)):"
            let store = RedisSessionStore(redis: redis, configuration: .init(keyPrefix: prefix))
            let user = UserID.random()
            var tokens: [SessionToken] = []
            for _ in 0..<5 { tokens.append(try await store.create(for: user).token) }
            let dump = try await RedisContents.dump(redis, match: "\(prefix)*")
            #expect(!dump.isEmpty)
            for token in tokens {
                #expect(!dump.contains(Array(token.text.utf8)), "raw token found in Redis")
                #expect(!dump.contains(Array(token.text.replacingOccurrences(of: "-", with: "").utf8)))
            }
            try await store.revokeAll(for: user, ending: SessionEnd(.revokedAll))
        }
    }

    @Test func storeErrorsAreTypedWhenRedisIsDown() async throws {
        let server = try RedisServerProcess()
        try await TestRedis.withClient(try RedisConfiguration(url: server.url), waitForConnection: false) { (redis: RedisClient) async throws in
            let store = RedisSessionStore(redis: redis, configuration: .init())
            let error = await #expect(throws: SessionError.self) { try await store.authenticate(SessionToken.random()) }
            #expect(error?.code == .storeUnavailable)
            // The cause stays attached for the logs.
            #expect((error?.underlying as? RedisError)?.code == .unavailable)
            #expect(error?.description.contains("RedisError(unavailable)") == true)
        }
    }
}

@Suite struct LoginThrottleTests {
    @Test func blocksAfterMaxFailuresAndSuccessResets() async throws {
        try await TestRedis.withClient(try await TestRedis.configuration()) { (redis: RedisClient) async throws in
            let throttle = LoginThrottle(redis: redis, keyPrefix: "t\(UUID().uuidString.prefix(8)):", maxFailures: 3, window: .seconds(60))
            for _ in 0..<3 {
                try await throttle.check(username: "Bob", clientAddress: "10.0.0.1")
                try await throttle.recordFailure(username: "bob", clientAddress: "10.0.0.1")
            }
            do {
                try await throttle.check(username: "BOB", clientAddress: "10.0.0.1")
                Issue.record("expected a block")
            } catch let error as SessionError {
                #expect(error.code == .tooManyAttempts)
                #expect((59...60).contains(error.retryAfter ?? 0))
            }
            // Another client address is not blocked.
            try await throttle.check(username: "bob", clientAddress: "10.0.0.2")
            try await throttle.reset(username: "bob", clientAddress: "10.0.0.1")
            try await throttle.check(username: "bob", clientAddress: "10.0.0.1")
        }
    }

    /// Credential stuffing: one account from many addresses is refused past the per-user limit, from every address
    /// (a new one included), and a success from one address does not lift it.
    @Test func oneAccountFromManyAddressesIsBlockedEverywhere() async throws {
        try await TestRedis.withClient(try await TestRedis.configuration()) { (redis: RedisClient) async throws in
            let throttle = LoginThrottle(
                redis: redis, keyPrefix: "t\(UUID().uuidString.prefix(8)):", maxFailures: 3, maxFailuresPerUser: 5, window: .seconds(60)
            )
            for address in 1...5 { try await throttle.recordFailure(username: "carol", clientAddress: "10.1.0.\(address)") }
            for address in ["10.1.0.1", "192.0.2.9"] {
                let error = await #expect(throws: SessionError.self) { try await throttle.check(username: "Carol", clientAddress: address) }
                #expect(error?.code == .tooManyAttempts)
            }
            try await throttle.reset(username: "carol", clientAddress: "10.1.0.1")
            await #expect(throws: SessionError.self) { try await throttle.check(username: "carol", clientAddress: "10.1.0.1") }
            // Other accounts are not affected.
            try await throttle.check(username: "dave", clientAddress: "10.1.0.1")
        }
    }

    /// Password spraying: one address trying many usernames is refused past the per-address limit, for every username
    /// (one it never tried included), while other addresses log in.
    @Test func oneAddressTryingManyAccountsIsBlockedForAll() async throws {
        try await TestRedis.withClient(try await TestRedis.configuration()) { (redis: RedisClient) async throws in
            let throttle = LoginThrottle(
                redis: redis, keyPrefix: "t\(UUID().uuidString.prefix(8)):", maxFailures: 3, maxFailuresPerAddress: 10, window: .seconds(60)
            )
            for user in 1...10 { try await throttle.recordFailure(username: "user\(user)", clientAddress: "203.0.113.5") }
            let error = await #expect(throws: SessionError.self) { try await throttle.check(username: "never-tried", clientAddress: "203.0.113.5") }
            #expect(error?.code == .tooManyAttempts)
            // The window's remaining seconds, rounded up; a loaded machine may take a second or two to get here.
            #expect((55...60).contains(error?.retryAfter ?? 0))
            try await throttle.check(username: "user1", clientAddress: "203.0.113.6")
        }
    }
}

/// Every byte of every key matching a pattern, keys and values, as one array to search.
enum RedisContents {
    static func dump(_ redis: RedisClient, match: String) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        var cursor = "0"
        repeat {
            let page = try await redis.scan(cursor: cursor, match: match, count: 1000)
            cursor = page.cursor
            for key in page.keys {
                bytes += Array(key.readableBytesView)
                let type = try await redis.send("TYPE", key).string ?? ""
                let command: RedisCommand
                switch type {
                case "string": command = RedisCommand("GET", [key])
                case "zset": command = RedisCommand("ZRANGE", [key, 0, -1, "WITHSCORES"])
                case "hash": command = RedisCommand("HGETALL", [key])
                default: continue
                }
                bytes += flatten(try await redis.send(command))
            }
        } while cursor != "0"
        return bytes
    }

    static func flatten(_ value: RESPValue) -> [UInt8] {
        switch value {
        case .array(let values?): return values.flatMap(flatten)
        default: return value.bytes ?? []
        }
    }
}

extension Array where Element == UInt8 {
    func contains(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return false }
        for start in 0...(count - needle.count) where self[start] == needle[0] {
            if Array(self[start..<(start + needle.count)]) == needle { return true }
        }
        return false
    }
}
