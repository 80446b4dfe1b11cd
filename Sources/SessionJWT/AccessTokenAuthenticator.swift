public import AccessTokens
import Foundation
import HTTPTypes
public import Hummingbird
import Logging
import NIOCore
public import Redis
public import SessionCore

/// A request context that can carry a verified access token: what `AccessTokenAuthenticator` needs from an app's context.
public protocol AccessTokenRequestContext: RequestContext {
    /// The claims of the request's access token; set by `AccessTokenAuthenticator`.
    var accessToken: AccessTokenClaims? { get set }
}

/// Verifies `Authorization: Bearer <access token>` — the signed JWTs the session service mints at `POST /v1/token` —
/// in a downstream Hummingbird app, or answers 401 itself.
///
/// Every check is made here, since jwt-kit makes none of the claim checks by itself: the header (`typ` `at+jwt`, a known
/// `kid`, the `alg` that key is bound to, never `none`), the signature, then `iss`, `aud`, `exp`, `nbf`, `iat` with a
/// small leeway. Two modes:
/// - `.offline`: no I/O per request (after the JWKS is cached). A logout takes effect when the token expires (`exp`,
///   5 minutes by default).
/// - `.checkRevocation(_:)`: also one Redis `EXISTS` per request: the session behind the token must still be live, so a
///   logout takes effect at once, on every instance.
///
/// ```swift
/// let keys = JWKSKeySource(url: "https://sessions.example.com/.well-known/jwks.json")
/// router.group("/orders").add(middleware: AccessTokenAuthenticator<OrdersContext>(keys: keys)).get { _, context in
///     context.accessToken!.subject.text
/// }
/// ```
public struct AccessTokenAuthenticator<Context: AccessTokenRequestContext>: RouterMiddleware {
    /// Whether a request also asks Redis whether the token's session is still live.
    public enum Mode: Sendable {
        /// Signature and claims only.
        case offline
        /// Signature and claims, then the session must still exist (one `EXISTS`).
        case checkRevocation(SessionRevocationCheck)
    }

    let keys: JWKSKeySource
    let issuer: String
    let audience: String
    let leeway: Int64
    let mode: Mode

    /// - Parameters:
    ///   - keys: where the verification keys come from.
    ///   - issuer: the `iss` tokens must carry (the service's `JWT_ISSUER`).
    ///   - audience: a value `aud` must contain (the service's `JWT_AUDIENCE`).
    ///   - leeway: clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    ///   - mode: `.offline`, or `.checkRevocation(_:)`.
    public init(keys: JWKSKeySource, issuer: String = "session-service", audience: String = "api", leeway: Int64 = 10, mode: Mode = .offline) {
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.mode = mode
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let authorization = request.headers[.authorization] else { throw AccessTokenHTTPError.missingToken }
        guard authorization.count > 7, authorization.prefix(7).lowercased() == "bearer " else { throw AccessTokenHTTPError.missingToken }
        let token = String(authorization.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        let claims: AccessTokenClaims
        do {
            claims = try await verify(token)
        } catch let error as AccessTokenError {
            context.logger.debug("access token refused", metadata: ["reason": "\(error.code)"])
            throw AccessTokenHTTPError.invalidToken
        }
        if case .checkRevocation(let check) = mode {
            let live: Bool
            do {
                live = try await check.isLive(claims)
            } catch {
                context.logger.error("revocation check failed", metadata: ["error": "\(error)"])
                throw AccessTokenHTTPError.storeUnavailable
            }
            guard live else {
                context.logger.debug("access token refused", metadata: ["reason": "session_ended"])
                throw AccessTokenHTTPError.invalidToken
            }
        }
        var context = context
        context.accessToken = claims
        return try await next(request, context)
    }

    /// Verifies with the current keys; on an unknown `kid`, once more with refetched keys (rate-limited).
    func verify(_ token: String) async throws -> AccessTokenClaims {
        let current: AccessTokenKeySet
        if let fresh = keys.freshKeys {
            current = fresh
        } else {
            do {
                current = try await keys.current()
            } catch {
                throw AccessTokenHTTPError.keysUnavailable
            }
        }
        do {
            return try await verifier(current).verify(token)
        } catch  where error.code == .unknownKey {
            guard let kid = try? AccessTokenVerifier.header(of: token).kid, let refreshed = await keys.refresh(afterUnknownKey: kid) else {
                throw error
            }
            return try await verifier(refreshed).verify(token)
        }
    }

    private func verifier(_ keys: AccessTokenKeySet) -> AccessTokenVerifier {
        AccessTokenVerifier(keys: keys, issuer: issuer, audience: audience, leeway: leeway)
    }
}

/// The revocation check of `.checkRevocation`: whether the session a token names is still live in the session service's
/// Redis (one `EXISTS` on the session's key; the keys must match the service's `KEY_PREFIX`).
public struct SessionRevocationCheck: Sendable {
    let store: any SessionStore

    /// Over a session store (the service's own Redis, through any topology it supports).
    public init(store: any SessionStore) { self.store = store }

    /// Over a Redis client of the session service's Redis.
    public init(redis: RedisClient, keyPrefix: String = "ss:") {
        self.store = RedisSessionStore(redis: redis, configuration: SessionConfiguration(keyPrefix: keyPrefix))
    }

    /// Whether the token's session is live.
    public func isLive(_ claims: AccessTokenClaims) async throws(SessionError) -> Bool {
        try await store.isLive(claims.sessionID, of: claims.subject)
    }
}

/// The middleware's answers: `{"error", "message"}` JSON like the session service's, with RFC 6750 challenges.
struct AccessTokenHTTPError: HTTPResponseError {
    let status: HTTPResponse.Status
    let code: String
    let message: String

    static let missingToken = Self(status: .unauthorized, code: "missing_token", message: "send Authorization: Bearer <access token>")
    static let invalidToken = Self(status: .unauthorized, code: "invalid_token", message: "the access token is invalid, expired or revoked")
    static let storeUnavailable = Self(status: .serviceUnavailable, code: "store_unavailable", message: "the session store is unavailable")
    static let keysUnavailable = Self(status: .serviceUnavailable, code: "keys_unavailable", message: "the verification keys cannot be fetched")

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
        if status == .unauthorized {
            headers[.wwwAuthenticate] = code == "invalid_token" ? "Bearer error=\"invalid_token\"" : "Bearer"
        }
        let body = #"{"error":"\#(code)","message":"\#(message)"}"#
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}
