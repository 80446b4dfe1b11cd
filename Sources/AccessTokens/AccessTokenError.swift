/// An error from the access-token layer: a stable `code` (a struct around a private enum, so new kinds break no
/// caller's `switch`) and a message for logs. Never carries a token, a key or a secret.
public struct AccessTokenError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What kind of failure an error is.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String {
            case malformed, unsupportedAlgorithm = "unsupported_algorithm", unknownKey = "unknown_key"
            case badSignature = "bad_signature", wrongType = "wrong_type", wrongIssuer = "wrong_issuer"
            case wrongAudience = "wrong_audience", expired, notYetValid = "not_yet_valid", invalidKeys = "invalid_keys"
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        public var description: String { base.rawValue }

        /// Not three base64url parts of JSON, or claims of the wrong shape.
        public static var malformed: Self { .init(.malformed) }
        /// `alg` is `none`, or not the algorithm the named key is allowed to verify.
        public static var unsupportedAlgorithm: Self { .init(.unsupportedAlgorithm) }
        /// No `kid`, or one the key set does not hold (a verifier may refresh its keys and try again).
        public static var unknownKey: Self { .init(.unknownKey) }
        public static var badSignature: Self { .init(.badSignature) }
        /// `typ` is not `at+jwt` (RFC 9068): an ID token or another JWT must not pass for an access token.
        public static var wrongType: Self { .init(.wrongType) }
        public static var wrongIssuer: Self { .init(.wrongIssuer) }
        public static var wrongAudience: Self { .init(.wrongAudience) }
        public static var expired: Self { .init(.expired) }
        public static var notYetValid: Self { .init(.notYetValid) }
        /// A key file or JWK Set that cannot be used (unreadable, badly formed, unsafe permissions, a short secret).
        public static var invalidKeys: Self { .init(.invalidKeys) }
    }

    public let code: Code
    public let message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }

    static func invalidKeys(_ message: String) -> Self { .init(.invalidKeys, message) }
}
