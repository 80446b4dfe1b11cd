/// An error from the session core, in the core's own terms (the HTTP layer alone maps these to statuses).
///
/// A struct around a private code so cases can be added without breaking callers. Messages are for people
/// and never contain a token, a password or a hash.
public struct SessionError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is.
    public enum Code: String, Sendable, Hashable {
        case invalidRequest = "invalid_request"
        case usernameTaken = "username_taken"
        case registrationClosed = "registration_closed"
        case invalidCredentials = "invalid_credentials"
        case tooManyAttempts = "too_many_attempts"
        case storeUnavailable = "store_unavailable"
        case notFound = "not_found"
        case overloaded = "overloaded"
    }

    /// The kind of failure; its raw value is the API's `error` code.
    public let code: Code
    /// A human-readable explanation.
    public let message: String
    /// For `tooManyAttempts` and `overloaded`: seconds until a retry may succeed.
    public let retryAfter: Int?

    init(_ code: Code, _ message: String, retryAfter: Int? = nil) {
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
    }

    public var description: String { "\(code.rawValue): \(message)" }

    public static func invalidRequest(_ message: String) -> Self { .init(.invalidRequest, message) }
    public static var usernameTaken: Self { .init(.usernameTaken, "that username is already registered") }
    public static var registrationClosed: Self { .init(.registrationClosed, "registration is closed on this service") }
    public static var invalidCredentials: Self { .init(.invalidCredentials, "unknown username or wrong password") }
    public static func tooManyAttempts(retryAfter: Int) -> Self {
        .init(.tooManyAttempts, "too many failed logins; try again later", retryAfter: max(1, retryAfter))
    }
    public static var storeUnavailable: Self { .init(.storeUnavailable, "the session store is unavailable") }
    public static var notFound: Self { .init(.notFound, "no such session") }
    public static var overloaded: Self { .init(.overloaded, "too many logins in progress; try again shortly", retryAfter: 1) }
}

/// Runs a Redis operation for the core: any failure of the store becomes `storeUnavailable`, in this one place.
func withStore<T>(_ body: () async throws -> T) async throws(SessionError) -> T {
    do {
        return try await body()
    } catch {
        throw .storeUnavailable
    }
}
