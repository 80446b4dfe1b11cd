public import Hummingbird
import Logging
import Metrics
public import SessionCore

/// Authenticates `Authorization: Bearer <token>` against a `SessionStore`, or answers 401/503 itself.
///
/// Add it in front of the routes it protects; behind it, `context.session` is set:
/// ```swift
/// let redis = RedisClient(configuration: try RedisConfiguration(url: "redis://127.0.0.1:6379"))
/// let store = RedisSessionStore(redis: redis, configuration: .init())
/// let router = Router(context: SessionRequestContext.self)
/// router.group("/api").add(middleware: BearerAuthenticator(store: store)).get("/me") { _, context in
///     context.session!.userID.text
/// }
/// let app = Application(router: router, services: [redis])
/// try await app.runService()
/// ```
/// Cost: a malformed token is refused without touching the store; anything else costs one store round trip.
public struct BearerAuthenticator<Context: SessionRequestContextProtocol>: RouterMiddleware {
    let store: any SessionStore
    private let verified = Counter(label: "session_verifications_total", dimensions: [("result", "ok")])
    private let invalid = Counter(label: "session_verifications_total", dimensions: [("result", "invalid")])
    private let malformed = Counter(label: "session_verifications_total", dimensions: [("result", "malformed")])
    private let missing = Counter(label: "session_verifications_total", dimensions: [("result", "missing")])
    private let storeErrors = Counter(label: "session_store_errors_total")

    /// - Parameter store: where sessions live.
    public init(store: any SessionStore) {
        self.store = store
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let token: SessionToken
        switch BearerToken.parse(request.headers[values: .authorization]) {
        case .missing:
            missing.increment()
            throw APIError.missingToken
        case .repeated:
            malformed.increment()
            throw APIError.invalidRequest("send exactly one Authorization header")
        case .malformed:
            malformed.increment()
            throw APIError.invalidToken
        case .token(let parsed):
            token = parsed
        }
        let session: Session?
        do {
            session = try await store.authenticate(token)
        } catch {
            storeErrors.increment()
            context.logger.warning("session store unavailable during authentication", metadata: ["error": "\(error.code.rawValue)"])
            throw APIError(error)
        }
        guard let session else {
            invalid.increment()
            throw APIError.invalidToken
        }
        verified.increment()
        var context = context
        context.session = session
        if context.logger.logLevel <= .debug {
            // Only when it can be logged: setting metadata copies the logger's dictionary on every request.
            context.logger[metadataKey: "session.id"] = "\(session.id.hex)"
        }
        return try await next(request, context)
    }
}

/// Reads the bearer token out of `Authorization` header values.
public enum BearerToken {
    /// What the header held.
    public enum Parsed: Equatable {
        case missing
        case repeated
        case malformed
        case token(SessionToken)
    }

    /// RFC 6750 §2.1: `Bearer` (any case), one or more spaces, the token. Another scheme counts as missing
    /// (§3.1: no bearer credentials were offered); a bad token after `Bearer` is malformed.
    public static func parse(_ values: [String]) -> Parsed {
        guard let value = values.first else { return .missing }
        guard values.count == 1 else { return .repeated }
        let utf8 = value.utf8
        guard utf8.count >= 7, utf8.count <= 256 else { return utf8.count > 256 ? .malformed : .missing }
        let scheme = utf8.prefix(6)
        guard scheme.elementsEqual("bearer".utf8, by: { ($0 | 0x20) == $1 }) else { return .missing }
        let rest = utf8.dropFirst(6)
        guard rest.first == UInt8(ascii: " ") else { return .missing }
        let credentials = rest.drop { $0 == UInt8(ascii: " ") }
        guard let token = SessionToken(Substring(credentials)) else { return .malformed }
        return .token(token)
    }
}
