public import Logging
public import Redis
public import SessionCore

#if canImport(Glibc)
import Glibc
#endif

/// Everything the service reads at start-up: environment variables, each with an equal command-line flag
/// (`REDIS_URL` ↔ `--redis-url`); a flag wins over the variable.
///
/// | variable | flag | default | meaning |
/// |---|---|---|---|
/// | `HOST` | `--host` | `127.0.0.1` | address to listen on |
/// | `PORT` | `--port` | `8080` | port to listen on |
/// | `REDIS_URL` | `--redis-url` | `redis://127.0.0.1:6379/0` | `redis://[user[:password]@]host[:port][/db]` or `unix:///path.sock[?db=N]` |
/// | `SESSION_IDLE_TIMEOUT` | `--session-idle-timeout` | `1800` | seconds a session may go unused |
/// | `SESSION_ABSOLUTE_TIMEOUT` | `--session-absolute-timeout` | `86400` | seconds a session may live at most |
/// | `REGISTRATION` | `--registration` | `open` | `open` or `closed` |
/// | `LOGIN_MAX_FAILURES` | `--login-max-failures` | `5` | failed logins per username and client address per window |
/// | `LOGIN_FAILURE_WINDOW` | `--login-failure-window` | `900` | seconds |
/// | `TRUSTED_PROXIES` | `--trusted-proxies` | (none) | IPs/CIDRs whose `X-Forwarded-For` is believed |
/// | `LOG_LEVEL` | `--log-level` | `info` | trace, debug, info, notice, warning, error, critical |
/// | `KEY_PREFIX` | `--key-prefix` | `ss:` | prefix of every Redis key |
/// | `MAX_BODY_SIZE` | `--max-body-size` | `65536` | bytes; larger bodies get 413 |
/// | `BCRYPT_COST` | `--bcrypt-cost` | `11` | bcrypt cost (4–16) |
/// | `HASH_THREADS` | `--hash-threads` | half the cores, ≥ 1 | threads for password hashing |
/// | `REDIS_CONNECTIONS` | `--redis-connections` | the cores, ≥ 2 | pooled, pipelined connections (one per event loop at least) |
/// | `REDIS_TIMEOUT_MS` | `--redis-timeout-ms` | `1000` | per-command and connect timeout |
/// | `VERIFY_FAST_PATH` | `--verify-fast-path` | `on` | serve `GET /v1/verify` on the event loop (`VerifyHandler`); `off`: through the router |
public struct ServiceConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    public var redis: RedisConfiguration
    public var sessions = SessionConfiguration()
    public var registrationOpen = true
    public var loginMaxFailures = 5
    public var loginFailureWindow: Duration = .seconds(900)
    public var trustedProxies = TrustedProxies.none
    public var logLevel: Logger.Level = .info
    public var maxBodySize = 64 * 1024
    public var bcryptCost: UInt8 = 11
    public var hashThreads = max(1, System.coreCount / 2)
    public var verifyFastPath = true

    /// Defaults only.
    public init() {
        redis = try! RedisConfiguration(url: "redis://127.0.0.1:6379/0")
        redis.connectionCount = Self.defaultRedisConnections
    }

    /// One connection per event loop (the HTTP server's loops, one per core), so each loop has one of its own.
    static var defaultRedisConnections: Int { max(2, System.coreCount) }

    /// Every recognised variable, in the order of the table above.
    public static let variables = [
        "HOST", "PORT", "REDIS_URL", "SESSION_IDLE_TIMEOUT", "SESSION_ABSOLUTE_TIMEOUT", "REGISTRATION", "LOGIN_MAX_FAILURES",
        "LOGIN_FAILURE_WINDOW", "TRUSTED_PROXIES", "LOG_LEVEL", "KEY_PREFIX", "MAX_BODY_SIZE", "BCRYPT_COST", "HASH_THREADS",
        "REDIS_CONNECTIONS", "REDIS_TIMEOUT_MS", "VERIFY_FAST_PATH",
    ]

    /// Reads the environment, then the flags over it.
    /// - Throws: `ConfigurationError` naming the setting and what is wrong (never echoing a password).
    public init(environment: [String: String], arguments: [String]) throws(ConfigurationError) {
        self.init()
        var values = environment.filter { Self.variables.contains($0.key) }
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("--") else { throw ConfigurationError("unexpected argument '\(argument)' (see --help)") }
            var name = String(argument.dropFirst(2))
            var value: String
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            } else {
                guard index < arguments.count else { throw ConfigurationError("--\(name) needs a value") }
                value = arguments[index]
                index += 1
            }
            let variable = name.uppercased().replacingDashes
            guard Self.variables.contains(variable) else { throw ConfigurationError("unknown flag --\(name) (see --help)") }
            values[variable] = value
        }
        try apply(values)
    }

    private mutating func apply(_ values: [String: String]) throws(ConfigurationError) {
        if let value = values["HOST"] { host = value }
        if let value = values["PORT"] { port = try Self.integer(value, "PORT", 0...65535) }
        if let value = values["REDIS_URL"] {
            do {
                // The URL names the server and credentials; the pool's size is a setting of its own.
                let connections = redis.connectionCount
                redis = try RedisConfiguration(url: value)
                redis.connectionCount = connections
            } catch let error as RedisError {
                throw ConfigurationError("REDIS_URL: \(error.message)")
            } catch {
                throw ConfigurationError("REDIS_URL is not a valid Redis URL")
            }
        }
        if let value = values["SESSION_IDLE_TIMEOUT"] {
            sessions.idleTimeout = .seconds(try Self.integer(value, "SESSION_IDLE_TIMEOUT", 1...31_536_000))
        }
        if let value = values["SESSION_ABSOLUTE_TIMEOUT"] {
            sessions.absoluteTimeout = .seconds(try Self.integer(value, "SESSION_ABSOLUTE_TIMEOUT", 1...315_360_000))
        }
        if let value = values["REGISTRATION"] {
            switch value.lowercased() {
            case "open": registrationOpen = true
            case "closed": registrationOpen = false
            default: throw ConfigurationError("REGISTRATION must be open or closed")
            }
        }
        if let value = values["LOGIN_MAX_FAILURES"] { loginMaxFailures = try Self.integer(value, "LOGIN_MAX_FAILURES", 1...1_000_000) }
        if let value = values["LOGIN_FAILURE_WINDOW"] {
            loginFailureWindow = .seconds(try Self.integer(value, "LOGIN_FAILURE_WINDOW", 1...31_536_000))
        }
        if let value = values["TRUSTED_PROXIES"] { trustedProxies = try TrustedProxies(parsing: value) }
        if let value = values["LOG_LEVEL"] {
            guard let level = Logger.Level(rawValue: value.lowercased()) else {
                throw ConfigurationError("LOG_LEVEL must be one of trace, debug, info, notice, warning, error, critical")
            }
            logLevel = level
        }
        if let value = values["KEY_PREFIX"] {
            guard value.utf8.count <= 64 else { throw ConfigurationError("KEY_PREFIX must be at most 64 bytes") }
            sessions.keyPrefix = value
        }
        if let value = values["MAX_BODY_SIZE"] { maxBodySize = try Self.integer(value, "MAX_BODY_SIZE", 256...(64 << 20)) }
        if let value = values["BCRYPT_COST"] { bcryptCost = UInt8(try Self.integer(value, "BCRYPT_COST", 4...16)) }
        if let value = values["HASH_THREADS"] { hashThreads = try Self.integer(value, "HASH_THREADS", 1...256) }
        if let value = values["REDIS_CONNECTIONS"] { redis.connectionCount = try Self.integer(value, "REDIS_CONNECTIONS", 1...64) }
        if let value = values["REDIS_TIMEOUT_MS"] {
            let milliseconds = try Self.integer(value, "REDIS_TIMEOUT_MS", 10...60_000)
            redis.commandTimeout = .milliseconds(milliseconds)
            redis.connectTimeout = .milliseconds(milliseconds)
        }
        if let value = values["VERIFY_FAST_PATH"] {
            switch value.lowercased() {
            case "on", "true", "1": verifyFastPath = true
            case "off", "false", "0": verifyFastPath = false
            default: throw ConfigurationError("VERIFY_FAST_PATH must be on or off")
            }
        }
        guard sessions.idleTimeout <= sessions.absoluteTimeout else {
            throw ConfigurationError("SESSION_IDLE_TIMEOUT must not exceed SESSION_ABSOLUTE_TIMEOUT")
        }
    }

    private static func integer(_ text: String, _ name: String, _ range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        guard let value = Int(text.trimmingCharacters), range.contains(value) else {
            throw ConfigurationError("\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// The `--help` text.
    public static let help = """
        session-service — Redis-backed token sessions over HTTP

        Usage: session-service [--flag value]…   (each flag also reads its environment variable)

          --host                      HOST                      127.0.0.1
          --port                      PORT                      8080
          --redis-url                 REDIS_URL                 redis://127.0.0.1:6379/0
          --session-idle-timeout      SESSION_IDLE_TIMEOUT      1800 (seconds)
          --session-absolute-timeout  SESSION_ABSOLUTE_TIMEOUT  86400 (seconds)
          --registration              REGISTRATION              open | closed
          --login-max-failures        LOGIN_MAX_FAILURES        5
          --login-failure-window      LOGIN_FAILURE_WINDOW      900 (seconds)
          --trusted-proxies           TRUSTED_PROXIES           (none) IPs or CIDRs, comma-separated
          --log-level                 LOG_LEVEL                 info
          --key-prefix                KEY_PREFIX                ss:
          --max-body-size             MAX_BODY_SIZE             65536 (bytes)
          --bcrypt-cost               BCRYPT_COST               11
          --hash-threads              HASH_THREADS              half the cores
          --redis-connections         REDIS_CONNECTIONS         the cores, at least 2
          --redis-timeout-ms          REDIS_TIMEOUT_MS          1000
          --verify-fast-path          VERIFY_FAST_PATH          on | off
        """
}

enum System {
    static var coreCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

extension String {
    fileprivate var replacingDashes: String { String(map { $0 == "-" ? "_" : $0 }) }
    fileprivate var trimmingCharacters: Substring { Substring(self).trimmingSpaces }
}
