#if canImport(Glibc)
import Glibc
#endif
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import NIOCore
import NIOHTTPTypes
import SessionCore

/// Serves `GET /v1/verify` — the forward-auth hot path, called by a gateway before every request it lets
/// through — in the channel pipeline, on the connection's event loop, and passes every other request on to the
/// Hummingbird router.
///
/// Why: a request that goes through the router is handed from the event loop to a task and back, and its Redis
/// command from the task to the event loop and back — four thread hops around ~15 µs of real work. Here the
/// request, its `EVALSHA` (sent on the Redis connection that lives on the same loop, see
/// `RedisClient.send(_:on:completion:)`) and the response stay on one thread with no task at all.
///
/// The answers are the router's, byte for byte (same status, headers, JSON and metrics, built by the same code);
/// other methods, `/v1/verify/**`, HEAD and requests with a body take the router path.
///
/// Ordering: HTTP/1.1 answers requests in order. A verification is served here only when no request handed to
/// the router is still unanswered; what arrives behind one served here (pipelined requests, a parse error, end of
/// input, the graceful-shutdown notice) waits, with reads paused, until it is answered.
final class VerifyFastPath: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// What every connection's handler shares: the store, the authenticator's counters, the route's metrics.
    struct Shared: Sendable {
        let store: RedisSessionStore
        let authenticator: BearerAuthenticator<SessionRequestContext>
        let logger: Logger
        let metrics: [Int: RouteMetrics]

        init(store: RedisSessionStore, logger: Logger) {
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
            errors = status < 400 ? nil : Counter(
                label: "hb.request.errors",
                dimensions: [("http.route", "/v1/verify"), ("http.request.method", "GET"), ("error.type", "\(status)")]
            )
        }
    }

    private enum Held {
        case part(HTTPRequestPart)
        case error(any Error)
        case event(Any)
    }

    private struct Serving {
        let closeAfterwards: Bool
        let start: ContinuousClock.Instant
        var requestEnded = false
        var answer: (status: HTTPResponse.Status, headers: HTTPFields, body: ByteBuffer)?
    }

    private let shared: Shared
    private var serving: Serving?
    /// Requests handed to the router whose response has not ended yet.
    private var routerRequestsUnanswered = 0
    /// What arrived while a verification was served here: request parts, and the errors (a parse error in a
    /// later request) and events (end of input, graceful shutdown) behind them, which must not overtake its answer.
    private var held = CircularBuffer<Held>()
    private var readHeld = false
    private var isActive = true
    private var isResuming = false
    private var date = HTTPDate()

    init(shared: Shared) {
        self.shared = shared
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        receive(.part(unwrapInboundIn(data)), context: context)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        receive(.error(error), context: context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        receive(.event(event), context: context)
    }

    /// Handles what arrives now if nothing is waiting before it and it may go; otherwise it waits its turn.
    private func receive(_ item: Held, context: ChannelHandlerContext) {
        if held.isEmpty, canTake(item) {
            deliver(item, context: context)
        } else {
            held.append(item)
        }
    }

    private func deliver(_ item: Held, context: ChannelHandlerContext) {
        switch item {
        case .part(let part): take(part, context: context)
        case .error(let error): context.fireErrorCaught(error)
        case .event(let event): context.fireUserInboundEventTriggered(event)
        }
    }

    /// While a verification is served here, only its own remaining parts are taken; the rest waits its turn.
    private func canTake(_ item: Held) -> Bool {
        guard let serving else { return true }
        if case .part = item { return !serving.requestEnded }
        return false
    }

    private func take(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        guard serving != nil else {
            route(part, context: context)
            return
        }
        // The served request's own parts: no body was announced, so only its end is expected.
        if case .end = part {
            serving?.requestEnded = true
            answerIfReady(context: context)
        }
    }

    private func route(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch part {
        case .head(let request):
            if routerRequestsUnanswered == 0, Self.isFastVerification(request) {
                serve(request, context: context)
                return
            }
            routerRequestsUnanswered += 1
        case .body, .end:
            break
        }
        context.fireChannelRead(wrapInboundOut(part))
    }

    /// A plain `GET /v1/verify` (any query) without a body.
    static func isFastVerification(_ request: HTTPRequest) -> Bool {
        guard request.method == .get, let path = request.path, path.utf8.starts(with: "/v1/verify".utf8) else { return false }
        let rest = path.utf8.dropFirst(10)
        guard rest.isEmpty || rest.first == UInt8(ascii: "?") else { return false }
        let fields = request.headerFields
        return fields[.transferEncoding] == nil && (fields[.contentLength] == nil || fields[.contentLength] == "0")
    }

    private func serve(_ request: HTTPRequest, context: ChannelHandlerContext) {
        let close = request.headerFields[.connection].map { $0.lowercased().contains("close") } ?? false
        serving = Serving(closeAfterwards: close, start: .now)
        let token: SessionToken
        do {
            token = try shared.authenticator.token(from: request.headerFields[values: .authorization])
        } catch {
            serving?.answer = Self.answer(error)
            return
        }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        shared.store.authenticate(token, on: context.eventLoop) { result in
            let (handler, context) = loopBound.value
            handler.authenticated(result, context: context)
        }
    }

    private func authenticated(_ result: Result<Session?, SessionError>, context: ChannelHandlerContext) {
        do {
            let (headers, body) = Routes.verified(try shared.authenticator.check(result, logger: shared.logger))
            serving?.answer = (.ok, headers, body)
        } catch {
            serving?.answer = Self.answer(error)
        }
        answerIfReady(context: context)
    }

    private static func answer(_ error: APIError) -> (HTTPResponse.Status, HTTPFields, ByteBuffer) {
        (error.status, error.responseHeaders, error.body)
    }

    private func answerIfReady(context: ChannelHandlerContext) {
        guard let current = serving, current.requestEnded, let answer = current.answer else { return }
        let status = answer.status
        var headers = answer.headers
        serving = nil
        guard isActive else { return }
        headers[.contentLength] = String(answer.body.readableBytes)
        APIMiddleware<SessionRequestContext>.addStandardHeaders(to: &headers)
        if current.closeAfterwards { headers[.connection] = "close" }
        headers[.date] = date.now()
        context.write(wrapOutboundOut(.head(HTTPResponse(status: status, headerFields: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(answer.body)), promise: nil)
        if current.closeAfterwards {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        } else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
        if let metrics = shared.metrics[status.code] {
            metrics.requests.increment()
            metrics.duration.recordNanoseconds((ContinuousClock.now - current.start).nanoseconds)
            metrics.errors?.increment()
        }
        APIMiddleware<SessionRequestContext>.logRequest(shared.logger, method: .get, path: "/v1/verify", status: status, start: current.start)
        guard !current.closeAfterwards else { return }
        resumeHeld(context: context)
    }

    /// Replays what arrived during the verification, then lets reads through again.
    /// Not re-entered: a replayed verification answered at once continues this loop instead of nesting.
    private func resumeHeld(context: ChannelHandlerContext) {
        guard !isResuming else { return }
        isResuming = true
        defer { isResuming = false }
        var delivered = false
        while let item = held.first, canTake(item) {
            held.removeFirst()
            if case .part = item, serving == nil { delivered = true }
            deliver(item, context: context)
        }
        if delivered { context.fireChannelReadComplete() }
        if serving == nil, readHeld {
            readHeld = false
            context.read()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        isActive = false
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        isActive = false
    }

    // MARK: Outbound

    func read(context: ChannelHandlerContext) {
        // Back-pressure: no more reading while a verification is answered here (its own end is still read).
        if let serving, serving.requestEnded {
            readHeld = true
        } else {
            context.read()
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { routerRequestsUnanswered = max(0, routerRequestsUnanswered - 1) }
        context.write(data, promise: promise)
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
            text = Self.format(current)
        }
        return text
    }

    static func format(_ seconds: Int) -> String {
        var value = time_t(seconds)
        var parts = tm()
        gmtime_r(&value, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ number: Int32) -> String { number < 10 ? "0\(number)" : "\(number)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
