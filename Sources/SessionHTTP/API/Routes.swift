public import AccessTokens
import Foundation
import HTTPTypes
public import Hummingbird
import Logging
import Metrics
import NIOCore
public import SessionCore

/// The API v1 routes. Each handler states the Redis round trips it costs.
public struct Routes: Sendable {
    let accounts: AccountService
    let sessions: any SessionStore
    let readiness: any ReadinessProbe
    let trustedProxies: TrustedProxies
    let maxBodySize: Int
    let metricsText: @Sendable () -> String
    /// The browser transport: `/v1/browser/*` and the cookie every authenticated route also accepts.
    let cookie: SessionCookie
    /// Whether `GET /account` is served.
    let accountPage: Bool
    /// Signed access tokens; nil: the JWT routes answer 404 `jwt_disabled`.
    let accessTokens: AccessTokenIssuer?
    /// Who may introspect and revoke.
    let introspectionClients: IntrospectionClients
    /// Ids, spans, series and log lines of every request; `EdgeHandler` records the fast path's with the same one.
    let telemetry: RequestTelemetry
    /// How recent a login sensitive operations need (`REAUTH_MAX_AGE`).
    let reauthMaxAge: Duration
    /// The issuer an authenticator app shows (`TOTP_ISSUER`).
    let totpIssuer: String

    let loginsOK = Counter(label: "session_logins_total", dimensions: [("result", "ok")])
    let loginsFailed = Counter(label: "session_logins_total", dimensions: [("result", "failed")])
    let loginsThrottled = Counter(label: "session_logins_total", dimensions: [("result", "throttled")])
    private let storeErrors = Counter(label: "session_store_errors_total")

    public init(
        accounts: AccountService, readiness: any ReadinessProbe, trustedProxies: TrustedProxies, maxBodySize: Int = 64 * 1024,
        cookie: SessionCookie = SessionCookie(), accountPage: Bool = true, accessTokens: AccessTokenIssuer? = nil,
        introspectionClients: IntrospectionClients = IntrospectionClients(parsing: ""), traceSampling: TraceSampling = .parentBasedAlwaysOn,
        reauthMaxAge: Duration = .seconds(300), totpIssuer: String = "session-service", metricsText: @escaping @Sendable () -> String
    ) {
        self.reauthMaxAge = reauthMaxAge
        self.totpIssuer = totpIssuer
        self.accessTokens = accessTokens
        self.introspectionClients = introspectionClients
        self.maxBodySize = maxBodySize
        self.cookie = cookie
        self.accountPage = accountPage
        self.accounts = accounts
        self.sessions = accounts.sessions
        self.readiness = readiness
        self.trustedProxies = trustedProxies
        self.metricsText = metricsText
        self.telemetry = RequestTelemetry(trustedProxies: trustedProxies, sampling: traceSampling)
    }

    /// Adds every route to a router whose context is `SessionRequestContext`: the table's, with the 405/404 answers it
    /// gives (`APIMiddleware`).
    public func add(to router: Router<SessionRequestContext>) {
        let table = self.table
        router.add(middleware: APIMiddleware(telemetry: telemetry, allowedMethods: { table.allowedMethods(for: $0) }))
        table.register(
            on: router,
            guardedBy: BearerAuthenticator<SessionRequestContext>(store: sessions, cookie: cookie, trustedProxies: trustedProxies))
    }

    /// Every route this configuration serves (with `ACCOUNT_PAGE=off`, `/account` is not one: 404). Guarded routes
    /// need a session (bearer or cookie).
    var table: RouteTable {
        var table = RouteTable()
        table.add(.get, "/healthz") { _, _ in try Self.json(.ok) { $0.field("status", "ok") } }
        table.add(.get, "/readyz") { _, _ in try await self.ready() }
        table.add(.get, "/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: self.metricsText()))
            )
        }
        table.add(.post, "/v1/users") { request, context in try await self.register(request, context) }
        table.add(.post, "/v1/login") { request, context in try await self.login(request, context) }
        table.add(.post, "/v1/browser/login") { request, context in try await self.browserLogin(request, context) }
        table.add(.post, "/v1/browser/logout") { request, context in try await self.browserLogout(request, context) }
        table.add(.post, "/v1/browser/login/totp") { request, context in try await self.browserLoginWithCode(request, context) }
        if accountPage { AccountPage.add(to: &table) }
        table.add(.post, "/v1/introspect") { request, context in try await self.introspect(request, context) }
        table.add(.post, "/v1/revoke") { request, context in try await self.revokeToken(request, context) }
        table.add(.get, "/.well-known/jwks.json") { _, _ in try self.jwks() }
        if accessTokens == nil {
            // Before authentication: a service without JWTs says so to everyone, signed in or not.
            table.add(.post, "/v1/token") { _, _ -> Response in throw APIError.jwtDisabled }
        } else {
            table.add(.post, "/v1/token", guarded: true) { request, context in
                try await CredentialsBody.refuseForeignBody(request, limit: self.maxBodySize)
                return try await self.issueAccessToken(context)
            }
        }
        // Runs only with VERIFY_FAST_PATH=off: by default `EdgeHandler` answers a plain GET /v1/verify in the channel
        // pipeline before it reaches the router (set a breakpoint there); HEAD and /v1/verify/** always come here.
        table.add(.get, "/v1/verify", guarded: true) { request, context in try self.verify(request, context) }
        // Envoy ext_authz (http_service) appends the original path and keeps the original method.
        for method in [HTTPRequest.Method.get, .head, .post, .put, .patch, .delete, .options] {
            table.add(method, "/v1/verify/**", guarded: true) { request, context in try self.verify(request, context) }
        }
        table.add(.get, "/v1/session", guarded: true) { _, context in try await self.currentSession(context) }
        table.add(.post, "/v1/logout", guarded: true) { request, context in
            try await CredentialsBody.refuseForeignBody(request, limit: self.maxBodySize)
            return try await self.logout(request, context)
        }
        table.add(.post, "/v1/password", guarded: true) { request, context in try await self.changePassword(request, context) }
        table.add(.get, "/v1/activity", guarded: true) { _, context in
            let session = try Self.session(context)
            return Self.events(try await self.core(context) { try await self.sessions.events.recent(of: session.userID) })
        }
        addSecondFactorRoutes(to: &table)
        table.add(.get, "/v1/sessions", guarded: true) { request, context in try await self.list(request, context) }
        table.add(.delete, "/v1/sessions", guarded: true) { request, context in
            try await CredentialsBody.refuseForeignBody(request, limit: self.maxBodySize)
            return try await self.revokeAll(request, context)
        }
        table.add(.delete, "/v1/sessions/{session_id}", guarded: true) { request, context in
            try await CredentialsBody.refuseForeignBody(request, limit: self.maxBodySize)
            return try await self.revoke(request, context)
        }
        return table
    }

    // MARK: Handlers

    /// Where a request came from, as its lifecycle events say it: the client address (`TRUSTED_PROXIES`-aware) and
    /// the device label of its `User-Agent`.
    func origin(_ request: Request, _ context: SessionRequestContext) -> EventOrigin {
        EventOrigin(request, context, trustedProxies: trustedProxies)
    }

    /// 0 round trips beyond authentication. `max_age` and `acr` in the query demand a recent or two-factor login
    /// (`StepUp`).
    func verify(_ request: Request, _ context: SessionRequestContext) throws -> Response {
        let session = try Self.session(context)
        if let refusal = try StepUp(target: request.uri.description).refusal(of: session) { throw refusal }
        let (headers, body) = Self.verified(session)
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
    }

    /// The 200 answer of a verification, on either path (router or `EdgeHandler`): the user and session in
    /// the body and in `X-User-Id`/`X-Session-Id` for a gateway to forward, with `X-Auth-Time` and `X-Auth-Level`.
    /// Built on every verification, so built directly: the body in one buffer of its exact size (both IDs are hex and
    /// dashes, nothing to escape — the same bytes `JSONWriter` writes), the fields with room for the standard headers
    /// the edge adds (no regrowth).
    static func verified(_ session: Session) -> (headers: HTTPFields, body: ByteBuffer) {
        let userID = session.userID.text
        let sessionID = session.id.hex
        var body = ByteBuffer()
        body.reserveCapacity(31 + userID.utf8.count + sessionID.utf8.count)
        body.writeStaticString(#"{"user_id":""#)
        body.writeString(userID)
        body.writeStaticString(#"","session_id":""#)
        body.writeString(sessionID)
        body.writeStaticString(#""}"#)
        var headers = HTTPFields()
        headers.reserveCapacity(11)
        headers.append(HTTPField(name: .contentType, value: JSONWriter.contentType))
        headers.append(HTTPField(name: .xUserID, value: userID))
        headers.append(HTTPField(name: .xSessionID, value: sessionID))
        headers.append(HTTPField(name: .xAuthTime, value: String(Int64(session.authenticatedAt.timeIntervalSince1970))))
        headers.append(HTTPField(name: .xAuthLevel, value: session.level.acr))
        return (headers, body)
    }

    /// 1 EVALSHA (user lookup) + 1 bcrypt + 1 EVALSHA (user record).
    func register(_ request: Request, _ context: SessionRequestContext) async throws -> Response {
        let credentials = try await CredentialsBody.decode(request, limit: maxBodySize)
        let client = trustedProxies.clientAddress(peer: context.peerAddress, forwardedFor: request.headers[values: .xForwardedFor])
        let user = try await core(context) {
            try await accounts.register(username: credentials.username, password: credentials.password, clientAddress: client)
        }
        return try Self.json(.created) { object in
            object.field("user_id", user.id.text)
            object.field("username", user.username)
        }
    }

    /// 3 EVALSHA at once (throttle) + 1 GET and 1 HMGET (user) + 1 hash + 1 DEL (throttle) + 1 HGET (second factor) +
    /// 1 EVALSHA (session); a failure: throttle, user, hash, 3 EVALSHA. With a second factor on: 401
    /// `second_factor_required` with a challenge for `POST /v1/login/totp`, and no session.
    func login(_ request: Request, _ context: SessionRequestContext) async throws -> Response {
        let credentials = try await CredentialsBody.decode(request, limit: maxBodySize)
        switch try await authenticate(credentials, request, context) {
        case .session(let token, let session, let user): return try Self.loginBody(token, session, user)
        case .secondFactorRequired(let challenge, let expiresIn): return try Self.secondFactorRequired(challenge, expiresIn)
        }
    }

    /// The 200 of every way in — login, its second step, re-authentication: the token and what it is.
    static func loginBody(_ token: SessionToken, _ session: Session, _ user: User) throws -> Response {
        var response = try Self.json(.ok) { object in
            object.field("token", token.text)
            object.field("token_type", "Bearer")
            object.field("expires_in", Self.secondsUntil(session.expiresAt))
            object.field("user_id", user.id.text)
            object.field("session_id", session.id.hex)
        }
        response.headers[HTTPField.Name("Pragma")!] = "no-cache"
        response.headers[.cacheControl] = "no-store"
        return response
    }

    /// 401 `second_factor_required`: the password was right; the challenge and a code make the session.
    static func secondFactorRequired(_ challenge: SessionToken, _ expiresIn: Int64) throws -> Response {
        var response = try Self.json(.unauthorized) { object in
            object.field("error", "second_factor_required")
            object.field("message", "the password is right; send a code from the authenticator (or a recovery code) with the challenge")
            object.field("challenge", challenge.text)
            object.field("expires_in", Int(expiresIn))
        }
        response.headers[.cacheControl] = "no-store"
        return response
    }

    /// The login both transports share: throttling, the password check, a new session or a challenge; counted and
    /// logged.
    func authenticate(_ credentials: CredentialsBody, _ request: Request, _ context: SessionRequestContext) async throws
        -> AccountService.LoginResult
    {
        let client = trustedProxies.clientAddress(peer: context.peerAddress, forwardedFor: request.headers[values: .xForwardedFor])
        return try await counted(context) {
            let result = try await accounts.login(
                username: credentials.username, password: credentials.password, clientAddress: client,
                userAgent: request.headers[.userAgent]
            )
            switch result {
            case .session(_, let session, let user):
                context.logger.info("login", metadata: ["user_id": "\(user.id)", "session_id": "\(session.id.hex)"])
                loginsOK.increment()
            case .secondFactorRequired:
                context.logger.info("login waits for its second factor")
            }
            return result
        }
    }

    /// Runs a step of a login, counting and logging its refusal (`session_logins_total`) and mapping it to the API's.
    func counted<T>(_ context: SessionRequestContext, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as SessionError {
            switch error.code {
            case .invalidCredentials, .invalidCode, .invalidChallenge: loginsFailed.increment()
            case .tooManyAttempts: loginsThrottled.increment()
            default: break
            }
            if error.code == .storeUnavailable {
                storeFailed(error, context)
            } else {
                context.logger.info("login refused", metadata: ["reason": "\(error.code)"])
            }
            throw APIError(error)
        }
    }

    /// 1 EVALSHA.
    func logout(_ request: Request, _ context: SessionRequestContext) async throws -> Response {
        let session = try Self.session(context)
        let ending = SessionEnd(.logout, origin: origin(request, context))
        _ = try await core(context) { try await sessions.revoke(session.id, of: session.userID, ending: ending) }
        return Response(status: .noContent)
    }

    /// 1 PING.
    func ready() async throws -> Response {
        guard await readiness.isReady() else { throw APIError(.serviceUnavailable, code: "store_unavailable", message: "Redis does not answer") }
        return try Self.json(.ok) { $0.field("status", "ready") }
    }

    // MARK: Helpers

    func core<T>(_ context: SessionRequestContext, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as SessionError {
            if error.code == .storeUnavailable { storeFailed(error, context) }
            throw APIError(error)
        }
    }

    /// Counts and logs a store failure with its cause (the Redis error); the client sees only `store_unavailable`.
    func storeFailed(_ error: SessionError, _ context: SessionRequestContext) {
        storeErrors.increment()
        context.logger.error("session store failed", metadata: ["error": "\(error)"])
    }

    static func session(_ context: SessionRequestContext) throws -> Session {
        guard let session = context.session else { throw APIError.missingToken }
        return session
    }

    static func secondsUntil(_ date: Date) -> Int {
        max(0, Int((date.timeIntervalSinceNow).rounded()))
    }

    /// `{"events":[…]}` of events as the store keeps them (JSON its own scripts wrote), not cached.
    static func events(_ events: [String]) -> Response {
        var buffer = ByteBuffer()
        buffer.writeString("{\"events\":[" + events.joined(separator: ",") + "]}")
        return Response(
            status: .ok, headers: [.contentType: JSONWriter.contentType, .cacheControl: "no-store"], body: .init(byteBuffer: buffer))
    }

    static func json(_ status: HTTPResponse.Status, _ fields: (inout JSONWriter.ObjectWriter) -> Void) throws -> Response {
        var writer = JSONWriter()
        writer.object(fields)
        return Response(status: status, headers: [.contentType: JSONWriter.contentType], body: .init(byteBuffer: writer.buffer))
    }
}

extension EventOrigin {
    /// A request's origin: the client address (`TRUSTED_PROXIES`-aware), its `User-Agent`'s device label, and the admin
    /// client that sent it, if one did.
    init(_ request: Request, _ context: SessionRequestContext, trustedProxies: TrustedProxies, adminClient: String? = nil) {
        self.init(
            ip: trustedProxies.clientAddress(peer: context.peerAddress, forwardedFor: request.headers[values: .xForwardedFor]),
            userAgent: request.headers[.userAgent], adminClient: adminClient)
    }
}
