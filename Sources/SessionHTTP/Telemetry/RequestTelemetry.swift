import Atomics
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import NIOConcurrencyHelpers
public import NIOCore
import NIOPosix
import Redis
import SessionCore
import Tracing

#if canImport(Glibc)
    import Glibc
#endif

/// What is recorded about every request, whichever path serves it — the router (`APIMiddleware`) or the verification
/// fast path (`EdgeHandler`) — written once here so both record alike:
/// - **an id**: `X-Request-Id` from a trusted proxy (`TRUSTED_PROXIES`; 1–128 visible ASCII characters but `"`, `\`
///   and `,`), else a new one; returned in the response's `X-Request-Id` and in the request's log lines as `request_id`;
/// - **a span** (only while tracing): kind server, named `METHOD route`, continuing a W3C `traceparent`, with the
///   HTTP semantic conventions' attributes and `user.id`/`session.id` once known (never a token, cookie or query);
///   Redis commands and password hashes made while serving the request are its children;
/// - **metrics**: Hummingbird's series by route, method and status — `hb_requests`, `http_server_request_duration`
///   (seconds), and `hb_request_errors` (only for statuses ≥ 400: a series for a 200 "error" carries nothing) — and
///   `http_server_active_requests`;
/// - **a log line** `request` (debug; 5xx at error) with `http.method`, `http.route`, `http.status`,
///   `http.duration_ms`, `user_id`, `session_id`.
final class RequestTelemetry: Sendable {
    private let tracing = ActiveTracer()
    private let trustedProxies: TrustedProxies
    private let sampling: TraceSampling
    private let series = NIOLockedValueBox<[RouteKey: RouteSeries]>([:])
    private let active = NIOLockedValueBox<[HTTPRequest.Method: Meter]>([:])
    /// GET's meter without the lookup: nearly every request (every verification) is one.
    private let activeGets = Meter(label: "http.server.active_requests", dimensions: [("http.request.method", "GET")])

    init(trustedProxies: TrustedProxies, sampling: TraceSampling = .parentBasedAlwaysOn) {
        self.trustedProxies = trustedProxies
        self.sampling = sampling
    }

    /// Begins observing a request: its id and, while tracing, its span.
    func begin(_ request: HTTPRequest, peer: SocketAddress?) -> RequestObservation {
        let method = request.method
        activeRequests(method).increment()
        let id = requestID(request.headerFields[.xRequestID], peer: peer)
        var span: (any Span)?
        // Decided at the head: a request not sampled makes no span, context or trace ID (`TraceSampling`).
        if let tracer = tracing.tracer, sampling.admits(traceparent: request.headerFields[.traceparent], draw: Self.randomUInt64) {
            var parent = ServiceContext.topLevel
            tracer.extract(request.headerFields, into: &parent, using: HTTPFieldsExtractor())
            let started = tracer.startSpan("\(method.rawValue)", context: parent, ofKind: .server)
            // A span the SDK does not record (a sampler other than `TraceSampling`'s) gets no attributes.
            if started.isRecording {
                started.attributes["http.request.method"] = method.rawValue
                if let path = request.path {
                    started.attributes["url.path"] = String(path.prefix { $0 != "?" })
                }
                started.attributes["url.scheme"] = "http"
                started.attributes["network.protocol.version"] = "1.1"
                started.attributes["user_agent.original"] = request.headerFields[.userAgent]
                started.attributes["client.address"] = trustedProxies.clientAddress(
                    peer: peer, forwardedFor: request.headerFields[values: .xForwardedFor]
                )
                started.attributes["http.request.header.x-request-id"] = [id]
            }
            span = started
        }
        return RequestObservation(id: id, method: method, span: span)
    }

    /// Ends the observation: metrics, span, and the log line. `session`: whom the request authenticated as, when the
    /// caller knows (the fast path); else what the authenticator told the observation.
    /// `series`: the route's series when the caller holds them (`RouteSeriesCache`), else looked up.
    func end(
        _ observation: RequestObservation, route: String, status: HTTPResponse.Status, series known: RouteSeries? = nil, session: Session? = nil,
        logger: Logger
    ) {
        let duration = ContinuousClock.now - observation.start
        activeRequests(observation.method).decrement()
        let series = known ?? routeSeries(RouteKey(route: route, method: observation.method, status: status.code))
        series.requests.increment()
        series.duration.recordNanoseconds(duration.nanoseconds)
        series.errors?.increment()
        let session = session ?? observation.session
        if let span = observation.span {
            if span.isRecording {
                span.operationName = "\(observation.method.rawValue) \(route)"
                span.attributes["http.route"] = route
                span.attributes["http.response.status_code"] = status.code
                if let session {
                    span.attributes["user.id"] = session.userID.text
                    span.attributes["session.id"] = session.id.hex
                }
                if status.code >= 500 { span.setStatus(SpanStatus(code: .error)) }
            }
            span.end()
        }
        let level: Logger.Level = status.code >= 500 ? .error : .debug
        guard logger.logLevel <= level else { return }
        var metadata: Logger.Metadata = [
            "request_id": .string(observation.id), "http.method": .string(observation.method.rawValue), "http.route": .string(route),
            "http.status": .stringConvertible(status.code), "http.duration_ms": .stringConvertible(duration.fractionalMilliseconds),
        ]
        if let session {
            metadata["user_id"] = .string(session.userID.text)
            metadata["session_id"] = .string(session.id.hex)
        }
        logger.log(level: level, "request", metadata: metadata)
    }

    /// A proxy's id when the peer is trusted and the id is plain, else a new one.
    private func requestID(_ offered: String?, peer: SocketAddress?) -> String {
        if let offered, Self.isPlain(offered), let address = peer?.ipAddress, trustedProxies.trusts(address) { return offered }
        return Self.newID()
    }

    /// Each thread's store of random bytes for request ids.
    // @unchecked Sendable: an instance lives in one thread's `ThreadSpecificVariable` slot and only that thread ever
    // reads or writes it; the conformance only lets the slot's declaration be a static.
    private final class RandomBytes: @unchecked Sendable {
        var bytes = [UInt8](repeating: 0, count: 4096)
        var used = 4096

        /// The next 16 random bytes, refilled from the system's generator (one `getrandom` per 256 ids).
        func next16(_ body: (ArraySlice<UInt8>) -> Void) {
            refillIfUsed(16)
            body(bytes[used..<used + 16])
            used += 16
        }

        /// The next 64 random bits.
        func nextUInt64() -> UInt64 {
            refillIfUsed(8)
            defer { used += 8 }
            return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: used, as: UInt64.self) }
        }

        private func refillIfUsed(_ needed: Int) {
            guard used + needed > bytes.count else { return }
            // One call for the whole buffer: `SystemRandomNumberGenerator` makes a getrandom(2) per 8 bytes, 512 system
            // calls a refill, which the profile showed. glibc's arc4random_buf draws from getrandom(2) too.
            bytes.withUnsafeMutableBytes { buffer in
                #if canImport(Glibc)
                    arc4random_buf(buffer.baseAddress!, buffer.count)
                #else
                    var generator = SystemRandomNumberGenerator()
                    for index in buffer.indices { buffer[index] = generator.next() }
                #endif
            }
            used = 0
        }
    }

    private static let randomBytes = ThreadSpecificVariable<RandomBytes>()

    /// This thread's random bytes.
    private static var random: RandomBytes {
        if let existing = randomBytes.currentValue { return existing }
        let made = RandomBytes()
        randomBytes.currentValue = made
        return made
    }

    /// 64 random bits (a head-sampling draw).
    static func randomUInt64() -> UInt64 { random.nextUInt64() }

    /// 32 random hex digits (128 bits): nothing in an id tells how many requests came before it. Written in one
    /// allocation, from a per-thread buffer of system randomness: this runs for every request, verifications included.
    static func newID() -> String {
        var id = ""
        random.next16 { random in
            id = String(unsafeUninitializedCapacity: 32) { bytes in
                for (index, byte) in random.enumerated() {
                    bytes[2 * index] = Hex.digits[Int(byte >> 4)]
                    bytes[2 * index + 1] = Hex.digits[Int(byte & 0xF)]
                }
                return 32
            }
        }
        return id
    }

    /// 1–128 visible ASCII characters, none of them a quote, a backslash or a comma: safe in a header (one value), a
    /// log line and a span, and wide enough for what proxies send (UUIDs, hex, base64, `Root=1-…` trace ids).
    static func isPlain(_ id: String) -> Bool {
        let utf8 = id.utf8
        return (1...128).contains(utf8.count)
            && utf8.allSatisfy { byte in
                (0x21...0x7E).contains(byte) && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") && byte != UInt8(ascii: ",")
            }
    }

    fileprivate struct RouteKey: Hashable {
        let route: String
        let method: HTTPRequest.Method
        let status: Int
    }

    /// One route's series as one event loop's code sees them: looked up once per method and status, then without the
    /// shared lock and dictionary (the verification fast path keeps one per connection).
    struct RouteSeriesCache {
        let route: String
        private var known: [(method: HTTPRequest.Method, status: Int, series: RouteSeries)] = []

        init(route: String) {
            self.route = route
        }

        mutating func series(method: HTTPRequest.Method, status: Int, in telemetry: RequestTelemetry) -> RouteSeries {
            for entry in known where entry.status == status && entry.method == method { return entry.series }
            let series = telemetry.routeSeries(RouteKey(route: route, method: method, status: status))
            known.append((method, status, series))
            return series
        }
    }

    struct RouteSeries: Sendable {
        let requests: Counter
        let duration: Metrics.Timer
        let errors: Counter?
    }

    /// Made the first time a (route, method, status) is served: no series for what never happened.
    fileprivate func routeSeries(_ key: RouteKey) -> RouteSeries {
        series.withLockedValue { all in
            if let found = all[key] { return found }
            let dimensions = [
                ("http.route", key.route), ("http.request.method", key.method.rawValue), ("http.response.status_code", "\(key.status)"),
            ]
            let made = RouteSeries(
                requests: Counter(label: "hb.requests", dimensions: dimensions),
                duration: Metrics.Timer(label: "http.server.request.duration", dimensions: dimensions, preferredDisplayUnit: .seconds),
                errors: key.status < 400
                    ? nil
                    : Counter(
                        label: "hb.request.errors",
                        dimensions: [("http.route", key.route), ("http.request.method", key.method.rawValue), ("error.type", "\(key.status)")]
                    )
            )
            all[key] = made
            return made
        }
    }

    private func activeRequests(_ method: HTTPRequest.Method) -> Meter {
        if method == .get { return activeGets }
        return active.withLockedValue { all in
            if let found = all[method] { return found }
            let made = Meter(label: "http.server.active_requests", dimensions: [("http.request.method", method.rawValue)])
            all[method] = made
            return made
        }
    }
}

/// One request being observed. The router path binds it to its task (`current`) so that the authenticator, deep
/// inside, can name the session for the log line and the span (`identify`); the fast path hands the session to
/// `RequestTelemetry.end` directly.
///
/// `@unchecked Sendable`: `session` is written only by the request's own task, before `end` reads it in that task.
final class RequestObservation: @unchecked Sendable {
    let id: String
    let method: HTTPRequest.Method
    let start = ContinuousClock.now
    let span: (any Span)?
    private(set) var session: Session?

    @TaskLocal static var current: RequestObservation?

    init(id: String, method: HTTPRequest.Method, span: (any Span)?) {
        self.id = id
        self.method = method
        self.span = span
    }

    /// The request authenticated as this session.
    func identify(_ session: Session) {
        self.session = session
    }

    /// The span's context, for the spans of the work done for this request (nil while not tracing).
    var serviceContext: ServiceContext? { span?.context }
}

/// Reads W3C trace context (`traceparent`, `tracestate`) out of request headers.
private struct HTTPFieldsExtractor: Extractor {
    func extract(key: String, from fields: HTTPFields) -> String? {
        guard let name = HTTPField.Name(key) else { return nil }
        return fields[name]
    }
}

extension HTTPField.Name {
    static let xRequestID = Self("X-Request-Id")!
    static let traceparent = Self("traceparent")!
}
