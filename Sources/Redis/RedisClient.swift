// Over 300 lines: the client's public surface — lifecycle, one-node/Sentinel/Cluster routing, scripts with their
// NOSCRIPT fallback, tracked reads and the event-loop entry points — over one dispatch; what a cluster reply means
// lives in RedisCluster+stateMachine.swift.

import Atomics
public import Logging
import Metrics
import NIOConcurrencyHelpers
public import NIOCore
public import NIOPosix
import NIOSSL
public import ServiceLifecycle

/// What happened to a pooled connection, for whoever decides what is worth logging (the executable).
public enum RedisConnectionEvent: Sendable {
    /// Connection `slot` of the pool of `node` is up: connected, authenticated, database selected (and, behind
    /// Sentinel or in a cluster, `ROLE` confirmed master).
    case connected(slot: Int, node: String)
    /// An attempt to (re)connect `slot` failed; another follows after a backoff.
    case connectFailed(slot: Int, node: String, error: RedisError)
    /// Connection `slot` closed; commands in flight on it failed.
    case disconnected(slot: Int, node: String)
    /// Sentinel announced or reported a new master, or a cluster's masters changed (`node`: the new master(s)).
    case masterChanged(node: String)
    /// Client-side caching works with `node`: the invalidation listener and the tracked reader are up.
    case trackingReady(node: String)
    /// Client-side caching with `node` failed or stopped (reads go uncached until `trackingReady`).
    case trackingFailed(node: String, error: RedisError)
}

/// An async/await Redis client over small pools of pipelined connections: to one node, to the master Sentinel
/// names, or to every master of a Redis Cluster.
///
/// SwiftNIO owns the sockets (with swift-nio-ssl for `rediss…://`) and hiredis does the protocol
/// (`redisFormatCommandArgv` to encode, a `redisReader` to decode), so no call ever blocks a thread. Each connection
/// carries many commands at once; concurrent callers are spread over a pool round-robin, which pipelines them.
///
/// Topologies (see `RedisConfiguration.Topology`) are the client's business alone: a caller sends commands and
/// runs scripts the same way on each. On a cluster a command goes to its first key's slot's master, `MOVED` and
/// `ASK` are followed, `TRYAGAIN` and `CLUSTERDOWN` waited out with a backoff (`RedisCluster.CommandRouting`, its own budget
/// for each); a command is resent
/// only after a reply that says it did not run, never after its connection closed. Behind Sentinel, `READONLY`,
/// `LOADING` and `MASTERDOWN` close the pool's connections so they find the master again.
///
/// The client is a ServiceLifecycle `Service`: `run()` dials the connections, keeps them up (reconnecting
/// with capped, jittered exponential backoff) and closes them on graceful shutdown or cancellation.
/// While no connection is up, commands fail at once with `RedisError(.unavailable)` rather than queue.
public final class RedisClient: Service, Sendable {
    /// Where a command goes.
    private enum Route: Sendable {
        /// One pool: a single node, or the master Sentinel names.
        case node(RedisNodePool, sentinel: RedisSentinel?)
        case cluster(RedisCluster)
    }

    /// The client's settings.
    public let configuration: RedisConfiguration
    private let route: Route
    private let isShutdown = ManagedAtomic(false)
    /// Commands written to Redis (a pipeline counts each command): what a request really costs in round trips.
    private let commandsSent = Counter(label: "redis_commands_sent_total")
    /// `WAIT minReplicas timeout`, sent behind each durable write; nil when no replica is asked for.
    private let waitCommand: RedisCommand?
    /// Whether client-side caching is on (`onInvalidation`): durable writes are then followed by a barrier.
    private let tracksKeys: Bool
    private let minReplicas: Int
    /// Cluster redirects followed, by kind: `MOVED` (a slot's owner changed) and `ASK` (a slot being migrated).
    private let movedRedirects = ManagedAtomic(0)
    private let askRedirects = ManagedAtomic(0)
    /// Cluster redirects followed so far, for tests and diagnostics.
    var redirectsFollowed: (moved: Int, ask: Int) {
        (movedRedirects.load(ordering: .relaxed), askRedirects.load(ordering: .relaxed))
    }
    /// Latency, in-flight and connection series, and spans in traced requests.
    private let telemetry: RedisTelemetry
    private let redirectCounters = (
        moved: Counter(label: "redis_cluster_redirects_total", dimensions: [("kind", "moved")]),
        ask: Counter(label: "redis_cluster_redirects_total", dimensions: [("kind", "ask")])
    )

    /// Creates a client; nothing connects until `run()`.
    /// - Parameters:
    ///   - configuration: where Redis is and how patient to be.
    ///   - eventLoopGroup: the loops the connections live on (share the HTTP server's to save thread hops).
    ///   - logger: debug-level connection logs.
    ///   - onEvent: told of connects, failures, disconnects and master changes.
    ///   - onInvalidation: turns on client-side caching (`CLIENT TRACKING`): each node (every master of a cluster) gets
    ///     a tracked reader for `sendTracked(_:on:completion:)` and a listener whose invalidations come here, with `.all`
    ///     whenever tracking of any node was lost. Called on event loops; must not block.
    public init(
        configuration: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "redis"),
        onEvent: @escaping @Sendable (RedisConnectionEvent) -> Void = { _ in },
        onInvalidation: (@Sendable (RedisInvalidation) -> Void)? = nil
    ) {
        self.configuration = configuration
        self.tracksKeys = onInvalidation != nil
        let telemetry = RedisTelemetry(database: configuration.database)
        self.telemetry = telemetry
        let onEvent: @Sendable (RedisConnectionEvent) -> Void = { event in
            telemetry.record(event)
            onEvent(event)
        }
        let loops = Array(eventLoopGroup.makeIterator())
        let poolLoops = loops.isEmpty ? [eventLoopGroup.next()] : loops
        // A TLS setting that cannot load (a missing CA file) fails every connection attempt with its reason;
        // ServiceConfiguration checks it at start-up, so the service never gets this far with one.
        let tls: NIOSSLContext?
        let tlsError: RedisError?
        do {
            tls = try configuration.tls.map(RedisConfiguration.makeTLSContext)
            tlsError = nil
        } catch {
            tls = nil
            tlsError = error as? RedisError ?? RedisError(.configuration, "TLS: \(error)")
        }
        switch configuration.topology {
        case .single(let endpoint):
            let pool = RedisNodePool(
                configuration: configuration, loops: poolLoops, purpose: .data, tls: tls, logger: logger, onEvent: onEvent,
                onInvalidation: onInvalidation, resolve: { if let tlsError { throw tlsError } else { return endpoint } }
            )
            route = .node(pool, sentinel: nil)
        case .sentinel(let masterName, let sentinels):
            let sentinel = RedisSentinel(
                masterName: masterName, sentinels: sentinels, configuration: configuration, tls: tls, logger: logger, loop: poolLoops[0],
                onEvent: onEvent
            )
            let pool = RedisNodePool(
                configuration: configuration, loops: poolLoops, purpose: .master, tls: tls, logger: logger, onEvent: onEvent,
                onInvalidation: onInvalidation, resolve: { if let tlsError { throw tlsError } else { return try await sentinel.resolveMaster() } },
                confirm: { try await sentinel.confirmMaster($0) }
            )
            route = .node(pool, sentinel: sentinel)
        case .cluster(let seeds):
            route = .cluster(
                RedisCluster(
                    seeds: seeds, configuration: configuration, tls: tls, logger: logger, loops: poolLoops, onEvent: onEvent,
                    onInvalidation: onInvalidation
                )
            )
        }
        minReplicas = configuration.effectiveMinReplicas
        waitCommand = minReplicas > 0 ? RedisCommand("WAIT", [minReplicas, max(1, Int(configuration.waitTimeout.milliseconds))]) : nil
    }

    /// Keeps every pooled connection up until graceful shutdown or cancellation, then closes them.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                switch self.route {
                case .node(let pool, let sentinel):
                    group.addTask { await pool.run() }
                    if let sentinel { group.addTask { await sentinel.watch(pool) } }
                case .cluster(let cluster):
                    group.addTask { await cluster.run() }
                }
            }
        }
        isShutdown.store(true, ordering: .relaxed)
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

    /// Whether the client can serve every command now: a connection is up (on a cluster: to the master of every slot).
    public var isConnected: Bool {
        switch route {
        case .node(let pool, _): pool.isConnected
        case .cluster(let cluster): cluster.isConnected
        }
    }

    /// Waits (without blocking a thread) until the client is connected, for start-up code and tests.
    /// - Throws: `RedisError(.timeout)` when it is not in time.
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
        try await withCheckedContinuation { continuation in
            send(command, on: nil) { continuation.resume(returning: $0) }
        }.get()
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
    /// Error replies stay in place as `.error` values; nothing else is sent between them. On a cluster the
    /// commands' keys must share a hash slot.
    public func pipeline(_ commands: [RedisCommand]) async throws(RedisError) -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        let reply = try await withCheckedContinuation { continuation in
            dispatch(commands, on: nil) { continuation.resume(returning: $0) }
        }.get()
        return commands.count == 1 ? [reply] : reply.array ?? []
    }

    // MARK: From event-loop code

    /// Sends a command from event-loop code (a channel handler), without a task: a connection living on `eventLoop`
    /// is preferred, so the command and its reply never leave that thread. `completion` runs on `eventLoop` (with
    /// nil, on the connection's loop). An internal of the verification fast path; tasks use `send(_:)`.
    package func send(
        _ command: RedisCommand, on eventLoop: (any EventLoop)?,
        completion: @escaping @Sendable (Result<RESPValue, RedisError>) -> Void
    ) {
        dispatch([command], on: eventLoop) { completion($0.flatMap(Self.failingOnErrorReply)) }
    }

    /// `evaluate(_:keys:arguments:durable:)` from event-loop code; `completion` runs on `eventLoop`. The one place the
    /// `NOSCRIPT` → `EVAL` retry and the `WAIT` of a durable write are written: the async form runs through it too.
    package func evaluate(
        _ script: RedisScript, keys: [any RESPArgument] = [], arguments: [any RESPArgument] = [], durable: Bool = false,
        on eventLoop: (any EventLoop)?, completion: @escaping @Sendable (Result<RESPValue, RedisError>) -> Void
    ) {
        let wait = durable ? waitCommand : nil
        // A durable write (a revocation) with client-side caching on: Redis writes its reply before the invalidations
        // it caused when both go out in the same event-loop turn (its pending-write list is served newest first), so a
        // caller could be told "done" and reach another instance before that instance's kernel has the invalidation.
        // One more round trip on the key's node comes back only after that turn's writes are all out. A WAIT already
        // is one: it answers in a later turn, after the replicas' acknowledgements.
        let barrier: RedisCommand? =
            durable && wait == nil && tracksKeys ? (keys.first.map { RedisCommand("PTTL", [$0]) } ?? RedisCommand("PING")) : nil
        let minReplicas = self.minReplicas
        let waitTimeout = configuration.waitTimeout
        @Sendable func attempt(byHash: Bool) {
            var commands = [script.command(byHash: byHash, keys: keys, arguments: arguments)]
            if let wait { commands.append(wait) }
            dispatch(commands, script: script.name, on: eventLoop) { result in
                guard case .success(let reply) = result else { return completion(result) }
                // WAIT rides right behind the write on the same connection: it counts that connection's writes.
                let replies = wait == nil ? [reply] : reply.array ?? []
                guard let scriptReply = replies.first else { return completion(.failure(RedisError(.protocolError))) }
                if byHash, case .error(let message) = scriptReply, message.hasPrefix("NOSCRIPT") { return attempt(byHash: false) }
                if case .error(let message) = scriptReply { return completion(.failure(RedisError(.server, message))) }
                if wait != nil {
                    let confirmed = replies.count == 2 ? replies[1].int ?? 0 : 0
                    if confirmed < minReplicas {
                        return completion(
                            .failure(
                                RedisError(
                                    .notReplicated,
                                    "write confirmed by \(confirmed) of \(minReplicas) replicas within \(waitTimeout) (REDIS_MIN_REPLICAS)"
                                )
                            )
                        )
                    }
                }
                guard let barrier else { return completion(.success(scriptReply)) }
                // The write is done whatever the barrier's fate: its failure only loses the ordering it buys.
                self.dispatch([barrier], on: eventLoop) { _ in completion(.success(scriptReply)) }
            }
        }
        attempt(byHash: true)
    }

    /// Sends commands on the tracked reader of their node (client-side caching: Redis will tell `onInvalidation` when
    /// any key they read changes), from event-loop code; `completion` runs on `eventLoop`. No redirect is followed
    /// and nothing is retried: a failure (no healthy tracking, a `MOVED`) means "read without caching". An internal of
    /// the session store's near cache.
    package func sendTracked(
        _ commands: [RedisCommand], on eventLoop: any EventLoop, completion: @escaping @Sendable (Result<TrackedReply, RedisError>) -> Void
    ) {
        let deliver = Self.delivering(completion, on: eventLoop)
        let reader: TrackedReader?
        switch route {
        case .node(let pool, _): reader = pool.trackedReader
        case .cluster(let cluster): reader = cluster.trackedReader(slot: commands.lazy.compactMap(\.hashSlot).first)
        }
        guard let reader, reader.connection.reserve(commands.count) else {
            return deliver(.failure(RedisError(.unavailable, "no tracked reader")))
        }
        commandsSent.increment(by: commands.count)
        let operation = telemetry.begin(script: nil, commands)
        let source = reader.source
        reader.connection.send(commands) { result in
            self.telemetry.end(operation, result)
            guard case .success(let reply) = result else { return deliver(result.map { TrackedReply(reply: $0, source: source) }) }
            let replies = commands.count == 1 ? [reply] : reply.array ?? []
            if let message = replies.lazy.compactMap({ if case .error(let m) = $0 { m } else { nil } }).first {
                return deliver(.failure(RedisError(.server, message)))
            }
            deliver(.success(TrackedReply(reply: reply, source: source)))
        }
    }

    /// Sends commands on one connection, following a cluster's redirects; `completion` gets the reply (an `.array`
    /// of the replies for several commands) on `eventLoop`, or on the connection's loop with nil.
    /// `script` names the latency series and span of a script's run; nil: the commands' names do.
    private func dispatch(
        _ commands: [RedisCommand], script: String? = nil, on eventLoop: (any EventLoop)?,
        completion: @escaping @Sendable (Result<RESPValue, RedisError>) -> Void
    ) {
        let telemetry = self.telemetry
        let started = telemetry.begin(script: script, commands)
        let delivered = Self.delivering(completion, on: eventLoop)
        let deliver: @Sendable (Result<RESPValue, RedisError>) -> Void = { result in
            telemetry.end(started, result)
            delivered(result)
        }
        var slot: UInt16?
        if case .cluster = route {
            for command in commands {
                guard let commandSlot = command.hashSlot else { continue }
                guard slot == nil || slot == commandSlot else {
                    return deliver(.failure(RedisError(.server, "CROSSSLOT the commands of one pipeline must share a hash slot on a cluster")))
                }
                slot = commandSlot
            }
        }
        dispatch(commands, slot: slot, routing: RedisCluster.CommandRouting(), on: eventLoop, completion: deliver)
    }

    private func dispatch(
        _ commands: [RedisCommand], slot: UInt16?, routing: RedisCluster.CommandRouting, on eventLoop: (any EventLoop)?,
        completion: @escaping @Sendable (Result<RESPValue, RedisError>) -> Void
    ) {
        if isShutdown.load(ordering: .relaxed) { return completion(.failure(RedisError(.shutdown))) }
        // ASKING lets the importing node run the next command for a slot it does not own yet.
        let sent: [RedisCommand]
        if case .ask = routing.target {
            sent = commands.flatMap { $0.hashSlot == nil ? [$0] : [RedisCommand("ASKING"), $0] }
        } else {
            sent = commands
        }
        let connection: RedisConnection
        do throws(RedisError) {
            switch (route, routing.target) {
            case (.node(let pool, _), _): connection = try pool.connection(replies: sent.count, preferring: eventLoop)
            case (.cluster(let cluster), .slot): connection = try cluster.connection(slot: slot, replies: sent.count, preferring: eventLoop)
            case (.cluster(let cluster), .moved(let node)), (.cluster(let cluster), .ask(let node)):
                connection = try cluster.connection(to: node, replies: sent.count, preferring: eventLoop)
            }
        } catch {
            // A slot whose master is being found, or a redirect to a node whose pool is still connecting: a moment
            // later it may be there (`CommandRouting` says how long, and when to give up).
            guard case .cluster(let cluster) = route else { return completion(.failure(error)) }
            var routing = routing
            let action = routing.unavailable(error)
            return act(action, on: cluster, commands, slot: slot, routing: routing, reply: nil, on: eventLoop, completion: completion)
        }
        commandsSent.increment(by: sent.count)
        connection.send(sent) { result in
            switch result {
            case .failure(let error):
                if case .cluster(let cluster) = self.route { cluster.requestRefresh() }
                completion(.failure(error))
            case .success(var reply):
                if case .ask = routing.target, let replies = reply.array {
                    let kept = zip(sent, replies).filter { $0.0.name != "ASKING" }.map(\.1)
                    reply = kept.count == 1 ? kept[0] : .array(kept)
                }
                let replies = commands.count == 1 ? [reply] : reply.array ?? []
                guard let message = replies.lazy.compactMap({ if case .error(let m) = $0 { m } else { nil } }).first else {
                    return completion(.success(reply))
                }
                self.handle(
                    errorReply: message, reply: reply, commands: commands, slot: slot, routing: routing, on: eventLoop, completion: completion)
            }
        }
    }

    /// What an error reply means for routing. On a cluster `CommandRouting` decides; on one node, a node that cannot
    /// serve as master (`READONLY`, `LOADING`, `MASTERDOWN`) sends the pool looking for the master again.
    private func handle(
        errorReply message: String, reply: RESPValue, commands: [RedisCommand], slot: UInt16?, routing: RedisCluster.CommandRouting,
        on eventLoop: (any EventLoop)?, completion: @escaping @Sendable (Result<RESPValue, RedisError>) -> Void
    ) {
        switch route {
        case .cluster(let cluster):
            var routing = routing
            let action = routing.errorReply(message)
            act(action, on: cluster, commands, slot: slot, routing: routing, reply: reply, on: eventLoop, completion: completion)
        case .node(let pool, _):
            let code = message.prefix { $0 != " " }
            guard code == "READONLY" || code == "LOADING" || code == "MASTERDOWN" else { return completion(.success(reply)) }
            pool.reconnectAll()
            completion(.failure(RedisError(.unavailable, "Redis node cannot serve: \(code)")))
        }
    }

    /// Does what `CommandRouting` decided: deliver, send again (now or after a backoff, on the event loop: no thread
    /// sleeps), or fail — asking the cluster for a new map when it says so.
    private func act(
        _ action: RedisCluster.CommandRouting.Action, on cluster: RedisCluster, _ commands: [RedisCommand], slot: UInt16?,
        routing: RedisCluster.CommandRouting, reply: RESPValue?, on eventLoop: (any EventLoop)?,
        completion: @escaping @Sendable (Result<RESPValue, RedisError>) -> Void
    ) {
        switch action {
        case .deliver:
            completion(reply.map { .success($0) } ?? .failure(RedisError(.unavailable)))
        case .send(let target, let movedSlot):
            if let movedSlot, case .moved(let node) = target {
                movedRedirects.wrappingIncrement(ordering: .relaxed)
                redirectCounters.moved.increment()
                cluster.moved(slot: movedSlot, to: node)
            } else {
                askRedirects.wrappingIncrement(ordering: .relaxed)
                redirectCounters.ask.increment()
            }
            dispatch(commands, slot: slot, routing: routing, on: eventLoop, completion: completion)
        case .wait(let delay, let refresh):
            if refresh { cluster.requestRefresh() }
            let loop = eventLoop ?? MultiThreadedEventLoopGroup.singleton.next()
            loop.scheduleTask(in: delay) { self.dispatch(commands, slot: slot, routing: routing, on: eventLoop, completion: completion) }
        case .fail(let error, let refresh):
            if refresh { cluster.requestRefresh() }
            completion(.failure(error))
        }
    }

    /// `completion`, run on `eventLoop` (at once when already there); with nil, wherever the reply arrives.
    private static func delivering<Reply: Sendable>(
        _ completion: @escaping @Sendable (Result<Reply, RedisError>) -> Void, on eventLoop: (any EventLoop)?
    ) -> @Sendable (Result<Reply, RedisError>) -> Void {
        guard let eventLoop else { return completion }
        return { result in
            if eventLoop.inEventLoop { completion(result) } else { eventLoop.execute { completion(result) } }
        }
    }

}
