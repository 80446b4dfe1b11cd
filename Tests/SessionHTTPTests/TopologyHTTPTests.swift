import Foundation
import HTTPTestSupport
import HTTPTypes
import HummingbirdTesting
import Redis
import ServiceSettings
import SessionCore
import SessionHTTP
import TestSupport
import Testing

/// The service's promise on the shapes users scale onto: instances share sessions through a Sentinel-watched master
/// and through a Redis Cluster exactly as through one node, and `/readyz` says 503 while no master is known.
@Suite struct TopologyHTTPTests {
    private static func configuration(_ redis: RedisConfiguration) async throws -> ServiceConfiguration {
        try await Instances.configuration { configuration in
            var redis = redis
            redis.connectionCount = 2
            configuration.redis = redis
        }
    }

    @Test(arguments: ["sentinel", "cluster"])
    func instancesShareSessionsOnTheShape(shape: String) async throws {
        let redis = shape == "sentinel" ? try await TestRedis.sentinelConfiguration() : try await TestRedis.clusterConfiguration()
        try await Instances.with(2, try await Self.configuration(redis)) { clients in
            let name = uniqueName()
            try await clients[0].register(name)
            let token = try await clients[0].login(name)
            #expect(try await clients[1].call(.get, "/v1/verify", token: token).status == .ok)
            #expect(try await clients[1].call(.get, "/v1/sessions", token: token).status == .ok)
            #expect(try await clients[1].call(.post, "/v1/logout", token: token).status == .noContent)
            #expect(try await clients[0].call(.get, "/v1/verify", token: token).status == .unauthorized)
            let again = try await clients[1].login(name)
            #expect(try await clients[0].call(.delete, "/v1/sessions", token: again).status == .noContent)
            #expect(try await clients[1].call(.get, "/v1/verify", token: again).status == .unauthorized)
        }
    }

    @Test func readinessIs503WhileNoMasterIsKnown() async throws {
        var redis = try await TestRedis.sentinelConfiguration()
        guard case .sentinel(_, let sentinels) = redis.topology else { throw RedisError(.configuration) }
        redis.topology = .sentinel(masterName: "no-such-master", sentinels: sentinels)
        try await Instances.with(1, try await Self.configuration(redis), waitForRedis: false) { clients in
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await clients[0].call(.get, "/healthz").status == .ok)
            #expect(try await clients[0].call(.get, "/readyz").status == .serviceUnavailable)
            #expect(try await clients[0].call(.get, "/v1/verify", token: SessionToken.random().text).status == .serviceUnavailable)
        }
    }
}
