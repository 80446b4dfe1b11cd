public import NIOCore

/// One reply from Redis, as RESP2 carries it.
///
/// Redis 7 speaks RESP2 to clients that do not send `HELLO 3`, so these five shapes cover every reply.
/// Bulk strings stay bytes (`ByteBuffer`): keys and values are binary-safe end to end.
public enum RESPValue: Sendable, Hashable {
    /// A status reply such as `OK` or `PONG`.
    case simpleString(String)
    /// An error reply, with Redis' own text (`WRONGTYPE Operation against a key…`).
    case error(String)
    /// An integer reply.
    case integer(Int64)
    /// A bulk string; `nil` is Redis' null bulk string (a missing key).
    case bulkString(ByteBuffer?)
    /// An array; `nil` is Redis' null array (for example EXEC after a failed WATCH).
    case array([RESPValue]?)
}

extension RESPValue {
    /// The reply as text: bulk strings decoded as UTF-8, simple strings as they are, integers in decimal.
    public var string: String? {
        switch self {
        case .simpleString(let text): return text
        case .bulkString(let buffer?): return String(buffer: buffer)
        case .integer(let value): return String(value)
        default: return nil
        }
    }

    /// The reply as bytes, for bulk and simple strings.
    public var bytes: [UInt8]? {
        switch self {
        case .bulkString(let buffer?): return Array(buffer.readableBytesView)
        case .simpleString(let text): return Array(text.utf8)
        default: return nil
        }
    }

    /// The reply as an integer: integer replies, and bulk strings holding a decimal number.
    public var int: Int64? {
        switch self {
        case .integer(let value): return value
        case .bulkString(let buffer?): return Int64(String(buffer: buffer))
        case .simpleString(let text): return Int64(text)
        default: return nil
        }
    }

    /// The elements of an array reply (`nil` for a null array or any other shape).
    public var array: [RESPValue]? {
        if case .array(let values) = self { return values }
        return nil
    }

    /// An array reply read as a map: Redis 7 sends maps to RESP2 clients as flat `name, value, …` arrays
    /// (`CLUSTER SHARDS`, `SENTINEL sentinels`). Empty for any other shape.
    public var fields: [String: RESPValue] {
        guard let items = array else { return [:] }
        var result: [String: RESPValue] = [:]
        var index = 0
        while index + 1 < items.count {
            if let key = items[index].string { result[key] = items[index + 1] }
            index += 2
        }
        return result
    }

    /// Whether the reply is a null bulk string or a null array.
    public var isNull: Bool {
        switch self {
        case .bulkString(nil), .array(nil): return true
        default: return false
        }
    }
}
