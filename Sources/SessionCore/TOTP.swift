import Crypto
import Foundation

/// Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP): HMAC-SHA-1, 6 digits, 30-second steps — what every
/// authenticator app reads from an `otpauth://` URI.
public enum TOTP {
    public static let digits = 6
    public static let period: Int64 = 30
    /// Steps of clock skew accepted either side of now (RFC 6238 5.2 recommends at most one).
    public static let skew: Int64 = 1

    /// A new 160-bit secret (RFC 4226 4, R6's recommended length).
    public static func newSecret() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<20).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    /// The time step of a Unix time.
    public static func step(at unixSeconds: Int64) -> Int64 { unixSeconds / period }

    /// The code of one step, zero-padded to six digits.
    public static func code(secret: [UInt8], step: Int64) -> String {
        var counter = UInt64(bitPattern: step).bigEndian
        let message = withUnsafeBytes(of: &counter) { Array($0) }
        let mac = Array(HMAC<Insecure.SHA1>.authenticationCode(for: message, using: SymmetricKey(data: secret)))
        let offset = Int(mac[mac.count - 1] & 0x0F)
        let binary = (UInt32(mac[offset] & 0x7F) << 24) | (UInt32(mac[offset + 1]) << 16) | (UInt32(mac[offset + 2]) << 8) | UInt32(mac[offset + 3])
        let value = binary % 1_000_000
        let text = String(value)
        return String(repeating: "0", count: digits - text.count) + text
    }

    /// The step within ±`skew` of `step` whose code is `code` (the latest, should two match), or nil. Compares every
    /// candidate in constant time, so the time taken says nothing about which step (or digit) was near.
    public static func matchingStep(secret: [UInt8], code: String, around step: Int64) -> Int64? {
        let given = Array(code.utf8)
        guard given.count == digits, given.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else { return nil }
        var found: Int64?
        for candidate in (step - skew)...(step + skew) {
            let expected = Array(Self.code(secret: secret, step: candidate).utf8)
            var difference: UInt8 = 0
            for index in 0..<digits { difference |= expected[index] ^ given[index] }
            if difference == 0 { found = candidate }
        }
        return found
    }

    /// The `otpauth://totp/…` URI an authenticator app scans (Google Authenticator's key URI format).
    public static func uri(secret: [UInt8], issuer: String, account: String) -> String {
        let label = percentEncoded(issuer) + ":" + percentEncoded(account)
        return "otpauth://totp/\(label)?secret=\(Base32.encode(secret))&issuer=\(percentEncoded(issuer))&algorithm=SHA1&digits=6&period=30"
    }

    private static func percentEncoded(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~@")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

/// RFC 4648 base32 (upper case, no padding: what `otpauth://` secrets use).
public enum Base32 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    public static func encode(_ bytes: [UInt8]) -> String {
        var output: [UInt8] = []
        var buffer: UInt32 = 0
        var bits = 0
        for byte in bytes {
            buffer = (buffer << 8) | UInt32(byte)
            bits += 8
            while bits >= 5 {
                output.append(alphabet[Int((buffer >> UInt32(bits - 5)) & 31)])
                bits -= 5
            }
        }
        if bits > 0 { output.append(alphabet[Int((buffer << UInt32(5 - bits)) & 31)]) }
        return String(decoding: output, as: UTF8.self)
    }

    /// Decodes upper- or lower-case base32, ignoring padding and spaces; nil for any other character.
    public static func decode(_ text: String) -> [UInt8]? {
        var output: [UInt8] = []
        var buffer: UInt32 = 0
        var bits = 0
        for character in text.uppercased().utf8 where character != UInt8(ascii: "=") && character != UInt8(ascii: " ") {
            guard let value = alphabet.firstIndex(of: character) else { return nil }
            buffer = (buffer << 5) | UInt32(value)
            bits += 5
            if bits >= 8 {
                output.append(UInt8((buffer >> UInt32(bits - 8)) & 0xFF))
                bits -= 8
            }
        }
        return output
    }
}
