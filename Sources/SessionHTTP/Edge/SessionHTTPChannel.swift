import Atomics
import HTTPTypes
import Hummingbird
public import HummingbirdCore
public import Logging
public import NIOCore
import NIOHTTP1
public import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// The service's HTTP/1.1 child channel: Hummingbird's `HTTP1Channel` pipeline, composed from the same public
/// pieces, with NIO's pipelining assistance on and the verification fast path (`EdgeHandler`) as its last
/// handler before the router.
///
/// ```
/// socket ⇄ RequestDeadlines.RawReads ⇄ HTTP/1 codec ⇄ RequestDeadlines.DecodedParts ⇄ HTTPServerPipelineHandler
///        ⇄ HTTP1ToHTTPServerCodec ⇄ HTTPConnectionStateHandler ⇄ EdgeHandler ⇄ NIOAsyncChannel → Hummingbird's router
/// ```
/// Past `maxConnections`, a connection gets only `ConnectionRefuser`: a 503, then close.
///
/// Why not `HTTP1Channel(additionalChannelHandlers:)`: those handlers go *before* the connection state handler,
/// so a request answered there would be invisible to it (idle timeouts, graceful shutdown) and would have to keep
/// pipelined requests in order itself. Here NIO's `HTTPServerPipelineHandler` lets one request at a time through
/// and holds the next until the response's end is written, whoever writes it; the state handler counts every
/// request; and `EdgeHandler` only answers a matching request head and forwards everything else.
public struct SessionHTTPChannel: ServerChildChannel, HTTPChannelHandler {
    public typealias Value = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    /// What one client may hold or withhold at the edge (see `ServiceOptions` for each setting's variable).
    struct Limits: Sendable {
        /// Closes a connection with no request in progress for this long (nil: never).
        var idleTimeout: Duration?
        /// A request's head must be complete within this long of its first byte.
        var headerTimeout: TimeAmount = .seconds(10)
        /// A request's body may not stall for longer than this.
        var bodyTimeout: TimeAmount = .seconds(10)
        /// A declared `Content-Length` above this is refused with 413 before the body arrives.
        var maxBodySize = 64 * 1024
        /// Connections open at once; beyond it a new connection gets a 503 and is closed.
        var maxConnections = Int.max
        /// Refused connections that may linger at once (reading what the client sent, so the 503 is not lost to a
        /// reset); past it a refusal closes at once, so refusals never take the descriptors the cap keeps free.
        var lingeringRefusals = 64
        /// A written response that makes no progress for this long closes the connection (`HTTP_WRITE_TIMEOUT`).
        var writeTimeout: TimeAmount = .seconds(10)
        /// Requests in flight per connection at most (`HTTP_MAX_PIPELINED`); beyond, the connection is not read.
        var maxPipelined = 16
    }

    /// The router's entry point, as Hummingbird's `Application` builds it.
    public let responder: HTTPChannelHandler.Responder
    let limits: Limits
    let verification: EdgeHandler.Shared?
    let connections: ConnectionCount

    /// - Parameters:
    ///   - responder: the router (from `HTTPServerBuilder`).
    ///   - limits: timeouts, body and connection caps.
    ///   - verification: serves `GET /v1/verify` in the pipeline when set; nil sends it through the router.
    init(responder: @escaping HTTPChannelHandler.Responder, limits: Limits, verification: EdgeHandler.Shared?, connections: ConnectionCount) {
        self.responder = responder
        self.limits = limits
        self.verification = verification
        self.connections = connections
    }

    /// Builds one connection's pipeline (see the type's documentation), or, past `maxConnections`, one that answers
    /// 503 and closes.
    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let operations = channel.pipeline.syncOperations
            let admitted = connections.open(limit: limits.maxConnections)
            channel.closeFuture.whenComplete { _ in if admitted { connections.close() } }
            guard admitted else {
                try operations.addHandler(ConnectionRefuser(lingers: connections.beginLingering(limit: limits.lingeringRefusals)))
                channel.closeFuture.whenComplete { _ in connections.endLingering() }
                return try NIOAsyncChannel(wrappingChannelSynchronously: channel)
            }
            let deadlines = RequestDeadlines(headerTimeout: limits.headerTimeout, bodyTimeout: limits.bodyTimeout)
            try operations.configureHTTPServerPipeline(
                withPipeliningAssistance: true,
                withErrorHandling: false,  // EdgeHandler answers a parse error between requests; Hummingbird the rest
                withOutboundHeaderValidation: false,  // HTTPTypes validates header fields already
                withEncoderConfiguration: .init(),
                withDecoderLimitConfiguration: .init()
            )
            try operations.addHandler(RequestDeadlines.RawReads(deadlines), position: .first)
            let pipelining = try operations.handler(type: HTTPServerPipelineHandler.self)
            try operations.addHandler(RequestDeadlines.DecodedParts(deadlines), position: .before(pipelining))
            // A bounded kernel send buffer: what a client that never reads can make this process compute is what fits in
            // it (answers are small; a reading client never fills it).
            try channel.syncOptions?.setOption(.socketOption(.so_sndbuf), value: ResponseBackpressure.sendBuffer)
            let backpressure = ResponseBackpressure(maxPipelined: limits.maxPipelined, writeTimeout: limits.writeTimeout)
            try operations.addHandler(RequestCounter(backpressure), position: .before(pipelining))
            try operations.addHandler(InboundGate(backpressure), position: .first)
            try operations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
            try operations.addHandler(HTTPConnectionStateHandler(idleTimeout: limits.idleTimeout, logger: logger))
            try operations.addHandler(EdgeHandler(shared: verification, maxBodySize: limits.maxBodySize))
            return try NIOAsyncChannel(wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
        }
    }

    /// Runs Hummingbird's request loop over the requests `EdgeHandler` forwarded.
    public func handle(value asyncChannel: Value, logger: Logger) async {
        await handleHTTP(asyncChannel: asyncChannel, logger: logger)
    }
}

/// The connections open now, across every event loop.
final class ConnectionCount: Sendable {
    private let count = ManagedAtomic(0)

    /// Counts a new connection if fewer than `limit` are open; false (nothing counted) otherwise.
    func open(limit: Int) -> Bool {
        if count.loadThenWrappingIncrement(ordering: .relaxed) < limit { return true }
        count.wrappingDecrement(ordering: .relaxed)
        return false
    }

    /// A counted connection closed.
    func close() {
        count.wrappingDecrement(ordering: .relaxed)
    }

    private let lingering = ManagedAtomic(0)

    /// Whether a refused connection may linger; always paired with `endLingering()` when it closes.
    func beginLingering(limit: Int) -> Bool {
        lingering.loadThenWrappingIncrement(ordering: .relaxed) < limit
    }

    /// A refused connection closed.
    func endLingering() {
        lingering.wrappingDecrement(ordering: .relaxed)
    }

    var value: Int { count.load(ordering: .relaxed) }
}

/// A connection past `MAX_CONNECTIONS`: a complete 503 at once, then close — never a hang, never a read.
final class ConnectionRefuser: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private static let body = #"{"error":"overloaded","message":"too many connections; try again shortly"}"#
    private static let response =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\n"
        + "Retry-After: 1\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n\(body)"

    private var refused = false
    private let lingers: Bool

    /// - Parameter lingers: read and drop what the client sends for a moment after the 503 (else close at once).
    init(lingers: Bool) {
        self.lingers = lingers
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { refuse(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        refuse(context: context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    private func refuse(context: ChannelHandlerContext) {
        guard !refused else { return }
        refused = true
        // Close our side once the answer is out, read and drop what the client sent (closing with unread bytes
        // would reset the connection and lose the answer), and close for good after a short linger.
        let channel = context.channel
        let lingers = self.lingers
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: Self.response))).whenComplete { _ in
            channel.close(mode: lingers ? .output : .all, promise: nil)
        }
        if lingers { context.eventLoop.scheduleTask(in: .milliseconds(500)) { channel.close(promise: nil) } }
    }
}

extension HTTPServerBuilder {
    /// The service's HTTP/1.1 server: `SessionHTTPChannel`, all connections counted in `connections`.
    static func sessionHTTP1(limits: SessionHTTPChannel.Limits, verification: EdgeHandler.Shared?, connections: ConnectionCount) -> HTTPServerBuilder
    {
        .init { responder in SessionHTTPChannel(responder: responder, limits: limits, verification: verification, connections: connections) }
    }
}
