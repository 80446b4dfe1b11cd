import Crypto
import Foundation
public import Redis

/// A user's TOTP factor and the login challenges waiting for its code, in Redis, in the slot of the user's sessions
/// (`KeySchema.secondFactor`, `KeySchema.challenge`): a code's single use and a challenge's attempts are each settled
/// by one script there.
///
/// The factor is one hash: `secret` (enabled), `pending` (enrolled, not yet confirmed), `last` (the latest time step a
/// code was accepted for: a code is good once, and no older one after it) and `r:<SHA-256 of a recovery code>` (`1`
/// unused, `0` used). Secrets are sealed by `TOTPSecretBox`. A challenge is a hash — `user`, `stamp` (the account state
/// the password check read), `fails`, `meta` (`SessionMetadata`) — that lives `challengeLifetime`; its handle is a
/// token-shaped random value carrying the user's tag, so it finds the slot alone.
public struct SecondFactorStore: Sendable {
    let redis: RedisClient
    let keys: KeySchema
    let box: TOTPSecretBox
    /// Where `totp.enabled` and `totp.disabled` are recorded (in the same scripts as the changes).
    let events: LifecycleEvents
    /// How long a password-proved login waits for its code.
    public static let challengeLifetime: Int64 = 300
    /// Wrong codes a challenge takes; the last of them voids it.
    public static let challengeAttempts = 5

    public init(redis: RedisClient, keyPrefix: String, box: TOTPSecretBox, events: LifecycleEvents? = nil) {
        self.redis = redis
        self.keys = KeySchema(prefix: keyPrefix)
        self.box = box
        self.events = events ?? LifecycleEvents(redis: redis, keyPrefix: keyPrefix, maxStreamLength: 0, enabled: false)
    }

    /// The user's factor as the login needs it: the enabled secret, or nil when the factor is off.
    public func enabledSecret(of user: UserID) async throws(SessionError) -> [UInt8]? {
        let value = try await withStore { try await redis.send(RedisCommand("HGET", [keys.secondFactor(user), "secret"])) }
        guard let sealed = value.string else { return nil }
        guard let secret = box.open(sealed, for: user) else { throw .storeUnavailable(SecondFactorError.cannotOpen) }
        return secret
    }

    /// The pending (enrolled, unconfirmed) secret, or nil.
    func pendingSecret(of user: UserID) async throws(SessionError) -> (sealed: String, secret: [UInt8])? {
        let value = try await withStore { try await redis.send(RedisCommand("HGET", [keys.secondFactor(user), "pending"])) }
        guard let sealed = value.string else { return nil }
        guard let secret = box.open(sealed, for: user) else { throw .storeUnavailable(SecondFactorError.cannotOpen) }
        return (sealed, secret)
    }

    /// Stores a new pending secret (replacing any earlier pending one).
    func setPending(_ secret: [UInt8], of user: UserID) async throws(SessionError) {
        _ = try await withStore {
            try await redis.send(RedisCommand("HSET", [keys.secondFactor(user), "pending", box.seal(secret, for: user)]))
        }
    }

    /// Turns the pending secret on, if it is still `sealed`, with the step its confirming code was for and new recovery
    /// codes (their hashes; earlier ones are dropped). False when the pending secret changed meanwhile.
    func confirm(_ user: UserID, sealed: String, step: Int64, recoveryHashes: [String], origin: EventOrigin) async throws(SessionError) -> Bool {
        let event = LifecycleEvent(.totpEnabled, user: user, origin: origin)
        let reply = try await withStore {
            try await redis.evaluate(
                Self.confirmScript, keys: [keys.secondFactor(user)] + events.scriptKeys(for: user),
                arguments: [sealed, String(step)] + recoveryHashes + events.scriptArguments(event), durable: true)
        }
        await events.moveOutbox(user.tag)
        if reply.int == 1 { events.count(.totpEnabled) }
        return reply.int == 1
    }

    /// Turns the factor off (the whole hash goes).
    func remove(_ user: UserID, origin: EventOrigin) async throws(SessionError) {
        let event = LifecycleEvent(.totpDisabled, user: user, origin: origin)
        _ = try await withStore {
            try await redis.evaluate(
                Self.removeScript, keys: [keys.secondFactor(user)] + events.scriptKeys(for: user), arguments: events.scriptArguments(event),
                durable: true)
        }
        await events.moveOutbox(user.tag)
        events.count(.totpDisabled)
    }

    /// A proof offered for the factor: the step a code matched (nil: it matched none), or a recovery code's hash.
    enum Proof {
        case code(step: Int64?)
        case recovery(hash: String)
    }

    /// What using a proof did.
    enum Outcome: Equatable {
        case accepted
        /// Wrong, reused or old; `voided`: that was the challenge's last attempt.
        case refused(voided: Bool)
        /// No such challenge (expired, used, voided) or no factor.
        case noChallenge
    }

    /// Uses a proof, atomically: a code only for a step after the last accepted one, a recovery code only once; with a
    /// challenge, a refusal counts against it and the last allowed one voids it, an acceptance ends it.
    func use(_ proof: Proof, of user: UserID, challenge: [UInt8]?) async throws(SessionError) -> Outcome {
        let (kind, value): (String, String) =
            switch proof {
            case .code(let step): ("step", step.map(String.init) ?? "")
            case .recovery(let hash): ("recovery", hash)
            }
        var scriptKeys: [any RESPArgument] = [keys.secondFactor(user)]
        if let challenge { scriptKeys.append(challenge) }
        let reply = try await withStore {
            try await redis.evaluate(
                Self.useScript, keys: scriptKeys,
                arguments: [kind, value, challenge == nil ? "0" : "1", String(Self.challengeAttempts)], durable: true)
        }
        switch reply.int {
        case 1: return .accepted
        case 0: return .refused(voided: false)
        case -1: return .refused(voided: true)
        default: return .noChallenge
        }
    }

    /// A login that proved the password and waits for its code.
    struct Challenge {
        let user: UserID
        let stamp: AccountStamp
        let metadata: SessionMetadata?
    }

    /// Opens a challenge for `user`; returns its handle (given to the client once; Redis keeps a hash of it).
    func openChallenge(for user: UserID, stamp: AccountStamp, metadata: SessionMetadata?) async throws(SessionError) -> SessionToken {
        let handle = SessionToken.random(for: user)
        let key = keys.challenge(handle.sessionID, tag: handle.tag)
        _ = try await withStore {
            try await redis.evaluate(
                Self.challengeScript, keys: [key],
                arguments: [user.text, stamp.text, metadata?.encoded ?? [], Self.challengeLifetime * 1000])
        }
        return handle
    }

    /// The challenge of a handle, or nil when there is none (expired, used or voided).
    func challenge(_ handle: SessionToken) async throws(SessionError) -> (challenge: Challenge, key: [UInt8])? {
        let key = keys.challenge(handle.sessionID, tag: handle.tag)
        let fields = try await withStore { try await redis.send(RedisCommand("HMGET", [key, "user", "stamp", "meta"])) }.array
        guard let fields, fields.count == 3, let text = fields[0].string, let user = UserID(text), user.tag == handle.tag,
            let stamp = fields[1].string
        else { return nil }
        let metadata = fields[2].bytes.flatMap { SessionMetadata(stored: $0[...]) }
        return (Challenge(user: user, stamp: AccountStamp(text: stamp), metadata: metadata), key)
    }

    /// KEYS: challenge. ARGV: user ID, stamp, metadata, lifetime ms.
    static let challengeScript = RedisScript(
        name: "open_challenge",
        """
        redis.call('HSET', KEYS[1], 'user', ARGV[1], 'stamp', ARGV[2], 'fails', '0', 'meta', ARGV[3])
        redis.call('PEXPIRE', KEYS[1], ARGV[4])
        return 1
        """
    )

    /// KEYS: factor[, challenge]. ARGV: kind (`step` or `recovery`), value (the matched step, '' for none; or the recovery
    /// code's hash), whether a challenge is required (`1`), attempts a challenge takes. Returns 1 accepted, 0 refused,
    /// -1 refused and the challenge voided, -2 no challenge or no factor.
    static let useScript = RedisScript(
        name: "use_second_factor",
        """
        if not redis.call('HGET', KEYS[1], 'secret') then return -2 end
        local challenged = ARGV[3] == '1'
        if challenged and not redis.call('HGET', KEYS[2], 'user') then return -2 end
        local accepted = false
        if ARGV[1] == 'step' then
            local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '-1')
            if ARGV[2] ~= '' and tonumber(ARGV[2]) > last then
                redis.call('HSET', KEYS[1], 'last', ARGV[2])
                accepted = true
            end
        elseif redis.call('HGET', KEYS[1], 'r:' .. ARGV[2]) == '1' then
            redis.call('HSET', KEYS[1], 'r:' .. ARGV[2], '0')
            accepted = true
        end
        if accepted then
            if challenged then redis.call('DEL', KEYS[2]) end
            return 1
        end
        if not challenged then return 0 end
        local fails = tonumber(redis.call('HGET', KEYS[2], 'fails') or '0') + 1
        if fails >= tonumber(ARGV[4]) then
            redis.call('DEL', KEYS[2])
            return -1
        end
        redis.call('HSET', KEYS[2], 'fails', tostring(fails))
        return 0
        """
    )

    /// KEYS: factor, then the events' (`Lua.events`). ARGV: the pending secret as read, the confirming code's step,
    /// recovery code hashes…, then the events' three (`totp.enabled`).
    static let confirmScript = RedisScript(
        name: "confirm_second_factor",
        Lua.events + """
            if redis.call('HGET', KEYS[1], 'pending') ~= ARGV[1] then return 0 end
            redis.call('DEL', KEYS[1])
            redis.call('HSET', KEYS[1], 'secret', ARGV[1], 'last', ARGV[2])
            for i = 3, #ARGV - 3 do redis.call('HSET', KEYS[1], 'r:' .. ARGV[i], '1') end
            emit({})
            return 1
            """
    )

    /// KEYS: factor, then the events'. ARGV: the events' (`totp.disabled`).
    static let removeScript = RedisScript(
        name: "remove_second_factor",
        Lua.events + """
            if redis.call('DEL', KEYS[1]) == 1 then emit({}) end
            return 1
            """
    )
}

enum SecondFactorError: Error, CustomStringConvertible {
    case cannotOpen
    var description: String { "a stored TOTP secret cannot be opened: TOTP_ENCRYPTION_KEY is missing or not the key it was sealed with" }
}

/// How TOTP secrets are kept at rest: sealed with ChaChaPoly under `TOTP_ENCRYPTION_KEY` (the user ID as associated
/// data, so a sealed secret copied to another user does not open), or, without a key, as they are. Stored forms:
/// `c1:<base64 nonce‖ciphertext‖tag>` and `p1:<base64 secret>`. A key opens both; no key opens only `p1:`.
public struct TOTPSecretBox: Sendable {
    let key: SymmetricKey?

    /// - Parameter key: 32 bytes, or nil to store secrets as they are.
    public init(key: [UInt8]?) {
        self.key = key.map { SymmetricKey(data: $0) }
    }

    public var encrypts: Bool { key != nil }

    func seal(_ secret: [UInt8], for user: UserID) -> String {
        guard let key, let box = try? ChaChaPoly.seal(secret, using: key, authenticating: Array(user.text.utf8)) else {
            return "p1:" + Data(secret).base64EncodedString()
        }
        return "c1:" + box.combined.base64EncodedString()
    }

    func open(_ stored: String, for user: UserID) -> [UInt8]? {
        if stored.hasPrefix("p1:") { return Data(base64Encoded: String(stored.dropFirst(3))).map(Array.init) }
        guard stored.hasPrefix("c1:"), let key, let combined = Data(base64Encoded: String(stored.dropFirst(3))),
            let box = try? ChaChaPoly.SealedBox(combined: combined),
            let secret = try? ChaChaPoly.open(box, using: key, authenticating: Array(user.text.utf8))
        else { return nil }
        return Array(secret)
    }
}
