import Foundation
import Logging
import Redis
import ServiceSettings
import Testing

@testable import SessionHTTP

#if canImport(Glibc)
    import Glibc
#endif

/// The JSON log line and the request id rules, in process. The processes' logs are parsed whole by
/// `Tests/System/support/logcheck.py` after every system test; spans and metrics are checked end to end by
/// `Tests/System/test_observability.py`.
@Suite struct ObservabilityTests {
    /// Logs through a pipe and reads back what was written.
    private func lines(_ body: (Logger) -> Void) throws -> [[String: Any]] {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        var handler = JSONLogHandler(label: "test-logger", output: fds[1])
        handler.logLevel = .trace
        handler[metadataKey: "handler.key"] = "from the handler"
        body(Logger(label: "test-logger") { _ in handler })
        close(fds[1])
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(fds[0], &buffer, buffer.count)
            if count <= 0 { break }
            data.append(contentsOf: buffer[0..<count])
        }
        close(fds[0])
        return try String(decoding: data, as: UTF8.self).split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        }
    }

    @Test func oneObjectPerLineWithTypedMetadata() throws {
        let entries = try lines { logger in
            logger.info(
                "a \"quoted\"\nmulti-line message ✓",
                metadata: [
                    "count": .stringConvertible(42), "ratio": .stringConvertible(0.25), "flag": .stringConvertible(true),
                    "text": "plain", "nested": ["inner": "value", "list": ["a", .stringConvertible(1)]],
                    "message": "a metadata key that would shadow the message", "control": "\u{1}\t",
                ]
            )
            logger.debug("second")
        }
        try #require(entries.count == 2)
        let first = entries[0]
        #expect(first["message"] as? String == "a \"quoted\"\nmulti-line message ✓")
        #expect(first["level"] as? String == "info")
        #expect(first["logger"] as? String == "test-logger")
        let time = try #require(first["time"] as? String)
        #expect(time.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"#, options: .regularExpression) != nil, "\(time)")
        #expect(first["count"] as? Int == 42)
        #expect(first["ratio"] as? Double == 0.25)
        #expect(first["flag"] as? Bool == true)
        #expect(first["text"] as? String == "plain")
        #expect(first["control"] as? String == "\u{1}\t")
        #expect(first["handler.key"] as? String == "from the handler")
        #expect(first["metadata.message"] as? String == "a metadata key that would shadow the message")
        let nested = try #require(first["nested"] as? [String: Any])
        #expect(nested["inner"] as? String == "value")
        #expect((nested["list"] as? [Any])?.count == 2)
        #expect(entries[1]["level"] as? String == "debug")
    }

    @Test func newRequestIdsAre32HexDigitsAndDistinct() {
        let ids = (0..<1000).map { _ in RequestTelemetry.newID() }
        #expect(Set(ids).count == 1000)
        #expect(ids.allSatisfy { $0.utf8.count == 32 && $0.utf8.allSatisfy { Hex.value($0) != nil } })
        // Random throughout: no per-process half, no counter that tells an instance's traffic volume.
        #expect(Set(ids.map { $0.prefix(16) }).count == 1000)
        #expect(Set(ids.map { $0.suffix(4) }).count > 900)
    }

    @Test func aRequestIdIsKeptOnlyWhenPlain() {
        for plain in [
            "a", "0af7651916cd43dd8448eb211c80319c", "edge-42.a:b/c", String(repeating: "x", count: 128), "dGVzdA+/w==",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1", "req#1",
        ] {
            #expect(RequestTelemetry.isPlain(plain), "\(plain)")
        }
        for unsafe in ["", "a b", "a\"b", "a\nb", "a\tb", "ünï", String(repeating: "x", count: 129), "a\\b", "a,b", "\u{7F}"] {
            #expect(!RequestTelemetry.isPlain(unsafe), "\(unsafe)")
        }
    }
}
