import Crypto
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
    public func check(username: String, clientAddress: String) async throws(SessionError) {
        let reply = try await withStore {
            try await redis.evaluate(
                Self.checkScript, keys: counters(username, clientAddress), arguments: [maxFailures, maxFailuresPerUser, maxFailuresPerAddress]
            )
        }
        if let milliseconds = reply.int, milliseconds > 0 {
            throw .tooManyAttempts(retryAfter: Int((milliseconds + 999) / 1000))
        }
    }

    /// Counts a failure on all three counters.
    public func recordFailure(username: String, clientAddress: String) async throws(SessionError) {
        _ = try await withStore {
            try await redis.evaluate(Self.failScript, keys: counters(username, clientAddress), arguments: [window.milliseconds])
        }
    }

    /// Clears the (username, address) count after a success.
    public func reset(username: String, clientAddress: String) async throws(SessionError) {
        _ = try await withStore { try await redis.del(counters(username, clientAddress)[0]) }
    }

    /// The three counters' keys: (username, address), username, address. Hashed, so neither a username nor an
    /// address appears in a Redis key name; the first byte of the hashed text keeps the three apart.
    private func counters(_ username: String, _ clientAddress: String) -> [any RESPArgument] {
        let name = Credentials.normalize(username)
        return ["p\u{0}" + name + "\u{0}" + clientAddress, "u\u{0}" + name, "a\u{0}" + clientAddress].map { text in
            keys.loginFailures(Hex.encode(Array(SHA256.hash(data: Array(text.utf8))).prefix(16)))
        }
    }

    /// KEYS: the counters. ARGV: their limits, in the same order. Milliseconds until every counter at its limit
    /// has expired, or 0.
    static let checkScript = RedisScript(
        """
        local wait = 0
        for i, key in ipairs(KEYS) do
            if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i]) then
                local ttl = redis.call('PTTL', key)
                if ttl > wait then wait = ttl end
            end
        end
        return wait
        """
    )

    /// KEYS: the counters. ARGV: window ms. Each window starts at that counter's first failure.
    static let failScript = RedisScript(
        """
        for _, key in ipairs(KEYS) do
            local count = redis.call('INCR', key)
            if count == 1 or redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[1]) end
        end
        return 1
        """
    )
}
