import Foundation
import NIOConcurrencyHelpers
import NIOCore
public import Redis

#if canImport(Glibc)
    import Glibc
#endif

/// The shared throwaway Redis servers (`TestServers` starts them, or scripts/test did), and helpers to start private ones.
public enum TestRedis {
    /// The URL of the shared test Redis (one open node; never flushed, restarted or reconfigured).
    public static func url() async throws -> String {
        try await TestServers.value("TEST_REDIS_URL", from: .node)
    }

    /// The shared test Redis' configuration, with optional tweaks.
    public static func configuration(_ tweak: (inout RedisConfiguration) -> Void = { _ in }) async throws -> RedisConfiguration {
        var configuration = try await RedisConfiguration(url: url())
        tweak(&configuration)
        return configuration
    }

    /// The shared Sentinel shape (master, two replicas, three sentinels); never reconfigured.
    public static func sentinelConfiguration() async throws -> RedisConfiguration {
        var configuration = try await RedisConfiguration(url: TestServers.value("TEST_SENTINEL_URL", from: .sentinel))
        configuration.sentinelPassword = try await TestServers.value("TEST_SENTINEL_PASSWORD", from: .sentinel)
        return configuration
    }

    /// The shared 3+3 Redis Cluster; never reconfigured.
    public static func clusterConfiguration() async throws -> RedisConfiguration {
        try await RedisConfiguration(url: TestServers.value("TEST_CLUSTER_URL", from: .cluster))
    }

    /// The cluster only the slot-migration test uses (it moves slots between masters).
    public static func migrationClusterConfiguration() async throws -> RedisConfiguration {
        try await RedisConfiguration(url: TestServers.value("TEST_CLUSTER_MIGRATION_URL", from: .migration))
    }

    /// The HA shapes' data-node password, for admin clients to single nodes.
    public static func haAdminPassword() async throws -> String {
        try await TestServers.value("TEST_HA_ADMIN_PASSWORD", from: .cluster)
    }

    /// A key no other test uses.
    public static func uniqueKey(_ label: String = "test") -> String {
        "test:\(label):\(UUID().uuidString.lowercased())"
    }

    @discardableResult
    /// Runs `body` with a running, connected client, and shuts the client down afterwards.
    public static func withClient<Result: Sendable>(
        _ configuration: RedisConfiguration,
        waitForConnection: Bool = true,
        _ body: @Sendable (RedisClient) async throws -> Result
    ) async throws -> Result {
        let client = RedisClient(configuration: configuration)
        // A readiness wait, not a bound under test: a cluster client on a loaded CI machine takes seconds to connect.
        return try await client.withRunning(waitingUpTo: waitForConnection ? .seconds(20) : nil) { try await body(client) }
    }
}

/// A private redis-server process for tests that stop, kill or pause Redis.
public final class RedisServerProcess: @unchecked Sendable {
    // @unchecked: `pid` is only touched by the test that owns this object, one call at a time.
    public let port: Int
    private let directory: URL
    private let extraArguments: [String]
    private var pid: pid_t?

    /// Prepares a redis-server on a free loopback port; `start()` runs it.
    public init(arguments: [String] = []) throws {
        self.port = try Self.freePort()
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("redis-test-\(UUID().uuidString)")
        self.extraArguments = arguments
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    /// Starts a redis-server on a free loopback port and waits until it accepts connections.
    public static func started(arguments: [String] = []) async throws -> RedisServerProcess {
        let server = try RedisServerProcess(arguments: arguments)
        try await server.start()
        return server
    }

    deinit {
        if let pid {
            Glibc.kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        try? FileManager.default.removeItem(at: directory)
    }

    /// This server's URL.
    public var url: String { "redis://127.0.0.1:\(port)/0" }

    /// Starts (or restarts) the server on the same port, and waits until it accepts connections.
    public func start() async throws {
        try await TestServers.ready()  // not beside the shared servers' start (see `TestServers.value`)
        let executable = ProcessInfo.processInfo.environment["TEST_REDIS_SERVER"] ?? "redis-server"
        let arguments =
            [
                executable, "--port", "\(port)", "--bind", "127.0.0.1", "--dir", directory.path, "--save", "",
                "--logfile", directory.appendingPathComponent("redis.log").path,
            ] + extraArguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        let pid = try Self.spawn(arguments, actions: &actions)
        self.pid = pid
        // A readiness wait (generous: a loaded CI machine starts processes slowly), not a bound under test.
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if Self.canConnect(port: port) {
                // Ours, not another process on the port: our redis-server is still running a moment later.
                try await Task.sleep(for: .milliseconds(30))
                var status: Int32 = 0
                guard waitpid(pid, &status, WNOHANG) == 0 else {
                    self.pid = nil
                    throw RedisError(.unavailable, "redis-server exited at start (port \(port) taken?)")
                }
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw RedisError(.timeout)
    }

    /// Starts `arguments[0]` with `arguments`, with an empty signal mask and default handlers: a child inherits its
    /// spawning thread's mask, and the cooperative pool's threads block SIGTERM, which left redis-server deaf to `stop()`.
    static func spawn(_ arguments: [String], actions: inout posix_spawn_file_actions_t) throws -> pid_t {
        var cArguments = arguments.map { strdup($0) } + [nil]
        defer { for pointer in cArguments { free(pointer) } }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let status = posix_spawnp(&pid, arguments[0], &actions, &attributes, &cArguments, environ)
        guard status == 0 else { throw RedisError(.unavailable, "cannot start \(arguments[0]): \(status)") }
        return pid
    }

    /// SIGKILL: no goodbye, sockets reset.
    public func kill() async {
        await signal(SIGKILL)
    }

    /// SIGTERM: Redis closes its clients and exits.
    public func stop() async {
        await signal(SIGTERM)
    }

    /// SIGSTOP / SIGCONT: the process stops answering without closing its sockets (a hung or partitioned Redis).
    public func freeze() { if let pid { Glibc.kill(pid, SIGSTOP) } }
    public func thaw() { if let pid { Glibc.kill(pid, SIGCONT) } }

    private func signal(_ number: Int32) async {
        guard let pid else { return }
        Glibc.kill(pid, number)
        while true {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid || (result == -1 && errno == ECHILD) { break }
            try? await Task.sleep(for: .milliseconds(10))
        }
        self.pid = nil
    }

    private static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// Ports this process already handed out: the kernel may give a just-closed port again, and two tests starting
    /// servers at once must never share one (the second redis-server would fail to bind while its test talked to the
    /// first one — seen in a fresh-clone CI run, where that first one was paused by another test).
    private static let handedOut = NIOLockedValueBox<Set<Int>>([])

    /// A TCP port on 127.0.0.1 that nothing listens on now and that this process has not handed out before.
    public static func freePort() throws -> Int {
        for _ in 0..<100 {
            let port = try anyFreePort()
            if handedOut.withLockedValue({ $0.insert(port).inserted }) { return port }
        }
        throw RedisError(.unavailable, "cannot find a free port")
    }

    /// Below the kernel's ephemeral range (`ip_local_port_range`): the kernel never gives such a port to an outgoing
    /// connection as its source, so a server that starts later, or restarts, on it still finds it free. An ephemeral
    /// port can be taken meanwhile by any client socket, even one retrying a connection to it (seen in a fresh-clone
    /// CI run: `serviceStartedBeforeRedisBecomesReady`'s redis-server could not bind its port).
    private static let serverPorts: Range<Int> = {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        let low = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap { Int($0) } ?? 32768
        return max(1024, low - 12000)..<low
    }()

    private static func anyFreePort() throws -> Int {
        for _ in 0..<500 {
            let port = Int.random(in: serverPorts)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(port).bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            if bound { return port }
        }
        throw RedisError(.unavailable, "cannot find a free port")
    }
}

/// The code of the `RedisError` that `body` throws; nil when it throws nothing or something else.
/// `#expect(await redisErrorCode { try await redis.ping() } == .unavailable)`
public func redisErrorCode(_ body: () async throws -> some Any) async -> RedisError.Code? {
    do {
        _ = try await body()
        return nil
    } catch {
        return (error as? RedisError)?.code
    }
}

/// The same, for synchronous code.
public func redisErrorCode(_ body: () throws -> some Any) -> RedisError.Code? {
    do {
        _ = try body()
        return nil
    } catch {
        return (error as? RedisError)?.code
    }
}
