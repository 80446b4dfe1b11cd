import NIOCore

extension RedisCluster {
    /// Where a command goes next on a cluster.
    enum Target: Sendable, Equatable {
        /// The master the slot map names for the command's slot.
        case slot
        /// The node a `MOVED` named (the slot's owner now).
        case moved(RedisConfiguration.Endpoint)
        /// The node an `ASK` named (the slot is being imported there): the command goes with `ASKING` first.
        case ask(RedisConfiguration.Endpoint)
    }

    /// One command's way through a cluster, apart from I/O: what each routing reply means, with a budget per kind —
    /// redirects (`MOVED`, `ASK`) and waits (`TRYAGAIN`, `CLUSTERDOWN`, no master known or connected yet) — so that a
    /// slot migrating under a node that is also failing over cannot spend one kind's budget on the other's.
    /// `RedisClient` feeds it every reply and does what it says; `ClusterRoutingTests` feed it replies without a server.
    struct CommandRouting: Sendable, Equatable {
        /// Redirects followed at most per command (a slot moved twice during one command is already rare).
        static let maxRedirects = 5
        /// Waits at most per command: 10, 20, 40, 80, 160 ms — about 310 ms in all, a failover's election excepted.
        static let maxWaits = 5

        /// What to do with a reply or a failure.
        enum Action: Sendable, Equatable {
            /// Not about routing: the caller gets the reply.
            case deliver
            /// Send the command again to `target` now; `movedSlot`: the slot map learns the slot's new owner first.
            case send(Target, movedSlot: UInt16?)
            /// Send again after `delay` (to the same target); `refresh`: ask for a new slot map meanwhile.
            case wait(TimeAmount, refresh: Bool)
            /// The caller gets this failure; `refresh`: the map is worth reading again.
            case fail(RedisError, refresh: Bool)
        }

        private(set) var target = Target.slot
        private(set) var redirects = 0
        private(set) var waits = 0

        /// An error reply among the command's replies.
        mutating func errorReply(_ message: String) -> Action {
            let words = message.split(separator: " ")
            switch words.first {
            case "MOVED", "ASK":
                guard words.count == 3, let slot = UInt16(words[1]), slot < HashSlot.count, let node = Self.endpoint(words[2]) else {
                    return .deliver
                }
                guard redirects < Self.maxRedirects else {
                    return .fail(RedisError(.unavailable, "too many cluster redirects (last: \(words[0]))"), refresh: true)
                }
                redirects += 1
                if words[0] == "MOVED" {
                    target = .moved(node)
                    return .send(target, movedSlot: slot)
                }
                target = .ask(node)
                return .send(target, movedSlot: nil)
            case "TRYAGAIN":
                // A multi-key command during a slot migration: its keys are split between two nodes for a moment.
                return wait(refresh: false)
            case "CLUSTERDOWN":
                // The cluster lost a slot's master and is electing another: wait, and read the map again.
                target = .slot
                return wait(refresh: true)
            case "READONLY", "LOADING", "MASTERDOWN":
                // The node is not (or not yet) a master that can serve: the map is out of date.
                return .fail(RedisError(.unavailable, "Redis node cannot serve: \(words[0])"), refresh: true)
            default:
                return .deliver
            }
        }

        /// No connection for the target: no master known for the slot yet, or a redirect's node still connecting.
        mutating func unavailable(_ error: RedisError) -> Action {
            guard error.code == .unavailable else { return .fail(error, refresh: false) }
            return waits < Self.maxWaits ? wait(refresh: true) : .fail(error, refresh: true)
        }

        private mutating func wait(refresh: Bool) -> Action {
            guard waits < Self.maxWaits else { return .fail(RedisError(.unavailable, "cluster did not settle in time"), refresh: refresh) }
            waits += 1
            return .wait(.milliseconds(Int64(10 << (waits - 1))), refresh: refresh)
        }

        /// `host:port` from a redirect (the host may be an IPv6 address: the port follows the last colon).
        static func endpoint(_ text: Substring) -> RedisConfiguration.Endpoint? {
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
                return nil
            }
            return .tcp(host: String(text[..<colon]), port: port)
        }
    }

    /// The master of every slot, as far as this client knows: installed from `CLUSTER SHARDS`, corrected slot by slot
    /// by `MOVED`. Kept apart from pools and I/O so that what a new map changes is testable on its own.
    struct SlotMap: Sendable, Equatable {
        private(set) var slots = [RedisConfiguration.Endpoint?](repeating: nil, count: HashSlot.count)

        /// The master of a slot, nil while unknown.
        func master(of slot: UInt16) -> RedisConfiguration.Endpoint? { slots[Int(slot)] }

        /// Every master the map names.
        var masters: Set<RedisConfiguration.Endpoint> { Set(slots.compactMap { $0 }) }

        /// Whether every slot has a master.
        var isComplete: Bool { !slots.contains(nil) }

        /// `MOVED slot node`: the slot is that node's now.
        mutating func moved(_ slot: UInt16, to node: RedisConfiguration.Endpoint) {
            slots[Int(slot)] = node
        }

        /// Installs a map read from the cluster. Returns whether it changed a map that was known (the first map is no
        /// change; a later one that differs is a failover or a resharding).
        @discardableResult
        mutating func install(_ map: [(range: ClosedRange<Int>, master: RedisConfiguration.Endpoint)]) -> Bool {
            var next = [RedisConfiguration.Endpoint?](repeating: nil, count: HashSlot.count)
            for (range, master) in map {
                for slot in range where slot >= 0 && slot < HashSlot.count { next[slot] = master }
            }
            let changed = next != slots && slots.contains { $0 != nil }
            slots = next
            return changed
        }
    }
}
