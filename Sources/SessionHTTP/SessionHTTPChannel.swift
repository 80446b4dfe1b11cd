import HTTPTypes
import Hummingbird
public import HummingbirdCore
public import Logging
public import NIOCore
import NIOHTTP1
public import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// The service's HTTP/1.1 child channel: Hummingbird's `HTTP1Channel` pipeline, composed from the same public
/// pieces, with NIO's pipelining assistance on and the verification fast path (`VerifyHandler`) as its last
/// handler before the router.
///
/// ```
/// socket ⇄ HTTP/1 codec ⇄ HTTPServerPipelineHandler ⇄ HTTP1ToHTTPServerCodec ⇄ HTTPConnectionStateHandler
///        ⇄ VerifyHandler ⇄ NIOAsyncChannel → Hummingbird's router
/// ```
///
/// Why not `HTTP1Channel(additionalChannelHandlers:)`: those handlers go *before* the connection state handler,
/// so a request answered there would be invisible to it (idle timeouts, graceful shutdown) and would have to keep
/// pipelined requests in order itself. Here NIO's `HTTPServerPipelineHandler` lets one request at a time through
/// and holds the next until the response's end is written, whoever writes it; the state handler counts every
/// request; and `VerifyHandler` only answers a matching request head and forwards everything else.
public struct SessionHTTPChannel: ServerChildChannel, HTTPChannelHandler {
    public typealias Value = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    /// The router's entry point, as Hummingbird's `Application` builds it.
    public let responder: HTTPChannelHandler.Responder
    let idleTimeout: Duration?
    let verification: VerifyHandler.Shared?

    /// - Parameters:
    ///   - responder: the router (from `HTTPServerBuilder`).
    ///   - idleTimeout: closes a connection with no request in progress for this long (nil: never).
    ///   - verification: serves `GET /v1/verify` in the pipeline when set; nil sends it through the router.
    init(responder: @escaping HTTPChannelHandler.Responder, idleTimeout: Duration?, verification: VerifyHandler.Shared?) {
        self.responder = responder
        self.idleTimeout = idleTimeout
        self.verification = verification
    }

    /// Builds one connection's pipeline (see the type's documentation).
    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let operations = channel.pipeline.syncOperations
            try operations.configureHTTPServerPipeline(
                withPipeliningAssistance: true,
                withErrorHandling: false,  // Hummingbird's `handleHTTP` answers a parse error with 400 and closes
                withOutboundHeaderValidation: false,  // HTTPTypes validates header fields already
                withEncoderConfiguration: .init(),
                withDecoderLimitConfiguration: .init()
            )
            try operations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
            try operations.addHandler(HTTPConnectionStateHandler(idleTimeout: idleTimeout, logger: logger))
            try operations.addHandler(VerifyHandler(shared: verification))
            return try NIOAsyncChannel(wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
        }
    }

    /// Runs Hummingbird's request loop over the requests `VerifyHandler` forwarded.
    public func handle(value asyncChannel: Value, logger: Logger) async {
        await handleHTTP(asyncChannel: asyncChannel, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// The service's HTTP/1.1 server: `SessionHTTPChannel`.
    static func sessionHTTP1(idleTimeout: Duration? = nil, verification: VerifyHandler.Shared?) -> HTTPServerBuilder {
        .init { responder in SessionHTTPChannel(responder: responder, idleTimeout: idleTimeout, verification: verification) }
    }
}
