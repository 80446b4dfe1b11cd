/// Every Redis key the service writes, in one place. `P` is `KEY_PREFIX` (default `ss:`).
///
/// | key | type | holds | expires |
/// |---|---|---|---|
/// | `P s<16 bytes>` | string (28 bytes) | a session: absolute expiry (6 bytes, ms), creation (6 bytes, ms), user ID (16 bytes) | idle timeout, renewed on use, never past the absolute expiry |
/// | `P x:<user-id>` | sorted set | the user's sessions: member = 16-byte session ID, score = absolute expiry (whole seconds, rounded up) | at the latest absolute expiry among them |
/// | `P u:<user-id>` | hash | a user: `name` (as registered), `pw` (password hash), `created` (ms) | never |
/// | `P n:<lowercased username>` | string | the user ID of a username (uniqueness, case-insensitive) | never |
/// | `P f:<hex>` | string (counter) | failed logins for one username from one client address; hex = SHA-256 of both, truncated | the failure window |
///
/// The 16 bytes of a session key are SHA-256(token) truncated, never the token itself.
///
/// Sizes matter at one key per session: with the default prefix a session key is 20 bytes, which Redis stores in a
/// 24-byte allocation (21 bytes, as with an `s:` marker, would take 32), and an index score in seconds fits a
/// listpack's 32-bit integer (milliseconds need 64). Session keys cannot collide with the others: after the prefix
/// they start with `s`, the others with a letter and a colon (`x:`, `u:`, `n:`, `f:`).
public struct KeySchema: Sendable, Equatable {
    /// The prefix every key starts with.
    public let prefix: String
    /// The start of every session key, for scripts that derive session keys from index members. Stored: every
    /// authentication builds a session key.
    public let sessionKeyPrefix: [UInt8]

    public init(prefix: String) {
        self.prefix = prefix
        self.sessionKeyPrefix = Array(prefix.utf8) + [UInt8(ascii: "s")]
    }

    /// A session's key.
    public func session(_ id: SessionID) -> [UInt8] { sessionKeyPrefix + id.bytes }

    /// A user's session index.
    public func sessionIndex(_ user: UserID) -> String { prefix + "x:" + user.text }

    /// A user's record.
    public func user(_ user: UserID) -> String { prefix + "u:" + user.text }

    /// The start of every user key, for scripts that go from a user ID to its record.
    public var userKeyPrefix: String { prefix + "u:" }

    /// The username reservation (lowercased: usernames are unique case-insensitively).
    public func username(_ normalized: String) -> String { prefix + "n:" + normalized }

    /// The failed-login counter of one username from one client address.
    public func loginFailures(_ digestHex: String) -> String { prefix + "f:" + digestHex }
}

/// Lua shared by the core's scripts, written once.
enum Lua {
    /// Defines `redisTime()`: Redis' clock in milliseconds. Every deadline is computed from it, so instances with skewed
    /// clocks agree.
    static let redisTime = """
        local function redisTime()
            local t = redis.call('TIME')
            return t[1] * 1000 + math.floor(t[2] / 1000)
        end

        """
}
