import AccessTokens
import Foundation
import Hummingbird
import Logging
import Redis
import SessionCore
import SessionHTTP
import SessionJWT

/// The classic "orders" API (`GET /orders`), protected by one of the three systems the session service offers:
///
/// | `ORDERS_AUTH` | the client sends | per request | a logout takes effect |
/// |---|---|---|---|
/// | `session` | the opaque session token | 1 Redis `EVALSHA` (and the idle deadline slides) | at once, everywhere |
/// | `jwt` | an access token from `POST /v1/token` | no I/O (signature and claims, JWKS cached) | when the token expires (`exp`) |
/// | `jwt-revocation` | an access token | 1 Redis `EXISTS` | at once, everywhere |
///
/// Environment: `PORT` (8090), `REDIS_URL` and `KEY_PREFIX` (the session service's, for `session` and
/// `jwt-revocation`), `JWKS_URL` (`http://127.0.0.1:8080/.well-known/jwks.json`) or `JWT_HS256_SECRET`,
/// `JWKS_MIN_REFRESH_SECONDS` (60), `JWT_ISSUER` (`session-service`), `JWT_AUDIENCE` (`api`).
@main
struct OrdersExample {
    static func main() async throws {
        let environment = ProcessInfo.processInfo.environment
        var logger = Logger(label: "orders-example")
        logger.logLevel = .info
        let mode = environment["ORDERS_AUTH"] ?? "jwt"
        let redis = try RedisClient(configuration: RedisConfiguration(url: environment["REDIS_URL"] ?? "redis://127.0.0.1:6379/0"), logger: logger)
        let keyPrefix = environment["KEY_PREFIX"] ?? "ss:"
        let router = Router(context: OrdersContext.self)
        router.get("/healthz") { _, _ in "ok" }
        let orders = router.group("/orders")
        switch mode {
        case "session":
            let store = RedisSessionStore(redis: redis, configuration: SessionConfiguration(keyPrefix: keyPrefix))
            orders.add(middleware: BearerAuthenticator<OrdersContext>(store: store))
        case "jwt", "jwt-revocation":
            let keys: JWKSKeySource
            if let secret = environment["JWT_HS256_SECRET"] {
                keys = JWKSKeySource(keys: try AccessTokenKeySet.sharedSecret(Array(secret.utf8)))
            } else {
                // JWKS_MIN_REFRESH_SECONDS: the least time between two fetches an unknown kid causes (60 by default).
                keys = JWKSKeySource(
                    url: environment["JWKS_URL"] ?? "http://127.0.0.1:8080/.well-known/jwks.json",
                    minimumRefreshInterval: .seconds(Int(environment["JWKS_MIN_REFRESH_SECONDS"] ?? "") ?? 60), logger: logger
                )
            }
            let check: AccessTokenAuthenticator<OrdersContext>.Mode =
                mode == "jwt" ? .offline : .checkRevocation(SessionRevocationCheck(redis: redis, keyPrefix: keyPrefix))
            orders.add(
                middleware: AccessTokenAuthenticator<OrdersContext>(
                    keys: keys, issuer: environment["JWT_ISSUER"] ?? "session-service", audience: environment["JWT_AUDIENCE"] ?? "api", mode: check
                )
            )
        default:
            FileHandle.standardError.write(Data("orders-example: ORDERS_AUTH must be session, jwt or jwt-revocation\n".utf8))
            exit(2)
        }
        orders.get { _, context in try Order.page(for: context) }
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: Int(environment["PORT"] ?? "") ?? 8090)),
            services: [redis], logger: logger
        )
        logger.info("orders example", metadata: ["auth": "\(mode)"])
        try await app.runService()
    }
}

/// Knows the session (`session` mode) or the access token's claims (the JWT modes).
struct OrdersContext: SessionRequestContextProtocol, AccessTokenRequestContext {
    var coreContext: CoreRequestContextStorage
    var session: Session?
    var accessToken: AccessTokenClaims?

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
    }
}

/// A made-up order book: three orders per user, the same every time.
struct Order: ResponseEncodable {
    let id: Int
    let item: String
    let quantity: Int

    struct Page: ResponseEncodable {
        let userID: String
        let orders: [Order]

        enum CodingKeys: String, CodingKey {
            case userID = "user_id"
            case orders
        }
    }

    static func page(for context: OrdersContext) throws -> Page {
        guard let user = context.accessToken?.subject ?? context.session?.userID else { throw HTTPError(.unauthorized) }
        return Page(
            userID: user.text,
            orders: [Order(id: 1, item: "tea", quantity: 2), Order(id: 2, item: "scones", quantity: 6), Order(id: 3, item: "jam", quantity: 1)]
        )
    }
}
