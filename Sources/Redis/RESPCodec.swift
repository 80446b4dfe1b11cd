internal import CHiredis
internal import CHiredisShims
import NIOCore

// hiredis does the protocol; SwiftNIO does the I/O. Nothing here touches a socket, so none of it can block.

extension RedisCommand {
    /// Encodes the command as RESP with hiredis' binary-safe `redisFormatCommandArgv` and appends it to `buffer`.
    func encode(into buffer: inout ByteBuffer) {
        let argc = lengths.count
        // Zero-length arguments still need a valid pointer (hiredis reads no bytes from it), hence the padding byte.
        let storage = self.storage.isEmpty ? [0] : self.storage
        storage.withUnsafeBufferPointer { bytes in
            let base = UnsafeRawPointer(bytes.baseAddress!).assumingMemoryBound(to: CChar.self)
            withUnsafeTemporaryAllocation(of: UnsafePointer<CChar>?.self, capacity: argc) { argv in
                var offset = 0
                for (index, length) in lengths.enumerated() {
                    argv[index] = base + offset
                    offset += length
                }
                lengths.withUnsafeBufferPointer { lengthPointer in
                    var target: UnsafeMutablePointer<CChar>?
                    let encodedLength = redisFormatCommandArgv(&target, Int32(argc), argv.baseAddress, lengthPointer.baseAddress)
                    defer { redisFreeCommand(target) }
                    guard encodedLength > 0, let target else {
                        // Only an allocation failure inside hiredis gets here.
                        fatalError("hiredis could not allocate a command buffer")
                    }
                    buffer.writeBytes(UnsafeRawBufferPointer(start: target, count: Int(encodedLength)))
                }
            }
        }
    }
}

/// Turns bytes from Redis into `RESPValue`s with a hiredis `redisReader`.
///
/// Not thread-safe: one decoder belongs to one channel handler, used on its event loop only.
final class RESPDecoder {
    private let reader: UnsafeMutablePointer<redisReader>
    private let allocator = ByteBufferAllocator()

    init() {
        guard let reader = CHiredisShims_readerCreate(0) else { fatalError("hiredis could not allocate a reader") }
        self.reader = reader
    }

    deinit { redisReaderFree(reader) }

    /// Hands bytes to the reader; it keeps what does not yet make a whole reply.
    func feed(_ buffer: ByteBuffer) throws(RedisError) {
        let status = buffer.withUnsafeReadableBytes { bytes -> Int32 in
            guard let base = bytes.baseAddress, bytes.count > 0 else { return REDIS_OK }
            return redisReaderFeed(reader, base.assumingMemoryBound(to: CChar.self), bytes.count)
        }
        if status != REDIS_OK { throw readerError() }
    }

    /// The next whole reply, or `nil` when more bytes are needed.
    func next() throws(RedisError) -> RESPValue? {
        var reply: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &reply) == REDIS_OK else { throw readerError() }
        guard let reply else { return nil }
        defer { freeReplyObject(reply) }
        return convert(reply.assumingMemoryBound(to: redisReply.self))
    }

    private func readerError() -> RedisError {
        let text = CHiredisShims_readerGetError(reader).map { String(cString: $0) } ?? "unknown reader error"
        return RedisError(.protocolError, "invalid reply from Redis: \(text)")
    }

    private func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RESPValue {
        let value = reply.pointee
        switch value.type {
        case REDIS_REPLY_STATUS:
            return .simpleString(text(value))
        case REDIS_REPLY_ERROR:
            return .error(text(value))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(value.integer))
        case REDIS_REPLY_NIL:
            return .bulkString(nil)
        case REDIS_REPLY_STRING:
            var buffer = allocator.buffer(capacity: value.len)
            if let bytes = value.str, value.len > 0 {
                buffer.writeBytes(UnsafeRawBufferPointer(start: bytes, count: value.len))
            }
            return .bulkString(buffer)
        case REDIS_REPLY_ARRAY:
            var elements: [RESPValue] = []
            elements.reserveCapacity(value.elements)
            for index in 0..<value.elements {
                if let element = value.element[index] { elements.append(convert(element)) }
            }
            return .array(elements)
        default:
            return .error("ERR unsupported reply type \(value.type)")
        }
    }

    private func text(_ value: redisReply) -> String {
        guard let bytes = value.str, value.len > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: bytes, count: value.len), as: UTF8.self)
    }
}
