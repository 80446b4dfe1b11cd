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

    /// Passwords: 8–256 characters, no control characters (NUL, CR, LF…).
    public static func validatePassword(_ password: String) throws(SessionError) {
        guard (8...256).contains(password.count) else { throw .invalidRequest("password must be 8 to 256 characters") }
        guard !password.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw .invalidRequest("password must not contain control characters")
        }
    }

    /// The case-insensitive form a username is unique under.
    public static func normalize(_ username: String) -> String {
        String(decoding: username.utf8.map { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) ? $0 + 32 : $0 }, as: UTF8.self)
    }
}
