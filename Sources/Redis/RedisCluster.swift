import Atomics
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL

/// A Redis Cluster's slot map and one connection pool per master.
///
/// The map comes from `CLUSTER SHARDS` (asked of any node that answers: a pooled master first, then the seeds and
/// every node seen before). A refresh is single-flight and rate-limited: any number of `MOVED` replies or lost
/// connections in a burst cause at most one `CLUSTER SHARDS` per `minimumRefreshInterval`. A `MOVED` also updates its
/// slot at once, so the retry goes to the right node before the refresh lands. Pools of nodes that are no longer
/// masters are stopped.
final class RedisCluster: Sendable {
    private struct State {
        /// The master of each slot, nil while unknown (`SlotMap`, in RedisCluster+stateMachine.swift).
        var map = SlotMap()
        var pools: [RedisConfiguration.Endpoint: RedisNodePool] = [:]
        /// Every node seen, for asking CLUSTER SHARDS when the seeds are gone.
        var known: [RedisConfiguration.Endpoint]
        var lastRefresh: ContinuousClock.Instant?
        var refreshRequested = false
        /// When another node last confirmed each master (`confirmMaster`), so a pool's connections share one answer.
        var confirmed: [RedisConfiguration.Endpoint: ContinuousClock.Instant] = [:]
    }

    private let configuration: RedisConfiguration
    private let tls: NIOSSLContext?
    private let logger: Logger
    private let loops: [any EventLoop]
    private let onEvent: @Sendable (RedisConnectionEvent) -> Void
    private let onInvalidation: (@Sendable (RedisInvalidation) -> Void)?
    private let state: NIOLockedValueBox<State>
    /// Wakes the refresh loop, and hands it new pools to run.
    private let wakeUps: AsyncStream<RedisNodePool?>.Continuation
    private let wakeUpStream: AsyncStream<RedisNodePool?>
    private let minimumRefreshInterval = Duration.milliseconds(100)
    private let periodicRefresh = Duration.seconds(5)

    init(
        seeds: [RedisConfiguration.Endpoint], configuration: RedisConfiguration, tls: NIOSSLContext?, logger: Logger, loops: [any EventLoop],
        onEvent: @escaping @Sendable (RedisConnectionEvent) -> Void, onInvalidation: (@Sendable (RedisInvalidation) -> Void)? = nil
    ) {
        self.onInvalidation = onInvalidation
        self.configuration = configuration
        self.tls = tls
        self.logger = logger
        self.loops = loops
        self.onEvent = onEvent
        self.state = NIOLockedValueBox(State(known: seeds))
        (wakeUpStream, wakeUps) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
    }

    /// Keeps the map fresh and the masters' pools running until cancelled.
    func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.refreshLoop() }
            for await pool in wakeUpStream {
                if let pool { group.addTask { await pool.run() } }
            }
        }
        let pools = state.withLockedValue { $0.pools.values }
        for pool in pools { pool.stop() }
    }

    /// Ends `run()`.
    func finish() {
        wakeUps.finish()
    }

    private func refreshLoop() async {
        let clock = ContinuousClock()
        while !Task.isCancelled {
            do {
                try await refresh()
            } catch {
                logger.debug("cannot read the cluster's slots", metadata: ["error": "\(error)"])
            }
            // Sleep until the next periodic refresh, or less while a refresh is wanted (after MOVED, a lost node).
            let start = clock.now
            while !Task.isCancelled {
                try? await Task.sleep(for: minimumRefreshInterval)
                let (wanted, covered) = state.withLockedValue { ($0.refreshRequested, $0.map.isComplete) }
                if wanted || !covered || clock.now - start >= periodicRefresh { break }
            }
        }
        finish()
    }

    /// Asks for a refresh soon (at most one per `minimumRefreshInterval`).
    func requestRefresh() {
        state.withLockedValue { $0.refreshRequested = true }
    }

    /// A connection to the master of `slot` (nil: any master), preferring one on `eventLoop`.
    func connection(slot: UInt16?, replies: Int, preferring eventLoop: (any EventLoop)?) throws(RedisError) -> RedisConnection {
        let pool: RedisNodePool? = state.withLockedValue { state in
            if let slot { return state.map.master(of: slot).flatMap { state.pools[$0] } }
            return state.pools.values.first { $0.isConnected }
        }
        guard let pool else {
            requestRefresh()
            throw RedisError(.unavailable, "no master is known for this key's slot")
        }
        do {
            return try pool.connection(replies: replies, preferring: eventLoop)
        } catch {
            // A master with no live connection may have failed over: look at the map again soon.
            if error.code == .unavailable { requestRefresh() }
            throw error
        }
    }

    /// The tracked reader of the master of `slot`, while its tracking is healthy.
    func trackedReader(slot: UInt16?) -> TrackedReader? {
        let pool = state.withLockedValue { state -> RedisNodePool? in
            guard let slot, let endpoint = state.map.master(of: slot) else { return nil }
            return state.pools[endpoint]
        }
        return pool?.trackedReader
    }

    /// A connection to a node named by a redirect, starting a pool for it when it is new.
    func connection(to endpoint: RedisConfiguration.Endpoint, replies: Int, preferring eventLoop: (any EventLoop)?) throws(RedisError)
        -> RedisConnection
    {
        try pool(for: endpoint).connection(replies: replies, preferring: eventLoop)
    }

    /// `MOVED slot host:port`: the slot lives on that node now.
    func moved(slot: UInt16, to endpoint: RedisConfiguration.Endpoint) {
        _ = pool(for: endpoint)
        state.withLockedValue { $0.map.moved(slot, to: endpoint) }
        requestRefresh()
    }

    /// Whether every slot has a master with a live connection.
    var isConnected: Bool {
        state.withLockedValue { state in
            guard state.map.isComplete else { return false }
            return state.map.masters.allSatisfy { state.pools[$0]?.isConnected ?? false }
        }
    }

    private func pool(for endpoint: RedisConfiguration.Endpoint) -> RedisNodePool {
        let (pool, isNew) = state.withLockedValue { state -> (RedisNodePool, Bool) in
            if let pool = state.pools[endpoint] { return (pool, false) }
            let pool = RedisNodePool(
                configuration: configuration, loops: loops, purpose: .master, tls: tls, logger: logger, onEvent: onEvent,
                onInvalidation: onInvalidation, resolve: { endpoint }, confirm: { [weak self] in try await self?.confirmMaster($0) }
            )
            state.pools[endpoint] = pool
            if !state.known.contains(endpoint) { state.known.append(endpoint) }
            return (pool, true)
        }
        if isNew { wakeUps.yield(pool) }
        return pool
    }

    /// Confirms with another node that `endpoint` is an online master of the cluster: a master frozen through a
    /// failover still believes it owns its slots when it wakes, until gossip reaches it; the others know better.
    /// - Throws: `.unavailable` when no other node answers or the answer does not name `endpoint` a master.
    func confirmMaster(_ endpoint: RedisConfiguration.Endpoint) async throws {
        let clock = ContinuousClock()
        // One answer serves the connections of a pool made together (a quarter second is far below any failover).
        let (others, recent) = state.withLockedValue { state in
            (state.known.filter { $0 != endpoint }, state.confirmed[endpoint].map { clock.now - $0 < .milliseconds(250) } ?? false)
        }
        if recent { return }
        for other in others {
            guard
                let connection = try? await RedisConnection.connect(to: other, configuration: configuration, purpose: .data, tls: tls, on: loops[0])
            else { continue }
            let answer = try? await connection.send(RedisCommand("CLUSTER", ["SHARDS"]))
            connection.channel.close(promise: nil)
            guard let shards = answer?.array else { continue }
            if Self.parse(shards: shards, tls: tls != nil).contains(where: { $0.master == endpoint }) {
                state.withLockedValue { $0.confirmed[endpoint] = clock.now }
                return
            }
            throw RedisError(.unavailable, "\(other) does not name \(endpoint) a master")
        }
        // A cluster of one node has nobody to ask; its own ROLE (in the handshake) is all there is.
        if others.isEmpty { return }
        throw RedisError(.unavailable, "no other cluster node answers to confirm \(endpoint)")
    }

    /// Reads `CLUSTER SHARDS` from the first node that answers and installs the map.
    private func refresh() async throws {
        let clock = ContinuousClock()
        let (candidates, pooled) = state.withLockedValue { state in
            state.refreshRequested = false
            state.lastRefresh = clock.now
            return (state.known, Array(state.pools.values))
        }
        let shardsCommand = RedisCommand("CLUSTER", ["SHARDS"])
        var reply: RESPValue?
        for pool in pooled where pool.isConnected {
            if let connection = try? pool.connection(), let answer = try? await connection.send(shardsCommand, reserved: true), answer.array != nil {
                reply = answer
                break
            }
        }
        if reply == nil {
            for endpoint in candidates {
                guard
                    let connection = try? await RedisConnection.connect(
                        to: endpoint, configuration: configuration, purpose: .data, tls: tls, on: loops[0]
                    )
                else { continue }
                let answer = try? await connection.send(shardsCommand)
                connection.channel.close(promise: nil)
                if let answer, answer.array != nil {
                    reply = answer
                    break
                }
            }
        }
        guard let shards = reply?.array else { throw RedisError(.unavailable, "no cluster node answers CLUSTER SHARDS") }
        install(Self.parse(shards: shards, tls: tls != nil))
    }

    /// Installs a map: pools for new masters, stops for former ones.
    private func install(_ map: [(range: ClosedRange<Int>, master: RedisConfiguration.Endpoint)]) {
        let masters = Set(map.map(\.master))
        for master in masters { _ = pool(for: master) }
        let (stopped, changed) = state.withLockedValue { state -> ([RedisNodePool], Bool) in
            let changed = state.map.install(map)
            var stopped: [RedisNodePool] = []
            for (endpoint, pool) in state.pools where !masters.contains(endpoint) {
                stopped.append(pool)
                state.pools[endpoint] = nil
            }
            return (stopped, changed)
        }
        for pool in stopped { pool.stop() }
        if changed {
            logger.info("cluster slot map updated", metadata: ["redis.masters": "\(masters.map(\.description).sorted())"])
            onEvent(.masterChanged(node: masters.map(\.description).sorted().joined(separator: ",")))
        }
    }

    /// The masters and their slot ranges in a `CLUSTER SHARDS` reply (RESP2: maps are flat arrays of name, value).
    /// A shard's master is its node with role master and health online (during a failover, the old master may still
    /// be listed as a failed master).
    static func parse(shards: [RESPValue], tls: Bool) -> [(range: ClosedRange<Int>, master: RedisConfiguration.Endpoint)] {
        var result: [(ClosedRange<Int>, RedisConfiguration.Endpoint)] = []
        for shard in shards {
            let fields = shard.fields
            guard let ranges = fields["slots"]?.array, let nodes = fields["nodes"]?.array else { continue }
            var master: RedisConfiguration.Endpoint?
            for node in nodes {
                let node = node.fields
                guard node["role"]?.string == "master", node["health"]?.string ?? "online" == "online" else { continue }
                let host = node["endpoint"]?.string.flatMap { $0 == "?" || $0.isEmpty ? nil : $0 } ?? node["ip"]?.string
                let port = (tls ? node["tls-port"]?.int : nil) ?? node["port"]?.int
                if let host, let port { master = .tcp(host: host, port: Int(port)) }
            }
            guard let master else { continue }
            var index = 0
            while index + 1 < ranges.count {
                if let low = ranges[index].int, let high = ranges[index + 1].int, low <= high { result.append((Int(low)...Int(high), master)) }
                index += 2
            }
        }
        return result
    }
}
