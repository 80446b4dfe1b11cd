import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import NIOPosix
import Redis
import SessionCore
import SessionHTTP
import Testing
import TestSupport

/// `GET /v1/verify` is served in the channel pipeline (`VerifyFastPath`) unless `VERIFY_FAST_PATH=off`; these tests
/// hold it to the router's answers and to HTTP/1.1's rules, against real Redis over real sockets.
@Suite struct VerifyFastPathTests {
    /// Every kind of answer, from an instance with the fast path and one without, sharing Redis and a key prefix.
    @Test func bothPathsAnswerAlike() async throws {
        let fast = try Instances.configuration()
        let slow = { var slow = fast; slow.verifyFastPath = false; return slow }()
        try await Instances.with(1, fast) { fastClients in
            try await Instances.with(1, slow) { slowClients in
                let fastClient = fastClients[0], slowClient = slowClients[0]
                let token = try await fastClient.newSessionToken()
                let cases: [(String, HTTPFields)] = [
                    ("valid", [.authorization: "Bearer \(token)"]),
                    ("valid, scheme in capitals, query", [.authorization: "BEARER   \(token)"]),
                    ("missing", [:]),
                    ("another scheme", [.authorization: "Basic dXNlcjpwYXNz"]),
                    ("malformed", [.authorization: "Bearer not-a-token"]),
                    ("unknown", [.authorization: "Bearer \(UUID().uuidString.lowercased())"]),
                    ("repeated", HTTPFields([.init(name: .authorization, value: "Bearer \(token)"), .init(name: .authorization, value: "Bearer \(token)")])),
                ]
                for (label, headers) in cases {
                    let uri = label.contains("query") ? "/v1/verify?rd=%2Fhome" : "/v1/verify"
                    let a = try await fastClient.executeRequest(uri: uri, method: .get, headers: headers, body: nil)
                    let b = try await slowClient.executeRequest(uri: uri, method: .get, headers: headers, body: nil)
                    #expect(a.status == b.status, "\(label)")
                    #expect(String(buffer: a.body) == String(buffer: b.body), "\(label)")
                    var fastHeaders = a.headers, slowHeaders = b.headers
                    fastHeaders[.date] = nil
                    slowHeaders[.date] = nil
                    #expect(fastHeaders == slowHeaders, "\(label)")
                    #expect(a.headers[.date] != nil, "\(label): Date")
                }
            }
        }
    }

    /// Pipelined requests, some served here and some by the router, are answered in the order they were sent.
    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        try await Instances.with(1, try Instances.configuration()) { clients in
            let client = clients[0]
            let token = try await client.newSessionToken()
            let requests = [
                "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
                "GET /v1/verify HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \(token)\r\n\r\n",
                "GET /v1/verify HTTP/1.1\r\nHost: t\r\n\r\n",
                "POST /v1/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
                "GET /v1/verify HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \(token)\r\n\r\n",
                "GET /v1/verify HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer nope\r\n\r\n",
                "GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            ]
            let reply = try await RawHTTP.exchange(port: try #require(client.port), requests.joined())
            let statuses = reply.components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0.prefix(3) }
            #expect(statuses == ["200", "200", "401", "400", "200", "401", "200"], "\(reply)")
            #expect(reply.hasSuffix(#"{"status":"ready"}"#))
            #expect(reply.components(separatedBy: #"{"user_id":"#).count == 3)
        }
    }

    /// `Connection: close` is honoured: the answer says so and the server closes the connection after it.
    @Test func connectionCloseClosesAfterTheAnswer() async throws {
        try await Instances.with(1, try Instances.configuration()) { clients in
            let client = clients[0]
            let token = try await client.newSessionToken()
            let request = "GET /v1/verify HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n\r\n"
            // `exchange` returns only once the server has closed.
            let reply = try await RawHTTP.exchange(port: try #require(client.port), request)
            #expect(reply.hasPrefix("HTTP/1.1 200 OK"))
            #expect(reply.lowercased().contains("connection: close"))
            #expect(reply.hasSuffix("}"))
            // Bytes after a `Connection: close` request are a protocol error (llhttp); the answer before still comes first.
            let trailing = try await RawHTTP.exchange(port: try #require(client.port), request + "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(trailing.hasPrefix("HTTP/1.1 200 OK"), "\(trailing)")
        }
    }

    /// Redis unreachable: the fast path answers 503 `store_unavailable` at once, like the router.
    @Test func redisDownIs503() async throws {
        let configuration = try Instances.configuration(redisURL: "redis://127.0.0.1:1/0")
        try await Instances.with(1, configuration, waitForRedis: false) { clients in
            let response = try await clients[0].call(.get, "/v1/verify", token: UUID().uuidString.lowercased())
            #expect(response.status == .serviceUnavailable)
            #expect(response.errorCode == "store_unavailable")
        }
    }
}

/// A raw HTTP/1.1 exchange: writes the bytes as they are (pipelined requests in one write) and reads until the
/// server closes the connection.
enum RawHTTP {
    static func exchange(port: Int, _ text: String) async throws -> String {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        // A server that never closes fails the test rather than hanging it.
        let watchdog = channel.channel.eventLoop.scheduleTask(in: .seconds(10)) { channel.channel.close(promise: nil) }
        defer { watchdog.cancel() }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: text))
            var reply = ""
            for try await chunk in inbound { reply += String(buffer: chunk) }
            return reply
        }
    }
}
