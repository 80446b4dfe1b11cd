import Foundation
import Logging
import OTel
import ServiceLifecycle
import SessionHTTP
import Tracing

/// Traces and metric buckets: the executable's choices, made before anything that records is built.
enum Telemetry {
    /// Histogram buckets (seconds) for every timer: 100 µs to 10 s, so a 0.3 ms verification and a 300 ms login both land
    /// in a bucket of their own size.
    static let durationBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]

    /// OpenTelemetry traces over OTLP/HTTP (protobuf), when `OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and `OTEL_SDK_DISABLED` is not `true`); swift-otel reads the other
    /// standard variables (`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_HEADERS`…).
    /// Only traces: logs and metrics have their own outputs (`LOG_FORMAT`, `/metrics`).
    /// - Returns: the exporter's service, to run beside the server; nil when tracing is off (then nothing is
    ///   bootstrapped, and every component sees no tracer: no span is ever made).
    /// The head sampling (`TraceSampling`) is read from `OTEL_TRACES_SAMPLER`/`_ARG` and returned; the SDK is then set to
    /// record every span it is handed — in the environment too, whose values swift-otel applies over the code's.
    static func bootstrapTracing(environment: [String: String], logger: Logger) throws -> (service: any Service, sampling: TraceSampling)? {
        let endpoint = environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] ?? environment["OTEL_EXPORTER_OTLP_ENDPOINT"]
        guard let endpoint, !endpoint.isEmpty, environment["OTEL_SDK_DISABLED"]?.lowercased() != "true" else { return nil }
        var configuration = OTel.Configuration.default
        configuration.serviceName = "session-service"
        configuration.traces.otlpExporter.protocol = .httpProtobuf
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        // The exporter's own diagnostics go through the service's logger (and so its LOG_FORMAT), not to the console.
        configuration.diagnosticLogger = .custom(logger)
        configuration.diagnosticLogLevel = .warning  // OTEL_LOG_LEVEL overrides
        let sampling = TraceSampling(sampler: environment["OTEL_TRACES_SAMPLER"], argument: environment["OTEL_TRACES_SAMPLER_ARG"])
        if let sampling {
            configuration.traces.sampler = sampling.parentBased ? .parentBasedAlwaysOn : .alwaysOn
            // Before any request and any exporter thread: nothing else reads the environment while it changes.
            setenv("OTEL_TRACES_SAMPLER", sampling.recorder, 1)
            unsetenv("OTEL_TRACES_SAMPLER_ARG")
        }
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        InstrumentationSystem.bootstrap(backend.factory)
        // Without any user:password@ the URL might carry.
        let shown = endpoint.split(separator: "@").last.map(String.init) ?? endpoint
        logger.info("exporting traces", metadata: ["otel.endpoint": "\(shown)"])
        return (backend.service, sampling ?? .parentBasedAlwaysOn)
    }
}
