/// An error from the Redis client.
///
/// A stable `code` (a struct around a private enum, as valkey-swift's and Hummingbird's errors are, so a new kind of
/// failure can be added without breaking a caller's `switch`) and a message for logs and people. Compare codes:
/// `error.code == RedisError(.timeout)`. Messages never contain command arguments: keys and values may be secrets.
public struct RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure an error is.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String {
            case unavailable, connectionClosed, timeout, server, protocolError, configuration, overloaded, shutdown, notReplicated
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        public var description: String { base.rawValue }

        /// No connection to Redis is up: it is unreachable or still being dialled. Commands fail fast rather than queue.
        public static var unavailable: Self { .init(.unavailable) }
        /// The connection closed while the command was in flight; whether it ran is unknown.
        public static var connectionClosed: Self { .init(.connectionClosed) }
        /// No reply came within the command timeout (or no connection within the connect timeout).
        public static var timeout: Self { .init(.timeout) }
        /// Redis answered with an error reply (the message is Redis' own text, e.g. `WRONGTYPE …`).
        public static var server: Self { .init(.server) }
        /// The bytes from Redis were not valid RESP, or a reply had an unexpected shape.
        public static var protocolError: Self { .init(.protocolError) }
        /// The configuration (for example the Redis URL) is invalid.
        public static var configuration: Self { .init(.configuration) }
        /// Too many commands are in flight on every connection; the command was refused rather than queued.
        public static var overloaded: Self { .init(.overloaded) }
        /// The client has shut down.
        public static var shutdown: Self { .init(.shutdown) }
        /// A durable write ran on the master, but `WAIT` saw fewer replicas confirm it than asked for in time: it may
        /// not survive a failover. The caller may retry.
        public static var notReplicated: Self { .init(.notReplicated) }
    }

    /// The kind of failure.
    public let code: Code
    /// What went wrong, for logs and for people. For server errors, Redis' own reply text.
    public let message: String

    /// An error of a kind, with why (by default, a sentence naming the kind).
    public init(_ code: Code, _ message: String? = nil) {
        self.code = code
        self.message = message ?? code.defaultMessage
    }

    public var description: String { "RedisError(\(code)): \(message)" }

    /// The first word of a server error (`WRONGTYPE`, `NOSCRIPT`, `ERR`), which names its kind.
    public var serverErrorPrefix: String? {
        guard code == .server else { return nil }
        return message.split(separator: " ", maxSplits: 1).first.map(String.init)
    }
}

extension RedisError.Code {
    fileprivate var defaultMessage: String {
        switch self {
        case .unavailable: "Redis is unavailable"
        case .connectionClosed: "connection to Redis closed"
        case .timeout: "Redis did not answer in time"
        case .overloaded: "too many Redis commands in flight"
        case .shutdown: "Redis client is shut down"
        case .protocolError: "unexpected reply from Redis"
        case .configuration: "invalid Redis configuration"
        case .notReplicated: "write not confirmed by enough replicas"
        default: "Redis answered with an error"
        }
    }
}
