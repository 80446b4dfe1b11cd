import Redis

/// Every Redis key the service writes, in one place. `P` is `KEY_PREFIX` (default `ss:`); `{t}` is the user's
/// `ShardTag` (4 hex digits in braces).
///
/// | key | type | holds | expires |
/// |---|---|---|---|
/// | `P{t}s<16 bytes>` | string (28 bytes + metadata) | a session: absolute expiry (6 bytes, ms), creation (6 bytes, ms), user ID (16 bytes); then where it was started (`SessionMetadata`: address, User-Agent), which verification never reads (`GETRANGE 0 27`) | idle timeout, renewed on use, never past the absolute expiry |
/// | `P{t}x:<user-id>` | sorted set | the user's sessions: member = 16-byte session ID, score = absolute expiry (whole seconds, rounded up) | at the latest absolute expiry among them |
/// | `P{t}a:<user-id>` | string | the user's account state, beside the sessions: `<n>` (credentials changed n times), `d<n>` (disabled), `x` (being deleted); absent = `0` | never (removed when back to `0` and on deletion) |
/// | `P{t}o:<user-id>` | hash | the user's TOTP factor: `secret`, `pending` (sealed, see `TOTPSecretBox`), `last` (latest accepted time step), `r:<sha-256>` per recovery code (`1` unused, `0` used) | never (removed when the factor is turned off and on deletion) |
/// | `P{t}c<16 bytes>` | hash | a login waiting for its second factor: `user`, `stamp`, `fails`, `meta` | 300 s |
/// | `P{t}e:<user-id>` | list | the user's last 50 lifecycle events (JSON), newest first (`LifecycleEvents`) | never (removed on deletion) |
/// | `P{t}q` | stream | Cluster only: the tag's outbox of lifecycle events, moved to `P{events}d` right after each change | emptied by the move |
/// | `P{events}d` | stream | every lifecycle event for delivery (field `e`), consumer group `webhooks` | trimmed at `EVENTS_MAXLEN` |
/// | `P{events}f` | stream | events whose webhook delivery gave up: `e`, `attempts`, `error`, `at` | trimmed at 100,000 |
/// | `P{events}m:<event-id>` | string | an event already moved from an outbox (Cluster) | a day |
/// | `P{events}l` | string | the outbox sweep's lock (Cluster) | 10 s |
/// | `Pu:<user-id>` | hash | a user: `name` (as registered), `pw` (password hash), `created` (ms), `disabled` (`1`, when disabled) | never |
/// | `Pn:<lowercased username>` | string | the user ID of a username (uniqueness, case-insensitive) | never |
/// | `Pf:<hex>` | string (counter) | failed logins for one username from one client address; hex = SHA-256 of both, truncated | the failure window |
///
/// The 16 bytes of a session key are SHA-256(token) truncated, never the token itself.
///
/// **Cluster layout.** A user's session index and all of their sessions share the hash tag `{t}`, so they live in
/// one Redis Cluster slot: creating a session (with the cap's eviction), logging out everywhere and listing are
/// each one atomic script on one node. The tag is 14 bits of the user ID, and every token of that user carries
/// the same 14 bits (see `SessionToken.random(for:)`), so a verification finds the session's slot from the token
/// alone: still one command. The user record and the username reservation are single keys, each in its own slot:
/// registration writes the record, then reserves the name (see `RedisUserStore`).
///
/// Sizes matter at one key per session: with the default prefix a session key is 26 bytes (20 before the tag), in
/// the same 32-byte allocation class as before for Redis' 3-byte string header; an index score in seconds fits a
/// listpack's 32-bit integer (milliseconds need 64). Session keys cannot collide with index keys: after the tag they
/// start with `s`, index keys with `x:`; the untagged keys start with a letter and a colon.
public struct KeySchema: Sendable, Equatable {
    /// The prefix every key starts with.
    public let prefix: String
    private let prefixBytes: [UInt8]

    public init(prefix: String) {
        self.prefix = prefix
        self.prefixBytes = Array(prefix.utf8)
    }

    /// A session's key: its user's tag (carried by the token), then the session ID.
    public func session(_ id: SessionID, tag: ShardTag) -> [UInt8] {
        var key = sessionKeyPrefix(tag)  // its capacity has room for the ID: one allocation per key
        key.append(contentsOf: id.bytes)
        return key
    }

    /// The start of the session keys of one tag, for scripts that derive session keys from index members (in the
    /// index's own slot: the tag is the same).
    public func sessionKeyPrefix(_ tag: ShardTag) -> [UInt8] {
        var bytes = prefixBytes
        bytes.reserveCapacity(prefixBytes.count + 24)
        bytes.append(UInt8(ascii: "{"))
        bytes.append(contentsOf: tag.digits)
        bytes.append(UInt8(ascii: "}"))
        bytes.append(UInt8(ascii: "s"))
        return bytes
    }

    /// A user's session index.
    public func sessionIndex(_ user: UserID) -> String {
        prefix + "{" + String(decoding: user.tag.digits, as: UTF8.self) + "}x:" + user.text
    }

    /// A user's account state, in the slot of their sessions: what session creation checks (see
    /// `RedisSessionStore.createScript`).
    public func accountState(_ user: UserID) -> String {
        prefix + "{" + String(decoding: user.tag.digits, as: UTF8.self) + "}a:" + user.text
    }

    /// A user's TOTP factor, in the slot of their sessions (see `SecondFactorStore`).
    public func secondFactor(_ user: UserID) -> String {
        prefix + "{" + String(decoding: user.tag.digits, as: UTF8.self) + "}o:" + user.text
    }

    /// A login challenge waiting for its second factor: its handle's tag (the user's), then the handle's hashed ID.
    public func challenge(_ id: SessionID, tag: ShardTag) -> [UInt8] {
        var key = Array(prefix.utf8) + [UInt8(ascii: "{")] + tag.digits + Array("}c".utf8)
        key.append(contentsOf: id.bytes)
        return key
    }

    /// A user's record.
    public func user(_ user: UserID) -> String { prefix + "u:" + user.text }

    /// The username reservation (lowercased: usernames are unique case-insensitively).
    public func username(_ normalized: String) -> String { prefix + "n:" + normalized }

    /// The failed-login counter of one username from one client address.
    public func loginFailures(_ digestHex: String) -> String { prefix + "f:" + digestHex }
}

/// The 14 bits that put a user's session index and every one of their sessions in one Redis Cluster slot.
///
/// Taken from the first 14 bits of a UUID's text (its first 4 hex digits, less the last 2 bits): a user ID's are
/// random, so users spread evenly over the 16384 slots; a token copies its user's (`SessionToken.random(for:)`).
public struct ShardTag: Sendable, Hashable {
    /// 0 ..< 16384.
    public let value: UInt16

    init(value: UInt16) { self.value = value & 0x3FFF }

    /// The tag of canonical UUID text (a token or user ID, already validated).
    init(uuid utf8: some Collection<UInt8>) {
        var digits = utf8.prefix(4).makeIterator()
        var first16: UInt16 = 0
        while let digit = digits.next() { first16 = first16 << 4 | UInt16(Hex.value(digit) ?? 0) }
        self.init(value: first16 >> 2)
    }

    /// Four lowercase hex digits, as they appear between the braces.
    var digits: [UInt8] {
        let table = Array("0123456789abcdef".utf8)
        return [12, 8, 4, 0].map { table[Int(value >> UInt16($0)) & 0xF] }
    }
}

/// Lua shared by the core's scripts, written once.
enum Lua {
    /// Defines `redisTime()`: Redis' clock in milliseconds. Every deadline is computed from it, so instances with skewed
    /// clocks agree.
    static let redisTime = """
        local function redisTime()
            local t = redis.call('TIME')
            return t[1] * 1000 + math.floor(t[2] / 1000)
        end

        """
}
