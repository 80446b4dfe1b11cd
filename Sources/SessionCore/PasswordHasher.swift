import Crypto
import Foundation
import HummingbirdBcrypt
import Metrics
import NIOConcurrencyHelpers
import Redis
import Tracing

#if canImport(Glibc)
    import Glibc
#endif

/// How new passwords are hashed (`PASSWORD_HASH`, `ARGON2_*`, `BCRYPT_COST`).
public enum PasswordHashScheme: Sendable, Hashable {
    /// Argon2id in a PHC string (the default: OWASP's first choice, Keycloak's default since version 24).
    case argon2id(Argon2id.Parameters)
    /// bcrypt of a pre-hash (see `PasswordHasher`), for deployments that must stay on it.
    case bcrypt(cost: UInt8)

    var algorithm: String {
        switch self {
        case .argon2id: "argon2id"
        case .bcrypt: "bcrypt"
        }
    }

    var cost: String {
        switch self {
        case .argon2id(let p): "m=\(p.memoryKiB),t=\(p.iterations),p=\(p.parallelism)"
        case .bcrypt(let cost): "\(cost)"
        }
    }
}

/// Slow, salted password hashing on a dedicated, bounded thread pool.
///
/// Why its own pool: a hash takes tens of milliseconds of CPU (and, with Argon2id, its memory). Run on the event loops
/// or the cooperative pool, a login flood would stall token checks; on a pool of its own with a bounded, fair queue
/// (`FairHashQueue`), a flood waits (or is refused with `overloaded`) while verifications keep flowing. Only running
/// hashes hold memory, so Argon2id's is bounded by threads × `memoryKiB`. The hashing threads also run at a lower CPU
/// priority (nice 10, Linux): when the cores are contended the event loops win.
///
/// Every password is normalised to Unicode NFC first (NIST SP 800-63B 5.1.1.2), so the same password typed on
/// another keyboard or OS matches. What is stored says how it was made:
/// - `$argon2id$v=19$m=…,t=…,p=…$salt$hash` — Argon2id of the NFC password's UTF-8, readable by any PHC
///   implementation (e.g. PyPI's argon2-cffi);
/// - `bcrypt-nfc$<bcrypt>` — bcrypt of a pre-hash of the NFC password: bcrypt reads at most 72 bytes and stops at a
///   NUL, so it gets HMAC-SHA-256 under a fixed domain key, base64-encoded (44 ASCII bytes, no NUL);
/// - `bcrypt-hs256$<bcrypt>` — the same pre-hash of the password as it was typed (before NFC): verified as made.
/// A successful login with a hash not made as configured now is rehashed (`needsRehash`).
public final class PasswordHasher: Sendable {
    /// How new hashes are made.
    public let scheme: PasswordHashScheme
    private let queue: FairHashQueue
    /// `session_password_hash_queue_depth`: hashes waiting for or running on the pool.
    private let queueDepth = Meter(label: "session_password_hash_queue_depth")
    private let tracer = ActiveTracer()
    private static let legacyBcrypt = "bcrypt-hs256$"
    private static let bcrypt = "bcrypt-nfc$"
    private static let prehashKey = SymmetricKey(data: Array("session-service/password-prehash/v1".utf8))
    /// A hash of a random password made as configured, checked when the user does not exist, so unknown usernames take
    /// as long as wrong passwords. Made on the pool (an Argon2id hash is tens of milliseconds and 19 MiB: not on the
    /// caller's thread, which may be an event loop or a cooperative one), as the first job after start.
    private let decoy = NIOLockedValueBox<String?>(nil)

    /// Starts the pool.
    /// - Parameters:
    ///   - scheme: how new passwords are hashed (bcrypt cost 4…31; OWASP: at least 10).
    ///   - threads: hashing threads (the service defaults to half the cores, at least 1).
    ///   - maxQueued: hashes allowed to wait or run at once; beyond, `overloaded`.
    ///   - maxQueuedPerClient: of those, hashes of one client address (see `FairHashQueue`).
    public init(scheme: PasswordHashScheme = .argon2id(.init()), threads: Int, maxQueued: Int = 256, maxQueuedPerClient: Int = 16) {
        if case .bcrypt(let cost) = scheme { precondition((4...31).contains(cost), "bcrypt cost must be 4…31") }
        self.scheme = scheme
        self.queue = FairHashQueue(threads: threads, maxQueued: maxQueued, maxPerClient: maxQueuedPerClient)
        _ = queue.submit(client: "") { [decoy] in _ = Self.decoyHash(decoy, scheme) }
    }

    /// Hashes a new password off the caller's thread, in `client`'s share of the pool.
    public func hash(_ password: String, for client: String = "") async throws(SessionError) -> String {
        let scheme = self.scheme
        // nil: libargon2 could not allocate the memory — the machine is short of it; refused like a full pool.
        guard let hash = try await runOnPool("password.hash", client: client, { Self.make(password, scheme) }) else { throw .overloaded }
        return hash
    }

    /// Checks a password against a stored hash (or against the decoy when `hash` is nil) off the caller's thread, in
    /// `client`'s share of the pool.
    /// - Returns: true only for a real hash that matches.
    public func verify(_ password: String, against hash: String?, for client: String = "") async throws(SessionError) -> Bool {
        let (decoy, scheme) = (self.decoy, self.scheme)
        let matches = try await runOnPool("password.verify", client: client) {
            Self.matches(password, hash ?? Self.decoyHash(decoy, scheme))
        }
        return hash != nil && matches
    }

    /// Whether a stored hash was made otherwise than new ones are now (another scheme or cost, or before NFC), so a
    /// login that just proved the password should store a new one.
    public func needsRehash(_ hash: String) -> Bool {
        switch scheme {
        case .argon2id(let parameters): Argon2id.parameters(of: hash) != parameters
        case .bcrypt(let cost): !hash.hasPrefix(Self.bcrypt + "$2b$" + (cost < 10 ? "0" : "") + "\(cost)$")
        }
    }

    /// The decoy, made by the first pool job that needs it (normally the one `init` queues); others wait for it there.
    private static func decoyHash(_ box: NIOLockedValueBox<String?>, _ scheme: PasswordHashScheme) -> String {
        box.withLockedValue { decoy in
            if let decoy { return decoy }
            guard let made = make(SessionToken.random().text, scheme) else {
                preconditionFailure("libargon2 refused the parameters or could not allocate their memory")
            }
            decoy = made
            return made
        }
    }

    static func make(_ password: String, _ scheme: PasswordHashScheme) -> String? {
        let normalized = normalize(password)
        switch scheme {
        case .argon2id(let parameters):
            return Argon2id.hash(Array(normalized.utf8), parameters: parameters)
        case .bcrypt(let cost):
            return Self.bcrypt + Bcrypt.hash(prehash(normalized), cost: cost)
        }
    }

    static func matches(_ password: String, _ stored: String) -> Bool {
        if stored.hasPrefix(Argon2id.prefix) { return Argon2id.verify(Array(normalize(password).utf8), against: stored) }
        if stored.hasPrefix(Self.bcrypt) { return Bcrypt.verify(prehash(normalize(password)), hash: String(stored.dropFirst(Self.bcrypt.count))) }
        if stored.hasPrefix(Self.legacyBcrypt) { return Bcrypt.verify(prehash(password), hash: String(stored.dropFirst(Self.legacyBcrypt.count))) }
        return false
    }

    /// Unicode NFC (canonical composition): `e` + U+0301 and `é` hash alike.
    static func normalize(_ password: String) -> String { password.precomposedStringWithCanonicalMapping }

    /// Runs one hash on the pool, in `client`'s turn; in a traced request, as a span named `operation` (its queueing
    /// included). Throws `overloaded` when the pool or the client's share is full.
    private func runOnPool<T: Sendable>(_ operation: String, client: String, _ work: @escaping @Sendable () -> T) async throws(SessionError)
        -> T
    {
        let scheme = self.scheme
        let span = tracer.childSpan(operation, ofKind: .internal) { attributes in
            attributes["password.hash.algorithm"] = scheme.algorithm
            attributes["password.hash.cost"] = scheme.cost
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
    /// calling thread). A syscall of a microsecond beside a hash of tens of milliseconds, so simply done before each one.
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
