import Metrics
import NIOConcurrencyHelpers
package import Tracing

/// What the client tells operators about its commands and connections: metrics always, spans only while tracing.
///
/// Series (Prometheus names):
/// - `redis_command_duration_seconds{operation}`: from a command's dispatch to its reply (redirects included), by
///   operation — a script's name (`authenticate`) or the command names (`GET+PTTL` for a pipeline);
/// - `redis_commands_in_flight`: operations sent and not yet answered;
/// - `redis_connections`: pooled connections up now; `redis_reconnects_total`: connections made again after one was lost.
///
/// A span per operation (kind client, `db.system.name=redis`, `db.operation.name`, never a key or an argument: keys
/// are derived from tokens) is made only inside a traced request — when `ServiceContext.current` holds one — so
/// background traffic (pings, topology polls) makes no root spans, and nothing at all when tracing is off.
final class RedisTelemetry: Sendable {
    private let tracer = ActiveTracer()
    private let database: String
    private let inFlight = Meter(label: "redis_commands_in_flight")
    private let connections = Meter(label: "redis_connections")
    private let reconnects = Counter(label: "redis_reconnects_total")
    private let durations = NIOLockedValueBox<[String: Metrics.Timer]>([:])
    private let connectedBefore = NIOLockedValueBox<Set<String>>([])

    init(database: Int) {
        self.database = "\(database)"
    }

    /// One operation in flight: ended exactly once, by `end(_:)`.
    struct Operation: Sendable {
        fileprivate let name: String
        fileprivate let start: ContinuousClock.Instant
        fileprivate let span: (any Span)?
    }

    /// Starts timing (and, in a traced request, a span for) one operation: a script (`script` names it, `commands[0]`
    /// runs it) or commands (named by their names: `GET+PTTL`).
    func begin(script: String?, _ commands: [RedisCommand]) -> Operation {
        inFlight.increment()
        let command = commands[0].name
        let name = script ?? (commands.count == 1 ? command : commands.map(\.name).joined(separator: "+"))
        let span = tracer.childSpan(script.map { "\(command) \($0)" } ?? name, ofKind: .client) { attributes in
            attributes["db.system.name"] = "redis"
            attributes["db.operation.name"] = commands.count == 1 || script != nil ? command : "PIPELINE"
            attributes["db.namespace"] = database
            if let script { attributes["db.stored_procedure.name"] = script }
            if commands.count > 1 { attributes["db.operation.batch.size"] = commands.count }
        }
        return Operation(name: name, start: .now, span: span)
    }

    /// Records the operation's latency and outcome.
    func end<T>(_ operation: Operation, _ result: Result<T, RedisError>) {
        inFlight.decrement()
        timer(operation.name).recordNanoseconds((ContinuousClock.now - operation.start).nanoseconds)
        guard let span = operation.span else { return }
        if case .failure(let error) = result {
            span.attributes["error.type"] = "\(error.code)"
            span.setStatus(SpanStatus(code: .error))
        }
        span.end()
    }

    private func timer(_ operation: String) -> Metrics.Timer {
        durations.withLockedValue { timers in
            if let timer = timers[operation] { return timer }
            let timer = Metrics.Timer(
                label: "redis_command_duration_seconds", dimensions: [("operation", operation)], preferredDisplayUnit: .seconds
            )
            timers[operation] = timer
            return timer
        }
    }

    /// Keeps the connection series current; called with every pool's events before whoever logs them.
    func record(_ event: RedisConnectionEvent) {
        switch event {
        case .connected(let slot, let node):
            connections.increment()
            if !connectedBefore.withLockedValue({ $0.insert("\(node)#\(slot)").inserted }) { reconnects.increment() }
        case .disconnected:
            connections.decrement()
        case .connectFailed, .masterChanged, .trackingReady, .trackingFailed:
            break
        }
    }
}

/// The process's tracer as a component holds it, read once when the component is made: nil while none is
/// bootstrapped, so with tracing off a request pays one nil check and nothing else.
package struct ActiveTracer: Sendable {
    package let tracer: (any Tracer)?

    package init() {
        let tracer = InstrumentationSystem.tracer
        self.tracer = tracer is NoOpTracer ? nil : tracer
    }

    /// A span for work done inside a traced request — its parent is `ServiceContext.current` — or nil outside one (so
    /// background work makes no root spans) and with tracing off. `attributes` runs only for a span that records: an
    /// unsampled one costs its context and nothing more.
    package func childSpan(
        _ name: @autoclosure () -> String, ofKind kind: SpanKind, _ attributes: (inout SpanAttributes) -> Void = { _ in }
    ) -> (any Span)? {
        guard let tracer, let parent = ServiceContext.current else { return nil }
        let span = tracer.startSpan(name(), context: parent, ofKind: kind)
        if span.isRecording { span.updateAttributes(attributes) }
        return span
    }
}
