import Redis

/// Session lifetimes and the Redis key prefix.
///
/// | setting | env | default |
/// |---|---|---|
/// | `idleTimeout` | `SESSION_IDLE_TIMEOUT` (s) | 1800 s: a session unused this long ends (every authenticated request renews it) |
/// | `absoluteTimeout` | `SESSION_ABSOLUTE_TIMEOUT` (s) | 86400 s: a session ends this long after login, whatever its activity |
/// | `keyPrefix` | `KEY_PREFIX` | `ss:` |
public struct SessionConfiguration: Sendable, Equatable {
    public var idleTimeout: Duration
    public var absoluteTimeout: Duration
    public var keyPrefix: String
    /// Live sessions one user may hold (`MAX_SESSIONS_PER_USER`); a login beyond it ends the user's oldest session, so
    /// every per-user script stays bounded.
    public var maxSessionsPerUser: Int
    /// How often, at most, a session's idle deadline is renewed in Redis (`SESSION_TOUCH_INTERVAL`); nil: min(60 s,
    /// idle / 10). A renewal sets the TTL to idle + interval and happens once the TTL has fallen to idle, so a session
    /// lives at least the idle timeout after its last use and at most one interval more — never past the absolute expiry.
    public var touchInterval: Duration?
    /// Whether a login is acknowledged only once the replicas Redis is configured to wait for have its session — and its
    /// `session.created` (`DURABLE_LOGINS`). Off: a failover may lose a just-acknowledged login, session and event
    /// together; on: after a failover that leaves a master without replicas, logins get 503 until one is back.
    public var durableLogins = false

    public init(
        idleTimeout: Duration = .seconds(1800), absoluteTimeout: Duration = .seconds(86400), keyPrefix: String = "ss:",
        maxSessionsPerUser: Int = 100
    ) {
        self.idleTimeout = idleTimeout
        self.absoluteTimeout = absoluteTimeout
        self.keyPrefix = keyPrefix
        self.maxSessionsPerUser = max(1, maxSessionsPerUser)
    }

    var idleMilliseconds: Int64 { idleTimeout.milliseconds }
    /// The touch interval in effect.
    public var effectiveTouchInterval: Duration { touchInterval ?? min(.seconds(60), idleTimeout / 10) }
    /// The TTL a renewal sets: idle + touch interval.
    var renewalMilliseconds: Int64 { idleMilliseconds + effectiveTouchInterval.milliseconds }
    var absoluteMilliseconds: Int64 { absoluteTimeout.milliseconds }
}
