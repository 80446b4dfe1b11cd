public import Hummingbird
public import NIOCore
public import SessionCore

/// A request context that can carry an authenticated session: what `BearerAuthenticator` needs from an app's context.
///
/// Conform your own context to use the middleware in your own Hummingbird app.
public protocol SessionRequestContextProtocol: RequestContext {
    /// The session the request authenticated as; set by `BearerAuthenticator`.
    var session: Session? { get set }
}

/// The service's request context: the session, and the socket peer for throttling.
public struct SessionRequestContext: SessionRequestContextProtocol, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public var session: Session?
    /// The TCP peer; the client address unless a trusted proxy forwarded the request.
    public let peerAddress: SocketAddress?
    /// The framework's default ceiling; the API's routes apply their own, smaller `MAX_BODY_SIZE`.
    public var maxUploadSize: Int { 64 * 1024 * 1024 }
    /// The TCP peer (for `RequestTelemetry`: whether its `X-Request-Id` is believed).
    public var remoteAddress: SocketAddress? { peerAddress }

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.peerAddress = source.channel.remoteAddress
    }
}
