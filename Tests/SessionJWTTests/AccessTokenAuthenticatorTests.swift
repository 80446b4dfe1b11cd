import AccessTokens
import Foundation
import HTTPTestSupport
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Redis
import ServiceSettings
import SessionCore
import SessionHTTP
import Synchronization
import TestSupport
import Testing

@testable import SessionJWT

/// A downstream app's context.
struct DownstreamContext: AccessTokenRequestContext {
    var coreContext: CoreRequestContextStorage
    var accessToken: AccessTokenClaims?

    init(source: ApplicationRequestContextSource) { self.coreContext = .init(source: source) }
}

/// The middleware for downstream services, against live session-service instances and real Redis.
@Suite struct AccessTokenAuthenticatorTests {
    /// A downstream "orders" app protected by the middleware.
    static func downstream(_ keys: JWKSKeySource, _ mode: AccessTokenAuthenticator<DownstreamContext>.Mode = .offline) -> some ApplicationProtocol {
        let router = Router(context: DownstreamContext.self)
        router.group("/orders").add(middleware: AccessTokenAuthenticator<DownstreamContext>(keys: keys, mode: mode)).get { _, context in
            context.accessToken!.subject.text
        }
        return Application(router: router)
    }

    static func keySet(_ algorithm: AccessTokenAlgorithm = .eddsa) throws -> (AccessTokenKeySet, String) {
        let text = AccessTokenKeySet.generate(algorithm)
        return (try AccessTokenKeySet.privateKeys(jwks: Array(text.utf8)), text)
    }

    static func configuration(_ keys: AccessTokenKeySet, prefix: String? = nil) async throws -> ServiceConfiguration {
        try await Instances.configuration(environment: prefix.map { ["KEY_PREFIX": $0] } ?? [:]) {
            $0.accessTokens = AccessTokenIssuer(keys: keys, issuer: "session-service", audience: "api", lifetime: 300)
        }
    }

    static func jwksURL(_ client: any TestClientProtocol) -> String { "http://127.0.0.1:\(client.port!)/.well-known/jwks.json" }

    static func accessToken(_ client: any TestClientProtocol, _ token: String) async throws -> String {
        let response = try await client.call(.post, "/v1/token", token: token)
        #expect(response.status == .ok)
        return response.json["access_token"] as? String ?? ""
    }

    static func orders(_ client: any TestClientProtocol, _ jwt: String?) async throws -> TestResponse {
        try await client.executeRequest(uri: "/orders", method: .get, headers: jwt.map { [.authorization: "Bearer \($0)"] } ?? [:], body: nil)
    }

    @Test func offlineAcceptsUntilExpiryAndTheRevocationCheckRefusesAtOnceOnEveryInstance() async throws {
        let (keys, _) = try Self.keySet()
        let configuration = try await Self.configuration(keys)
        try await Instances.with(2, configuration) { clients in
            let name = uniqueName()
            let userID = try await clients[0].register(name)
            let token = try await clients[0].login(name)
            let jwt = try await Self.accessToken(clients[0], token)
            try await TestRedis.withClient(try await TestRedis.configuration()) { redis in  // the service's ACL user has no EXISTS
                let check = SessionRevocationCheck(redis: redis, keyPrefix: configuration.sessions.keyPrefix)
                let jwks = JWKSKeySource(url: Self.jwksURL(clients[1]))
                try await Self.downstream(jwks).test(.router) { offline in
                    try await Self.downstream(jwks, .checkRevocation(check)).test(.router) { checked in
                        for app in [offline, checked] {
                            let response = try await Self.orders(app, jwt)
                            #expect(response.status == .ok && String(buffer: response.body) == userID)
                        }
                        // The session ends on the other instance: the revocation check refuses at once; offline does
                        // not know until `exp`.
                        #expect(try await clients[1].call(.post, "/v1/logout", token: token).status == .noContent)
                        let refused = try await Self.orders(checked, jwt)
                        #expect(refused.status == .unauthorized && refused.headers[.wwwAuthenticate] == #"Bearer error="invalid_token""#)
                        #expect(try await Self.orders(offline, jwt).status == .ok)
                        // Without a token, with junk, with the opaque token itself.
                        let missing = try await Self.orders(offline, nil)
                        #expect(missing.status == .unauthorized && missing.headers[.wwwAuthenticate] == "Bearer")
                        for junk in ["x", token, jwt + "x", "Basic abc"] {
                            #expect(try await Self.orders(offline, junk).status == .unauthorized)
                        }
                    }
                }
            }
        }
    }

    /// A JWKS endpoint whose keys a test changes, counting its fetches.
    final class KeyServer: Sendable {
        let published = Mutex<String>(#"{"keys":[]}"#)
        let fetches = Atomic<Int>(0)

        func run(_ body: @escaping @Sendable (String) async throws -> Void) async throws {
            let router = Router()
            router.get("/jwks") { _, _ in
                self.fetches.add(1, ordering: .relaxed)
                return Response(
                    status: .ok, headers: [.contentType: "application/json", .cacheControl: "max-age=3600"],
                    body: .init(byteBuffer: ByteBuffer(string: self.published.withLock { $0 }))
                )
            }
            try await Application(router: router).test(.live) { client in try await body("http://127.0.0.1:\(client.port!)/jwks") }
        }
    }

    @Test func anUnknownKidRefetchesAtMostOncePerInterval() async throws {
        let (oldKeys, _) = try Self.keySet()
        let (newKeys, _) = try Self.keySet(.es256)
        let session = Session(
            id: SessionToken.random().sessionID, userID: .random(), createdAt: Date(), expiresAt: Date() + 600, absoluteExpiresAt: Date() + 600,
            lastSeenAt: Date())
        let issue = { (keys: AccessTokenKeySet) in
            try await AccessTokenIssuer(keys: keys, issuer: "session-service", audience: "api", lifetime: 300).issue(for: session, username: nil)
                .token
        }
        let oldToken = try await issue(oldKeys)
        let newToken = try await issue(newKeys)
        let server = KeyServer()
        server.published.withLock { $0 = oldKeys.publicJWKS }
        try await server.run { url in
            // The refresh interval passes on a moved clock, not in real time.
            let clock = MovableClock()
            let jwks = JWKSKeySource(url: url, minimumRefreshInterval: .seconds(3), now: clock.now)
            try await Self.downstream(jwks).test(.router) { app in
                #expect(try await Self.orders(app, oldToken).status == .ok)
                #expect(server.fetches.load(ordering: .relaxed) == 1)
                // Within the interval of that first fetch, an unknown kid fetches nothing.
                #expect(try await Self.orders(app, newToken).status == .unauthorized)
                #expect(server.fetches.load(ordering: .relaxed) == 1)
                clock.advance(by: .milliseconds(3100))
                // The new key is not published yet: one refetch, then none however many tokens name it.
                #expect(try await Self.orders(app, newToken).status == .unauthorized)
                #expect(server.fetches.load(ordering: .relaxed) == 2)
                server.published.withLock { $0 = #"{"keys":[\#(Self.members(oldKeys)),\#(Self.members(newKeys))]}"# }
                try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                    for _ in 0..<50 { group.addTask { try await Self.orders(app, newToken).status } }
                    for try await status in group { #expect(status == .unauthorized) }
                }
                #expect(server.fetches.load(ordering: .relaxed) == 2)
                // Once the interval has passed, the next unknown kid refetches, and the new key verifies.
                clock.advance(by: .milliseconds(3100))
                #expect(try await Self.orders(app, newToken).status == .ok)
                #expect(try await Self.orders(app, oldToken).status == .ok)
                #expect(server.fetches.load(ordering: .relaxed) == 3)
            }
        }
    }

    /// The key objects of a key set's JWKS, without the wrapping `{"keys":[…]}`.
    static func members(_ keys: AccessTokenKeySet) -> String {
        String(keys.publicJWKS.dropFirst(#"{"keys":["#.count).dropLast(2))
    }

    /// Rotation as the README describes it, with instances that read the key file at start (a rolling restart):
    /// add the new key second; make it first; remove the old one. Tokens from every stage verify downstream throughout.
    @Test func keyRotationWithInstancesRestartedOnAnUpdatedFile() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rotation-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("keys.json").path
        let old = try Self.jwk(AccessTokenKeySet.generate(.eddsa))
        let new = try Self.jwk(AccessTokenKeySet.generate(.eddsa))
        @Sendable func write(_ keys: [String]) throws {
            try Data(#"{"keys":[\#(keys.joined(separator: ","))]}"#.utf8).write(to: URL(fileURLWithPath: path))
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        }
        let prefix = "ss:rot\(UUID().uuidString.prefix(6)):"
        @Sendable func instance(_ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
            // What a restart does: read the file as it is now.
            try await Instances.with(1, try await Instances.configuration(environment: ["JWT_KEYS_FILE": path, "KEY_PREFIX": prefix])) {
                try await body($0[0])
            }
        }
        try write([old])
        try await instance { before in
            let token = try await before.newSessionToken()
            let fromOld = try await Self.accessToken(before, token)
            try write([old, new])  // stage 1: the new key is published, the old one still signs
            try await instance { added in
                let jwks = JWKSKeySource(url: Self.jwksURL(added))
                let published = try await added.call(.get, "/.well-known/jwks.json").json["keys"] as? [Any]
                #expect(published?.count == 2)
                try write([new, old])  // stage 2: the new key signs
                try await instance { promoted in
                    let fromNew = try await Self.accessToken(promoted, token)
                    let (newKid, oldKid) = (try AccessTokenVerifier.header(of: fromNew).kid, try AccessTokenVerifier.header(of: fromOld).kid)
                    #expect(newKid != oldKid)
                    try await Self.downstream(jwks).test(.router) { app in
                        // Both instances' tokens verify, whichever instance the downstream fetched its keys from.
                        #expect(try await Self.orders(app, fromOld).status == .ok)
                        #expect(try await Self.orders(app, fromNew).status == .ok)
                        let fromAdded = try await Self.accessToken(added, token)
                        #expect(try await Self.orders(app, fromAdded).status == .ok)
                    }
                    try write([new])  // stage 3, after the longest token lifetime: the old key is gone
                    try await instance { after in
                        try await Self.downstream(JWKSKeySource(url: Self.jwksURL(after))).test(.router) { app in
                            let (new, old) = (try await Self.orders(app, fromNew).status, try await Self.orders(app, fromOld).status)
                            #expect(new == .ok && old == .unauthorized)
                        }
                    }
                }
            }
        }
    }

    static func jwk(_ set: String) throws -> String {
        let object = try #require((try JSONSerialization.jsonObject(with: Data(set.utf8)) as? [String: Any])?["keys"] as? [Any])
        return String(decoding: try JSONSerialization.data(withJSONObject: object[0]), as: UTF8.self)
    }

    @Test func unreachableKeysAndAnUnreachableRedisAre503NotAcceptance() async throws {
        let (keys, _) = try Self.keySet()
        let session = Session(
            id: SessionToken.random().sessionID, userID: .random(), createdAt: Date(), expiresAt: Date() + 600, absoluteExpiresAt: Date() + 600,
            lastSeenAt: Date())
        let token = try await AccessTokenIssuer(keys: keys, issuer: "session-service", audience: "api", lifetime: 300).issue(
            for: session, username: nil
        )
        .token
        let closed = try RedisServerProcess.freePort()
        try await Self.downstream(JWKSKeySource(url: "http://127.0.0.1:\(closed)/jwks")).test(.router) { app in
            let response = try await Self.orders(app, token)
            #expect(response.status == .serviceUnavailable)
        }
        let published = JWKSKeySource(keys: try AccessTokenKeySet.publicKeys(jwks: Array(keys.publicJWKS.utf8)))
        var configuration = try RedisConfiguration(url: "redis://127.0.0.1:\(closed)/0")
        configuration.commandTimeout = .milliseconds(200)
        configuration.connectTimeout = .milliseconds(200)
        try await TestRedis.withClient(configuration, waitForConnection: false) { redis in
            try await Self.downstream(published, .checkRevocation(SessionRevocationCheck(redis: redis))).test(.router) { app in
                let status = try await Self.orders(app, token).status
                #expect(status == .serviceUnavailable)
            }
        }
        // With fixed keys (an HS256 secret, say) the same token shape verifies offline without any fetch.
        try await Self.downstream(published).test(.router) { app in
            let status = try await Self.orders(app, token).status
            #expect(status == .ok)
        }
    }
}

/// `ContinuousClock.now` plus however far a test moved it.
final class MovableClock: Sendable {
    private let offset = Mutex<Duration>(.zero)

    @Sendable func now() -> ContinuousClock.Instant { .now + offset.withLock { $0 } }

    func advance(by duration: Duration) { offset.withLock { $0 += duration } }
}
