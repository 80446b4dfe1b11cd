import NIOCore

/// A command on its way to Redis: its encoded bytes and where its reply goes.
struct RedisRequest {
    var bytes: ByteBuffer
    var promise: EventLoopPromise<RESPValue>
    /// How many replies the bytes will bring: 1 for a command, more for a pipeline, whose replies are
    /// gathered into one `.array`.
    var replyCount: Int = 1
}

/// Gathers the replies of a pipeline written as one request.
final class ReplyBatch {
    var replies: [RESPValue] = []
}

/// Pipelines commands on one connection: writes them as they come and matches replies to them in order.
///
/// Redis answers the commands of one connection in the order it received them, so a FIFO of promises is
/// all the bookkeeping pipelining needs. Flushes are coalesced: every write asks for a flush, but only one
/// flush runs per pass of the event loop, so commands issued together leave in one `write(2)`.
///
/// Timeouts: each command gets a deadline. When it passes, the command fails with `.timeout` but keeps its
/// place in the FIFO (its reply, if it ever comes, is dropped), so the replies of later commands still match.
/// If the oldest command stays unanswered for `stallTimeout`, the connection is presumed dead and closed.
final class RedisChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var promise: EventLoopPromise<RESPValue>?
        let deadline: NIODeadline
        /// Set for the replies of a pipeline; the promise sits on its last entry.
        var batch: ReplyBatch? = nil
    }

    private let decoder = RESPDecoder()
    private var pending = CircularBuffer<Pending>(initialCapacity: 64)
    private let commandTimeout: TimeAmount
    private let stallTimeout: TimeAmount
    private var timer: Scheduled<Void>?
    private var flushScheduled = false
    private var closedError: RedisError?
    /// Called on the event loop each time a command leaves the FIFO (answered, failed or dropped).
    private let onComplete: () -> Void

    init(commandTimeout: TimeAmount, stallTimeout: TimeAmount, onComplete: @escaping () -> Void) {
        self.commandTimeout = commandTimeout
        self.stallTimeout = stallTimeout
        self.onComplete = onComplete
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let closedError {
            request.promise.fail(closedError)
            onComplete()
            promise?.fail(closedError)
            return
        }
        let deadline = NIODeadline.now() + commandTimeout
        if request.replyCount == 1 {
            pending.append(Pending(promise: request.promise, deadline: deadline))
        } else {
            let batch = ReplyBatch()
            batch.replies.reserveCapacity(request.replyCount)
            for _ in 1..<request.replyCount { pending.append(Pending(promise: nil, deadline: deadline, batch: batch)) }
            pending.append(Pending(promise: request.promise, deadline: deadline, batch: batch))
        }
        if timer == nil { scheduleTimer(context: context, at: deadline) }
        context.write(wrapOutboundOut(request.bytes), promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = loopBound.value
            handler.flushScheduled = false
            context.flush()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try decoder.feed(unwrapInboundIn(data))
            while let reply = try decoder.next() {
                guard let entry = pending.popFirst() else {
                    throw RedisError.protocolError("reply from Redis with no command waiting for it")
                }
                if let batch = entry.batch {
                    batch.replies.append(reply)
                    entry.promise?.succeed(.array(batch.replies))
                } else {
                    entry.promise?.succeed(reply)
                }
                onComplete()
            }
        } catch {
            failAll(error as? RedisError ?? .protocolViolation)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(.connectionClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(.connectionClosed)
        context.close(promise: nil)
    }

    /// The number of commands written and not yet answered, timed-out ones included.
    var inFlight: Int { pending.count }

    private func failAll(_ error: RedisError) {
        if closedError == nil { closedError = error }
        timer?.cancel()
        timer = nil
        while let entry = pending.popFirst() {
            entry.promise?.fail(error)
            onComplete()
        }
    }

    private func scheduleTimer(context: ChannelHandlerContext, at deadline: NIODeadline) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = loopBound.value
            handler.timer = nil
            handler.expireOverdue(context: context)
        }
    }

    private func expireOverdue(context: ChannelHandlerContext) {
        let now = NIODeadline.now()
        var index = pending.startIndex
        var nextDeadline: NIODeadline?
        while index != pending.endIndex {
            let entry = pending[index]
            if entry.deadline > now {
                nextDeadline = entry.deadline
                break
            }
            if let promise = entry.promise {
                pending[index].promise = nil
                promise.fail(RedisError.timeout)
            }
            index = pending.index(after: index)
        }
        if let oldest = pending.first, oldest.deadline - commandTimeout + stallTimeout <= now {
            failAll(.timeout)
            context.close(promise: nil)
            return
        }
        if let oldest = pending.first {
            // Wake again for the next live deadline, or to check the stall of the oldest command.
            let stallDeadline = oldest.deadline - commandTimeout + stallTimeout
            scheduleTimer(context: context, at: min(nextDeadline ?? stallDeadline, stallDeadline))
        }
    }
}
