import Atomics
public import Logging
import Metrics
import NIOConcurrencyHelpers
public import NIOCore
public import NIOPosix
public import ServiceLifecycle

/// What happened to a pooled connection, for whoever decides what is worth logging (the executable).
public enum RedisConnectionEvent: Sendable {
    /// Connection `slot` is up: connected, authenticated, database selected.
    case connected(slot: Int)
    /// An attempt to (re)connect `slot` failed; another follows after a backoff.
    case connectFailed(slot: Int, error: RedisError)
    /// Connection `slot` closed; commands in flight on it failed.
    case disconnected(slot: Int)
}

/// An async/await Redis client over a small pool of pipelined connections.
///
/// SwiftNIO owns the sockets and hiredis does the protocol (`redisFormatCommandArgv` to encode, a
/// `redisReader` to decode), so no call ever blocks a thread. Each connection carries many commands at
/// once; concurrent callers are spread over the pool round-robin, which pipelines them for free.
///
/// The client is a ServiceLifecycle `Service`: `run()` dials the connections, keeps them up (reconnecting
/// with capped, jittered exponential backoff) and closes them on graceful shutdown or cancellation.
/// While no connection is up, commands fail at once with `RedisError(.unavailable)` rather than queue.
public final class RedisClient: Service, Sendable {
    /// The client's settings.
    public let configuration: RedisConfiguration
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let onEvent: @Sendable (RedisConnectionEvent) -> Void
    private let slots: [NIOLockedValueBox<RedisConnection?>]
    /// The loop each slot's connection lives on: slots are spread over the group's loops in turn, so that with as
    /// many connections as loops every loop has one of its own (see `send(_:on:completion:)`).
    private let slotLoops: [any EventLoop]
    private let nextSlot = ManagedAtomic(0)
    private let isShutdown = ManagedAtomic(false)
    /// Commands written to Redis (a pipeline counts each command): what a request really costs in round trips.
    private let commandsSent = Counter(label: "redis_commands_sent_total")

    /// Creates a client; nothing connects until `run()`.
    /// - Parameters:
    ///   - configuration: where Redis is and how patient to be.
    ///   - eventLoopGroup: the loops the connections live on (share the HTTP server's to save thread hops).
    ///   - logger: debug-level connection logs.
    ///   - onEvent: told of connects, failures and disconnects.
    public init(
        configuration: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "redis"),
        onEvent: @escaping @Sendable (RedisConnectionEvent) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.onEvent = onEvent
        self.slots = (0..<configuration.connectionCount).map { _ in NIOLockedValueBox(nil) }
        let loops = Array(eventLoopGroup.makeIterator())
        self.slotLoops = (0..<configuration.connectionCount).map { loops.isEmpty ? eventLoopGroup.next() : loops[$0 % loops.count] }
    }

    /// Keeps every pooled connection up until graceful shutdown or cancellation, then closes them.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                for index in self.slots.indices {
                    group.addTask { await self.maintain(slot: index) }
                }
            }
        }
    }

    /// Runs the client for the duration of `body`, then shuts it down: for tools and tests that own a client
    /// outside a ServiceGroup.
    /// - Parameter timeout: how long to wait for a first connection before `body` (nil: do not wait).
    /// - Throws: `RedisError(.timeout)` when no connection comes up in time, and whatever `body` throws.
    public func withRunning<Result: Sendable>(
        waitingUpTo timeout: Duration? = .seconds(5),
        isolation: isolated (any Actor)? = #isolation,
        _ body: () async throws -> Result
    ) async throws -> Result {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.run() }
            defer { group.cancelAll() }
            if let timeout { try await waitUntilConnected(timeout: timeout) }
            return try await body()
        }
    }

    /// Whether at least one connection is up.
    public var isConnected: Bool {
        slots.contains { slot in slot.withLockedValue { $0?.isActive ?? false } }
    }

    /// Waits (without blocking a thread) until a connection is up, for start-up code and tests.
    /// - Throws: `RedisError(.timeout)` when none comes up in time.
    public func waitUntilConnected(timeout: Duration = .seconds(5)) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while !isConnected {
            guard clock.now < deadline else { throw RedisError(.timeout) }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Sends any command and returns its reply.
    /// - Throws: `RedisError.server` for an error reply, `RedisError(.unavailable)` when no connection is up,
    ///   `RedisError(.timeout)`, `RedisError(.connectionClosed)`, `RedisError(.overloaded)`.
    public func send(_ command: RedisCommand) async throws(RedisError) -> RESPValue {
        let connection = try pickConnection()
        commandsSent.increment()
        return try Self.failingOnErrorReply(await connection.send(command, reserved: true)).get()
    }

    /// A single command's error reply as `.server`: callers of `send` get errors thrown, not returned.
    private static func failingOnErrorReply(_ reply: RESPValue) -> Result<RESPValue, RedisError> {
        if case .error(let message) = reply { return .failure(RedisError(.server, message)) }
        return .success(reply)
    }

    /// Sends a command given by name and arguments: `client.send("SET", key, value)`.
    public func send(_ name: String, _ arguments: any RESPArgument...) async throws(RedisError) -> RESPValue {
        try await send(RedisCommand(name, arguments))
    }

    /// Sends several commands in one write on one connection and returns their replies in order.
    /// Error replies stay in place as `.error` values; nothing else is sent between them.
    public func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        let connection = try pickConnection(replies: commands.count)
        commandsSent.increment(by: commands.count)
        return try await connection.pipeline(commands)
    }

    // MARK: From event-loop code

    /// Sends a command from event-loop code (a channel handler), without a task: a connection living on `eventLoop`
    /// is preferred, so the command and its reply never leave that thread. `completion` runs on `eventLoop` (with
    /// nil, on the connection's loop). An internal of the verification fast path; tasks use `send(_:)`.
    package func send(
        _ command: RedisCommand, on eventLoop: (any EventLoop)?,
        completion: @escaping @Sendable (Result<RESPValue, RedisError>) -> Void
    ) {
        let connection: RedisConnection
        do {
            connection = try pickConnection(preferring: eventLoop)
        } catch {
            completion(.failure(error))
            return
        }
        commandsSent.increment()
        let deliver: @Sendable (Result<RESPValue, RedisError>) -> Void
        if let eventLoop, connection.eventLoop !== eventLoop {
            deliver = { result in eventLoop.execute { completion(result) } }
        } else {
            deliver = completion
        }
        connection.send(command) { result in deliver(result.flatMap(Self.failingOnErrorReply)) }
    }

    /// `evaluate(_:keys:arguments:)` from event-loop code; `completion` runs on `eventLoop`. The one place the
    /// `NOSCRIPT` → `EVAL` retry is written: the async form runs through it too.
    package func evaluate(
        _ script: RedisScript, keys: [any RESPArgument] = [], arguments: [any RESPArgument] = [], on eventLoop: (any EventLoop)?,
        completion: @escaping @Sendable (Result<RESPValue, RedisError>) -> Void
    ) {
        send(script.command(byHash: true, keys: keys, arguments: arguments), on: eventLoop) { result in
            if case .failure(let error) = result, error.serverErrorPrefix == "NOSCRIPT" {
                self.send(script.command(byHash: false, keys: keys, arguments: arguments), on: eventLoop, completion: completion)
            } else {
                completion(result)
            }
        }
    }

    private func pickConnection(replies: Int = 1, preferring eventLoop: (any EventLoop)? = nil) throws(RedisError) -> RedisConnection {
        if isShutdown.load(ordering: .relaxed) { throw RedisError(.shutdown) }
        if let eventLoop {
            for index in slots.indices where slotLoops[index] === eventLoop {
                if let connection = slots[index].withLockedValue({ $0 }), connection.isActive, connection.reserve(replies) { return connection }
            }
        }
        let count = slots.count
        let start = nextSlot.loadThenWrappingIncrement(ordering: .relaxed)
        var sawConnection = false
        for offset in 0..<count {
            let index = (start &+ offset) % count
            guard let connection = slots[index].withLockedValue({ $0 }), connection.isActive else { continue }
            sawConnection = true
            if connection.reserve(replies) { return connection }
        }
        throw sawConnection ? RedisError(.overloaded) : RedisError(.unavailable)
    }

    private func maintain(slot index: Int) async {
        var delay = configuration.minimumReconnectDelay
        var logger = self.logger
        logger[metadataKey: "redis.connection"] = "\(index)"
        while !Task.isCancelled {
            do {
                let connection = try await RedisConnection.connect(to: configuration, on: slotLoops[index])
                slots[index].withLockedValue { $0 = connection }
                logger.debug("connected to Redis", metadata: ["redis.endpoint": "\(configuration)"])
                onEvent(.connected(slot: index))
                delay = configuration.minimumReconnectDelay
                await withTaskCancellationHandler {
                    try? await connection.channel.closeFuture.get()
                } onCancel: {
                    connection.channel.close(promise: nil)
                }
                slots[index].withLockedValue { $0 = nil }
                if Task.isCancelled { break }
                logger.debug("Redis connection closed")
                onEvent(.disconnected(slot: index))
            } catch {
                let redisError = error as? RedisError ?? RedisError(.unavailable, "cannot connect to Redis")
                logger.debug("cannot connect to Redis", metadata: ["error": "\(redisError.message)"])
                onEvent(.connectFailed(slot: index, error: redisError))
            }
            // Full jitter keeps many instances from reconnecting in lockstep after a Redis restart.
            let jittered = delay * Double.random(in: 0.5...1.0)
            try? await Task.sleep(for: jittered)
            delay = min(delay * 2, configuration.maximumReconnectDelay)
        }
        isShutdown.store(true, ordering: .relaxed)
        let connection = slots[index].withLockedValue { connection in
            defer { connection = nil }
            return connection
        }
        await connection?.close()
    }
}
