import NIOConcurrencyHelpers
import NIOPosix

/// The password-hashing pool's queue, shared fairly between client addresses.
///
/// Why: a hash costs tens of milliseconds of a hashing thread, so whoever sends the most logins or registrations would
/// own the pool, and everyone else's login would wait behind them (one address with 300 concurrent registrations made
/// another user's correct login fail with 503 ten times in ten). Here each address has its own FIFO, at most
/// `maxPerClient` of its hashes wait or run at once (beyond: `overloaded` for that address alone), and a free thread
/// takes the next job of the waiting address served least recently. So a login from a quiet address waits at
/// most for the hashes already running and one turn of the round — however many a flooding address queued.
final class FairHashQueue: Sendable {
    typealias Job = @Sendable () -> Void

    private struct State {
        var running = 0
        var total = 0
        var perClient: [String: Int] = [:]
        var waiting: [String: [Job]] = [:]
        /// Clients with a job waiting.
        var ring: [String] = []
        /// When each client's last job started (a counter): the waiting client served least recently goes next.
        var lastServed: [String: UInt64] = [:]
        var clock: UInt64 = 0
    }

    let threads: Int
    let maxQueued: Int
    let maxPerClient: Int
    private let pool: NIOThreadPool
    private let state = NIOLockedValueBox(State())

    init(threads: Int, maxQueued: Int, maxPerClient: Int) {
        self.threads = max(1, threads)
        self.maxQueued = max(1, maxQueued)
        self.maxPerClient = max(1, maxPerClient)
        self.pool = NIOThreadPool(numberOfThreads: self.threads)
        pool.start()
    }

    deinit { pool.shutdownGracefully { _ in } }

    /// Jobs waiting or running now.
    var depth: Int { state.withLockedValue { $0.total } }

    /// Queues `job` for `client`; false when the pool or the client's share is full (nothing queued).
    func submit(client: String, _ job: @escaping Job) -> Bool {
        let startNow: Bool? = state.withLockedValue { state in
            let mine = state.perClient[client, default: 0]
            guard state.total < maxQueued, mine < maxPerClient else { return nil }
            state.total += 1
            state.perClient[client] = mine + 1
            if state.running < threads {
                state.running += 1
                state.clock += 1
                state.lastServed[client] = state.clock
                return true
            }
            if state.waiting[client, default: []].isEmpty { state.ring.append(client) }
            state.waiting[client, default: []].append(job)
            return false
        }
        guard let startNow else { return false }
        if startNow { run(client: client, job) }
        return true
    }

    private func run(client: String, _ job: @escaping Job) {
        pool.submit { [self] _ in
            job()
            finished(client: client)
        }
    }

    /// A job of `client` ended: the thread takes the next client's turn, or goes idle.
    private func finished(client: String) {
        let next: (String, Job)? = state.withLockedValue { state in
            state.total -= 1
            let left = state.perClient[client, default: 1] - 1
            state.perClient[client] = left > 0 ? left : nil
            guard !state.ring.isEmpty else {
                state.running -= 1
                if left == 0 { state.lastServed[client] = nil }
                return nil
            }
            var index = 0
            for candidate in state.ring.indices.dropFirst()
            where state.lastServed[state.ring[candidate], default: 0] < state.lastServed[state.ring[index], default: 0] {
                index = candidate
            }
            let owner = state.ring[index]
            let job = state.waiting[owner]!.removeFirst()
            if state.waiting[owner]!.isEmpty {
                state.waiting[owner] = nil
                state.ring.remove(at: index)
            }
            state.clock += 1
            state.lastServed[owner] = state.clock
            // Forget clients with nothing left, so the table does not grow with every address ever seen.
            if left == 0, state.waiting[client] == nil { state.lastServed[client] = nil }
            return (owner, job)
        }
        if let (owner, job) = next { run(client: owner, job) }
    }
}
