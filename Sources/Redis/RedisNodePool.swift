import Atomics
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL

/// The pooled, pipelined connections to one Redis node: the node a single-node URL names, the master Sentinel
/// names (asked again at every reconnect), or one master of a cluster.
///
/// `run()` keeps every connection up, reconnecting with capped, jittered exponential backoff; `resolve` is called
/// before every attempt, so a pool behind Sentinel follows the master. `reconnectAll()` closes the current
/// connections (their in-flight commands fail; none is resent) so the next attempt resolves again. `confirm` is asked
/// after every connect, before the connection is used: a node is used only while the topology names it the master.
final class RedisNodePool: Sendable {
    private let configuration: RedisConfiguration
    private let resolve: @Sendable () async throws -> RedisConfiguration.Endpoint
    /// Asks the topology whether a node just connected to is the master (Sentinel, Cluster); throws when not.
    private let confirm: @Sendable (RedisConfiguration.Endpoint) async throws -> Void
    private let purpose: RedisConnection.Purpose
    private let tls: NIOSSLContext?
    private let logger: Logger
    private let onEvent: @Sendable (RedisConnectionEvent) -> Void
    private let slots: [NIOLockedValueBox<RedisConnection?>]
    /// The loop each slot's connection lives on: slots are spread over the group's loops in turn, so that with as
    /// many connections as loops every loop has one of its own (see `connection(preferring:)`).
    private let slotLoops: [any EventLoop]
    private let nextSlot = ManagedAtomic(0)
    private let stopped = ManagedAtomic(false)
    /// The client-side caching pair of this node, when the client was asked for invalidations.
    private let tracker: RedisTracker?

    init(
        configuration: RedisConfiguration, loops: [any EventLoop], purpose: RedisConnection.Purpose, tls: NIOSSLContext?, logger: Logger,
        onEvent: @escaping @Sendable (RedisConnectionEvent) -> Void, onInvalidation: (@Sendable (RedisInvalidation) -> Void)? = nil,
        resolve: @escaping @Sendable () async throws -> RedisConfiguration.Endpoint,
        confirm: @escaping @Sendable (RedisConfiguration.Endpoint) async throws -> Void = { _ in }
    ) {
        self.tracker = onInvalidation.map {
            RedisTracker(
                configuration: configuration, purpose: purpose, tls: tls, loop: loops[0], logger: logger, onInvalidation: $0, onEvent: onEvent)
        }
        self.configuration = configuration
        self.purpose = purpose
        self.tls = tls
        self.logger = logger
        self.onEvent = onEvent
        self.resolve = resolve
        self.confirm = confirm
        self.slots = (0..<configuration.connectionCount).map { _ in NIOLockedValueBox(nil) }
        self.slotLoops = (0..<configuration.connectionCount).map { loops[$0 % loops.count] }
    }

    /// Keeps every connection up until cancelled or `stop()`, then closes them.
    func run() async {
        await withDiscardingTaskGroup { group in
            for index in slots.indices {
                group.addTask { await self.maintain(slot: index) }
            }
            if let tracker {
                let (resolve, confirm) = (self.resolve, self.confirm)
                group.addTask { await tracker.run(resolve: resolve, confirm: confirm) }
            }
        }
    }

    /// Ends `run()`: no new connection is made and the current ones close.
    func stop() {
        stopped.store(true, ordering: .relaxed)
        tracker?.stop()
        reconnectAll()
    }

    /// Closes every current connection; each slot reconnects (resolving its node again) unless stopped.
    func reconnectAll() {
        for slot in slots { slot.withLockedValue { $0 }?.channel.close(promise: nil) }
        tracker?.close()
    }

    /// The tracked reader of client-side caching, while its invalidations are sure to arrive; nil otherwise.
    var trackedReader: TrackedReader? { tracker?.reader }

    /// Whether at least one connection is up.
    var isConnected: Bool {
        slots.contains { slot in slot.withLockedValue { $0?.isActive ?? false } }
    }

    /// The nodes the live connections are connected to (one, unless a move is under way), the tracking pair's
    /// included: a pair left on a former master would otherwise read stale values that no invalidation ever ends.
    var connectedEndpoints: Set<RedisConfiguration.Endpoint> {
        var endpoints = Set(slots.compactMap { slot in slot.withLockedValue { $0.flatMap { $0.isActive ? $0.endpoint : nil } } })
        if let reader = tracker?.reader { endpoints.insert(reader.connection.endpoint) }
        return endpoints
    }

    /// A live connection with room for `replies` more replies: one on `eventLoop` when there is one, else the next
    /// in turn.
    /// - Throws: `.unavailable` when no connection is up, `.overloaded` when every one is full.
    func connection(replies: Int = 1, preferring eventLoop: (any EventLoop)? = nil) throws(RedisError) -> RedisConnection {
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
        while !Task.isCancelled, !stopped.load(ordering: .relaxed) {
            var node = "?"
            do {
                let endpoint = try await resolve()
                node = endpoint.description
                let connection = try await RedisConnection.connect(
                    to: endpoint, configuration: configuration, purpose: purpose, tls: tls, on: slotLoops[index]
                )
                // A master that was frozen through a failover still says master when it wakes: the topology decides.
                do {
                    try await confirm(endpoint)
                } catch {
                    connection.channel.close(promise: nil)
                    throw error
                }
                slots[index].withLockedValue { $0 = connection }
                if stopped.load(ordering: .relaxed) { connection.channel.close(promise: nil) }
                logger.debug("connected to Redis", metadata: ["redis.node": "\(node)"])
                onEvent(.connected(slot: index, node: node))
                delay = configuration.minimumReconnectDelay
                await withTaskCancellationHandler {
                    try? await connection.channel.closeFuture.get()
                } onCancel: {
                    connection.channel.close(promise: nil)
                }
                slots[index].withLockedValue { $0 = nil }
                if Task.isCancelled || stopped.load(ordering: .relaxed) { break }
                logger.debug("Redis connection closed", metadata: ["redis.node": "\(node)"])
                onEvent(.disconnected(slot: index, node: node))
            } catch {
                let redisError = error as? RedisError ?? RedisError.unavailableBecause(error)
                logger.debug("cannot connect to Redis", metadata: ["redis.node": "\(node)", "error": "\(redisError.message)"])
                onEvent(.connectFailed(slot: index, node: node, error: redisError))
            }
            // Full jitter keeps many instances from reconnecting in lockstep after a Redis restart.
            let jittered = delay * Double.random(in: 0.5...1.0)
            try? await Task.sleep(for: jittered)
            delay = min(delay * 2, configuration.maximumReconnectDelay)
        }
        let connection = slots[index].withLockedValue { connection in
            defer { connection = nil }
            return connection
        }
        await connection?.close()
    }
}
