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
    /// `session_login_throttle_hits_total{limit}`: logins refused, by the counter at its limit
    /// (`user_address`, `user`, `address`; a refusal with several at their limit counts for each).
    private let hits = ["user_address", "user", "address"].map { Counter(label: "session_login_throttle_hits_total", dimensions: [("limit", $0)]) }

    public init(
        redis: RedisClient, keyPrefix: String, maxFailures: Int = 5, maxFailuresPerUser: Int = 20, maxFailuresPerAddress: Int = 100,
        window: Duration = .seconds(900)
    ) {
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

    /// Clears the (username, address) count after a success.
    public func reset(username: String, clientAddress: String) async throws(SessionError) {
        _ = try await withStore { try await redis.del(counters(username, clientAddress)[0]) }
    }

    /// The three counters' keys: (username, address), username, address. Hashed, so neither a username nor an
    /// address appears in a Redis key name; the first byte of the hashed text keeps the three apart.
    private func counters(_ username: String, _ clientAddress: String) -> [String] {
        let name = Credentials.normalize(username)
        return ["p\u{0}" + name + "\u{0}" + clientAddress, "u\u{0}" + name, "a\u{0}" + clientAddress].map { text in
            keys.loginFailures(Hex.encode(Array(SHA256.hash(data: Array(text.utf8))).prefix(16)))
        }
    }

    /// KEYS: a counter. ARGV: its limit. Milliseconds until it expires when it is at its limit, else 0.
    static let checkScript = RedisScript(
        name: "throttle_check",
        """
        if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then return 0 end
        return math.max(0, redis.call('PTTL', KEYS[1]))
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
