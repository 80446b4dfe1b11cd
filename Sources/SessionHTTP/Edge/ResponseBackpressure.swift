import Atomics
import Foundation
import NIOCore
import NIOHTTP1

#if canImport(Glibc)
    import Glibc
#endif

/// Bounded work per connection: a client that pipelines requests and never reads the responses stops being read.
///
/// Without it, every request a client sends is parsed and answered, and the answers wait in the connection's outbound
/// buffer for a reader that never comes: 50 such connections held 300 MiB, 200 held 1.2 GiB, past the idle timeout.
/// Two handlers of one connection share a `ResponseBackpressure`:
/// - `InboundGate`, first in the pipeline (bytes): passes the client's bytes on in slices of at most `slice`, and only
///   while the channel is writable (NIO's write-buffer water marks) and fewer than `maxPipelined` requests are in
///   flight; otherwise it keeps what it has and stops asking the socket for more (`read()` is held back), so the
///   kernel's buffers fill and TCP flow control stops the client.
/// - `RequestCounter`, right after the HTTP decoder (before pipelining): a request is in flight from its head until its
///   response's last part has been written to the socket. A written response that makes no progress for
///   `writeTimeout` closes the connection.
final class ResponseBackpressure {
    let maxPipelined: Int
    let writeTimeout: TimeAmount
    /// Requests whose response has not been written out yet.
    var inFlight = 0
    /// Responses handed to the socket and not yet written out, and when one last was.
    var unwritten = 0
    var lastProgress = NIODeadline.now()
    /// Since when the channel has been unwritable (its outbound buffer over the high water mark), nil while writable.
    var unwritableSince: NIODeadline?
    /// The gate, to wake when a request completes.
    var wake: (() -> Void)?

    /// The kernel send buffer of a connection (the kernel doubles it): bounds the answers a non-reading client is given.
    static let sendBuffer = 16 * 1024

    /// The bytes passed on at once: at most this much unparsed input per step (about 100 pipelined GETs).
    static let slice = 4096

    init(maxPipelined: Int, writeTimeout: TimeAmount) {
        self.maxPipelined = max(1, maxPipelined)
        self.writeTimeout = writeTimeout
    }

    var hasRoom: Bool { inFlight < maxPipelined }
}

/// The byte-level half of `ResponseBackpressure` (see there).
final class InboundGate: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = Any
    typealias OutboundOut = Any

    private let budget: ResponseBackpressure
    private var held: ByteBuffer?
    private var readHeld = false
    private var context: ChannelHandlerContext?
    private var watchdog: RepeatedTask?
    /// Whether this connection was ever held back: its close frees enough to be worth giving back (`MemoryTrim`).
    private var heldBack = false

    init(_ budget: ResponseBackpressure) {
        self.budget = budget
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        budget.wake = { [weak self] in self?.pump() }
        let bound = NIOLoopBound(budget, eventLoop: context.eventLoop)
        let channel = context.channel
        let every = TimeAmount.nanoseconds(max(budget.writeTimeout.nanoseconds / 4, 1_000_000))
        watchdog = context.eventLoop.scheduleRepeatedTask(initialDelay: every, delay: every) { _ in
            // Responses handed to the socket and none written out for the whole timeout: the client is not reading.
            // Or the channel has been unwritable that long (the response writer waits for writability, so nothing counts
            // as written): either way the client is not reading.
            let budget = bound.value
            let now = NIODeadline.now()
            if budget.unwritten > 0, now - budget.lastProgress >= budget.writeTimeout { channel.close(promise: nil) }
            if let since = budget.unwritableSince, now - since >= budget.writeTimeout { channel.close(promise: nil) }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        watchdog?.cancel()
        budget.wake = nil
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        watchdog?.cancel()
        held = nil
        if heldBack { MemoryTrim.soon() }
        context.fireChannelInactive()
    }

    private var isOpen: Bool { (context?.channel.isWritable ?? false) && budget.hasRoom }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if held == nil, isOpen, bytes.readableBytes <= ResponseBackpressure.slice {
            context.fireChannelRead(data)
            return
        }
        heldBack = true
        if held == nil {
            held = bytes
        } else {
            held!.writeBuffer(&bytes)
        }
        pump()
    }

    func read(context: ChannelHandlerContext) {
        if held == nil, isOpen {
            context.read()
        } else {
            readHeld = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        budget.unwritableSince = context.channel.isWritable ? nil : (budget.unwritableSince ?? .now())
        context.fireChannelWritabilityChanged()
        pump()
    }

    /// Passes held bytes on, a slice at a time, while the gate is open; then lets the socket be read again.
    private func pump() {
        guard let context else { return }
        var forwarded = false
        while isOpen, var bytes = held, bytes.readableBytes > 0 {
            let slice = bytes.readSlice(length: min(ResponseBackpressure.slice, bytes.readableBytes))!
            held = bytes.readableBytes > 0 ? bytes : nil
            forwarded = true
            context.fireChannelRead(wrapInboundOut(slice))
        }
        if forwarded { context.fireChannelReadComplete() }
        if held == nil, isOpen, readHeld {
            readHeld = false
            context.read()
        }
    }
}

/// The request-level half of `ResponseBackpressure` (see there).
final class RequestCounter: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let budget: ResponseBackpressure

    init(_ budget: ResponseBackpressure) {
        self.budget = budget
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) { budget.inFlight += 1 }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .end = unwrapOutboundIn(data) else { return context.write(data, promise: promise) }
        let written = promise ?? context.eventLoop.makePromise()
        if budget.unwritten == 0 { budget.lastProgress = .now() }
        budget.unwritten += 1
        let bound = NIOLoopBound(budget, eventLoop: context.eventLoop)
        written.futureResult.whenComplete { _ in
            let budget = bound.value
            budget.unwritten -= 1
            budget.lastProgress = .now()
            budget.inFlight = max(0, budget.inFlight - 1)
            budget.wake?()
        }
        context.write(data, promise: written)
    }
}

/// Gives freed heap back to the system after abusive connections close. glibc keeps what a burst of connections freed
/// in its per-thread arenas, so without it an instance that survived a flood keeps the flood's footprint. At most once
/// a second, on a thread of its own (a trim walks every arena).
enum MemoryTrim {
    private static let last = ManagedAtomic<Int64>(0)

    static func soon() {
        #if canImport(Glibc)
            let now = Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000)
            let previous = last.load(ordering: .relaxed)
            guard now - previous >= 1000, last.compareExchange(expected: previous, desired: now, ordering: .relaxed).exchanged else { return }
            Thread.detachNewThread {
                Thread.sleep(forTimeInterval: 1)  // its own thread: after the burst of closes
                _ = trim?(0)
            }
        #endif
    }

    #if canImport(Glibc)
        /// glibc's `malloc_trim` (not in Swift's Glibc module): looked up once.
        private static let trim: (@convention(c) (Int) -> Int32)? = {
            guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
            return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
        }()
    #endif
}
