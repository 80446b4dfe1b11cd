// Over 300 lines: one type's parsing — the URL forms of three topologies (`redis://`, `redis-sentinel://`,
// `redis-cluster://`, `rediss://`), their validation messages and the TLS context — read best together.

public import NIOSSL

/// How to reach Redis and how patient to be with it.
///
/// | setting | meaning | default |
/// |---|---|---|
/// | `topology` | one node, a Sentinel-watched master, or a Redis Cluster | from the URL |
/// | `tls` | TLS for every connection (certificate and host name verified) | `rediss…://` URLs |
/// | `username`, `password` | `AUTH` on the data nodes (ACL user, or password only) | none |
/// | `sentinelPassword` | `AUTH` on the sentinels (`REDIS_SENTINEL_PASSWORD`) | none |
/// | `database` | `SELECT`ed after connecting (a cluster has only 0) | 0 |
/// | `connectionCount` | connections in the pool of each node; each multiplexes (pipelines) many commands | 2 |
/// | `connectTimeout` | a connection attempt, handshake included | 1 s |
/// | `commandTimeout` | from sending a command to its reply | 1 s |
/// | `maxInFlightPerConnection` | commands awaiting a reply on one connection; beyond, new ones fail with `RedisError(.overloaded)` | 4096 |
/// | `reconnectBackoff` | first and largest wait between reconnection attempts (doubling, with jitter) | 25 ms … 1 s |
/// | `minReplicas` | replicas that must confirm a durable write (`WAIT`) before it is acknowledged | 1 for Sentinel and Cluster, 0 for one node |
/// | `waitTimeout` | how long `WAIT` waits for them | 100 ms |
/// | `trackingLease` | how long cached reads stay usable without a newer answered ping of their tracking pair | 500 ms |
public struct RedisConfiguration: Sendable, Equatable {
    /// Where Redis listens.
    public enum Endpoint: Sendable, Hashable, CustomStringConvertible {
        case tcp(host: String, port: Int)
        case unixSocket(path: String)

        public var description: String {
            switch self {
            case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            case .unixSocket(let path): path
            }
        }
    }

    /// The shape of the Redis deployment.
    public enum Topology: Sendable, Equatable {
        /// One node, used for everything.
        case single(Endpoint)
        /// A master found through Sentinel (asked in turn), re-resolved on every reconnect.
        case sentinel(masterName: String, sentinels: [Endpoint])
        /// A Redis Cluster, discovered from any of the seed nodes.
        case cluster(seeds: [Endpoint])
    }

    /// TLS for every connection: the server's certificate chain and host name are always verified.
    public struct TLS: Sendable, Equatable {
        /// PEM file of the certificate authorities to trust (nil: the system's).
        public var caFile: String?
        /// PEM client certificate and key, for servers that ask for one (`tls-auth-clients`).
        public var certificateFile: String?
        public var keyFile: String?

        public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
        }
    }

    public var topology: Topology
    public var tls: TLS?
    public var username: String?
    public var password: String?
    public var sentinelPassword: String?
    public var database: Int
    public var connectionCount: Int
    public var connectTimeout: Duration
    public var commandTimeout: Duration
    public var maxInFlightPerConnection: Int
    public var minimumReconnectDelay: Duration
    public var maximumReconnectDelay: Duration
    /// Replicas a durable write waits for; nil: the topology's default (see the table above).
    public var minReplicas: Int?
    public var waitTimeout: Duration
    /// How long a confirmed tracking pair's reads may be served without a newer ping answered (client-side caching).
    /// Must be shorter than the failure detection of the topology (Sentinel's `down-after-milliseconds`, the
    /// cluster's `cluster-node-timeout`): see `RedisTracker`.
    public var trackingLease: Duration = .milliseconds(500)

    /// A configuration with every setting given or defaulted.
    public init(
        topology: Topology,
        tls: TLS? = nil,
        username: String? = nil,
        password: String? = nil,
        sentinelPassword: String? = nil,
        database: Int = 0,
        connectionCount: Int = 2,
        connectTimeout: Duration = .seconds(1),
        commandTimeout: Duration = .seconds(1),
        maxInFlightPerConnection: Int = 4096,
        minimumReconnectDelay: Duration = .milliseconds(25),
        maximumReconnectDelay: Duration = .seconds(1),
        minReplicas: Int? = nil,
        waitTimeout: Duration = .milliseconds(100)
    ) {
        self.topology = topology
        self.tls = tls
        self.username = username
        self.password = password
        self.sentinelPassword = sentinelPassword
        self.database = database
        self.connectionCount = max(1, connectionCount)
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.maxInFlightPerConnection = max(1, maxInFlightPerConnection)
        self.minimumReconnectDelay = minimumReconnectDelay
        self.maximumReconnectDelay = maximumReconnectDelay
        self.minReplicas = minReplicas
        self.waitTimeout = waitTimeout
    }

    /// One node at `endpoint`.
    public init(endpoint: Endpoint, username: String? = nil, password: String? = nil, database: Int = 0) {
        self.init(topology: .single(endpoint), username: username, password: password, database: database)
    }

    /// The node of a single-node topology; for Sentinel and Cluster, the first sentinel or seed.
    public var endpoint: Endpoint {
        switch topology {
        case .single(let endpoint): endpoint
        case .sentinel(_, let sentinels): sentinels[0]
        case .cluster(let seeds): seeds[0]
        }
    }

    /// The replicas a durable write waits for, with the topology's default applied.
    public var effectiveMinReplicas: Int {
        if let minReplicas { return max(0, minReplicas) }
        if case .single = topology { return 0 }
        return 1
    }

    /// Reads a Redis URL:
    /// - `redis://[[user:]password@]host[:port][/db]` — one node (`rediss://`: over TLS);
    /// - `redis-sentinel://[[user:]password@]host1[:26379][,host2[:port]]…[/db]#master-name` — a master watched by
    ///   Sentinel (Lettuce's syntax; the credentials are the data nodes'); `rediss-sentinel://` over TLS;
    /// - `redis-cluster://[[user:]password@]host1[:port1][,host2[:port2]]…` — a Redis Cluster's seed nodes;
    ///   `rediss-cluster://` over TLS;
    /// - `unix:///path/to/redis.sock[?db=N]`.
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
        let schemes: [(String, kind: Int, tls: Bool)] = [
            ("redis://", 0, false), ("rediss://", 0, true), ("redis-sentinel://", 1, false), ("rediss-sentinel://", 1, true),
            ("redis-cluster://", 2, false), ("rediss-cluster://", 2, true),
        ]
        guard let (scheme, kind, tls) = schemes.first(where: { url.hasPrefix($0.0) }) else {
            throw RedisError(
                .configuration,
                "Redis URL must start with redis://, rediss://, redis-sentinel://, rediss-sentinel://, redis-cluster://, rediss-cluster:// or unix://"
            )
        }
        var rest = Substring(url.dropFirst(scheme.count))
        var masterName: String?
        if kind == 1 {
            let (beforeFragment, fragment) = Self.splitOnce(rest, "#")
            guard let fragment, !fragment.isEmpty else {
                throw RedisError(.configuration, "a redis-sentinel:// URL names its master after '#': redis-sentinel://host:26379#mymaster")
            }
            masterName = try Self.percentDecode(fragment)
            rest = beforeFragment
        } else if rest.contains("#") {
            throw RedisError(.configuration, "only redis-sentinel:// URLs take a '#master-name'")
        }
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
        let (hostList, pathPart) = Self.splitOnce(rest, "/")
        let defaultPort = kind == 1 ? 26379 : 6379
        let hosts = try hostList.split(separator: ",", omittingEmptySubsequences: false).map {
            try Self.parseHostPort($0, defaultPort: defaultPort)
        }
        if kind == 0, hosts.count != 1 {
            throw RedisError(.configuration, "a \(scheme) URL names one host; use redis-sentinel:// or redis-cluster:// for several")
        }
        var database = 0
        if let pathPart, !pathPart.isEmpty {
            let (dbText, _) = Self.splitOnce(pathPart, "?")
            if !dbText.isEmpty { database = try Self.parseDatabase(dbText) }
        }
        if kind == 2, database != 0 { throw RedisError(.configuration, "a Redis Cluster has only database 0") }
        let topology: Topology =
            switch kind {
            case 0: .single(hosts[0])
            case 1: .sentinel(masterName: masterName ?? "", sentinels: hosts)
            default: .cluster(seeds: hosts)
            }
        self.init(topology: topology, tls: tls ? TLS() : nil, username: username, password: password, database: database)
    }

    /// The TLS context for `tls`: full verification (chain and host name), the CA file's authorities (else the
    /// system's), and the client certificate when one is given.
    /// - Throws: `RedisError.configuration` naming the file that cannot be read.
    public static func makeTLSContext(_ tls: TLS) throws -> NIOSSLContext {
        var settings = TLSConfiguration.makeClientConfiguration()
        settings.certificateVerification = .fullVerification
        do {
            if let caFile = tls.caFile {
                settings.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            }
            switch (tls.certificateFile, tls.keyFile) {
            case (let certificate?, let key?):
                settings.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
                settings.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            case (nil, nil): break
            default: throw RedisError(.configuration, "REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together")
            }
            return try NIOSSLContext(configuration: settings)
        } catch let error as RedisError {
            throw error
        } catch {
            // NIOSSL names the failing file's problem, never key material.
            throw RedisError(.configuration, "cannot load the Redis TLS files: \(error)")
        }
    }

    /// `host[:port]` or `[ipv6][:port]`.
    private static func parseHostPort(_ hostPort: Substring, defaultPort: Int) throws -> Endpoint {
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
        guard !host.isEmpty else { throw RedisError(.configuration, "Redis URL has an empty host: redis://host[:port][/db]") }
        var port = defaultPort
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw RedisError(.configuration, "Redis URL port must be a number from 1 to 65535")
            }
            port = value
        }
        return .tcp(host: String(host), port: port)
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
    /// The topology, endpoints and database, never a password.
    public var description: String {
        let secure = tls == nil ? "" : "s"
        let user = username.map { "\($0)@" } ?? ""
        switch topology {
        case .single(.unixSocket(let path)): return "unix://\(path)?db=\(database)"
        case .single(let endpoint): return "redis\(secure)://\(user)\(endpoint)/\(database)"
        case .sentinel(let name, let sentinels):
            return "redis\(secure)-sentinel://\(user)\(sentinels.map(\.description).joined(separator: ","))/\(database)#\(name)"
        case .cluster(let seeds): return "redis\(secure)-cluster://\(user)\(seeds.map(\.description).joined(separator: ","))"
        }
    }
}
