public import AccessTokens
import Foundation
import Redis
public import SessionCore
public import SessionHTTP
public import SessionWebhooks

extension ServiceConfiguration {
    /// Reads the environment, then the flags over it (see `ServiceOptions`).
    /// - Throws: `ConfigurationError` naming the setting and what is wrong (never echoing a password).
    public init(environment: [String: String], arguments: [String]) throws(ConfigurationError) {
        try self.init(ServiceOptions.parse(environment: environment, arguments: arguments))
    }

    /// Resolves validated options into the values the layers take.
    /// - Throws: `ConfigurationError` for what only shows when values are combined.
    public init(_ options: ServiceOptions) throws(ConfigurationError) {
        var redis: RedisConfiguration
        let trustedProxies: TrustedProxies
        var warnings: [String] = []
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
        var sessions = SessionConfiguration(
            idleTimeout: .seconds(options.sessionIdleTimeout), absoluteTimeout: .seconds(options.sessionAbsoluteTimeout),
            keyPrefix: options.keyPrefix, maxSessionsPerUser: options.maxSessionsPerUser
        )
        sessions.durableLogins = options.durableLogins == .on
        if options.sessionIdleTimeout > options.sessionAbsoluteTimeout {
            // Someone who only shortens the absolute lifetime must not get a crash loop: no session can outlive it anyway.
            sessions.idleTimeout = sessions.absoluteTimeout
            warnings.append(
                "SESSION_IDLE_TIMEOUT (\(options.sessionIdleTimeout) s) exceeds SESSION_ABSOLUTE_TIMEOUT "
                    + "(\(options.sessionAbsoluteTimeout) s); using \(options.sessionAbsoluteTimeout) s for both"
            )
        }
        sessions.touchInterval = options.sessionTouchInterval.map { .milliseconds(Int64(($0 * 1000).rounded())) }
        let nearCache =
            options.nearCache == .on
            ? NearCacheSettings(maxEntries: options.nearCacheMaxEntries, maxAge: .milliseconds(options.nearCacheMaxAgeMs)) : nil
        let cookie = SessionCookie(
            name: options.cookieName, secure: options.cookieSecure == .on,
            allowedOrigins: Set(options.allowedOrigins.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        )
        let introspectionClients = IntrospectionClients(parsing: options.introspectionClients)
        let admin = options.adminPort.map {
            AdminSettings(host: options.adminHost, port: $0, clients: IntrospectionClients(parsing: options.adminClients))
        }
        let accessTokens: AccessTokenIssuer?
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
        self.init(
            host: options.host,
            port: options.port,
            httpIdleTimeout: options.httpIdleTimeout == 0 ? nil : .seconds(options.httpIdleTimeout),
            httpHeaderTimeout: .seconds(options.httpHeaderTimeout),
            httpBodyTimeout: .seconds(options.httpBodyTimeout),
            httpWriteTimeout: .seconds(options.httpWriteTimeout),
            httpMaxPipelined: options.httpMaxPipelined,
            maxConnections: options.maxConnections,
            redis: redis,
            sessions: sessions,
            registrationOpen: options.registration == .open,
            loginMaxFailures: options.loginMaxFailures,
            loginMaxFailuresPerUser: options.loginMaxFailuresPerUser,
            loginMaxFailuresPerAddress: options.loginMaxFailuresPerAddress,
            loginFailureWindow: .seconds(options.loginFailureWindow),
            registrationMaxPerAddress: options.registrationMaxPerAddress,
            trustedProxies: trustedProxies,
            maxBodySize: options.maxBodySize,
            passwordHashing: options.passwordHash == .bcrypt
                ? .bcrypt(cost: UInt8(options.bcryptCost))
                : .argon2id(
                    Argon2id.Parameters(
                        memoryKiB: UInt32(options.argon2MemoryKib), iterations: UInt32(options.argon2Iterations),
                        parallelism: UInt32(options.argon2Parallelism))),
            passwordPolicy: PasswordPolicy(minimumLength: options.passwordMinLength),
            authentication: AuthenticationSettings(
                reauthMaxAge: .seconds(options.reauthMaxAge), totpIssuer: options.totpIssuer,
                totpEncryptionKey: options.totpEncryptionKey.flatMap { Data(base64Encoded: $0) }.map(Array.init)),
            hashThreads: options.hashThreads,
            verifyFastPath: options.verifyFastPath == .on,
            cookie: cookie,
            accountPage: options.accountPage == .on,
            nearCache: nearCache,
            accessTokens: accessTokens,
            introspectionClients: introspectionClients,
            admin: admin
        )
        self.events = EventSettings(enabled: options.events == .on, maxStreamLength: options.eventsMaxlen)
        self.warnings = warnings
    }
}

extension ServiceOptions {
    /// Where lifecycle events are delivered (`WEBHOOK_*`, validated); nil without `WEBHOOK_URL`.
    public var webhookSettings: WebhookSettings? {
        guard let url = webhookURL, let signature = webhookSecret.flatMap(WebhookSignature.init(secret:)) else { return nil }
        let types = Set(webhookEvents.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        return WebhookSettings(
            url: url, signature: signature, types: types.isEmpty ? nil : types, maxAttempts: webhookMaxAttempts,
            claimAfter: .seconds(webhookClaimAfter), concurrency: webhookConcurrency)
    }
}
