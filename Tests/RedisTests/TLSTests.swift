import Foundation
import NIOConcurrencyHelpers
import NIOCore
import TestSupport
import Testing

@testable import Redis

/// `rediss://` against a redis-server that speaks only TLS and requires a client certificate, with the throwaway CA
/// scripts/test makes (scripts/lib/tls.sh): the server's chain and host name are always verified.
@Suite struct TLSTests {
    private static func port() async throws -> Int { try await Int(TestServers.value("TEST_TLS_PORT", from: .tls)) ?? 0 }
    private static func file(_ name: String) async throws -> String {
        try await TestServers.value("TEST_TLS_DIR", from: .tls) + "/" + name
    }

    private static func configuration(host: String = "localhost", ca: String = "ca.pem", clientCertificate: Bool = true) async throws
        -> RedisConfiguration
    {
        var configuration = try await RedisConfiguration(url: "rediss://\(host):\(port())/0")
        let caFile = try await file(ca)
        let certificateFile = try await file("client.pem")
        let keyFile = try await file("client.key")
        configuration.tls = .init(
            caFile: caFile, certificateFile: clientCertificate ? certificateFile : nil, keyFile: clientCertificate ? keyFile : nil
        )
        return configuration
    }

    /// The first failure of a client that cannot connect, as the service would log it.
    private static func connectionFailure(_ configuration: RedisConfiguration) async throws -> RedisError? {
        let failure = NIOLockedValueBox<RedisError?>(nil)
        let client = RedisClient(configuration: configuration) { event in
            if case .connectFailed(_, _, let error) = event, failure.withLockedValue({ $0 == nil }) { failure.withLockedValue { $0 = error } }
        }
        let connected = try await client.withRunning(waitingUpTo: nil) {
            for _ in 0..<200 where failure.withLockedValue({ $0 == nil }) && !client.isConnected { try await Task.sleep(for: .milliseconds(10)) }
            return client.isConnected
        }
        #expect(!connected)
        return failure.withLockedValue { $0 }
    }

    @Test func commandsRunOverVerifiedTLS() async throws {
        try await TestRedis.withClient(try await Self.configuration()) { (redis: RedisClient) async throws in
            let key = TestRedis.uniqueKey("tls")
            try await redis.set(key, to: "over tls")
            #expect(try await redis.get(key).map { String(buffer: $0) } == "over tls")
            let script = RedisScript("return redis.call('GET', KEYS[1])")
            #expect(try await redis.evaluate(script, keys: [key]).string == "over tls")
        }
    }

    @Test func aServerSignedByAnotherCAIsRefusedAndSaysWhy() async throws {
        let error = try #require(try await Self.connectionFailure(try await Self.configuration(ca: "other-ca.pem")))
        #expect(error.message.contains("CERTIFICATE_VERIFY_FAILED"), "\(error.message)")
    }

    @Test func aCertificateForAnotherHostNameIsRefusedAndSaysWhy() async throws {
        // The certificate names `localhost` only; 127.0.0.1 is not in it.
        let error = try #require(try await Self.connectionFailure(try await Self.configuration(host: "127.0.0.1")))
        #expect(error.message.contains("failedToValidateHostname"), "\(error.message)")
    }

    @Test func aServerThatRequiresAClientCertificateRefusesNone() async throws {
        #expect(try await Self.connectionFailure(try await Self.configuration(clientCertificate: false)) != nil)
    }

    @Test func unreadableTLSFilesAreAConfigurationError() async throws {
        let certificate = try await Self.file("client.pem")
        #expect(redisErrorCode { try RedisConfiguration.makeTLSContext(.init(caFile: "/nonexistent/ca.pem")) } == .configuration)
        #expect(redisErrorCode { try RedisConfiguration.makeTLSContext(.init(certificateFile: certificate)) } == .configuration)
    }
}
