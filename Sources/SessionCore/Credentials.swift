import Foundation

/// Username and password rules, checked before anything touches Redis or the hasher.
public enum Credentials {
    /// Usernames: 3–64 of ASCII letters, digits and `._-@`; unique case-insensitively.
    public static func validateUsername(_ username: String) throws(SessionError) {
        let utf8 = username.utf8
        guard (3...64).contains(utf8.count) else { throw .invalidRequest("username must be 3 to 64 characters") }
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "@"):
                continue
            default:
                throw .invalidRequest("username may contain only letters, digits and . _ - @")
            }
        }
    }

    /// Whether a password could be anyone's, whatever the policy was when it was set: login hashes nothing else (a
    /// malformed one fails like a wrong one, without the cost of a hash).
    public static func isPlausiblePassword(_ password: String) -> Bool {
        let scalars = password.unicodeScalars
        return !scalars.isEmpty && scalars.count <= 4 * PasswordPolicy.maximumLength
            && !scalars.contains(where: { $0.properties.generalCategory == .control })
    }

    /// The case-insensitive form a username is unique under.
    public static func normalize(_ username: String) -> String {
        String(decoding: username.utf8.map { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) ? $0 + 32 : $0 }, as: UTF8.self)
    }
}

/// The rules a new password must meet (registration, password change, operator reset) — NIST SP 800-63B 5.1.1.2's:
/// a minimum length, a maximum, not a known common password, not the username; no composition rules.
public struct PasswordPolicy: Sendable {
    /// Characters at least, counted as Unicode scalars of the NFC form (`PASSWORD_MIN_LENGTH`).
    public var minimumLength: Int
    /// Characters at most.
    public static let maximumLength = 256

    public init(minimumLength: Int = 8) {
        self.minimumLength = minimumLength
    }

    /// - Throws: `invalidRequest` with a message naming the rule the password breaks.
    public func check(_ password: String, username: String) throws(SessionError) {
        let normalized = password.precomposedStringWithCanonicalMapping
        let length = normalized.unicodeScalars.count
        guard length >= minimumLength else { throw .invalidRequest("password must be at least \(minimumLength) characters") }
        guard length <= Self.maximumLength else { throw .invalidRequest("password must be at most \(Self.maximumLength) characters") }
        guard !normalized.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw .invalidRequest("password must not contain control characters")
        }
        let folded = normalized.lowercased()
        guard folded != username.lowercased() else { throw .invalidRequest("password must not be the username") }
        guard !Self.commonPasswords.contains(folded) else {
            throw .invalidRequest("password is one of the 10,000 most common passwords")
        }
    }

    /// The list (`CommonPasswords.swift`), lowercased as it comes.
    static let commonPasswords: Set<String> = Set(commonPasswordList.split(separator: "\n").map(String.init))
}
