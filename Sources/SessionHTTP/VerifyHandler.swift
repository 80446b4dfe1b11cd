import HTTPTypes
import Hummingbird
import Logging
import Metrics
import NIOCore
import NIOHTTPTypes
import SessionCore

#if canImport(Glibc)
    import Glibc
#endif

/// Serves `GET /v1/verify` — the forward-auth hot path, called by a gateway before every request it lets
/// through — in the channel pipeline, on the connection's event loop, and forwards every other request to the
/// Hummingbird router. This is where a gateway's token is checked; `BearerAuthenticator` is where the router's is.
///
/// Why: through the router a request is handed from the event loop to a task and back, and its Redis command
/// from the task to the event loop and back — four thread hops around ~15 µs of real work. Here the request, its
/// `EVALSHA` (on the Redis connection of the same loop, see `EventLoopSessionAuthenticating`) and the response
/// stay on one thread with no task at all.
///
/// It sits last in `SessionHTTPChannel`'s pipeline, behind NIO's pipelining assistance and Hummingbird's
/// connection state handler, so it sees one request at a time and every request it answers counts for idle
/// timeouts and graceful shutdown. The answers are the router's, byte for byte (same status, headers, JSON and
/// metrics, built by the same code); other methods, `/v1/verify/**`, HEAD and requests with a body go to the router.
///
/// It also spells a `Connection: close` of any case as `close` for the router, whose loop compares it exactly,
/// so both paths close alike.
final class VerifyHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// What every connection's handler shares: the store, the authenticator's counters, the route's metrics.
    struct Shared: Sendable {
        let store: any EventLoopSessionAuthenticating
        let authenticator: BearerAuthenticator<SessionRequestContext>
        let logger: Logger
        let metrics: [Int: RouteMetrics]
        let activeRequests = Meter(label: "http.server.active_requests", dimensions: [("http.request.method", "GET")])

        init(store: any EventLoopSessionAuthenticating, logger: Logger) {
            self.store = store
            self.authenticator = BearerAuthenticator(store: store)
            self.logger = logger
            self.metrics = Dictionary(uniqueKeysWithValues: [200, 400, 401, 503].map { ($0, RouteMetrics(status: $0)) })
        }
    }

    /// Hummingbird's `MetricsMiddleware` series for this route, so /metrics reads the same whichever path served.
    struct RouteMetrics: Sendable {
        let requests: Counter
        let duration: Metrics.Timer
        let errors: Counter?

        init(status: Int) {
            let dimensions = [("http.route", "/v1/verify"), ("http.request.method", "GET"), ("http.response.status_code", "\(status)")]
            requests = Counter(label: "hb.requests", dimensions: dimensions)
            duration = Metrics.Timer(label: "http.server.request.duration", dimensions: dimensions, preferredDisplayUnit: .seconds)
            errors =
                status < 400
                ? nil
                : Counter(
                    label: "hb.request.errors",
                    dimensions: [("http.route", "/v1/verify"), ("http.request.method", "GET"), ("error.type", "\(status)")]
                )
        }
    }

    private let shared: Shared?
    private var state = StateMachine()
    private var date = HTTPDate()

    /// - Parameter shared: nil forwards every request (the fast path is off) and only spells `Connection: close`.
    init(shared: Shared?) {
        self.shared = shared
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        guard case .head(var request) = part else {
            if state.read(part.kind) == .forward { context.fireChannelRead(data) }
            return
        }
        let close = Self.asksToClose(request.headerFields)
        let isVerification = shared != nil && Self.isFastVerification(request)
        switch state.read(.head, isVerification: isVerification, close: close) {
        case .verify:
            verify(request, close: close, context: context)
        case .forward:
            if close, request.headerFields[.connection] != "close" {
                request.headerFields[.connection] = "close"
                context.fireChannelRead(wrapInboundOut(.head(request)))
            } else {
                context.fireChannelRead(data)
            }
        case .swallow:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        state.channelClosed()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        state.channelClosed()
    }

    /// A plain `GET /v1/verify` (any query) without a body.
    static func isFastVerification(_ request: HTTPRequest) -> Bool {
        guard request.method == .get, let path = request.path, path.utf8.starts(with: "/v1/verify".utf8) else { return false }
        let rest = path.utf8.dropFirst(10)
        guard rest.isEmpty || rest.first == UInt8(ascii: "?") else { return false }
        let fields = request.headerFields
        return fields[.transferEncoding] == nil && (fields[.contentLength] == nil || fields[.contentLength] == "0")
    }

    /// Whether a `Connection` header carries the `close` option (RFC 9110 §7.6.1: options are case-insensitive).
    static func asksToClose(_ fields: HTTPFields) -> Bool {
        fields[values: .connection].contains { value in
            value.split(separator: ",").contains { $0.trimmingSpaces.lowercased() == "close" }
        }
    }

    private func verify(_ request: HTTPRequest, close: Bool, context: ChannelHandlerContext) {
        guard let shared else { return }
        let start = ContinuousClock.now
        shared.activeRequests.increment()
        let token: SessionToken
        do {
            token = try shared.authenticator.token(from: request.headerFields[values: .authorization])
        } catch {
            answer(error.status, error.responseHeaders, error.body, start: start, context: context)
            return
        }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        shared.store.authenticate(token, on: context.eventLoop) { result in
            let (handler, context) = loopBound.value
            handler.authenticated(result, start: start, context: context)
        }
    }

    private func authenticated(_ result: Result<Session?, SessionError>, start: ContinuousClock.Instant, context: ChannelHandlerContext) {
        guard let shared else { return }
        do {
            let (headers, body) = Routes.verified(try shared.authenticator.check(result, logger: shared.logger))
            answer(.ok, headers, body, start: start, context: context)
        } catch {
            answer(error.status, error.responseHeaders, error.body, start: start, context: context)
        }
    }

    private func answer(
        _ status: HTTPResponse.Status, _ headers: HTTPFields, _ body: ByteBuffer, start: ContinuousClock.Instant, context: ChannelHandlerContext
    ) {
        guard let shared else { return }
        defer { shared.activeRequests.decrement() }
        guard case .write(let close) = state.answered() else { return }
        var headers = headers
        headers[.contentLength] = String(body.readableBytes)
        APIMiddleware<SessionRequestContext>.addStandardHeaders(to: &headers, closing: close)
        headers[.date] = date.now()
        context.write(wrapOutboundOut(.head(HTTPResponse(status: status, headerFields: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        // As the router's loop does after a `Connection: close` request: close the output, read on until the peer closes.
        if close { context.close(mode: .output, promise: nil) }
        if let metrics = shared.metrics[status.code] {
            metrics.requests.increment()
            metrics.duration.recordNanoseconds((ContinuousClock.now - start).nanoseconds)
            metrics.errors?.increment()
        }
        var logger = shared.logger
        if logger.logLevel <= .debug || status.code >= 500 {
            logger[metadataKey: "hb.request.id"] = "\(RequestID())"  // as the router's request logger carries
        }
        APIMiddleware<SessionRequestContext>.logRequest(logger, method: .get, path: "/v1/verify", status: status, start: start)
    }
}

extension HTTPRequestPart {
    fileprivate var kind: VerifyHandler.StateMachine.Part {
        switch self {
        case .head: .head
        case .body: .body
        case .end: .end
        }
    }
}

/// The `Date` header (RFC 9110 IMF-fixdate), formatted at most once a second per connection.
struct HTTPDate {
    private var second = 0
    private var text = ""

    mutating func now() -> String {
        let current = time(nil)
        if current != second || text.isEmpty {
            second = current
            text = UTCTime.imfFixdate(current)
        }
        return text
    }
}
