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

    /// Registers a user, atomically reserving the case-insensitive username.
    /// - Throws: `usernameTaken`, `storeUnavailable`.
    public func create(username: String, passwordHash: String) async throws(SessionError) -> User {
        let id = UserID.random()
        let reply = try await withStore {
            try await redis.evaluate(
                Self.registerScript,
                keys: [keys.username(Credentials.normalize(username)), keys.user(id)],
                arguments: [id.text, username, passwordHash]
            )
        }
        guard reply.int == 1 else { throw .usernameTaken }
        remember(id, username)
        return User(id: id, username: username)
    }

    /// Finds a user and the stored password hash by username (case-insensitively).
    public func find(username: String) async throws(SessionError) -> (user: User, passwordHash: String)? {
        let reply = try await withStore {
            try await redis.evaluate(Self.findScript, keys: [keys.username(Credentials.normalize(username))], arguments: [keys.userKeyPrefix])
        }
        guard let fields = reply.array, fields.count == 3, let idText = fields[0].string, let id = UserID(idText),
            let name = fields[1].string, let hash = fields[2].string
        else { return nil }
        remember(id, name)
        return (User(id: id, username: name), hash)
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

    /// KEYS: username key, user key. ARGV: user ID, username, password hash. 1 when registered, 0 when taken.
    static let registerScript = RedisScript(
        Lua.redisTime + """
            if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
            redis.call('HSET', KEYS[2], 'name', ARGV[2], 'pw', ARGV[3], 'created', redisTime())
            return 1
            """
    )

    /// KEYS: username key. ARGV: user key prefix. {id, name, hash} or nil.
    static let findScript = RedisScript(
        """
        local id = redis.call('GET', KEYS[1])
        if not id then return nil end
        local fields = redis.call('HMGET', ARGV[1] .. id, 'name', 'pw')
        if not fields[1] or not fields[2] then return nil end
        return {id, fields[1], fields[2]}
        """
    )
}

/// Redis answers `PING`: the service's readiness.
public struct RedisReadinessProbe: ReadinessProbe {
    let redis: RedisClient

    /// A probe of a running client.
    public init(redis: RedisClient) {
        self.redis = redis
    }

    public func isReady() async -> Bool {
        (try? await redis.ping()) ?? false
    }
}
