import Atomics
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

#if canImport(Glibc)
    import Glibc
#endif

/// One connection to Redis: a SwiftNIO channel with a `RedisChannelHandler`, and many commands in flight on it.
final class RedisConnection: Sendable {
    let channel: any Channel
    /// The node this connection is to.
    let endpoint: RedisConfiguration.Endpoint
    private let handler: NIOLoopBound<RedisChannelHandler>
    private let inFlight: ManagedAtomic<Int>
    private let maxInFlight: Int
    /// Set by the handler the moment it stops taking commands (a read error, a protocol error, a stall), which is
    /// before the channel reports inactive: no command is handed to a connection that would fail it at once.
    private let failed: ManagedAtomic<Bool>
    /// Whether every byte received has been handled: kept for tracking listeners over TCP (see `TrackingBacklog`).
    let backlog: TrackingBacklog?

    private init(
        channel: any Channel, endpoint: RedisConfiguration.Endpoint, handler: NIOLoopBound<RedisChannelHandler>, inFlight: ManagedAtomic<Int>,
        maxInFlight: Int,
        failed: ManagedAtomic<Bool>, backlog: TrackingBacklog?
    ) {
        self.backlog = backlog
        self.channel = channel
        self.endpoint = endpoint
        self.handler = handler
        self.inFlight = inFlight
        self.maxInFlight = maxInFlight
        self.failed = failed
    }

    /// The idle time before keepalive probes: `TCP_KEEPIDLE` on Linux, `TCP_KEEPALIVE` on Darwin.
    #if os(Linux)
        private static let keepAliveIdle = TCP_KEEPIDLE
    #else
        private static let keepAliveIdle = TCP_KEEPALIVE
    #endif

    /// What a connection is for, which decides its handshake.
    enum Purpose: Sendable {
        /// A data node: AUTH with the data credentials, SELECT the database.
        case data
        /// A data node that must be a master: also checks `ROLE` (a restarted old master says master, empty, for a
        /// while; a demoted one says slave), so writes never go to a node that would lose or refuse them.
        case master
        /// A sentinel: AUTH with the sentinel password, nothing else.
        case sentinel
    }

    /// Connects, then authenticates and selects the database before anyone else may use the connection.
    /// `countingBacklog`: a tracking listener, whose handled bytes are counted against its socket's (TCP only).
    static func connect(
        to endpoint: RedisConfiguration.Endpoint,
        configuration: RedisConfiguration,
        purpose: Purpose = .data,
        tls: NIOSSLContext? = nil,
        on eventLoop: any EventLoop,
        countingBacklog: Bool = false,
        onPush: (@Sendable (RESPValue) -> Void)? = nil
    ) async throws -> RedisConnection {
        // A listener's socket is made here, not by NIO, so that its descriptor is known to ask the kernel about.
        let descriptor: CInt?
        if countingBacklog, case .tcp(let host, let port) = endpoint {
            descriptor = try await TrackingBacklog.connectedSocket(host: host, port: port, timeout: TimeAmount(configuration.connectTimeout))
        } else {
            descriptor = nil
        }
        let backlog = descriptor.map { TrackingBacklog(descriptor: $0) }
        let inFlight = ManagedAtomic(0)
        let failed = ManagedAtomic(false)
        let failure = NIOLockedValueBox<RedisError?>(nil)
        let commandTimeout = TimeAmount(configuration.commandTimeout)
        // A connection whose oldest command waits this long is presumed dead (a black-holed peer, say).
        let stallTimeout = max(commandTimeout * 4, .seconds(2))
        var bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(configuration.connectTimeout))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let backlog { try channel.pipeline.syncOperations.addHandler(TrackingBacklog.CountingHandler(backlog)) }
                    if let tls, case .tcp(let host, _) = endpoint {
                        // SNI and host-name verification need a name; for an IP address NIOSSL checks the
                        // certificate's IP entries against the peer address instead.
                        let name = host.isIPAddress ? nil : host
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: name))
                    }
                    let handler = RedisChannelHandler(
                        commandTimeout: commandTimeout, stallTimeout: stallTimeout,
                        onComplete: { count in inFlight.wrappingDecrement(by: count, ordering: .relaxed) },
                        onFailure: { error in
                            failure.withLockedValue { $0 = error }
                            failed.store(true, ordering: .relaxed)
                        },
                        onPush: onPush
                    )
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        let channel: any Channel
        do {
            switch endpoint {
            case .tcp(let host, let port):
                bootstrap =
                    bootstrap
                    .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                    .channelOption(.socketOption(.so_keepalive), value: 1)
                    // Notice a dead peer within about 30 s instead of the kernel's two hours.
                    .channelOption(.tcpOption(.init(rawValue: Self.keepAliveIdle)), value: 15)
                    .channelOption(.tcpOption(.init(rawValue: TCP_KEEPINTVL)), value: 5)
                    .channelOption(.tcpOption(.init(rawValue: TCP_KEEPCNT)), value: 3)
                if let descriptor {
                    channel = try await bootstrap.withConnectedSocket(descriptor).get()
                } else {
                    channel = try await bootstrap.connect(host: host, port: port).get()
                }
            case .unixSocket(let path):
                channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
            }
        } catch let error as ChannelError where error == .connectTimeout(TimeAmount(configuration.connectTimeout)) {
            throw RedisError(.timeout)
        } catch {
            throw RedisError.unavailableBecause(error, endpoint: endpoint)
        }
        let handler: NIOLoopBound<RedisChannelHandler>
        do {
            handler = try await channel.eventLoop.submit {
                NIOLoopBound(try channel.pipeline.syncOperations.handler(type: RedisChannelHandler.self), eventLoop: channel.eventLoop)
            }.get()
        } catch {
            channel.close(promise: nil)
            // The channel closed before the handler could be found: a TLS handshake that failed (unknown CA, wrong host
            // name) closes it at once. The handler kept the reason; keep it for the log.
            throw failure.withLockedValue { $0 } ?? RedisError(.connectionClosed)
        }
        let connection = RedisConnection(
            channel: channel, endpoint: endpoint, handler: handler, inFlight: inFlight, maxInFlight: configuration.maxInFlightPerConnection,
            failed: failed, backlog: backlog
        )
        do {
            // The handshake: any error reply (WRONGPASS, NOAUTH, a bad database) keeps the connection from service.
            // A TLS failure (wrong CA, wrong host name) surfaces here, as the first command's failure.
            var handshake: [RedisCommand] = []
            let password = purpose == .sentinel ? configuration.sentinelPassword : configuration.password
            if let password {
                var auth = RedisCommand("AUTH")
                if purpose != .sentinel, let username = configuration.username { auth.append(username) }
                auth.append(password)
                handshake.append(auth)
            }
            if purpose != .sentinel, configuration.database != 0 { handshake.append(RedisCommand("SELECT", [configuration.database])) }
            handshake.append(RedisCommand(purpose == .master ? "ROLE" : "PING"))
            for command in handshake {
                let reply = try await connection.send(command)
                if case .error(let message) = reply { throw RedisError(.server, message) }
                if purpose == .master, command.name == "ROLE", reply.array?.first?.string != "master" {
                    throw RedisError(.unavailable, "\(endpoint) is not a master (ROLE: \(reply.array?.first?.string ?? "?"))")
                }
            }
        } catch {
            channel.close(promise: nil)
            throw error
        }
        return connection
    }

    /// Whether the connection takes commands: its channel is open and its handler has not failed.
    var isActive: Bool { channel.isActive && !failed.load(ordering: .relaxed) }

    /// Reserves room for `count` replies; false when the connection already has its maximum in flight.
    func reserve(_ count: Int = 1) -> Bool {
        if inFlight.loadThenWrappingIncrement(by: count, ordering: .relaxed) + count <= maxInFlight { return true }
        inFlight.wrappingDecrement(by: count, ordering: .relaxed)
        return false
    }

    /// Sends a command and waits for its reply. Error replies come back as `.error` values, not thrown.
    /// Callers that did not `reserve()` (the handshake) still count against the limit.
    func send(_ command: RedisCommand, reserved: Bool = false) async throws(RedisError) -> RESPValue {
        if !reserved { inFlight.wrappingIncrement(ordering: .relaxed) }
        return try await write(CollectionOfOne(command))
    }

    /// Sends several commands in one write; their replies come back in order. Room must be reserved.
    func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RESPValue] {
        try await write(commands).array ?? []
    }

    /// Encodes the commands into one buffer, then one hop to the event loop and straight into the handler: no
    /// pipeline traversal, no futures. Several commands come back as one `.array` of their replies.
    private func write(_ commands: some Collection<RedisCommand>) async throws(RedisError) -> RESPValue {
        let bytes = encode(commands)
        do {
            return try await withCheckedThrowingContinuation { continuation in
                enqueue(bytes, replyCount: commands.count, reply: .continuation(continuation))
            }
        } catch {
            // The handler only ever fails a command with a RedisError.
            throw error as? RedisError ?? RedisError(.connectionClosed)
        }
    }

    /// Sends commands from event-loop code, without a task: `completion` runs on this connection's event loop with
    /// the reply (an `.array` of the replies for several commands). Room must be reserved.
    func send(_ commands: some Collection<RedisCommand>, completion: @escaping @Sendable (Result<RESPValue, RedisError>) -> Void) {
        enqueue(encode(commands), replyCount: commands.count, reply: .callback(completion))
    }

    /// Hands encoded commands to the handler on its event loop: directly when already there, else one hop.
    private func enqueue(_ bytes: ByteBuffer, replyCount: Int, reply: ReplyHandler) {
        let handler = self.handler
        if channel.eventLoop.inEventLoop {
            handler.value.enqueue(bytes, replyCount: replyCount, reply: reply)
        } else {
            channel.eventLoop.execute { handler.value.enqueue(bytes, replyCount: replyCount, reply: reply) }
        }
    }

    private func encode(_ commands: some Collection<RedisCommand>) -> ByteBuffer {
        var bytes = channel.allocator.buffer(capacity: commands.reduce(0) { $0 + $1.storage.count + 16 * $1.count + 16 })
        for command in commands { command.encode(into: &bytes) }
        return bytes
    }

    /// The event loop this connection's I/O and callbacks run on.
    var eventLoop: any EventLoop { channel.eventLoop }

    /// Closes the channel; commands in flight fail with `RedisError(.connectionClosed)`.
    func close() async {
        try? await channel.close()
    }
}

extension RedisError {
    /// A connection failure, described without anything secret (NIO's and NIOSSL's errors name only addresses,
    /// certificates' verification results and host names).
    static func unavailableBecause(_ error: any Error, endpoint: RedisConfiguration.Endpoint? = nil) -> RedisError {
        if let error = error as? RedisError { return error }
        return RedisError(.unavailable, "cannot connect to Redis\(endpoint.map { " at \($0)" } ?? ""): \(error)")
    }
}

extension String {
    /// Whether the text is an IPv4 or IPv6 address (not a name to resolve).
    var isIPAddress: Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return withCString { inet_pton(AF_INET, $0, &v4) == 1 || inet_pton(AF_INET6, $0, &v6) == 1 }
    }
}
