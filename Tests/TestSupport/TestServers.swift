import Foundation
import NIOConcurrencyHelpers
import Redis

#if canImport(Glibc)
    import Glibc
#endif

/// The Redis servers and shapes the tests share, started the first time a test asks for one: `swift test` needs nothing
/// but `redis-server` and `redis-cli` (and `openssl`) on `PATH`. `TEST_*` variables, when set, name servers started
/// elsewhere instead.
///
/// Starting is `scripts/lib/test-servers`' job (one definition of each shape, in bash beside the process suites'); it
/// runs once per test process, and a watchdog it leaves behind stops the servers when this process exits, however it
/// exits. A machine without Redis fails the tests that need it with the script's message; tests that need
/// no Redis never ask.
public enum TestServers {
    /// A shared shape, named as `test-servers` names it.
    public enum Shape: String, Sendable, CaseIterable {
        /// One open node with the service's least-privilege ACL user.
        case node
        /// A node with `requirepass` and an ACL user.
        case auth
        /// A master, two replicas and three sentinels.
        case sentinel
        /// Three masters with a replica each.
        case cluster
        /// A second cluster, only for the slot-migration test.
        case migration
        /// A node that speaks only TLS and wants a client certificate.
        case tls
    }

    /// The start of every shape, begun by the first test that asks for any; later askers await the same one.
    private static let start = NIOLockedValueBox<Task<[String: String], any Error>?>(nil)
    private static let directory = FileManager.default.temporaryDirectory.appendingPathComponent("session-service-tests-\(getpid())")

    /// The value of a `TEST_*` variable: from the environment when set, else from `shape`.
    ///
    /// The first call starts every shape at once (about half a minute on two cores: the clusters' creation is most of
    /// it) and every caller awaits that start, as does every test that starts a private server (`RedisServerProcess`):
    /// starting eighteen servers loads a small machine, and a test with a timing bound running meanwhile measured the
    /// load (seen: a session's absolute expiry passed before the test could warm its cache). The start runs on a
    /// thread of its own: a cooperative thread blocked on it would starve the tests already running.
    public static func value(_ name: String, from shape: Shape) async throws -> String {
        if let value = ProcessInfo.processInfo.environment[name] { return value }
        guard let value = try await started()[name] else {
            throw RedisError(.unavailable, "test-servers \(shape.rawValue) did not report \(name)")
        }
        return value
    }

    /// Waits until the shared servers run (started now if no test asked yet); nothing when scripts/test or the
    /// environment provides them.
    public static func ready() async throws {
        guard ProcessInfo.processInfo.environment["TEST_REDIS_URL"] == nil else { return }
        _ = try await started()
    }

    private static func started() async throws -> [String: String] {
        let task = start.withLockedValue { start in
            if let start { return start }
            let made = Task {
                try await offThePool { Dictionary(try Self.start(Shape.allCases), uniquingKeysWith: { $1 }) }
            }
            start = made
            return made
        }
        return try await task.value
    }

    /// Runs blocking work on a new thread and awaits it.
    private static func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Runs `test-servers DIR PID SHAPE…`, then reads the `KEY=VALUE` lines it left in `DIR/SHAPE.env`. Not through a
    /// pipe: a process another test spawns meanwhile (a private redis-server) would inherit its write end and hold it
    /// open, so its end would never come.
    private static func start(_ shapes: [Shape]) throws -> [(String, String)] {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../scripts/lib/test-servers").standardized.path
        let log = directory.path + ".log"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        // The daemonized servers keep the descriptors they inherit: stderr goes to a file.
        posix_spawn_file_actions_addopen(&actions, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        let pid = try RedisServerProcess.spawn(["/bin/bash", script, directory.path, "\(getpid())"] + shapes.map(\.rawValue), actions: &actions)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1, errno == EINTR {}
        let text = shapes.compactMap { try? String(contentsOfFile: directory.appendingPathComponent("\($0.rawValue).env").path, encoding: .utf8) }
            .joined(separator: "\n")
        guard status == 0 else {
            let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            let reason = output.split(separator: "\n").last { $0.hasPrefix("error:") }.map(String.init) ?? "see \(log)"
            throw RedisError(.unavailable, "cannot start the test servers: \(reason)")
        }
        return text.split(separator: "\n").compactMap { (line: Substring) -> (String, String)? in
            guard let equals = line.firstIndex(of: "=") else { return nil }
            return (String(line[..<equals]), String(line[line.index(after: equals)...]))
        }
    }
}
