// The smallest program that shows ThreadSanitizer's report on the Redis client's reply hand-over, with no NIO, no
// Redis and no project code: memory written on one thread, then handed to a task with `CheckedContinuation.resume`,
// then read by the task. The resume happens-before the read (the Swift runtime enqueues the task after the write,
// through libdispatch's atomics), but the toolchain's libdispatch and Swift concurrency runtime are not built with
// ThreadSanitizer's instrumentation on Linux, so TSan cannot see that edge and reports a race.
// scripts/sanitize compiles and runs it with `swiftc -sanitize=thread` (it must report) and again under the
// suppression file (it must not), then runs the test suites under that same suppression.

#if canImport(Glibc)
    import Glibc
#endif

/// Stands in for a reply buffer: allocated and written on a thread of its own (the "event loop").
final class Reply: @unchecked Sendable {
    // @unchecked: written once before the hand-over, read once after it; the point of the program is that TSan
    // flags exactly that.
    var bytes: [UInt8] = []
}

func writeOnAnotherThread(_ continuation: CheckedContinuation<Reply, Never>) {
    final class Context { let continuation: CheckedContinuation<Reply, Never>; init(_ c: CheckedContinuation<Reply, Never>) { continuation = c } }
    let context = Unmanaged.passRetained(Context(continuation)).toOpaque()
    var thread = pthread_t()
    pthread_create(
        &thread, nil,
        { argument in
            let context = Unmanaged<Context>.fromOpaque(argument!).takeRetainedValue()
            let reply = Reply()
            reply.bytes = Array(repeating: 42, count: 64)  // the write (RESPDecoder.convert in the client)
            context.continuation.resume(returning: reply)  // the hand-over (RedisChannelHandler → the awaiting task)
            return nil
        }, context)
    pthread_detach(thread)
}

@main
struct ContinuationHandOver {
    static func main() async {
        var total = 0
        for _ in 0..<20 {
            let reply = await withCheckedContinuation { writeOnAnotherThread($0) }
            total += reply.bytes.reduce(0) { $0 + Int($1) }  // the read (RESPValue.string in the client's caller)
        }
        print("read \(total) bytes' worth")
    }
}
