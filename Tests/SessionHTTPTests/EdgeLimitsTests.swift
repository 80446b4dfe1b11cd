import Foundation
import HTTPTestSupport
import HTTPTypes
import HummingbirdTesting
import NIOCore
import NIOPosix
import SessionCore
import SessionHTTP
import Testing

/// The edge's limits and HTTP rules, over real sockets against a live instance: what one client may hold or send.
@Suite struct EdgeLimitsTests {
    /// A head that never completes, a body that stalls: the connection is closed after the configured timeout.
    @Test func slowHeadersAndStalledBodiesAreCutOff() async throws {
        let configuration = try await Instances.configuration {
            $0.httpHeaderTimeout = .seconds(1)
            $0.httpBodyTimeout = .seconds(1)
        }
        try await Instances.with(1, configuration) { clients in
            let port = try #require(clients[0].port)
            let clock = ContinuousClock()
            for partial in [
                "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ",
                "POST /v1/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"user",
            ] {
                let start = clock.now
                let reply = try await RawHTTP.exchange(port: port, partial)
                let waited = clock.now - start
                #expect(reply.isEmpty, "\(partial): \(reply)")
                // Closed by the server (the 10 s watchdog would be the client), not before the timeout: the upper bound is
                // loose because a loaded two-core machine delays the timer (5.05 s seen beside 176 other tests).
                #expect(waited >= .milliseconds(900) && waited < .seconds(9), "\(partial): closed after \(waited)")
            }
            // A complete request on a fresh connection is untouched by either timeout.
            #expect(try await RawHTTP.exchange(port: port, "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").hasPrefix("HTTP/1.1 200"))
        }
    }

    /// A declared Content-Length over MAX_BODY_SIZE is answered 413 before any of the body is sent.
    @Test func oversizedBodyIsRefusedBeforeItArrives() async throws {
        try await Instances.with(1, try await Instances.configuration { $0.maxBodySize = 1024 }) { clients in
            let reply = try await RawHTTP.exchange(
                port: try #require(clients[0].port),
                "POST /v1/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n"
            )
            #expect(reply.hasPrefix("HTTP/1.1 413"), "\(reply)")
            #expect(reply.contains("Connection: close"))
            #expect(reply.hasSuffix(#""message":"the request body is too large"}"#))
        }
    }

    /// Past MAX_CONNECTIONS a new connection gets a complete 503 and is closed; the connections already open are
    /// served, and a slot freed is a slot a new client gets.
    @Test func connectionsBeyondTheCapGet503AndTheRestAreServed() async throws {
        try await Instances.with(1, try await Instances.configuration { $0.maxConnections = 3 }) { clients in
            let port = try #require(clients[0].port)
            // Hold connections (each proven admitted by an answer) until one is refused; the test client may hold one too.
            var held: [RawConnection] = []
            var refused = ""
            for _ in 0..<5 {
                let connection = try await RawConnection.open(port: port)
                let reply = try await connection.send("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                if reply.hasPrefix("HTTP/1.1 200") {
                    held.append(connection)
                } else {
                    refused = reply
                    break
                }
            }
            #expect(held.count >= 2 && held.count <= 3, "admitted \(held.count) with a cap of 3")
            #expect(refused.hasPrefix("HTTP/1.1 503"), "\(refused)")
            #expect(refused.contains(#""error":"overloaded""#))
            // The connections already open are still served.
            for connection in held {
                #expect(try await connection.send("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").hasPrefix("HTTP/1.1 200"))
            }
            // A slot freed is a slot a new client gets.
            for connection in held { try await connection.close() }
            // The server counts the closes when it reads them: allow it a moment — up to 10 s, since under the whole
            // suite running in parallel on two cores 2 s once was not enough (a fresh-clone CI run, 2026-11-27).
            var served = ""
            for _ in 0..<200 where !served.hasPrefix("HTTP/1.1 200") {
                try await Task.sleep(for: .milliseconds(50))
                // A connection still refused may be closed before the request is written: that is a retry too.
                served = (try? await RawHTTP.exchange(port: port, "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")) ?? ""
            }
            #expect(served.hasPrefix("HTTP/1.1 200"), "\(served)")
        }
    }

    /// The request-head rules: each answer is complete JSON (but CONNECT's, whose body NIO never sends), and no
    /// non-canonical path is an alias of a real route — `DELETE /v1/sessions/` included, which once ended every session.
    @Test func pathMethodAndHostMatrix() async throws {
        try await Instances.with(1, try await Instances.configuration()) { clients in
            let port = try #require(clients[0].port)
            let token = try await clients[0].newSessionToken()
            let auth = "Authorization: Bearer \(token)\r\n"
            let cases: [(String, String)] = [
                ("GET /healthz HTTP/1.1\r\n\r\n", "400"),
                ("GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"),
                ("GET //healthz HTTP/1.1\r\nHost: t\r\n\r\n", "404"),
                ("GET /metrics/ HTTP/1.1\r\nHost: t\r\n\r\n", "404"),
                ("POST /v1/logout/ HTTP/1.1\r\nHost: t\r\n\(auth)Content-Length: 0\r\n\r\n", "404"),
                ("GET /v1//verify HTTP/1.1\r\nHost: t\r\n\(auth)\r\n", "404"),
                ("GET /v1/./verify HTTP/1.1\r\nHost: t\r\n\(auth)\r\n", "404"),
                ("GET /v1/verify/app/../admin HTTP/1.1\r\nHost: t\r\n\(auth)\r\n", "404"),
                ("GET /v1/verify/app/%2E%2e/admin HTTP/1.1\r\nHost: t\r\n\(auth)\r\n", "404"),
                ("DELETE /v1/sessions/ HTTP/1.1\r\nHost: t\r\n\(auth)\r\n", "404"),
                ("GET /v1/verify/app/page HTTP/1.1\r\nHost: t\r\n\(auth)\r\n", "200"),
                ("HEAD /v1/session HTTP/1.1\r\nHost: t\r\n\(auth)\r\n", "200"),
                ("HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n", "200"),
            ]
            for (request, status) in cases {
                let reply = try await RawHTTP.exchange(port: port, request + "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                let head = reply.components(separatedBy: "\r\n\r\n").first ?? ""
                #expect(reply.hasPrefix("HTTP/1.1 \(status)"), "\(request): \(reply)")
                #expect(head.contains("Content-Length: "), "\(request): \(reply)")
                if request.hasPrefix("HEAD") {
                    #expect(reply.components(separatedBy: "HTTP/1.1 200").count == 3, "\(request): HEAD has no body: \(reply)")
                } else if status != "200" {
                    #expect(reply.contains(#"{"error":"#), "\(request): \(reply)")
                }
                // The request behind it is answered too.
                #expect(reply.hasSuffix(#"{"status":"ok"}"#), "\(request): \(reply)")
            }
            // The session survived every probe above (DELETE /v1/sessions/ did not end it).
            #expect(try await clients[0].call(.get, "/v1/verify", token: token).status == .ok)
            // Bytes that are not HTTP, and CONNECT: a complete answer, then the connection closes.
            let garbage = try await RawHTTP.exchange(port: port, "FOO /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(garbage.hasPrefix("HTTP/1.1 400") && garbage.hasSuffix(#""the request is not valid HTTP/1.1"}"#), "\(garbage)")
            let connect = try await RawHTTP.exchange(port: port, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
            #expect(connect.hasPrefix("HTTP/1.1 405") && connect.contains("Connection: close"), "\(connect)")
            // HTTP/1.0 is answered and closed.
            let old = try await RawHTTP.exchange(port: port, "GET /healthz HTTP/1.0\r\nHost: t\r\n\r\n")
            #expect(old.hasPrefix("HTTP/1.1 200") && old.hasSuffix(#"{"status":"ok"}"#), "\(old)")
        }
    }
}

/// A raw connection held open across exchanges: what it receives is gathered in a stream.
actor RawConnection {
    let channel: any Channel
    private var replies: AsyncStream<ByteBuffer>.AsyncIterator

    private init(channel: any Channel, replies: AsyncStream<ByteBuffer>) {
        self.channel = channel
        self.replies = replies.makeAsyncIterator()
    }

    static func open(port: Int) async throws -> RawConnection {
        let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Collector(continuation)) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawConnection(channel: channel, replies: stream)
    }

    /// Writes a request and returns its whole reply ("" once closed). A refused connection is answered
    /// and closed as soon as it opens, so a write that finds it closed still reads that answer.
    func send(_ text: String) async throws -> String {
        try? await channel.writeAndFlush(ByteBuffer(string: text))
        var iterator = replies
        defer { replies = iterator }
        var reply = ""
        while !Self.isComplete(reply), let chunk = await iterator.next(isolation: #isolation) { reply += String(buffer: chunk) }
        return reply
    }

    /// A whole response: its head, and as many body bytes as its Content-Length says.
    private static func isComplete(_ reply: String) -> Bool {
        guard let end = reply.range(of: "\r\n\r\n") else { return false }
        let head = reply[..<end.lowerBound].lowercased()
        let length =
            head.components(separatedBy: "\r\n").first { $0.hasPrefix("content-length:") }
            .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
        return reply[end.upperBound...].utf8.count >= length
    }

    func close() async throws {
        try await channel.close()
    }

    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let continuation: AsyncStream<ByteBuffer>.Continuation
        init(_ continuation: AsyncStream<ByteBuffer>.Continuation) { self.continuation = continuation }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { continuation.yield(unwrapInboundIn(data)) }
        func channelInactive(context: ChannelHandlerContext) { continuation.finish() }
    }
}
