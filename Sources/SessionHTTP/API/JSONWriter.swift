package import NIOCore
import Redis

/// Writes the small, flat JSON objects this API answers with, straight into a ByteBuffer.
///
/// Why not JSONEncoder: these bodies are on the hot path and have a handful of string fields; writing them
/// directly costs one allocation instead of a trip through Codable and Foundation.
package struct JSONWriter {
    /// The API's JSON media type.
    static let contentType = "application/json; charset=utf-8"

    private(set) var buffer = ByteBuffer()

    mutating func object(_ fields: (inout ObjectWriter) -> Void) {
        Self.writeObject(into: &buffer, fields)
    }

    /// `{…}` with the fields the closure writes: the one place objects are opened and closed.
    static func writeObject(into buffer: inout ByteBuffer, _ fields: (inout ObjectWriter) -> Void) {
        // Move the buffer into the writer and back (not copy): a second reference would make every write copy it.
        var writer = ObjectWriter(buffer: ByteBuffer())
        swap(&writer.buffer, &buffer)
        writer.buffer.writeStaticString("{")
        fields(&writer)
        writer.buffer.writeStaticString("}")
        swap(&writer.buffer, &buffer)
    }

    struct ObjectWriter {
        var buffer: ByteBuffer
        private var first = true

        init(buffer: ByteBuffer) { self.buffer = buffer }

        private mutating func key(_ name: StaticString) {
            if !first { buffer.writeStaticString(",") }
            first = false
            buffer.writeStaticString("\"")
            buffer.writeStaticString(name)
            buffer.writeStaticString("\":")
        }

        mutating func field(_ name: StaticString, _ value: String) {
            key(name)
            JSONWriter.writeString(value, into: &buffer)
        }

        mutating func field(_ name: StaticString, _ value: Int) {
            key(name)
            buffer.writeString(String(value))
        }

        /// A string, or `null` when nil.
        mutating func field(_ name: StaticString, _ value: String?) {
            key(name)
            if let value { JSONWriter.writeString(value, into: &buffer) } else { buffer.writeStaticString("null") }
        }

        mutating func field(_ name: StaticString, _ value: Bool) {
            key(name)
            buffer.writeStaticString(value ? "true" : "false")
        }

        mutating func field(_ name: StaticString, _ values: [String]) {
            key(name)
            buffer.writeStaticString("[")
            for (index, value) in values.enumerated() {
                if index > 0 { buffer.writeStaticString(",") }
                JSONWriter.writeString(value, into: &buffer)
            }
            buffer.writeStaticString("]")
        }

        mutating func array(_ name: StaticString, _ elements: [(inout ObjectWriter) -> Void]) {
            key(name)
            buffer.writeStaticString("[")
            for (index, element) in elements.enumerated() {
                if index > 0 { buffer.writeStaticString(",") }
                JSONWriter.writeObject(into: &buffer, element)
            }
            buffer.writeStaticString("]")
        }
    }

    package static func writeString(_ value: String, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("\"")
        // Nearly every value (ids, timestamps, codes) needs no escaping: copy it whole.
        if !value.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            buffer.writeString(value)
            buffer.writeStaticString("\"")
            return
        }
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): buffer.writeStaticString("\\\"")
            case UInt8(ascii: "\\"): buffer.writeStaticString("\\\\")
            case UInt8(ascii: "\n"): buffer.writeStaticString("\\n")
            case UInt8(ascii: "\r"): buffer.writeStaticString("\\r")
            case UInt8(ascii: "\t"): buffer.writeStaticString("\\t")
            case 0..<0x20:
                buffer.writeBytes([UInt8(ascii: "\\"), UInt8(ascii: "u"), 0x30, 0x30, Hex.digits[Int(byte >> 4)], Hex.digits[Int(byte & 0xF)]])
            default: buffer.writeInteger(byte)
            }
        }
        buffer.writeStaticString("\"")
    }
}
