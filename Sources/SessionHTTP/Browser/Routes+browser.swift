import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SessionCore

/// The browser login and logout: the session travels in the cookie (`SessionCookie`), never in a body.
extension Routes {
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
            let (token, session): (SessionToken, Session)
            switch try await authenticate(credentials, request, context) {
            case .session(let sessionToken, let started, _): (token, session) = (sessionToken, started)
            case .secondFactorRequired(let challenge, let expiresIn):
                // JSON: the same 401 as /v1/login; a form: back to the page, which asks for the code.
                guard isForm else { return try Self.secondFactorRequired(challenge, expiresIn) }
                return Self.redirect(to: target + (target.contains("?") ? "&" : "?") + "step=totp&challenge=" + challenge.text)
            }
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
            let ending = SessionEnd(.logout, origin: origin(request, context))
            if let session { _ = try await core(context) { try await sessions.revoke(session.id, of: session.userID, ending: ending) } }
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
}
