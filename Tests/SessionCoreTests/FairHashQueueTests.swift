import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import SessionCore

/// The hashing pool's fairness, without HTTP: a flooding client gets its share, no more.
@Suite struct FairHashQueueTests {
    @Test func aQuietClientIsServedWithinOneTurnOfAFlood() async throws {
        let queue = FairHashQueue(threads: 1, maxQueued: 256, maxPerClient: 64)
        let order = NIOLockedValueBox<[String]>([])
        let done = AsyncStream.makeStream(of: Void.self)
        func job(_ name: String) -> @Sendable () -> Void {
            {
                usleep(2_000)  // a hashing thread, not an event loop: it may sleep
                order.withLockedValue { $0.append(name) }
                done.continuation.yield()
            }
        }
        for index in 0..<40 { #expect(queue.submit(client: "flood", job("flood-\(index)"))) }
        #expect(queue.submit(client: "quiet", job("quiet")))
        var finished = 0
        for await _ in done.stream {
            finished += 1
            if finished == 41 { break }
        }
        let position = order.withLockedValue { $0.firstIndex(of: "quiet") }
        // One flood job was running when it came; the round-robin gives it the very next turn.
        #expect(position == 1, "\(order.withLockedValue { $0 })")
    }

    @Test func oneClientCannotTakeMoreThanItsShare() {
        let queue = FairHashQueue(threads: 1, maxQueued: 100, maxPerClient: 4)
        let gate = NIOLockedValueBox(false)
        let blocker: @Sendable () -> Void = { while !gate.withLockedValue({ $0 }) { usleep(1_000) } }
        for _ in 0..<4 { #expect(queue.submit(client: "a", blocker)) }
        #expect(!queue.submit(client: "a", blocker))
        #expect(queue.submit(client: "b", blocker))
        gate.withLockedValue { $0 = true }
    }
}
