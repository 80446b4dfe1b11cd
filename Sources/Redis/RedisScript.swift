import Crypto

/// A Lua script with its SHA-1, so it can be run by hash (`EVALSHA`) and sent in full only when Redis lacks it.
public struct RedisScript: Sendable, Hashable {
    /// The Lua source.
    public let source: String
    /// The lowercase hex SHA-1 of the source, as Redis names scripts.
    public let sha1: String
    /// What the script does, in a word (`authenticate`): names its spans and its latency series.
    public let name: String

    /// Wraps a Lua source and computes its SHA-1.
    public init(name: String = "script", _ source: String) {
        self.name = name
        self.source = source
        self.sha1 = Hex.encode(Array(Insecure.SHA1.hash(data: Array(source.utf8))))
    }
}

extension RedisScript {
    /// `EVALSHA sha1 numkeys key… arg…` (by hash) or `EVAL source numkeys key… arg…`.
    func command(byHash: Bool, keys: [any RESPArgument], arguments: [any RESPArgument]) -> RedisCommand {
        var command = byHash ? RedisCommand("EVALSHA", [sha1, keys.count]) : RedisCommand("EVAL", [source, keys.count])
        for key in keys { key.append(to: &command) }
        for argument in arguments { argument.append(to: &command) }
        return command
    }
}
