import NIOCore
import Testing

@testable import Redis

/// The cluster's routing rules without a server: what each reply means for one command, each kind with its own
/// budget, and what a new slot map changes.
@Suite struct ClusterRoutingTests {
    typealias Routing = RedisCluster.CommandRouting
    static let a = RedisConfiguration.Endpoint.tcp(host: "10.0.0.1", port: 7000)
    static let b = RedisConfiguration.Endpoint.tcp(host: "10.0.0.2", port: 7001)

    @Test func movedSendsToTheNewOwnerAndTeachesTheMap() {
        var routing = Routing()
        let decided = routing.errorReply("MOVED 3999 10.0.0.2:7001")
        #expect(decided == .send(.moved(Self.b), movedSlot: 3999))
        #expect(routing.target == .moved(Self.b))
        #expect(routing.redirects == 1)
    }

    @Test func askSendsOnceToTheImportingNodeWithoutTouchingTheMap() {
        var routing = Routing()
        let decided = routing.errorReply("ASK 3999 10.0.0.2:7001")
        #expect(decided == .send(.ask(Self.b), movedSlot: nil))
        #expect(routing.target == .ask(Self.b))
    }

    @Test func anIPv6RedirectKeepsItsAddress() {
        var routing = Routing()
        let decided = routing.errorReply("MOVED 1 ::1:7002")
        #expect(decided == .send(.moved(.tcp(host: "::1", port: 7002)), movedSlot: 1))
    }

    @Test func malformedRedirectsAndOtherErrorsAreTheCallersReplies() {
        for message in [
            "MOVED", "MOVED 3999", "MOVED x 10.0.0.2:7001", "MOVED 16384 10.0.0.2:7001", "ASK 1 nohost", "ASK 1 h:0", "ERR unknown command",
            "WRONGTYPE Operation against a key holding the wrong kind of value", "NOSCRIPT No matching script",
        ] {
            var routing = Routing()
            let decided = routing.errorReply(message)
            #expect(decided == .deliver, "\(message)")
            #expect(routing.redirects == 0 && routing.waits == 0)
        }
    }

    @Test func tryAgainWaitsWithABackoffThatDoubles() {
        var routing = Routing()
        let delays = (0..<Routing.maxWaits).map { _ in routing.errorReply("TRYAGAIN Multiple keys request during rehashing of slot") }
        #expect(delays == ([10, 20, 40, 80, 160] as [Int64]).map { .wait(.milliseconds($0), refresh: false) })
        guard case .fail(let error, _) = routing.errorReply("TRYAGAIN again") else {
            Issue.record("a sixth TRYAGAIN must fail")
            return
        }
        #expect(error.code == .unavailable)
    }

    @Test func clusterDownWaitsReadsTheMapAgainAndReturnsToTheSlotsOwner() {
        var routing = Routing()
        _ = routing.errorReply("MOVED 5 10.0.0.2:7001")
        let decided = routing.errorReply("CLUSTERDOWN The cluster is down")
        #expect(decided == .wait(.milliseconds(10), refresh: true))
        #expect(routing.target == .slot)
    }

    @Test func redirectsAndWaitsHaveTheirOwnBudgets() {
        var routing = Routing()
        // A slot migrating (redirects) under a failover (waits): spending one budget leaves the other whole.
        for _ in 0..<Routing.maxWaits { _ = routing.errorReply("TRYAGAIN") }
        for _ in 0..<Routing.maxRedirects {
            guard case .send = routing.errorReply("ASK 7 10.0.0.1:7000") else {
                Issue.record("a redirect was refused while its own budget remained")
                return
            }
        }
        guard case .fail(let error, refresh: true) = routing.errorReply("MOVED 7 10.0.0.1:7000") else {
            Issue.record("a sixth redirect must fail and ask for a new map")
            return
        }
        #expect(error.code == .unavailable)
        #expect(routing.redirects == Routing.maxRedirects && routing.waits == Routing.maxWaits)
    }

    @Test func aNodeThatCannotServeFailsTheCommandAndAsksForTheMap() {
        for message in ["READONLY You can't write against a read only replica.", "LOADING Redis is loading", "MASTERDOWN Link down"] {
            var routing = Routing()
            guard case .fail(let error, refresh: true) = routing.errorReply(message) else {
                Issue.record("\(message)")
                continue
            }
            #expect(error.code == .unavailable)
        }
    }

    @Test func noMasterYetWaitsThenFailsButOtherFailuresFailAtOnce() {
        var routing = Routing()
        for expected in [10, 20, 40, 80, 160] {
            let decided = routing.unavailable(RedisError(.unavailable))
            #expect(decided == .wait(.milliseconds(Int64(expected)), refresh: true))
        }
        let decided = routing.unavailable(RedisError(.unavailable))
        #expect(decided == .fail(RedisError(.unavailable), refresh: true))
        var other = Routing()
        let otherDecided = other.unavailable(RedisError(.timeout))
        #expect(otherDecided == .fail(RedisError(.timeout), refresh: false))
    }

    @Test func aNewMapIsAChangeOnlyWhenAMapWasKnown() {
        var map = RedisCluster.SlotMap()
        #expect(!map.isComplete && map.master(of: 0) == nil)
        let first = map.install([(0...8191, Self.a), (8192...16383, Self.b)])
        #expect(!first)
        #expect(map.isComplete && map.masters == [Self.a, Self.b])
        let same = map.install([(0...8191, Self.a), (8192...16383, Self.b)])
        #expect(!same)
        // A failover: b's slots are a's now.
        let failover = map.install([(0...16383, Self.a)])
        #expect(failover)
        #expect(map.masters == [Self.a])
    }

    @Test func movedCorrectsOneSlotAndAMapWithHolesIsIncomplete() {
        var map = RedisCluster.SlotMap()
        map.install([(0...16383, Self.a)])
        map.moved(42, to: Self.b)
        #expect(map.master(of: 42) == Self.b && map.master(of: 41) == Self.a && map.master(of: 43) == Self.a)
        map.install([(0...100, Self.a), (16000...99_999, Self.b)])
        #expect(!map.isComplete && map.master(of: 101) == nil && map.master(of: 16383) == Self.b)
    }
}
