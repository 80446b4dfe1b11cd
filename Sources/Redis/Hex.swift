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
    package static func encode(_ bytes: some Collection<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
