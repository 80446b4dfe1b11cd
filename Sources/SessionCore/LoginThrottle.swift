import Crypto
public import Redis

/// Failed-login counting shared by every instance: after `maxFailures` failures for one username from one
/// client address within `window`, that pair is refused until the window (counted from the first failure) ends.
/// A successful login clears the count.
public struct LoginThrottle: Sendable {
    let redis: RedisClient
    let keys: KeySchema
    /// Failures allowed per window (`LOGIN_MAX_FAILURES`, default 5).
    public let maxFailures: Int
    /// The window (`LOGIN_FAILURE_WINDOW`, default 900 s).
    public let window: Duration

    public init(redis: RedisClient, keyPrefix: String, maxFailures: Int = 5, window: Duration = .seconds(900)) {
        self.redis = redis
        self.keys = KeySchema(prefix: keyPrefix)
        self.maxFailures = max(1, maxFailures)
        self.window = window
    }

    /// Throws `tooManyAttempts` (with the seconds left) when the pair is blocked.
    public func check(username: String, clientAddress: String) async throws(SessionError) {
        let reply = try await withStore {
            try await redis.evaluate(Self.checkScript, keys: [key(username, clientAddress)], arguments: [maxFailures])
        }
        if let milliseconds = reply.int, milliseconds > 0 {
            throw .tooManyAttempts(retryAfter: Int((milliseconds + 999) / 1000))
        }
    }

    /// Counts a failure.
    public func recordFailure(username: String, clientAddress: String) async throws(SessionError) {
        _ = try await withStore {
            try await redis.evaluate(Self.failScript, keys: [key(username, clientAddress)], arguments: [window.milliseconds])
        }
    }

    /// Clears the count after a success.
    public func reset(username: String, clientAddress: String) async throws(SessionError) {
        _ = try await withStore { try await redis.del(key(username, clientAddress)) }
    }

    private func key(_ username: String, _ clientAddress: String) -> String {
        // Hashed: neither the username nor the address appears in Redis key names.
        let digest = SHA256.hash(data: Array((Credentials.normalize(username) + "\u{0}" + clientAddress).utf8))
        return keys.loginFailures(Hex.encode(Array(digest).prefix(16)))
    }

    /// KEYS: counter. ARGV: max failures. Milliseconds until unblocked, or 0.
    static let checkScript = RedisScript(
        """
        local count = tonumber(redis.call('GET', KEYS[1]) or '0')
        if count < tonumber(ARGV[1]) then return 0 end
        local ttl = redis.call('PTTL', KEYS[1])
        if ttl < 0 then return 0 end
        return ttl
        """
    )

    /// KEYS: counter. ARGV: window ms. The window starts at the first failure.
    static let failScript = RedisScript(
        """
        local count = redis.call('INCR', KEYS[1])
        if count == 1 or redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
        return count
        """
    )
}
