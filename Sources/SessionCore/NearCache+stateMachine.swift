import NIOCore
import Redis

extension NearCache {
    /// The near cache's whole protocol, apart from locks, clocks and metrics: what is kept, what is served, and what
    /// an invalidation, a flush, a lost tracking connection or a lapsed lease does to both. `NearCache` holds one
    /// behind a lock; `NearCacheModelTests` drives it through random interleavings against a reference model.
    ///
    /// The invariant it keeps — **no value read before an invalidation, a flush or the loss of its tracking connection
    /// is ever served after it, and no value is served outside its connection's lease** — rests on four rules:
    /// 1. A read is kept only if its ticket is still the key's when the reply lands. An invalidation of the key, a
    ///    flush, or the end of any tracking connection removes the tickets; ticket numbers never repeat (a flush
    ///    keeps the counter), so a reply begun before a flush cannot match a ticket handed out after it.
    /// 2. Every entry names the tracking connection (`TrackingSource`, one per connection pair, never reused) whose
    ///    reader read it. The end of a source, or a flush, drops every entry.
    /// 3. An entry is served only while its source's lease runs: the tracker renews it with pings, from each ping's
    ///    send time, and a lapse ends the source. A reply that lands outside its source's lease is not used at all.
    /// 4. An entry ends at its idle deadline as read from Redis and after `maxAge` whatever happens.
    struct StateMachine {
        struct Entry {
            var value: [UInt8]
            /// The idle deadline Redis reported (from when the read was sent: never later than Redis' own).
            var deadline: NIODeadline
            /// When the read was sent.
            var fetchedAt: NIODeadline
            /// The tracking connection that read it.
            var source: TrackingSource
            /// When this instance last sent a renewal for it (at most one per touch interval).
            var touchedAt: NIODeadline
        }

        /// What a read's reply is good for.
        enum Completion: Equatable {
            /// Kept, and served.
            case kept
            /// Served to the request that read it, not kept (an invalidation overtook it).
            case usedOnce
            /// Not to be used: its connection's lease had lapsed, or the connection ended (ask Redis another way).
            case untrusted
        }

        let maxEntries: Int
        let maxAge: TimeAmount
        private(set) var index: [Key: Int] = [:]
        private var keys: [Key?] = []
        private var entries: [Entry] = []
        private var referenced: [Bool] = []
        private var free: [Int] = []
        private var hand = 0
        private var pending: [Key: Ticket] = [:]
        /// Never reset: a ticket is never handed out twice.
        private var nextTicket: UInt64 = 0
        /// The live sources and the end of their leases (a handful: one per master).
        private var leases: [(source: TrackingSource, until: NIODeadline)] = []

        /// A key with a one-pass hash: `[UInt8]`'s own hashes byte by byte, which showed in the cached verification's
        /// profile (a dictionary lookup on every hit).
        struct Key: Hashable {
            let bytes: [UInt8]

            init(_ bytes: [UInt8]) { self.bytes = bytes }

            func hash(into hasher: inout Hasher) {
                bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
            }
        }

        init(maxEntries: Int, maxAge: TimeAmount) {
            self.maxEntries = max(1, maxEntries)
            self.maxAge = maxAge
            index.reserveCapacity(min(self.maxEntries, 1 << 16))
        }

        var count: Int { index.count }

        /// The lease of a source, `.distantPast` when it has none.
        func lease(of source: TrackingSource) -> NIODeadline {
            for lease in leases where lease.source == source { return lease.until }
            return .distantPast
        }

        /// The usable entry of a key, or nil. `touchDue`: the idle deadline at or below which a renewal is due; when the
        /// entry is that close and none was sent within `touchInterval`, the answer says to send one (and notes it).
        mutating func entry(_ key: [UInt8], now: NIODeadline, touchDue: TimeAmount? = nil, touchInterval: TimeAmount = .zero)
            -> (entry: Entry, touch: Bool)?
        {
            let key = Key(key)
            guard let slot = index[key] else { return nil }
            let entry = entries[slot]
            guard now < entry.deadline, now - entry.fetchedAt < maxAge, now < lease(of: entry.source) else {
                remove(key, at: slot)
                return nil
            }
            referenced[slot] = true
            guard let touchDue, entry.deadline - now <= touchDue, now - entry.touchedAt >= touchInterval else { return (entry, false) }
            entries[slot].touchedAt = now
            return (entry, true)
        }

        /// Starts a read of `key`: from now on, an invalidation of it voids the ticket.
        mutating func beginRead(_ key: [UInt8]) -> Ticket {
            nextTicket &+= 1
            let ticket = Ticket(number: nextTicket)
            pending[Key(key)] = ticket
            return ticket
        }

        /// What a read's reply is good for (see `Completion`); keeps it when it may.
        mutating func completeRead(
            _ key: [UInt8], ticket: Ticket, value: [UInt8], deadline: NIODeadline, fetchedAt: NIODeadline, source: TrackingSource,
            now: NIODeadline
        ) -> Completion {
            let key = Key(key)
            guard now < lease(of: source) else {
                if pending[key] == ticket { pending[key] = nil }
                return .untrusted
            }
            guard pending[key] == ticket else { return .usedOnce }
            pending[key] = nil
            let entry = Entry(value: value, deadline: deadline, fetchedAt: fetchedAt, source: source, touchedAt: fetchedAt)
            if let slot = index[key] {
                entries[slot] = entry
                referenced[slot] = false
                return .kept
            }
            let slot = claimSlot()
            keys[slot] = key
            entries[slot] = entry
            referenced[slot] = false
            index[key] = slot
            return .kept
        }

        /// Ends a read that keeps nothing (the key is gone, the read failed).
        mutating func cancelRead(_ key: [UInt8], ticket: Ticket) {
            let key = Key(key)
            if pending[key] == ticket { pending[key] = nil }
        }

        /// Applies what the tracking reported.
        mutating func apply(_ invalidation: RedisInvalidation) {
            switch invalidation {
            case .keys(let keys):
                for key in keys.lazy.map(Key.init) {
                    pending[key] = nil
                    if let slot = index[key] { remove(key, at: slot) }
                }
            case .all:
                flush()
            case .confirmed(let source, let until):
                if let position = leases.firstIndex(where: { $0.source == source }) {
                    leases[position].until = max(leases[position].until, until)
                } else {
                    leases.append((source, until))
                }
            case .ended(let source):
                leases.removeAll { $0.source == source }
                flush()
            }
        }

        /// Drops every entry and voids every read in progress; tickets keep counting.
        private mutating func flush() {
            index.removeAll(keepingCapacity: true)
            keys.removeAll(keepingCapacity: true)
            entries.removeAll(keepingCapacity: true)
            referenced.removeAll(keepingCapacity: true)
            free.removeAll(keepingCapacity: true)
            hand = 0
            pending.removeAll()
        }

        private mutating func remove(_ key: Key, at slot: Int) {
            index[key] = nil
            keys[slot] = nil
            entries[slot].value = []
            free.append(slot)
        }

        /// A slot for a new entry: a free one, a new one while under the bound, else CLOCK's victim.
        private mutating func claimSlot() -> Int {
            if let slot = free.popLast() { return slot }
            if keys.count < maxEntries {
                keys.append(nil)
                entries.append(
                    Entry(value: [], deadline: .distantPast, fetchedAt: .distantPast, source: TrackingSource(id: 0), touchedAt: .distantPast))
                referenced.append(false)
                return keys.count - 1
            }
            while true {
                let slot = hand
                hand = (hand + 1) % keys.count
                if referenced[slot] {
                    referenced[slot] = false
                    continue
                }
                if let key = keys[slot] { index[key] = nil }
                return slot
            }
        }
    }
}
