/// Lowercase hex, written once for every layer: script SHA-1s, session IDs, percent-decoding, JSON escapes.
package enum Hex {
    /// `0123456789abcdef`, by value.
    package static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    /// The value of one hex digit; `acceptsUppercase` for percent-encoding (RFC 3986 allows both cases).
    package static func value(_ byte: UInt8, acceptsUppercase: Bool = false) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F") where acceptsUppercase: return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Two lowercase digits per byte.
    package static func encode(_ bytes: [UInt8]) -> String {
        encode(bytes, dashesAfter: [])
    }

    /// Two lowercase digits per byte, with a `-` after the bytes at the given offsets (a UUID's 4, 6, 8, 10): one
    /// allocation, the string's own (session and user IDs are formatted on every verification).
    package static func encode(_ bytes: [UInt8], dashesAfter dashes: [Int]) -> String {
        String(unsafeUninitializedCapacity: bytes.count * 2 + dashes.count) { out in
            var position = 0
            var nextDash = 0
            for (offset, byte) in bytes.enumerated() {
                if nextDash < dashes.count, dashes[nextDash] == offset {
                    out[position] = UInt8(ascii: "-")
                    position += 1
                    nextDash += 1
                }
                out[position] = lowercase(byte >> 4)
                out[position + 1] = lowercase(byte & 0x0F)
                position += 2
            }
            return position
        }
    }

    @inline(__always)
    private static func lowercase(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") - 10 + nibble
    }
}
