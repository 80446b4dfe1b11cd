import Metrics
import NIOConcurrencyHelpers
public import NIOCore
public import Redis

/// Verified sessions kept in this process, so that a hot session is answered without a Redis round trip — and dropped
/// the moment Redis says its key changed (`CLIENT TRACKING`, see `RedisClient(onInvalidation:)`).
///
/// The rules that keep a revocation from ever being lost are the state machine's (`NearCache.StateMachine`): tickets
/// that never repeat, entries tied to the tracking connection that read them, leases that a connection must keep
/// renewing, and flushes that void reads in progress. One more rule lives outside it, because it asks the kernel: a hit
/// is served only when its tracking listener has handled every byte its socket received (`TrackingSource.backlog`),
/// so an invalidation already on this host is never overtaken by a request that arrived after it. README, "Design:
/// the near cache", argues each failure case.
///
/// At most `maxEntries` entries, evicted by CLOCK (second chance): a hit only sets a bit, so a hit costs one lock, a
/// dictionary lookup and no allocation.
public final class NearCache: Sendable {
    typealias Entry = StateMachine.Entry

    /// A read in progress; its reply is kept only if the ticket is still the key's when it arrives.
    public struct Ticket: Sendable, Equatable {
        let number: UInt64
    }

    /// Entries at most (`NEAR_CACHE_MAX_ENTRIES`).
    public var maxEntries: Int { maxEntriesValue }
    /// An entry's longest life, whatever Redis says (`NEAR_CACHE_MAX_AGE_MS`).
    public let maxAge: TimeAmount
    private let maxEntriesValue: Int
    private let state: NIOLockedValueBox<StateMachine>

    private let hits = Counter(label: "session_near_cache_hits_total")
    private let misses = Counter(label: "session_near_cache_misses_total")
    /// Misses of entries held back only because their listener had unread bytes.
    private let unreadMisses = Counter(label: "session_near_cache_unread_misses_total")
    private let invalidations = Counter(label: "session_near_cache_invalidations_total")
    private let flushes = Counter(label: "session_near_cache_flushes_total")
    private let size = Gauge(label: "session_near_cache_entries")

    public init(maxEntries: Int = 100_000, maxAge: TimeAmount = .seconds(10)) {
        let machine = StateMachine(maxEntries: maxEntries, maxAge: maxAge)
        self.maxEntriesValue = machine.maxEntries
        self.maxAge = maxAge
        self.state = NIOLockedValueBox(machine)
    }

    /// The usable entry of a key (counted as a hit), or nil (a miss).
    func entry(_ key: [UInt8], now: NIODeadline = .now()) -> Entry? {
        lookup(key, now: now)?.entry
    }

    /// The usable entry of a key and whether to send it a renewal now (see `StateMachine.entry(_:now:touchDue:touchInterval:)`).
    func lookup(_ key: [UInt8], now: NIODeadline, touchDue: TimeAmount? = nil, touchInterval: TimeAmount = .zero) -> (entry: Entry, touch: Bool)? {
        let found = state.withLockedValue { $0.entry(key, now: now, touchDue: touchDue, touchInterval: touchInterval) }
        // An invalidation this host has received but its listener's loop has not handled yet (README, "The near
        // cache"): the entry may be revoked already, so Redis answers. Checked after the lookup, outside the lock.
        guard let found, found.entry.source.hasNoUnreadInvalidations else {
            if found != nil { unreadMisses.increment() }
            misses.increment()
            return nil
        }
        hits.increment()
        return found
    }

    /// Starts a read of `key`: from now on, an invalidation of it voids the ticket.
    func beginRead(_ key: [UInt8]) -> Ticket {
        state.withLockedValue { $0.beginRead(key) }
    }

    /// What a read's reply is good for: kept, used once, or not to be used (see `StateMachine.Completion`).
    @discardableResult
    func completeRead(
        _ key: [UInt8], ticket: Ticket, value: [UInt8], deadline: NIODeadline, fetchedAt: NIODeadline, source: TrackingSource,
        now: NIODeadline = .now()
    ) -> StateMachine.Completion {
        let completion = state.withLockedValue {
            $0.completeRead(key, ticket: ticket, value: value, deadline: deadline, fetchedAt: fetchedAt, source: source, now: now)
        }
        if completion == .kept { size.record(count) }
        return completion
    }

    /// Ends a read that keeps nothing (the key is gone, the read failed).
    func cancelRead(_ key: [UInt8], ticket: Ticket) {
        state.withLockedValue { $0.cancelRead(key, ticket: ticket) }
    }

    /// Applies what the tracking reported: keys dropped (and reads of them voided), everything dropped, a lease
    /// renewed, or a tracking connection ended.
    public func invalidate(_ invalidation: RedisInvalidation) {
        switch invalidation {
        case .keys(let keys): invalidations.increment(by: keys.count)
        case .all, .ended: flushes.increment()
        case .confirmed: break
        }
        state.withLockedValue { $0.apply(invalidation) }
        if case .confirmed = invalidation { return }
        size.record(count)
    }

    /// The entries held now.
    public var count: Int { state.withLockedValue { $0.count } }
}
