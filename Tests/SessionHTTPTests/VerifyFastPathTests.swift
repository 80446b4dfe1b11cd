import Foundation
import HTTPTestSupport
import HTTPTypes
import HummingbirdTesting
import NIOCore
import NIOPosix
import Redis
import SessionCore
import SessionHTTP
import TestSupport
import Testing

/// `GET /v1/verify` is served in the channel pipeline (`EdgeHandler`) unless `VERIFY_FAST_PATH=off`; these tests
/// hold it to the router's answers and to HTTP/1.1's rules, against real Redis over real sockets.
@Suite struct VerifyFastPathTests {
    /// The same raw requests — every status, `Connection: close` in two spellings, pipelining, HEAD, bodies, the
    /// `/v1/verify/**` prefix — sent to an instance with the fast path and one without, sharing Redis and a key
    /// prefix: the bytes that come back are the same, but for the `Date` header.
    @Test func bothPathsAnswerTheSameBytes() async throws {
        let fast = try await Instances.configuration()
        let slow = {
            var slow = fast; slow.verifyFastPath = false; return slow
        }()
        try await Instances.with(1, fast) { fastClients in
            try await Instances.with(1, slow) { slowClients in
                let token = try await fastClients[0].newSessionToken()
                let unknown = UUID().uuidString.lowercased()
                func get(path: String = "/v1/verify", _ headers: String...) -> String {
                    "GET \(path) HTTP/1.1\r\nHost: t\r\n" + headers.map { $0 + "\r\n" }.joined() + "\r\n"
                }
                let auth = "Authorization: Bearer \(token)"
                let exchanges: [(String, String)] = [
                    ("valid", get(auth, "Connection: close")),
                    ("scheme in capitals, query", get(path: "/v1/verify?rd=%2Fhome", "Authorization: BEARER   \(token)", "Connection: close")),
                    ("missing", get("Connection: close")),
                    ("another scheme", get("Authorization: Basic dXNlcjpwYXNz", "Connection: close")),
                    ("malformed", get("Authorization: Bearer not-a-token", "Connection: close")),
                    ("unknown", get("Authorization: Bearer \(unknown)", "Connection: close")),
                    ("repeated", get(auth, auth, "Connection: close")),
                    ("Connection: Close", get(auth, "Connection: Close")),
                    (
                        "pipelined",
                        get(auth) + get("Authorization: Bearer \(unknown)") + get() + get(path: "/healthz") + get(auth, "Connection: close")
                    ),
                    ("HEAD", "HEAD /v1/verify HTTP/1.1\r\nHost: t\r\n\(auth)\r\nConnection: close\r\n\r\n"),
                    ("body", "GET /v1/verify HTTP/1.1\r\nHost: t\r\n\(auth)\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"),
                    ("prefix", "POST /v1/verify/app HTTP/1.1\r\nHost: t\r\n\(auth)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                    ("cookie", get("Cookie: a=1; __Host-session=\(token)", "Connection: close")),
                    ("malformed cookie", get("Cookie: __Host-session=nope", "Connection: close")),
                    ("cookie and bearer", get("Authorization: Bearer \(unknown)", "Cookie: __Host-session=\(token)", "Connection: close")),
                    (
                        "cookie, cross-site prefix POST",
                        "POST /v1/verify/app HTTP/1.1\r\nHost: t\r\nCookie: __Host-session=\(token)\r\nSec-Fetch-Site: cross-site\r\n"
                            + "Content-Length: 0\r\nConnection: close\r\n\r\n"
                    ),
                ]
                for (label, request) in exchanges {
                    let a = try await RawHTTP.exchange(port: try #require(fastClients[0].port), request)
                    let b = try await RawHTTP.exchange(port: try #require(slowClients[0].port), request)
                    #expect(Self.withoutDate(a) == Self.withoutDate(b), "\(label)")
                    #expect(a.hasPrefix("HTTP/1.1 "), "\(label): \(a)")
                    #expect(a.contains("\r\nDate: "), "\(label): Date")
                    #expect(a.contains("\r\nX-Request-Id: ") && b.contains("\r\nX-Request-Id: "), "\(label): X-Request-Id")
                }
            }
        }
        // Redis down: 503 from both.
        let down = try await Instances.configuration(redisURL: "redis://127.0.0.1:1/0")
        let downSlow = {
            var slow = down; slow.verifyFastPath = false; return slow
        }()
        try await Instances.with(1, down, waitForRedis: false) { fastClients in
            try await Instances.with(1, downSlow, waitForRedis: false) { slowClients in
                let request = "GET /v1/verify HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \(SessionToken.random().text)\r\nConnection: close\r\n\r\n"
                let a = try await RawHTTP.exchange(port: try #require(fastClients[0].port), request)
                let b = try await RawHTTP.exchange(port: try #require(slowClients[0].port), request)
                #expect(a.hasPrefix("HTTP/1.1 503"), "\(a)")
                #expect(Self.withoutDate(a) == Self.withoutDate(b))
            }
        }
    }

    /// The reply without what differs by design between two answers: the `Date` and the request's own `X-Request-Id`.
    static func withoutDate(_ reply: String) -> String {
        reply.components(separatedBy: "\r\n").filter { !$0.hasPrefix("Date: ") && !$0.hasPrefix("X-Request-Id: ") }
            .joined(separator: "\r\n")
    }

    /// Pipelined requests, some served here and some by the router, are answered in the order they were sent.
    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        try await Instances.with(1, try await Instances.configuration()) { clients in
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
        try await Instances.with(1, try await Instances.configuration()) { clients in
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

    /// The connection state handler sees the fast path's requests: a gateway's keep-alive connection that keeps
    /// verifying outlives the idle timeout, and the same connection, once quiet, is closed after it.
    @Test func verifyingConnectionIsNotIdleButAQuietOneIsClosed() async throws {
        // 2 s, not 1: a verification every 200 ms must never look idle, even on two loaded cores (at 1 s, a CI run beside
        // a release build saw a gap long enough for the server to close the connection mid-test).
        let configuration = try await Instances.configuration { $0.httpIdleTimeout = .seconds(2) }
        try await Instances.with(1, configuration) { clients in
            let token = try await clients[0].newSessionToken()
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: try #require(clients[0].port)) { channel in
                    channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
                }
            let watchdog = channel.channel.eventLoop.scheduleTask(in: .seconds(12)) { channel.channel.close(promise: nil) }
            defer { watchdog.cancel() }
            try await channel.executeThenClose { inbound, outbound in
                var replies = inbound.makeAsyncIterator()
                let clock = ContinuousClock()
                let start = clock.now
                var answered = 0
                // 4.5 s of verifications, one every 200 ms: 2.25 idle timeouts, never idle for one.
                while clock.now - start < .milliseconds(4500) {
                    try await outbound.write(ByteBuffer(string: "GET /v1/verify HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \(token)\r\n\r\n"))
                    let reply = try #require(try await replies.next())
                    #expect(String(buffer: reply).hasPrefix("HTTP/1.1 200"))
                    answered += 1
                    try await Task.sleep(for: .milliseconds(200))
                }
                #expect(answered >= 8)
                // Now quiet: the server closes the connection after the idle timeout (the watchdog fails it at 10 s).
                #expect(try await replies.next() == nil)
            }
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
