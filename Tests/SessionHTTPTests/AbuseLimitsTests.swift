import Foundation
import HTTPTestSupport
import HTTPTypes
import HummingbirdTesting
import NIOCore
import ServiceSettings
import SessionCore
import TestSupport
import Testing

@testable import SessionHTTP

/// What one client can cost everyone else: registrations, hashes, guessed client secrets — and the configurations that
/// would make those limits moot.
@Suite struct AbuseLimitsTests {
    static func basic(_ id: String, _ secret: String) -> String { "Basic " + Data("\(id):\(secret)".utf8).base64EncodedString() }

    @Test func registrationIsThrottledPerAddress() async throws {
        let configuration = try await Instances.configuration(environment: ["REGISTRATION_MAX_PER_ADDRESS": "3"])
        try await Instances.with(1, configuration) { clients in
            for _ in 0..<3 { try await clients[0].register(uniqueName()) }
            let refused = try await clients[0].call(.post, "/v1/users", json: ["username": uniqueName(), "password": "correct horse"])
            #expect(refused.status == .tooManyRequests && refused.errorCode == "too_many_attempts")
            #expect(Int(refused.headers[.retryAfter] ?? "") ?? 0 > 0)
        }
    }

    @Test func failedClientAuthenticationsAreThrottledPerClientAndAddress() async throws {
        let configuration = try await Instances.configuration(environment: ["LOGIN_MAX_FAILURES_PER_USER": "5"]) {
            $0.introspectionClients = IntrospectionClients(parsing: "gateway:a-secret-of-24-characters")
        }
        try await Instances.with(1, configuration) { clients in
            let token = try await clients[0].newSessionToken()
            func introspect(_ authorization: String) async throws -> TestResponse {
                let (headers, body) = AccessTokenRoutesTests.form("token=\(token)", authorization: authorization)
                return try await clients[0].executeRequest(uri: "/v1/introspect", method: .post, headers: headers, body: body)
            }
            #expect(try await introspect(Self.basic("gateway", "a-secret-of-24-characters")).status == .ok)
            for guess in 0..<5 {
                #expect(try await introspect(Self.basic("gateway", "guess-\(guess)")).status == .unauthorized)
            }
            // At the limit: refused before the secret is looked at — the right one too, for this window.
            let throttled = try await introspect(Self.basic("gateway", "guess-6"))
            #expect(throttled.status == .tooManyRequests && Int(throttled.headers[.retryAfter] ?? "") ?? 0 > 0)
            #expect(try await introspect(Self.basic("gateway", "a-secret-of-24-characters")).status == .tooManyRequests)
        }
    }

    @Test func weakSecretsAndMisleadingSettingsRefuseToStart() {
        let refused: [([String: String], String)] = [
            (["INTROSPECTION_CLIENTS": "gateway:x"], "shorter than 16"),
            (["INTROSPECTION_CLIENTS": "gateway:fifteen-chars!!"], "gateway"),
            (["JWT_HS256_SECRET": String(repeating: " ", count: 40)], "whitespace"),
            (["SESSION_IDLE_TIMEOUT": "2", "SESSION_TOUCH_INTERVAL": "5"], "touch-interval"),
        ]
        for (environment, says) in refused {
            let error = #expect(throws: ConfigurationError.self) { try ServiceConfiguration(environment: environment, arguments: []) }
            #expect(error?.description.contains(says) == true, "\(error?.description ?? "")")
            #expect(error?.description.contains("fifteen-chars") != true)
        }
    }

    /// A base64url secret begins with `-` one time in 64: an environment value is a value, never an option.
    @Test func anEnvironmentValueBeginningWithADashIsAValue() throws {
        let secret = "-" + String(repeating: "k", count: 40)
        let configuration = try ServiceConfiguration(environment: ["JWT_HS256_SECRET": secret, "KEY_PREFIX": "-x:"], arguments: [])
        #expect(configuration.accessTokens != nil)
        #expect(configuration.sessions.keyPrefix == "-x:")
    }
}
