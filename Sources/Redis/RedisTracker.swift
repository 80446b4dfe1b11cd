import Atomics
import Logging
import NIOConcurrencyHelpers
public import NIOCore
import NIOSSL

/// What the tracking says about values a client caches.
public enum RedisInvalidation: Sendable, Equatable {
    /// These keys changed (or expired, or were evicted from Redis' tracking table).
    case keys([[UInt8]])
    /// Everything must go (`FLUSHALL`/`FLUSHDB`).
    case all
    /// `source` answered a ping sent at `until` minus the lease: what it read may be served until `until`, and every
    /// invalidation Redis sent before that ping has been reported.
    case confirmed(source: TrackingSource, until: NIODeadline)
    /// The tracking connections `source` are gone (closed, lapsed, moved to another master): everything goes, and
    /// nothing `source` read may be used.
    case ended(source: TrackingSource)
}

/// One tracking connection pair, from its confirmation to its end; never reused, so a value read under one pair can
/// never be taken for one read under the next.
public struct TrackingSource: Sendable, Hashable {
    public let id: UInt64
    /// Whether the pair's listener has handled all it received (nil: unknown, a Unix socket — the lease alone bounds it).
    public let backlog: TrackingBacklog?

    public init(id: UInt64, backlog: TrackingBacklog? = nil) {
        self.id = id
        self.backlog = backlog
    }

    /// Whether a value read under this source may be served now as far as unread invalidations go: the listener has
    /// handled every byte its socket received (or that cannot be known).
    public var hasNoUnreadInvalidations: Bool { backlog?.isDrained ?? true }

    public static func == (lhs: TrackingSource, rhs: TrackingSource) -> Bool { lhs.id == rhs.id }
    public func hash(into hasher: inout Hasher) { hasher.combine(id) }

    private static let counter = ManagedAtomic<UInt64>(0)
    static func next(backlog: TrackingBacklog?) -> TrackingSource {
        TrackingSource(id: counter.wrappingIncrementThenLoad(ordering: .relaxed), backlog: backlog)
    }
}

/// A reply read on a tracked reader, and the pair that read it.
package struct TrackedReply: Sendable {
    package let reply: RESPValue
    package let source: TrackingSource
}

/// A tracked reader and the pair it belongs to.
struct TrackedReader: Sendable {
    let connection: RedisConnection
    let source: TrackingSource
}

/// Server-assisted client-side caching for one node (Redis' `CLIENT TRACKING`), over RESP2 as hiredis 0.14 speaks it:
/// a *listener* connection subscribed to `__redis__:invalidate`, and a *reader* connection whose reads Redis tracks,
/// with `REDIRECT` to the listener. Every key read on the reader is tracked; a change to it from any client sends its
/// name to the listener.
///
/// A dead redirect connection sends nothing (only `CLIENT TRACKINGINFO` would show `broken_redirect`), so the pair
/// lives and dies together, as one `TrackingSource`:
/// - Before its first read is used, the pair is *confirmed*: the node said `ROLE` master in the handshake, the topology
///   (`confirm`: Sentinel's newest answer, or the cluster's other nodes) names it the master, and a ping answered.
/// - It holds a *lease*: the listener is pinged every quarter lease, and each answer extends the lease to the ping's send
///   time plus `RedisConfiguration.trackingLease`. A pong on the listener comes after every invalidation Redis sent
///   before it, so a value read under a live lease has had every invalidation up to the lease's last renewal. A lease
///   that runs out ends the pair; it is never resumed (a frozen master that wakes up after a failover still answers).
/// - Either connection's close, a lapse, or `close()` ends the pair: `.ended` is reported after the reader is gone,
///   and the pair is made again (listener first), confirmed again.
/// The lease is the one timing assumption: a failover cannot promote another master sooner than the failure detection
/// allows (Sentinel's `down-after-milliseconds`, `cluster-node-timeout`), so the lease must be shorter than that.
final class RedisTracker: Sendable {
    private struct Pair {
        let listener: RedisConnection
        let reader: RedisConnection
        let source: TrackingSource
    }

    private let configuration: RedisConfiguration
    private let purpose: RedisConnection.Purpose
    private let tls: NIOSSLContext?
    private let loop: any EventLoop
    private let logger: Logger
    private let onInvalidation: @Sendable (RedisInvalidation) -> Void
    private let onEvent: @Sendable (RedisConnectionEvent) -> Void
    private let pair = NIOLockedValueBox<Pair?>(nil)
    private let stopped = NIOLockedValueBox(false)

    /// The channel Redis sends invalidations on.
    static let channel = "__redis__:invalidate"

    init(
        configuration: RedisConfiguration, purpose: RedisConnection.Purpose, tls: NIOSSLContext?, loop: any EventLoop, logger: Logger,
        onInvalidation: @escaping @Sendable (RedisInvalidation) -> Void, onEvent: @escaping @Sendable (RedisConnectionEvent) -> Void
    ) {
        self.configuration = configuration
        self.purpose = purpose
        self.tls = tls
        self.loop = loop
        self.logger = logger
        self.onInvalidation = onInvalidation
        self.onEvent = onEvent
    }

    /// The reader, while the pair is confirmed and open; nil otherwise (read without caching then).
    var reader: TrackedReader? {
        pair.withLockedValue { pair in
            guard let pair, pair.listener.isActive, pair.reader.isActive else { return nil }
            return TrackedReader(connection: pair.reader, source: pair.source)
        }
    }

    /// Keeps the pair up until cancelled or `stop()`, resolving the node before every attempt and confirming it after.
    func run(
        resolve: @escaping @Sendable () async throws -> RedisConfiguration.Endpoint,
        confirm: @escaping @Sendable (RedisConfiguration.Endpoint) async throws -> Void
    ) async {
        var delay = configuration.minimumReconnectDelay
        var lastFailure: String?
        while !Task.isCancelled, !stopped.withLockedValue({ $0 }) {
            var node = "?"
            do {
                let endpoint = try await resolve()
                node = endpoint.description
                try await serve(endpoint, confirm: confirm)
                delay = configuration.minimumReconnectDelay
                lastFailure = nil
            } catch {
                let redisError = error as? RedisError ?? RedisError.unavailableBecause(error)
                if redisError.message != lastFailure { onEvent(.trackingFailed(node: node, error: redisError)) }
                lastFailure = redisError.message
            }
            drop()
            if Task.isCancelled || stopped.withLockedValue({ $0 }) { break }
            try? await Task.sleep(for: delay * Double.random(in: 0.5...1.0))
            delay = min(delay * 2, configuration.maximumReconnectDelay)
        }
        drop()
    }

    /// Closes the pair for good (`run()` ends).
    func stop() {
        stopped.withLockedValue { $0 = true }
        close()
    }

    /// Closes the pair; `run()` makes it again (after a master change, say).
    func close() {
        guard let current = pair.withLockedValue({ $0 }) else { return }
        current.listener.channel.close(promise: nil)
        current.reader.channel.close(promise: nil)
    }

    /// Makes the pair, confirms it, and keeps its lease until either connection fails or the lease lapses.
    private func serve(
        _ endpoint: RedisConfiguration.Endpoint, confirm: @Sendable (RedisConfiguration.Endpoint) async throws -> Void
    ) async throws {
        let onInvalidation = self.onInvalidation
        let listener = try await RedisConnection.connect(
            to: endpoint, configuration: configuration, purpose: purpose, tls: tls, on: loop, countingBacklog: true,
            onPush: { message in
                // ["message", "__redis__:invalidate", [key, …]], or a nil payload for FLUSHALL/FLUSHDB.
                guard let parts = message.array, parts.count == 3 else { return }
                if let keys = parts[2].array {
                    onInvalidation(.keys(keys.compactMap(\.bytes)))
                } else {
                    onInvalidation(.all)
                }
            }
        )
        let reader: RedisConnection
        do {
            let id = try Self.expect(await listener.send(RedisCommand("CLIENT", ["ID"]))).int
            guard let id else { throw RedisError(.protocolError, "CLIENT ID gave no number") }
            _ = try Self.expect(await listener.send(RedisCommand("SUBSCRIBE", [Self.channel])))
            reader = try await RedisConnection.connect(to: endpoint, configuration: configuration, purpose: purpose, tls: tls, on: loop)
            do {
                _ = try Self.expect(await reader.send(RedisCommand("CLIENT", ["TRACKING", "on", "REDIRECT", id])))
                // The topology names this node the master now (after its ROLE said so in the handshake)…
                try await confirm(endpoint)
            } catch {
                reader.channel.close(promise: nil)
                throw error
            }
        } catch {
            listener.channel.close(promise: nil)
            throw error
        }
        let source = TrackingSource.next(backlog: listener.backlog)
        pair.withLockedValue { $0 = Pair(listener: listener, reader: reader, source: source) }
        if stopped.withLockedValue({ $0 }) { close() }
        // …and it answers: the first lease runs from this ping.
        let lease = TimeAmount(configuration.trackingLease)
        let leaseEnd = NIOLockedValueBox(NIODeadline.distantPast)
        let sent = NIODeadline.now()
        _ = try Self.expect(await listener.send(RedisCommand("PING")))
        guard NIODeadline.now() < sent + lease else { throw RedisError(.timeout, "the tracking connections to \(endpoint) answered too late") }
        leaseEnd.withLockedValue { $0 = sent + lease }
        onInvalidation(.confirmed(source: source, until: sent + lease))
        onEvent(.trackingReady(node: endpoint.description))
        // Either connection's end, or a lapsed lease, ends the pair.
        let ended = loop.makePromise(of: Void.self)
        listener.channel.closeFuture.cascade(to: ended)
        reader.channel.closeFuture.cascade(to: ended)
        let loop = self.loop
        let quarter = TimeAmount.nanoseconds(lease.nanoseconds / 4)
        let ping = loop.scheduleRepeatedTask(initialDelay: quarter, delay: quarter) { _ in
            let sent = NIODeadline.now()
            guard sent < leaseEnd.withLockedValue({ $0 }), listener.reserve() else {
                listener.channel.close(promise: nil)
                return
            }
            listener.send(CollectionOfOne(RedisCommand("PING"))) { result in
                let answered = NIODeadline.now()
                guard case .success = result, answered < leaseEnd.withLockedValue({ $0 }) else {
                    // A pong after the lease ran out proves nothing about the time between: the pair ends.
                    listener.channel.close(promise: nil)
                    return
                }
                leaseEnd.withLockedValue { $0 = max($0, sent + lease) }
                onInvalidation(.confirmed(source: source, until: sent + lease))
            }
        }
        defer { ping.cancel() }
        try? await withTaskCancellationHandler {
            try await ended.futureResult.get()
        } onCancel: {
            listener.channel.close(promise: nil)
            reader.channel.close(promise: nil)
        }
        throw RedisError(.connectionClosed, "the tracking connections to \(endpoint) closed")
    }

    /// Forgets the pair and says so: `.ended` goes out after the reader is gone, so nothing read before can be kept.
    private func drop() {
        let current = pair.withLockedValue { pair in
            defer { pair = nil }
            return pair
        }
        guard let current else { return }
        current.listener.channel.close(promise: nil)
        current.reader.channel.close(promise: nil)
        onInvalidation(.ended(source: current.source))
    }

    private static func expect(_ reply: RESPValue) throws(RedisError) -> RESPValue {
        if case .error(let message) = reply { throw RedisError(.server, message) }
        return reply
    }
}
