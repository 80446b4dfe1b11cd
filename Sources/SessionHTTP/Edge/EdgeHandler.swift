import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import Redis
import SessionCore
import Tracing

#if canImport(Glibc)
    import Glibc
#endif

/// The last channel handler before the Hummingbird router: it refuses what must not be routed, serves `GET /v1/verify`
/// itself, and forwards every other request to the router.
///
/// **Refusals** (`RequestRules`): CONNECT, a missing or repeated `Host`, a declared `Content-Length` over
/// `MAX_BODY_SIZE` (413 before the body arrives), non-canonical paths (404, never an alias of a route), and bytes that
/// do not parse as HTTP (400 with a JSON body, then close). Refusing here means both paths refuse alike.
///
/// **The verification fast path**: `GET /v1/verify` — the forward-auth hot path, called by a gateway before every
/// request it lets through — is answered on the connection's event loop. This is where a gateway's token is checked;
/// `BearerAuthenticator` is where the router's is. Why: through the router a request is handed from the event loop to a
/// task and back, and its Redis command from the task to the event loop and back — four thread hops around ~15 µs of
/// real work. Here the request, its `EVALSHA` (on the Redis connection of the same loop, see
/// `EventLoopSessionAuthenticating`) and the response stay on one thread with no task at all. The answers are the
/// router's, byte for byte (same status, headers, JSON and metrics, built by the same code); other methods,
/// `/v1/verify/**` and requests with a body go to the router.
///
/// **HEAD** is forwarded (or verified) as GET: NIO's encoder, told of the HEAD by its decoder, omits the body, so
/// every GET route answers HEAD with the same status and headers.
///
/// It sits last in `SessionHTTPChannel`'s pipeline, behind NIO's pipelining assistance and Hummingbird's connection
/// state handler, so it sees one request at a time and every request it answers counts for idle timeouts and graceful
/// shutdown. It also spells a `Connection: close` of any case as `close` for the router, whose loop compares it
/// exactly, so both paths close alike.
final class EdgeHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// What every connection's handler shares: the store, the authenticator (its counters labelled `fast_path`), the
    /// request telemetry (the router's own: its series, ids, spans and log line). A class: as a struct, every use copied
    /// (retained and released) each of its members, which showed in the verification's profile.
    final class Shared: Sendable {
        let store: any EventLoopSessionAuthenticating
        let authenticator: BearerAuthenticator<SessionRequestContext>
        let logger: Logger
        let telemetry: RequestTelemetry

        init(
            store: any EventLoopSessionAuthenticating, cookie: SessionCookie? = nil, trustedProxies: TrustedProxies = .none,
            telemetry: RequestTelemetry = RequestTelemetry(trustedProxies: .none), logger: Logger
        ) {
            self.store = store
            self.authenticator = BearerAuthenticator(store: store, cookie: cookie, trustedProxies: trustedProxies, path: .fastPath)
            self.logger = logger
            self.telemetry = telemetry
        }
    }

    private let shared: Shared?
    private let maxBodySize: Int
    private var state = StateMachine()
    private var date = HTTPDate()
    private var series = RequestTelemetry.RouteSeriesCache(route: "/v1/verify")

    /// - Parameters:
    ///   - shared: nil sends verifications to the router (the fast path is off).
    ///   - maxBodySize: a declared `Content-Length` above it is refused with 413.
    init(shared: Shared?, maxBodySize: Int = 64 * 1024) {
        self.shared = shared
        self.maxBodySize = maxBodySize
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        guard case .head(var request) = part else {
            if state.read(part.kind) == .forward { context.fireChannelRead(data) }
            return
        }
        let close = Self.asksToClose(request.headerFields)
        if let refusal = RequestRules.refusal(for: request, maxBodySize: maxBodySize) {
            if state.read(.head, answersHere: true, close: close || refusal.closes) == .answerHere {
                refuse(refusal.error, closingNow: refusal.closes, context: context)
            }
            return
        }
        var rewritten = false
        if request.method == .head {
            request.method = .get
            rewritten = true
        }
        if close, request.headerFields[.connection] != "close" {
            request.headerFields[.connection] = "close"
            rewritten = true
        }
        let isVerification = shared != nil && Self.isFastVerification(request)
        switch state.read(.head, answersHere: isVerification, close: close) {
        case .answerHere:
            verify(request, close: close, context: context)
        case .forward:
            context.fireChannelRead(rewritten ? wrapInboundOut(.head(request)) : data)
        case .swallow:
            break
        }
    }

    /// A parse error between requests concerns no request the router holds: answered here with a JSON 400, then the
    /// connection closes (the bytes after it cannot be framed). During a request's body it goes to the router, whose
    /// body read fails with 400.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is HTTPParserError, state.isIdle else {
            context.fireErrorCaught(error)
            return
        }
        _ = state.read(.head, answersHere: true, close: true)
        refuse(.invalidRequest("the request is not valid HTTP/1.1"), closingNow: true, context: context)
    }

    /// Writes a refusal. `closingNow`: the output closes after it and what the client still sends is read and dropped
    /// for `lingering` (closing with unread bytes would reset the connection and lose the answer), then it closes.
    private func refuse(_ error: APIError, closingNow: Bool, context: ChannelHandlerContext) {
        guard case .write(let close) = state.answered() else { return }
        write(error.status, error.responseHeaders, error.body, closing: close, context: context)
        if closingNow {
            let channel = context.channel
            context.eventLoop.scheduleTask(in: Self.lingering) { channel.close(promise: nil) }
        }
    }

    /// How long a refused connection's remaining input is drained before it is closed.
    static let lingering = TimeAmount.seconds(2)

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
        let observation = shared.telemetry.begin(request, peer: context.channel.remoteAddress)
        let token: SessionToken
        var stepUp = StepUp.none
        do throws(APIError) {
            token = try shared.authenticator.token(from: request, peer: context.channel.remoteAddress)
            if let path = request.path { stepUp = try StepUp(target: path) }
        } catch {
            answer(error.status, error.responseHeaders, error.body, observation, context: context)
            return
        }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let demands = stepUp
        let authenticate = {
            shared.store.authenticate(token, on: context.eventLoop) { result in
                let (handler, context) = loopBound.value
                handler.authenticated(result, demands, observation, context: context)
            }
        }
        // No task here: the span is bound for the synchronous call, so the Redis command it sends is its child.
        if let serviceContext = observation.serviceContext {
            ServiceContext.$current.withValue(serviceContext, operation: authenticate)
        } else {
            authenticate()
        }
    }

    private func authenticated(
        _ result: Result<Session?, SessionError>, _ stepUp: StepUp, _ observation: RequestObservation, context: ChannelHandlerContext
    ) {
        guard let shared else { return }
        do throws(APIError) {
            let session = try shared.authenticator.check(result, logger: shared.logger)
            if stepUp != .none, let refusal = stepUp.refusal(of: session) { throw refusal }
            let (headers, body) = Routes.verified(session)
            answer(.ok, headers, body, observation, session: session, context: context)
        } catch {
            answer(error.status, error.responseHeaders, error.body, observation, context: context)
        }
    }

    private func answer(
        _ status: HTTPResponse.Status, _ headers: consuming HTTPFields, _ body: ByteBuffer, _ observation: RequestObservation,
        session: Session? = nil,
        context: ChannelHandlerContext
    ) {
        guard let shared else { return }
        let known = series.series(method: observation.method, status: status.code, in: shared.telemetry)
        defer { shared.telemetry.end(observation, route: series.route, status: status, series: known, session: session, logger: shared.logger) }
        guard case .write(let close) = state.answered() else { return }
        write(status, headers, body, closing: close, requestID: observation.id, context: context)
    }

    /// Writes a whole response with the API's standard headers; `closing` closes the output after it, as the router's
    /// loop does after a `Connection: close` request (the peer's close then ends the connection).
    private func write(
        _ status: HTTPResponse.Status, _ headers: consuming HTTPFields, _ body: ByteBuffer, closing: Bool, requestID: String? = nil,
        context: ChannelHandlerContext
    ) {
        // Consumed, not copied: a second reference would make the first change below copy the fields.
        var headers = headers
        headers[.contentLength] = String(body.readableBytes)
        APIMiddleware<SessionRequestContext>.addStandardHeaders(to: &headers, closing: closing, requestID: requestID ?? RequestTelemetry.newID())
        headers[.date] = date.now()
        context.write(wrapOutboundOut(.head(HTTPResponse(status: status, headerFields: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        if closing { context.close(mode: .output, promise: nil) }
    }
}

extension HTTPRequestPart {
    fileprivate var kind: EdgeHandler.StateMachine.Part {
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
