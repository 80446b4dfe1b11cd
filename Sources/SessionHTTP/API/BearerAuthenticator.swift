import Foundation
import HTTPTypes
public import Hummingbird
import Logging
import Metrics
import NIOCore
public import SessionCore

/// Authenticates `Authorization: Bearer <token>` — or, with a `SessionCookie`, the session cookie of a request that
/// has no `Authorization` — against a `SessionStore`, or answers 401/403/503 itself.
///
/// A cookie-authenticated unsafe request (not GET/HEAD/OPTIONS) must pass the cross-origin check first (403
/// `cross_origin_request`), before its cookie is looked at; bearer requests are not affected.
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
    /// The browser transport; nil: bearer only.
    let cookie: SessionCookie?
    let trustedProxies: TrustedProxies
    /// `session_verifications_total{result, path}`: `ok`, `invalid` (unknown, expired or revoked), `malformed`, `missing`,
    /// `unavailable` (the store failed), on the `router` or the `fast_path` (`EdgeHandler`).
    private let verified, invalid, malformed, missing, unavailable: Counter
    private let storeErrors = Counter(label: "session_store_errors_total")

    /// Which path a verification took, for the `path` label.
    enum Path: String {
        case router
        case fastPath = "fast_path"
    }

    /// - Parameters:
    ///   - store: where sessions live.
    ///   - cookie: also accept this session cookie when a request has no `Authorization` header.
    ///   - trustedProxies: the gateways whose `X-Original-Method` / `X-Forwarded-Method` name the method of the request
    ///     a forward-auth call asks about (nginx `auth_request` and Traefik ForwardAuth always ask with `GET`).
    public init(store: any SessionStore, cookie: SessionCookie? = nil, trustedProxies: TrustedProxies = .none) {
        self.init(store: store, cookie: cookie, trustedProxies: trustedProxies, path: .router)
    }

    init(store: any SessionStore, cookie: SessionCookie?, trustedProxies: TrustedProxies, path: Path) {
        self.store = store
        self.cookie = cookie
        self.trustedProxies = trustedProxies
        func counter(_ result: String) -> Counter {
            Counter(label: "session_verifications_total", dimensions: [("result", result), ("path", path.rawValue)])
        }
        (verified, invalid, malformed, missing, unavailable) = (
            counter("ok"), counter("invalid"), counter("malformed"), counter("missing"), counter("unavailable")
        )
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let token = try token(from: request.head, peer: (context as? any RemoteAddressRequestContext)?.remoteAddress)
        let result: Result<Session?, SessionError>
        do throws(SessionError) {
            result = .success(try await store.authenticate(token))
        } catch {
            result = .failure(error)
        }
        let session = try check(result, logger: context.logger)
        var context = context
        context.session = session
        RequestObservation.current?.identify(session)
        if context.logger.logLevel <= .debug {
            // Only when it can be logged: setting metadata copies the logger's dictionary on every request.
            context.logger[metadataKey: "session_id"] = "\(session.id.hex)"
            context.logger[metadataKey: "user_id"] = "\(session.userID.text)"
        }
        return try await next(request, context)
    }

    // The two steps of a verification, shared with `EdgeHandler` (the fast path) so both paths answer and count alike.

    /// The token of a request — the `Authorization` header's, else the cookie's — or the 401/400/403 to answer
    /// (counted).
    func token(from request: HTTPRequest, peer: SocketAddress?) throws(APIError) -> SessionToken {
        let authorization = request.headerFields[values: .authorization]
        guard let cookie, authorization.isEmpty else { return try token(from: authorization) }
        if isUnsafe(request, peer: peer), !cookie.allowsUnsafe(request) {
            malformed.increment()
            throw .crossOriginRequest
        }
        switch cookie.parse(request.headerFields[values: .cookie]) {
        case .missing:
            missing.increment()
            throw .missingToken
        case .malformed:
            malformed.increment()
            throw .invalidToken
        case .token(let token):
            return token
        }
    }

    /// Whether a cookie request changes state: its own method is unsafe, or — asked by a trusted gateway on behalf of
    /// another request — the method the gateway reports in `X-Original-Method` (nginx) or `X-Forwarded-Method`
    /// (Traefik) is. Nobody else's report is believed, and `X-HTTP-Method-Override` never is. A gateway that reports
    /// no method is asked about a safe request as far as this check can know.
    func isUnsafe(_ request: HTTPRequest, peer: SocketAddress?) -> Bool {
        if SessionCookie.isUnsafe(request.method.rawValue) { return true }
        let fields = request.headerFields
        let reported = fields[values: .xOriginalMethod] + fields[values: .xForwardedMethod]
        guard !reported.isEmpty, let address = peer?.ipAddress, trustedProxies.trusts(address) else { return false }
        return reported.contains { SessionCookie.isUnsafe($0.trimmingCharacters(in: .whitespaces).uppercased()) }
    }

    /// The token in the `Authorization` values, or the 401/400 to answer (counted).
    func token(from authorization: [String]) throws(APIError) -> SessionToken {
        switch BearerToken.parse(authorization) {
        case .missing:
            missing.increment()
            throw .missingToken
        case .repeated:
            malformed.increment()
            throw .invalidRequest("send exactly one Authorization header")
        case .malformed:
            malformed.increment()
            throw .invalidToken
        case .token(let token):
            return token
        }
    }

    /// The store's answer as a session, or the 401/503 to answer (counted; store failures logged).
    func check(_ result: Result<Session?, SessionError>, logger: Logger) throws(APIError) -> Session {
        switch result {
        case .success(let session?):
            verified.increment()
            return session
        case .success(nil):
            invalid.increment()
            throw .invalidToken
        case .failure(let error):
            unavailable.increment()
            storeErrors.increment()
            logger.warning("session store unavailable during authentication", metadata: ["error": "\(error)"])
            throw APIError(error)
        }
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
