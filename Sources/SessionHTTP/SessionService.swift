public import Hummingbird
public import Logging
import NIOConcurrencyHelpers
import NIOCore
import Redis
public import Redis
public import ServiceLifecycle
public import SessionCore

/// Builds the whole service from a configuration: Redis client, stores, hasher, routes, application.
public enum SessionService {
    /// The application (serve it with `runService()`), whose services include the Redis client.
    /// - Parameters:
    ///   - configuration: the settings.
    ///   - logger: the service's logger; Redis connection changes are logged on it (failures at error, once per outage).
    ///   - metricsText: renders `/metrics` (the executable passes its Prometheus registry).
    ///   - services: more services to run beside the Redis client (the executable's trace exporter).
    ///   - eventServices: services that read the lifecycle events this application records (the executable's webhook
    ///     dispatcher, `SessionWebhooks`), made from its Redis client and events.
    public static func makeApplication(
        configuration: ServiceConfiguration,
        logger: Logger,
        metricsText: @escaping @Sendable () -> String = { "" },
        services: [any Service] = [],
        eventServices: (RedisClient, LifecycleEvents) -> [any Service] = { _, _ in [] }
    ) -> Application<RouterResponder<SessionRequestContext>> {
        let events = RedisEventLog(logger: logger, endpoint: configuration.redis.description)
        let nearCache = configuration.nearCache.map { NearCache(maxEntries: $0.maxEntries, maxAge: TimeAmount($0.maxAge)) }
        let redis = RedisClient(
            configuration: configuration.redis, logger: logger, onEvent: { events.record($0) },
            onInvalidation: nearCache.map { cache -> @Sendable (RedisInvalidation) -> Void in { cache.invalidate($0) } }
        )
        let lifecycle = LifecycleEvents(
            redis: redis, keyPrefix: configuration.sessions.keyPrefix, maxStreamLength: configuration.events.maxStreamLength,
            enabled: configuration.events.enabled)
        let sessions = RedisSessionStore(redis: redis, configuration: configuration.sessions, nearCache: nearCache, events: lifecycle)
        let accounts = AccountService(
            users: RedisUserStore(redis: redis, keyPrefix: configuration.sessions.keyPrefix),
            sessions: sessions,
            hasher: PasswordHasher(scheme: configuration.passwordHashing, threads: configuration.hashThreads),
            throttle: LoginThrottle(
                redis: redis, keyPrefix: configuration.sessions.keyPrefix, maxFailures: configuration.loginMaxFailures,
                maxFailuresPerUser: configuration.loginMaxFailuresPerUser, maxFailuresPerAddress: configuration.loginMaxFailuresPerAddress,
                window: configuration.loginFailureWindow, maxRegistrationsPerAddress: configuration.registrationMaxPerAddress
            ),
            registrationOpen: configuration.registrationOpen,
            policy: configuration.passwordPolicy,
            secondFactors: SecondFactorStore(
                redis: redis, keyPrefix: configuration.sessions.keyPrefix,
                box: TOTPSecretBox(key: configuration.authentication.totpEncryptionKey), events: lifecycle)
        )
        let router = Router(context: SessionRequestContext.self)
        let routes = Routes(
            accounts: accounts, readiness: RedisReadinessProbe(redis: redis), trustedProxies: configuration.trustedProxies,
            maxBodySize: configuration.maxBodySize, cookie: configuration.cookie, accountPage: configuration.accountPage,
            accessTokens: configuration.accessTokens, introspectionClients: configuration.introspectionClients,
            traceSampling: configuration.traceSampling, reauthMaxAge: configuration.authentication.reauthMaxAge,
            totpIssuer: configuration.authentication.totpIssuer, metricsText: metricsText
        )
        routes.add(to: router)
        var services = services
        services += eventServices(redis, lifecycle)
        if let admin = configuration.admin {
            // Its own listener: the public port never routes /v1/admin/* (404 there).
            let adminRouter = Router(context: SessionRequestContext.self)
            AdminRoutes(
                accounts: accounts, clients: admin.clients, trustedProxies: configuration.trustedProxies, maxBodySize: configuration.maxBodySize,
                telemetry: routes.telemetry
            ).add(to: adminRouter)
            var adminLogger = logger
            adminLogger[metadataKey: "listener"] = "admin"
            services.append(
                Application(
                    router: adminRouter, configuration: .init(address: .hostname(admin.host, port: admin.port), serverName: nil),
                    logger: adminLogger))
        }
        let verification =
            configuration.verifyFastPath
            ? EdgeHandler.Shared(
                store: sessions, cookie: configuration.cookie, trustedProxies: configuration.trustedProxies, telemetry: routes.telemetry,
                logger: logger) : nil
        return Application(
            router: router,
            server: .sessionHTTP1(
                limits: .init(
                    idleTimeout: configuration.httpIdleTimeout, headerTimeout: TimeAmount(configuration.httpHeaderTimeout),
                    bodyTimeout: TimeAmount(configuration.httpBodyTimeout), maxBodySize: configuration.maxBodySize,
                    maxConnections: configuration.maxConnections,
                    lingeringRefusals: max(8, (System.openFileLimit - configuration.maxConnections) / 4),
                    writeTimeout: TimeAmount(configuration.httpWriteTimeout), maxPipelined: configuration.httpMaxPipelined
                ),
                verification: verification, connections: ConnectionCount()
            ),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            services: [redis] + services,
            logger: logger
        )
    }
}

/// Logs Redis connection changes once per change, not once per reconnection attempt: the first connection to each
/// node, a failure that differs from the last one, a lost connection, a new master.
final class RedisEventLog: Sendable {
    private let logger: Logger
    private let endpoint: String
    private let lastFailure = NIOLockedValueBox<String?>(nil)
    private let nodesSeen = NIOLockedValueBox<Set<String>>([])
    private let lastTrackingFailure = NIOLockedValueBox<String?>(nil)
    private let trackedNodes = NIOLockedValueBox<Set<String>>([])

    init(logger: Logger, endpoint: String) {
        self.logger = logger
        self.endpoint = endpoint
    }

    func record(_ event: RedisConnectionEvent) {
        switch event {
        case .connected(let slot, let node):
            let wasFailing = lastFailure.withLockedValue { last in
                defer { last = nil }
                return last != nil
            }
            let first = nodesSeen.withLockedValue { $0.insert(node).inserted }
            if wasFailing || first {
                logger.info(
                    "connected to Redis", metadata: ["redis.endpoint": "\(endpoint)", "redis.node": "\(node)", "redis.connection": "\(slot)"]
                )
            }
        case .connectFailed(_, let node, let error):
            let isNew = lastFailure.withLockedValue { last in
                defer { last = error.message }
                return last != error.message
            }
            if isNew {
                logger.error("cannot use Redis", metadata: ["redis.endpoint": "\(endpoint)", "redis.node": "\(node)", "error": "\(error.message)"])
            }
        case .disconnected(let slot, let node):
            logger.warning(
                "Redis connection lost", metadata: ["redis.endpoint": "\(endpoint)", "redis.node": "\(node)", "redis.connection": "\(slot)"]
            )
        case .masterChanged(let node):
            logger.warning("Redis master changed", metadata: ["redis.endpoint": "\(endpoint)", "redis.master": "\(node)"])
        case .trackingReady(let node):
            let wasFailing = lastTrackingFailure.withLockedValue { last in
                defer { last = nil }
                return last != nil
            }
            if wasFailing || trackedNodes.withLockedValue({ $0.insert(node).inserted }) {
                logger.info("near cache tracking Redis", metadata: ["redis.node": "\(node)"])
            }
        case .trackingFailed(let node, let error):
            let isNew = lastTrackingFailure.withLockedValue { last in
                defer { last = error.message }
                return last != error.message
            }
            if isNew {
                logger.warning(
                    "near cache not tracking Redis; verifying without it",
                    metadata: ["redis.node": "\(node)", "error": "\(error.message)"]
                )
            }
        }
    }
}
