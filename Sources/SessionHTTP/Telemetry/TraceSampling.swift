import Redis

/// Which requests get a span, decided at the head — before any span, context or trace ID is made — so that a request
/// not sampled costs one header read and a comparison, nothing more.
///
/// It follows the OpenTelemetry samplers the service is configured with (`OTEL_TRACES_SAMPLER`,
/// `OTEL_TRACES_SAMPLER_ARG`): `always_on`, `always_off`, `traceidratio` and their `parentbased_` forms. A parent-based
/// sampler follows an incoming W3C `traceparent`'s sampled flag; a root request (or, for the plain forms, every
/// request) is sampled with the configured probability, drawn from per-thread system randomness. The tracing SDK is
/// then told to record every span it is handed (`recorder`): with its own ratio as well, the sampled would be sampled
/// again (ratio²).
public struct TraceSampling: Sendable, Equatable {
    /// The probability of sampling a request the parent does not decide.
    public let ratio: Double
    /// Whether an incoming `traceparent`'s sampled flag decides.
    public let parentBased: Bool

    /// Every request traced, unless an incoming `traceparent` says it is not sampled (the SDK's default).
    public static let parentBasedAlwaysOn = TraceSampling(ratio: 1, parentBased: true)

    public init(ratio: Double, parentBased: Bool) {
        self.ratio = min(1, max(0, ratio.isNaN ? 1 : ratio))
        self.parentBased = parentBased
    }

    /// The sampling `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` name; nil for a sampler decided elsewhere
    /// (`xray`, `jaeger_remote`…), which is left to the SDK. An unset sampler is the SDK's default, parent-based always-on;
    /// a missing or invalid ratio is 1.0, as the specification says.
    public init?(sampler: String?, argument: String?) {
        let ratio = argument.flatMap { Double(Substring($0).trimmingSpaces) }.flatMap { (0...1).contains($0) ? $0 : nil } ?? 1
        switch sampler.map({ Substring($0).trimmingSpaces.lowercased() }) ?? "parentbased_always_on" {
        case "", "parentbased_always_on": self.init(ratio: 1, parentBased: true)
        case "parentbased_always_off": self.init(ratio: 0, parentBased: true)
        case "parentbased_traceidratio": self.init(ratio: ratio, parentBased: true)
        case "always_on": self.init(ratio: 1, parentBased: false)
        case "always_off": self.init(ratio: 0, parentBased: false)
        case "traceidratio": self.init(ratio: ratio, parentBased: false)
        default: return nil
        }
    }

    /// The SDK sampler that records exactly the spans this lets through (`OTEL_TRACES_SAMPLER` spelling).
    public var recorder: String { parentBased ? "parentbased_always_on" : "always_on" }

    /// Whether a request with this `traceparent` (if any) is traced. `draw`: 64 random bits, asked only when the
    /// ratio decides.
    func admits(traceparent: String?, draw: () -> UInt64) -> Bool {
        if parentBased, let traceparent, let sampled = Self.sampledFlag(traceparent) { return sampled }
        if ratio >= 1 { return true }
        if ratio <= 0 { return false }
        return Double(draw() >> 11) * 0x1p-53 < ratio
    }

    /// The sampled flag of a valid W3C `traceparent` (`version-traceid-parentid-flags`); nil when it is not one (a
    /// tracer ignores an invalid header and starts a new trace).
    static func sampledFlag(_ header: String) -> Bool? {
        let utf8 = Array(header.utf8)
        guard utf8.count >= 55, utf8[2] == UInt8(ascii: "-"), utf8[35] == UInt8(ascii: "-"), utf8[52] == UInt8(ascii: "-"),
            utf8.count == 55 || utf8[55] == UInt8(ascii: "-"),
            !(utf8[0] == UInt8(ascii: "f") && utf8[1] == UInt8(ascii: "f"))
        else { return nil }
        var traceIsZero = true
        var parentIsZero = true
        for (index, byte) in utf8[0..<55].enumerated() where index != 2 && index != 35 && index != 52 {
            guard Hex.value(byte) != nil else { return nil }
            if (3..<35).contains(index), byte != UInt8(ascii: "0") { traceIsZero = false }
            if (36..<52).contains(index), byte != UInt8(ascii: "0") { parentIsZero = false }
        }
        guard !traceIsZero, !parentIsZero, let flags = Hex.value(utf8[54]) else { return nil }
        return flags & 1 == 1
    }
}
