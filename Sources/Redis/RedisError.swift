/// An error from the Redis client.
///
/// A struct around a private code, so new cases can be added without breaking callers; compare with the
/// static members (`error == .timeout`). Messages never contain command arguments: keys and values may be secrets.
public struct RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case unavailable
        case connectionClosed
        case timeout
        case server
        case protocolError
        case configuration
        case overloaded
        case shutdown
    }

    private let code: Code
    /// What went wrong, for logs and for people. For server errors, Redis' own reply text.
    public let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }

    public var description: String { "RedisError(\(code)): \(message)" }

    /// No connection to Redis is up: it is unreachable or still being dialled. Commands fail fast rather than queue.
    public static var unavailable: Self { .init(.unavailable, "Redis is unavailable") }
    /// Redis could not be reached, with why (equal to `.unavailable`).
    public static func unreachable(_ message: String) -> Self { .init(.unavailable, message) }
    /// The connection closed while the command was in flight; whether it ran is unknown.
    public static var connectionClosed: Self { .init(.connectionClosed, "connection to Redis closed") }
    /// No reply came within the command timeout (or the connection was not made within the connect timeout).
    public static var timeout: Self { .init(.timeout, "Redis did not answer in time") }
    /// Redis answered with an error reply; compare with `.server(...)` of any message.
    public static func server(_ message: String) -> Self { .init(.server, message) }
    /// Any server error reply, for comparisons: `error == .serverError`.
    public static var serverError: Self { .init(.server, "") }
    /// The bytes from Redis were not valid RESP, or a reply had an unexpected shape.
    public static func protocolError(_ message: String) -> Self { .init(.protocolError, message) }
    /// Any protocol error, for comparisons.
    public static var protocolViolation: Self { .init(.protocolError, "") }
    /// The configuration (for example the Redis URL) is invalid.
    public static func configuration(_ message: String) -> Self { .init(.configuration, message) }
    /// Any configuration error, for comparisons.
    public static var misconfigured: Self { .init(.configuration, "") }
    /// Too many commands are in flight on every connection; the command was refused rather than queued.
    public static var overloaded: Self { .init(.overloaded, "too many Redis commands in flight") }
    /// The client has shut down.
    public static var shutdown: Self { .init(.shutdown, "Redis client is shut down") }

    /// The first word of a server error (`WRONGTYPE`, `NOSCRIPT`, `ERR`), which names its kind.
    public var serverErrorPrefix: String? {
        guard code == .server else { return nil }
        return message.split(separator: " ", maxSplits: 1).first.map(String.init)
    }

    /// Whether the error means Redis could not be reached or did not answer (as opposed to a bad command).
    public var isUnavailability: Bool {
        switch code {
        case .unavailable, .connectionClosed, .timeout, .overloaded, .shutdown: return true
        default: return false
        }
    }
}
