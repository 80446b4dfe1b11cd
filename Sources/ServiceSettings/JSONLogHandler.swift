import Foundation
public import Logging
import NIOConcurrencyHelpers
import NIOCore
import SessionHTTP

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `LOG_FORMAT=json`: one JSON object per line on standard output, for log pipelines (Loki, Elasticsearch, Vector…):
///
/// ```json
/// {"time":"2026-11-27T16:20:00.123Z","level":"debug","logger":"session-service","message":"request",
///  "request_id":"…","http.method":"GET","http.route":"/v1/verify","http.status":200,"http.duration_ms":0.41,…}
/// ```
/// `time` is RFC 3339 in UTC with milliseconds; the metadata (the handler's, the provider's, the entry's, later
/// winning) follows as top-level fields — integers and fractions as JSON numbers, nested metadata as objects and
/// arrays — except a key that would shadow `time`, `level`, `logger` or `message`, which gets a `metadata.` prefix.
/// Each line is one `write(2)`, so lines from different threads never interleave.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let output: Int32

    /// - Parameters:
    ///   - label: the logger's label (the `logger` field).
    ///   - output: the file descriptor lines go to (1, standard output, by default).
    public init(label: String, output: Int32 = 1, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.output = output
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let provided = metadataProvider?.get() { fields.merge(provided) { $1 } }
        if let given = event.metadata { fields.merge(given) { $1 } }
        var line = ByteBuffer()
        line.writeStaticString("{\"time\":\"")
        line.writeString(UTCTime.rfc3339(Date()))
        line.writeStaticString("\",\"level\":\"")
        line.writeString(event.level.rawValue)
        line.writeStaticString("\",\"logger\":")
        JSONWriter.writeString(label, into: &line)
        line.writeStaticString(",\"message\":")
        JSONWriter.writeString(event.message.description, into: &line)
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
            line.writeStaticString(",")
            JSONWriter.writeString(Self.reserved.contains(key) ? "metadata.\(key)" : key, into: &line)
            line.writeStaticString(":")
            Self.append(value, to: &line)
        }
        line.writeStaticString("}\n")
        line.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(output, bytes.baseAddress! + offset, bytes.count - offset)
                if written > 0 {
                    offset += written
                } else if written < 0 && errno == EINTR {
                    continue
                } else {
                    return  // a closed or full output: the entry is dropped rather than the process stopped
                }
            }
        }
    }

    private static let reserved: Set<String> = ["time", "level", "logger", "message"]

    private static func append(_ value: Logger.Metadata.Value, to buffer: inout ByteBuffer) {
        switch value {
        case .string(let text):
            JSONWriter.writeString(text, into: &buffer)
        case .stringConvertible(let convertible):
            switch convertible {
            case let number as Int: buffer.writeString(String(number))
            case let number as Int64: buffer.writeString(String(number))
            case let number as UInt64: buffer.writeString(String(number))
            case let number as Double where number.isFinite: buffer.writeString(String(number))
            case let flag as Bool: buffer.writeStaticString(flag ? "true" : "false")
            default: JSONWriter.writeString(convertible.description, into: &buffer)
            }
        case .dictionary(let dictionary):
            buffer.writeStaticString("{")
            for (index, (key, nested)) in dictionary.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { buffer.writeStaticString(",") }
                JSONWriter.writeString(key, into: &buffer)
                buffer.writeStaticString(":")
                append(nested, to: &buffer)
            }
            buffer.writeStaticString("}")
        case .array(let array):
            buffer.writeStaticString("[")
            for (index, nested) in array.enumerated() {
                if index > 0 { buffer.writeStaticString(",") }
                append(nested, to: &buffer)
            }
            buffer.writeStaticString("]")
        }
    }
}
