import NIOCore
import NIOHTTP1

/// Deadlines for a request on its way in, against slow-header and slow-body clients (slowloris): its head must be
/// complete within `headerTimeout` of its first byte, and its body may not stall for longer than `bodyTimeout`.
/// When one passes, the connection is closed — a response to an earlier pipelined request may be in progress on
/// it, so a 408 could not be written in order. Between requests, Hummingbird's idle timeout applies instead.
///
/// Two handlers share one instance per connection: `RawReads`, before the HTTP/1 decoder, sees a request's first
/// bytes; `DecodedParts`, right after the decoder, sees its head completed and its body move.
final class RequestDeadlines {
    private enum Phase {
        case betweenRequests
        case readingHead
        case readingBody
    }

    private let headerTimeout: TimeAmount
    private let bodyTimeout: TimeAmount
    private var phase = Phase.betweenRequests
    /// When the running deadline passes; nil between requests.
    private var deadline: NIODeadline?
    /// The one timer of the connection, and when it fires. It is not cancelled when a request beats its deadline:
    /// firing, it closes only if a deadline has passed, else sleeps until the running one. Scheduling and cancelling a
    /// timer for every request showed in the verification's profile; this way a busy connection wakes once per timeout.
    private var timer: (task: Scheduled<Void>, at: NIODeadline)?

    init(headerTimeout: TimeAmount, bodyTimeout: TimeAmount) {
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
    }

    /// Bytes arrived: the first ones of a request start its header deadline.
    fileprivate func bytesArrived(context: ChannelHandlerContext) {
        guard case .betweenRequests = phase else { return }
        phase = .readingHead
        arm(headerTimeout, context: context)
    }

    /// A part was decoded: the head stops the header deadline; a body part (re)starts the body deadline.
    fileprivate func decoded(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch part {
        case .head(let head):
            phase = .readingBody
            let hasBody =
                head.headers[canonicalForm: "transfer-encoding"].isEmpty == false
                || (head.headers.first(name: "content-length").flatMap(Int.init) ?? 0) > 0
            if hasBody { arm(bodyTimeout, context: context) } else { disarm() }
        case .body:
            arm(bodyTimeout, context: context)
        case .end:
            phase = .betweenRequests
            disarm()
        }
    }

    fileprivate func disarm() {
        deadline = nil
    }

    /// The connection closed: nothing to wait for.
    fileprivate func stop() {
        deadline = nil
        timer?.task.cancel()
        timer = nil
    }

    private func arm(_ timeout: TimeAmount, context: ChannelHandlerContext) {
        let due = NIODeadline.now() + timeout
        deadline = due
        if let timer, timer.at <= due { return }
        timer?.task.cancel()
        schedule(at: due, context: context)
    }

    private func schedule(at due: NIODeadline, context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let task = context.eventLoop.assumeIsolated().scheduleTask(deadline: due) {
            let (deadlines, context) = loopBound.value
            deadlines.fired(context: context)
        }
        timer = (task, due)
    }

    private func fired(context: ChannelHandlerContext) {
        timer = nil
        guard let deadline else { return }
        if deadline <= .now() {
            context.channel.close(promise: nil)
        } else {
            schedule(at: deadline, context: context)
        }
    }

    /// Before the HTTP/1 decoder: notices the first bytes of each request.
    final class RawReads: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer
        private let deadlines: RequestDeadlines

        init(_ deadlines: RequestDeadlines) { self.deadlines = deadlines }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            deadlines.bytesArrived(context: context)
            context.fireChannelRead(data)
        }

        func channelInactive(context: ChannelHandlerContext) {
            deadlines.stop()
            context.fireChannelInactive()
        }
    }

    /// Right after the HTTP/1 decoder: sees heads and body parts as they are decoded. It also closes HTTP/1.0
    /// connections after their response (`Connection: close` on the head), since the response is written as HTTP/1.1
    /// and persistent HTTP/1.0 connections need a `keep-alive` exchange nobody relies on today.
    final class DecodedParts: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias InboundOut = HTTPServerRequestPart
        private let deadlines: RequestDeadlines

        init(_ deadlines: RequestDeadlines) { self.deadlines = deadlines }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let part = unwrapInboundIn(data)
            deadlines.decoded(part, context: context)
            if case .head(var head) = part, head.version.major == 1, head.version.minor == 0 {
                head.headers.replaceOrAdd(name: "Connection", value: "close")
                context.fireChannelRead(wrapInboundOut(.head(head)))
                return
            }
            context.fireChannelRead(data)
        }
    }
}
