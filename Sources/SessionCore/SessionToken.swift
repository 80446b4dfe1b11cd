import Crypto
import Redis

/// A bearer token: a random UUID v4 in canonical lowercase text, the only secret a client holds.
///
/// 108 random bits from the system CSPRNG (`SystemRandomNumberGenerator`: getrandom(2) on Linux); the other 14 of a
/// UUID v4's 122 are its user's `ShardTag`, which puts the session in its user's Redis Cluster slot. They reveal
/// only which of 16384 buckets the user falls in, never who.
/// Parsing accepts exactly the canonical form, so malformed input is rejected without touching Redis.
/// Never logged or printed: `description` is redacted.
public struct SessionToken: Sendable, Hashable, CustomStringConvertible {
    /// The canonical text, `xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`.
    public let text: String

    private init(uncheckedText: String) { self.text = uncheckedText }

    /// A new random token for a user: it carries the user's shard tag in its first 14 bits.
    public static func random(for user: UserID) -> SessionToken {
        random(tag: user.tag)
    }

    /// A new random token bound to no user (122 random bits): for tests and decoys.
    public static func random() -> SessionToken { random(tag: nil) }

    /// A new random token: 122 random bits, or 108 and a tag.
    private static func random(tag: ShardTag?) -> SessionToken {
        var generator = SystemRandomNumberGenerator()
        var bytes = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        if let tag {
            bytes[0] = UInt8(tag.value >> 6)
            bytes[1] = UInt8(truncatingIfNeeded: tag.value << 2) | (bytes[1] & 0x03)
        }
        bytes[6] = (bytes[6] & 0x0F) | 0x40  // version 4
        bytes[8] = (bytes[8] & 0x3F) | 0x80  // RFC 4122 variant
        return SessionToken(uncheckedText: UUIDText.format(bytes))
    }

    /// The shard tag of the token's user (the slot of its session key on a cluster).
    public var tag: ShardTag { ShardTag(uuid: text.utf8) }

    /// Parses a token; nil unless `text` is a canonical lowercase UUID v4.
    public init?(_ text: String) {
        guard UUIDText.isCanonicalV4(text) else { return nil }
        self.text = text
    }

    /// Parses a token from part of a string (an Authorization header, say).
    public init?(_ text: Substring) {
        self.init(String(text))
    }

    /// The session's identity derived from the token: the first 16 bytes of SHA-256(token).
    ///
    /// Redis keys sessions by this, never by the token, so a dump, replica, MONITOR or backup yields nothing
    /// that authenticates. Its hex form is the public `session_id`: one-way, so it never reveals the token.
    public var sessionID: SessionID {
        var text = text
        let digest = text.withUTF8 { SHA256.hash(data: UnsafeRawBufferPointer($0)) }
        return SessionID(bytes: digest.withUnsafeBytes { Array($0.prefix(16)) })
    }

    public var description: String { "SessionToken(redacted)" }
}

/// A session's public handle: 16 bytes, shown as 32 lowercase hex digits.
public struct SessionID: Sendable, Hashable, CustomStringConvertible {
    /// The raw bytes, as they appear in Redis keys and index members.
    public let bytes: [UInt8]

    /// Wraps 16 raw bytes.
    public init(bytes: [UInt8]) {
        precondition(bytes.count == 16, "a session ID is 16 bytes")
        self.bytes = bytes
    }

    /// Parses 32 lowercase hex digits; nil otherwise.
    public init?(hex: some StringProtocol) {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 32 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        var index = 0
        while index < 32 {
            guard let high = Hex.value(utf8[index]), let low = Hex.value(utf8[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        self.bytes = bytes
    }

    /// 32 lowercase hex digits.
    public var hex: String { Hex.encode(bytes) }
    public var description: String { hex }
}

/// A user's identifier: a random UUID v4, stored as text in user records and as 16 bytes in sessions.
public struct UserID: Sendable, Hashable, CustomStringConvertible, Codable {
    /// Canonical lowercase UUID text.
    public let text: String

    /// A new random user ID.
    public static func random() -> UserID { UserID(uncheckedText: SessionToken.random().text) }

    /// The user's shard tag: 14 random bits of the ID, which every token of the user repeats.
    public var tag: ShardTag { ShardTag(uuid: text.utf8) }

    private init(uncheckedText: String) { self.text = uncheckedText }

    /// Parses canonical lowercase UUID v4 text.
    public init?(_ text: String) {
        guard UUIDText.isCanonicalV4(text) else { return nil }
        self.text = text
    }

    /// From the 16 bytes a session stores.
    init(bytes: some Collection<UInt8>) { self.text = UUIDText.format(Array(bytes)) }

    /// The 16 bytes a session stores.
    var bytes: [UInt8] {
        let digits = text.utf8.filter { $0 != UInt8(ascii: "-") }
        var result: [UInt8] = []
        result.reserveCapacity(16)
        var iterator = digits.makeIterator()
        while let high = iterator.next(), let low = iterator.next() {
            result.append((Hex.value(high) ?? 0) << 4 | (Hex.value(low) ?? 0))
        }
        return result
    }

    public var description: String { text }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let id = UserID(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a user ID"))
        }
        self = id
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }
}

enum UUIDText {
    /// The canonical text of 16 bytes (a verification formats its user's ID from the session value).
    static func format(_ bytes: [UInt8]) -> String {
        Hex.encode(bytes, dashesAfter: dashes)
    }

    private static let dashes = [4, 6, 8, 10]

    /// `xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`, lowercase hex only.
    /// On every authenticated request: one pass over contiguous bytes (a generic, enumerated version cost 6 % of a
    /// verification in the profile, in runtime metadata lookups).
    static func isCanonicalV4(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { isCanonicalV4($0) }
    }

    static func isCanonicalV4(_ utf8: UnsafeBufferPointer<UInt8>) -> Bool {
        guard utf8.count == 36 else { return false }
        for index in 0..<36 {
            let byte = utf8[index]
            switch index {
            case 8, 13, 18, 23:
                guard byte == UInt8(ascii: "-") else { return false }
            case 14:
                guard byte == UInt8(ascii: "4") else { return false }
            case 19:
                guard byte == UInt8(ascii: "8") || byte == UInt8(ascii: "9") || byte == UInt8(ascii: "a") || byte == UInt8(ascii: "b") else {
                    return false
                }
            default:
                guard Hex.value(byte) != nil else { return false }
            }
        }
        return true
    }
}
