public import Foundation
public import HTTPTypes
import Hummingbird
public import HummingbirdTesting
import Logging
import NIOCore
import Redis
import ServiceSettings
import SessionCore
public import SessionHTTP
import TestSupport
import Testing

/// Instances of the real service (real HTTP on loopback, real Redis), sharing one Redis.
public enum Instances {
    /// A configuration for tests: a unique key prefix (so tests do not see each other), cheap bcrypt, port 0.
    /// The service's Redis URL: the least-privilege ACL user that scripts/test creates.
    public static func serviceRedisURL() async throws -> String { try await TestServers.value("TEST_SERVICE_REDIS_URL", from: .node) }

    public static func configuration(
        redisURL: String? = nil, environment: [String: String] = [:], _ tweak: (inout ServiceConfiguration) -> Void = { _ in }
    ) async throws -> ServiceConfiguration {
        var url = redisURL
        if url == nil { url = try await serviceRedisURL() }
        var configuration = try ServiceConfiguration(
            environment: [
                "REDIS_URL": url ?? "", "PORT": "0", "ARGON2_MEMORY_KIB": "1024", "ARGON2_ITERATIONS": "1",
                "KEY_PREFIX": "ss:it\(UUID().uuidString.prefix(8)):",
                // Tests register many users from 127.0.0.1; the throttle's own tests set it.
                "REGISTRATION_MAX_PER_ADDRESS": "1000000",
            ]
            .merging(environment) { $1 },
            arguments: []
        )
        tweak(&configuration)
        return configuration
    }

    /// Runs `body` with `count` live instances of one configuration.
    public static func with(
        _ count: Int, _ configuration: ServiceConfiguration, waitForRedis: Bool = true,
        _ body: @escaping @Sendable ([any TestClientProtocol]) async throws -> Void
    ) async throws {
        try await with(Array(repeating: configuration, count: count), waitForRedis: waitForRedis, body)
    }

    /// Runs `body` with one live instance of each configuration (instances sharing a store, one of them with a listener
    /// of its own, say).
    public static func with(
        _ configurations: [ServiceConfiguration], waitForRedis: Bool = true,
        _ body: @escaping @Sendable ([any TestClientProtocol]) async throws -> Void
    ) async throws {
        try await start(configurations[...], clients: [], waitForRedis: waitForRedis, body)
    }

    private static func start(
        _ remaining: ArraySlice<ServiceConfiguration>, clients: [any TestClientProtocol], waitForRedis: Bool,
        _ body: @escaping @Sendable ([any TestClientProtocol]) async throws -> Void
    ) async throws {
        guard let configuration = remaining.first else {
            if waitForRedis {
                for client in clients { try await waitUntilReady(client) }
            }
            try await body(clients)
            return
        }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let app = SessionService.makeApplication(configuration: configuration, logger: logger)
        try await app.test(.live) { client in
            try await start(remaining.dropFirst(), clients: clients + [client], waitForRedis: waitForRedis, body)
        }
    }

    public static func waitUntilReady(_ client: any TestClientProtocol) async throws {
        for _ in 0..<2000 {
            if try await client.executeRequest(uri: "/readyz", method: .get, headers: [:], body: nil).status == .ok { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("instance never became ready")
    }
}

/// Small conveniences over the test client, speaking the API's JSON.
extension TestClientProtocol {
    public func call(_ method: HTTPRequest.Method, _ uri: String, token: String? = nil, json: [String: Any]? = nil, headers: HTTPFields = [:])
        async throws -> TestResponse
    {
        var headers = headers
        if let token { headers[.authorization] = "Bearer \(token)" }
        var body: ByteBuffer?
        if let json {
            headers[.contentType] = "application/json"
            body = ByteBuffer(bytes: Array(try JSONSerialization.data(withJSONObject: json)))
        }
        return try await executeRequest(uri: uri, method: method, headers: headers, body: body)
    }

    /// `GET /v1/verify` once a revocation made through another instance has reached this one. With the near cache on,
    /// another instance learns of it from Redis' invalidation message, within milliseconds (`NearCacheCoherenceTests`
    /// bounds that window; `scripts/bench-revocation` measures it): polls for up to a second and returns the first
    /// answer that is not 200, or the last one.
    public func verifyAfterRevocation(token: String) async throws -> TestResponse {
        var response = try await call(.get, "/v1/verify", token: token)
        for _ in 0..<200 where response.status == .ok {
            try await Task.sleep(for: .milliseconds(5))
            response = try await call(.get, "/v1/verify", token: token)
        }
        return response
    }

    @discardableResult
    public func register(_ username: String, _ password: String = "correct horse") async throws -> String {
        let response = try await call(.post, "/v1/users", json: ["username": username, "password": password])
        #expect(response.status == .created, "register \(username): \(response.status)")
        return response.json["user_id"] as? String ?? ""
    }

    /// Registers a new user and logs in: the token of a fresh session.
    public func newSessionToken() async throws -> String {
        let name = uniqueName()
        try await register(name)
        return try await login(name)
    }

    public func login(_ username: String, _ password: String = "correct horse", headers: HTTPFields = [:]) async throws -> String {
        let response = try await call(.post, "/v1/login", json: ["username": username, "password": password], headers: headers)
        #expect(response.status == .ok, "login \(username): \(response.status) \(String(buffer: response.body))")
        return response.json["token"] as? String ?? ""
    }
}

extension TestResponse {
    public var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
    }
    public var errorCode: String? { json["error"] as? String }
}

public func uniqueName(_ label: String = "user") -> String { "\(label)-\(UUID().uuidString.prefix(12).lowercased())" }
