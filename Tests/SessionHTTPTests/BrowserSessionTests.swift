import Foundation
import HTTPTestSupport
import HTTPTypes
import HummingbirdTesting
import NIOCore
import SessionCore
import TestSupport
import Testing

@testable import SessionHTTP

/// The browser transport's rules, unit by unit.
@Suite struct SessionCookieTests {
    @Test(arguments: [
        "//evil.example", "https://evil.example", "/\\evil", "%2F%2Fevil.example", "/%2Fevil.example", "/%5Cevil", "%2f%2fevil.example",
        "/%252F%252Fevil", "javascript:alert(1)", "evil.example", "/a\u{0}b", "/a%0Ab", "/%09/evil.example", "", " /x",
    ])
    func openRedirectAttemptsLandOnTheRoot(returnTo: String) {
        #expect(SessionCookie.safeRedirect(returnTo) == "/", "\(returnTo)")
    }

    @Test func sameOriginPathsAreKept() {
        for path in ["/", "/account", "/app/page?x=1&y=2#frag", "/a%20b"] { #expect(SessionCookie.safeRedirect(path) == path) }
        #expect(SessionCookie.safeRedirect(nil) == "/")
    }

    @Test func theCookieIsFoundAmongOthersAndShadowingIsRefused() {
        let cookie = SessionCookie()
        let token = SessionToken.random()
        #expect(cookie.parse(["a=1; __Host-session=\(token.text); b=2"]) == .token(token))
        #expect(cookie.parse(["a=1"]) == .missing)
        #expect(cookie.parse(["__Host-session=nope"]) == .malformed)
        #expect(cookie.parse(["__Host-session=\(token.text)", "__Host-session=\(SessionToken.random().text)"]) == .malformed)
        #expect(SessionCookie(secure: false).name == "session")
        #expect(!SessionCookie(secure: false).setCookie(token, maxAge: 5).contains("Secure"))
    }

    @Test func theCrossOriginMatrix() {
        let cookie = SessionCookie(allowedOrigins: ["https://app.example"])
        let host = "api.example"
        #expect(!cookie.allowsUnsafe(origin: "https://evil.example", secFetchSite: "cross-site", host: host))
        #expect(!cookie.allowsUnsafe(origin: "https://x.api.example", secFetchSite: "same-site", host: host))
        #expect(cookie.allowsUnsafe(origin: "https://api.example", secFetchSite: "same-origin", host: host))
        #expect(cookie.allowsUnsafe(origin: nil, secFetchSite: "none", host: host))
        #expect(cookie.allowsUnsafe(origin: nil, secFetchSite: nil, host: host))
        #expect(cookie.allowsUnsafe(origin: "https://api.example", secFetchSite: nil, host: host))
        #expect(!cookie.allowsUnsafe(origin: "https://evil.example", secFetchSite: nil, host: host))
        #expect(!cookie.allowsUnsafe(origin: "null", secFetchSite: nil, host: host))
        // ALLOWED_ORIGINS is checked first.
        #expect(cookie.allowsUnsafe(origin: "https://app.example", secFetchSite: "cross-site", host: host))
    }
}

/// Forward auth: the method of the gated request, as a trusted gateway reports it, decides whether the cookie CSRF rule
/// applies to a `GET /v1/verify`.
@Suite struct ForwardedMethodTests {
    static func request(_ fields: HTTPFields) -> HTTPRequest {
        var fields = fields
        fields[.cookie] = "__Host-session=\(SessionToken.random().text)"
        fields[.origin] = "https://evil.app.example"
        fields[.secFetchSite] = "same-site"
        return HTTPRequest(method: .get, scheme: "http", authority: "app.example", path: "/v1/verify", headerFields: fields)
    }

    @Test func aTrustedGatewaysUnsafeMethodIsCheckedAndNobodyElsesIs() throws {
        let gateway = try SocketAddress(ipAddress: "10.0.0.5", port: 40000)
        let stranger = try SocketAddress(ipAddress: "10.0.0.6", port: 40000)
        let authenticator = BearerAuthenticator<SessionRequestContext>(
            store: StubStore(), cookie: SessionCookie(), trustedProxies: try TrustedProxies(parsing: "10.0.0.5"))
        for name in ["X-Original-Method", "X-Forwarded-Method"] {
            let header = HTTPField.Name(name)!
            for method in ["POST", "put", "DELETE", "PATCH", "WHATEVER"] {
                let error = #expect(throws: APIError.self) { try authenticator.token(from: Self.request([header: method]), peer: gateway) }
                #expect(error?.status == .forbidden)
                // The same report from a peer that is not a trusted gateway is not believed.
                #expect(throws: Never.self) { try authenticator.token(from: Self.request([header: method]), peer: stranger) }
            }
            for method in ["GET", "HEAD", "OPTIONS"] {
                #expect(throws: Never.self) { try authenticator.token(from: Self.request([header: method]), peer: gateway) }
            }
        }
        // Never X-HTTP-Method-Override, and no report keeps the request's own method.
        #expect(throws: Never.self) {
            try authenticator.token(from: Self.request([HTTPField.Name("X-HTTP-Method-Override")!: "POST"]), peer: gateway)
        }
        #expect(throws: Never.self) { try authenticator.token(from: Self.request([:]), peer: gateway) }
    }
}

/// The browser transport end to end, on live instances sharing one Redis.
@Suite struct BrowserSessionTests {
    private static let form: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]

    private static func cookie(of response: TestResponse) -> String? {
        response.headers[.setCookie].flatMap { $0.split(separator: ";").first.map(String.init) }
    }

    @Test func aJSONBrowserLoginSetsAHardenedCookieAndNoToken() async throws {
        try await Instances.with(2, try await Instances.configuration()) { clients in
            let name = uniqueName()
            try await clients[0].register(name)
            let response = try await clients[0].call(.post, "/v1/browser/login", json: ["username": name, "password": "correct horse"])
            #expect(response.status == .noContent)
            #expect(response.body.readableBytes == 0)
            let setCookie = try #require(response.headers[.setCookie])
            let parts = setCookie.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            #expect(parts[0].hasPrefix("__Host-session="))
            #expect(parts.count == 6 && parts[1] == "Path=/" && Array(parts[3...]) == ["HttpOnly", "Secure", "SameSite=Lax"], "\(setCookie)")
            // Max-Age: the seconds to the session's absolute expiry (SESSION_ABSOLUTE_TIMEOUT, 86400 by default).
            let maxAge = Int(parts[2].dropFirst("Max-Age=".count)) ?? 0
            #expect(parts[2].hasPrefix("Max-Age=") && (86_395...86_400).contains(maxAge), "\(parts[2])")
            let pair = try #require(Self.cookie(of: response))
            // The cookie works on the other instance, for the fast path and the router alike.
            #expect(try await clients[1].call(.get, "/v1/verify", headers: [.cookie: pair]).status == .ok)
            #expect(try await clients[1].call(.get, "/v1/session", headers: [.cookie: pair]).status == .ok)
            // Revoked on one instance (a same-origin form logout), refused on the other.
            let logout = try await clients[1].call(
                .post, "/v1/browser/logout",
                headers: [.cookie: pair, .contentType: "application/x-www-form-urlencoded", .secFetchSite: "same-origin"]
            )
            #expect(logout.status == .seeOther && logout.headers[.location] == "/")
            #expect(logout.headers[.setCookie]?.contains("Max-Age=0") == true)
            #expect(try await clients[0].call(.get, "/v1/verify", headers: [.cookie: pair]).status == .unauthorized)
            // Logging out again, with no valid cookie, still clears it.
            #expect(try await clients[0].call(.post, "/v1/browser/logout").status == .noContent)
        }
    }

    @Test func formLoginsRedirectOnlyToSameOriginPaths() async throws {
        try await Instances.with(1, try await Instances.configuration()) { clients in
            let name = uniqueName()
            try await clients[0].register(name)
            func formLogin(_ password: String, returnTo: String) async throws -> TestResponse {
                var body = "username=\(name)&password=\(password.replacingOccurrences(of: " ", with: "+"))&return_to="
                body += returnTo.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
                return try await clients[0].executeRequest(
                    uri: "/v1/browser/login", method: .post, headers: Self.form, body: ByteBuffer(string: body)
                )
            }
            let ok = try await formLogin("correct horse", returnTo: "/account?tab=sessions")
            #expect(ok.status == .seeOther && ok.headers[.location] == "/account?tab=sessions")
            #expect(Self.cookie(of: ok) != nil)
            for evil in ["//evil.example", "https://evil.example", "/\\evil", "%2F%2Fevil.example"] {
                let response = try await formLogin("correct horse", returnTo: evil)
                #expect(response.headers[.location] == "/", "\(evil)")
            }
            let wrong = try await formLogin("wrong password", returnTo: "/account")
            #expect(wrong.status == .seeOther && wrong.headers[.location] == "/account?error=invalid_credentials")
            #expect(wrong.headers[.setCookie] == nil)
            let json = try await clients[0].call(.post, "/v1/browser/login", json: ["username": name, "password": "wrong password"])
            #expect(json.status == .unauthorized && json.errorCode == "invalid_credentials")
        }
    }

    @Test func crossSiteRequestsNeverReachTheCookie() async throws {
        try await Instances.with(1, try await Instances.configuration { $0.cookie = SessionCookie(allowedOrigins: ["https://app.example"]) }) {
            clients in
            let name = uniqueName()
            try await clients[0].register(name)
            let login = try await clients[0].call(.post, "/v1/browser/login", json: ["username": name, "password": "correct horse"])
            let pair = try #require(Self.cookie(of: login))
            // A browser login from another site is refused outright.
            let crossLogin = try await clients[0].call(
                .post, "/v1/browser/login", json: ["username": name, "password": "correct horse"], headers: [.secFetchSite: "cross-site"]
            )
            #expect(crossLogin.status == .forbidden && crossLogin.errorCode == "cross_origin_request")
            let refused: [HTTPFields] = [
                [.secFetchSite: "cross-site"], [.secFetchSite: "same-site"], [.origin: "https://evil.example"],
            ]
            for headers in refused {
                var headers = headers
                headers[.cookie] = pair
                let response = try await clients[0].call(.delete, "/v1/sessions/00000000000000000000000000000000", headers: headers)
                #expect(response.status == .forbidden && response.errorCode == "cross_origin_request", "\(headers)")
            }
            // Safe methods are not checked; an allowed origin passes first; bearer requests are never checked.
            #expect(try await clients[0].call(.get, "/v1/sessions", headers: [.cookie: pair, .secFetchSite: "cross-site"]).status == .ok)
            let allowed = try await clients[0].call(
                .delete, "/v1/sessions/00000000000000000000000000000000",
                headers: [.cookie: pair, .secFetchSite: "cross-site", .origin: "https://app.example"]
            )
            #expect(allowed.status == .notFound)
            let token = try await clients[0].login(name)
            #expect(try await clients[0].call(.post, "/v1/logout", token: token, headers: [.secFetchSite: "cross-site"]).status == .noContent)
            // Both present: Authorization wins (here an invalid one, so 401 despite a valid cookie).
            let both = try await clients[0].call(.get, "/v1/verify", token: SessionToken.random().text, headers: [.cookie: pair])
            #expect(both.status == .unauthorized)
            // Same-origin, none, and no fetch metadata at all pass.
            for headers: HTTPFields in [[.secFetchSite: "same-origin"], [.secFetchSite: "none"], [:]] {
                var headers = headers
                headers[.cookie] = pair
                #expect(try await clients[0].call(.delete, "/v1/sessions/00000000000000000000000000000000", headers: headers).status == .notFound)
            }
        }
    }
}
