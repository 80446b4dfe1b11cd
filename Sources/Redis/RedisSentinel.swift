import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL

/// Finds and follows a master through Sentinel, as the Sentinel client spec asks.
///
/// - `resolveMaster()` asks the sentinels in turn, with short timeouts, for the master's address; the one that
///   answered moves to the front. The pool calls it before every (re)connect and then checks `ROLE` on the node.
/// - `watch(_:)` keeps a subscription to `+switch-master` on one sentinel to move early, and polls the master's
///   address every `pollInterval` as the source of truth; either closes the pool's connections when the master is
///   elsewhere, so they reconnect to the new one. It refreshes the sentinel list (`SENTINEL sentinels`) as it polls.
final class RedisSentinel: Sendable {
    let masterName: String
    private let configuration: RedisConfiguration
    private let tls: NIOSSLContext?
    private let logger: Logger
    private let loop: any EventLoop
    private let sentinels: NIOLockedValueBox<[RedisConfiguration.Endpoint]>
    private let onEvent: @Sendable (RedisConnectionEvent) -> Void
    private let pollInterval = Duration.milliseconds(500)

    init(
        masterName: String, sentinels: [RedisConfiguration.Endpoint], configuration: RedisConfiguration, tls: NIOSSLContext?, logger: Logger,
        loop: any EventLoop, onEvent: @escaping @Sendable (RedisConnectionEvent) -> Void
    ) {
        self.masterName = masterName
        self.sentinels = NIOLockedValueBox(sentinels)
        self.tls = tls
        self.logger = logger
        self.loop = loop
        self.onEvent = onEvent
        // Sentinels answer at once or are gone: a short wait per sentinel keeps a dead one from stalling a failover.
        var quick = configuration
        quick.connectTimeout = min(configuration.connectTimeout, .milliseconds(300))
        quick.commandTimeout = min(configuration.commandTimeout, .milliseconds(300))
        self.configuration = quick
    }

    /// The master's address, from the first sentinel that knows it.
    /// - Throws: `.unavailable` naming the master when no sentinel answers with an address.
    func resolveMaster() async throws -> RedisConfiguration.Endpoint {
        var lastError: RedisError?
        for sentinel in sentinels.withLockedValue({ $0 }) {
            do {
                let connection = try await RedisConnection.connect(
                    to: sentinel, configuration: configuration, purpose: .sentinel, tls: tls, on: loop
                )
                defer { connection.channel.close(promise: nil) }
                let master = try await masterAddress(on: connection)
                promote(sentinel)
                return master
            } catch {
                lastError = error as? RedisError ?? RedisError.unavailableBecause(error, endpoint: sentinel)
            }
        }
        throw RedisError(
            .unavailable, "no sentinel knows master '\(masterName)'\(lastError.map { " (last: \($0.message))" } ?? "")"
        )
    }

    /// Confirms that the sentinels' newest word names `endpoint` the master: every known sentinel is asked at once
    /// (`SENTINEL master`), a majority must answer, and the answer with the highest config epoch decides. One sentinel
    /// may lag behind a failover it did not lead; the leader's epoch is higher than anything before it.
    /// - Throws: `.unavailable` when fewer than a majority answer, or the newest answer names another node.
    func confirmMaster(_ endpoint: RedisConfiguration.Endpoint) async throws {
        let list = sentinels.withLockedValue { $0 }
        let answers = await withTaskGroup(of: (epoch: Int64, master: RedisConfiguration.Endpoint)?.self) { group in
            for sentinel in list {
                group.addTask { [self] in
                    guard
                        let connection = try? await RedisConnection.connect(
                            to: sentinel, configuration: configuration, purpose: .sentinel, tls: tls, on: loop
                        )
                    else { return nil }
                    defer { connection.channel.close(promise: nil) }
                    guard let reply = try? await connection.send(RedisCommand("SENTINEL", ["master", masterName])) else { return nil }
                    let fields = reply.fields
                    guard let ip = fields["ip"]?.string, let port = fields["port"]?.string.flatMap({ Int($0) }),
                        let epoch = fields["config-epoch"]?.string.flatMap({ Int64($0) })
                    else { return nil }
                    return (epoch, .tcp(host: ip, port: port))
                }
            }
            var answers: [(epoch: Int64, master: RedisConfiguration.Endpoint)] = []
            for await answer in group { if let answer { answers.append(answer) } }
            return answers
        }
        guard answers.count > list.count / 2 else {
            throw RedisError(.unavailable, "only \(answers.count) of \(list.count) sentinels answered for master '\(masterName)'")
        }
        let newest = answers.max { $0.epoch < $1.epoch }!
        guard newest.master == endpoint else {
            throw RedisError(.unavailable, "the sentinels name \(newest.master) the master of '\(masterName)', not \(endpoint)")
        }
    }

    /// `SENTINEL get-master-addr-by-name` on one sentinel.
    private func masterAddress(on connection: RedisConnection) async throws -> RedisConfiguration.Endpoint {
        let reply = try await connection.send(RedisCommand("SENTINEL", ["get-master-addr-by-name", masterName]))
        if case .error(let message) = reply { throw RedisError(.server, message) }
        guard let fields = reply.array, fields.count == 2, let host = fields[0].string, let port = fields[1].int.map(Int.init) else {
            throw RedisError(.unavailable, "sentinel does not know master '\(masterName)'")
        }
        return .tcp(host: host, port: port)
    }

    /// Moves a sentinel that answered to the front, as the spec asks.
    private func promote(_ sentinel: RedisConfiguration.Endpoint) {
        sentinels.withLockedValue { list in
            if let index = list.firstIndex(of: sentinel), index != 0 { list.insert(list.remove(at: index), at: 0) }
        }
    }

    /// Follows the master for `pool` until cancelled: subscription for speed, polling for truth.
    func watch(_ pool: RedisNodePool) async {
        var turn = 0
        while !Task.isCancelled {
            let list = sentinels.withLockedValue { $0 }
            let sentinel = list[turn % list.count]
            turn += 1
            do {
                try await watch(pool, through: sentinel)
            } catch {
                logger.debug("sentinel watch interrupted", metadata: ["redis.sentinel": "\(sentinel)", "error": "\(error)"])
            }
            try? await Task.sleep(for: pollInterval)
        }
    }

    private func watch(_ pool: RedisNodePool, through sentinel: RedisConfiguration.Endpoint) async throws {
        let masterName = self.masterName
        let subscriber = try await RedisConnection.connect(
            to: sentinel, configuration: configuration, purpose: .sentinel, tls: tls, on: loop,
            onPush: { [logger, onEvent] message in
                // ["message", "+switch-master", "<name> <old-ip> <old-port> <new-ip> <new-port>"]
                guard let parts = message.array, parts.count == 3, let text = parts[2].string else { return }
                let words = text.split(separator: " ")
                guard words.count == 5, words[0] == masterName else { return }
                logger.info("sentinel announced a new master", metadata: ["redis.master": "\(words[3]):\(words[4])"])
                onEvent(.masterChanged(node: "\(words[3]):\(words[4])"))
                pool.reconnectAll()
            }
        )
        defer { subscriber.channel.close(promise: nil) }
        let poller = try await RedisConnection.connect(to: sentinel, configuration: configuration, purpose: .sentinel, tls: tls, on: loop)
        defer { poller.channel.close(promise: nil) }
        // The subscriber connection must outlive the command timeout: its only command is SUBSCRIBE.
        if case .error(let message) = try await subscriber.send(RedisCommand("SUBSCRIBE", ["+switch-master"])) {
            throw RedisError(.server, message)
        }
        var polls = 0
        while !Task.isCancelled, subscriber.isActive, poller.isActive {
            let master = try await masterAddress(on: poller)
            let connected = pool.connectedEndpoints
            if !connected.isEmpty, connected != [master] {
                logger.info("sentinel reports a new master", metadata: ["redis.master": "\(master)"])
                onEvent(.masterChanged(node: master.description))
                pool.reconnectAll()
            }
            if polls % 20 == 0 { try await refreshSentinels(on: poller) }
            polls += 1
            try await Task.sleep(for: pollInterval)
        }
    }

    /// Adds the sentinels this one knows (`SENTINEL sentinels`) to the list.
    private func refreshSentinels(on connection: RedisConnection) async throws {
        let reply = try await connection.send(RedisCommand("SENTINEL", ["sentinels", masterName]))
        guard let entries = reply.array else { return }
        var found: [RedisConfiguration.Endpoint] = []
        for entry in entries {
            let fields = entry.fields
            if let ip = fields["ip"]?.string, let port = fields["port"]?.int { found.append(.tcp(host: ip, port: Int(port))) }
        }
        sentinels.withLockedValue { list in
            for endpoint in found where !list.contains(endpoint) { list.append(endpoint) }
        }
    }
}
