import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL

/// What Redis said about keys a client caches: these keys changed (or expired, or were evicted from Redis' tracking
/// table), or everything must go (`FLUSHALL`/`FLUSHDB`, or the tracking itself was lost: a dropped connection, a
/// failover, a master change).
public enum RedisInvalidation: Sendable, Equatable {
    case keys([[UInt8]])
    case all
}

/// Server-assisted client-side caching for one node (Redis' `CLIENT TRACKING`), over RESP2 as hiredis 0.14 speaks it:
/// a *listener* connection subscribed to `__redis__:invalidate`, and a *reader* connection whose reads Redis tracks,
/// with `REDIRECT` to the listener. Every key read on the reader is tracked; a change to it from any client sends its
/// name to the listener.
///
/// A dead redirect connection sends nothing (only `CLIENT TRACKINGINFO` would show `broken_redirect`), so the pair
/// lives and dies together: when either closes, or the listener misses a ping (one a second, with the command
/// timeout), both close, `.all` is reported before any new read is allowed, and the pair is made again (listener
/// first). A cache that reads only through `reader` and drops everything on `.all` never serves a stale value
/// for longer than it takes to notice a dead connection.
final class RedisTracker: Sendable {
    private let configuration: RedisConfiguration
    private let purpose: RedisConnection.Purpose
    private let tls: NIOSSLContext?
    private let loop: any EventLoop
    private let logger: Logger
    private let onInvalidation: @Sendable (RedisInvalidation) -> Void
    private let onEvent: @Sendable (RedisConnectionEvent) -> Void
    private let pair = NIOLockedValueBox<(listener: RedisConnection, reader: RedisConnection)?>(nil)
    private let stopped = NIOLockedValueBox(false)

    /// The channel Redis sends invalidations on.
    static let channel = "__redis__:invalidate"
    /// How often the listener is pinged.
    static let pingInterval = Duration.seconds(1)

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

    /// The reader, while the pair is healthy; nil otherwise (read without caching then).
    var reader: RedisConnection? {
        pair.withLockedValue { pair in
            guard let pair, pair.listener.isActive, pair.reader.isActive else { return nil }
            return pair.reader
        }
    }

    /// Keeps the pair up until cancelled or `stop()`, resolving the node before every attempt.
    func run(resolve: @escaping @Sendable () async throws -> RedisConfiguration.Endpoint) async {
        var delay = configuration.minimumReconnectDelay
        var lastFailure: String?
        while !Task.isCancelled, !stopped.withLockedValue({ $0 }) {
            var node = "?"
            do {
                let endpoint = try await resolve()
                node = endpoint.description
                try await serve(endpoint)
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

    /// Makes the pair and watches it until either connection fails.
    private func serve(_ endpoint: RedisConfiguration.Endpoint) async throws {
        let onInvalidation = self.onInvalidation
        let listener = try await RedisConnection.connect(
            to: endpoint, configuration: configuration, purpose: purpose, tls: tls, on: loop,
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
            } catch {
                reader.channel.close(promise: nil)
                throw error
            }
        } catch {
            listener.channel.close(promise: nil)
            throw error
        }
        pair.withLockedValue { $0 = (listener, reader) }
        if stopped.withLockedValue({ $0 }) { close() }
        onEvent(.trackingReady(node: endpoint.description))
        // Either connection's end, or a missed ping, ends the pair.
        let ended = loop.makePromise(of: Void.self)
        listener.channel.closeFuture.cascade(to: ended)
        reader.channel.closeFuture.cascade(to: ended)
        let loop = self.loop
        let ping = loop.scheduleRepeatedAsyncTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            let answered = loop.makePromise(of: Void.self)
            guard listener.reserve() else {
                listener.channel.close(promise: nil)
                return loop.makeSucceededVoidFuture()
            }
            // Within the command timeout, or the listener is presumed dead (a partition sends no FIN).
            listener.send(CollectionOfOne(RedisCommand("PING"))) { result in
                if case .failure = result { listener.channel.close(promise: nil) }
                answered.succeed()
            }
            return answered.futureResult
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

    /// Forgets the pair and says so: `.all` goes out after the reader is gone, so nothing read before can be kept.
    private func drop() {
        let current = pair.withLockedValue { pair in
            defer { pair = nil }
            return pair
        }
        guard let current else { return }
        current.listener.channel.close(promise: nil)
        current.reader.channel.close(promise: nil)
        onInvalidation(.all)
    }

    private static func expect(_ reply: RESPValue) throws(RedisError) -> RESPValue {
        if case .error(let message) = reply { throw RedisError(.server, message) }
        return reply
    }
}
