public import AccessTokens
public import Redis
public import SessionCore

/// The service's settings as the layers take them: plain values, no defaults. The executable resolves them from
/// `ServiceOptions` (module `ServiceSettings`), where each setting is declared once with its flag, environment
/// variable, default, validation and help; an app that embeds the service may build one itself.
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
    public var maxBodySize: Int
    /// How new passwords are hashed.
    public var passwordHashing: PasswordHashScheme
    /// What a new password must be.
    public var passwordPolicy: PasswordPolicy
    /// The second factor and re-authentication.
    public var authentication: AuthenticationSettings
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
    /// Lifecycle events (`EVENTS`, `EVENTS_MAXLEN`); their delivery is the executable's (`SessionWebhooks`).
    public var events = EventSettings(enabled: true, maxStreamLength: 1_000_000)
    /// What the executable should log at start about settings it adjusted (never a secret).
    public var warnings: [String] = []
    /// Which requests get a span while tracing (the executable sets it from `OTEL_TRACES_SAMPLER`; see `TraceSampling`).
    public var traceSampling: TraceSampling = .parentBasedAlwaysOn

    /// Every setting, as the layers take it (`ServiceSettings` resolves them from flags and the environment).
    public init(
        host: String,
        port: Int,
        httpIdleTimeout: Duration?,
        httpHeaderTimeout: Duration,
        httpBodyTimeout: Duration,
        httpWriteTimeout: Duration,
        httpMaxPipelined: Int,
        maxConnections: Int,
        redis: RedisConfiguration,
        sessions: SessionConfiguration,
        registrationOpen: Bool,
        loginMaxFailures: Int,
        loginMaxFailuresPerUser: Int,
        loginMaxFailuresPerAddress: Int,
        loginFailureWindow: Duration,
        registrationMaxPerAddress: Int,
        trustedProxies: TrustedProxies,
        maxBodySize: Int,
        passwordHashing: PasswordHashScheme,
        passwordPolicy: PasswordPolicy,
        authentication: AuthenticationSettings,
        hashThreads: Int,
        verifyFastPath: Bool,
        cookie: SessionCookie,
        accountPage: Bool,
        nearCache: NearCacheSettings?,
        accessTokens: AccessTokenIssuer?,
        introspectionClients: IntrospectionClients,
        admin: AdminSettings?
    ) {
        self.host = host
        self.port = port
        self.httpIdleTimeout = httpIdleTimeout
        self.httpHeaderTimeout = httpHeaderTimeout
        self.httpBodyTimeout = httpBodyTimeout
        self.httpWriteTimeout = httpWriteTimeout
        self.httpMaxPipelined = httpMaxPipelined
        self.maxConnections = maxConnections
        self.redis = redis
        self.sessions = sessions
        self.registrationOpen = registrationOpen
        self.loginMaxFailures = loginMaxFailures
        self.loginMaxFailuresPerUser = loginMaxFailuresPerUser
        self.loginMaxFailuresPerAddress = loginMaxFailuresPerAddress
        self.loginFailureWindow = loginFailureWindow
        self.registrationMaxPerAddress = registrationMaxPerAddress
        self.trustedProxies = trustedProxies
        self.maxBodySize = maxBodySize
        self.passwordHashing = passwordHashing
        self.passwordPolicy = passwordPolicy
        self.authentication = authentication
        self.hashThreads = hashThreads
        self.verifyFastPath = verifyFastPath
        self.cookie = cookie
        self.accountPage = accountPage
        self.nearCache = nearCache
        self.accessTokens = accessTokens
        self.introspectionClients = introspectionClients
        self.admin = admin
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

/// The second factor and re-authentication (`TOTP_ISSUER`, `TOTP_ENCRYPTION_KEY`, `REAUTH_MAX_AGE`).
public struct AuthenticationSettings: Sendable {
    /// How recent a login `POST /v1/password` and `POST`/`DELETE /v1/totp` need.
    public var reauthMaxAge: Duration
    /// The issuer an authenticator app shows beside the username.
    public var totpIssuer: String
    /// 32 bytes that seal TOTP secrets at rest; nil: stored as they are.
    public var totpEncryptionKey: [UInt8]?

    public init(reauthMaxAge: Duration = .seconds(300), totpIssuer: String = "session-service", totpEncryptionKey: [UInt8]? = nil) {
        self.reauthMaxAge = reauthMaxAge
        self.totpIssuer = totpIssuer
        self.totpEncryptionKey = totpEncryptionKey
    }
}

/// Lifecycle events (`EVENTS`, `EVENTS_MAXLEN`).
public struct EventSettings: Sendable {
    public var enabled: Bool
    public var maxStreamLength: Int

    public init(enabled: Bool, maxStreamLength: Int) {
        self.enabled = enabled
        self.maxStreamLength = maxStreamLength
    }
}
