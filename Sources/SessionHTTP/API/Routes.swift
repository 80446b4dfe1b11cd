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

    private let loginsOK = Counter(label: "session_logins_total", dimensions: [("result", "ok")])
    private let loginsFailed = Counter(label: "session_logins_total", dimensions: [("result", "failed")])
    private let loginsThrottled = Counter(label: "session_logins_total", dimensions: [("result", "throttled")])
    private let storeErrors = Counter(label: "session_store_errors_total")

    public init(
        accounts: AccountService, readiness: any ReadinessProbe, trustedProxies: TrustedProxies, maxBodySize: Int = 64 * 1024,
        cookie: SessionCookie = SessionCookie(), accountPage: Bool = true, accessTokens: AccessTokenIssuer? = nil,
        introspectionClients: IntrospectionClients = IntrospectionClients(parsing: ""), traceSampling: TraceSampling = .parentBasedAlwaysOn,
        metricsText: @escaping @Sendable () -> String
    ) {
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

    /// Paths this configuration serves, and their methods: for 405 and its `Allow` header (404 for any other path).
    /// The same switches as `add(to:)` decide: with `ACCOUNT_PAGE=off`, `/account` is not served, so it is 404.
    func allowedMethods(for path: String) -> [String]? {
        if !accountPage, path == "/account" || path.hasPrefix("/account/") { return nil }
        return Self.allowedMethods(for: path)
    }

    /// Every path the API can serve, and its methods.
    static func allowedMethods(for path: String) -> [String]? {
        switch path {
        case "/v1/users", "/v1/login", "/v1/logout", "/v1/browser/login", "/v1/browser/logout", "/v1/token", "/v1/introspect", "/v1/revoke":
            return ["POST"]
        case "/.well-known/jwks.json": return ["GET", "HEAD"]
        case "/v1/session", "/v1/verify", "/healthz", "/readyz", "/metrics", "/account", "/account/account.css", "/account/account.js":
            return ["GET", "HEAD"]
        case "/v1/sessions": return ["GET", "HEAD", "DELETE"]
        default:
            if path.hasPrefix("/v1/sessions/"), !path.dropFirst("/v1/sessions/".count).contains("/") { return ["DELETE"] }
            return nil
        }
    }

    /// Adds every route to a router whose context is `SessionRequestContext`.
    public func add(to router: Router<SessionRequestContext>) {
        router.add(middleware: APIMiddleware(telemetry: telemetry, allowedMethods: { self.allowedMethods(for: $0) }))
        router.get("/healthz") { _, _ in try Self.json(.ok) { $0.field("status", "ok") } }
        router.get("/readyz") { _, _ in try await self.ready() }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: self.metricsText()))
            )
        }
        router.post("/v1/users") { request, context in try await self.register(request, context) }
        router.post("/v1/login") { request, context in try await self.login(request, context) }
        router.post("/v1/browser/login") { request, context in try await self.browserLogin(request, context) }
        router.post("/v1/browser/logout") { request, context in try await self.browserLogout(request, context) }
        if accountPage { AccountPage.add(to: router) }
        router.post("/v1/introspect") { request, context in try await self.introspect(request, context) }
        router.post("/v1/revoke") { request, context in try await self.revokeToken(request, context) }
        router.get("/.well-known/jwks.json") { _, _ in try self.jwks() }
        if accessTokens == nil {
            // Before authentication: a service without JWTs says so to everyone, signed in or not.
            router.post("/v1/token") { _, _ -> Response in throw APIError.jwtDisabled }
        }

        let authenticated = router.group().add(
            middleware: BearerAuthenticator<SessionRequestContext>(store: sessions, cookie: cookie, trustedProxies: trustedProxies))
        // Runs only with VERIFY_FAST_PATH=off: by default `EdgeHandler` answers a plain GET /v1/verify in the channel
        // pipeline before it reaches the router (set a breakpoint there); HEAD and /v1/verify/** always come here.
        authenticated.get("/v1/verify") { _, context in try self.verify(context) }
        // Envoy ext_authz (http_service) appends the original path and keeps the original method.
        for method in [HTTPRequest.Method.get, .head, .post, .put, .patch, .delete, .options] {
            authenticated.on("/v1/verify/**", method: method) { _, context in try self.verify(context) }
        }
        if accessTokens != nil {
            authenticated.post("/v1/token") { request, context in
                try await CredentialsBody.refuseForeignBody(request, limit: self.maxBodySize)
                return try await self.issueAccessToken(context)
            }
        }
        authenticated.get("/v1/session") { _, context in try await self.currentSession(context) }
        authenticated.post("/v1/logout") { request, context in
            try await CredentialsBody.refuseForeignBody(request, limit: self.maxBodySize)
            return try await self.logout(context)
        }
        authenticated.get("/v1/sessions") { request, context in try await self.list(request, context) }
        authenticated.delete("/v1/sessions") { request, context in
            try await CredentialsBody.refuseForeignBody(request, limit: self.maxBodySize)
            return try await self.revokeAll(context)
        }
        authenticated.delete("/v1/sessions/{session_id}") { request, context in
            try await CredentialsBody.refuseForeignBody(request, limit: self.maxBodySize)
            return try await self.revoke(context)
        }
    }

    // MARK: Handlers

    /// 0 round trips beyond authentication.
    func verify(_ context: SessionRequestContext) throws -> Response {
        let (headers, body) = Self.verified(try Self.session(context))
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
    }

    /// The 200 answer of a verification, on either path (router or `EdgeHandler`): the user and session in
    /// the body and in `X-User-Id`/`X-Session-Id` for a gateway to forward.
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
        headers.reserveCapacity(9)
        headers.append(HTTPField(name: .contentType, value: JSONWriter.contentType))
        headers.append(HTTPField(name: .xUserID, value: userID))
        headers.append(HTTPField(name: .xSessionID, value: sessionID))
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

    /// 3 EVALSHA at once (throttle) + 1 GET and 1 HMGET (user) + 1 bcrypt + 1 DEL (throttle) + 1 EVALSHA (session); a
    /// failure: throttle, user, bcrypt, 3 EVALSHA.
    func login(_ request: Request, _ context: SessionRequestContext) async throws -> Response {
        let credentials = try await CredentialsBody.decode(request, limit: maxBodySize)
        let (token, session, user) = try await authenticate(credentials, request, context)
        var response = try Self.json(.ok) { object in
            object.field("token", token.text)
            object.field("token_type", "Bearer")
            object.field("expires_in", Self.secondsUntil(session.expiresAt))
            object.field("user_id", user.id.text)
            object.field("session_id", session.id.hex)
        }
        response.headers[HTTPField.Name("Pragma")!] = "no-cache"
        return response
    }

    /// The login both transports share: throttling, the password check, a new session; counted and logged.
    private func authenticate(_ credentials: CredentialsBody, _ request: Request, _ context: SessionRequestContext) async throws
        -> (SessionToken, Session, User)
    {
        let client = trustedProxies.clientAddress(peer: context.peerAddress, forwardedFor: request.headers[values: .xForwardedFor])
        do {
            let (token, session, user) = try await accounts.login(
                username: credentials.username, password: credentials.password, clientAddress: client
            )
            loginsOK.increment()
            context.logger.info("login", metadata: ["user_id": "\(user.id)", "session_id": "\(session.id.hex)"])
            return (token, session, user)
        } catch {
            switch error.code {
            case .invalidCredentials: loginsFailed.increment()
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

    /// `/v1/login` for browsers: the token goes into the session cookie, never into the body. JSON → 204; a form → 303
    /// to its `return_to` when that is a same-origin path, else `/` (with `?error=<code>` on failure).
    func browserLogin(_ request: Request, _ context: SessionRequestContext) async throws -> Response {
        guard cookie.allowsUnsafe(request.head) else { throw APIError.crossOriginRequest }
        let isForm = CredentialsBody.isForm(request)
        let credentials: CredentialsBody
        do {
            credentials = try await CredentialsBody.decode(request, limit: maxBodySize)
        } catch let error as APIError where isForm {
            return Self.redirect(to: SessionCookie.safeRedirect(nil), error: error.code)
        }
        let target = SessionCookie.safeRedirect(credentials.returnTo)
        do {
            let (token, session, _) = try await authenticate(credentials, request, context)
            var response = isForm ? Self.redirect(to: target) : Response(status: .noContent)
            response.headers[.setCookie] = cookie.setCookie(token, maxAge: Self.secondsUntil(session.absoluteExpiresAt))
            response.headers[.cacheControl] = "no-store"
            return response
        } catch let error as APIError where isForm {
            return Self.redirect(to: target, error: error.code)
        }
    }

    /// Ends the session the cookie names (on every instance) and clears the cookie — also when the cookie is missing or
    /// no longer valid. JSON or no body → 204; a form → 303 to `/`. 1 EVALSHA to peek (read-only: ending a session must
    /// not renew it first) + 1 to revoke.
    func browserLogout(_ request: Request, _ context: SessionRequestContext) async throws -> Response {
        guard cookie.allowsUnsafe(request.head) else { throw APIError.crossOriginRequest }
        try await CredentialsBody.refuseForeignBody(request, limit: maxBodySize, forms: true)
        if case .token(let token) = cookie.parse(request.headers[values: .cookie]) {
            let session = try await core(context) { try await sessions.peek(token) }
            if let session { _ = try await core(context) { try await sessions.revoke(session.id, of: session.userID) } }
        }
        var response = CredentialsBody.isForm(request) ? Self.redirect(to: "/") : Response(status: .noContent)
        response.headers[.setCookie] = cookie.clearCookie
        response.headers[.cacheControl] = "no-store"
        return response
    }

    /// 303 See Other to a same-origin path, with `error=<code>` added to its query when given.
    static func redirect(to target: String, error: String? = nil) -> Response {
        var location = target
        if let error { location += (target.contains("?") ? "&" : "?") + "error=" + error }
        return Response(status: .seeOther, headers: [.location: location])
    }

    /// 1 EVALSHA.
    func logout(_ context: SessionRequestContext) async throws -> Response {
        let session = try Self.session(context)
        _ = try await core(context) { try await sessions.revoke(session.id, of: session.userID) }
        return Response(status: .noContent)
    }

    /// 0 round trips beyond authentication once the username is cached (usernames never change), else 1 HGET.
    func currentSession(_ context: SessionRequestContext) async throws -> Response {
        let session = try Self.session(context)
        let username = try await core(context) { try await accounts.users.username(for: session.userID) } ?? ""
        return try Self.json(.ok) { object in
            object.field("user_id", session.userID.text)
            object.field("username", username)
            object.field("session_id", session.id.hex)
            object.field("created_at", UTCTime.rfc3339(session.createdAt))
            object.field("expires_at", UTCTime.rfc3339(session.expiresAt))
            object.field("absolute_expires_at", UTCTime.rfc3339(session.absoluteExpiresAt))
        }
    }

    /// The largest (and default) page of `GET /v1/sessions`.
    static let maxPage = 100

    /// 1 EVALSHA, reading at most `limit` + 1 + `MAX_SESSIONS_PER_USER` index entries.
    func list(_ request: Request, _ context: SessionRequestContext) async throws -> Response {
        let current = try Self.session(context)
        var limit = Self.maxPage
        if let text = request.uri.queryParameters.get("limit") {
            guard let value = Int(text), (1...Self.maxPage).contains(value) else {
                throw APIError.invalidRequest("limit must be a whole number from 1 to \(Self.maxPage)")
            }
            limit = value
        }
        var cursor: SessionCursor?
        if let text = request.uri.queryParameters.get("cursor") {
            guard let value = SessionCursor(text: text) else { throw APIError.invalidRequest("cursor is not one a page gave out") }
            cursor = value
        }
        let page = try await core(context) { try await sessions.sessions(for: current.userID, after: cursor, limit: limit) }
        return try Self.json(.ok) { object in
            object.array(
                "sessions",
                page.sessions.map { session in
                    { (entry: inout JSONWriter.ObjectWriter) in
                        entry.field("session_id", session.id.hex)
                        entry.field("created_at", UTCTime.rfc3339(session.createdAt))
                        entry.field("last_seen_at", UTCTime.rfc3339(session.lastSeenAt))
                        entry.field("expires_at", UTCTime.rfc3339(session.expiresAt))
                        entry.field("current", session.id == current.id)
                    }
                }
            )
            object.field("next_cursor", page.next?.text)
        }
    }

    /// 1 EVALSHA.
    func revoke(_ context: SessionRequestContext) async throws -> Response {
        let current = try Self.session(context)
        guard let text = context.parameters.get("session_id"), let id = SessionID(hex: text) else {
            throw APIError(SessionError.notFound)
        }
        guard try await core(context, { try await sessions.revoke(id, of: current.userID) }) else {
            throw APIError(SessionError.notFound)
        }
        return Response(status: .noContent)
    }

    /// 1 EVALSHA.
    func revokeAll(_ context: SessionRequestContext) async throws -> Response {
        let current = try Self.session(context)
        try await core(context) { try await sessions.revokeAll(for: current.userID) }
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
    private func storeFailed(_ error: SessionError, _ context: SessionRequestContext) {
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

    static func json(_ status: HTTPResponse.Status, _ fields: (inout JSONWriter.ObjectWriter) -> Void) throws -> Response {
        var writer = JSONWriter()
        writer.object(fields)
        return Response(status: status, headers: [.contentType: JSONWriter.contentType], body: .init(byteBuffer: writer.buffer))
    }
}

/// `{"username", "password"}` as JSON, or as `application/x-www-form-urlencoded`.
struct CredentialsBody: Decodable {
    let username: String
    let password: String
    /// Where a browser form login goes next (`/v1/browser/login` only).
    let returnTo: String?

    enum CodingKeys: String, CodingKey {
        case username, password
        case returnTo = "return_to"
    }

    /// Whether the body is a form (`application/x-www-form-urlencoded`), which browsers answer with redirects.
    static func isForm(_ request: Request) -> Bool {
        mediaType(request) == "application/x-www-form-urlencoded"
    }

    static func mediaType(_ request: Request) -> String {
        request.headers[.contentType].map { $0.split(separator: ";", maxSplits: 1)[0].trimmingSpaces.lowercased() } ?? ""
    }

    /// For routes that take no body: a request that carries one must still say it is JSON (or, where `forms`, a form),
    /// as the README promises — 415 otherwise. No body at all is fine.
    static func refuseForeignBody(_ request: Request, limit: Int, forms: Bool = false) async throws {
        let mediaType = Self.mediaType(request)
        if mediaType == "application/json" || (mediaType.hasPrefix("application/") && mediaType.hasSuffix("+json")) { return }
        if forms, mediaType == "application/x-www-form-urlencoded" { return }
        // Read (at most `limit`) to know whether there is a body at all: a client may announce none in several ways.
        guard try await FormBody.collect(request, limit: limit).readableBytes > 0 else { return }
        throw APIError(
            .unsupportedMediaType, code: "unsupported_media_type", message: forms ? "send application/json or a form" : "send application/json")
    }

    static func decode(_ request: Request, limit: Int) async throws -> CredentialsBody {
        // Read first, whatever the media type: a response sent while a malformed body is still arriving must not race it.
        let buffer = try await FormBody.collect(request, limit: limit)
        // The media type alone decides how the body is read: JSON, or a form. Anything else (none included) is 415.
        let mediaType = Self.mediaType(request)
        if mediaType == "application/x-www-form-urlencoded" {
            let text = try FormBody.text(buffer)
            do {
                return try URLEncodedFormDecoder().decode(CredentialsBody.self, from: text)
            } catch {
                throw APIError.invalidRequest("the form needs username and password fields")
            }
        }
        guard mediaType == "application/json" || (mediaType.hasPrefix("application/") && mediaType.hasSuffix("+json")) else {
            throw APIError(
                .unsupportedMediaType, code: "unsupported_media_type", message: "send application/json or application/x-www-form-urlencoded")
        }
        if let keys = JSONKeys.topLevel(Array(buffer.readableBytesView)), Set(keys).count != keys.count {
            throw APIError.invalidRequest("a field appears twice in the JSON object")
        }
        guard buffer.readableBytes > 0 else { throw APIError.invalidRequest("the body must be a JSON object with username and password") }
        do {
            return try JSONDecoder().decode(CredentialsBody.self, from: Data(buffer.readableBytesView))
        } catch let error as DecodingError {
            throw APIError.invalidRequest(APIMiddleware<SessionRequestContext>.describe(error))
        } catch {
            throw APIError.invalidRequest("the body is not valid JSON")
        }
    }
}

/// A request body read whole, for the JSON and form decoders.
enum FormBody {
    /// The body, up to `limit` bytes (beyond it: 413).
    static func collect(_ request: Request, limit: Int) async throws -> ByteBuffer {
        do {
            return try await request.body.collect(upTo: limit)
        } catch let error as NIOTooManyBytesError {
            throw error  // 413
        } catch {
            // A malformed body on the wire (bad chunked encoding, a truncated stream): the client's fault, never a 500.
            throw APIError.invalidRequest("the request body could not be read")
        }
    }

    /// A form body as text; 400 unless it is valid UTF-8.
    static func text(_ buffer: ByteBuffer) throws -> String {
        guard let text = buffer.getString(at: buffer.readerIndex, length: buffer.readableBytes), text.utf8.count == buffer.readableBytes,
            String(validating: buffer.readableBytesView, as: UTF8.self) != nil
        else { throw APIError.invalidRequest("the form body is not valid UTF-8") }
        return text
    }
}

/// The keys of a JSON object's top level, decoded (so `"user\u006eame"` is `username`), in order; nil when the text is
/// not an object. JSONDecoder keeps the last of two equal keys silently; the API refuses them instead, since two
/// parsers (a proxy's and ours) could each read a different one.
enum JSONKeys {
    static func topLevel(_ bytes: [UInt8]) -> [String]? {
        var keys: [String] = []
        var depth = 0
        var expectingKey = false
        var index = 0
        guard let first = bytes.firstIndex(where: { !JSONKeys.isSpace($0) }), bytes[first] == UInt8(ascii: "{") else { return nil }
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                let start = index
                index += 1
                while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                    if bytes[index] == UInt8(ascii: "\\") { index += 1 }
                    index += 1
                }
                if depth == 1, expectingKey, index < bytes.count {
                    let raw = Data(bytes[start...index])
                    guard let key = try? JSONDecoder().decode(String.self, from: raw) else { return nil }
                    keys.append(key)
                    expectingKey = false
                }
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                if depth == 1 { expectingKey = true }
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
            case UInt8(ascii: ","):
                if depth == 1 { expectingKey = true }
            default:
                break
            }
            index += 1
        }
        return keys
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\t")
    }
}
