/// How to reach Redis and how patient to be with it.
///
/// | setting | meaning | default |
/// |---|---|---|
/// | `endpoint` | host and port, or a Unix socket path | from the URL |
/// | `username`, `password` | `AUTH` (ACL user, or password only) | none |
/// | `database` | `SELECT`ed after connecting | 0 |
/// | `connectionCount` | connections in the pool; each multiplexes (pipelines) many commands | 2 |
/// | `connectTimeout` | a connection attempt, handshake included | 1 s |
/// | `commandTimeout` | from sending a command to its reply | 1 s |
/// | `maxInFlightPerConnection` | commands awaiting a reply on one connection; beyond, new ones fail with `RedisError(.overloaded)` | 4096 |
/// | `reconnectBackoff` | first and largest wait between reconnection attempts (doubling, with jitter) | 25 ms … 1 s |
public struct RedisConfiguration: Sendable, Equatable {
    /// Where Redis listens.
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case unixSocket(path: String)
    }

    public var endpoint: Endpoint
    public var username: String?
    public var password: String?
    public var database: Int
    public var connectionCount: Int
    public var connectTimeout: Duration
    public var commandTimeout: Duration
    public var maxInFlightPerConnection: Int
    public var minimumReconnectDelay: Duration
    public var maximumReconnectDelay: Duration

    /// A configuration with every setting given or defaulted.
    public init(
        endpoint: Endpoint,
        username: String? = nil,
        password: String? = nil,
        database: Int = 0,
        connectionCount: Int = 2,
        connectTimeout: Duration = .seconds(1),
        commandTimeout: Duration = .seconds(1),
        maxInFlightPerConnection: Int = 4096,
        minimumReconnectDelay: Duration = .milliseconds(25),
        maximumReconnectDelay: Duration = .seconds(1)
    ) {
        self.endpoint = endpoint
        self.username = username
        self.password = password
        self.database = database
        self.connectionCount = max(1, connectionCount)
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.maxInFlightPerConnection = max(1, maxInFlightPerConnection)
        self.minimumReconnectDelay = minimumReconnectDelay
        self.maximumReconnectDelay = maximumReconnectDelay
    }

    /// Reads a Redis URL: `redis://[user[:password]@]host[:port][/db]` or `unix:///path/to/redis.sock[?db=N]`.
    ///
    /// User and password may be percent-encoded. An empty user with a password (`redis://:secret@host`) is
    /// password-only AUTH. IPv6 hosts go in brackets (`redis://[::1]:6379`).
    /// - Throws: `RedisError.configuration` naming what is wrong; the message never repeats the password.
    public init(url: String) throws {
        if url.hasPrefix("unix://") {
            let rest = url.dropFirst("unix://".count)
            let (pathPart, query) = Self.splitOnce(rest, "?")
            guard pathPart.hasPrefix("/"), pathPart.count > 1 else {
                throw RedisError(.configuration, "unix URL needs an absolute socket path: unix:///path/to/redis.sock")
            }
            var database = 0
            var password: String?
            for pair in query?.split(separator: "&") ?? [] {
                let (name, value) = Self.splitOnce(pair, "=")
                switch name {
                case "db": database = try Self.parseDatabase(value ?? "")
                case "password": password = try Self.percentDecode(value ?? "")
                default: throw RedisError(.configuration, "unknown unix URL parameter '\(name)' (known: db, password)")
                }
            }
            self.init(endpoint: .unixSocket(path: String(pathPart)), password: password, database: database)
            return
        }
        guard url.hasPrefix("redis://") else {
            throw RedisError(.configuration, "Redis URL must start with redis:// or unix:// (rediss:// is not supported yet)")
        }
        var rest = Substring(url.dropFirst("redis://".count))
        var username: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            let (user, pass) = Self.splitOnce(userInfo, ":")
            if let pass {
                password = try Self.percentDecode(pass)
                username = user.isEmpty ? nil : try Self.percentDecode(user)
            } else {
                // `redis://secret@host` is how many clients spell password-only AUTH.
                password = try Self.percentDecode(user)
            }
        }
        let (hostPort, pathPart) = Self.splitOnce(rest, "/")
        var host: Substring
        var portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else {
                throw RedisError(.configuration, "IPv6 host in the Redis URL lacks its closing ]")
            }
            host = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else if !after.isEmpty {
                throw RedisError(.configuration, "unexpected text after the IPv6 host in the Redis URL")
            }
        } else {
            (host, portText) = Self.splitOnce(hostPort, ":")
        }
        guard !host.isEmpty else { throw RedisError(.configuration, "Redis URL has no host: redis://host[:port][/db]") }
        var port = 6379
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw RedisError(.configuration, "Redis URL port must be a number from 1 to 65535")
            }
            port = value
        }
        var database = 0
        if let pathPart, !pathPart.isEmpty {
            let (dbText, _) = Self.splitOnce(pathPart, "?")
            if !dbText.isEmpty { database = try Self.parseDatabase(dbText) }
        }
        self.init(endpoint: .tcp(host: String(host), port: port), username: username, password: password, database: database)
    }

    private static func parseDatabase(_ text: Substring) throws -> Int {
        guard let value = Int(text), value >= 0 else {
            throw RedisError(.configuration, "Redis database must be a number ≥ 0")
        }
        return value
    }

    private static func splitOnce(_ text: Substring, _ separator: Character) -> (Substring, Substring?) {
        guard let index = text.firstIndex(of: separator) else { return (text, nil) }
        return (text[..<index], text[text.index(after: index)...])
    }

    private static func percentDecode(_ text: Substring) throws -> String {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap({ Hex.value($0, acceptsUppercase: true) }),
                    let low = iterator.next().flatMap({ Hex.value($0, acceptsUppercase: true) })
                else {
                    throw RedisError(.configuration, "bad percent-encoding in the Redis URL's credentials")
                }
                bytes.append(high << 4 | low)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension RedisConfiguration: CustomStringConvertible {
    /// The endpoint and database, never the password.
    public var description: String {
        switch endpoint {
        case .tcp(let host, let port): return "redis://\(username.map { "\($0)@" } ?? "")\(host):\(port)/\(database)"
        case .unixSocket(let path): return "unix://\(path)?db=\(database)"
        }
    }
}
