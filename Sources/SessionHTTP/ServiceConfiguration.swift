public import AccessTokens
import Foundation
public import Logging
public import Redis
public import SessionCore

/// The service's settings, resolved from `ServiceOptions` (where each one is declared, with its flag, environment
/// variable, default, validation and help) into the types the layers take.
public struct ServiceConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// nil: never close an idle connection.
    public var httpIdleTimeout: Duration?
    public var httpHeaderTimeout: Duration
    public var httpBodyTimeout: Duration
    public var httpWriteTimeout: Duration
    public var httpMaxPipelined: Int
    public var maxConnections: Int
    public var redis: RedisConfiguration
    public var sessions: SessionConfiguration
    public var registrationOpen: Bool
    public var loginMaxFailures: Int
    public var loginMaxFailuresPerUser: Int
    public var loginMaxFailuresPerAddress: Int
    public var loginFailureWindow: Duration
    public var registrationMaxPerAddress: Int
    public var trustedProxies: TrustedProxies
    public var logLevel: Logger.Level
    public var logFormat: ServiceOptions.LogFormat
    public var maxBodySize: Int
    public var bcryptCost: UInt8
    public var hashThreads: Int
    public var verifyFastPath: Bool
    /// The browser session cookie and its CSRF allowances.
    public var cookie: SessionCookie
    /// Whether `GET /account` is served.
    public var accountPage: Bool
    /// The near cache (`NEAR_CACHE*`); nil when off.
    public var nearCache: NearCacheSettings?
    /// Signed access tokens (`JWT_*`); nil when neither `JWT_KEYS_FILE` nor `JWT_HS256_SECRET` is set: the JWT routes
    /// answer 404 `jwt_disabled`.
    public var accessTokens: AccessTokenIssuer?
    /// Who may call `POST /v1/introspect` and `POST /v1/revoke` (`INTROSPECTION_CLIENTS`).
    public var introspectionClients: IntrospectionClients
    /// The operator API's listener and clients (`ADMIN_PORT`, `ADMIN_HOST`, `ADMIN_CLIENTS`); nil: none.
    public var admin: AdminSettings?
    /// What the executable should log at start about settings it adjusted (never a secret).
    public var warnings: [String] = []
    /// Which requests get a span while tracing (the executable sets it from `OTEL_TRACES_SAMPLER`; see `TraceSampling`).
    public var traceSampling: TraceSampling = .parentBasedAlwaysOn

    /// Resolves validated options.
    /// - Throws: `ConfigurationError` for what only shows when values are combined.
    public init(_ options: ServiceOptions) throws(ConfigurationError) {
        host = options.host
        port = options.port
        httpIdleTimeout = options.httpIdleTimeout == 0 ? nil : .seconds(options.httpIdleTimeout)
        httpHeaderTimeout = .seconds(options.httpHeaderTimeout)
        httpBodyTimeout = .seconds(options.httpBodyTimeout)
        httpWriteTimeout = .seconds(options.httpWriteTimeout)
        httpMaxPipelined = options.httpMaxPipelined
        maxConnections = options.maxConnections
        do {
            redis = try RedisConfiguration(url: options.redisURL)
            trustedProxies = try TrustedProxies(parsing: options.trustedProxies)
        } catch let error as ConfigurationError {
            throw error
        } catch {
            throw ConfigurationError("--redis-url is not a valid Redis URL")
        }
        redis.connectionCount = options.redisConnections
        redis.commandTimeout = .milliseconds(options.redisTimeoutMs)
        redis.connectTimeout = .milliseconds(options.redisTimeoutMs)
        redis.sentinelPassword = options.redisSentinelPassword
        redis.minReplicas = options.redisMinReplicas
        redis.waitTimeout = .milliseconds(options.redisWaitTimeoutMs)
        redis.trackingLease = .milliseconds(options.nearCacheLeaseMs)
        let tlsFiles = [options.redisTlsCaFile, options.redisTlsCertFile, options.redisTlsKeyFile]
        if redis.tls != nil {
            let tls = RedisConfiguration.TLS(
                caFile: options.redisTlsCaFile, certificateFile: options.redisTlsCertFile, keyFile: options.redisTlsKeyFile
            )
            redis.tls = tls
            do {
                // Unreadable or mismatched files stop the start, with the reason, rather than fail every connection.
                _ = try RedisConfiguration.makeTLSContext(tls)
            } catch let error as RedisError {
                throw ConfigurationError("REDIS_TLS_*: \(error.message)")
            } catch {
                throw ConfigurationError("REDIS_TLS_*: cannot load the TLS files")
            }
        } else if tlsFiles.contains(where: { $0 != nil }) {
            throw ConfigurationError("REDIS_TLS_* files are set but REDIS_URL is not a rediss…:// URL")
        }
        let isSentinel = if case .sentinel = redis.topology { true } else { false }
        if options.redisSentinelPassword != nil, !isSentinel {
            warnings.append("REDIS_SENTINEL_PASSWORD is set but REDIS_URL is not a redis-sentinel:// URL; ignored")
        }
        sessions = SessionConfiguration(
            idleTimeout: .seconds(options.sessionIdleTimeout), absoluteTimeout: .seconds(options.sessionAbsoluteTimeout),
            keyPrefix: options.keyPrefix, maxSessionsPerUser: options.maxSessionsPerUser
        )
        if options.sessionIdleTimeout > options.sessionAbsoluteTimeout {
            // Someone who only shortens the absolute lifetime must not get a crash loop: no session can outlive it anyway.
            sessions.idleTimeout = sessions.absoluteTimeout
            warnings.append(
                "SESSION_IDLE_TIMEOUT (\(options.sessionIdleTimeout) s) exceeds SESSION_ABSOLUTE_TIMEOUT "
                    + "(\(options.sessionAbsoluteTimeout) s); using \(options.sessionAbsoluteTimeout) s for both"
            )
        }
        sessions.touchInterval = options.sessionTouchInterval.map { .milliseconds(Int64(($0 * 1000).rounded())) }
        nearCache =
            options.nearCache == .on
            ? NearCacheSettings(maxEntries: options.nearCacheMaxEntries, maxAge: .milliseconds(options.nearCacheMaxAgeMs)) : nil
        registrationOpen = options.registration == .open
        loginMaxFailures = options.loginMaxFailures
        loginMaxFailuresPerUser = options.loginMaxFailuresPerUser
        loginMaxFailuresPerAddress = options.loginMaxFailuresPerAddress
        loginFailureWindow = .seconds(options.loginFailureWindow)
        registrationMaxPerAddress = options.registrationMaxPerAddress
        logLevel = options.logLevel
        logFormat = options.logFormat
        maxBodySize = options.maxBodySize
        bcryptCost = UInt8(options.bcryptCost)
        hashThreads = options.hashThreads
        verifyFastPath = options.verifyFastPath == .on
        accountPage = options.accountPage == .on
        cookie = SessionCookie(
            name: options.cookieName, secure: options.cookieSecure == .on,
            allowedOrigins: Set(options.allowedOrigins.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        )
        introspectionClients = IntrospectionClients(parsing: options.introspectionClients)
        admin = options.adminPort.map {
            AdminSettings(host: options.adminHost, port: $0, clients: IntrospectionClients(parsing: options.adminClients))
        }
        do {
            let keys: AccessTokenKeySet? =
                if let file = options.jwtKeysFile {
                    try AccessTokenKeySet.load(file: file)
                } else if let secret = options.jwtHs256Secret {
                    try AccessTokenKeySet.sharedSecret(Array(secret.utf8))
                } else {
                    nil
                }
            accessTokens = keys.map {
                AccessTokenIssuer(keys: $0, issuer: options.jwtIssuer, audience: options.jwtAudience, lifetime: Int64(options.jwtTtl))
            }
        } catch {
            throw ConfigurationError("\(options.jwtKeysFile != nil ? "JWT_KEYS_FILE" : "JWT_HS256_SECRET"): \(error.message)")
        }
        if options.jwtKeysFile != nil, options.jwtHs256Secret != nil {
            warnings.append("JWT_HS256_SECRET is ignored: JWT_KEYS_FILE is set")
        }
        if options.cookieSecure == .off {
            warnings.append("COOKIE_SECURE=false: the session cookie is sent over plain HTTP; for local development only")
        }
    }

    /// Reads the environment, then the flags over it (see `ServiceOptions`).
    /// - Throws: `ConfigurationError` naming the setting and what is wrong (never echoing a password).
    public init(environment: [String: String], arguments: [String]) throws(ConfigurationError) {
        try self.init(ServiceOptions.parse(environment: environment, arguments: arguments))
    }
}

/// The near cache's bounds (`NEAR_CACHE_MAX_ENTRIES`, `NEAR_CACHE_MAX_AGE_MS`).
public struct NearCacheSettings: Sendable, Equatable {
    public var maxEntries: Int
    public var maxAge: Duration

    public init(maxEntries: Int = 100_000, maxAge: Duration = .seconds(10)) {
        self.maxEntries = maxEntries
        self.maxAge = maxAge
    }
}

/// The operator API's listener (`ADMIN_HOST`, `ADMIN_PORT`) and its Basic clients (`ADMIN_CLIENTS`).
public struct AdminSettings: Sendable {
    public var host: String
    public var port: Int
    public var clients: IntrospectionClients

    public init(host: String = "127.0.0.1", port: Int, clients: IntrospectionClients) {
        self.host = host
        self.port = port
        self.clients = clients
    }
}
