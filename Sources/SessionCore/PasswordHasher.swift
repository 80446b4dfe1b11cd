import Crypto
import Foundation
import HummingbirdBcrypt
import Metrics
import Redis
import Tracing

#if canImport(Glibc)
    import Glibc
#endif

/// Slow, salted password hashing (bcrypt) on a dedicated, bounded thread pool.
///
/// Why its own pool: a bcrypt takes tens of milliseconds of CPU. Run on the event loops or the cooperative
/// pool, a login flood would stall token checks; on a pool of its own with a bounded queue, a flood waits
/// (or is refused with `overloaded`) while verifications keep flowing. The hashing threads also run at a lower
/// CPU priority (nice 10, Linux): on an idle machine a hash takes as long as ever, but when the cores are
/// contended the event loops win, so a login flood costs logins latency rather than costing everyone throughput.
///
/// bcrypt reads at most 72 bytes and stops at a NUL, so the password is first pre-hashed: HMAC-SHA-256
/// under a fixed domain key, base64-encoded (44 ASCII bytes, no NUL). Stored hashes carry a scheme tag
/// (`bcrypt-hs256$`) so the scheme can change later without ambiguity.
public final class PasswordHasher: Sendable {
    /// bcrypt's cost (log2 rounds).
    public let cost: UInt8
    private let queue: FairHashQueue
    /// `session_password_hash_queue_depth`: hashes waiting for or running on the pool.
    private let queueDepth = Meter(label: "session_password_hash_queue_depth")
    private let tracer = ActiveTracer()
    private static let scheme = "bcrypt-hs256$"
    private static let prehashKey = SymmetricKey(data: Array("session-service/password-prehash/v1".utf8))
    /// A hash of a random password at the same cost, checked when the user does not exist, so unknown
    /// usernames take as long as wrong passwords.
    private let decoy: String

    /// Starts the pool.
    /// - Parameters:
    ///   - cost: bcrypt cost, 4…31 (OWASP: at least 10; the service defaults to 11).
    ///   - threads: hashing threads (the service defaults to half the cores, at least 1).
    ///   - maxQueued: hashes allowed to wait or run at once; beyond, `overloaded`.
    ///   - maxQueuedPerClient: of those, hashes of one client address (see `FairHashQueue`).
    public init(cost: UInt8, threads: Int, maxQueued: Int = 256, maxQueuedPerClient: Int = 16) {
        precondition((4...31).contains(cost), "bcrypt cost must be 4…31")
        self.cost = cost
        self.queue = FairHashQueue(threads: threads, maxQueued: maxQueued, maxPerClient: maxQueuedPerClient)
        self.decoy = Self.scheme + Bcrypt.hash(Self.prehash(SessionToken.random().text), cost: cost)
    }

    /// Hashes a new password off the caller's thread, in `client`'s share of the pool.
    public func hash(_ password: String, for client: String = "") async throws(SessionError) -> String {
        let cost = self.cost
        return try await runOnPool("password.hash", client: client) { Self.scheme + Bcrypt.hash(Self.prehash(password), cost: cost) }
    }

    /// Checks a password against a stored hash (or against the decoy when `hash` is nil) off the caller's thread, in
    /// `client`'s share of the pool.
    /// - Returns: true only for a real hash that matches.
    public func verify(_ password: String, against hash: String?, for client: String = "") async throws(SessionError) -> Bool {
        let stored = hash ?? decoy
        let matches = try await runOnPool("password.verify", client: client) { () -> Bool in
            guard stored.hasPrefix(Self.scheme) else { return false }
            return Bcrypt.verify(Self.prehash(password), hash: String(stored.dropFirst(Self.scheme.count)))
        }
        return hash != nil && matches
    }

    /// Runs one hash on the pool, in `client`'s turn; in a traced request, as a span named `operation` (its queueing
    /// included). Throws `overloaded` when the pool or the client's share is full.
    private func runOnPool<T: Sendable>(_ operation: String, client: String, _ work: @escaping @Sendable () -> T) async throws(SessionError)
        -> T
    {
        let cost = Int(self.cost)
        let span = tracer.childSpan(operation, ofKind: .internal) { attributes in
            attributes["password.hash.algorithm"] = "bcrypt"
            attributes["password.hash.cost"] = cost
        }
        defer { span?.end() }
        let queue = self.queue
        let queueDepth = self.queueDepth
        let result: T? = await withCheckedContinuation { continuation in
            queueDepth.increment()
            let queued = queue.submit(client: client) {
                Self.yieldCPUToEventLoops()
                let value = work()
                queueDepth.decrement()
                continuation.resume(returning: value)
            }
            if !queued {
                queueDepth.decrement()
                continuation.resume(returning: nil)
            }
        }
        guard let result else {
            span?.setStatus(SpanStatus(code: .error))
            throw SessionError.overloaded
        }
        return result
    }

    /// Lowers the calling (hashing) thread's scheduling priority (on Linux, nice is per thread and `who` 0 is the
    /// calling thread). A syscall of a microsecond beside a hash of ~100 ms, so simply done before each one.
    /// Best effort: where it fails, hashing runs at normal priority.
    private static func yieldCPUToEventLoops() {
        #if os(Linux)
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
        #endif
    }

    static func prehash(_ password: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array(password.utf8), using: prehashKey)
        return Data(mac).base64EncodedString()
    }
}
