import Foundation
import NIOCore
import Redis
import Testing

@testable import SessionCore

/// The near cache's protocol under random interleavings: begin-read, complete-read (on a live, lapsed or ended tracking
/// connection), cancel, invalidate, flush, connection lost, reconnect (a new source and its lease), lease renewals,
/// time passing and lookups, against a model that remembers, for every key, the last step that must void what was
/// read before it. The invariant: **a lookup never serves a value whose read began before the last invalidation,
/// flush or connection loss that covers its key, nor one outside its connection's lease.**
///
/// Deterministic: each run is a seed; a failure names the seed and the step, and the trace replays exactly.
@Suite struct NearCacheModelTests {
    /// SplitMix64: small, seedable, good enough to pick steps.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// A read in flight: its key, ticket, the step it began at, and the connection it went out on.
    struct Read {
        let key: [UInt8]
        let ticket: NearCache.Ticket
        let began: Int
        let source: TrackingSource
    }

    /// What the model knows of each value it handed to the cache (the value's bytes are the read's number).
    struct Origin {
        let began: Int
        let source: TrackingSource
    }

    /// Runs one random history; returns a description of the first violation, or nil.
    static func run(seed: UInt64, steps: Int = 300) -> (violation: String?, hits: Int) {
        var random = Generator(state: seed)
        let keys = (0..<4).map { Array("k\($0)".utf8) }
        var machine = NearCache.StateMachine(maxEntries: 3, maxAge: .seconds(10))
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var now = start
        let lease = TimeAmount.milliseconds(500)
        var nextSource: UInt64 = 1
        var live: TrackingSource? = nil
        var leaseEnds: [TrackingSource: NIODeadline] = [:]
        var ended: Set<TrackingSource> = []
        var reads: [Read] = []
        var origins: [Origin] = []
        // The last step that voids, for a key, what was read before it.
        var barrier: [[UInt8]: Int] = [:]
        var trace: [String] = []
        var hits = 0

        func voidAll(_ step: Int) { for key in keys { barrier[key] = step } }

        for step in 0..<steps {
            let key = keys[Int.random(in: 0..<keys.count, using: &random)]
            switch Int.random(in: 0..<100, using: &random) {
            case 0..<20:  // begin a read on the live connection (or on none: it will fail and be cancelled)
                let source = live ?? TrackingSource(id: 0)
                reads.append(Read(key: key, ticket: machine.beginRead(key), began: step, source: source))
                trace.append("\(step) begin \(key.last!) on \(source.id)")
            case 20..<38 where !reads.isEmpty:  // a reply lands (any order)
                let read = reads.remove(at: Int.random(in: 0..<reads.count, using: &random))
                origins.append(Origin(began: read.began, source: read.source))
                let value = withUnsafeBytes(of: UInt64(origins.count - 1)) { Array($0) }
                let completion = machine.completeRead(
                    read.key, ticket: read.ticket, value: value, deadline: now + .seconds(60), fetchedAt: now, source: read.source, now: now)
                trace.append("\(step) complete \(read.key.last!) began \(read.began) → \(completion)")
                // A reply outside its connection's lease must not be used at all.
                let inLease = now < (leaseEnds[read.source] ?? .distantPast) && !ended.contains(read.source)
                if !inLease && completion != .untrusted { return ("step \(step): a reply outside its lease was \(completion)", hits) }
            case 38..<43 where !reads.isEmpty:
                let read = reads.remove(at: Int.random(in: 0..<reads.count, using: &random))
                machine.cancelRead(read.key, ticket: read.ticket)
                trace.append("\(step) cancel \(read.key.last!)")
            case 43..<58:
                machine.apply(.keys([key]))
                barrier[key] = step
                trace.append("\(step) invalidate \(key.last!)")
            case 58..<62:
                machine.apply(.all)
                voidAll(step)
                trace.append("\(step) flush")
            case 62..<66 where live != nil:  // the tracking connections are lost
                machine.apply(.ended(source: live!))
                ended.insert(live!)
                live = nil
                voidAll(step)
                trace.append("\(step) connection lost")
            case 66..<70 where live == nil:  // a new pair, confirmed with its first ping
                let source = TrackingSource(id: nextSource)
                nextSource += 1
                live = source
                leaseEnds[source] = now + lease
                machine.apply(.confirmed(source: source, until: now + lease))
                trace.append("\(step) reconnect as \(source.id)")
            case 70..<80 where live != nil:  // a ping answered in time renews the lease from its send time
                let sent = now - .milliseconds(Int64.random(in: 0...50, using: &random))
                guard let end = leaseEnds[live!], now < end else { break }
                leaseEnds[live!] = max(end, sent + lease)
                machine.apply(.confirmed(source: live!, until: sent + lease))
                trace.append("\(step) lease of \(live!.id) to +\((sent + lease - start).nanoseconds / 1_000_000) ms")
            case 80..<85:
                now = now + .milliseconds(Int64.random(in: 1...300, using: &random))
                trace.append("\(step) time +\((now - start).nanoseconds / 1_000_000) ms")
            default:  // a lookup
                guard let (entry, _) = machine.entry(key, now: now) else { continue }
                let number = entry.value.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                let origin = origins[Int(number)]
                trace.append("\(step) hit \(key.last!) read at \(origin.began)")
                hits += 1
                if let voided = barrier[key], origin.began <= voided {
                    let violation = "step \(step): served a value of \(key.last!) read at step \(origin.began), voided at step \(voided)\n"
                    return (violation + trace.suffix(40).joined(separator: "\n"), hits)
                }
                if ended.contains(origin.source) || now >= (leaseEnds[origin.source] ?? .distantPast) {
                    return ("step \(step): served a value outside its connection's lease\n" + trace.suffix(40).joined(separator: "\n"), hits)
                }
            }
        }
        return (nil, hits)
    }

    @Test func noValueReadBeforeAnInvalidationIsServedAfterIt() async {
        // A second of CPU (debug build): on a thread of its own, not one of the cooperative pool's two, which the suites
        // running beside it need to wake from their sleeps.
        let (violations, hits) = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var violations: [String] = []
                var hits = 0
                for seed in 1...3000 as ClosedRange<UInt64> {
                    let outcome = Self.run(seed: seed)
                    hits += outcome.hits
                    if let violation = outcome.violation { violations.append("seed \(seed): \(violation)") }
                    if violations.count == 3 { break }
                }
                continuation.resume(returning: (violations, hits))
            }
        }
        #expect(violations.isEmpty, "\(violations.joined(separator: "\n\n"))")
        // The histories do serve from the cache (else the invariant would hold vacuously).
        #expect(hits > 5_000, "\(hits) hits")
    }
}
