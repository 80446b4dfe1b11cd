import Metrics
import NIOConcurrencyHelpers
public import NIOCore
public import Redis

/// Verified sessions kept in this process, so that a hot session is answered without a Redis round trip — and dropped
/// the moment Redis says its key changed (`CLIENT TRACKING`, see `RedisClient(onInvalidation:)`).
///
/// What makes it safe:
/// - Only values read through the client's tracked reader are kept, and Redis then reports every change to those keys
///   (a logout's `DEL`, a touch's `PEXPIRE`, an expiry, an eviction from its tracking table, `FLUSHALL`).
/// - An invalidation can overtake the reply it invalidates: a read first leaves a placeholder (a *ticket*), an
///   invalidation removes it, and a reply whose ticket is gone is used once and not kept.
/// - Losing tracking anywhere (`.all`: a dropped connection, a failover) empties the cache; reads go uncached until
///   tracking is back.
/// - Each entry ends at its idle deadline as read from Redis (`PTTL` at the read, which Redis caps at the absolute
///   expiry), and after `maxAge` whatever happens: a backstop against a silently lost invalidation.
///
/// At most `maxEntries` entries, evicted by CLOCK (second chance): a hit only sets a bit, so a hit costs one lock, a
/// dictionary lookup and no allocation.
public final class NearCache: Sendable {
    /// An entry: the session's value (as Redis holds it) and when it stops being usable.
    struct Entry {
        var value: [UInt8]
        /// The idle deadline Redis reported (from when the read was sent: never later than Redis' own).
        var deadline: NIODeadline
        /// When the read was sent.
        var fetchedAt: NIODeadline
    }

    /// A read in progress; its reply is kept only if the ticket is still the key's when it arrives.
    public struct Ticket: Sendable, Equatable {
        let number: UInt64
    }

    private struct State {
        var index: [[UInt8]: Int] = [:]
        var keys: [[UInt8]?] = []
        var entries: [Entry] = []
        var referenced: [Bool] = []
        var free: [Int] = []
        var hand = 0
        var pending: [[UInt8]: Ticket] = [:]
        var nextTicket: UInt64 = 0
    }

    /// Entries at most (`NEAR_CACHE_MAX_ENTRIES`).
    public let maxEntries: Int
    /// An entry's longest life, whatever Redis says (`NEAR_CACHE_MAX_AGE_MS`).
    public let maxAge: TimeAmount
    private let state: NIOLockedValueBox<State>

    private let hits = Counter(label: "session_near_cache_hits_total")
    private let misses = Counter(label: "session_near_cache_misses_total")
    private let invalidations = Counter(label: "session_near_cache_invalidations_total")
    private let flushes = Counter(label: "session_near_cache_flushes_total")
    private let size = Gauge(label: "session_near_cache_entries")

    public init(maxEntries: Int = 100_000, maxAge: TimeAmount = .seconds(10)) {
        self.maxEntries = max(1, maxEntries)
        self.maxAge = maxAge
        var state = State()
        state.index.reserveCapacity(min(self.maxEntries, 1 << 16))
        self.state = NIOLockedValueBox(state)
    }

    /// The usable entry of a key (counted as a hit), or nil (a miss).
    func entry(_ key: [UInt8], now: NIODeadline = .now()) -> Entry? {
        let entry: Entry? = state.withLockedValue { state in
            guard let slot = state.index[key] else { return nil }
            let entry = state.entries[slot]
            guard now < entry.deadline, now - entry.fetchedAt < maxAge else {
                Self.remove(key, at: slot, &state)
                return nil
            }
            state.referenced[slot] = true
            return entry
        }
        if entry == nil { misses.increment() } else { hits.increment() }
        return entry
    }

    /// Starts a read of `key`: from now on, an invalidation of it voids the ticket.
    func beginRead(_ key: [UInt8]) -> Ticket {
        state.withLockedValue { state in
            state.nextTicket &+= 1
            let ticket = Ticket(number: state.nextTicket)
            state.pending[key] = ticket
            return ticket
        }
    }

    /// Keeps what a read found, if nothing invalidated the key since `beginRead` (else the value serves its one request
    /// and is dropped). Returns whether it was kept.
    @discardableResult
    func completeRead(_ key: [UInt8], ticket: Ticket, value: [UInt8], deadline: NIODeadline, fetchedAt: NIODeadline) -> Bool {
        let kept = state.withLockedValue { state -> Bool in
            guard state.pending[key] == ticket else { return false }
            state.pending[key] = nil
            let entry = Entry(value: value, deadline: deadline, fetchedAt: fetchedAt)
            if let slot = state.index[key] {
                state.entries[slot] = entry
                state.referenced[slot] = false
                return true
            }
            let slot = Self.claimSlot(&state, maxEntries: maxEntries)
            state.keys[slot] = key
            state.entries[slot] = entry
            state.referenced[slot] = false
            state.index[key] = slot
            return true
        }
        if kept { size.record(count) }
        return kept
    }

    /// Ends a read that keeps nothing (the key is gone, the read failed).
    func cancelRead(_ key: [UInt8], ticket: Ticket) {
        state.withLockedValue { state in
            if state.pending[key] == ticket { state.pending[key] = nil }
        }
    }

    /// Applies what Redis reported: the keys are dropped (and reads of them in progress voided), or everything is.
    public func invalidate(_ invalidation: RedisInvalidation) {
        switch invalidation {
        case .keys(let keys):
            invalidations.increment(by: keys.count)
            state.withLockedValue { state in
                for key in keys {
                    state.pending[key] = nil
                    if let slot = state.index[key] { Self.remove(key, at: slot, &state) }
                }
            }
        case .all:
            flushes.increment()
            state.withLockedValue { $0 = State() }
        }
        size.record(count)
    }

    /// The entries held now.
    public var count: Int { state.withLockedValue { $0.index.count } }

    private static func remove(_ key: [UInt8], at slot: Int, _ state: inout State) {
        state.index[key] = nil
        state.keys[slot] = nil
        state.entries[slot].value = []
        state.free.append(slot)
    }

    /// A slot for a new entry: a free one, a new one while under the bound, else CLOCK's victim.
    private static func claimSlot(_ state: inout State, maxEntries: Int) -> Int {
        if let slot = state.free.popLast() { return slot }
        if state.keys.count < maxEntries {
            state.keys.append(nil)
            state.entries.append(Entry(value: [], deadline: .distantPast, fetchedAt: .distantPast))
            state.referenced.append(false)
            return state.keys.count - 1
        }
        while true {
            let slot = state.hand
            state.hand = (state.hand + 1) % state.keys.count
            if state.referenced[slot] {
                state.referenced[slot] = false
                continue
            }
            if let key = state.keys[slot] { state.index[key] = nil }
            return slot
        }
    }
}
