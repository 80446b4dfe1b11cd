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

    /// Confirms that the sentinels' newest word names `endpoint` the master: every known sentinel is asked at once,
    /// a majority must answer, and the answers with the highest config epoch decide (`Verdict`).
    /// - Throws: `.unavailable` when the verdict does not name `endpoint`.
    func confirmMaster(_ endpoint: RedisConfiguration.Endpoint) async throws {
        let list = sentinels.withLockedValue { $0 }
        let masterName = self.masterName
        let answers = await withTaskGroup(of: Verdict.Answer?.self) { group in
            for sentinel in list {
                group.addTask { [self] in
                    guard
                        let connection = try? await RedisConnection.connect(
                            to: sentinel, configuration: configuration, purpose: .sentinel, tls: tls, on: loop
                        )
                    else { return nil }
                    defer { connection.channel.close(promise: nil) }
                    // The epoch first, the address second: a switch between the two can only understate the epoch.
                    guard connection.reserve(2),
                        let replies = try? await connection.pipeline([
                            RedisCommand("SENTINEL", ["master", masterName]), RedisCommand("SENTINEL", ["get-master-addr-by-name", masterName]),
                        ]), replies.count == 2
                    else { return nil }
                    return Verdict.Answer(master: replies[0], address: replies[1])
                }
            }
            var answers: [Verdict.Answer] = []
            for await answer in group { if let answer { answers.append(answer) } }
            return answers
        }
        let named = try Verdict.master(from: answers, sentinels: list.count, name: masterName).get()
        guard named == endpoint else {
            throw RedisError(.unavailable, "the sentinels name \(named) the master of '\(masterName)', not \(endpoint)")
        }
    }

    /// Which node the sentinels' answers name the master — the rule `confirmMaster` applies, without I/O.
    ///
    /// A sentinel's word is its config epoch and the address it gives clients (`get-master-addr-by-name`). That
    /// address, not `SENTINEL master`'s: while the leader of a failover reconfigures the replicas, `SENTINEL master`
    /// shows the *old* master with the *new* epoch (for a second or more, `Tests/System/test_failover.py`, SIGSTOP), and a
    /// frozen master woken then was confirmed by it. The rules:
    /// 1. More than half of the known sentinels answered (fewer may all be behind a failover the others saw).
    /// 2. Every answer with the highest epoch names the same node (a tie that disagrees is a switch under way).
    /// 3. At least one of them vouches for it: a sentinel that sees the node it names subjectively or objectively down
    ///    (`s_down`, `o_down`), or is failing it over, does not vouch — a lagging sentinel sees the frozen master that
    ///    way until it hears of the new one.
    struct Verdict {
        struct Answer: Equatable {
            var epoch: Int64
            var named: RedisConfiguration.Endpoint
            var vouches: Bool

            init(epoch: Int64, named: RedisConfiguration.Endpoint, vouches: Bool) {
                self.epoch = epoch
                self.named = named
                self.vouches = vouches
            }

            /// From one sentinel's `SENTINEL master` and `SENTINEL get-master-addr-by-name` replies; nil when either
            /// is not a full answer.
            init?(master: RESPValue, address: RESPValue) {
                let fields = master.fields
                guard let epoch = fields["config-epoch"]?.int, let flags = fields["flags"]?.string, let named = RedisSentinel.endpoint(address)
                else { return nil }
                // `SENTINEL master`'s own address and flags describe the node it had before a switch it is making.
                let ownAddress = RedisSentinel.endpoint(fields)
                let down = flags.split(separator: ",").contains { ["s_down", "o_down", "failover_in_progress"].contains($0) }
                self.init(epoch: epoch, named: named, vouches: !(down && ownAddress == named))
            }
        }

        static func master(from answers: [Answer], sentinels: Int, name: String) -> Result<RedisConfiguration.Endpoint, RedisError> {
            guard answers.count > sentinels / 2, let top = answers.map(\.epoch).max() else {
                return .failure(RedisError(.unavailable, "only \(answers.count) of \(sentinels) sentinels answered for master '\(name)'"))
            }
            let newest = answers.filter { $0.epoch == top }
            let named = Set(newest.map(\.named))
            guard named.count == 1, let master = named.first else {
                return .failure(RedisError(.unavailable, "the sentinels of '\(name)' disagree at epoch \(top): a failover is under way"))
            }
            guard newest.contains(where: \.vouches) else {
                return .failure(RedisError(.unavailable, "the sentinels of '\(name)' see \(master) down or being failed over"))
            }
            return .success(master)
        }
    }

    /// `SENTINEL get-master-addr-by-name` on one sentinel.
    private func masterAddress(on connection: RedisConnection) async throws -> RedisConfiguration.Endpoint {
        let reply = try await connection.send(RedisCommand("SENTINEL", ["get-master-addr-by-name", masterName]))
        if case .error(let message) = reply { throw RedisError(.server, message) }
        guard let master = Self.endpoint(reply) else { throw RedisError(.unavailable, "sentinel does not know master '\(masterName)'") }
        return master
    }

    /// The node of a `get-master-addr-by-name` reply (`[ip, port]`).
    static func endpoint(_ address: RESPValue) -> RedisConfiguration.Endpoint? {
        guard let pair = address.array, pair.count == 2, let host = pair[0].string, let port = pair[1].int else { return nil }
        return .tcp(host: host, port: Int(port))
    }

    /// The node of a `SENTINEL master`/`sentinels` entry (its `ip` and `port` fields).
    static func endpoint(_ fields: [String: RESPValue]) -> RedisConfiguration.Endpoint? {
        guard let host = fields["ip"]?.string, let port = fields["port"]?.int else { return nil }
        return .tcp(host: host, port: Int(port))
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
            if let sentinel = Self.endpoint(entry.fields) { found.append(sentinel) }
        }
        sentinels.withLockedValue { list in
            for endpoint in found where !list.contains(endpoint) { list.append(endpoint) }
        }
    }
}
