public import NIOCore

/// How long a key should live, for SET and GETEX.
public enum RedisExpiration: Sendable, Hashable {
    /// `EX seconds`
    case seconds(Int)
    /// `PX milliseconds`
    case milliseconds(Int)
    /// `KEEPTTL` (SET only): keep the key's current time to live.
    case keepTTL
    /// `PERSIST` (GETEX only): remove the time to live.
    case persist

    fileprivate func append(to command: inout RedisCommand) {
        switch self {
        case .seconds(let value):
            command.append("EX")
            command.append(value)
        case .milliseconds(let value):
            command.append("PX")
            command.append(value)
        case .keepTTL: command.append("KEEPTTL")
        case .persist: command.append("PERSIST")
        }
    }
}

/// When SET should write: only if the key is absent (`NX`) or only if it exists (`XX`).
public enum RedisSetCondition: Sendable, Hashable {
    case ifAbsent
    case ifExists
}

extension RedisClient {
    /// `PING`: true when Redis answers PONG.
    public func ping() async throws(RedisError) -> Bool {
        try await send(RedisCommand("PING")) == .simpleString("PONG")
    }

    /// `GET key`: the value, or nil when the key does not exist.
    public func get(_ key: some RESPArgument) async throws(RedisError) -> ByteBuffer? {
        try await bulk(send(RedisCommand("GET", [key])))
    }

    /// `SET key value [NX|XX] [EX|PX|KEEPTTL]`.
    /// - Returns: false when the condition kept the value from being written.
    @discardableResult
    public func set(
        _ key: some RESPArgument,
        to value: some RESPArgument,
        condition: RedisSetCondition? = nil,
        expiration: RedisExpiration? = nil
    ) async throws(RedisError) -> Bool {
        var command = RedisCommand("SET", [key, value])
        switch condition {
        case .ifAbsent: command.append("NX")
        case .ifExists: command.append("XX")
        case nil: break
        }
        if let expiration {
            guard expiration != .persist else { throw RedisError(.configuration, "SET takes no PERSIST; use KEEPTTL or none") }
            expiration.append(to: &command)
        }
        return try await !send(command).isNull
    }

    /// `GETEX key [EX|PX|PERSIST]`: the value, with its expiry changed in the same step.
    package func getex(_ key: some RESPArgument, expiration: RedisExpiration? = nil) async throws(RedisError) -> ByteBuffer? {
        var command = RedisCommand("GETEX", [key])
        if let expiration {
            guard expiration != .keepTTL else { throw RedisError(.configuration, "GETEX takes no KEEPTTL") }
            expiration.append(to: &command)
        }
        return try await bulk(send(command))
    }

    /// `GETDEL key`: the value, and the key deleted in the same step.
    package func getdel(_ key: some RESPArgument) async throws(RedisError) -> ByteBuffer? {
        try await bulk(send(RedisCommand("GETDEL", [key])))
    }

    /// `DEL key…`: how many keys were deleted.
    @discardableResult
    public func del(_ keys: any RESPArgument...) async throws(RedisError) -> Int {
        try await integer(send(RedisCommand("DEL", keys)))
    }

    /// `EXISTS key…`: how many of the keys exist.
    public func exists(_ keys: any RESPArgument...) async throws(RedisError) -> Int {
        try await integer(send(RedisCommand("EXISTS", keys)))
    }

    /// `EXPIRE key seconds`: false when the key does not exist.
    @discardableResult
    package func expire(_ key: some RESPArgument, seconds: Int) async throws(RedisError) -> Bool {
        try await integer(send(RedisCommand("EXPIRE", [key, seconds]))) == 1
    }

    /// `PEXPIRE key milliseconds`: false when the key does not exist.
    @discardableResult
    package func pexpire(_ key: some RESPArgument, milliseconds: Int) async throws(RedisError) -> Bool {
        try await integer(send(RedisCommand("PEXPIRE", [key, milliseconds]))) == 1
    }

    /// `TTL key`: seconds to live; -1 with no expiry, -2 when the key does not exist.
    package func ttl(_ key: some RESPArgument) async throws(RedisError) -> Int {
        try await integer(send(RedisCommand("TTL", [key])))
    }

    /// `PTTL key`: milliseconds to live; -1 with no expiry, -2 when the key does not exist.
    package func pttl(_ key: some RESPArgument) async throws(RedisError) -> Int {
        try await integer(send(RedisCommand("PTTL", [key])))
    }

    /// `INCR key`: the value after the increment.
    @discardableResult
    package func incr(_ key: some RESPArgument) async throws(RedisError) -> Int {
        try await integer(send(RedisCommand("INCR", [key])))
    }

    /// `INCRBY key increment`: the value after the increment.
    @discardableResult
    package func incrby(_ key: some RESPArgument, _ increment: Int) async throws(RedisError) -> Int {
        try await integer(send(RedisCommand("INCRBY", [key, increment])))
    }

    /// `HSET key field value [field value…]`: how many fields were added (not updated).
    @discardableResult
    public func hset(_ key: some RESPArgument, _ fields: [(field: any RESPArgument, value: any RESPArgument)]) async throws(RedisError) -> Int {
        var command = RedisCommand("HSET", [key])
        for (field, value) in fields {
            command.append(field)
            command.append(value)
        }
        return try await integer(send(command))
    }

    /// `HSET key field value`: true when the field was added (false when updated).
    @discardableResult
    public func hset(_ key: some RESPArgument, field: some RESPArgument, to value: some RESPArgument) async throws(RedisError) -> Bool {
        try await hset(key, [(field, value)]) == 1
    }

    /// `HGET key field`: the field's value, or nil.
    public func hget(_ key: some RESPArgument, field: some RESPArgument) async throws(RedisError) -> ByteBuffer? {
        try await bulk(send(RedisCommand("HGET", [key, field])))
    }

    /// `HGETALL key`: every field and value, as UTF-8 text keys.
    package func hgetall(_ key: some RESPArgument) async throws(RedisError) -> [String: ByteBuffer] {
        let values = try await array(send(RedisCommand("HGETALL", [key])))
        var result: [String: ByteBuffer] = [:]
        var index = 0
        while index + 1 < values.count {
            if let field = values[index].string, case .bulkString(let value?) = values[index + 1] { result[field] = value }
            index += 2
        }
        return result
    }

    /// `HDEL key field…`: how many fields were removed.
    @discardableResult
    package func hdel(_ key: some RESPArgument, fields: any RESPArgument...) async throws(RedisError) -> Int {
        try await integer(send(RedisCommand("HDEL", [key] + fields)))
    }

    /// `ZADD key score member [score member…]`: how many members were added.
    @discardableResult
    package func zadd(_ key: some RESPArgument, _ members: [(score: Double, member: any RESPArgument)]) async throws(RedisError) -> Int {
        var command = RedisCommand("ZADD", [key])
        for (score, member) in members {
            command.append(score)
            command.append(member)
        }
        return try await integer(send(command))
    }

    /// `ZREM key member…`: how many members were removed.
    @discardableResult
    package func zrem(_ key: some RESPArgument, members: any RESPArgument...) async throws(RedisError) -> Int {
        try await integer(send(RedisCommand("ZREM", [key] + members)))
    }

    /// `ZRANGEBYSCORE key min max [LIMIT offset count]`; bounds as Redis spells them (`-inf`, `(5`, `10`).
    package func zrangebyscore(
        _ key: some RESPArgument,
        min: String,
        max: String,
        limit: (offset: Int, count: Int)? = nil
    ) async throws(RedisError) -> [ByteBuffer] {
        var command = RedisCommand("ZRANGEBYSCORE", [key, min, max])
        if let limit {
            command.append("LIMIT")
            command.append(limit.offset)
            command.append(limit.count)
        }
        return try await array(send(command)).compactMap { value in
            if case .bulkString(let buffer?) = value { return buffer }
            return nil
        }
    }

    /// `ZREMRANGEBYSCORE key min max`: how many members were removed.
    @discardableResult
    package func zremrangebyscore(_ key: some RESPArgument, min: String, max: String) async throws(RedisError) -> Int {
        try await integer(send(RedisCommand("ZREMRANGEBYSCORE", [key, min, max])))
    }

    /// `ZCARD key`: the number of members.
    package func zcard(_ key: some RESPArgument) async throws(RedisError) -> Int {
        try await integer(send(RedisCommand("ZCARD", [key])))
    }

    /// `SCAN cursor [MATCH pattern] [COUNT count]`: the next cursor ("0" when done) and a batch of keys.
    public func scan(cursor: String = "0", match: String? = nil, count: Int? = nil) async throws(RedisError) -> (cursor: String, keys: [ByteBuffer]) {
        var command = RedisCommand("SCAN", [cursor])
        if let match {
            command.append("MATCH")
            command.append(match)
        }
        if let count {
            command.append("COUNT")
            command.append(count)
        }
        let reply = try await array(send(command))
        guard reply.count == 2, let next = reply[0].string, let keys = reply[1].array else {
            throw RedisError(.protocolError, "SCAN reply is not [cursor, keys]")
        }
        return (next, keys.compactMap { if case .bulkString(let key?) = $0 { return key } else { return nil } })
    }

    /// `INFO [section]`: the report, as text.
    public func info(_ section: String? = nil) async throws(RedisError) -> String {
        var command = RedisCommand("INFO")
        if let section { command.append(section) }
        guard let text = try await send(command).string else { throw RedisError(.protocolError, "INFO reply is not text") }
        return text
    }

    /// Runs a Lua script by its SHA-1 (`EVALSHA`), sending its source (`EVAL`) only when Redis answers NOSCRIPT,
    /// which also caches it there (scripts are not replicated: a new master has none). One round trip in the common
    /// case, two after a Redis restart, a failover or SCRIPT FLUSH.
    /// - Parameter durable: a write that must survive a failover: `WAIT` for `minReplicas` replicas follows it on
    ///   the same connection, and fewer confirmations throw `RedisError(.notReplicated)` (the write did run).
    public func evaluate(
        _ script: RedisScript, keys: [any RESPArgument] = [], arguments: [any RESPArgument] = [], durable: Bool = false
    ) async throws(RedisError) -> RESPValue {
        try await withCheckedContinuation { continuation in
            evaluate(script, keys: keys, arguments: arguments, durable: durable, on: nil) { continuation.resume(returning: $0) }
        }.get()
    }

    /// `MULTI`, the commands, `EXEC`, written together on one connection so no other caller's commands
    /// fall inside the transaction.
    /// - Returns: EXEC's replies, one per command (an error reply of one command is a `.error` value in place).
    /// - Throws: `RedisError.server` when the transaction was refused (EXECABORT), `RedisError(.unavailable)`…
    package func transaction(_ commands: [RedisCommand]) async throws(RedisError) -> [RESPValue] {
        let replies = try await pipeline([RedisCommand("MULTI")] + commands + [RedisCommand("EXEC")])
        guard let exec = replies.last else { throw RedisError(.protocolError, "no EXEC reply") }
        switch exec {
        case .array(let values?): return values
        case .error(let message): throw RedisError(.server, message)
        default: throw RedisError(.protocolError, "EXEC reply is not an array")
        }
    }

    private func bulk(_ value: RESPValue) throws(RedisError) -> ByteBuffer? {
        switch value {
        case .bulkString(let buffer): return buffer
        default: throw RedisError(.protocolError, "expected a bulk string reply")
        }
    }

    private func integer(_ value: RESPValue) throws(RedisError) -> Int {
        guard case .integer(let number) = value else { throw RedisError(.protocolError, "expected an integer reply") }
        return Int(number)
    }

    private func array(_ value: RESPValue) throws(RedisError) -> [RESPValue] {
        guard case .array(let values) = value else { throw RedisError(.protocolError, "expected an array reply") }
        return values ?? []
    }
}
