import Crypto
import Metrics
public import Redis

/// Failed-login counting shared by every instance, on three counters that all count every failure (a known
/// username or not, so a refusal never tells whether the account exists) within `window`, counted from each
/// counter's first failure:
/// - per (username, client address), `maxFailures` — stops guessing one account from one place; a successful login
///   clears it;
/// - per username across all addresses, `maxFailuresPerUser` — stops credential stuffing against one account from many
///   addresses; it is not cleared by a success (else an attacker who also holds a valid password resets it);
/// - per client address across all usernames, `maxFailuresPerAddress` — stops password spraying from one address.
/// A login is refused (429, `Retry-After`) while any counter is at its limit, until that counter's window ends.
public struct LoginThrottle: Sendable {
    let redis: RedisClient
    let keys: KeySchema
    /// Failures allowed per (username, address) per window (`LOGIN_MAX_FAILURES`, default 5).
    public let maxFailures: Int
    /// Failures allowed per username per window, from any address (`LOGIN_MAX_FAILURES_PER_USER`, default 20).
    public let maxFailuresPerUser: Int
    /// Failures allowed per client address per window, for any username (`LOGIN_MAX_FAILURES_PER_ADDRESS`, default 100).
    public let maxFailuresPerAddress: Int
    /// The window (`LOGIN_FAILURE_WINDOW`, default 900 s).
    public let window: Duration
    /// Registrations allowed per client address per window (`REGISTRATION_MAX_PER_ADDRESS`, default 10).
    public let maxRegistrationsPerAddress: Int
    /// `session_login_throttle_hits_total{limit}`: logins refused, by the counter at its limit
    /// (`user_address`, `user`, `address`; a refusal with several at their limit counts for each).
    private let hits = ["user_address", "user", "address"].map { Counter(label: "session_login_throttle_hits_total", dimensions: [("limit", $0)]) }
    private let registrationHits = Counter(label: "session_login_throttle_hits_total", dimensions: [("limit", "registration_address")])
    private let clientHits = Counter(label: "session_login_throttle_hits_total", dimensions: [("limit", "client")])
    /// `session_client_auth_failures_total`: failed Basic client authentications (introspection, revocation, admin).
    private let clientFailures = Counter(label: "session_client_auth_failures_total")

    public init(
        redis: RedisClient, keyPrefix: String, maxFailures: Int = 5, maxFailuresPerUser: Int = 20, maxFailuresPerAddress: Int = 100,
        window: Duration = .seconds(900), maxRegistrationsPerAddress: Int = 10
    ) {
        self.maxRegistrationsPerAddress = max(1, maxRegistrationsPerAddress)
        self.redis = redis
        self.keys = KeySchema(prefix: keyPrefix)
        self.maxFailures = max(1, maxFailures)
        self.maxFailuresPerUser = max(1, maxFailuresPerUser)
        self.maxFailuresPerAddress = max(1, maxFailuresPerAddress)
        self.window = window
    }

    /// Throws `tooManyAttempts` (with the seconds left) when any counter is at its limit.
    ///
    /// The three counters are three keys in three cluster slots, so three commands, sent at once (one round trip of
    /// latency on pipelined connections).
    public func check(username: String, clientAddress: String) async throws(SessionError) {
        let limits = [maxFailures, maxFailuresPerUser, maxFailuresPerAddress]
        let waits = try await withStore {
            try await forEachCounter(username, clientAddress) { index, key in
                try await redis.evaluate(Self.checkScript, keys: [key], arguments: [limits[index]]).int ?? 0
            }
        }
        if let milliseconds = waits.max(), milliseconds > 0 {
            for (index, wait) in waits.enumerated() where wait > 0 { hits[index].increment() }
            throw .tooManyAttempts(retryAfter: Int((milliseconds + 999) / 1000))
        }
    }

    /// Counts a failure on all three counters.
    public func recordFailure(username: String, clientAddress: String) async throws(SessionError) {
        _ = try await withStore {
            try await forEachCounter(username, clientAddress) { _, key in
                try await redis.evaluate(Self.failScript, keys: [key], arguments: [window.milliseconds])
            }
        }
    }

    /// Runs `body` on the three counters concurrently; the results in counter order.
    private func forEachCounter<T: Sendable>(
        _ username: String, _ clientAddress: String, _ body: @escaping @Sendable (Int, String) async throws -> T
    ) async throws -> [T] {
        let keys = counters(username, clientAddress)
        return try await withThrowingTaskGroup(of: (Int, T).self) { group in
            for (index, key) in keys.enumerated() { group.addTask { (index, try await body(index, key)) } }
            var results = [T?](repeating: nil, count: keys.count)
            for try await (index, value) in group { results[index] = value }
            return results.compactMap { $0 }
        }
    }

    /// Counts a registration from `clientAddress`; throws `tooManyAttempts` (with the seconds left) once the address is
    /// past its limit in this window. Every attempt counts, so the limit bounds the hashes an address can cost.
    public func countRegistration(clientAddress: String) async throws(SessionError) {
        try await take(key("r\u{0}" + clientAddress), limit: maxRegistrationsPerAddress)
    }

    /// Throws `tooManyAttempts` while failed authentications of client `name` (a Basic-authenticated API client), or
    /// from `clientAddress`, are at their limit: `maxFailuresPerUser` per name, `maxFailuresPerAddress` per address.
    public func checkClient(name: String, clientAddress: String) async throws(SessionError) {
        let limits = [maxFailuresPerUser, maxFailuresPerAddress]
        let counters = clientCounters(name, clientAddress)
        var wait: Int64 = 0
        for (key, limit) in zip(counters, limits) {
            let left = try await withStore { try await redis.evaluate(Self.checkScript, keys: [key], arguments: [limit]).int ?? 0 }
            wait = max(wait, left)
        }
        if wait > 0 {
            clientHits.increment()
            throw .tooManyAttempts(retryAfter: Int((wait + 999) / 1000))
        }
    }

    /// Counts a failed client authentication on both of its counters.
    public func recordClientFailure(name: String, clientAddress: String) async throws(SessionError) {
        clientFailures.increment()
        for key in clientCounters(name, clientAddress) {
            _ = try await withStore { try await redis.evaluate(Self.failScript, keys: [key], arguments: [window.milliseconds]) }
        }
    }

    private func clientCounters(_ name: String, _ clientAddress: String) -> [String] {
        [key("c\u{0}" + name), key("A\u{0}" + clientAddress)]
    }

    /// Counts one on `key`; throws `tooManyAttempts` when the count is past `limit`.
    private func take(_ key: String, limit: Int) async throws(SessionError) {
        let wait = try await withStore {
            try await redis.evaluate(Self.takeScript, keys: [key], arguments: [limit, window.milliseconds]).int ?? 0
        }
        if wait > 0 {
            registrationHits.increment()
            throw .tooManyAttempts(retryAfter: Int((wait + 999) / 1000))
        }
    }

    /// Clears the (username, address) count after a success.
    public func reset(username: String, clientAddress: String) async throws(SessionError) {
        _ = try await withStore { try await redis.del(counters(username, clientAddress)[0]) }
    }

    /// The three counters' keys: (username, address), username, address. Hashed, so neither a username nor an
    /// address appears in a Redis key name; the first byte of the hashed text keeps the three apart.
    private func counters(_ username: String, _ clientAddress: String) -> [String] {
        let name = Credentials.normalize(username)
        return ["p\u{0}" + name + "\u{0}" + clientAddress, "u\u{0}" + name, "a\u{0}" + clientAddress].map(key)
    }

    /// A counter's key: the hashed text, so no name or address appears in a Redis key; its first byte keeps the kinds
    /// apart.
    private func key(_ text: String) -> String {
        keys.loginFailures(Hex.encode(Array(Array(SHA256.hash(data: Array(text.utf8))).prefix(16))))
    }

    /// KEYS: a counter. ARGV: its limit. Milliseconds until it expires when it is at its limit, else 0.
    static let checkScript = RedisScript(
        name: "throttle_check",
        """
        if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then return 0 end
        return math.max(0, redis.call('PTTL', KEYS[1]))
        """
    )

    /// KEYS: a counter. ARGV: limit, window ms. Counts one (the window starts at the first); milliseconds until the
    /// counter expires when the count is past the limit, else 0.
    static let takeScript = RedisScript(
        name: "throttle_take",
        """
        local count = redis.call('INCR', KEYS[1])
        if count == 1 or redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        if count <= tonumber(ARGV[1]) then return 0 end
        return math.max(1, redis.call('PTTL', KEYS[1]))
        """
    )

    /// KEYS: a counter. ARGV: window ms. The window starts at the counter's first failure.
    static let failScript = RedisScript(
        name: "throttle_fail",
        """
        local count = redis.call('INCR', KEYS[1])
        if count == 1 or redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
        return 1
        """
    )
}
