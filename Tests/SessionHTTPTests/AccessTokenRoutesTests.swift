import AccessTokens
import Foundation
import HTTPTestSupport
import HTTPTypes
import HummingbirdTesting
import NIOCore
import ServiceSettings
import SessionCore
import Testing

@testable import SessionHTTP

/// `POST /v1/token`, `/.well-known/jwks.json`, `POST /v1/introspect` (RFC 7662) and `POST /v1/revoke` (RFC 7009), on
/// live instances sharing one Redis.
@Suite struct AccessTokenRoutesTests {
    static let client = "Basic " + Data("gateway:s3cret:with-colon".utf8).base64EncodedString()

    static func configuration(_ keys: AccessTokenKeySet? = nil, _ tweak: (inout ServiceConfiguration) -> Void = { _ in }) async throws
        -> ServiceConfiguration
    {
        let keys = try keys ?? AccessTokenKeySet.privateKeys(jwks: Array(AccessTokenKeySet.generate(.eddsa).utf8))
        return try await Instances.configuration { configuration in
            configuration.accessTokens = AccessTokenIssuer(keys: keys, issuer: "session-service", audience: "api", lifetime: 300)
            configuration.introspectionClients = IntrospectionClients(parsing: "gateway:s3cret:with-colon,other:x")
            tweak(&configuration)
        }
    }

    static func form(_ fields: String, authorization: String? = client) -> (HTTPFields, ByteBuffer) {
        var headers: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]
        if let authorization { headers[.authorization] = authorization }
        return (headers, ByteBuffer(string: fields))
    }

    static func post(_ client: any TestClientProtocol, _ uri: String, _ fields: String, authorization: String? = Self.client) async throws
        -> TestResponse
    {
        let (headers, body) = form(fields, authorization: authorization)
        return try await client.executeRequest(uri: uri, method: .post, headers: headers, body: body)
    }

    static func accessToken(_ client: any TestClientProtocol, _ token: String) async throws -> String {
        let response = try await client.call(.post, "/v1/token", token: token)
        #expect(response.status == .ok, "\(String(buffer: response.body))")
        return response.json["access_token"] as? String ?? ""
    }

    @Test func aSessionIsExchangedForASignedAccessToken() async throws {
        let keys = try AccessTokenKeySet.privateKeys(jwks: Array(AccessTokenKeySet.generate(.eddsa).utf8))
        try await Instances.with(2, try await Self.configuration(keys)) { clients in
            let name = uniqueName()
            let userID = try await clients[0].register(name)
            let token = try await clients[0].login(name)
            let response = try await clients[1].call(.post, "/v1/token", token: token)
            #expect(response.status == .ok)
            #expect(response.headers[.cacheControl] == "no-store")
            #expect(response.json["token_type"] as? String == "Bearer" && response.json["expires_in"] as? Int == 300)
            let jwt = try #require(response.json["access_token"] as? String)
            let header = try AccessTokenVerifier.header(of: jwt)
            #expect(header.alg == "EdDSA" && header.typ == "at+jwt" && header.kid == keys.signingKeyID)
            let claims = try await AccessTokenVerifier(keys: keys, issuer: "session-service", audience: "api").verify(jwt)
            let session = try await clients[0].call(.get, "/v1/session", token: token).json
            #expect(claims.subject.text == userID && claims.sessionID.hex == session["session_id"] as? String && claims.username == name)
            #expect(claims.expiresAt - claims.issuedAt == 300 && claims.notBefore == claims.issuedAt && !claims.tokenID.isEmpty)
            // Two tokens, two jti.
            let second = try await AccessTokenVerifier(keys: keys, issuer: "session-service", audience: "api").verify(
                try await Self.accessToken(clients[0], token))
            #expect(second.tokenID != claims.tokenID)
            // No session, no token; a JWT is not a session token.
            #expect(try await clients[0].call(.post, "/v1/token").status == .unauthorized)
            #expect(try await clients[0].call(.post, "/v1/token", token: jwt).status == .unauthorized)
        }
    }

    @Test func theBrowserCookieGetsATokenSameOriginOnly() async throws {
        try await Instances.with(1, try await Self.configuration()) { clients in
            let name = uniqueName()
            try await clients[0].register(name)
            let login = try await clients[0].call(.post, "/v1/browser/login", json: ["username": name, "password": "correct horse"])
            let cookie = try #require(login.headers[.setCookie]?.split(separator: ";").first.map(String.init))
            let sameOrigin = try await clients[0].call(
                .post, "/v1/token", headers: [.cookie: cookie, HTTPField.Name("Sec-Fetch-Site")!: "same-origin"])
            #expect(sameOrigin.status == .ok && sameOrigin.json["access_token"] is String)
            let crossSite = try await clients[0].call(
                .post, "/v1/token", headers: [.cookie: cookie, .origin: "https://evil.example", HTTPField.Name("Sec-Fetch-Site")!: "cross-site"])
            #expect(crossSite.status == .forbidden && crossSite.errorCode == "cross_origin_request")
        }
    }

    @Test func theJWKSPublishesPublicKeysOnlyAndIsCacheable() async throws {
        let keys = try AccessTokenKeySet.privateKeys(jwks: Array(AccessTokenKeySet.generate(.es256).utf8))
        try await Instances.with(1, try await Self.configuration(keys)) { clients in
            let response = try await clients[0].call(.get, "/.well-known/jwks.json")
            #expect(response.status == .ok && response.headers[.cacheControl] == "public, max-age=300")
            let published = try #require(response.json["keys"] as? [[String: String]])
            #expect(published.count == 1 && published[0]["kty"] == "EC" && published[0]["crv"] == "P-256" && published[0]["alg"] == "ES256")
            #expect(published[0]["kid"] == keys.signingKeyID && published[0]["d"] == nil)
            #expect(!String(buffer: response.body).contains("\"d\""))
        }
        // A shared secret is never published.
        let secret = try AccessTokenKeySet.sharedSecret(Array(repeating: UInt8(ascii: "s"), count: 40))
        try await Instances.with(1, try await Self.configuration(secret)) { clients in
            let body = try await clients[0].call(.get, "/.well-known/jwks.json").body
            #expect(String(buffer: body) == #"{"keys":[]}"#)
        }
    }

    @Test func withoutKeysTheJWTRoutesSayDisabledAndIntrospectionStillWorks() async throws {
        let configuration = try await Instances.configuration { $0.introspectionClients = IntrospectionClients(parsing: "gateway:s3cret:with-colon") }
        try await Instances.with(1, configuration) { clients in
            let token = try await clients[0].newSessionToken()
            for response in [
                try await clients[0].call(.post, "/v1/token", token: token), try await clients[0].call(.post, "/v1/token"),
                try await clients[0].call(.get, "/.well-known/jwks.json"),
            ] {
                #expect(response.status == .notFound && response.errorCode == "jwt_disabled")
            }
            #expect(try await Self.post(clients[0], "/v1/introspect", "token=\(token)").json["active"] as? Bool == true)
        }
    }

    @Test func introspectionAndRevocationNeedAClient() async throws {
        try await Instances.with(1, try await Self.configuration()) { clients in
            let token = try await clients[0].newSessionToken()
            let wrong = [
                nil, "Basic " + Data("gateway:wrong".utf8).base64EncodedString(), "Basic " + Data("nobody:s3cret".utf8).base64EncodedString(),
                "Basic !!!", "Bearer \(token)", "Basic " + Data("gateway".utf8).base64EncodedString(),
            ]
            for authorization in wrong {
                for path in ["/v1/introspect", "/v1/revoke"] {
                    let response = try await Self.post(clients[0], path, "token=\(token)", authorization: authorization)
                    #expect(response.status == .unauthorized && response.errorCode == "invalid_client", "\(path) \(authorization ?? "none")")
                    #expect(response.headers[.wwwAuthenticate]?.hasPrefix("Basic realm=") == true)
                }
            }
            // Nothing was revoked by the refused calls.
            #expect(try await clients[0].call(.get, "/v1/verify", token: token).status == .ok)
            #expect(try await Self.post(clients[0], "/v1/introspect", "token_type_hint=access_token").status == .badRequest)
            #expect(try await Self.post(clients[0], "/v1/introspect", "token=").status == .badRequest)
            let json = try await clients[0].call(.post, "/v1/introspect", json: ["token": token], headers: [.authorization: Self.client])
            #expect(json.status == .unsupportedMediaType)
        }
    }

    @Test func introspectionSaysWhatIsActiveAndRenewsNothing() async throws {
        try await Instances.with(2, try await Self.configuration()) { clients in
            let name = uniqueName()
            let userID = try await clients[0].register(name)
            let token = try await clients[0].login(name)
            let jwt = try await Self.accessToken(clients[0], token)
            let opaque = try await Self.post(clients[1], "/v1/introspect", "token=\(token)&token_type_hint=access_token")
            #expect(opaque.status == .ok && opaque.headers[.cacheControl] == "no-store")
            #expect(opaque.json["active"] as? Bool == true && opaque.json["sub"] as? String == userID && opaque.json["username"] as? String == name)
            #expect(opaque.json["token_type"] as? String == "Bearer" && (opaque.json["sid"] as? String)?.count == 32)
            #expect(opaque.json["exp"] is Int && opaque.json["iat"] is Int)
            let signed = try await Self.post(clients[1], "/v1/introspect", "token=\(jwt)")
            #expect(
                signed.json["active"] as? Bool == true && signed.json["sub"] as? String == userID
                    && signed.json["sid"] as? String == opaque.json["sid"] as? String)
            #expect(
                signed.json["iss"] as? String == "session-service" && signed.json["aud"] as? String == "api"
                    && signed.json["username"] as? String == name)
            #expect((signed.json["exp"] as? Int ?? 0) - (signed.json["iat"] as? Int ?? 0) == 300)
            // Introspection does not slide the idle deadline: `exp` of the opaque token stays where it was.
            try await Task.sleep(for: .milliseconds(1100))
            #expect(try await Self.post(clients[0], "/v1/introspect", "token=\(token)").json["exp"] as? Int == opaque.json["exp"] as? Int)
            for junk in ["nope", "00000000-0000-4000-8000-000000000000", jwt + "x", String(jwt.dropLast(3)), "a.b.c"] {
                let response = try await Self.post(clients[0], "/v1/introspect", "token=\(junk)")
                #expect(response.status == .ok && String(buffer: response.body) == #"{"active":false}"#, "\(junk.prefix(12))")
            }
            // The session ends (a logout on the other instance): both tokens are inactive, and no new JWT is minted.
            #expect(try await clients[1].call(.post, "/v1/logout", token: token).status == .noContent)
            for inactive in [token, jwt] {
                let body = try await Self.post(clients[0], "/v1/introspect", "token=\(inactive)").body
                #expect(String(buffer: body) == #"{"active":false}"#)
            }
            #expect(try await clients[0].call(.post, "/v1/token", token: token).status == .unauthorized)
        }
    }

    @Test func revocationEndsTheSessionBehindEitherKindOfToken() async throws {
        let keys = try AccessTokenKeySet.privateKeys(jwks: Array(AccessTokenKeySet.generate(.eddsa).utf8))
        try await Instances.with(2, try await Self.configuration(keys)) { clients in
            // By JWT: the session behind it ends everywhere.
            let first = try await clients[0].newSessionToken()
            let jwt = try await Self.accessToken(clients[0], first)
            let revoked = try await Self.post(clients[1], "/v1/revoke", "token=\(jwt)&token_type_hint=access_token")
            #expect(revoked.status == .ok && revoked.body.readableBytes == 0)
            #expect(try await clients[0].call(.get, "/v1/verify", token: first).status == .unauthorized)
            // By opaque token.
            let second = try await clients[0].newSessionToken()
            #expect(try await Self.post(clients[1], "/v1/revoke", "token=\(second)").status == .ok)
            #expect(try await clients[0].call(.get, "/v1/verify", token: second).status == .unauthorized)
            // By an expired JWT: its signature still names the session.
            let third = try await clients[0].newSessionToken()
            let current = try await clients[0].call(.get, "/v1/session", token: third).json
            let session = Session(
                id: try #require(SessionID(hex: current["session_id"] as? String ?? "")),
                userID: try #require(UserID(current["user_id"] as? String ?? "")),
                createdAt: Date(), expiresAt: Date() + 60, absoluteExpiresAt: Date() + 60, lastSeenAt: Date()
            )
            let (expired, _) = try await AccessTokenIssuer(keys: keys, issuer: "session-service", audience: "api", lifetime: 300)
                .issue(for: session, username: nil, now: Date() - 3600)
            #expect(try await Self.post(clients[1], "/v1/revoke", "token=\(expired)").status == .ok)
            #expect(try await clients[0].call(.get, "/v1/verify", token: third).status == .unauthorized)
            // Unknown and malformed tokens: 200 and nothing else happens.
            let bystander = try await clients[0].newSessionToken()
            for junk in ["nope", "00000000-0000-4000-8000-000000000000", "a.b.c", String(jwt.dropLast(2))] {
                let response = try await Self.post(clients[0], "/v1/revoke", "token=\(junk)")
                #expect(response.status == .ok && response.body.readableBytes == 0)
            }
            #expect(try await clients[0].call(.get, "/v1/verify", token: bystander).status == .ok)
        }
    }

    @Test func anAccessTokenNeverOutlivesItsSessionsAbsoluteExpiry() async throws {
        let configuration = try await Self.configuration { configuration in
            configuration.sessions.absoluteTimeout = .seconds(60)
            configuration.sessions.idleTimeout = .seconds(60)
            configuration.accessTokens = AccessTokenIssuer(
                keys: configuration.accessTokens!.keys, issuer: "session-service", audience: "api", lifetime: 900)
        }
        try await Instances.with(1, configuration) { clients in
            let token = try await clients[0].newSessionToken()
            let response = try await clients[0].call(.post, "/v1/token", token: token)
            let expiresIn = try #require(response.json["expires_in"] as? Int)
            #expect((55...60).contains(expiresIn), "\(expiresIn)")
            let jwt = try #require(response.json["access_token"] as? String)
            let claims = try await configuration.accessTokens!.verifier.verify(jwt)
            let absolute = try #require(
                (try await clients[0].call(.get, "/v1/session", token: token).json["absolute_expires_at"] as? String).flatMap {
                    let formatter = ISO8601DateFormatter()
                    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
                    return formatter.date(from: $0)
                })
            #expect(Double(claims.expiresAt) <= absolute.timeIntervalSince1970)
        }
    }
}
