/// Redis Cluster's key → slot function: CRC16 (XMODEM) of the key, or of its `{hash tag}`, modulo 16384.
///
/// Keys that share a tag (`{u1}a`, `{u1}b`) share a slot, which is what lets a script touch several keys on a
/// cluster. As the cluster spec says: the tag is the text between the first `{` and the first `}` after it, when
/// that text is not empty; otherwise the whole key is hashed.
public enum HashSlot {
    /// The number of slots in a Redis Cluster.
    public static let count = 16384

    /// The slot of a key.
    public static func of(_ key: some Collection<UInt8>) -> UInt16 {
        if let open = key.firstIndex(of: UInt8(ascii: "{")) {
            let afterOpen = key.index(after: open)
            if let close = key[afterOpen...].firstIndex(of: UInt8(ascii: "}")), close != afterOpen {
                return crc16(key[afterOpen..<close]) & UInt16(count - 1)
            }
        }
        return crc16(key) & UInt16(count - 1)
    }

    /// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0. `crc16("123456789") == 0x31C3`.
    public static func crc16(_ bytes: some Collection<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes { crc = (crc << 8) ^ table[Int((crc >> 8) ^ UInt16(byte))] }
        return crc
    }

    private static let table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }
}

extension RedisCommand {
    /// Commands that name no key: a cluster may send them to any node.
    private static let keyless: Set<String> = [
        "PING", "INFO", "SCAN", "WAIT", "CLUSTER", "ROLE", "TIME", "SCRIPT", "FLUSHALL", "FLUSHDB", "DBSIZE", "CLIENT",
        "CONFIG", "MULTI", "EXEC", "DISCARD", "SELECT", "AUTH", "HELLO", "ECHO", "COMMAND", "ASKING", "READONLY", "SENTINEL",
        "SUBSCRIBE", "PSUBSCRIBE", "UNSUBSCRIBE", "PUBLISH", "DEBUG", "MEMORY", "SLOWLOG", "LASTSAVE", "SAVE", "BGSAVE",
    ]

    /// The hash slot of the command's first key, or nil when it names none (`PING`, `WAIT`, a keyless script).
    ///
    /// The first key is the first argument for every command this client sends, except `EVAL`/`EVALSHA`/`FCALL`
    /// (after the script and the key count) and the keyless commands above.
    public var hashSlot: UInt16? {
        guard count > 1 else { return nil }
        // The hot path (every verification on a cluster): the client's own EVALSHA, spelled as it sends it.
        if lengths[0] == 7, storage.starts(with: Self.evalsha) {
            guard count > 3, lengths[2] == 1, storage[lengths[0] + lengths[1]] != UInt8(ascii: "0") else { return scriptKeySlot }
            return HashSlot.of(argument(3))
        }
        let name = self.name.uppercased()
        if Self.keyless.contains(name) { return nil }
        if name == "EVAL" || name == "EVALSHA" || name == "FCALL" || name == "FCALL_RO" { return scriptKeySlot }
        return HashSlot.of(argument(1))
    }

    private static let evalsha = Array("EVALSHA".utf8)

    /// The slot of a script's first key (argument 3), when its key count (argument 2) is not 0.
    private var scriptKeySlot: UInt16? {
        guard count > 3, let keyCount = Int(String(decoding: argument(2), as: UTF8.self)), keyCount > 0 else { return nil }
        return HashSlot.of(argument(3))
    }

    /// The bytes of argument `index` (0 is the name).
    func argument(_ index: Int) -> ArraySlice<UInt8> {
        let start = lengths.prefix(index).reduce(0, +)
        return storage[start..<start + lengths[index]]
    }
}
