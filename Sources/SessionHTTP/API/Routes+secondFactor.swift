import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import NIOCore
import SessionCore

/// The second factor (`/v1/totp`, `/v1/login/totp`) and re-authentication (`/v1/session/reauthenticate`).
extension Routes {
    func addSecondFactorRoutes(to table: inout RouteTable) {
        table.add(.post, "/v1/login/totp") { request, context in try await self.loginWithCode(request, context) }
        table.add(.post, "/v1/session/reauthenticate", guarded: true) { request, context in try await self.reauthenticate(request, context) }
        table.add(.post, "/v1/totp", guarded: true) { request, context in
            try self.requireFreshLogin(context)
            try await CredentialsBody.refuseForeignBody(request, limit: self.maxBodySize)
            return try await self.beginTOTP(context)
        }
        table.add(.post, "/v1/totp/confirm", guarded: true) { request, context in try await self.confirmTOTP(request, context) }
        table.add(.delete, "/v1/totp", guarded: true) { request, context in
            try self.requireFreshLogin(context)
            return try await self.disableTOTP(request, context)
        }
    }

    /// 403 `reauthentication_required` unless the session's login is at most `REAUTH_MAX_AGE` old.
    func requireFreshLogin(_ context: SessionRequestContext) throws {
        guard try Self.session(context).isFresh(maxAge: reauthMaxAge) else { throw APIError(SessionError.reauthenticationRequired) }
    }

    /// The login's second step: `{"challenge", "code"}` or `{"challenge", "recovery_code"}` → the body of a login.
    /// The challenge's user, the factor, 1 EVALSHA settling the code, then a login's session.
    func loginWithCode(_ request: Request, _ context: SessionRequestContext) async throws -> Response {
        let (token, session, user) = try await completeLogin(try await CodeBody.decode(request, limit: maxBodySize), request, context)
        return try Self.loginBody(token, session, user)
    }

    /// `/v1/login/totp` for browsers: the session goes into the cookie. JSON → 204; a form → 303 to its `return_to`.
    func browserLoginWithCode(_ request: Request, _ context: SessionRequestContext) async throws -> Response {
        guard cookie.allowsUnsafe(request.head) else { throw APIError.crossOriginRequest }
        let isForm = CredentialsBody.isForm(request)
        do {
            let body = try await CodeBody.decode(request, limit: maxBodySize, forms: true)
            let (token, session, _) = try await completeLogin(body, request, context)
            var response = isForm ? Self.redirect(to: SessionCookie.safeRedirect(body.returnTo)) : Response(status: .noContent)
            response.headers[.setCookie] = cookie.setCookie(token, maxAge: Self.secondsUntil(session.absoluteExpiresAt))
            response.headers[.cacheControl] = "no-store"
            return response
        } catch let error as APIError where isForm {
            return Self.redirect(to: SessionCookie.safeRedirect(nil), error: error.code)
        }
    }

    private func completeLogin(_ body: CodeBody, _ request: Request, _ context: SessionRequestContext) async throws -> (
        SessionToken, Session, User
    ) {
        guard let challenge = body.challenge else { throw APIError.invalidRequest("the body needs challenge and code (or recovery_code)") }
        let client = trustedProxies.clientAddress(peer: context.peerAddress, forwardedFor: request.headers[values: .xForwardedFor])
        return try await counted(context) {
            let (token, session, user) = try await accounts.completeLogin(
                challenge: challenge, code: body.code, recoveryCode: body.recoveryCode, clientAddress: client)
            context.logger.info("login", metadata: ["user_id": "\(user.id)", "session_id": "\(session.id.hex)", "amr": "pwd otp"])
            loginsOK.increment()
            return (token, session, user)
        }
    }

    /// `{"password"}` (+ `"code"` or `"recovery_code"` when the factor is on) → the body of a login with a new token;
    /// the old session ends. A cookie caller gets the new session in the cookie and no token in the body. Wrong
    /// password or code: 403 (the caller is signed in).
    func reauthenticate(_ request: Request, _ context: SessionRequestContext) async throws -> Response {
        let current = try Self.session(context)
        let body = try await CodeBody.decode(request, limit: maxBodySize)
        guard let password = body.password else { throw APIError.invalidRequest("the body needs password") }
        let client = trustedProxies.clientAddress(peer: context.peerAddress, forwardedFor: request.headers[values: .xForwardedFor])
        let (token, session, user): (SessionToken, Session, User)
        do {
            (token, session, user) = try await counted(context) {
                try await accounts.reauthenticate(
                    current, password: password, code: body.code, recoveryCode: body.recoveryCode, clientAddress: client,
                    userAgent: request.headers[.userAgent])
            }
        } catch let error as APIError where error.status == .unauthorized {
            throw APIError(.forbidden, code: error.code, message: error.message, headers: error.headers)
        }
        context.logger.info(
            "reauthenticated", metadata: ["user_id": "\(user.id)", "session_id": "\(session.id.hex)", "ended_session_id": "\(current.id.hex)"])
        // Authenticated without an Authorization header: by the cookie.
        guard request.headers[.authorization] == nil else { return try Self.loginBody(token, session, user) }
        var response = try Self.json(.ok) { object in
            object.field("expires_in", Self.secondsUntil(session.expiresAt))
            object.field("user_id", user.id.text)
            object.field("session_id", session.id.hex)
        }
        response.headers[.setCookie] = cookie.setCookie(token, maxAge: Self.secondsUntil(session.absoluteExpiresAt))
        response.headers[.cacheControl] = "no-store"
        return response
    }

    /// 200 `{"secret", "otpauth_uri"}`: a new secret, pending until confirmed. 1 HGET (username, until cached) + 1 HSET.
    func beginTOTP(_ context: SessionRequestContext) async throws -> Response {
        let session = try Self.session(context)
        let enrollment = try await core(context) { try await accounts.beginTOTP(for: session.userID, issuer: totpIssuer) }
        context.logger.info("totp enrolment started", metadata: ["user_id": "\(session.userID)"])
        var response = try Self.json(.ok) { object in
            object.field("secret", enrollment.secret)
            object.field("otpauth_uri", enrollment.uri)
        }
        response.headers[.cacheControl] = "no-store"
        return response
    }

    /// `{"code"}` → 200 `{"recovery_codes": […]}`, shown once; 400 `invalid_code`.
    func confirmTOTP(_ request: Request, _ context: SessionRequestContext) async throws -> Response {
        let session = try Self.session(context)
        let body = try await CodeBody.decode(request, limit: maxBodySize)
        guard let code = body.code else { throw APIError.invalidRequest("the body needs code") }
        let origin = origin(request, context)
        let codes = try await asBadRequest(context) { try await accounts.confirmTOTP(for: session.userID, code: code, origin: origin) }
        context.logger.info("totp enabled", metadata: ["user_id": "\(session.userID)"])
        var response = try Self.json(.ok) { object in object.field("recovery_codes", codes) }
        response.headers[.cacheControl] = "no-store"
        return response
    }

    /// `{"code"}` or `{"recovery_code"}` → 204; 400 `invalid_code`.
    func disableTOTP(_ request: Request, _ context: SessionRequestContext) async throws -> Response {
        let session = try Self.session(context)
        let body = try await CodeBody.decode(request, limit: maxBodySize)
        guard body.code != nil || body.recoveryCode != nil else { throw APIError.invalidRequest("the body needs code or recovery_code") }
        try await asBadRequest(context) {
            try await accounts.disableTOTP(for: session.userID, code: body.code, recoveryCode: body.recoveryCode, origin: origin(request, context))
        }
        context.logger.info("totp disabled", metadata: ["user_id": "\(session.userID)"])
        return Response(status: .noContent)
    }

    /// A wrong code while managing the factor is a bad request (400 `invalid_code`), not a failed authentication.
    private func asBadRequest<T>(_ context: SessionRequestContext, _ body: () async throws -> T) async throws -> T {
        do {
            return try await core(context, body)
        } catch let error as APIError where error.code == SessionError.Code.invalidCode.text {
            throw APIError(.badRequest, code: error.code, message: error.message)
        }
    }
}

/// The bodies of the second-factor routes: `challenge`, `code`, `recovery_code`, `password`, `return_to` — each route
/// says which it needs. JSON, or a form for the browser's routes.
struct CodeBody: Decodable {
    var challenge: String?
    var code: String?
    var recoveryCode: String?
    var password: String?
    var returnTo: String?

    enum CodingKeys: String, CodingKey {
        case challenge, code, password
        case recoveryCode = "recovery_code"
        case returnTo = "return_to"
    }

    /// JSON; with `forms`, also a form (the browser's login step).
    static func decode(_ request: Request, limit: Int, forms: Bool = false) async throws -> CodeBody {
        let buffer = try await FormBody.collect(request, limit: limit)
        let mediaType = CredentialsBody.mediaType(request)
        if forms, mediaType == "application/x-www-form-urlencoded" {
            let fields = FormBody.fields(try FormBody.text(buffer)).filter { !$0.value.isEmpty }
            return CodeBody(
                challenge: fields["challenge"], code: fields["code"], recoveryCode: fields["recovery_code"], password: fields["password"],
                returnTo: fields["return_to"])
        }
        return try JSONBody.decode(CodeBody.self, buffer, mediaType: mediaType, fields: "the route's fields")
    }
}
