import AccessTokens
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SessionCore

// Signed access tokens (RFC 9068) minted from live sessions, their public keys (RFC 7517), and token introspection and
// revocation (RFC 7662, RFC 7009) for opaque session tokens and JWTs alike. The Redis session stays the source of
// truth: a JWT carries its session's ID (`sid`), so ending the session ends what every revocation-checking verifier
// and this introspection accept, on every instance at once.
extension Routes {
    /// `POST /v1/token`: 1 HGET beyond authentication (the username, for `name`); the signature is computed in place
    /// (Ed25519: tens of microseconds).
    func issueAccessToken(_ context: SessionRequestContext) async throws -> Response {
        guard let accessTokens else { throw APIError.jwtDisabled }
        let session = try Self.session(context)
        let username = try await core(context) { try await accounts.users.username(for: session.userID) }
        let (token, claims) = try await accessTokens.issue(for: session, username: username)
        var response = try Self.json(.ok) { object in
            object.field("access_token", token)
            object.field("token_type", "Bearer")
            object.field("expires_in", Int(claims.expiresAt - claims.issuedAt))
        }
        response.headers[.cacheControl] = "no-store"
        response.headers[HTTPField.Name("Pragma")!] = "no-cache"
        return response
    }

    /// `GET /.well-known/jwks.json`: the public keys, cacheable for five minutes: a verifier that meets an unknown `kid`
    /// refetches anyway, and a key is added to the file (second) well before it signs.
    func jwks() throws -> Response {
        guard let accessTokens else { throw APIError.jwtDisabled }
        return Response(
            status: .ok, headers: [.contentType: JSONWriter.contentType, .cacheControl: "public, max-age=300"],
            body: .init(byteBuffer: ByteBuffer(string: accessTokens.keys.publicJWKS))
        )
    }

    /// `POST /v1/introspect` (RFC 7662): whether a token is active now — an opaque session token, or a JWT whose
    /// signature and claims hold and whose session is still live. Renews nothing. 1 EVALSHA (read-only), plus 1 HGET
    /// for an opaque token's username.
    func introspect(_ request: Request, _ context: SessionRequestContext) async throws -> Response {
        try await authenticateClient(request, context)
        let form = try await TokenForm.decode(request, limit: maxBodySize)
        var response =
            try await activeToken(form.token, context).map { active in
                try Self.json(.ok) { object in
                    object.field("active", true)
                    object.field("sub", active.session.userID.text)
                    object.field("username", active.username)
                    object.field("sid", active.session.id.hex)
                    object.field("auth_time", Int(active.session.authenticatedAt.timeIntervalSince1970.rounded(.down)))
                    object.field("amr", active.session.level.amr)
                    object.field("acr", active.session.level.acr)
                    object.field("exp", Int(active.expiresAt))
                    object.field("iat", Int(active.issuedAt))
                    object.field("token_type", "Bearer")
                    if let claims = active.claims {
                        object.field("iss", claims.issuer)
                        object.field("aud", claims.audience.first ?? "")
                        object.field("jti", claims.tokenID)
                    }
                }
            } ?? Self.json(.ok) { $0.field("active", false) }
        response.headers[.cacheControl] = "no-store"
        return response
    }

    /// `POST /v1/revoke` (RFC 7009): ends the session behind an opaque token or a JWT (even an expired one: its
    /// signature is enough to name the session). 200 with no body, also for an unknown or malformed token.
    func revokeToken(_ request: Request, _ context: SessionRequestContext) async throws -> Response {
        try await authenticateClient(request, context)
        let form = try await TokenForm.decode(request, limit: maxBodySize)
        let ending = SessionEnd(.introspectionRevoke, origin: origin(request, context))
        if let token = SessionToken(form.token) {
            if let session = try await core(context, { try await sessions.peek(token) }) {
                _ = try await core(context) { try await sessions.revoke(session.id, of: session.userID, ending: ending) }
            }
        } else if let claims = try? await accessTokens?.verifier.verify(form.token, allowExpired: true) {
            _ = try await core(context) { try await sessions.revoke(claims.sessionID, of: claims.subject, ending: ending) }
        }
        return Response(status: .ok, headers: [.cacheControl: "no-store"])
    }

    /// A token introspection found active.
    private struct ActiveToken {
        let session: Session
        let username: String
        let expiresAt: Int64
        let issuedAt: Int64
        /// For a JWT.
        let claims: AccessTokenClaims?
    }

    private func activeToken(_ text: String, _ context: SessionRequestContext) async throws -> ActiveToken? {
        if let token = SessionToken(text) {
            guard let session = try await core(context, { try await sessions.peek(token) }) else { return nil }
            let username = try await core(context) { try await accounts.users.username(for: session.userID) } ?? ""
            return ActiveToken(
                session: session, username: username, expiresAt: Int64(session.expiresAt.timeIntervalSince1970.rounded(.down)),
                issuedAt: Int64(session.createdAt.timeIntervalSince1970.rounded(.down)), claims: nil
            )
        }
        guard let accessTokens, let claims = try? await accessTokens.verifier.verify(text) else { return nil }
        guard let session = try await core(context, { try await sessions.session(claims.sessionID, of: claims.subject) }) else { return nil }
        let username: String
        if let name = claims.username {
            username = name
        } else {
            username = try await core(context) { try await accounts.users.username(for: session.userID) } ?? ""
        }
        return ActiveToken(session: session, username: username, expiresAt: claims.expiresAt, issuedAt: claims.issuedAt, claims: claims)
    }

    /// HTTP Basic against `INTROSPECTION_CLIENTS`; 401 `invalid_client` otherwise. Failures are throttled per offered
    /// client ID and per client address (429 + `Retry-After` at the limit, checked before the secret is), counted
    /// (`session_client_auth_failures_total`) and logged with the ID and address only (RFC 6749 §2.3.1).
    private func authenticateClient(_ request: Request, _ context: SessionRequestContext) async throws {
        let authorization = request.headers[.authorization]
        let offered = IntrospectionClients.offeredID(authorization: authorization) ?? ""
        let address = trustedProxies.clientAddress(peer: context.peerAddress, forwardedFor: request.headers[values: .xForwardedFor])
        try await core(context) { try await accounts.throttle.checkClient(name: offered, clientAddress: address) }
        guard introspectionClients.client(authorization: authorization) != nil else {
            context.logger.warning("client authentication failed", metadata: ["client_id": "\(offered)", "client.address": "\(address)"])
            try await core(context) { try await accounts.throttle.recordClientFailure(name: offered, clientAddress: address) }
            throw APIError.invalidClient
        }
    }
}

/// The form of `/v1/introspect` and `/v1/revoke`: `token=…`, optionally `token_type_hint=…` (read and not needed: the
/// token's shape says what it is).
struct TokenForm: Decodable {
    let token: String
    let tokenTypeHint: String?

    enum CodingKeys: String, CodingKey {
        case token
        case tokenTypeHint = "token_type_hint"
    }

    static func decode(_ request: Request, limit: Int) async throws -> TokenForm {
        let buffer = try await FormBody.collect(request, limit: limit)
        guard CredentialsBody.isForm(request) else {
            throw APIError(.unsupportedMediaType, code: "unsupported_media_type", message: "send application/x-www-form-urlencoded")
        }
        let text = try FormBody.text(buffer)
        do {
            let form = try URLEncodedFormDecoder().decode(TokenForm.self, from: text)
            guard !form.token.isEmpty else { throw APIError.invalidRequest("the form needs a token field") }
            return form
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError.invalidRequest("the form needs a token field")
        }
    }
}
