import Redis

/// An error from the session core, in the core's own terms (the HTTP layer alone maps these to statuses).
///
/// A stable `code` (a struct around a private enum, so a new kind of failure breaks no caller's `switch`), a message
/// for people, and — for a store failure — the Redis error underneath, for the logs: a Lua bug must not read as
/// "store unavailable" with no detail. Messages never contain a token, a password or a hash.
public struct SessionError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure an error is; `text` is the API's `error` code.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String {
            case invalidRequest = "invalid_request"
            case usernameTaken = "username_taken"
            case registrationClosed = "registration_closed"
            case invalidCredentials = "invalid_credentials"
            case tooManyAttempts = "too_many_attempts"
            case storeUnavailable = "store_unavailable"
            case notFound = "not_found"
            case overloaded = "overloaded"
            case accountDisabled = "account_disabled"
            case invalidCode = "invalid_code"
            case invalidChallenge = "invalid_challenge"
            case reauthenticationRequired = "reauthentication_required"
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The code as the API spells it (`store_unavailable`).
        public var text: String { base.rawValue }
        public var description: String { base.rawValue }

        public static var invalidRequest: Self { .init(.invalidRequest) }
        public static var usernameTaken: Self { .init(.usernameTaken) }
        public static var registrationClosed: Self { .init(.registrationClosed) }
        public static var invalidCredentials: Self { .init(.invalidCredentials) }
        public static var tooManyAttempts: Self { .init(.tooManyAttempts) }
        /// The store failed or could not be reached; `underlying` says how.
        public static var storeUnavailable: Self { .init(.storeUnavailable) }
        public static var notFound: Self { .init(.notFound) }
        public static var overloaded: Self { .init(.overloaded) }
        /// The password was right, but an operator disabled the account.
        public static var accountDisabled: Self { .init(.accountDisabled) }
        /// A second-factor code (or recovery code) that is wrong, already used, or out of its window.
        public static var invalidCode: Self { .init(.invalidCode) }
        /// A login challenge that is unknown, expired, used, or voided by too many wrong codes.
        public static var invalidChallenge: Self { .init(.invalidChallenge) }
        /// A sensitive operation on a session whose login is older than `REAUTH_MAX_AGE`.
        public static var reauthenticationRequired: Self { .init(.reauthenticationRequired) }
    }

    /// The kind of failure.
    public let code: Code
    /// A human-readable explanation.
    public let message: String
    /// For `tooManyAttempts` and `overloaded`: seconds until a retry may succeed.
    public let retryAfter: Int?
    /// For `storeUnavailable`: the store's own error (a `RedisError`), for logs; never shown to clients.
    public let underlying: (any Error)?

    init(_ code: Code, _ message: String, retryAfter: Int? = nil, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
        self.underlying = underlying
    }

    /// `code: message`, and the underlying error's description when there is one (for logs).
    public var description: String {
        guard let underlying else { return "\(code): \(message)" }
        return "\(code): \(message) (\(underlying))"
    }

    public static func invalidRequest(_ message: String) -> Self { .init(.invalidRequest, message) }
    public static var usernameTaken: Self { .init(.usernameTaken, "that username is already registered") }
    public static var registrationClosed: Self { .init(.registrationClosed, "registration is closed on this service") }
    public static var invalidCredentials: Self { .init(.invalidCredentials, "unknown username or wrong password") }
    public static func tooManyAttempts(retryAfter: Int) -> Self {
        .init(.tooManyAttempts, "too many failed logins; try again later", retryAfter: max(1, retryAfter))
    }
    /// The store failed; `cause` is kept for the logs.
    public static func storeUnavailable(_ cause: (any Error)?) -> Self {
        .init(.storeUnavailable, "the session store is unavailable", underlying: cause)
    }
    public static var notFound: Self { .init(.notFound, "no such session") }
    public static var overloaded: Self { .init(.overloaded, "too many logins in progress; try again shortly", retryAfter: 1) }
    public static var accountDisabled: Self { .init(.accountDisabled, "this account is disabled") }
    public static var userNotFound: Self { .init(.notFound, "no such user") }
    public static var invalidCode: Self { .init(.invalidCode, "the code is wrong, expired or already used") }
    public static var invalidChallenge: Self {
        .init(.invalidChallenge, "the login challenge is unknown, expired or used up; log in with the password again")
    }
    public static var reauthenticationRequired: Self {
        .init(.reauthenticationRequired, "this needs a recent login: POST /v1/session/reauthenticate first")
    }
}

extension SessionError {
    /// A Redis failure in the core's terms: the one place the Redis stores map the client's errors, for the async and
    /// the event-loop forms alike.
    init(_ error: RedisError) {
        self = .storeUnavailable(error)
    }
}

/// Runs a Redis operation for the core: any failure of the store becomes `storeUnavailable`, keeping the cause.
func withStore<T>(_ body: () async throws -> T) async throws(SessionError) -> T {
    do {
        return try await body()
    } catch {
        throw .storeUnavailable(error)
    }
}
