import NIOCore

/// Gathers the replies of a pipeline written as one request.
final class ReplyBatch {
    var replies: [RESPValue] = []
}

/// Who waits for a reply: a task (a continuation) or event-loop code (a callback run on the connection's loop).
enum ReplyHandler: Sendable {
    case continuation(CheckedContinuation<RESPValue, any Error>)
    case callback(@Sendable (Result<RESPValue, RedisError>) -> Void)

    func complete(_ result: Result<RESPValue, RedisError>) {
        switch self {
        case .continuation(let continuation): continuation.resume(with: result)
        case .callback(let callback): callback(result)
        }
    }
}

/// Pipelines commands on one connection: writes them as they come and matches replies to them in order.
///
/// Redis answers the commands of one connection in the order it received them, so a FIFO of continuations is
/// all the bookkeeping pipelining needs. Callers hand commands to `enqueue` on the event loop (one hop, no
/// futures); flushes are coalesced, so commands issued together leave in one `write(2)`.
///
/// Timeouts: each command gets a deadline. When it passes, the command fails with `RedisError(.timeout)` but keeps its
/// place in the FIFO (its reply, if it ever comes, is dropped), so the replies of later commands still match.
/// If the oldest command stays unanswered for `stallTimeout`, the connection is presumed dead and closed.
final class RedisChannelHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var reply: ReplyHandler?
        let deadline: NIODeadline
        /// Set for the replies of a pipeline; the continuation sits on its last entry.
        var batch: ReplyBatch? = nil
    }

    private let decoder = RESPDecoder()
    private var pending = CircularBuffer<Pending>(initialCapacity: 64)
    private let commandTimeout: TimeAmount
    private let stallTimeout: TimeAmount
    private var timer: Scheduled<Void>?
    private var timerDeadline = NIODeadline.distantFuture
    private var flushScheduled = false
    private var closedError: RedisError?
    private var context: ChannelHandlerContext?
    /// Called on the event loop each time a command leaves the FIFO (answered, failed or dropped).
    private let onComplete: (Int) -> Void

    /// Called on the event loop once, when the connection stops taking commands (before the channel is inactive).
    private let onFailure: (RedisError) -> Void
    /// Set on a subscriber connection: gets each message Redis sends with no command waiting (pub/sub pushes).
    private let onPush: ((RESPValue) -> Void)?

    init(
        commandTimeout: TimeAmount, stallTimeout: TimeAmount, onComplete: @escaping (Int) -> Void,
        onFailure: @escaping (RedisError) -> Void = { _ in },
        onPush: ((RESPValue) -> Void)? = nil
    ) {
        self.commandTimeout = commandTimeout
        self.stallTimeout = stallTimeout
        self.onComplete = onComplete
        self.onFailure = onFailure
        self.onPush = onPush
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failAll(RedisError(.connectionClosed))
        self.context = nil
    }

    /// Writes encoded commands expecting `replyCount` replies; `reply` gets the reply (an `.array` of them
    /// for a pipeline). Must run on the channel's event loop.
    func enqueue(_ bytes: ByteBuffer, replyCount: Int, reply: ReplyHandler) {
        guard let context, closedError == nil else {
            onComplete(replyCount)
            reply.complete(.failure(closedError ?? RedisError(.connectionClosed)))
            return
        }
        let deadline = NIODeadline.now() + commandTimeout
        if replyCount == 1 {
            pending.append(Pending(reply: reply, deadline: deadline))
        } else {
            let batch = ReplyBatch()
            batch.replies.reserveCapacity(replyCount)
            for _ in 1..<replyCount { pending.append(Pending(reply: nil, deadline: deadline, batch: batch)) }
            pending.append(Pending(reply: reply, deadline: deadline, batch: batch))
        }
        // The timer may be set for a later moment (the stall check of an older, already expired command): a new
        // command's deadline must not wait for it, or a stall answers its second command only at the stall timeout.
        if timer == nil || timerDeadline > deadline { scheduleTimer(context: context, at: deadline) }
        context.write(wrapOutboundOut(bytes), promise: nil)
        guard !flushScheduled else { return }
        flushScheduled = true
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let handler = loopBound.value
            handler.flushScheduled = false
            handler.context?.flush()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try decoder.feed(unwrapInboundIn(data))
            while let reply = try decoder.next() {
                // A pub/sub message can arrive while a command (a PING) waits: it is never that command's reply.
                if let onPush, Self.isPubSubMessage(reply) {
                    onPush(reply)
                    continue
                }
                guard let entry = pending.popFirst() else {
                    guard let onPush else { throw RedisError(.protocolError, "reply from Redis with no command waiting for it") }
                    onPush(reply)
                    continue
                }
                // Release the slot before resuming: the caller may send again at once and must find it free.
                onComplete(1)
                if let batch = entry.batch {
                    batch.replies.append(reply)
                    entry.reply?.complete(.success(.array(batch.replies)))
                } else {
                    entry.reply?.complete(.success(reply))
                }
            }
        } catch {
            failAll(error as? RedisError ?? RedisError(.protocolError))
            context.close(promise: nil)
        }
    }

    /// `["message", channel, payload]` or `["pmessage", pattern, channel, payload]`: what RESP2 pushes to a subscriber.
    static func isPubSubMessage(_ reply: RESPValue) -> Bool {
        guard case .array(let parts?) = reply, let kind = parts.first?.bytes else { return false }
        return kind.elementsEqual("message".utf8) || kind.elementsEqual("pmessage".utf8)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RedisError(.connectionClosed))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // The cause is worth keeping: a TLS handshake failure (an unknown CA, a wrong host name) arrives here.
        failAll(RedisError(.connectionClosed, "connection to Redis failed: \(error)"))
        context.close(promise: nil)
    }

    private func failAll(_ error: RedisError) {
        if closedError == nil {
            closedError = error
            onFailure(error)
        }
        timer?.cancel()
        timer = nil
        while let entry = pending.popFirst() {
            onComplete(1)
            entry.reply?.complete(.failure(error))
        }
    }

    private func scheduleTimer(context: ChannelHandlerContext, at deadline: NIODeadline) {
        timer?.cancel()
        timerDeadline = deadline
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
            if let reply = entry.reply {
                pending[index].reply = nil
                reply.complete(.failure(RedisError(.timeout)))
            }
            index = pending.index(after: index)
        }
        if let oldest = pending.first, oldest.deadline - commandTimeout + stallTimeout <= now {
            failAll(RedisError(.timeout))
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
