import NIOCore
import Testing

@testable import Redis

/// Which node the sentinels' answers name the master, from replies shaped as Redis 7.0's sentinels gave them during a
/// SIGSTOP failover (watched every 0.3 s: the leader showed the old master with the new epoch for 1.3 s).
@Suite struct SentinelVerdictTests {
    typealias Verdict = RedisSentinel.Verdict
    static let old = RedisConfiguration.Endpoint.tcp(host: "127.0.0.1", port: 31147)
    static let new = RedisConfiguration.Endpoint.tcp(host: "127.0.0.1", port: 30054)

    static func bulk(_ text: String) -> RESPValue { .bulkString(ByteBuffer(string: text)) }

    /// One sentinel's pair of replies: `SENTINEL master` (its own address, flags, epoch) and `get-master-addr-by-name`.
    static func answer(own: RedisConfiguration.Endpoint, flags: String, epoch: Int, address: RedisConfiguration.Endpoint) -> Verdict.Answer? {
        guard case .tcp(let ownHost, let ownPort) = own, case .tcp(let host, let port) = address else { return nil }
        let master = RESPValue.array(
            ["name", "mymaster", "ip", ownHost, "port", "\(ownPort)", "flags", flags, "config-epoch", "\(epoch)", "quorum", "2"].map(bulk))
        return Verdict.Answer(master: master, address: .array([bulk(host), bulk("\(port)")]))
    }

    static func verdict(_ answers: [Verdict.Answer?], of sentinels: Int = 3) -> RedisConfiguration.Endpoint? {
        try? Verdict.master(from: answers.compactMap { $0 }, sentinels: sentinels, name: "mymaster").get()
    }

    @Test func theLeaderReconfiguringTheReplicasNamesThePromotedNodeNotTheOldOne() {
        // The leader mid-failover: `SENTINEL master` still shows the old node, with the new epoch; a lagging sentinel.
        let leader = Self.answer(own: Self.old, flags: "s_down,o_down,master,failover_in_progress", epoch: 1, address: Self.new)
        let lagging = Self.answer(own: Self.old, flags: "s_down,o_down,master", epoch: 0, address: Self.old)
        #expect(leader?.named == Self.new && leader?.epoch == 1 && leader?.vouches == true)
        #expect(Self.verdict([leader, lagging]) == Self.new)
        #expect(Self.verdict([lagging, leader]) == Self.new)
        // Once a second sentinel has switched, both name the promoted node.
        let switched = Self.answer(own: Self.new, flags: "master", epoch: 1, address: Self.new)
        #expect(Self.verdict([lagging, switched, leader]) == Self.new)
    }

    @Test func aMajorityThatHasNotHeardOfTheFailoverAndSeesTheMasterDownDoesNotVouchForIt() {
        let lagging = Self.answer(own: Self.old, flags: "s_down,o_down,master", epoch: 0, address: Self.old)
        #expect(lagging?.vouches == false)
        #expect(Self.verdict([lagging, lagging]) == nil)
        // Before the promotion is seen, the leader names the old node it is failing over: no vouch either.
        let leaderBefore = Self.answer(own: Self.old, flags: "s_down,o_down,master,failover_in_progress", epoch: 0, address: Self.old)
        #expect(Self.verdict([leaderBefore, lagging]) == nil)
        // One sentinel that sees it up is enough, when the newest answers agree.
        let up = Self.answer(own: Self.old, flags: "master", epoch: 0, address: Self.old)
        #expect(Self.verdict([lagging, up]) == Self.old)
    }

    @Test func newestAnswersThatDisagreeOrTooFewAnswersConfirmNothing() {
        let a = Self.answer(own: Self.old, flags: "master", epoch: 2, address: Self.old)
        let b = Self.answer(own: Self.new, flags: "master", epoch: 2, address: Self.new)
        let older = Self.answer(own: Self.new, flags: "master", epoch: 1, address: Self.new)
        #expect(Self.verdict([a, b, older]) == nil)
        #expect(Self.verdict([older, a]) == Self.old)
        #expect(Self.verdict([a], of: 3) == nil)
        #expect(Self.verdict([a, a], of: 4) == nil)
        #expect(Self.verdict([a, a, a], of: 5) == Self.old)
        #expect(Self.verdict([]) == nil)
    }

    @Test func incompleteRepliesAreNotAnswers() {
        let master = RESPValue.array(["ip", "127.0.0.1", "port", "30054", "flags", "master"].map(Self.bulk))  // no epoch
        #expect(Verdict.Answer(master: master, address: .array([Self.bulk("127.0.0.1"), Self.bulk("30054")])) == nil)
        let full = RESPValue.array(["ip", "127.0.0.1", "port", "30054", "flags", "master", "config-epoch", "3"].map(Self.bulk))
        #expect(Verdict.Answer(master: full, address: .array(nil)) == nil)
        #expect(Verdict.Answer(master: .error("ERR No such master with that name"), address: .array(nil)) == nil)
        #expect(Verdict.Answer(master: full, address: .array([Self.bulk("127.0.0.1"), Self.bulk("30054")]))?.named == Self.new)
    }
}
