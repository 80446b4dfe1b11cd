import Foundation
import NIOConcurrencyHelpers
import NIOCore
public import Redis

/// A registered user.
public struct User: Sendable, Hashable {
    public let id: UserID
    /// The username as given at registration.
    public let username: String
}

/// A user's record as the store keeps it.
public struct UserRecord: Sendable, Hashable {
    public let user: User
    public let passwordHash: String
    /// Registration time, milliseconds since 1970 (Redis' clock).
    public let createdAt: Int64
    /// Disabled by an operator (shown; the account state beside the sessions is what logins obey).
    public let disabled: Bool
}

/// Users in Redis, shared by every instance. See `KeySchema`.
public final class RedisUserStore: UserStore {
    let redis: RedisClient
    let keys: KeySchema
    /// user ID → username. Usernames never change, so this cache can never be stale; it saves
    /// `GET /v1/session` a round trip. Bounded: emptied when full.
    private let names = NIOLockedValueBox<[UserID: String]>([:])
    private let maxCachedNames = 100_000

    public init(redis: RedisClient, keyPrefix: String) {
        self.redis = redis
        self.keys = KeySchema(prefix: keyPrefix)
    }

    /// Registers a user: writes the record under a new ID, then reserves the username for it (`SET NX`).
    ///
    /// Two keys in two slots of a cluster, so two steps, in the order that can never strand a name: a record nobody's
    /// name points to is unreachable and harmless (removed when the name turns out taken), while a name pointing to
    /// no record would lock its owner out. Both writes are durable (`WAIT`, see `RedisClient.evaluate`): an account
    /// that was acknowledged survives a failover.
    /// - Throws: `usernameTaken`, `storeUnavailable`.
    public func create(username: String, passwordHash: String) async throws(SessionError) -> User {
        let id = UserID.random()
        let nameKey = keys.username(Credentials.normalize(username))
        let userKey = keys.user(id)
        let reserved = try await withStore {
            _ = try await redis.evaluate(Self.recordScript, keys: [userKey], arguments: [username, passwordHash], durable: true)
            return try await redis.evaluate(Self.reserveScript, keys: [nameKey], arguments: [id.text], durable: true).int == 1
        }
        guard reserved else {
            _ = try? await redis.del(userKey)
            throw .usernameTaken
        }
        remember(id, username)
        return User(id: id, username: username)
    }

    /// The user ID a username is registered under (case-insensitively), or nil.
    public func userID(username: String) async throws(SessionError) -> UserID? {
        let key = keys.username(Credentials.normalize(username))
        return try await withStore { try await redis.get(key) }.flatMap { UserID(String(buffer: $0)) }
    }

    /// A user's record by ID, or nil when there is none.
    public func record(_ id: UserID) async throws(SessionError) -> UserRecord? {
        let key = keys.user(id)
        let fields = try await withStore { try await redis.send(RedisCommand("HMGET", [key, "name", "pw", "created", "disabled"])) }.array
        guard let fields, fields.count == 4, let name = fields[0].string, let hash = fields[1].string else { return nil }
        remember(id, name)
        return UserRecord(
            user: User(id: id, username: name), passwordHash: hash, createdAt: fields[2].int ?? 0, disabled: fields[3].string == "1")
    }

    /// Replaces a user's password hash; false when there is no such user.
    public func setPassword(_ id: UserID, hash: String) async throws(SessionError) -> Bool {
        let key = keys.user(id)
        return try await withStore { try await redis.evaluate(Self.updateScript, keys: [key], arguments: ["pw", hash], durable: true) }.int == 1
    }

    /// Replaces a user's password hash with a rehash of the same password, only if the stored one is still `old` (a
    /// password change in between wins); false otherwise.
    public func replacePasswordHash(_ id: UserID, from old: String, to new: String) async throws(SessionError) -> Bool {
        let key = keys.user(id)
        return try await withStore { try await redis.evaluate(Self.rehashScript, keys: [key], arguments: [old, new], durable: true) }.int == 1
    }

    /// Marks a user disabled or not (what operators see); false when there is no such user.
    public func setDisabled(_ id: UserID, _ disabled: Bool) async throws(SessionError) -> Bool {
        let key = keys.user(id)
        return try await withStore {
            try await redis.evaluate(Self.updateScript, keys: [key], arguments: ["disabled", disabled ? "1" : "0"], durable: true)
        }.int == 1
    }

    /// Removes a user's record and, if it still points to them, their username reservation.
    public func delete(_ record: UserRecord) async throws(SessionError) {
        let (userKey, nameKey) = (keys.user(record.user.id), keys.username(Credentials.normalize(record.user.username)))
        try await withStore {
            _ = try await redis.evaluate(Self.releaseScript, keys: [nameKey], arguments: [record.user.id.text], durable: true)
            _ = try await redis.send(RedisCommand("DEL", [userKey]))
        }
        _ = names.withLockedValue { $0.removeValue(forKey: record.user.id) }
    }

    /// The username of a user ID (cached after the first lookup).
    public func username(for id: UserID) async throws(SessionError) -> String? {
        if let name = names.withLockedValue({ $0[id] }) { return name }
        let name = try await withStore { try await redis.hget(keys.user(id), field: "name").map { String(buffer: $0) } }
        if let name { remember(id, name) }
        return name
    }

    private func remember(_ id: UserID, _ name: String) {
        names.withLockedValue { names in
            if names.count >= maxCachedNames { names.removeAll(keepingCapacity: true) }
            names[id] = name
        }
    }

    /// KEYS: user key. ARGV: username, password hash. Writes the record, stamped with Redis' clock.
    static let recordScript = RedisScript(
        name: "record_user",
        Lua.redisTime + """
            redis.call('HSET', KEYS[1], 'name', ARGV[1], 'pw', ARGV[2], 'created', redisTime())
            return 1
            """
    )

    /// KEYS: user key. ARGV: field, value. Sets the field of an existing record: 1, or 0 when there is none.
    static let updateScript = RedisScript(
        name: "update_user",
        """
        if not redis.call('HGET', KEYS[1], 'name') then return 0 end
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        return 1
        """
    )

    /// KEYS: user key. ARGV: old hash, new hash. Swaps the hash if it is still the old one: 1, else 0.
    static let rehashScript = RedisScript(
        name: "rehash_user",
        """
        if redis.call('HGET', KEYS[1], 'pw') ~= ARGV[1] then return 0 end
        redis.call('HSET', KEYS[1], 'pw', ARGV[2])
        return 1
        """
    )

    /// KEYS: username key. ARGV: user ID. Releases the name if it is that user's.
    static let releaseScript = RedisScript(
        name: "release_user",
        """
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """
    )

    /// KEYS: username key. ARGV: user ID. 1 when reserved, 0 when taken.
    static let reserveScript = RedisScript(
        name: "reserve_user",
        """
        if redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 1 end
        return 0
        """
    )
}

/// The service's readiness: a writable master is known for every key (on a cluster: for every slot) and answers
/// `PING`.
public struct RedisReadinessProbe: ReadinessProbe {
    let redis: RedisClient

    /// A probe of a running client.
    public init(redis: RedisClient) {
        self.redis = redis
    }

    public func isReady() async -> Bool {
        guard redis.isConnected else { return false }
        return (try? await redis.ping()) ?? false
    }
}
