import Atomics
import CHiredisShims
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// Whether a tracking listener has handled every byte its socket has received: the question a near-cache hit must ask
/// before it answers.
///
/// Redis writes an invalidation to the listener's socket before the revoking client hears its reply (see
/// `RedisClient.evaluate`'s barrier), so by the time a request for a revoked session reaches this instance, the
/// invalidation is in this host's kernel. But the listener's event loop reads it only when it gets to that socket — after
/// the request, if the request arrived on another loop, or came first in the same `epoll` batch, or the loop was
/// preempted between its `read` and the decode. So a hit compares two counters: the bytes TCP has accepted on the socket
/// (`tcpi_bytes_received`, from the kernel, on any thread) and the bytes the pipeline has finished with (counted after
/// each read burst is fully handled). Equal: every invalidation that reached this host has been applied. Not equal: the
/// hit becomes a miss and the session is read from Redis.
///
/// What it cannot see: an invalidation still in flight between Redis and this host (a lost packet waiting for its
/// retransmission) — the lease bounds that, as before (the lease's pings ride behind it on the same connection).
/// Unix-socket listeners have no such counter: they have no backlog (`nil`), and the old bound holds.
public final class TrackingBacklog: Sendable {
    private let received: @Sendable () -> UInt64?
    private let handled = ManagedAtomic<UInt64>(0)

    /// A backlog whose received-byte count comes from `received` (nil: unknown, never drained).
    package init(received: @escaping @Sendable () -> UInt64?) {
        self.received = received
    }

    /// The backlog of TCP socket `descriptor`, which the listener's channel owns for as long as the pair lives (after
    /// that, a reused descriptor answers with another socket's count, which only turns hits into misses).
    convenience init(descriptor: CInt) {
        self.init(received: {
            var count: UInt64 = 0
            return CHiredisShims_tcpBytesReceived(descriptor, &count) == 0 ? count : nil
        })
    }

    /// True when every byte received so far has been read and handled.
    public var isDrained: Bool {
        // The handled count first: bytes that arrive between the two loads only make the answer "not drained".
        let handled = handled.load(ordering: .acquiring)
        return received() == handled
    }

    /// Counts bytes whose handling is complete.
    package func didHandle(_ count: Int) {
        handled.wrappingIncrement(by: UInt64(count), ordering: .releasing)
    }

    /// The first handler of a listener's pipeline: counts the bytes of a read burst once everything after it (TLS, the
    /// RESP decoder, the invalidation callback) has run, at `channelReadComplete`.
    final class CountingHandler: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer

        private let backlog: TrackingBacklog
        private var burst = 0

        init(_ backlog: TrackingBacklog) { self.backlog = backlog }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            burst += unwrapInboundIn(data).readableBytes
            context.fireChannelRead(data)
        }

        func channelReadComplete(context: ChannelHandlerContext) {
            context.fireChannelReadComplete()
            backlog.didHandle(burst)
            burst = 0
        }
    }

    /// A TCP socket connected to `host:port` within `timeout`, made on a thread-pool thread (name resolution and the
    /// connect wait block): the listener's channel is built on it so that this process knows its descriptor.
    static func connectedSocket(host: String, port: Int, timeout: TimeAmount) async throws -> CInt {
        try await NIOThreadPool.singleton.runIfActive {
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var list: UnsafeMutablePointer<addrinfo>?
            let status = getaddrinfo(host, String(port), &hints, &list)
            guard status == 0, let first = list else {
                throw RedisError(.unavailable, "cannot resolve \(host): \(String(cString: gai_strerror(status)))")
            }
            defer { freeaddrinfo(first) }
            var lastError = ECONNREFUSED
            var next: UnsafeMutablePointer<addrinfo>? = first
            while let address = next {
                next = address.pointee.ai_next
                let descriptor = socket(address.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
                guard descriptor >= 0 else {
                    lastError = errno
                    continue
                }
                _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
                if connect(descriptor, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0 { return descriptor }
                if errno == EINPROGRESS {
                    var writable = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
                    let ready = poll(&writable, 1, Int32(clamping: timeout.nanoseconds / 1_000_000))
                    var failure: CInt = 0
                    var length = socklen_t(MemoryLayout<CInt>.size)
                    if ready == 1, getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &failure, &length) == 0, failure == 0 { return descriptor }
                    lastError = ready == 0 ? ETIMEDOUT : (failure != 0 ? failure : errno)
                } else {
                    lastError = errno
                }
                close(descriptor)
            }
            if lastError == ETIMEDOUT { throw RedisError(.timeout) }
            throw RedisError(.unavailable, "cannot connect to Redis at \(host):\(port): \(String(cString: strerror(lastError)))")
        }
    }
}
